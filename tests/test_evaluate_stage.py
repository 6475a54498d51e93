"""The evaluate stage on a tiny features table and a model trained on it by the train stage."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from tests.conftest import load_stage
from tests.test_train_stage import params, write_features  # noqa: F401 (params is a fixture)

TRAIN = load_stage("train")
EVALUATE = load_stage("evaluate")


def outputs(tmp_path, params, features=None, model=None) -> list[str]:
    return ["--params", str(params), "--model", str(model or tmp_path / "model.pt"),
            "--features", str(features or tmp_path / "features.h5"),
            "--metrics", str(tmp_path / "metrics.json"), "--per-class", str(tmp_path / "per_class.json"),
            "--confusion", str(tmp_path / "confusion"), "--novelty", str(tmp_path / "novelty.csv"),
            "--predictions", str(tmp_path / "predictions.csv"), "--figures", str(tmp_path / "figures")]


@pytest.fixture
def trained(tmp_path, params, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    # Two clips per track: 8 train, 4 val and 3 test tracks, the classes alternating.
    write_features(tmp_path / "features.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 6)
    assert TRAIN.main(["--params", str(params), "--features", str(tmp_path / "features.h5"),
                       "--model", str(tmp_path / "model.pt"), "--live", str(tmp_path / "live")]) == 0
    return tmp_path


def test_lean_metrics_details_and_a_predictions_table(trained, params, capsys):  # noqa: F811
    tmp_path = trained
    assert EVALUATE.main(outputs(tmp_path, params)) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {f"{split}.{level}.{key}" for split in metrics for level in metrics[split]
            for key in metrics[split][level]} == {
        f"{split}.{level}.{key}" for split in ("val", "test") for level in ("clip", "track")
        for key in ("macro_f1", "balanced_accuracy")}
    details = json.loads((tmp_path / "per_class.json").read_text())
    assert details["test"]["track"]["n"] == 3 and details["val"]["clip"]["n"] == 8
    assert [row["label"] for row in details["test"]["clip"]["classes"]] == ["a", "b"]
    with open(tmp_path / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["split", "track", "label", "known", "predicted", "p_a", "p_b", "novelty", "flagged"]
    assert [(row["split"], row["track"], row["label"]) for row in rows] == [
        ("val", "t008", "a"), ("val", "t009", "b"), ("val", "t010", "a"), ("val", "t011", "b"),
        ("test", "t012", "a"), ("test", "t013", "b"), ("test", "t014", "a")]
    for row in rows:
        assert float(row["p_a"]) + float(row["p_b"]) == pytest.approx(1.0, abs=2e-6)
        assert row["predicted"] == ("a" if float(row["p_a"]) >= float(row["p_b"]) else "b")
        assert row["flagged"] in ("true", "false") and row["known"] == "true"
    # The flag uses the threshold stored by train: the 95th percentile of the val tracks' scores.
    import torch
    threshold = torch.load(tmp_path / "model.pt", weights_only=True)["novelty_reference"]
    assert [row["flagged"] == "true" for row in rows] == [float(row["novelty"]) > threshold for row in rows]
    assert sum(row["flagged"] == "true" for row in rows if row["split"] == "val") == 1  # above the 95th pct


def test_a_model_that_does_not_fit_the_features_is_explained(trained, params, capsys):  # noqa: F811
    tmp_path = trained
    write_features(tmp_path / "other.h5", ["train"] * 4 + ["val"] * 4 + ["test"] * 4, bands=12)
    assert EVALUATE.main(outputs(tmp_path, params, features=tmp_path / "other.h5")) == 1
    assert capsys.readouterr().err == (
        f"evaluate: {tmp_path / 'model.pt'} does not fit {tmp_path / 'other.h5'}: the model was trained on "
        "8-band features, the table holds 12-band ones; retrain with `dvc repro train`\n")
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "confusion").exists()


def test_a_table_without_test_clips_is_explained_not_a_traceback(trained, params, capsys):  # noqa: F811
    tmp_path = trained
    write_features(tmp_path / "no-test.h5", ["train"] * 16 + ["val"] * 8)  # split.test: 0
    assert EVALUATE.main(outputs(tmp_path, params, features=tmp_path / "no-test.h5")) == 1
    assert capsys.readouterr().err == (
        f"evaluate: {tmp_path / 'no-test.h5'}: the test split holds no clip of a known class, so there is nothing "
        "to score: set split.test > 0 in params.yaml (each class then gets test tracks)\n")
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "confusion").exists()


def test_a_missing_or_truncated_model_is_explained(trained, params, capsys):  # noqa: F811
    tmp_path = trained
    assert EVALUATE.main(outputs(tmp_path, params, model=tmp_path / "none.pt")) == 1
    assert capsys.readouterr().err == (f"evaluate: {tmp_path / 'none.pt'}: no such model file; train one with "
                                       "`dvc repro train` (or give another with --model)\n")
    (tmp_path / "half.pt").write_bytes((tmp_path / "model.pt").read_bytes()[:2000])
    assert EVALUATE.main(outputs(tmp_path, params, model=tmp_path / "half.pt")) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"evaluate: {tmp_path / 'half.pt'}: not a readable PyTorch checkpoint (truncated or "
                          "not one): ") and err.count("\n") == 1
    assert not (tmp_path / "metrics.json").exists()


def test_a_class_without_test_tracks_is_named_beside_the_scores(trained, params, capsys):  # noqa: F811
    """A class whose only test track gave no clip vanished from the test macro-F1 without a word."""
    tmp_path = trained
    # Four validation tracks set the novelty threshold: evaluate says what predict says of it.
    few = ("evaluate: warning: the novelty threshold rests on 4 validation tracks (fewer than 20), so "
           "predictions.csv's flagged column means little\n")
    assert EVALUATE.main(outputs(tmp_path, params)) == 0
    assert capsys.readouterr().err == few  # both classes in both splits
    checkpoint = torch.load(tmp_path / "model.pt", weights_only=False)
    checkpoint["novelty_reference_tracks"] = 24
    torch.save(checkpoint, tmp_path / "enough.pt")
    assert EVALUATE.main(outputs(tmp_path, params, model=tmp_path / "enough.pt")) == 0
    assert capsys.readouterr().err == ""
    write_features(tmp_path / "one-test.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 2)  # test: t012, class a
    assert EVALUATE.main(outputs(tmp_path, params, features=tmp_path / "one-test.h5")) == 0
    assert capsys.readouterr().err == few + ("evaluate: warning: no test track of b: the test scores are over 1 "
                                             "of 2 classes\n")

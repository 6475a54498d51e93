"""train.track_prior: each clip's probabilities divided by the training clips' class shares before a track's clips
are pooled, in evaluate and predict alike; the clips' own answers untouched."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml

from musicid.h5 import read_strings
from musicid.metrics import class_shares, prior_corrected
from musicid.training import checkpoint_track_prior, load_checkpoint
from tests.test_symbolic_model import (EVALUATE, TRAIN, params, stage_arguments,  # noqa: F401  (params: a fixture)
                                       write_symbolic_features)


def test_dividing_by_the_shares_takes_the_lean_out():
    pooled = np.array([[0.6, 0.4], [0.9, 0.1], [0.5, 0.5]])
    corrected = prior_corrected(pooled, np.array([0.75, 0.25]), 1.0)
    # 0.6 / 0.75 = 0.8 against 0.4 / 0.25 = 1.6: the smaller class wins the first track, not the second.
    np.testing.assert_allclose(corrected, [[1 / 3, 2 / 3], [0.75, 0.25], [0.25, 0.75]])
    np.testing.assert_allclose(prior_corrected(pooled, np.array([0.75, 0.25]), 0.5)[0],
                               np.array([0.6 / 0.75 ** 0.5, 0.4 / 0.25 ** 0.5]) / (0.6 / 0.75 ** 0.5 + 0.4 / 0.25 ** 0.5))
    for shares, power in ((None, 1.0), (np.array([0.75, 0.25]), 0.0)):
        unchanged = prior_corrected(pooled, shares, power)
        assert unchanged.dtype == np.float64 and np.array_equal(unchanged, pooled)
    # Equal shares change nothing.
    np.testing.assert_allclose(prior_corrected(pooled, np.array([0.5, 0.5]), 1.0), pooled)


def test_class_shares_count_clips_and_never_give_zero():
    np.testing.assert_allclose(class_shares(np.array([0, 0, 0, 1]), 2), [0.75, 0.25])
    np.testing.assert_allclose(class_shares(np.array([0, 0, 1]), 3), [0.5, 0.25, 0.25])  # class 2: counted as 1


def train_small(tmp_path, params, monkeypatch, **values) -> tuple[list[str], list[str]]:
    """Train on test_symbolic_model's small table of two classes, with these train params changed; (train's and
    evaluate's arguments)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 6)
    train, evaluate = stage_arguments(tmp_path, params)
    document = yaml.safe_load(params.read_text())
    document["train"].update(values)
    params.write_text(yaml.safe_dump(document))
    assert TRAIN.main(train) == 0
    return train, evaluate


def rows_of(path):
    with open(path, newline="") as handle:
        return {row["track"]: row for row in csv.DictReader(handle)}


def test_train_stores_the_shares_and_evaluate_divides_the_tracks_answers_by_them(tmp_path, params, monkeypatch):
    _, evaluate = train_small(tmp_path, params, monkeypatch, track_notes=0.0, track_prior=1.0)
    _, checkpoint = load_checkpoint(tmp_path / "model.pt")
    import h5py
    with h5py.File(tmp_path / "features.h5", "r") as table:
        train_labels = table["label"][:][read_strings(table["split"]) == "train"]
    shares, power = checkpoint_track_prior(checkpoint)
    assert power == 1.0 and np.array_equal(shares, np.bincount(train_labels, minlength=2) / len(train_labels))
    assert EVALUATE.main(evaluate) == 0
    plain = json.loads((tmp_path / "metrics.json").read_text())

    # Training clips of the first class said to be 999 in 1000: every track's answer moves to the second, the
    # clips' answers stay.
    stored = torch.load(tmp_path / "model.pt", weights_only=True)
    stored["train_class_shares"] = torch.tensor([0.999, 0.001], dtype=torch.float64)
    torch.save(stored, tmp_path / "model.pt")
    assert EVALUATE.main(evaluate) == 0
    leaning = json.loads((tmp_path / "metrics.json").read_text())
    assert leaning["test"]["clip"] == plain["test"]["clip"]
    assert plain["test"]["track"]["macro_f1"] > leaning["test"]["track"]["macro_f1"]
    rows = rows_of(tmp_path / "predictions.csv")
    assert rows and all(row["predicted"] == "b" for row in rows.values())
    assert json.loads((tmp_path / "per_class.json").read_text())["test"]["track_pooling"]["mean"] == \
        leaning["test"]["track"]["macro_f1"]  # the clips' mean alone, corrected as the headline is

    # train.track_prior 0: the shares are stored but not used.
    stored["params"]["train"]["track_prior"] = 0.0
    torch.save(stored, tmp_path / "model.pt")
    assert EVALUATE.main(evaluate) == 0
    assert json.loads((tmp_path / "metrics.json").read_text()) == plain


def test_a_checkpoint_from_before_the_param_is_read_without_it(tmp_path, params, monkeypatch):
    _, evaluate = train_small(tmp_path, params, monkeypatch, track_prior=0.0)
    assert EVALUATE.main(evaluate) == 0
    written = (tmp_path / "predictions.csv").read_bytes()
    stored = torch.load(tmp_path / "model.pt", weights_only=True)
    del stored["train_class_shares"], stored["params"]["train"]["track_prior"]
    torch.save(stored, tmp_path / "model.pt")
    assert checkpoint_track_prior(load_checkpoint(tmp_path / "model.pt")[1]) == (None, 0.0)
    assert EVALUATE.main(evaluate) == 0
    assert (tmp_path / "predictions.csv").read_bytes() == written


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_predict_divides_a_files_clips_as_evaluate_does(tmp_path, monkeypatch, power):
    """predict divides each clip's probabilities by the stored shares to train.track_prior's power before it
    pools them, as evaluate does; the e2e tests check that both give a collection's file the same figures."""
    import musicid.predict as predict_module
    from tests.conftest import sine, write_midi, write_wav
    from tests.test_symbolic_model import write_symbolic_checkpoint

    path = write_symbolic_checkpoint(tmp_path / "plain.pt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["train_class_shares"] = torch.tensor([0.9, 0.1], dtype=torch.float64)
    checkpoint["params"]["train"] = {"track_prior": power}
    torch.save(checkpoint, tmp_path / "shares.pt")
    divided = predict_module.Predictor(tmp_path / "shares.pt")
    seen = []
    model_output = predict_module.class_probabilities

    def recording(*args, **kwargs):
        probabilities, embeddings = model_output(*args, **kwargs)
        seen.append(probabilities)
        return probabilities, embeddings

    monkeypatch.setattr(predict_module, "class_probabilities", recording)
    midi = write_midi(tmp_path / "tune.mid", [(60 + (k % 5), 0.5 * k, 0.5 * k + 0.5) for k in range(18)])
    wav = write_wav(tmp_path / "tune.wav", sine(440.0, 9.0, 22050, 0.3), 22050)
    for file in (midi, wav):
        after = dict(divided.predict(file).labels)
        clips = seen[-1]
        assert len(clips) == 2  # two clips, pooled
        expected = prior_corrected(clips, np.array([0.9, 0.1]), power).mean(0)
        assert [after["bach"], after["palestrina"]] == pytest.approx(expected.tolist(), abs=1e-9)
        plain = clips.astype(np.float64).mean(0)
        assert ([after["bach"], after["palestrina"]] == pytest.approx(plain.tolist(), abs=1e-9)) == (power == 0.0)


def test_shares_that_do_not_fit_the_model_are_refused_in_one_line(tmp_path, params, monkeypatch, capsys):
    from musicid.predict import Predictor
    from musicid.training import CheckpointError

    _, evaluate = train_small(tmp_path, params, monkeypatch)
    stored = torch.load(tmp_path / "model.pt", weights_only=True)
    for shares, power in (([0.5, 0.3, 0.2], 1.0), ([1.0, 0.0], 1.0), ([0.5, 0.5], 3.0)):
        edited = {**stored, "train_class_shares": torch.tensor(shares, dtype=torch.float64),
                  "params": {**stored["params"], "train": {**stored["params"]["train"], "track_prior": power}}}
        torch.save(edited, tmp_path / "model.pt")
        capsys.readouterr()
        assert EVALUATE.main(evaluate) == 1
        message = capsys.readouterr().err
        assert message.startswith(f"evaluate: {tmp_path / 'model.pt'}: its parts do not fit together (training class "
                                  f"shares {shares} for 2 classes, train.track_prior {power!r})")
        assert message.count("\n") == 1
    # predict refuses such a model when it loads it.
    from tests.test_symbolic_model import write_symbolic_checkpoint

    checkpoint = torch.load(write_symbolic_checkpoint(tmp_path / "predict.pt"), weights_only=True)
    checkpoint["train_class_shares"] = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    checkpoint["params"]["train"] = {"track_prior": 1.0}
    torch.save(checkpoint, tmp_path / "predict.pt")
    with pytest.raises(CheckpointError, match=r"predict\.pt: its parts do not fit together \(training class shares "
                                              r"\[0\.5, 0\.3, 0\.2\] for 2 classes.*retrain it with `dvc repro train`"):
        Predictor(tmp_path / "predict.pt")


def test_with_the_notes_regression_the_divided_clips_are_pooled_then_averaged_with_it(tmp_path, params, monkeypatch):
    """evaluate's track answer is the regression's probabilities averaged with the pooled divided clips (not the
    division of the average): computed here from the model's clip probabilities and the stored regression."""
    from musicid.metrics import pool
    from musicid.track_model import checkpoint_regression, fuse_notes, split_statistics
    import h5py
    from musicid.training import class_probabilities, normalise, read_symbolic_input, to_numpy

    _, evaluate = train_small(tmp_path, params, monkeypatch, track_notes=0.1)
    stored = torch.load(tmp_path / "model.pt", weights_only=True)
    shares = np.array([0.8, 0.2])
    stored["train_class_shares"] = torch.from_numpy(shares)
    torch.save(stored, tmp_path / "model.pt")
    assert EVALUATE.main(evaluate) == 0
    model, checkpoint = load_checkpoint(tmp_path / "model.pt")
    regression = checkpoint_regression(checkpoint)
    assert regression is not None
    with h5py.File(tmp_path / "features.h5", "r") as table:
        rows = np.nonzero(read_strings(table["split"]) == "test")[0]
        features = normalise(table["features"][rows], to_numpy(checkpoint["band_mean"]), to_numpy(checkpoint["band_std"]))
        symbolic = read_symbolic_input(table, rows, to_numpy(checkpoint["symbolic_mean"]),
                                       to_numpy(checkpoint["symbolic_std"]))
        tracks = read_strings(table["track"])[rows]
        statistics, _ = split_statistics(table, "test")
    probabilities, _ = class_probabilities(model, features, to_numpy(checkpoint["centroids"]), 32,
                                           torch.device("cpu"), symbolic)
    names, pooled = pool(prior_corrected(probabilities, shares, 1.0), tracks)
    expected = fuse_notes(pooled, regression, statistics)
    rows_written = rows_of(tmp_path / "predictions.csv")
    for index, name in enumerate(names):
        written = rows_written[name]
        assert [float(written["p_a"]), float(written["p_b"])] == pytest.approx(expected[index].tolist(), abs=2e-6)
    # The division after the average would give other figures.
    other = prior_corrected(fuse_notes(pool(probabilities, tracks)[1], regression, statistics), shares, 1.0)
    assert not np.allclose(other, expected, atol=1e-4)

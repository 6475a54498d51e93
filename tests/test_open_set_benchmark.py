"""benchmarks/open_set.py: each class held out in turn, through the suite's steps (the stages faked here)."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, load_benchmark

open_set = load_benchmark("open_set")
suite = open_set.suite  # its own import of the suite (another test file may load another copy)
PARAMS = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
# Cosine AUROC each fake run reports: by held-out class, plus 0.01 per seed, minus 0.1 with the triplet term.
AUROC = {"bach": 0.9, "monteverdi": 0.8, "palestrina": 0.7, "trecento": 0.6, "haydn": 0.5, "mozart": 0.4,
         "beethoven": 0.3}


def fake_suite(monkeypatch, runs: list) -> None:
    """The data steps do nothing; evaluate writes open-set figures that name its params."""
    monkeypatch.setattr(suite, "prepare_data", lambda task, params, cap, out, jobs: (out / "audio", 1.0))

    def run_stage(name, arguments, folder, jobs=None):
        params = yaml.safe_load((folder / "params.yaml").read_text())
        if name == "clip":
            arguments[arguments.index("--out") + 1].write_bytes(b"clips")
            return 1.0
        if name == "featurize":
            return 1.0
        if name == "train":
            arguments[arguments.index("--model") + 1].write_bytes(b"model")
            return 10.0
        runs.append((params["split"], params["train"]["seed"], params["train"]["loss"]))
        held_out = params["split"]["holdout_classes"][0]
        auroc = AUROC[held_out] + 0.01 * params["train"]["seed"] - (0.1 if params["train"]["loss"] != "ce" else 0.0)
        (folder / "per_class.json").write_text(json.dumps({"open_set": {
            "auroc": auroc, "fpr_at_95_tpr": 0.5, "cosine": {"auroc": auroc}, "mahalanobis": {"auroc": 0.5}},
            "test": {}}))
        (folder / "metrics.json").write_text(json.dumps({"test": {"clip": {"macro_f1": 0.9}, "track": {}}}))
        return 2.0

    monkeypatch.setattr(suite, "run_stage", run_stage)


def test_each_class_is_held_out_in_one_split_by_fractions_per_seed_and_compared_pair_by_pair(
        monkeypatch, tmp_path, capsys):
    runs = []
    fake_suite(monkeypatch, runs)
    assert open_set.main(["--configs", "default", "cetrip", "--seeds", "0", "1", "--out", str(tmp_path)]) == 0
    # Every class held out once per configuration and seed, one split by fractions as dvc repro makes it.
    assert sorted((split["holdout_classes"][0], seed, loss) for split, seed, loss in runs) == sorted(
        (held_out, seed, loss) for held_out in list(AUROC)[:4] for seed in (0, 1) for loss in ("ce", "ce+triplet"))
    assert all(split["folds"] == 0 for split, _, _ in runs)
    out = capsys.readouterr().out
    assert "default        bach                 0.905" in out  # the mean of 0.90 and 0.91
    assert "default        mean                 0.755" in out  # (0.905 + 0.805 + 0.705 + 0.605) / 4
    assert "cetrip         trecento             0.505" in out
    assert "cetrip against default, cosine auroc: -0.100 +- 0.000 (0 / 8 of 8 class-seed pairs better / worse)" in out
    saved = json.loads((tmp_path / "open_set.json").read_text())
    assert saved["runs"]["cetrip"]["palestrina"][1]["cosine_auroc"] == pytest.approx(0.61)
    # A second run finds every step done: nothing is evaluated again.
    runs.clear()
    assert open_set.main(["--configs", "default", "--seeds", "0", "--classes", "bach", "--out", str(tmp_path)]) == 0
    assert runs == []


def test_bad_arguments_stop_before_any_work(monkeypatch, tmp_path, capsys):
    runs = []
    fake_suite(monkeypatch, runs)
    for argv, message in ((["--seeds", "0", "0"], "a value is given twice"),
                          (["--classes", "bach", "bach"], "a value is given twice"),
                          (["--classes", "haydn"], "--classes: haydn not a class of task default-piano (bach, "
                                                   "monteverdi, palestrina, trecento)"),
                          (["--task", "lopsided"], "invalid choice: 'lopsided'"),
                          (["--configs", "a:train.epochs=2", "a:train.epochs=3"], "two configurations have the same name")):
        with pytest.raises(SystemExit) as stopped:
            open_set.main([*argv, "--out", str(tmp_path)])
        assert stopped.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no param train.colour"):
        open_set.main(["--configs", "x:train.colour=1", "--out", str(tmp_path)])
    assert runs == []


def test_the_quartets_task_holds_out_each_of_its_composers(monkeypatch, tmp_path, capsys):
    runs = []
    fake_suite(monkeypatch, runs)
    assert open_set.main(["--task", "quartets", "--seeds", "0", "--out", str(tmp_path)]) == 0
    assert sorted(split["holdout_classes"][0] for split, _, _ in runs) == ["beethoven", "haydn", "mozart"]
    out = capsys.readouterr().out
    assert "open set of task quartets (haydn, mozart, beethoven)" in out
    assert "default        mean                 0.400" in out  # (0.5 + 0.4 + 0.3) / 3
    assert (tmp_path / "quartets" / "default" / "holdout-mozart").is_dir()
    assert json.loads((tmp_path / "open_set.json").read_text())["args"]["task"] == "quartets"

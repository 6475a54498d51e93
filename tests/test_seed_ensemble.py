"""benchmarks/seed_ensemble.py on a tiny suite folder: two seeds trained and evaluated by the stages."""

from __future__ import annotations

import shutil

import pytest
import yaml

from tests.conftest import load_benchmark, load_stage
from tests.test_evaluate_stage import outputs
from tests.test_train_stage import params, write_features  # noqa: F401 (params is a fixture)

TRAIN = load_stage("train")
EVALUATE = load_stage("evaluate")
ensemble = load_benchmark("seed_ensemble")


@pytest.fixture
def suite_folder(tmp_path, params, monkeypatch):  # noqa: F811
    """A task folder as composer_quality.py leaves it: one features table, fold 0 of `default` with seeds 0 and 1."""
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    values = yaml.safe_load(params.read_text())
    table_dir = tmp_path / "task" / "features-0123456789"
    table_dir.mkdir(parents=True)
    (table_dir / "params.yaml").write_text(yaml.safe_dump(values))
    write_features(table_dir / "features.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 12)
    for seed in (0, 1):
        run = tmp_path / "task" / "default" / "fold0" / f"run{seed}"
        run.mkdir(parents=True)
        values["train"]["seed"] = seed
        (run / "params.yaml").write_text(yaml.safe_dump(values))
        assert TRAIN.main(["--params", str(run / "params.yaml"), "--features", str(table_dir / "features.h5"),
                           "--model", str(run / "model.pt"), "--live", str(run / "live")]) == 0
        arguments = outputs(run, run / "params.yaml", features=table_dir / "features.h5")
        assert EVALUATE.main(arguments) == 0
    return tmp_path


def table_row(text: str) -> list[str]:
    return [cell.strip() for cell in text.strip().splitlines()[-1].strip("|").split("|")]


def test_the_seeds_score_as_evaluate_scored_them_and_identical_models_gain_nothing(suite_folder, capsys):
    arguments = ["--out", str(suite_folder), "--tasks", "task", "--folds", "1", "--seeds", "0", "1"]
    assert ensemble.main(arguments) == 0  # exits if a seed's clip macro-F1 differs from its metrics.json
    row = table_row(capsys.readouterr().out)
    assert row[0] == "task"

    # Seed 1 replaced by a copy of seed 0: the ensemble is that model, its gain exactly zero.
    run0, run1 = (suite_folder / "task" / "default" / "fold0" / f"run{seed}" for seed in (0, 1))
    for name in ("model.pt", "metrics.json"):
        shutil.copy(run0 / name, run1 / name)
    assert ensemble.main(arguments) == 0
    row = table_row(capsys.readouterr().out)
    single, together = row[1], row[2]
    assert single == together
    assert row[3].startswith("0.000") and row[4].startswith("0.000 +- nan (0 / 0)")


def test_a_missing_seed_is_named(suite_folder):
    with pytest.raises(SystemExit, match=r"no run of train.seed \[2\]"):
        ensemble.main(["--out", str(suite_folder), "--tasks", "task", "--folds", "1", "--seeds", "0", "2"])


def test_a_run_whose_table_is_gone_is_refused(suite_folder):
    shutil.rmtree(suite_folder / "task" / "features-0123456789")
    with pytest.raises(SystemExit, match="0 features tables match"):
        ensemble.main(["--out", str(suite_folder), "--tasks", "task", "--folds", "1"])


def test_runs_of_other_settings_or_folds_are_not_mixed_in(suite_folder):
    run1 = suite_folder / "task" / "default" / "fold0" / "run1"
    values = yaml.safe_load((run1 / "params.yaml").read_text())
    values["train"]["epochs"] += 1  # as if made by another --epochs under the same configuration name
    (run1 / "params.yaml").write_text(yaml.safe_dump(values))
    with pytest.raises(SystemExit, match=r"run1 \(seed 1\) and .*run0 \(seed 0\) were run with other params"):
        ensemble.main(["--out", str(suite_folder), "--tasks", "task", "--seeds", "0", "1"])
    with pytest.raises(SystemExit, match="a seed is given twice"):
        ensemble.main(["--out", str(suite_folder), "--tasks", "task", "--seeds", "0", "0"])
    with pytest.raises(SystemExit, match=r"--folds 5: the runs of default in .* have 1 fold"):
        ensemble.main(["--out", str(suite_folder), "--tasks", "task", "--folds", "5", "--seeds", "0", "1"])


def test_a_run_made_before_a_param_existed_is_the_same_configuration(suite_folder):
    """composer_quality leaves a train param at its off value out of a run's key; so does the seeds' check."""
    run0 = suite_folder / "task" / "default" / "fold0" / "run0"
    values = yaml.safe_load((run0 / "params.yaml").read_text())
    assert values["train"]["ema"] == 0.0
    del values["train"]["ema"]  # as written before train.ema existed
    (run0 / "params.yaml").write_text(yaml.safe_dump(values))
    assert ensemble.main(["--out", str(suite_folder), "--tasks", "task", "--seeds", "0", "1"]) == 0

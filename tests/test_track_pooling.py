"""benchmarks/track_pooling.py: its poolings on hand-made clips, and the script on a tiny suite folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import load_benchmark
from tests.test_seed_ensemble import suite_folder, table_row  # noqa: F401 (suite_folder is a fixture)
from tests.test_train_stage import params  # noqa: F401 (a fixture suite_folder uses)

pooling = load_benchmark("track_pooling")
suite_runs = load_benchmark("suite_runs")


def outputs(probabilities, tracks, labels, embeddings=None) -> object:
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if embeddings is None:
        embeddings = probabilities
    return suite_runs.SplitOutputs(probabilities, np.asarray(embeddings, dtype=np.float32),
                                   np.asarray(labels, dtype=np.int64), np.asarray(tracks))


def test_each_pooling_names_the_track_its_own_way():
    # Track "a": two clips lean weakly to class 0, one is sure of class 1. Track "b": sure of class 1.
    test = outputs([[0.6, 0.4], [0.6, 0.4], [0.01, 0.99], [0.1, 0.9]], ["a", "a", "a", "b"], [0, 0, 0, 1])
    train = outputs([[0.9, 0.1], [0.1, 0.9]], ["t0", "t1"], [0, 1])
    predicted = pooling.track_predictions(train, test, seed=0)
    assert predicted["mean"].tolist() == [1, 1]  # (0.6 + 0.6 + 0.01) / 3 = 0.403 for class 0
    assert predicted["median"].tolist() == [0, 1]
    assert predicted["vote"].tolist() == [0, 1]
    assert predicted["log_mean"].tolist() == [1, 1]  # log 0.01 outweighs two clips at 0.6 against 0.4


def test_the_prior_pooling_divides_the_mean_by_the_training_clips_shares():
    # Track "a" leans to class 0 (0.6 against 0.4), whose training clips are 3 in 4: divided, it is class 1's.
    test = outputs([[0.6, 0.4], [0.6, 0.4], [0.1, 0.9]], ["a", "a", "b"], [1, 1, 1])
    train = outputs(np.full((4, 2), 0.5), ["t0", "t0", "t1", "t2"], [0, 0, 0, 1])
    predicted = pooling.track_predictions(train, test, seed=0)
    assert predicted["mean"].tolist() == [0, 1] and predicted["prior"].tolist() == [1, 1]
    # A run's own shares and power when its model holds them: power 0 is the mean.
    assert pooling.track_predictions(train, test, 0, prior=(np.array([0.75, 0.25]), 0.0))["prior"].tolist() == [0, 1]
    assert "prior+notes" not in predicted  # no notes given


def test_a_tied_vote_goes_to_the_higher_mean():
    assert pooling.vote(np.array([[0.9, 0.1], [0.4, 0.6]])).argmax() == 0
    assert pooling.vote(np.array([[0.55, 0.45], [0.1, 0.9]])).argmax() == 1


def test_the_learned_pooling_learns_from_the_training_tracks_embeddings():
    rng = np.random.default_rng(0)
    # Class 1's tracks sit high on the second embedding dimension; the probabilities say nothing (0.5 each).
    train_tracks = [f"t{i}" for i in range(20) for _ in range(3)]
    train_labels = [i % 2 for i in range(20) for _ in range(3)]
    train_embeddings = [[rng.normal(), 3.0 * label + rng.normal(0, 0.3)] for label in train_labels]
    train = outputs(np.full((60, 2), 0.5), train_tracks, train_labels, train_embeddings)
    test = outputs(np.full((4, 2), 0.5), ["x", "x", "y", "y"], [1, 1, 0, 0],
                   [[0.0, 3.1], [0.2, 2.9], [0.1, 0.1], [-0.3, -0.2]])
    assert pooling.learned(train, test, seed=0).tolist() == [1, 0]  # tracks x, y in sorted order


def test_track_labels_follow_the_sorted_track_ids():
    clips = outputs(np.full((4, 3), 1 / 3), ["c", "a", "c", "b"], [2, 0, 2, 1])
    assert pooling.track_labels(clips).tolist() == [0, 1, 2]


def test_the_script_scores_a_suite_run_as_evaluate_did(suite_folder, capsys):  # noqa: F811
    arguments = ["--out", str(suite_folder), "--tasks", "task", "--folds", "1", "--seeds", "0", "1"]
    assert pooling.main(arguments) == 0  # exits if the mean pooling's track macro-F1 differs from metrics.json
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| task |")][1:]  # no header
    # The table holds no notes: no note poolings.
    assert [table_row(line)[1] for line in lines] == [name for name in pooling.POOLINGS if "notes" not in name]
    mean_row = table_row(lines[0])
    written = [json.loads((suite_folder / "task" / "default" / "fold0" / f"run{seed}" / "metrics.json").read_text())
               ["test"]["track"]["macro_f1"] for seed in (0, 1)]
    assert mean_row[2] == f"{np.mean(written):.3f} +- nan"  # one fold: no sd
    assert float(mean_row[4].split()[0]) > 0  # the share of training clips named right


def test_a_run_scored_otherwise_than_evaluate_wrote_is_refused(suite_folder):  # noqa: F811
    metrics_path = suite_folder / "task" / "default" / "fold0" / "run0" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["test"]["track"]["macro_f1"] = round(metrics["test"]["track"]["macro_f1"] - 0.25, 6)
    metrics_path.write_text(json.dumps(metrics))
    with pytest.raises(SystemExit, match="does not match evaluate's"):
        pooling.main(["--out", str(suite_folder), "--tasks", "task", "--folds", "1", "--seeds", "0"])


def test_a_task_rendered_twice_gives_each_run_its_own_table(suite_folder):  # noqa: F811
    """Two tables of the same params (the task's audio made again): the run's key, which holds its table's
    path, says which one it was trained on."""
    import shutil

    import yaml

    composer_quality = load_benchmark("composer_quality")
    task = suite_folder / "task"
    table = task / "features-0123456789" / "features.h5"
    for seed in (0, 1):
        run = task / "default" / "fold0" / f"run{seed}"
        run.rename(run.with_name(composer_quality.run_key(table, yaml.safe_load((run / "params.yaml").read_text()))))
    shutil.copytree(task / "features-0123456789", task / "features-0000000000")  # sorted first
    (task / "features-0000000000" / "features.h5").write_bytes(b"not the table the runs were trained on")
    assert pooling.main(["--out", str(suite_folder), "--tasks", "task", "--seeds", "0"]) == 0


def symbolic_suite_run(tmp_path, params, monkeypatch, test_clips: int) -> tuple:
    """A task folder as composer_quality.py leaves it, of test_symbolic_model's tiny table with notes and
    ``test_clips`` test clips: fold 0 of `default`, trained, not yet evaluated; (its run folder, its table)."""
    import yaml

    from tests.test_symbolic_model import TRAIN, write_symbolic_features

    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    values = yaml.safe_load(params.read_text())
    assert values["train"]["track_notes"] > 0  # the default: the models hold the regression
    table_dir = tmp_path / "task" / "features-0123456789"
    table_dir.mkdir(parents=True)
    (table_dir / "params.yaml").write_text(yaml.safe_dump(values))
    write_symbolic_features(table_dir / "features.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * test_clips)
    run = tmp_path / "task" / "default" / "fold0" / "run0"
    run.mkdir(parents=True)
    (run / "params.yaml").write_text(yaml.safe_dump(values))
    assert TRAIN.main(["--params", str(run / "params.yaml"), "--features", str(table_dir / "features.h5"),
                       "--model", str(run / "model.pt"), "--live", str(run / "live")]) == 0
    return run, table_dir / "features.h5"


def test_the_note_poolings_score_a_run_with_the_regression_as_evaluate_did(tmp_path, params, monkeypatch,  # noqa: F811
                                                                           capsys):
    from tests.test_evaluate_stage import outputs as evaluate_outputs
    from tests.test_symbolic_model import EVALUATE

    run, table = symbolic_suite_run(tmp_path, params, monkeypatch, test_clips=6)
    # A regression that names the second class whatever the notes, so that the two poolings differ.
    checkpoint = torch.load(run / "model.pt", weights_only=True)
    checkpoint["track_notes_coef"] = torch.zeros_like(checkpoint["track_notes_coef"])
    checkpoint["track_notes_intercept"] = torch.tensor([-20.0, 20.0], dtype=torch.float64)
    torch.save(checkpoint, run / "model.pt")
    assert EVALUATE.main(evaluate_outputs(run, run / "params.yaml", features=table)) == 0
    written = json.loads((run / "metrics.json").read_text())["test"]["track"]["macro_f1"]
    capsys.readouterr()
    # Exits unless mean+notes (what evaluate named the tracks by) equals the track macro-F1 it wrote.
    assert pooling.main(["--out", str(tmp_path), "--tasks", "task", "--seeds", "0"]) == 0
    rows = {table_row(line)[1]: table_row(line) for line in capsys.readouterr().out.splitlines()[2:]}  # no header
    assert list(rows) == list(pooling.POOLINGS)
    assert rows["mean"][2] == "1.000 +- nan"  # the classes differ in their notes, which the CNN reads too
    assert rows["mean+notes"][2] == f"{written:.3f} +- nan" and written < 1.0
    assert rows["prior+notes"][2] == rows["mean+notes"][2]  # train.track_prior on; equal classes: no change
    assert rows["notes"][2] == rows["mean+notes"][2]  # the regression outweighs any clip here

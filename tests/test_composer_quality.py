"""The benchmark suite's own logic (its runs take hours and are not part of the tests)."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import yaml

from musicid.params import SECTIONS, parse_section
from tests.conftest import PROJECT_ROOT, load_benchmark

suite = load_benchmark("composer_quality")
PARAMS = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


def test_every_built_in_configuration_gives_valid_params():
    for name, overrides in suite.CONFIGS.items():
        params = suite.apply(PARAMS, overrides)
        for section in SECTIONS:
            parse_section(params[section], section, source=f"configuration {name}")
    assert PARAMS["train"]["epochs"] != 99 and suite.apply(PARAMS, {"train.epochs": 99})["train"]["epochs"] == 99
    assert PARAMS["train"]["epochs"] == yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["train"]["epochs"]
    assert suite.apply(PARAMS, {"render.augment.copies": 2})["render"]["augment"]["copies"] == 2
    with pytest.raises(SystemExit, match="no param render.augment.colour"):
        suite.apply(PARAMS, {"render.augment.colour": 1})


def test_configurations_from_the_command_line():
    assert suite.parse_config("wide:train.channels=[32, 64],train.lr=0.001") == (
        "wide", {"train.channels": [32, 64], "train.lr": 0.001})
    assert suite.parse_config("default") == ("default", suite.CONFIGS["default"])
    with pytest.raises(SystemExit, match="unknown configuration"):
        suite.parse_config("nope")
    with pytest.raises(SystemExit, match="is not section.key=value"):
        suite.parse_config("bad:epochs=3")
    with pytest.raises(SystemExit, match="no param train.epoch"):
        suite.apply(PARAMS, {"train.epoch": 3})


def test_mean_and_sample_sd():
    assert suite.mean_sd([0.5, 0.7, 0.9]) == pytest.approx((0.7, 0.2))
    mean, sd = suite.mean_sd([0.8])
    assert mean == 0.8 and math.isnan(sd)


def test_a_configuration_can_change_what_a_task_renders_with():
    quartets = suite.TASKS["quartets"]
    assert suite.task_params(quartets, PARAMS, {})["render"]["program"] == 40  # the task's one violin
    assert suite.task_params(quartets, PARAMS, suite.CONFIGS["instruments"])["render"]["program"] is None
    assert suite.task_params(suite.TASKS["default-piano"], PARAMS, {})["render"]["program"] == 0
    # The base params are left as they were.
    assert PARAMS["render"]["program"] is None


def _metrics(track: float, clip: float) -> dict:
    return {"test": {"track": {"macro_f1": track, "balanced_accuracy": track},
                     "clip": {"macro_f1": clip, "balanced_accuracy": clip}},
            "track_pooling": {"mean": track, "log_mean": track - 0.1}}


def test_several_seeds_train_each_fold_once_each_and_a_fold_is_their_mean(monkeypatch, tmp_path):
    trained = []

    def train_and_evaluate(features, params, folder):
        seed, fold = params["train"]["seed"], params["split"]["fold"]
        trained.append((fold, seed, params["train"]["epochs"]))
        return _metrics(0.5 + 0.1 * fold + 0.01 * seed, 0.4 + 0.02 * seed), 60.0

    monkeypatch.setattr(suite, "prepare_data", lambda *a: (tmp_path / "audio", 120.0))
    monkeypatch.setattr(suite, "prepare_features", lambda *a: (tmp_path / "features.h5", 30.0))
    monkeypatch.setattr(suite, "train_and_evaluate", train_and_evaluate)
    args = argparse.Namespace(folds=2, seeds=[0, 2], epochs=3, max_per_class=0, out=tmp_path, jobs=1)
    row = suite.run_cell(suite.TASKS["lopsided"], "default", {}, args, PARAMS)

    assert trained == [(0, 0, 3), (0, 2, 3), (1, 0, 3), (1, 2, 3)]
    assert [f["track_macro_f1"] for f in row["folds"]] == pytest.approx([0.51, 0.61])
    assert [f["clip_macro_f1"] for f in row["folds"]] == pytest.approx([0.42, 0.42])
    assert [run["seed"] for run in row["folds"][0]["seeds"]] == [0, 2]
    assert row["folds"][1]["track_macro_f1_log_mean_pooling"] == pytest.approx(0.51)
    assert row["track_macro_f1"]["mean"] == pytest.approx(0.56)
    assert row["clip_macro_f1"] == {"mean": pytest.approx(0.42), "sd": pytest.approx(0.0)}
    assert row["clip_macro_f1_seed_sd"] == pytest.approx(math.sqrt(2 * 0.02 ** 2), abs=1e-4)
    # Data 2 min; each fold 0.5 min of features and two 1-minute trainings.
    assert row["minutes"] == pytest.approx(2 + 2 * 2.5)

    args.seeds = []  # the params' own seed, once
    trained.clear()
    row = suite.run_cell(suite.TASKS["lopsided"], "default", {}, args, PARAMS)
    assert trained == [(0, PARAMS["train"]["seed"], 3), (1, PARAMS["train"]["seed"], 3)]
    assert "clip_macro_f1_seed_sd" not in row


def _row(task: str, config: str, clips: list[float], tracks: list[float]) -> dict:
    folds = [{"fold": i, "clip_macro_f1": c, "track_macro_f1": t} for i, (c, t) in enumerate(zip(clips, tracks))]
    return {"task": task, "config": config, "seeds": [0], "folds": folds, "minutes": 1.0,
            **{metric: dict(zip(("mean", "sd"), suite.mean_sd([f[metric] for f in folds])))
               for metric in ("clip_macro_f1", "track_macro_f1")}}


def test_configurations_compare_fold_by_fold_with_the_tasks_first():
    rows = [_row("quartets", "default", [0.5, 0.6, 0.7], [0.6, 0.8, 1.0]),
            _row("quartets", "ema", [0.6, 0.6, 0.8], [0.6, 0.7, 1.0]),
            _row("lopsided", "ema", [0.9, 0.9, 0.9], [1.0, 1.0, 1.0])]
    [comparison] = suite.paired(rows)  # the lopsided row has nothing to compare with
    assert (comparison["config"], comparison["against"]) == ("ema", "default")
    assert comparison["clip_macro_f1"] == {"mean": pytest.approx(0.2 / 3, abs=1e-4),
                                           "sd": pytest.approx(math.sqrt(1 / 300), abs=1e-4),
                                           "better": 2, "worse": 0}
    assert comparison["track_macro_f1"]["better"] == 0 and comparison["track_macro_f1"]["worse"] == 1
    table = suite.format_table(rows, 3, suite.paired(rows))
    assert "quartets       ema          vs default      track -0.033 +- 0.058 (0/1), clip +0.067 +- 0.058 (2/0)" \
        in table


def test_a_param_at_its_off_value_keeps_the_cache_key_of_runs_made_before_it_existed(tmp_path):
    params = suite.apply(PARAMS, {"train.ema": 0.0, "train.keep": "best"})
    before = json.loads(json.dumps(params))
    del before["train"]["ema"], before["train"]["keep"]
    features = tmp_path / "features.h5"
    assert suite.run_key(features, params) == suite.run_key(features, before)
    assert suite.run_key(features, suite.apply(PARAMS, {"train.ema": 0.99})) != suite.run_key(features, before)
    assert suite.run_key(features, suite.apply(PARAMS, {"train.keep": "last"})) != suite.run_key(features, before)
    assert suite.run_key(features, suite.apply(PARAMS, {"train.seed": 1})) != suite.run_key(features, params)
    # evaluate.clip_audio at 0 names the clips as evaluate did before it: the runs of that time are the same runs.
    unmixed = suite.apply(params, {"evaluate.clip_audio": 0.0})
    before = json.loads(json.dumps(unmixed))
    del before["evaluate"]["clip_audio"]
    assert suite.run_key(features, unmixed) == suite.run_key(features, before)
    assert suite.run_key(features, suite.apply(params, {"evaluate.clip_audio": 0.5})) != suite.run_key(features, before)


def test_runs_of_other_training_code_are_not_taken_from_the_cache(tmp_path):
    """A run trained before the weight gradient's parts rounds differently: today's code trains it again,
    and the key of such a run stays what it was (its folder is still found by the readers of runs)."""
    features = tmp_path / "features.h5"
    old = suite.digest(str(features), suite.without_neutral(PARAMS["train"], suite.NEUTRAL_TRAIN), PARAMS["evaluate"])
    assert suite.run_key(features, PARAMS, code=1) == old != suite.run_key(features, PARAMS)


def fake_stages(monkeypatch, calls: list) -> None:
    """Stages that write what the suite reads: train a model file (its bytes name the seed), evaluate a
    clip macro-F1 of the clip_audio share; train takes 10 s and evaluate 2 s."""
    def run_stage(name, arguments, folder, jobs=None):
        calls.append((name, folder.parent.parent.name))
        params = yaml.safe_load((folder / "params.yaml").read_text())
        if name == "train":
            model = arguments[arguments.index("--model") + 1]
            model.write_bytes(f"seed {params['train']['seed']}".encode())
            return 10.0
        metrics = {"test": {"clip": {"macro_f1": params["evaluate"]["clip_audio"]}, "track": {"macro_f1": 1.0}}}
        (folder / "metrics.json").write_text(json.dumps(metrics))
        (folder / "per_class.json").write_text(json.dumps({"test": {}}))
        return 2.0

    monkeypatch.setattr(suite, "run_stage", run_stage)


def test_a_configuration_that_changes_evaluate_alone_evaluates_the_model_already_trained(monkeypatch, tmp_path):
    calls = []
    fake_stages(monkeypatch, calls)
    features = tmp_path / "features.h5"
    task = tmp_path / "quartets"
    unmixed = suite.apply(PARAMS, {"evaluate.clip_audio": 0.0})
    mixed = suite.apply(PARAMS, {"evaluate.clip_audio": 0.5})
    assert suite.train_and_evaluate(features, unmixed, task / "nomix" / "fold0")[1] == 12.0
    assert calls == [("train", "nomix"), ("evaluate", "nomix")]
    calls.clear()
    metrics, seconds = suite.train_and_evaluate(features, mixed, task / "default" / "fold0")
    assert calls == [("evaluate", "default")]  # no second training
    assert metrics["test"]["clip"]["macro_f1"] == 0.5 and seconds == 12.0  # the training's seconds and its own
    trained = task / "nomix" / "fold0" / suite.run_key(features, unmixed) / "model.pt"
    reused = task / "default" / "fold0" / suite.run_key(features, mixed) / "model.pt"
    assert reused.read_bytes() == trained.read_bytes() == b"seed 0"
    # Another fold, or another train param, trains its own model.
    calls.clear()
    suite.train_and_evaluate(features, suite.apply(mixed, {"train.seed": 1}), task / "default" / "fold0")
    suite.train_and_evaluate(features, mixed, task / "default" / "fold1")
    assert calls == [("train", "default"), ("evaluate", "default")] * 2


def test_a_model_is_reused_only_from_a_finished_run_and_from_the_runs_before_train_json(monkeypatch, tmp_path):
    calls = []
    fake_stages(monkeypatch, calls)
    features = tmp_path / "features.h5"
    fold = tmp_path / "quartets" / "old" / "fold0"
    unmixed = suite.apply(PARAMS, {"evaluate.clip_audio": 0.0})
    mixed = suite.apply(PARAMS, {"evaluate.clip_audio": 0.5})
    # A run killed during its evaluation (a model, no seconds.json) gives no model.
    killed = fold / suite.run_key(features, unmixed)
    killed.mkdir(parents=True)
    (killed / "model.pt").write_bytes(b"half")
    assert suite.trained_model(features, mixed, tmp_path / "quartets" / "default" / "fold0") is None
    # A finished run of the time before train.json, named by the key of its (off) evaluate params, gives its
    # model and its seconds (training and evaluation together).
    (killed / "seconds.json").write_text(json.dumps({"seconds": 30.0}))
    assert suite.trained_model(features, mixed, tmp_path / "quartets" / "default" / "fold0") == (
        killed / "model.pt", 30.0)
    metrics, seconds = suite.train_and_evaluate(features, mixed, tmp_path / "quartets" / "default" / "fold0")
    assert calls == [("evaluate", "default")] and seconds == 32.0


def test_a_seed_given_twice_is_refused(capsys, monkeypatch, tmp_path):
    def run_cell(*_):
        raise AssertionError("the suite ran")

    monkeypatch.setattr(suite, "run_cell", run_cell)
    with pytest.raises(SystemExit):
        suite.main(["--seeds", "0", "0", "--out", str(tmp_path / "out")])
    assert "--seeds: a seed is given twice" in capsys.readouterr().err


def test_every_configuration_is_checked_before_any_work(capsys, monkeypatch, tmp_path):
    def run_cell(*_):
        raise AssertionError("the suite ran")

    monkeypatch.setattr(suite, "run_cell", run_cell)
    with pytest.raises(SystemExit, match="no param train.epochz"):  # the first configuration is fine
        suite.main(["--configs", "default", "x:train.epochz=3", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match=r"configuration 'x': the value of train.channels is not YAML \('\[8,16'"):
        suite.main(["--configs", "x:train.channels=[8,16", "--out", str(tmp_path / "out")])
    (tmp_path / "file").write_text("")
    capsys.readouterr()
    for arguments, message in ((["--out", str(tmp_path / "file")], "is a file, not a folder"),
                               (["--params", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "out")],
                                "params file not found"),
                               # The tasks hold no folders: grouped by folder, each track would be alone.
                               (["--configs", "default", "works:split.group=folder", "--out", str(tmp_path / "out")],
                                "--configs works: split.group folder: the suite lays each task out one file a "
                                "track")):
        with pytest.raises(SystemExit):
            suite.main(arguments)
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_task_is_converted_again_when_a_dataset_param_its_conversion_reads_changes(tmp_path, monkeypatch):
    """dataset.timeout_s (say) changes which scores music21 converts: the data folder must differ."""
    folders = []

    def cached(folder, work):
        folders.append(folder.name)
        return 0.0

    monkeypatch.setattr(suite, "cached", cached)
    task = suite.TASKS["default-piano"]
    for overrides in ({}, {"dataset.timeout_s": 1}, {}):
        suite.prepare_data(task, suite.task_params(task, PARAMS, overrides), 0, tmp_path, 1)
    assert folders[0] != folders[1] and folders[0] == folders[2]



def test_a_fold_without_a_notes_figure_has_none_to_average(tmp_path):
    """evaluate writes track_pooling.notes null when no test track had notes (a mixed MIDI/audio collection):
    that fold gives no notes figure, rather than a None the fold's mean cannot take."""
    params = {"train": {"seed": 0}, "evaluate": {"batch_size": 64}}
    poolings = []
    for fold, notes in enumerate((None, 0.75)):
        folder = tmp_path / f"fold{fold}" / suite.run_key(tmp_path / "features.h5", params)  # where the run is kept
        folder.mkdir(parents=True)
        (folder / "seconds.json").write_text(json.dumps({"seconds": 1.0}))  # done: read back, not run
        (folder / "metrics.json").write_text(json.dumps({"test": {"track": {"macro_f1": 0.5}}}))
        (folder / "per_class.json").write_text(json.dumps(
            {"test": {"track_pooling": {"used": "mean and the notes' regression", "mean": 0.5, "notes": notes,
                                        "notes_tracks": "1 of 2 (the tracks with notes)"}}}))
        metrics, _ = suite.train_and_evaluate(tmp_path / "features.h5", params, folder.parent)
        poolings.append(metrics["track_pooling"])
    assert poolings == [{"mean": 0.5}, {"mean": 0.5, "notes": 0.75}]
    runs = [{f"track_macro_f1_{way}_pooling": f1 for way, f1 in pooling.items()} for pooling in poolings]
    assert suite.fold_figures(runs) == {"track_macro_f1_mean_pooling": 0.5}  # notes: not in every run


def test_quartets_leaves_its_excluded_works_out_of_the_collection(tmp_path, monkeypatch):
    """The works a task excludes by name (the two slow Beethoven scores, K. 545) never reach its collection,
    whatever the conversion kept: the task holds the same tracks on every machine."""
    works = {"haydn": ["haydn/opus1no1/movement1.mxl"],
             "mozart": ["mozart/k80/movement1.mxl", "mozart/k545/movement1_exposition.mxl"],
             "beethoven": ["beethoven/opus18no1/movement1.mxl", "beethoven/opus18no4.mxl", "beethoven/opus74.mxl"]}
    collected = []

    def fake_stage(name, arguments, folder, jobs=None):  # the conversion keeps every work; nothing is run
        params = yaml.safe_load((folder / "params.yaml").read_text())
        out = arguments[arguments.index("--out") + 1]
        if name == "download" and params["dataset"]["source"] == "music21":
            [composer] = params["dataset"]["classes"]
            records = []
            for origin in works[composer]:
                path = f"{composer}/{origin.split('/', 1)[1].replace('/', '__').replace('.mxl', '.mid')}"
                (out / path).parent.mkdir(parents=True, exist_ok=True)
                (out / path).write_bytes(b"MThd")
                records.append({"path": path, "origin": f"music21:{origin}"})
            (out / "manifest.json").write_text(json.dumps({"files": records}))
        elif name == "download":
            collection = folder / "collection"
            collected.extend(sorted(p.relative_to(collection).as_posix() for p in collection.rglob("*.mid")))
        return 0.0

    monkeypatch.setattr(suite, "run_stage", fake_stage)
    task = suite.TASKS["quartets"]
    flat, _ = suite.prepare_data(task, suite.task_params(task, PARAMS, {}), 0, tmp_path, 1)
    assert collected == ["beethoven/opus18no1__movement1.mid", "haydn/opus1no1__movement1.mid",
                         "mozart/k80__movement1.mid"]
    # Laid out by work (benchmarks/split_by_work.py): each movement in its work's folder, which download then
    # records for split.group folder; the same conversions, other data.
    collected.clear()
    by_work, _ = suite.prepare_data(task, suite.task_params(task, PARAMS, {}), 0, tmp_path, 1, works=True)
    assert collected == ["beethoven/opus18no1/movement1.mid", "haydn/opus1no1/movement1.mid",
                         "mozart/k80/movement1.mid"]
    assert by_work != flat and len(list(tmp_path.glob("quartets/corpus-*"))) == 3


def test_a_folds_figure_keeps_the_runs_digits():
    """A fold's figure is its runs' mean as evaluate wrote it (6 digits), not rounded again before the folds are
    averaged: two roundings would print 0.188 for a mean of 0.18746."""
    runs = [{"clip_macro_f1": 0.187458}, {"clip_macro_f1": 0.187462}]
    assert suite.fold_figures(runs) == {"clip_macro_f1": 0.18746}
    assert f"{suite.fold_figures(runs)['clip_macro_f1']:.3f}" == "0.187"


def test_a_run_finds_the_table_made_before_its_params_had_an_off_value_they_now_name(tmp_path):
    """A features table made before split.group existed is the one composer_quality reuses for today's runs
    (their key leaves split.group track out); the scripts that re-score runs find it too."""
    suite_runs = load_benchmark("suite_runs")
    old = {section: json.loads(json.dumps(PARAMS[section])) for section in ("clip", "split", "features")}
    del old["split"]["group"]
    table = tmp_path / "features-old"
    table.mkdir()
    (table / "params.yaml").write_text(yaml.safe_dump(old))
    (table / "features.h5").write_bytes(b"")
    other = tmp_path / "features-other"  # another split: not this run's
    other.mkdir()
    (other / "params.yaml").write_text(yaml.safe_dump({**old, "split": {**old["split"], "seed": 1}}))
    (other / "features.h5").write_bytes(b"")
    run = tmp_path / "default" / "fold0" / "r1"
    run.mkdir(parents=True)
    (run / "params.yaml").write_text(yaml.safe_dump(PARAMS))  # split.group: track, as written today
    assert suite_runs.find_table(tmp_path, run) == table / "features.h5"


def test_the_split_by_work_runs_the_quartets_without_haydn_in_folds_mozart_can_fill(capsys):
    by_work = load_benchmark("split_by_work")
    quartets = by_work.suite.TASKS["quartets"]  # its own import of the suite (another test file may load another)
    assert by_work.TASK.name == quartets.name and by_work.TASK.render == quartets.render  # its conversions shared
    assert by_work.TASK.classes == tuple(spec for spec in quartets.classes if spec.composer in ("mozart", "beethoven"))
    for folds in ("1", "5"):
        with pytest.raises(SystemExit) as stopped:
            by_work.main(["--folds", folds])
        assert stopped.value.code == 2
        assert "--folds must be 2 to 4" in capsys.readouterr().err

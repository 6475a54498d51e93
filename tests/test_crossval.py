"""k-fold params, and the summary of cross-validation experiments (`python -m musicid cv`)."""

from __future__ import annotations

import json
import subprocess

import pytest

from musicid.__main__ import main
from musicid.crossval import Run, format_summaries, group_runs, mean_sd, runs_from_exp_show, summarize
from musicid.params import ParamsError
from tests.conftest import section_params


@pytest.mark.parametrize("overrides, message", [
    ({"folds": 1}, r"split\.folds must be 0 \(one split by fractions\) or at least 2, got 1"),
    ({"folds": -1}, r"split\.folds must be >= 0, got -1"),
    ({"folds": 5, "fold": 5}, r"split\.fold must be < split\.folds \(5\), got 5"),
    ({"folds": 0, "fold": 2}, r"split\.fold must be 0 when split\.folds is 0 \(no cross-validation\), got 2"),
    ({"folds": 3, "fold": -1}, r"split\.fold must be >= 0, got -1"),
    ({"folds": 3, "fold": "1"}, r"split\.fold must be an integer, got '1'"),
])
def test_bad_fold_params_are_named(overrides, message):
    with pytest.raises(ParamsError, match=message):
        section_params("split", **overrides)


def test_fold_params_that_are_fine():
    assert section_params("split").folds == 0 and section_params("split").fold == 0  # the default: one split
    assert section_params("split", folds=5, fold=4).fold == 4
    # split.test is unused with folds, so val + test is not checked then; it still is without.
    assert section_params("split", folds=5, fold=0, val=0.5, test=0.6).val == 0.5
    with pytest.raises(ParamsError, match=r"split\.test must leave tracks to train on: "
                                          r"split\.val \+ split\.test must be < 1"):
        section_params("split", val=0.5, test=0.6)


SCORES = ("test.track.macro_f1", "test.clip.macro_f1", "test.track.balanced_accuracy", "test.clip.balanced_accuracy")


def run(name, fold, scores, lr=0.01, folds=3, timestamp="2025-01-01T00:00:00"):
    """A scored run: scores are (track F1, clip F1, track balanced accuracy, clip balanced accuracy)."""
    params = {"split.folds": folds, "split.fold": fold, "split.seed": 0, "train.lr": lr}
    return Run(name=name, rev=f"{name}0000", timestamp=timestamp, params=params,
               metrics=dict(zip(SCORES, scores)) if scores else {})


def test_mean_and_sample_standard_deviation():
    assert mean_sd([0.5, 0.7, 0.9]) == pytest.approx((0.7, 0.2), abs=1e-12)
    assert mean_sd([1.0, 1.0]) == (1.0, 0.0)
    assert mean_sd([0.25]) == (0.25, None)


def test_runs_are_grouped_by_every_param_but_the_fold():
    runs = [
        run("a0", 0, (0.6, 0.5, 0.6, 0.5)), run("a1", 1, (0.8, 0.6, 0.7, 0.5)), run("a2", 2, (1.0, 0.7, 0.8, 0.5)),
        # Fold 1 of the same params, run again later with other scores: the newest is used.
        run("a1again", 1, (0.9, 0.6, 0.7, 0.5), timestamp="2025-01-02T00:00:00"),
        run("b0", 0, (0.5, 0.4, 0.5, 0.4), lr=0.001), run("b1", 1, (0.7, 0.4, 0.5, 0.4), lr=0.001),
        run("queued", 2, None, lr=0.001),  # no scores yet
        run("single", 0, (0.9, 0.9, 0.9, 0.9), folds=0),  # one split by fractions: not a fold
    ]
    groups, left_out = group_runs(runs)
    assert [r.name for r in left_out] == ["queued", "single"]
    assert [g.params["train.lr"] for g in groups] == [0.01, 0.001]
    assert "split.fold" not in groups[0].params and groups[0].folds == 3

    first = summarize(groups[0])
    assert first["folds_present"] == [0, 1, 2] and first["missing_folds"] == []
    assert first["duplicates"] == {"1": ["a1again", "a1"]}
    assert [row["experiment"] for row in first["per_fold"]] == ["a0", "a1again", "a2"]
    assert first["mean"]["test.track.macro_f1"] == pytest.approx(2.5 / 3, abs=1e-12)
    # sd of 0.6, 0.9, 1.0 (n - 1): sqrt((0.0544... + 0.0044... + 0.0277...) / 2)
    assert first["sd"]["test.track.macro_f1"] == pytest.approx(0.2081665999, abs=1e-9)
    assert first["mean"]["test.clip.macro_f1"] == pytest.approx(0.6, abs=1e-12)
    assert first["sd"]["test.clip.macro_f1"] == pytest.approx(0.1, abs=1e-12)
    assert first["mean"]["test.clip.balanced_accuracy"] == 0.5 and first["sd"]["test.clip.balanced_accuracy"] == 0
    assert first["warnings"] == ["fold 1 was run 2 times (a1again, a1): the newest, a1again, is used"]

    second = summarize(groups[1])
    assert second["folds_present"] == [0, 1] and second["missing_folds"] == [2]
    assert second["mean"]["test.track.macro_f1"] == pytest.approx(0.6, abs=1e-12)
    assert second["sd"]["test.track.macro_f1"] == pytest.approx(0.1414213562, abs=1e-9)
    assert second["warnings"] == ["folds [2] of 3 have no scored run: the mean is over 2 folds"]


def test_a_number_written_as_int_or_float_is_one_configuration():
    """`-S clip.clip_seconds=4` on one fold, params.yaml's 4.0 on the others: the same runs."""
    runs = [run(f"a{fold}", fold, (0.8, 0.6, 0.7, 0.5)) for fold in range(3)]
    for fold, seconds in enumerate((4.0, 4.0, 4)):
        runs[fold].params["clip.clip_seconds"] = seconds
    groups, left_out = group_runs(runs)
    assert left_out == [] and len(groups) == 1 and list(groups[0].by_fold) == [0, 1, 2]
    runs[2].params["clip.clip_seconds"] = 4.5  # a different number is a different configuration
    assert len(group_runs(runs)[0]) == 2


def test_the_table():
    groups, _ = group_runs([run("x0", 0, (0.5, 0.25, 0.5, 0.25), folds=2), run("x1", 1, (0.75, 0.5, 1.0, 0.25),
                                                                               folds=2)])
    text = format_summaries([summarize(groups[0])], ["train.lr"])
    assert text.splitlines() == [
        "split.folds=2, train.lr=0.01: 2 of 2 folds",
        " " * 24 + "            track.macro_f1             clip.macro_f1   track.balanced_accuracy"
                   "    clip.balanced_accuracy",
        "  fold 0 x0             " + "                    0.5000" + "                    0.2500"
        + "                    0.5000" + "                    0.2500",
        "  fold 1 x1             " + "                    0.7500" + "                    0.5000"
        + "                    1.0000" + "                    0.2500",
        "  mean +- sd            " + "          0.6250 +- 0.1768" + "          0.3750 +- 0.1768"
        + "          0.7500 +- 0.3536" + "          0.2500 +- 0.0000",
    ]


# What `dvc exp show --json` (dvc 3.67) printed for a commit with one finished and one queued fold
# experiment, trimmed to the keys that are read (plus a few that are not, to keep its shape).
EXP_SHOW = [
    {"rev": "workspace", "name": None, "error": None, "experiments": None, "data": {
        "rev": "workspace", "timestamp": None,
        "params": {"params.yaml": {"data": {"split": {"folds": 2, "fold": 0}, "train": {"lr": 0.01}}}},
        "metrics": {"metrics/metrics.json": {"error": {"type": "FileNotFoundError", "msg": "[Errno 2] ..."}}},
        "deps": {}, "outs": {}, "meta": {}}},
    {"rev": "811da310453dd6cb69bc862a54f5b5de96b4495a", "name": "master", "error": None, "data": {
        "rev": "811da310453dd6cb69bc862a54f5b5de96b4495a", "timestamp": "2026-11-22T06:25:37",
        "params": {"params.yaml": {"data": {"split": {"folds": 0, "fold": 0}, "train": {"lr": 0.01}}}},
        "metrics": {"metrics/metrics.json": {"data": {"test": {
            "track": {"macro_f1": 0.5, "balanced_accuracy": 0.25}, "clip": {"macro_f1": 0.125,
                                                                            "balanced_accuracy": 0.125}}}}},
        "deps": {}, "outs": {}, "meta": {}},
     "experiments": [
         {"name": "good", "executor": None, "revs": [
             {"rev": "5648e9ad7df3f0e2466dbc839ed8f0199786a6f7", "name": "good", "error": None, "experiments": None,
              "data": {"rev": "5648e9ad7df3f0e2466dbc839ed8f0199786a6f7", "timestamp": "2026-11-22T06:25:39",
                       "params": {"params.yaml": {"data": {"split": {"folds": 2, "fold": 1},
                                                           "train": {"lr": 0.01}}}},
                       "metrics": {"metrics/metrics.json": {"data": {"test": {
                           "track": {"macro_f1": 0.75, "balanced_accuracy": 0.5},
                           "clip": {"macro_f1": 0.5, "balanced_accuracy": 0.375}}, "val": {"track": {
                               "macro_f1": 1.0}}}}},
                       "deps": {}, "outs": {}, "meta": {}}}]},
         {"name": "waiting", "executor": {"state": "queued", "name": "dvc-task", "local": {"pid": None}}, "revs": [
             {"rev": "815b5e05f70e19fafa2a23c6bf5451e0b21e42d4", "name": "waiting", "error": None,
              "experiments": None,
              "data": {"rev": "815b5e05f70e19fafa2a23c6bf5451e0b21e42d4", "timestamp": "2026-11-22T06:25:42",
                       "params": {"params.yaml": {"data": {"split": {"folds": 2, "fold": 0},
                                                           "train": {"lr": 0.01}}}},
                       "metrics": {}, "deps": {}, "outs": {}, "meta": {}}}]},
     ]},
]


def test_exp_show_json_is_read_into_runs():
    runs = runs_from_exp_show(EXP_SHOW)
    assert [(r.name, r.state) for r in runs] == [("master", None), ("good", None), ("waiting", "queued")]
    good = runs[1]
    assert good.rev == "5648e9ad7df3f0e2466dbc839ed8f0199786a6f7" and good.timestamp == "2026-11-22T06:25:39"
    assert good.params == {"split.folds": 2, "split.fold": 1, "train.lr": 0.01}
    assert good.metrics == {"test.track.macro_f1": 0.75, "test.track.balanced_accuracy": 0.5,
                            "test.clip.macro_f1": 0.5, "test.clip.balanced_accuracy": 0.375,
                            "val.track.macro_f1": 1.0}
    assert runs[2].metrics == {}
    with pytest.raises(ValueError, match="not a list of revisions"):
        runs_from_exp_show({"rev": "workspace"})


def fake_dvc(monkeypatch, stdout: str, returncode: int = 0, stderr: str = ""):
    """Make `dvc exp show --json` print ``stdout``; the command line it was called with is recorded."""
    calls = []

    def fake_run(args, **kwargs):
        calls.append(args)
        if args[:3] == ["dvc", "exp", "list"]:  # no experiment on another commit
            return subprocess.CompletedProcess(args, 0, stdout="", stderr="")
        return subprocess.CompletedProcess(args, returncode, stdout=stdout, stderr=stderr)

    monkeypatch.setattr(subprocess, "run", fake_run)
    return calls


def test_cv_command_prints_json(monkeypatch, capsys):
    second = json.loads(json.dumps(EXP_SHOW))
    first_fold = second[1]["experiments"][1]
    first_fold["executor"] = None  # the queued fold, now finished
    first_fold["revs"][0]["data"]["metrics"] = {"metrics/metrics.json": {"data": {"test": {
        "track": {"macro_f1": 0.25, "balanced_accuracy": 0.5}, "clip": {"macro_f1": 0.5, "balanced_accuracy": 0.125}}}}}
    calls = fake_dvc(monkeypatch, json.dumps(second))
    assert main(["cv", "--json"]) == 0
    assert calls == [["dvc", "exp", "show", "--json"]]
    document = json.loads(capsys.readouterr().out)
    assert document["unscored"] == [] and document["unmatched"] == []
    [group] = document["groups"]
    assert group["folds_present"] == [0, 1] and group["params"] == {"split.folds": 2, "train.lr": 0.01}
    assert [(row["fold"], row["experiment"]) for row in group["per_fold"]] == [(0, "waiting"), (1, "good")]
    assert group["mean"] == {"test.track.macro_f1": 0.5, "test.clip.macro_f1": 0.5,
                             "test.track.balanced_accuracy": 0.5, "test.clip.balanced_accuracy": 0.25}
    assert group["sd"]["test.track.macro_f1"] == pytest.approx(0.3535533906, abs=1e-9)
    assert group["sd"]["test.clip.macro_f1"] == 0.0


def test_cv_command_names_what_is_missing(monkeypatch, capsys):
    fake_dvc(monkeypatch, json.dumps(EXP_SHOW))
    assert main(["cv", "good", "nosuch"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "split.folds=2: 1 of 2 folds"
    assert "  warning: folds [0] of 2 have no scored run: the mean is over 1 fold" in out.splitlines()
    assert err.splitlines() == ["cv: nosuch names no experiment or revision of `dvc exp show`"]

    # Fold 0 still in the queue: the figures are over 1 of 2 folds, and the exit code says so.
    assert main(["cv"]) == 1
    assert capsys.readouterr().err.splitlines() == ["cv: not scored: waiting (split.fold 0): queued"]

    assert main(["cv", "master"]) == 1  # a commit with one split by fractions is not a cross-validation
    assert capsys.readouterr().err.splitlines() == [
        "cv: no scored experiment with split.folds >= 2; run the folds with `dvc exp run --queue "
        "-S split.folds=5 -S 'split.fold=range(5)'` and `dvc queue start`"]


def test_cv_command_when_dvc_fails(monkeypatch, capsys):
    fake_dvc(monkeypatch, "", returncode=255, stderr="ERROR: you are not inside of a DVC repository\n")
    assert main(["cv"]) == 2
    assert capsys.readouterr().err == "cv: `dvc exp show --json` exited 255: ERROR: you are not inside of a DVC " \
                                      "repository\n"
    fake_dvc(monkeypatch, "not json")
    assert main(["cv"]) == 2
    assert capsys.readouterr().err.startswith("cv: cannot read the output of `dvc exp show --json`: Expecting value")


def test_a_failed_fold_is_not_scored_with_its_baselines_scores(monkeypatch, capsys):
    """dvc exp show gives a failed queued run the files of its baseline commit, the committed metrics included:
    those are not the fold's scores, and a newer failed run must not replace the fold's good one."""
    shown = json.loads(json.dumps(EXP_SHOW))
    failed = json.loads(json.dumps(shown[1]["experiments"][0]))  # a second run of fold 1, newer, that failed
    failed["name"] = failed["revs"][0]["name"] = "crashed"
    failed["executor"] = {"state": "failed", "name": None, "local": None}
    failed["revs"][0]["data"]["timestamp"] = "2026-11-22T07:00:00"
    failed["revs"][0]["data"]["metrics"] = shown[1]["data"]["metrics"]  # the baseline's
    shown[1]["experiments"].append(failed)
    fake_dvc(monkeypatch, json.dumps(shown))
    assert main(["cv", "--json"]) == 1  # fold 0 has no scored run
    document = json.loads(capsys.readouterr().out)
    [group] = document["groups"]
    assert group["missing_folds"] == [0]
    assert [(row["fold"], row["experiment"]) for row in group["per_fold"]] == [(1, "good")]
    assert {(run["experiment"], run["state"]) for run in document["unscored"]} == {("waiting", "queued"),
                                                                                   ("crashed", "failed")}


@pytest.mark.parametrize("in_queue", [True, False])
def test_with_no_scored_fold_the_hint_depends_on_the_queue(monkeypatch, capsys, in_queue):
    """Folds still in the queue: wait for it (queueing them again would run them twice). A finished run that
    lacks a score (made by older code) is not in the queue: run the folds."""
    shown = json.loads(json.dumps(EXP_SHOW))
    del shown[1]["experiments"][0]  # only the fold without scores is left
    if not in_queue:
        shown[1]["experiments"][0]["executor"] = None
    fake_dvc(monkeypatch, json.dumps(shown))
    assert main(["cv"]) == 1
    hint = ("cv: no fold has scores yet; see `dvc queue status` (start the queue with `dvc queue start`, read why a "
            "fold failed with `dvc queue logs <experiment>`)" if in_queue else
            "cv: no scored experiment with split.folds >= 2; run the folds with `dvc exp run --queue -S split.folds=5 "
            "-S 'split.fold=range(5)'` and `dvc queue start`")
    assert capsys.readouterr().err.splitlines() == [
        f"cv: not scored: waiting (split.fold 0): {'queued' if in_queue else 'no scores'}", hint]


def test_runs_on_another_collection_or_code_are_another_group():
    """Folds run before and after files were added to the collection have the same params: averaged together,
    one fold's test tracks came from one split and the others' from another (some tested twice, some never).
    They read another data/raw, which keeps them apart; so does other code."""
    from musicid.crossval import differing_inputs, run_inputs

    def deps(raw: str, code: str = "c1") -> dict:
        return {"data/raw": {"hash": raw, "size": 1, "nfiles": 3}, "stages/clip.py": {"hash": code, "size": 9},
                "data/clips.h5": {"hash": f"per-fold-{raw}", "size": 5}}

    assert run_inputs(None) is None and run_inputs({}) is None
    assert run_inputs(deps("aaa.dir"))["data/raw"] == "aaa.dir"
    assert run_inputs(deps("aaa.dir")) != run_inputs(deps("aaa.dir", code="c2"))
    # data/clips.h5 differs from fold to fold: it is no input that keeps folds apart
    assert run_inputs(deps("aaa.dir")) == run_inputs({**deps("aaa.dir"), "data/clips.h5": {"hash": "x"}})
    old = [run(f"old{fold}", fold, (1.0, 1.0, 1.0, 1.0)) for fold in range(3)]
    new = [run("new0", 0, (0.5, 0.5, 0.5, 0.5), timestamp="2025-01-02T00:00:00")]
    for item in old:
        item.inputs = run_inputs(deps("11112222333.dir"))
    new[0].inputs = run_inputs(deps("99998888777.dir"))
    groups, _ = group_runs(new + old)
    assert [(list(group.by_fold), group.inputs["data/raw"]) for group in groups] == [
        ([0], "99998888777.dir"), ([0, 1, 2], "11112222333.dir")]
    assert differing_inputs(groups) == ["data/raw"]
    text = format_summaries([summarize(group) for group in groups], [], differing_inputs(groups))
    assert [line for line in text.splitlines() if line.startswith("split")] == [
        "split.folds=3, data/raw 99998888: 1 of 3 folds", "split.folds=3, data/raw 11112222: 3 of 3 folds"]
    # Other code (a comment edited before fold 2 was run again): one group, and a warning naming the folds.
    old[2].inputs = run_inputs(deps("11112222333.dir", code="c2"))
    groups, _ = group_runs(old)
    assert len(groups) == 1
    [warning] = summarize(groups[0])["warnings"]
    assert warning.startswith("the folds ran on different code (folds [0, 1] with code ") and \
        "; folds [2] with code " in warning


def test_experiments_of_other_commits_are_pointed_to(monkeypatch, capsys):
    """After a commit, `dvc exp show` lists the experiments of the new commit only: cv said "run the folds",
    as if the cross-validation were lost. It names the ones on other commits, which `cv -A` reads."""
    later = [{"rev": "workspace", "name": None, "error": None, "experiments": None, "data": EXP_SHOW[0]["data"]},
             {"rev": "a" * 40, "name": "master", "error": None, "experiments": [],
              "data": {**EXP_SHOW[1]["data"], "rev": "a" * 40}}]
    every = later + [EXP_SHOW[1]]
    calls = []

    def fake_run(args, **kwargs):
        calls.append(args)
        if args[:3] == ["dvc", "exp", "list"]:  # what `dvc exp list -A --name-only` prints
            return subprocess.CompletedProcess(args, 0, stdout="good\nwaiting\n", stderr="")
        return subprocess.CompletedProcess(args, 0, stdout=json.dumps(every if "-A" in args else later), stderr="")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert main(["cv"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "cv: no scored experiment with split.folds >= 2; run the folds with `dvc exp run --queue "
        "-S split.folds=5 -S 'split.fold=range(5)'` and `dvc queue start`",
        "cv: 2 experiments on other commits (`dvc exp list -A`): `python -m musicid cv -A` reads every commit's"]
    assert calls == [["dvc", "exp", "show", "--json"], ["dvc", "exp", "list", "-A", "--name-only"]]
    assert main(["cv", "-A"]) == 1  # fold 0 is still queued there
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "split.folds=2: 1 of 2 folds"


def test_a_held_out_class_named_as_its_folder_reads_or_as_its_label_is_one_configuration():
    """split reads `Élan Drones` as the label download gives it, `Élan_Drones` (musicid.params.SplitParams): the
    folds of either spelling are one group; another class held out is another."""
    runs = [run(f"h{fold}", fold, (0.8, 0.6, 0.7, 0.5)) for fold in range(3)]
    for fold, names in enumerate((["Élan Drones"], ["Élan_Drones"], ["E\u0301lan Drones"])):
        runs[fold].params["split.holdout_classes"] = names
    groups, left_out = group_runs(runs)
    assert left_out == [] and len(groups) == 1 and list(groups[0].by_fold) == [0, 1, 2]
    assert groups[0].params["split.holdout_classes"] == ["Élan_Drones"]
    runs[2].params["split.holdout_classes"] = ["Other"]
    assert len(group_runs(runs)[0]) == 2

"""The whole DAG through `dvc repro` on a tiny dataset, in a copy of the project."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from musicid.h5 import read_strings
from tests.conftest import PROJECT_ROOT

TINY = {
    "dataset": {"classes": ["bach", "monteverdi", "palestrina"], "max_per_class": 4},
    "render": {"sample_rate": 16000},
    "split": {"val": 0.25, "test": 0.25},
    "clip": {"clip_seconds": 2.0, "hop_seconds": 2.0, "max_clips_per_track": 4},
    "features": {"n_mels": 32, "hop_length": 256},
    "train": {"epochs": 1, "channels": [4, 8], "embedding_dim": 8, "batch_size": 8},
}


def _run(args: list[str], cwd: Path, exit_code: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "MUSICID_PROGRESS": "0", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == exit_code, f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def run(args: list[str], cwd: Path, exit_code: int = 0) -> str:
    """Run a command that must end with ``exit_code``; its stdout and stderr as one text."""
    result = _run(args, cwd, exit_code)
    return result.stdout + result.stderr


def run_json(args: list[str], cwd: Path, exit_code: int = 0):
    """Run a command that prints JSON on stdout (whatever it logs on stderr)."""
    return json.loads(_run(args, cwd, exit_code).stdout)


def set_params(project: Path, overrides: dict) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def changed_stages(project: Path) -> set[str]:
    return set(run_json(["dvc", "status", "--json"], project))


def dvc_outputs(project: Path) -> dict[str, bool]:
    """Every output of every stage in dvc.yaml (outs, metrics and plots) -> whether DVC caches it."""
    outputs = {}
    for stage in yaml.safe_load((project / "dvc.yaml").read_text())["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                path, options = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
                outputs[path] = options.get("cache", True)
    return outputs


def file_digests(root: Path, paths: list[str]) -> dict[str, str]:
    """sha256 of every file at or under each of ``paths`` (relative to ``root``), by relative path."""
    digests = {}
    for path in paths:
        target = root / path
        assert target.exists(), f"{target} is missing"
        files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
        for file in files:
            digests[file.relative_to(root).as_posix()] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def copy_project(project: Path) -> Path:
    """The pipeline's files (not its data or outputs) copied into the new folder ``project``."""
    project.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(PROJECT_ROOT / name, project / name)
    for folder in ("stages", "musicid"):
        shutil.copytree(PROJECT_ROOT / folder, project / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return project


def commit_and_repro(project: Path) -> str:
    """Make ``project`` a git and DVC repository, commit it, run `dvc repro`; what that printed."""
    run(["git", "init", "-q"], project)
    run(["dvc", "init", "-q"], project)
    run(["dvc", "config", "core.analytics", "false"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "project"], project)  # dvclive reads the current revision
    return run(["dvc", "repro"], project)


# The committed run is the first fold of two: `musicid cv` counts it, so the cross-validation test computes one
# fold, not two.
FOLDS = {"folds": 2, "fold": 0}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("e2e") / "project")
    set_params(project, {**TINY, "split": {**TINY["split"], **FOLDS}})
    commit_and_repro(project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "baseline"], project)
    return project


@pytest.fixture
def baseline(project) -> Path:
    """The project as committed after its first `dvc repro`, whatever an earlier test changed.

    Tests share one project (the pipeline runs once); each starts from the
    baseline so that they pass in any order, alone or together.
    """
    run(["git", "reset", "-q", "--hard", "HEAD"], project)
    if changed_stages(project):  # an output differs from dvc.lock: put the committed ones back
        run(["dvc", "checkout", "--force", "-q"], project)
        assert changed_stages(project) == set()
    return project


@pytest.mark.e2e
def test_every_output_exists_and_agrees(baseline):
    project = baseline
    manifest = json.loads((project / "data/raw/manifest.json").read_text())
    paths = [record["path"] for record in manifest["files"]]
    assert paths == sorted(paths) and len(paths) == 12
    assert {record["label"] for record in manifest["files"]} == {"bach", "monteverdi", "palestrina"}
    for record in manifest["files"]:
        assert (project / "data/raw" / record["path"]).stat().st_size == record["size"]

    report = json.loads((project / "data/audio/report.json").read_text())
    assert sorted(r["source"] for r in report["files"]) == paths
    rendered = [r for r in report["files"] if r["status"] == "rendered"]
    assert len(rendered) >= 9
    for record in report["files"]:
        assert (record["reason"] is None) == (record["status"] == "rendered")
        for output in record["outputs"]:
            assert (project / "data/audio" / output).is_file()

    clip_report = json.loads((project / "data/clips_report.json").read_text())
    assert sorted(clip_report["counts"]) == ["bach", "monteverdi", "palestrina"]

    with h5py.File(project / "data/clips.h5", "r") as clips, \
            h5py.File(project / "data/features.h5", "r") as features:
        assert clips["audio"].shape[1] == 2 * 16000
        assert clips.attrs["sample_rate"] == 16000
        n = clips["audio"].shape[0]
        assert features["features"].shape[:2] == (n, 32)
        tracks = clips["track"].asstr()[:]
        splits = clips["split"].asstr()[:]
        assert np.array_equal(features["track"].asstr()[:], tracks)
        assert np.array_equal(features["split"].asstr()[:], splits)
        # No track is on both sides of a split.
        for track in set(tracks):
            assert len(set(splits[tracks == track])) == 1, track
        assert set(splits) == {"train", "val", "test"}
        assert clip_report["clips"] == n
        assert sum(c["clips"] for label in clip_report["counts"].values() for c in label.values()) == n
        assert len(features.attrs["band_mean"]) == 32

    metrics = json.loads((project / "metrics/metrics.json").read_text())
    for split in ("val", "test"):
        for level in ("clip", "track"):
            for key in ("balanced_accuracy", "macro_f1"):
                assert 0.0 <= metrics[split][level][key] <= 1.0
                assert isinstance(metrics[split][level][key], float)
    confusion = json.loads((project / "metrics/confusion/test_track.json").read_text())
    per_class = json.loads((project / "metrics/per_class.json").read_text())
    n_tracks = per_class["test"]["track"]["n"]
    assert len(confusion) == n_tracks
    assert set(confusion[0]) == {"actual", "predicted"}
    assert (project / "models/model.pt").is_file()
    curves = project / "metrics/train/plots/metrics"
    assert sorted(p.name for p in curves.iterdir()) == [
        "lr.tsv", "train_accuracy.tsv", "train_loss.tsv", "val_accuracy.tsv", "val_macro_f1.tsv"]
    assert (curves / "val_macro_f1.tsv").read_text().startswith("step\tval_macro_f1\n1\t")
    novelty = (project / "metrics/novelty.csv").read_text().splitlines()
    assert novelty[0] == "track,label,known,novelty,novelty_cosine,novelty_mahalanobis"
    assert len(novelty) == 1 + n_tracks
    predictions = (project / "metrics/predictions.csv").read_text().splitlines()
    assert len(predictions) == 1 + n_tracks + per_class["val"]["track"]["n"]
    assert (project / "metrics/train/curves.png").is_file()
    figures = sorted(p.name for p in (project / "metrics/figures").iterdir())
    assert "confusion_test_track.png" in figures and "embeddings_test.png" in figures


@pytest.mark.e2e
def test_held_out_class_is_scored_as_unknown(baseline, tmp_path, capsys, monkeypatch):
    """clip -> featurize -> train -> evaluate with one class held out, on the baseline's renders (each stage's
    main called here: the baseline ran them as scripts, and a process apiece would only add start-up time)."""
    from tests.conftest import load_stage

    project = baseline
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["split"]["holdout_classes"] = ["palestrina"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    common = ["--params", str(tmp_path / "params.yaml")]
    data = project / "data"
    stages = [
        ("clip", ["--audio", str(data / "audio"), "--out", str(tmp_path / "clips.h5"),
                  "--report", str(tmp_path / "clips_report.json")]),
        ("featurize", ["--clips", str(tmp_path / "clips.h5"), "--out", str(tmp_path / "features.h5"),
                       "--render-report", str(data / "audio/report.json"), "--raw", str(data / "raw")]),
        ("train", ["--features", str(tmp_path / "features.h5"), "--model", str(tmp_path / "model.pt"),
                   "--live", str(tmp_path / "live")]),
        ("evaluate", ["--model", str(tmp_path / "model.pt"), "--features", str(tmp_path / "features.h5"),
                      "--metrics", str(tmp_path / "metrics.json"), "--per-class", str(tmp_path / "per_class.json"),
                      "--confusion", str(tmp_path / "confusion"), "--novelty", str(tmp_path / "novelty.csv"),
                      "--predictions", str(tmp_path / "predictions.csv"), "--figures", str(tmp_path / "figures")]),
    ]
    for name, arguments in stages:
        capsys.readouterr()
        assert load_stage(name).main([*common, *arguments]) == 0, name
    output = "".join(capsys.readouterr())  # evaluate's
    assert "novelty AUROC" in output
    with h5py.File(tmp_path / "features.h5", "r") as features:
        splits = read_strings(features["split"])
        known = features["known"][:]
    assert known[splits != "test"].all() and (~known).any() and set(splits[~known]) == {"test"}
    rows = [line.split(",") for line in (tmp_path / "novelty.csv").read_text().splitlines()[1:]]
    unknown_rows = [row for row in rows if row[2] == "false"]
    assert unknown_rows and {row[1] for row in unknown_rows} == {"palestrina"}
    assert 0.0 <= json.loads((tmp_path / "metrics.json").read_text())["open_set"]["auroc"] <= 1.0
    open_set = json.loads((tmp_path / "per_class.json").read_text())["open_set"]
    assert open_set["score"] == "cosine"  # train.novelty's default: tracks ranked by it, both reported
    assert open_set["notes_share"] == params["train"]["novelty_notes"] == 0.5  # both scores mixed with the notes'
    assert open_set["n_unknown"] == len(unknown_rows) and open_set["n_known"] == len(rows) - len(unknown_rows)
    assert open_set["auroc"] == open_set["cosine"]["auroc"] and 0.0 <= open_set["mahalanobis"]["auroc"] <= 1.0
    assert [row[3] for row in rows] == [row[4] for row in rows]  # novelty is novelty_cosine
    scores = [float(row[3]) for row in rows]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.e2e
def test_second_repro_runs_nothing(baseline):
    project = baseline
    output = run(["dvc", "repro"], project)
    assert "Running stage" not in output
    assert changed_stages(project) == set()


@pytest.mark.e2e
def test_a_misspelt_key_or_section_is_refused_not_left_up_to_date(baseline):
    """DVC reruns a stage only for a param it lists: `trian:` or `train.patiense` left `dvc repro` "up to date"
    with the value silently unused."""
    project = baseline
    params = project / "params.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("\ntrain:\n", "\ntrain:\n  patiense: 3\n", 1))
        assert changed_stages(project) == {"train", "evaluate"}  # train then refuses it (test_params)
        params.write_text(original + "\ntrian:\n  epochs: 3\n")
        assert changed_stages(project) == {"evaluate"}
        output = run(["dvc", "repro"], project, exit_code=255)
        assert "evaluate: params.yaml: unknown section 'trian': is it 'train'?" in output
    finally:
        params.write_text(original)
    assert changed_stages(project) == set()


@pytest.mark.e2e
def test_repro_of_one_stage_stops_there(baseline):
    project = baseline
    set_params(project, {"features": {"n_mels": 24}})
    output = run(["dvc", "repro", "featurize"], project)
    assert "Running stage 'featurize'" in output
    assert "Running stage 'train'" not in output
    assert changed_stages(project) == {"train", "evaluate"}
    with h5py.File(project / "data/features.h5", "r") as features:
        assert features["features"].shape[1] == 24


@pytest.mark.e2e
def test_predict_scores_files_and_reports_bad_ones(baseline, tmp_path):
    project = baseline
    from tests.conftest import write_midi

    good = sorted((project / "data/raw/bach").glob("*.mid"))[0]
    broken = tmp_path / "broken.mid"
    broken.write_bytes(b"MThd\x00\x00\x00\x06\x00")  # cut short
    empty = write_midi(tmp_path / "empty.mid", [])
    result = run_json([sys.executable, "-m", "musicid", "predict", str(good), str(broken), str(empty),
                       str(project / "data/raw/palestrina"), "--model", str(project / "models/model.pt"),
                       "--json", "--top", "2"], project, exit_code=1)
    files = {Path(f["path"]).name: f for f in result["files"]}
    assert files["broken.mid"]["error"].startswith("unparseable")
    assert files["empty.mid"]["error"].startswith("no_notes")
    scored = [f for f in result["files"] if f["error"] is None]
    assert len(scored) >= 4  # the bach file and the palestrina folder's files
    for entry in scored:
        names = [label["label"] for label in entry["labels"]]
        probabilities = [label["probability"] for label in entry["labels"]]
        assert len(set(names)) == 2 and set(names) <= {"bach", "monteverdi", "palestrina"}
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-4
        assert entry["novelty"] >= 0 and entry["clips"] > 0
        assert entry["symbolic"] is True  # MIDI files, and the default model reads their notes too
    text = run([sys.executable, "-m", "musicid", "predict", str(broken), str(good),
                "--model", str(project / "models/model.pt")], project, exit_code=1)
    assert f"{broken}: cannot score (unparseable" in text
    assert f"{good}: " in text and "novelty" in text


@pytest.mark.e2e
def test_predict_gives_a_collection_file_what_evaluate_gave_it(baseline):
    """predict renders, clips and featurizes as the stages did (16-bit WAV included): a val or test track's
    source gets the probabilities and novelty evaluate wrote for it, to the digits predictions.csv keeps."""
    import csv

    project = baseline
    rows = list(csv.DictReader((project / "metrics/predictions.csv").read_text().splitlines()))
    chosen = (rows[0], rows[-1])
    result = run_json([sys.executable, "-m", "musicid", "predict",
                       *(str(project / "data/raw" / row["track"]) for row in chosen),
                       "--model", str(project / "models/model.pt"), "--json", "--top", "9"], project)
    assert [Path(scored["path"]).name for scored in result["files"]] == [Path(row["track"]).name for row in chosen]
    for row, scored in zip(chosen, result["files"]):
        assert {label["label"]: label["probability"] for label in scored["labels"]} == \
            {name[2:]: float(value) for name, value in row.items() if name.startswith("p_")}
        assert scored["novelty"] == float(row["novelty"])


@pytest.mark.e2e
def test_predict_names_each_clip_of_a_collection_file_as_evaluate_names_it(baseline):
    """predict --clips: each clip of a test track's MIDI source starts where the table's clip does and gets the
    answer evaluate gives it at evaluate.clip_audio (the model with its notes, mixed with its audio alone)."""
    import torch

    from musicid.metrics import clip_answers
    from musicid.training import (AUDIO_ONLY, audio_only_stored, class_probabilities, load_checkpoint, normalise,
                                  read_symbolic_input, to_numpy)

    project = baseline
    model, checkpoint = load_checkpoint(project / "models/model.pt")
    centroids = to_numpy(checkpoint["centroids"])
    audio_centroids = to_numpy(checkpoint[f"{AUDIO_ONLY}centroids"]) if audio_only_stored(checkpoint) else centroids
    with h5py.File(project / "data/features.h5", "r") as table:
        tracks, splits = read_strings(table["track"]), read_strings(table["split"])
        track = sorted(set(tracks[splits == "test"]))[0]
        rows = np.nonzero(tracks == track)[0]
        rows = rows[np.argsort(table["offset_s"][rows], kind="stable")]
        starts = table["offset_s"][rows]
        features = normalise(table["features"][rows], to_numpy(checkpoint["band_mean"]),
                             to_numpy(checkpoint["band_std"]))
        symbolic = read_symbolic_input(table, rows, to_numpy(checkpoint["symbolic_mean"]),
                                       to_numpy(checkpoint["symbolic_std"]))
    names = list(checkpoint["label_names"])
    device = torch.device("cpu")
    with_notes = class_probabilities(model, features, centroids, 64, device, symbolic)[0]
    alone = class_probabilities(model, features, audio_centroids, 64, device)[0]
    has_notes = symbolic[:, -1] > 0
    assert has_notes.any() and not np.allclose(with_notes, alone)  # the mix is a mix
    for share in (0.5, 0.0):
        expected = clip_answers(with_notes, alone, has_notes, share)
        result = run_json([sys.executable, "-m", "musicid", "predict", str(project / "data/raw" / track), "--clips",
                           "--clip-audio", str(share), "--model", str(project / "models/model.pt"), "--json",
                           "--top", "9"], project)
        answers = result["files"][0]["clip_answers"]
        assert [answer["start_s"] for answer in answers] == pytest.approx(list(starts), abs=1e-3)
        for answer, row in zip(answers, expected):
            assert {label["label"]: label["probability"] for label in answer["labels"]} == pytest.approx(
                {name: row[index] for index, name in enumerate(names)}, abs=1e-5)
    text = run([sys.executable, "-m", "musicid", "predict", str(project / "data/raw" / track), "--clips",
                "--model", str(project / "models/model.pt"), "--top", "1"], project)
    clip_lines = [line for line in text.splitlines() if line.startswith("  ")]
    assert len(clip_lines) == len(rows) and clip_lines[0].startswith("  0:00.0  ")
    assert clip_lines[1].startswith(f"  0:{starts[1]:04.1f}  ")


@pytest.mark.e2e
def test_changing_a_param_reruns_its_stage_and_those_after_it_and_the_readme_way_back_restores_the_run(baseline):
    """A train param reruns train and evaluate, nothing before them; after such an experiment the README's way
    back (`git checkout params.yaml && dvc repro`) restores the committed params and outputs."""
    project = baseline
    committed = (project / "metrics/metrics.json").read_bytes()
    output = run(["dvc", "exp", "run", "-S", "train.epochs=2", "-S", "train.seed=1"], project)
    assert "Running stage 'train'" in output and "Running stage 'evaluate'" in output
    assert "Running stage 'featurize'" not in output
    assert changed_stages(project) == set()
    assert yaml.safe_load((project / "params.yaml").read_text())["train"]["epochs"] == 2
    diff = run_json(["dvc", "metrics", "diff", "--all", "--json"], project)
    assert "test.track.macro_f1" in diff["metrics/metrics.json"]
    run(["git", "checkout", "params.yaml"], project)
    assert changed_stages(project) == {"train", "evaluate"}  # evaluate: the whole file
    run(["dvc", "repro"], project)
    assert changed_stages(project) == set()
    assert (project / "metrics/metrics.json").read_bytes() == committed
    assert run(["git", "status", "--porcelain"], project) == ""


@pytest.mark.e2e
def test_cross_validation_counts_the_committed_fold_and_runs_the_other_as_an_experiment(baseline):
    """The committed run is fold 0 of 2 (FOLDS); fold 1 runs as an experiment, rerunning clip and the stages
    after it: every track is tested once, `cv` counts the commit as fold 0 and sums up exactly the two folds'
    scores, and `dvc exp show`, `dvc metrics diff` and `dvc plots diff` compare them."""
    project = baseline
    commit = run(["git", "branch", "--show-current"], project).strip()  # dvc exp show names the commit so
    scores, tested, all_tracks = [], [], set()
    for fold in range(2):
        if fold == 1:
            output = run(["dvc", "exp", "run", "-S", "split.folds=2", "-S", "split.fold=1", "-n", "fold1"], project)
            assert "Running stage 'clip'" in output and "Running stage 'download'" not in output
        assert json.loads((project / "data/clips_report.json").read_text())["excluded_classes"] == {}
        with h5py.File(project / "data/clips.h5", "r") as clips:
            tracks, splits = read_strings(clips["track"]), read_strings(clips["split"])
        assert set(splits) == {"train", "val", "test"}
        tested.append(set(tracks[splits == "test"]))
        all_tracks.update(tracks)
        metrics = json.loads((project / "metrics/metrics.json").read_text())
        scores.append({"test.track.macro_f1": metrics["test"]["track"]["macro_f1"],
                       "test.clip.balanced_accuracy": metrics["test"]["clip"]["balanced_accuracy"]})
    assert sum(len(t) for t in tested) == len(all_tracks) and set().union(*tested) == all_tracks
    assert all(len(t) >= 3 for t in tested)  # a test track of each class in every fold

    # Named: another test's experiment (train.epochs=2) is a fold 0 of another group of params.
    summary = run_json([sys.executable, "-m", "musicid", "cv", "--json", commit, "fold1"], project)
    [group] = summary["groups"]
    assert group["folds"] == 2 and group["folds_present"] == [0, 1] and group["warnings"] == []
    assert [row["experiment"] for row in group["per_fold"]] == [commit, "fold1"]
    for key in ("test.track.macro_f1", "test.clip.balanced_accuracy"):
        values = [fold_scores[key] for fold_scores in scores]
        assert [row[key] for row in group["per_fold"]] == values
        assert group["mean"][key] == pytest.approx(sum(values) / 2, abs=1e-12)
        assert group["sd"][key] == pytest.approx(float(np.std(values, ddof=1)), abs=1e-12)
    table = run([sys.executable, "-m", "musicid", "cv", commit, "fold1"], project)
    assert table.startswith("split.folds=2: 2 of 2 folds\n") and "mean +- sd" in table

    # The experiment is named: DVC shows it, and diffs and plots it beside the commit.
    shown = run_json(["dvc", "exp", "show", "--json"], project)
    folds_shown = {revision["name"]: revision["data"]["params"]["params.yaml"]["data"]["split"]["fold"]
                   for entry in shown for revision in [entry, *(revision for experiment in entry.get("experiments")
                                                                 or [] for revision in experiment.get("revs") or [])]
                   if revision.get("name") in (commit, "fold1")}
    assert folds_shown == {commit: 0, "fold1": 1}
    diff = run_json(["dvc", "metrics", "diff", commit, "fold1", "--all", "--json"], project)
    assert diff["metrics/metrics.json"]["test.track.macro_f1"]["old"] == scores[0]["test.track.macro_f1"]
    assert diff["metrics/metrics.json"]["test.track.macro_f1"]["new"] == scores[1]["test.track.macro_f1"]
    plots = run_json(["dvc", "plots", "diff", commit, "fold1", "--json"], project)["data"]
    confusion = [name for name in plots if "confusion/test_track.json" in name]
    assert confusion, sorted(plots)
    revisions = {revision for entry in plots[confusion[0]] for revision in entry["revisions"]}
    assert revisions == {commit, "fold1"}


@pytest.mark.e2e
def test_a_fresh_clone_pulls_the_results_from_a_remote(baseline, tmp_path):
    """Push to a local-directory remote, clone, pull: the clone has every output, byte for byte, and nothing to run."""
    project = baseline
    outputs = dvc_outputs(project)
    cached = sorted(path for path, is_cached in outputs.items() if is_cached)
    uncached = sorted(path for path, is_cached in outputs.items() if not is_cached)
    # DVC neither pushes nor pulls an output it does not cache: such outputs reach a clone through git.
    for path in uncached:
        assert run(["git", "ls-files", path], project).strip(), f"{path} is not committed to git"
    cached_files = file_digests(project, cached)
    directories = [path for path in cached if (project / path).is_dir()]
    # One object per distinct file, plus one listing per directory output.
    n_objects = len(set(cached_files.values())) + len(directories)

    remote = tmp_path / "remote"
    # The remote's address is committed (.dvc/config), as a team would do, so every clone knows where to pull from.
    run(["dvc", "remote", "add", "-d", "shared", str(remote)], project)
    run(["git", "commit", "-qm", "shared remote", ".dvc/config"], project)
    clone = tmp_path / "clone"
    try:
        not_in_remote = run_json(["dvc", "data", "status", "--not-in-remote", "--json"], project)["not_in_remote"]
        assert sorted(not_in_remote) == sorted(f"{path}/" if path in directories else path for path in cached)
        assert run_json(["dvc", "status", "--cloud", "--json"], project) == {
            path: "new" for path in [*cached_files, *directories]}
        assert run(["dvc", "push"], project) == f"{n_objects} files pushed\n"
        assert run(["dvc", "status", "--cloud"], project) == "Cache and remote 'shared' are in sync.\n"
        assert run_json(["dvc", "data", "status", "--not-in-remote", "--json"], project) == {}
        run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    finally:
        run(["git", "reset", "-q", "--hard", "HEAD~1"], project)

    assert changed_stages(clone) == set(yaml.safe_load((clone / "dvc.yaml").read_text())["stages"])
    pulled = run(["dvc", "pull"], clone).splitlines()
    assert sorted(pulled[:-1]) == sorted(f"A       {path}/" if path in directories else f"A       {path}"
                                         for path in cached)
    assert pulled[-1] == f"{n_objects} files fetched and {len(cached_files)} files added"
    # Up to date although every file in the clone is newer than its twin in the project: DVC compares hashes.
    assert (clone / "models/model.pt").stat().st_mtime_ns != (project / "models/model.pt").stat().st_mtime_ns
    assert changed_stages(clone) == set()
    assert run(["git", "status", "--porcelain"], clone) == ""
    assert file_digests(clone, cached + uncached) == file_digests(project, cached + uncached)

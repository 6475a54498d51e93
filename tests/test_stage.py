"""The shared exit path of the stage scripts."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

import pytest

from musicid.params import ParamsError
from musicid.stage import AFTER_STOP, StageError, run_stage
from tests.conftest import PROJECT_ROOT


@pytest.mark.parametrize("error, code, line", [
    (ParamsError("params.yaml: clip.clip_seconds must be > 0, got 0"), 2,
     "clip: params.yaml: clip.clip_seconds must be > 0, got 0\n"),
    (StageError("no clip at all: every track is shorter than clip.clip_seconds (4 s)"), 1,
     "clip: no clip at all: every track is shorter than clip.clip_seconds (4 s)\n"),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES), "data/clips.h5"), 1,
     "clip: data/clips.h5: Permission denied\n"),
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "data/clips.h5"), 1,
     "clip: data/clips.h5: No space left on device (the disk or the file size limit is full)\n"),
    # Written to a staging name: the output it stands for is named (the staging name meant nothing to a user).
    (OSError(errno.EROFS, os.strerror(errno.EROFS), "data/.raw.3504.s2flk8ah.tmp/bach/x.mid"), 1,
     "clip: data/raw/bach/x.mid: Read-only file system\n"),
    (KeyboardInterrupt(), 130, "clip: interrupted; " + AFTER_STOP + "\n"),
])
def test_failures_a_user_can_fix_are_one_line(error, code, line, capsys):
    def body():
        raise error

    assert run_stage("clip", body) == code
    captured = capsys.readouterr()
    assert captured.err == line and captured.out == ""


def test_success_and_bugs():
    assert run_stage("clip", lambda: None) == 0
    assert run_stage("clip", lambda: 3) == 3
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_stage("clip", lambda: 1 / 0)


def test_a_read_only_output_folder_is_one_line(tmp_path, capsys):
    """Root ignores permission bits, so the folder is made immutable (chattr +i), which binds root too."""
    import json
    import shutil
    import subprocess

    from tests.conftest import PROJECT_ROOT, load_stage

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "manifest.json").write_text(json.dumps({"files": [], "skipped": [], "unlabeled": []}))
    locked = tmp_path / "locked"
    locked.mkdir()
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(locked)]).returncode != 0:
        pytest.skip("this file system cannot make a folder read-only for root (chattr +i)")
    try:
        code = load_stage("render").main(["--params", str(PROJECT_ROOT / "params.yaml"), "--raw", str(raw),
                                          "--out", str(locked / "audio")])
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith("render: ") and captured.err.count("\n") == 1, captured.err
    assert "Operation not permitted" in captured.err and str(locked) in captured.err
    assert list(locked.iterdir()) == []


def previous_outputs(tmp_path):
    (tmp_path / "model.pt").write_text("old model")
    (tmp_path / "curves").mkdir()
    (tmp_path / "curves" / "loss.tsv").write_text("old curves")


def write_both(tmp_path):
    from musicid.stage import output_set

    with output_set() as outputs:
        (outputs.folder(tmp_path / "curves") / "loss.tsv").write_text("new curves")
        outputs.file(tmp_path / "model.pt").write_text("new model")


def test_a_sigterm_while_outputs_move_waits_until_the_set_is_in(tmp_path, monkeypatch, capsys):
    """train swapped its curves in, then wrote its model: a SIGTERM between left new curves beside an old
    model (and evaluate's six outputs half old, half new)."""
    import signal

    previous_outputs(tmp_path)
    real, moves = os.replace, []

    def replace(source, destination):
        if not moves:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives as the first output moves
        moves.append(destination)
        real(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    assert run_stage("train", lambda: write_both(tmp_path)) == 143
    assert (tmp_path / "model.pt").read_text() == "new model"
    assert (tmp_path / "curves" / "loss.tsv").read_text() == "new curves"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves", "model.pt"]
    assert capsys.readouterr().err == "train: terminated; " + AFTER_STOP + "\n"


def test_a_full_disk_while_outputs_are_written_leaves_every_one_as_it_was(tmp_path, monkeypatch, capsys):
    """A full disk writing the model (after the curves were in) left new curves beside the old model."""
    from pathlib import Path

    previous_outputs(tmp_path)
    real = Path.write_text

    def write_text(self, text, *args, **kwargs):
        if text == "new model":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    assert run_stage("train", lambda: write_both(tmp_path)) == 1
    monkeypatch.setattr(Path, "write_text", real)
    assert (tmp_path / "model.pt").read_text() == "old model"
    assert (tmp_path / "curves" / "loss.tsv").read_text() == "old curves"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves", "model.pt"]


@pytest.mark.parametrize("stage", ["download", "render", "clip", "featurize", "train", "evaluate"])
def test_a_stage_runs_the_code_of_its_own_copy_of_the_project(tmp_path, stage):
    """`dvc exp run --queue` runs the stages in a copy of the project (.dvc/tmp/exps/...): that copy's musicid
    must be imported, not the one the editable install points to (the workspace, edited meanwhile)."""
    copy = tmp_path / "copy"
    shutil.copytree(PROJECT_ROOT / "stages", copy / "stages")
    (copy / "musicid").mkdir()
    (copy / "musicid" / "__init__.py").write_text('raise SystemExit("the copy\'s musicid")\n')
    result = subprocess.run([sys.executable, str(copy / "stages" / f"{stage}.py"), "--help"], capture_output=True,
                            text=True, cwd=tmp_path)
    assert (result.returncode, result.stderr.strip()) == (1, "the copy's musicid")


@pytest.mark.parametrize("stage, arguments", [
    ("download", ["--out", "raw"]),
    ("clip", ["--audio", "audio", "--out", "clips.h5", "--report", "report.json"]),
    ("featurize", ["--clips", "clips.h5", "--out", "features.h5"]),
])
def test_a_negative_jobs_stops_every_parallel_stage_in_one_line(tmp_path, monkeypatch, capsys, stage, arguments):
    """Render refused --jobs -1; download, clip and featurize ran on one worker a core without a word."""
    from tests.conftest import load_stage

    monkeypatch.chdir(tmp_path)
    code = load_stage(stage).main(["--params", str(PROJECT_ROOT / "params.yaml"), *arguments, "--jobs", "-1"])
    assert code == 2
    assert capsys.readouterr().err == f"{stage}: --jobs must be >= 0 (0: one per core), got -1\n"
    assert list(tmp_path.iterdir()) == []  # nothing started


def test_musicid_jobs_sets_the_workers_dvc_repro_runs_with(monkeypatch, tmp_path, capsys):
    """`dvc repro` passes no --jobs: MUSICID_JOBS is how a user with long recordings asks for fewer workers."""
    from musicid.parallel import jobs_problem, resolve_jobs, where
    from tests.conftest import load_stage

    monkeypatch.setenv("MUSICID_JOBS", "1")
    assert resolve_jobs(0) == 1 and resolve_jobs(3) == 3 and where(0, None) == "1 local worker"
    monkeypatch.setenv("MUSICID_JOBS", "two")
    assert jobs_problem(0) == "MUSICID_JOBS must be a whole number of workers >= 1, got 'two'"
    monkeypatch.chdir(tmp_path)
    assert load_stage("clip").main(["--params", str(PROJECT_ROOT / "params.yaml"), "--audio", "audio", "--out",
                                    "clips.h5", "--report", "report.json"]) == 2
    assert capsys.readouterr().err == "clip: MUSICID_JOBS must be a whole number of workers >= 1, got 'two'\n"

"""The shared exit path of the stage scripts."""

from __future__ import annotations

import errno
import os

import pytest

from musicid.params import ParamsError
from musicid.stage import StageError, run_stage


@pytest.mark.parametrize("error, code, line", [
    (ParamsError("params.yaml: clip.clip_seconds must be > 0, got 0"), 2,
     "clip: params.yaml: clip.clip_seconds must be > 0, got 0\n"),
    (StageError("no clip at all: every track is shorter than clip.clip_seconds (4 s)"), 1,
     "clip: no clip at all: every track is shorter than clip.clip_seconds (4 s)\n"),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES), "data/clips.h5"), 1,
     "clip: data/clips.h5: Permission denied\n"),
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "data/clips.h5"), 1,
     "clip: data/clips.h5: No space left on device (the disk or the file size limit is full)\n"),
    (KeyboardInterrupt(), 130, "clip: interrupted; the previous outputs are left as they were\n"),
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

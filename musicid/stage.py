"""What the six stage scripts share: one exit path for the failures a user can fix.

A stage's work runs inside :func:`run_stage`, which turns them into one line on
stderr and an exit code, with no traceback:

* bad params (:class:`~musicid.params.ParamsError`): exit 2, the message names the key;
* a result that cannot be used, e.g. no clip at all (:class:`StageError`): exit 1,
  the message names the param or input to change;
* the file system refusing (a read-only output folder, a full disk, a missing
  input): exit 1, naming the file and the cause;
* Ctrl-C: exit 130; SIGTERM (``timeout``, ``kill``, a CI runner ending a job)
  the same way, exit 143.  Outputs are written under temporary names and moved
  into place only when complete, so an interrupted or failed stage leaves the
  previous outputs as they were, and removes its temporary files.

Anything else is a bug, and its traceback is shown.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

from musicid.io import atomic_directory, atomic_path, output_name
from musicid.params import ParamsError


class StageError(Exception):
    """The stage cannot go on; the message (one line) says why and what to change."""


def describe_os_error(error: OSError) -> str:
    """``<file>: <cause>`` for an error of the file system, in words a user knows."""
    cause = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        cause = f"{cause} (the disk or the file size limit is full)"
    # A staging file's name (".clips.h5.123.ab12cd34.tmp") is not one the user knows: the output it stands for is.
    names = [output_name(name) for name in (error.filename, getattr(error, "filename2", None)) if name]
    return f"{' -> '.join(names)}: {cause}" if names else cause


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the stage is, so that it unwinds (and cleans up) as for Ctrl-C."""


def _terminate(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second one must not cut the clean-up short
    raise Terminated


class OutputSet:
    """The outputs of a stage that go into place together (see :func:`output_set`)."""

    def __init__(self, stack: contextlib.ExitStack):
        self._stack = stack

    def file(self, target: str | Path) -> Path:
        """A temporary path to write ``target``'s bytes to."""
        return self._stack.enter_context(atomic_path(target))

    def folder(self, target: str | Path) -> Path:
        """A temporary folder to fill in place of ``target``."""
        return self._stack.enter_context(atomic_directory(target))

    def staged(self, staging: contextlib.AbstractContextManager[Path]) -> Path:
        """The temporary of another staging context (e.g. :func:`musicid.h5.staged_table`), moved with the set."""
        return self._stack.enter_context(staging)


@contextlib.contextmanager
def output_set() -> Iterator[OutputSet]:
    """Write several outputs into temporaries, then move them all into place at the block's end.

    Each output is written whole before any moves (a full disk stops the stage with every output as it was),
    and a Ctrl-C or SIGTERM arriving while they move (a rename each) waits until the last is in: a model never
    goes with the curves of another run, nor a confusion matrix with the metrics of another. An exception in
    the block removes the temporaries and leaves every output as it was.
    """
    pending: list[int] = []
    before: dict[int, object] = {}

    def hold(signum, frame) -> None:
        pending.append(signum)

    try:
        with contextlib.ExitStack() as stack:
            yield OutputSet(stack)
            if threading.current_thread() is threading.main_thread():
                before = {signum: signal.signal(signum, hold) for signum in (signal.SIGINT, signal.SIGTERM)}
        # The stack is unwound: every output moved into place, the last first.
    finally:
        for signum, handler in before.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    if signal.SIGTERM in pending:
        _terminate(signal.SIGTERM, None)
    if pending:
        raise KeyboardInterrupt


def run_stage(name: str, body: Callable[[], int | None]) -> int:
    """Run a stage's work; return its exit code, printing one line for a failure a user can fix."""
    if threading.current_thread() is not threading.main_thread():  # Python runs signal handlers there only
        return _run(name, body)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(name, body)
    finally:
        # None: a handler set outside Python, which cannot be put back; the default is the nearest.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


# Outputs are replaced only when complete, so a stopped stage leaves none half-written; but `dvc repro` removes
# a stage's outputs before it runs it (run directly, the previous ones stay).
AFTER_STOP = ("no output is left half-written (`dvc checkout` restores the previous ones, which `dvc repro` "
              "removes before it runs a stage)")


def _run(name: str, body: Callable[[], int | None]) -> int:
    try:
        return body() or 0
    except ParamsError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2
    except StageError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"{name}: {describe_os_error(error)}", file=sys.stderr)
        return 1
    except Terminated:
        print(f"{name}: terminated; {AFTER_STOP}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{name}: interrupted; {AFTER_STOP}", file=sys.stderr)
        return 130

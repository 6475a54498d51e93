"""Dask worker preload for the cluster tests: files that make a worker process die.

Loaded into every worker of a test's ``LocalCluster`` (``preload=[this file]``),
it wraps :func:`musicid.render.load_source`, which every render and decode
goes through:

* a source whose bytes hold ``POISON`` ends the worker process at once,
  every time: the file FluidSynth crashes on;
* a source holding ``CRASH_ONCE`` ends the worker process the first time only
  (the first worker to read it creates ``$MUSICID_TEST_CRASH_MARKER``), as a
  worker lost in the middle of a file for a reason of its own would;
* a source holding ``SLOW`` sleeps ``SLOW_SECONDS`` first, to leave the test
  time to take the scheduler away.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

POISON = b"musicid-test: end this worker"
CRASH_ONCE = b"musicid-test: end the first worker"
SLOW = b"musicid-test: slow file"
SLOW_SECONDS = 30.0
MARKER_ENV = "MUSICID_TEST_CRASH_MARKER"


def dask_setup(worker) -> None:  # noqa: ARG001 - the preload hook's signature
    from musicid import render

    original = render.load_source

    def load_source(renderer, path, params):
        data = Path(path).read_bytes()
        if POISON in data:
            os._exit(13)
        if CRASH_ONCE in data:
            marker = Path(os.environ[MARKER_ENV])
            try:
                marker.open("x").close()
            except FileExistsError:
                pass
            else:
                os._exit(13)
        if SLOW in data:
            time.sleep(SLOW_SECONDS)
        return original(renderer, path, params)

    render.load_source = load_source

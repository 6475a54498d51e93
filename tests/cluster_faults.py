"""Dask worker preload for the cluster tests: files that make a worker process die.

Loaded into every worker of a test's ``LocalCluster`` (``preload=[this file]``),
it wraps :func:`musicid.render.load_source`, which every render and decode
goes through, and :func:`musicid.clips.load_mono`, which decodes each WAV the
clip stage cuts:

* a source whose bytes hold ``POISON`` ends the worker process at once,
  every time: the file FluidSynth crashes on;
* a source holding ``CRASH_ONCE`` ends the worker process the first time only
  (the first worker to read it creates ``$MUSICID_TEST_CRASH_MARKER``), as a
  worker lost in the middle of a file for a reason of its own would;
* a source holding ``SLOW`` sleeps ``SLOW_SECONDS`` first, to leave the test
  time to take the scheduler away;
* the music21 corpus score named by ``$MUSICID_TEST_POISON_SCORE`` (its path
  in the corpus) ends the worker process converting it, every time;
* with ``$MUSICID_TEST_FLUIDSYNTH`` set, the workers claim that FluidSynth
  version, as workers on a machine with another FluidSynth would; with
  ``$MUSICID_TEST_NUMPY``, that numpy version.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

POISON = b"musicid-test: end this worker"
CRASH_ONCE = b"musicid-test: end the first worker"
SLOW = b"musicid-test: slow file"
SLOW_SECONDS = 30.0
# A crash comes this long after the work began, as FluidSynth's would, in the middle of a file.  A
# worker process that dies within moments of starting races its nanny's start-up, which can then
# give up restarting it (distributed 2026.8): the stage would stop for want of workers.
CRASH_AFTER_S = 0.5
MARKER_ENV = "MUSICID_TEST_CRASH_DIR"  # where a CRASH_ONCE file's marker goes, one per content
POISON_SCORE_ENV = "MUSICID_TEST_POISON_SCORE"
FLUIDSYNTH_ENV = "MUSICID_TEST_FLUIDSYNTH"  # the FluidSynth version the workers claim to have
NUMPY_ENV = "MUSICID_TEST_NUMPY"  # the numpy version the workers claim to have


def crash_marker(data: bytes) -> Path:
    """The file the first worker to meet CRASH_ONCE ``data`` creates before it dies."""
    return Path(os.environ[MARKER_ENV]) / hashlib.sha256(data).hexdigest()[:16]


def crash() -> None:
    """End this worker process, a moment into the work."""
    time.sleep(CRASH_AFTER_S)
    os._exit(13)


def act_on(data: bytes) -> None:
    """End this process, or sleep, as the markers in ``data`` say."""
    if POISON in data:
        crash()
    if CRASH_ONCE in data:
        marker = crash_marker(data)
        try:
            marker.open("x").close()
        except FileExistsError:
            pass
        else:
            crash()
    if SLOW in data:
        time.sleep(SLOW_SECONDS)


def dask_setup(worker) -> None:  # noqa: ARG001 - the preload hook's signature
    from musicid import clips, dataset, render

    original = render.load_source

    def load_source(renderer, path, params, data=None, suffix=None):
        act_on(Path(path).read_bytes() if data is None else data)
        return original(renderer, path, params, data, suffix)

    render.load_source = load_source

    original_mono = clips.load_mono

    def load_mono(source, sample_rate):
        act_on(source)
        return original_mono(source, sample_rate)

    clips.load_mono = load_mono

    original_score = dataset.score_to_midi

    def score_to_midi(piece, timeout_s, **options):
        if piece.relative_path == os.environ.get(POISON_SCORE_ENV):
            crash()
        return original_score(piece, timeout_s, **options)

    dataset.score_to_midi = score_to_midi

    if os.environ.get(FLUIDSYNTH_ENV):
        from musicid import render_cache

        render_cache.fluidsynth_version = lambda: os.environ[FLUIDSYNTH_ENV]

    if os.environ.get(NUMPY_ENV):
        from musicid import cluster

        actual = cluster.environment_fingerprint()
        cluster.environment_fingerprint = lambda: {**actual, "numpy": os.environ[NUMPY_ENV]}
        # What the worker tells the scheduler as it registers, which distributed's own version check compares.
        import distributed.worker

        reported = distributed.worker.get_versions

        def get_versions(*args, **kwargs):
            versions = reported(*args, **kwargs)
            versions["packages"]["numpy"] = os.environ[NUMPY_ENV]
            return versions

        distributed.worker.get_versions = get_versions

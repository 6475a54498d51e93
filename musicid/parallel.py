"""Per-file work spread over worker processes, results returned in input order."""

from __future__ import annotations

import collections
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Sized

PARENT_CHECK_SECONDS = 0.5
SCHEDULER_ENV = "MUSICID_SCHEDULER"  # a Dask scheduler's address, for `dvc repro` without editing dvc.yaml


def resolve_scheduler(address: str | None) -> str | None:
    """The Dask scheduler to use: ``address`` (``--scheduler``), else ``$MUSICID_SCHEDULER``, else None (local)."""
    return address or os.environ.get(SCHEDULER_ENV) or None


def where(jobs: int, scheduler: str | None) -> str:
    """Where per-file work runs, for a stage's summary line: ``"2 local workers"`` or the cluster."""
    if scheduler:
        from musicid.cluster import describe

        return describe(scheduler)
    jobs = resolve_jobs(jobs)
    return f"{jobs} local worker{'s' if jobs != 1 else ''}"


def resolve_jobs(jobs: int) -> int:
    """``jobs`` workers, or one per usable core when ``jobs`` is 0."""
    if jobs > 0:
        return jobs
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _exit_with_parent(parent: int) -> None:
    """Watch (in a daemon thread) for the stage process to go; then end this worker at once.

    A worker whose stage was killed (SIGKILL, an out-of-memory kill) is
    re-parented and would otherwise go on rendering for minutes with nobody
    to read its results.  Polling the parent's id works whatever the worker is
    doing, since FluidSynth, NumPy and libsndfile release the GIL.
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _start_worker(parent: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    _exit_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


def ordered_map(
    function: Callable[[Any], Any],
    items: Iterable[Any],
    jobs: int,
    initializer: Callable[..., None] | None = None,
    initargs: Iterable[Any] = (),
    scheduler: str | None = None,
    on_crash: Callable[[Any], Any] | None = None,
) -> Iterator[Any]:
    """Yield ``function(item)`` for each item, in the order of ``items``.

    With ``scheduler`` (a Dask scheduler's address, see :func:`resolve_scheduler`)
    the work runs on that cluster (:func:`musicid.cluster.cluster_map`; an item
    that kills worker after worker gives ``on_crash(item)``); ``jobs`` is then
    not used.  Otherwise it runs on this machine, as follows.

    With one job (or one item) the work runs in this process, which keeps
    tracebacks simple and avoids the cost of starting workers.  Otherwise a
    pool of ``jobs`` processes started with ``spawn`` (safe with threads in
    the parent, e.g. PyTorch or FluidSynth) runs it; ``initializer`` runs once
    per worker, for expensive per-worker set-up such as loading a SoundFont.
    Workers end by themselves when this process dies.
    ``items`` may be a generator, which is advanced only as work is sent out.
    At most ``2 * jobs`` items are in flight, so results waiting to be consumed
    cannot pile up in memory however many items there are.
    """
    if scheduler:
        from musicid.cluster import cluster_map

        yield from cluster_map(function, items, scheduler, initializer, tuple(initargs), on_crash)
        return
    jobs = resolve_jobs(jobs)
    if isinstance(items, Sized):  # a generator (items read as they are sent) keeps every worker
        jobs = min(jobs, max(1, len(items)))
    if jobs == 1:
        if initializer is not None:
            initializer(*initargs)
        for item in items:
            yield function(item)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_start_worker,
        initargs=(os.getpid(), initializer, tuple(initargs)),
    ) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= 2 * jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

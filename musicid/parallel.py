"""Per-file work spread over worker processes, results returned in input order."""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator, Sized

PARENT_CHECK_SECONDS = 0.5
# Times an item whose worker died is run again alone in a fresh pool before it counts as a crash.
LOCAL_TRIES = 2
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


# Workers when a stage's --jobs is 0 (as under `dvc repro`, whose commands give none): a speed knob, like
# --jobs, that changes no output, so not a param.
JOBS_ENV = "MUSICID_JOBS"


def _configured_jobs() -> int | None:
    """``$MUSICID_JOBS`` as a number of workers; None when unset; ValueError when not a whole number >= 1."""
    text = os.environ.get(JOBS_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{JOBS_ENV} must be a whole number of workers >= 1, got {text!r}")
    return int(text)


def jobs_problem(jobs: int) -> str | None:
    """What is wrong with a stage's ``--jobs`` or ``$MUSICID_JOBS`` (the stage then exits 2), or None."""
    if jobs < 0:
        return f"--jobs must be >= 0 (0: one per core), got {jobs}"
    try:
        _configured_jobs()
    except ValueError as error:
        return str(error)
    return None


def check_jobs(jobs: int) -> None:
    """:class:`musicid.params.ParamsError` (the stage exits 2 with its one line) for a bad ``--jobs`` or
    ``$MUSICID_JOBS``."""
    problem = jobs_problem(jobs)
    if problem:
        from musicid.params import ParamsError

        raise ParamsError(problem)


def resolve_jobs(jobs: int) -> int:
    """``jobs`` workers; when ``jobs`` is 0, ``$MUSICID_JOBS`` of them, or else one per usable core."""
    if jobs > 0:
        return jobs
    configured = _configured_jobs()
    if configured:
        return configured
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


# The signals that end a run (the stage's or predict's handler raises on them), held back while work is handed
# to a pool (_interrupts_held).
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold back SIGINT and SIGTERM while work is handed to a pool (``submit``, which may also start worker
    processes).

    The stage's handlers (and predict's) raise on them (KeyboardInterrupt, or Terminated for a SIGTERM), in
    this process's main thread. Raised inside ``submit``, between the acquire of the lock of its queue of work
    ids and the block that releases it, such an exception left that lock held, so that the pool's manager
    thread waited for it for ever and the stage's shutdown of the pool with it (a SIGTERM to predict did so
    once in a test run: its threads' stacks showed just that). So here the handlers are swapped for one that
    notes the signal, and the first noted runs its own handler when the block ends. (A signal mask alone does
    not do it: the process's other threads, the pool's own, take the signal, and Python runs the handler in
    the main thread all the same.) The mask is set too: a spawned worker inherits it, starts with both held
    back, and :func:`_start_worker` ignores a Ctrl-C, which reaches every process of the terminal's group (one
    still importing NumPy would print a traceback of its own), and takes a SIGTERM as it comes.
    """
    noted: list[tuple[int, object]] = []
    swapped: dict[int, Callable] = {}

    def note(signum, frame) -> None:
        noted.append((signum, frame))

    before = None
    try:
        if threading.current_thread() is threading.main_thread():  # handlers belong to the main thread
            for signum in STOP_SIGNALS:
                handler = signal.getsignal(signum)
                if callable(handler):
                    swapped[signum] = handler
                    signal.signal(signum, note)
        if hasattr(signal, "pthread_sigmask"):  # POSIX
            # The mask is read before it changes: a signal pending as it changes would run its handler out of
            # pthread_sigmask itself, and the mask must still be put back.
            before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        yield
    finally:
        if before is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)
        for signum, handler in swapped.items():
            signal.signal(signum, handler)
        if noted:
            signum, frame = noted[0]
            swapped[signum](signum, frame)


def _start_worker(parent: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    if hasattr(signal, "pthread_sigmask"):
        # A Ctrl-C is the stage's to handle: one held back while this worker started is dropped, later ones are
        # ignored (a worker interrupted while idle or importing NumPy would print a traceback of its own). A
        # SIGTERM held back meanwhile arrives now and ends the worker as it always does (the pool itself ends a
        # broken pool's workers with SIGTERM, so they must not ignore it).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
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
    isolate: bool = False,
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
    Workers end by themselves when this process dies.  A worker that dies
    costs a retry, and an item that kills worker after worker gives
    ``on_crash(item)``, as on a cluster (see :func:`_pool_map`); in this
    process nothing can survive a crash.  So for work that can crash a
    process (native code such as FluidSynth), ``isolate`` keeps it in a
    worker process whenever ``jobs`` is 0 (one per core), even on a one-core
    machine or for one item; only ``jobs`` 1, asked for, runs it here.
    ``items`` may be a generator, which is advanced only as work is sent out.
    At most ``2 * jobs`` items are in flight, so results waiting to be consumed
    cannot pile up in memory however many items there are.
    """
    if scheduler:
        from musicid.cluster import cluster_map

        yield from cluster_map(function, items, scheduler, initializer, tuple(initargs), on_crash)
        return
    in_process = jobs == 1 or not isolate
    jobs = resolve_jobs(jobs)
    if isinstance(items, Sized):  # a generator (items read as they are sent) keeps every worker
        jobs = min(jobs, max(1, len(items)))
    if jobs == 1 and in_process:
        if initializer is not None:
            initializer(*initargs)
        for item in items:
            yield function(item)
        return
    yield from _pool_map(function, items, jobs, initializer, tuple(initargs), on_crash)


def _pool_map(function: Callable[[Any], Any], items: Iterable[Any], jobs: int,
              initializer: Callable[..., None] | None, initargs: tuple,
              on_crash: Callable[[Any], Any] | None) -> Iterator[Any]:
    """:func:`ordered_map` on a local process pool that survives a worker's death.

    A worker that dies (FluidSynth can crash a process) breaks the whole pool:
    every item in flight fails with it, and nothing says which one killed it.
    So the pool is started again, and the oldest item in flight, whose result
    is due, runs alone in it; once it is settled, the other items that were
    lost run again as usual.  An item that kills its worker when it runs alone,
    :data:`LOCAL_TRIES` times, gives ``on_crash(item)`` (the stages reject
    it as ``worker_crash`` and go on); with ``on_crash`` None it raises
    :class:`musicid.stage.StageError`.  An innocent item is never charged:
    it only counts when nothing else ran beside it.
    """
    context = multiprocessing.get_context("spawn")

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_start_worker,
                                   initargs=(os.getpid(), initializer, initargs))

    pool = new_pool()
    pending: collections.deque = collections.deque()  # (item, future), oldest first

    def submit(item: Any):
        with _interrupts_held():  # the pool may start a worker process now
            return pool.submit(function, item)

    def restart() -> None:
        nonlocal pool
        pool.shutdown(wait=True, cancel_futures=True)
        pool = new_pool()

    def alone(item: Any) -> Any:
        """``function(item)`` run with nothing beside it, in a fresh pool each time it kills its worker."""
        for _ in range(LOCAL_TRIES):
            restart()
            try:
                return submit(item).result()
            except BrokenProcessPool:
                continue
        restart()
        if on_crash is None:
            from musicid.stage import StageError

            raise StageError("an item killed one worker process after another")
        return on_crash(item)

    def settle(item: Any, future) -> Any:
        try:
            return future.result()
        except BrokenProcessPool:
            pass
        value = alone(item)
        # The others lost with the pool run again; those that had finished keep their results.
        for index, (other, lost) in enumerate(pending):
            if lost.cancelled() or isinstance(lost.exception(), BrokenProcessPool):
                pending[index] = (other, submit(other))
        return value

    def abandon() -> None:
        """Kill the workers, dropping the items they hold. One killed while it writes its result leaves part of
        it in the result pipe, and the pool's reader would wait for the rest for ever; with this process's end
        of that pipe closed as well, no writer is left, so the read ends (end of file) and the pool is broken."""
        for process in list((pool._processes or {}).values()):  # ProcessPoolExecutor has no public way
            process.kill()
        if pool._result_queue is not None:
            pool._result_queue._writer.close()  # only this thread closes it (shutdown, below)

    finished = False
    try:
        for item in items:
            pending.append((item, submit(item)))
            if len(pending) >= 2 * jobs:
                yield settle(*pending.popleft())
        while pending:
            value = settle(*pending.popleft())
            # A consumer that stops at the last result (zip, next) closes the generator at this yield: that
            # is a finished run, whose idle workers end with the pool rather than killed.
            finished = not pending
            yield value
    finally:
        # A Ctrl-C or SIGTERM in the pool's wait or in the stage's own loop (which closes this generator early),
        # or an error: the items in flight are abandoned, not waited for (a minute for an hour of MIDI).
        if not finished:
            abandon()
        pool.shutdown(wait=True, cancel_futures=True)

"""Per-file work on a Dask distributed cluster (``--scheduler ADDRESS`` or ``$MUSICID_SCHEDULER``).

Imported only when a scheduler is named, so that a local run pays nothing for
Dask.  The stage process is the cluster's only client: it sends each item
(which carries its input bytes and params: workers need no shared file
system) and gets each result back, in the order of the items, so the stage
alone writes its outputs, in the same order as with the local pool.  Outputs
do not depend on where the work ran.

Workers.  A worker runs the project's functions, so it needs the ``musicid``
package and whatever the work needs (FluidSynth and the SoundFonts the params
name, for render).  The ``initializer`` of :func:`musicid.parallel.ordered_map`
(e.g. loading the SoundFonts) runs once per worker process; items on one
worker process run one at a time (the per-file code keeps per-process state,
such as a loaded SoundFont), so start workers with one thread each and one
process per core: ``dask worker ADDRESS --nworkers <cores> --nthreads 1``.

Failures.
* A worker that dies in the middle of an item (FluidSynth can crash a
  process) costs a retry on another worker: the scheduler does that itself.
  An item declared killed after ``distributed.scheduler.allowed-failures`` + 1
  worker deaths (4 with Dask's defaults) is sent once more (see ``ROUNDS``);
  killed again, it comes back as ``on_crash(item)``, e.g. a record rejected
  with reason ``worker_crash``, and the run goes on.
* A scheduler that cannot be reached, or is lost during the run, raises
  :class:`ClusterError`, a :class:`musicid.stage.StageError`: the stage stops
  with one line, and its staging output is discarded, so nothing
  half-written is left.
"""

from __future__ import annotations

import collections
import hashlib
import pickle
import threading
import uuid
from concurrent.futures import CancelledError
from typing import Any, Callable, Iterable, Iterator

from musicid.stage import StageError

CONNECT_TIMEOUT = "20s"
# Items sent ahead per worker thread: enough to keep every worker busy while
# results are read in order, few enough that results waiting to be written
# (WAV bytes, clip arrays) stay a bounded amount of memory.
IN_FLIGHT_PER_THREAD = 2
# Rounds of the scheduler's own retries an item gets before it counts as a crash.  Dask counts a
# worker's death against every task the worker holds, the ones queued behind the running one too,
# so an innocent item can be declared killed (KilledWorker) with a crashing one; a second round,
# under a new key, clears it, while a file that really kills workers fails both.
ROUNDS = 2

_lock = threading.Lock()
_initialized: set[str] = set()


class ClusterError(StageError):
    """The Dask scheduler cannot be reached or was lost; the message names its address."""


def _initializer_key(initializer: Callable[..., None], initargs: tuple) -> str:
    blob = pickle.dumps((initializer.__module__, initializer.__qualname__, initargs))
    return hashlib.sha256(blob).hexdigest()


def run_on_worker(function: Callable[[Any], Any], initializer: Callable[..., None] | None, initargs: tuple,
                  item: Any) -> Any:
    """What a worker runs for one item: the initializer once per process (per distinct args), then the item.

    One item at a time per worker process (see the module docstring).
    """
    with _lock:
        if initializer is not None:
            key = _initializer_key(initializer, initargs)
            if key not in _initialized:
                initializer(*initargs)
                _initialized.add(key)
        return function(item)


def connect(address: str):
    """A client of the scheduler at ``address``; :class:`ClusterError` when it cannot be reached."""
    try:
        from distributed import Client
    except ImportError as error:
        raise ClusterError(f"a Dask scheduler was named ({address}) but Dask is not installed ({error}): "
                           "pip install 'dask[distributed]'") from None
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} "
                           f"({type(error).__name__}: {error})"[:300]) from None


def describe(address: str) -> str:
    """``"Dask cluster tcp://...: 4 worker threads"`` as the stages' summary lines put it."""
    client = connect(address)
    try:
        threads = sum(client.nthreads().values())
    finally:
        client.close()
    return f"Dask cluster {address}, {threads} worker thread{'s' if threads != 1 else ''}"


def cluster_map(function: Callable[[Any], Any], items: Iterable[Any], address: str,
                initializer: Callable[..., None] | None = None, initargs: tuple = (),
                on_crash: Callable[[Any], Any] | None = None) -> Iterator[Any]:
    """Yield ``function(item)`` for each item, computed on the cluster at ``address``, in the order of ``items``.

    See the module docstring for workers and failures; ``on_crash`` None makes
    a crashing item a :class:`ClusterError` too.
    """
    from distributed import KilledWorker

    client = connect(address)
    run_id = uuid.uuid4().hex[:12]  # keys unique to this run: never a result of another client's run
    try:
        threads = sum(client.nthreads().values())
        if threads == 0:  # workers still starting (or restarting after a crash) get a moment
            try:
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
            except TimeoutError:
                raise ClusterError(f"the Dask scheduler at {address} has no workers: start some with "
                                   f"'dask worker {address} --nworkers <cores> --nthreads 1'") from None
            threads = sum(client.nthreads().values())
        limit = max(2, IN_FLIGHT_PER_THREAD * threads)
        pending: collections.deque = collections.deque()

        def submit(index: int, item: Any, attempt: int):
            try:
                return client.submit(run_on_worker, function, initializer, tuple(initargs), item,
                                     key=f"musicid-{run_id}-{index}-{attempt}", pure=False)
            except (OSError, TimeoutError) as error:
                raise ClusterError(f"lost the Dask scheduler at {address} "
                                   f"({type(error).__name__}: {error})"[:300]) from None

        def result(index: int, item: Any, future):
            for attempt in range(1, ROUNDS + 1):
                try:
                    return future.result()
                except KilledWorker:
                    pass
                except (OSError, TimeoutError, CancelledError) as error:  # CommClosedError is an OSError
                    raise ClusterError(f"lost the Dask scheduler at {address} "
                                       f"({type(error).__name__}: {error})"[:300]) from None
                finally:
                    future.release()
                if attempt < ROUNDS:
                    future = submit(index, item, attempt)
            if on_crash is None:
                raise ClusterError("an item killed one Dask worker after another")
            return on_crash(item)

        for index, item in enumerate(items):
            pending.append((index, item, submit(index, item, 0)))
            if len(pending) >= limit:
                yield result(*pending.popleft())
        while pending:
            yield result(*pending.popleft())
    finally:
        client.close()


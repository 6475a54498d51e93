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
Each item carries the stage machine's :func:`environment_fingerprint` (Python,
library versions, the musicid code): a worker whose own differs refuses it, and
the stage stops naming the difference.

Failures.
* A worker that dies in the middle of an item (FluidSynth can crash a
  process) costs a retry on another worker: the scheduler does that itself.
  An item declared killed after ``distributed.scheduler.allowed-failures`` + 1
  worker deaths (4 with Dask's defaults) is sent once more, alone (see
  ``ROUNDS``); killed again, it comes back as ``on_crash(item)``, e.g. a
  record rejected with reason ``worker_crash``, and the run goes on.
* A scheduler that cannot be reached, or is lost during the run, or that has
  had no worker for ``NO_WORKERS_S`` raises :class:`ClusterError`, a
  :class:`musicid.stage.StageError`: the stage stops with one line, and its
  staging output is discarded, so nothing half-written is left.
"""

from __future__ import annotations

import ast
import collections
import contextlib
import functools
import hashlib
import logging
import pickle
import socket
import sys
import threading
import time
import uuid
import warnings
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from musicid.stage import StageError

CONNECT_TIMEOUT = "20s"
PROBE_TIMEOUT_S = 20.0  # the same, for the plain TCP connection tried first
# Items sent ahead per worker thread: enough to keep every worker busy while
# results are read in order, few enough that results waiting to be written
# (WAV bytes, clip arrays) stay a bounded amount of memory.
IN_FLIGHT_PER_THREAD = 2
# Rounds of the scheduler's own retries an item gets before it counts as a crash.  Dask counts a
# worker's death against every task the worker holds, the ones queued behind the running one too,
# so an innocent item can be declared killed (KilledWorker) with a crashing one.  The last round
# runs the item alone, once everything else of this run has finished: a worker that dies then died
# of that item, so only a file that really kills workers fails it.
ROUNDS = 2
# While waiting for a result, the cluster is looked at this often (seconds) ...
POLL_S = 1.0
# ... and a cluster that has had no worker for this long stops the stage: a task waits forever on
# a scheduler whose workers are all gone (a worker's nanny can give up restarting it).
NO_WORKERS_S = 60.0

# The packages whose versions can change a stage's output bytes; a worker must have the versions the
# stage's machine has (see environment_fingerprint).
LIBRARIES = ("numpy", "scipy", "soundfile", "av", "soxr", "librosa", "mido", "pretty_midi", "music21", "h5py",
             "pyfluidsynth", "pydantic", "PyYAML")

# Run on every worker before the first task, with a builtin (which any worker can unpickle): a worker that
# cannot import musicid would die unpickling the first task, and its nanny with it, leaving a stage that
# only learns, NO_WORKERS_S later, that its workers are gone.
WORKER_IMPORT = "import musicid.cluster"

_lock = threading.Lock()
_initialized: list[str | None] = [None]
_KILLED = object()


class ClusterError(StageError):
    """The Dask scheduler cannot be reached, was lost, or has no workers left; the message names its address."""


class WorkerMismatch(StageError):
    """A worker has other library versions or other musicid code than the stage's machine."""


@functools.cache
def environment_fingerprint() -> dict[str, str]:
    """What, besides the inputs, decides the bytes a worker returns: Python, the libraries, the musicid code.

    Each item carries the stage machine's; a worker whose own differs refuses
    the work (:class:`WorkerMismatch`), since its outputs would not be the
    bytes of a local run.  Computed once per process.
    """
    import importlib.metadata
    import platform

    fingerprint = {"python": ".".join(platform.python_version_tuple()[:2])}
    for name in LIBRARIES:
        try:
            fingerprint[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            fingerprint[name] = "not installed"
    try:
        import soundfile

        fingerprint["libsndfile"] = soundfile.__libsndfile_version__
    except (ImportError, OSError):
        fingerprint["libsndfile"] = "not installed"
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):  # each module's statements: a comment or docstring is no change
        source = path.read_bytes()  # as Python reads it: its coding line, if any, says how to decode it
        try:
            text = statements(source).encode()
        except (SyntaxError, ValueError):  # compared byte for byte; the worker fails on it anyway
            text = source
        fingerprint[CODE + path.relative_to(package).as_posix()] = hashlib.sha256(text).hexdigest()[:12]
    return fingerprint


CODE = "musicid code "  # the prefix of the fingerprint's one item per module


def statements(source: str | bytes) -> str:
    """``source``'s syntax tree as text, its docstrings left out (ast drops comments and positions itself)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                    isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _check_environment(expected: dict[str, str]) -> None:
    found = environment_fingerprint()
    if found == expected:
        return
    names = sorted(set(found) | set(expected))
    differences = [f"{name} {found.get(name, 'none')} (the stage's machine has {expected.get(name, 'none')})"
                   for name in names if not name.startswith(CODE) and found.get(name) != expected.get(name)]
    modules = [name.removeprefix(CODE) for name in names if name.startswith(CODE)
               and found.get(name) != expected.get(name)]
    changed = [module for module in modules if CODE + module in found and CODE + module in expected]
    if changed:
        differences.append(f"other statements in musicid/{', musicid/'.join(changed)} than the stage's machine "
                           "(another checkout, or one edited since)")
    for side, has in (("only the worker", found), ("only the stage's machine", expected)):
        alone = [module for module in modules if module not in changed and CODE + module in has]
        if alone:
            differences.append(f"musicid/{', musicid/'.join(alone)}, which {side} has")
    raise WorkerMismatch(f"the Dask worker on {socket.gethostname()} would not give the bytes of a local run; "
                         f"it has {'; '.join(differences)}; install the same versions and code on every worker "
                         "(and restart the workers after an edit)")


def _initializer_key(initializer: Callable[..., None], initargs: tuple) -> str:
    blob = pickle.dumps((initializer.__module__, initializer.__qualname__, initargs))
    return hashlib.sha256(blob).hexdigest()


def run_on_worker(function: Callable[[Any], Any], initializer: Callable[..., None] | None, initargs: tuple,
                  item: Any, expected: dict[str, str] | None = None) -> Any:
    """What a worker runs for one item: the initializer when its args differ from the last ones run, then the item.

    An initializer sets per-process state (a renderer with the run's SoundFont
    and settings) that the next one replaces, so it runs again whenever the
    args change, also back to earlier ones.  With ``expected`` (the stage
    machine's :func:`environment_fingerprint`) a worker that differs refuses
    the item.  One item at a time per worker process (see the module docstring).
    """
    if expected is not None:
        _check_environment(expected)
    with _lock:
        if initializer is not None:
            key = _initializer_key(initializer, initargs)
            if _initialized[0] != key:
                _initialized[0] = None  # a failing initializer leaves no state that counts as set up
                initializer(*initargs)
                _initialized[0] = key
        return function(item)


def connect(address: str):
    """A client of the scheduler at ``address``; :class:`ClusterError` when it cannot be reached."""
    try:
        from distributed import Client
    except ImportError as error:
        raise ClusterError(f"a Dask scheduler was named ({address}) but Dask is not installed ({error}): "
                           "pip install 'dask[distributed]'") from None
    from distributed.versions import VersionMismatchWarning

    _check_address(address)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", VersionMismatchWarning)
            client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} "
                           f"({type(error).__name__}: {error})"[:300]) from None
    for warning in caught:
        if issubclass(warning.category, VersionMismatchWarning):
            print(f"Dask cluster {address}: {version_mismatch(str(warning.message))}", file=sys.stderr)
        else:  # not ours to hide
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return client


def version_mismatch(message: str) -> str:
    """distributed's VersionMismatchWarning (a table of some ten lines) in one line: ``"other versions on the
    client, scheduler, workers: numpy 2.4.6 / 2.4.6 / 0.0.1"``. The stage refuses workers whose versions
    of the libraries that decide the outputs differ (:class:`WorkerMismatch`); others are only reported."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in message.splitlines() if line.strip().startswith("|")]
    if len(rows) < 2 or rows[0][:1] != ["Package"]:
        return " ".join(message.split())[:300]
    columns = ", ".join(name.lower() for name in rows[0][1:])
    packages = "; ".join(f"{row[0]} {' / '.join(row[1:])}" for row in rows[1:] if len(row) == len(rows[0]))
    return f"other versions on the {columns}: {packages}"[:300]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """While a client runs: no logging from distributed and no 'Sending large graph' warnings, as they were after.

    The stage says in one line what went wrong with the cluster; distributed's own error logging added 35 lines
    of tracebacks to it when the scheduler was killed mid-run. Each item (a WAV, a block of clips) is sent with
    its task on purpose, so distributed's advice, printed for every item over 10 MB, to load big data with Dask
    itself does not apply.
    """
    try:
        import dask
        import distributed  # noqa: F401 - its import sets the levels of its loggers, which are replaced here
    except ImportError:  # connect says how to install it
        yield
        return
    names = ["distributed", *(name for name in logging.root.manager.loggerDict if name.startswith("distributed."))]
    levels = {name: logging.getLogger(name).level for name in names}  # dask's config sets some of their own
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1 PiB"}):
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _check_address(address: str) -> None:
    """:class:`ClusterError` for an address no scheduler can have (``tpc://...``, ``tcp://host:8786x``), before
    a client is made: a client that fails to start waits for its own timeout again when it is collected."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        host, port = parse_host_port(location, 8786) if scheme in ("tcp", "tls") else (None, None)
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port {port} is outside 1..65535")
        if host is not None and ("/" in host or not host):
            raise ValueError(f"{host!r} is no host name")
    except (ValueError, TypeError) as error:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} (not a scheduler address: {error}; "
                           "e.g. tcp://127.0.0.1:8786)"[:300]) from None
    if host is not None:
        _probe(address, host, port)


def _probe(address: str, host: str, port: int) -> None:
    """:class:`ClusterError` naming the cause when nothing accepts a TCP connection at ``host:port``: at once
    for a host name that does not resolve, after PROBE_TIMEOUT_S of retries otherwise (a scheduler may be
    starting), where a client would only say "Timed out"."""
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    while True:
        try:
            socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic())).close()
            return
        except socket.gaierror as error:
            raise ClusterError(f"cannot reach the Dask scheduler at {address} (unknown host: {error})"[:300]) \
                from None
        except OSError as error:
            if time.monotonic() >= deadline:
                raise ClusterError(f"cannot reach the Dask scheduler at {address} "
                                   f"({type(error).__name__}: {error})"[:300]) from None
            time.sleep(0.5)


def describe(address: str) -> str:
    """``"Dask cluster tcp://...: 4 worker threads"`` as the stages' summary lines put it."""
    with _quiet():
        client = connect(address)
        try:
            threads = sum(client.nthreads().values())
        finally:
            client.close()
    return f"Dask cluster {address}, {threads} worker thread{'s' if threads != 1 else ''}"


def _no_workers(address: str) -> ClusterError:
    return ClusterError(f"the Dask scheduler at {address} has no workers: start some with "
                        f"'dask worker {address} --nworkers <cores> --nthreads 1'")


def cluster_map(function: Callable[[Any], Any], items: Iterable[Any], address: str,
                initializer: Callable[..., None] | None = None, initargs: tuple = (),
                on_crash: Callable[[Any], Any] | None = None) -> Iterator[Any]:
    """Yield ``function(item)`` for each item, computed on the cluster at ``address``, in the order of ``items``.

    See the module docstring for workers and failures; ``on_crash`` None makes
    a crashing item a :class:`ClusterError` too.  An exception ``function``
    raises is raised here.
    """
    with _quiet():
        yield from _cluster_map(function, items, address, initializer, initargs, on_crash)


def _cluster_map(function: Callable[[Any], Any], items: Iterable[Any], address: str,
                 initializer: Callable[..., None] | None, initargs: tuple,
                 on_crash: Callable[[Any], Any] | None) -> Iterator[Any]:
    from distributed import KilledWorker

    client = connect(address)
    run_id = uuid.uuid4().hex[:12]  # keys unique to this run: never a result of another client's run
    expected = environment_fingerprint()

    def lost(error: BaseException) -> ClusterError:
        return ClusterError(f"lost the Dask scheduler at {address} ({type(error).__name__}: {error})"[:300])

    try:
        imported = client.run(exec, WORKER_IMPORT, on_error="return")
    except Exception as error:  # noqa: BLE001 - the client's own failures: the scheduler is gone
        raise lost(error) from None
    failed = {worker: error for worker, error in sorted(imported.items()) if isinstance(error, BaseException)}
    if failed:
        worker, error = next(iter(failed.items()))
        raise WorkerMismatch(f"{len(failed)} of {len(imported)} Dask workers cannot import musicid (the worker at "
                             f"{worker}: {type(error).__name__}: {error}); install the project on each worker "
                             "(pip install -r requirements.txt && pip install -e .) as on this machine"[:400])

    def threads() -> int:
        try:
            return sum(client.nthreads().values())
        except Exception as error:  # noqa: BLE001 - whatever the client raises, the scheduler is gone
            raise lost(error) from None

    def submit(index: int, item: Any, attempt: int):
        try:
            return client.submit(run_on_worker, function, initializer, tuple(initargs), item, expected,
                                 key=f"musicid-{run_id}-{index}-{attempt}", pure=False)
        except Exception as error:  # noqa: BLE001 - ClosedClientError, CommClosedError, ...: the scheduler is gone
            raise lost(error) from None

    def settle(future) -> BaseException | None:
        """Wait until ``future`` has finished or failed and return its exception (None for a result).

        :class:`ClusterError` when the cluster can no longer run it: the
        scheduler is gone, or it has had no worker for ``NO_WORKERS_S``.
        """
        workerless_since = None
        while True:
            try:
                error = future.exception(timeout=POLL_S)
            except TimeoutError:
                if threads() > 0:
                    workerless_since = None
                elif workerless_since is None:
                    workerless_since = time.monotonic()
                elif time.monotonic() - workerless_since > NO_WORKERS_S:
                    raise ClusterError(f"the Dask scheduler at {address} has had no workers for "
                                       f"{NO_WORKERS_S:g} s (they died and were not restarted)") from None
                continue
            except Exception as error:  # noqa: BLE001 - the client's own failures: the scheduler is gone
                raise lost(error) from None
            if future.status == "error":
                return error
            if future.status != "finished":  # cancelled or lost: the scheduler let go of it
                raise lost(CancelledError(f"task {future.status}"))
            return None

    def outcome(future) -> Any:
        """The result of a settled future, or ``_KILLED``; the exception ``function`` raised is raised."""
        try:
            error = settle(future)
            if isinstance(error, KilledWorker):
                return _KILLED
            if error is not None:
                raise error
            try:
                return future.result()
            except Exception as error:  # noqa: BLE001 - fetching a finished result failed: the scheduler is gone
                raise lost(error) from None
        finally:
            future.release()

    pending: collections.deque = collections.deque()

    def result(index: int, item: Any, future) -> Any:
        value = outcome(future)
        for attempt in range(1, ROUNDS):
            if value is not _KILLED:
                return value
            if attempt == ROUNDS - 1:  # the last round alone: nothing else of this run on the cluster
                for _, _, other in pending:
                    settle(other)
            value = outcome(submit(index, item, attempt))
        if value is not _KILLED:
            return value
        if on_crash is None:
            raise ClusterError("an item killed one Dask worker after another")
        return on_crash(item)

    try:
        if threads() == 0:  # workers still starting (or restarting after a crash) get a moment
            try:
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
            except TimeoutError:
                raise _no_workers(address) from None
            except Exception as error:  # noqa: BLE001 - OSError, CommClosedError: the scheduler went away
                raise lost(error) from None
        limit = max(2, IN_FLIGHT_PER_THREAD * threads())
        for index, item in enumerate(items):
            pending.append((index, item, submit(index, item, 0)))
            if len(pending) >= limit:
                yield result(*pending.popleft())
        while pending:
            yield result(*pending.popleft())
    finally:
        for _, _, future in pending:
            future.cancel()
        client.close()

"""Wall-clock limits on pure-Python work (parsing a MIDI file, converting a score).

Parsers such as mido's and music21's run in Python loops that never look at a
clock.  In the main thread SIGALRM interrupts them.  Signals reach only the
main thread, and a Dask worker runs its tasks in other threads: there a timer
thread raises the exception in the working thread instead
(``PyThreadState_SetAsyncExc``), which Python delivers between two bytecodes.
Either way, only Python code should run under a limit: an exception raised in
the middle of a C library's clean-up (FluidSynth's) could corrupt its state.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import signal
import threading
import time
from typing import Callable, Iterator

# After the first alarm, further ones every this many seconds (see wall_clock_limit).
ALARM_REPEAT_S = 0.05


class _Expired(BaseException):
    """Raised in a worker thread at its deadline; a BaseException, so that ``except Exception`` in a
    parser cannot swallow it.  Never leaves :func:`wall_clock_limit`."""


def _raise_in_thread(ident: int, exception: type[BaseException] | None) -> None:
    """Make thread ``ident`` raise ``exception`` at its next bytecode; None withdraws one not yet raised."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                               ctypes.py_object(exception) if exception else None)


@contextlib.contextmanager
def _thread_limit(remaining: float, timed_out: Callable[[], Exception]) -> Iterator[None]:
    ident = threading.get_ident()
    lock = threading.Lock()
    done = threading.Event()
    active = [True]

    def fire() -> None:
        wait = remaining
        while not done.wait(wait):
            with lock:
                if not active[0]:
                    return
                _raise_in_thread(ident, _Expired)
            wait = ALARM_REPEAT_S  # repeated, for the reason given in wall_clock_limit

    timer = threading.Thread(target=fire, name="wall-clock-limit", daemon=True)
    timer.start()
    try:
        yield
    except _Expired:
        raise timed_out() from None
    finally:
        with lock:
            active[0] = False
            _raise_in_thread(ident, None)  # one set just now and not yet raised must not escape the block
        done.set()


@contextlib.contextmanager
def wall_clock_limit(deadline: float, timed_out: Callable[[], Exception]) -> Iterator[None]:
    """Raise ``timed_out()`` inside the block once ``time.monotonic()`` passes ``deadline``."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise timed_out()
    if not math.isfinite(remaining):
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        with _thread_limit(remaining, timed_out):
            yield
        return

    def on_alarm(signum, frame):
        raise timed_out()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    # The alarm repeats: an exception raised by a signal handler while Python runs a
    # weakref callback or a __del__ (garbage collection can run them anywhere) is
    # printed and dropped, and the work would go on; the next alarm stops it.
    signal.setitimer(signal.ITIMER_REAL, remaining, ALARM_REPEAT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

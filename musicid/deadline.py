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
import os
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


class _Watchdog:
    """One thread per process that raises :class:`_Expired` in the threads whose deadline has passed.

    Arming and disarming take its lock, and it raises only under that lock, so
    once :meth:`disarm` returns no exception of that limit can reach the
    thread: any it had set and not yet raised is withdrawn there.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked child has the state but not the thread

    def _reset(self) -> None:
        self._condition = threading.Condition()
        self._armed: dict[object, tuple[int, float]] = {}  # token -> (thread ident, deadline)
        self._thread: threading.Thread | None = None

    def arm(self, token: object, ident: int, deadline: float) -> None:
        with self._condition:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="wall-clock-limit", daemon=True)
                self._thread.start()
            self._armed[token] = (ident, deadline)
            self._condition.notify()

    def disarm(self, token: object, ident: int) -> None:
        """End limit ``token`` of thread ``ident``; safe to repeat (an :class:`_Expired` can cut it short)."""
        with self._condition:
            self._armed.pop(token, None)
            if all(other != ident for other, _ in self._armed.values()):
                _raise_in_thread(ident, None)

    def _watch(self) -> None:
        with self._condition:
            while True:
                now, wake = time.monotonic(), math.inf
                for ident, deadline in self._armed.values():
                    if now >= deadline:
                        _raise_in_thread(ident, _Expired)
                        deadline = now + ALARM_REPEAT_S  # repeated, for the reason given in wall_clock_limit
                    wake = min(wake, deadline)
                self._condition.wait(None if wake == math.inf else wake - now)


_watchdog = _Watchdog()


@contextlib.contextmanager
def _thread_limit(deadline: float, timed_out: Callable[[], Exception]) -> Iterator[None]:
    expired, armed = False, True
    token, ident = object(), threading.get_ident()
    try:
        _watchdog.arm(token, ident, deadline)
        yield
    except _Expired:
        expired = True
    finally:
        while armed:
            try:
                _watchdog.disarm(token, ident)
                armed = False
            except _Expired:  # raised after the deadline and before the disarm: the block is over anyway
                expired = True
    if expired:
        raise timed_out() from None


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
        with _thread_limit(deadline, timed_out):
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

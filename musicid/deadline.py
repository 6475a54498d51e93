"""Wall-clock limits on pure-Python work (parsing a MIDI file, converting a score).

Parsers such as mido's and music21's run in Python loops that never look at a
clock.  In the main thread SIGALRM interrupts them.  Signals reach only the
main thread, and a Dask worker runs its tasks in other threads: there a watchdog
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
import sys
import threading
import time
from typing import Callable, Iterator

# After the first alarm, further ones every this many seconds (see wall_clock_limit).
ALARM_REPEAT_S = 0.05


class _Expired(BaseException):
    """Raised inside a block at its deadline (by SIGALRM or the watchdog); a BaseException, so that
    ``except Exception`` in a parser cannot swallow it.  Never leaves :func:`wall_clock_limit`."""


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
def _limited(arm: Callable[[], None], disarm: Callable[[], None],
             timed_out: Callable[[], Exception]) -> Iterator[None]:
    """Run the block between ``arm()`` and ``disarm()``; :class:`_Expired` inside it ends as ``timed_out()``.

    ``disarm`` must make sure no further ``_Expired`` reaches the thread; it
    is repeated until it completes, since one can still arrive while it runs.
    """
    expired, armed = False, True
    try:
        arm()
        yield
    except _Expired:
        expired = True
    finally:
        while armed:
            try:
                disarm()
                armed = False
            except _Expired:  # raised after the deadline and before the disarm: the block is over anyway
                expired = True
    if expired:
        raise timed_out() from None


def _thread_limit(deadline: float, timed_out: Callable[[], Exception]) -> contextlib.AbstractContextManager[None]:
    """A thread's limit: the process's watchdog raises :class:`_Expired` in it past ``deadline``."""
    token, ident = object(), threading.get_ident()
    return _limited(lambda: _watchdog.arm(token, ident, deadline), lambda: _watchdog.disarm(token, ident), timed_out)


def _signal_limit(remaining: float, timed_out: Callable[[], Exception]) -> contextlib.AbstractContextManager[None]:
    """The main thread's limit: SIGALRM, whose handler raises :class:`_Expired` while the block runs.

    The alarm repeats: an exception raised by a signal handler while Python
    runs a weakref callback or a ``__del__`` (garbage collection can run them
    anywhere) is dropped, and the work would go on; the next alarm stops it.
    Such a dropped ``_Expired`` is kept from ``sys.unraisablehook`` (it is
    expected, not a bug to report).  The handler raises nothing once the block
    is closing, and closing is repeated until it is done, so no alarm can
    outlive the block: one that fired in the middle of the clean-up used to
    leave the timer running and the handler installed.
    """
    active = [True]
    previous: list = []
    previous_hook = sys.unraisablehook

    def on_alarm(signum, frame):
        if active[0]:
            raise _Expired()

    def unraisable(unraisable_exception) -> None:
        if not isinstance(unraisable_exception.exc_value, _Expired):
            previous_hook(unraisable_exception)

    def arm() -> None:
        previous.append(signal.signal(signal.SIGALRM, on_alarm))
        sys.unraisablehook = unraisable
        signal.setitimer(signal.ITIMER_REAL, remaining, ALARM_REPEAT_S)

    def disarm() -> None:
        active[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        if previous:
            signal.signal(signal.SIGALRM, previous[0])
        sys.unraisablehook = previous_hook

    return _limited(arm, disarm, timed_out)


@contextlib.contextmanager
def wall_clock_limit(deadline: float, timed_out: Callable[[], Exception]) -> Iterator[None]:
    """Raise ``timed_out()`` when the block ends, once ``time.monotonic()`` passes ``deadline`` inside it.

    Inside the block the limit raises an internal BaseException, which the
    ``except Exception`` of a parser cannot swallow; it becomes ``timed_out()``
    where the block ends, after the alarm or watchdog is disarmed.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise timed_out()
    if not math.isfinite(remaining):
        yield
        return
    limit = _thread_limit(deadline, timed_out) if threading.current_thread() is not threading.main_thread() \
        else _signal_limit(remaining, timed_out)
    with limit:
        yield

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

import ctypes
import math
import os
import signal
import sys
import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")

# After the first alarm, further ones every this many seconds (see _signal_limit).
ALARM_REPEAT_S = 0.05


class _Expired(BaseException):
    """Raised inside a block at its deadline (by SIGALRM or the watchdog); a BaseException, so that
    ``except Exception`` in a parser cannot swallow it.  Never leaves :func:`call_with_limit`."""


class _Withdrawn(BaseException):
    """Put in place of an :class:`_Expired` not yet raised, in the thread itself, and caught at once."""


def _raise_in_thread(ident: int, exception: type[BaseException]) -> int:
    """Make thread ``ident`` raise ``exception`` at its next check for one (in place of one set and not yet
    raised); returns how many threads were found (0 or 1)."""
    return ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exception))


def _withdraw_own() -> None:
    """Withdraw an asynchronous exception set for the calling thread and not yet raised.

    Not with ``PyThreadState_SetAsyncExc(ident, NULL)``: in CPython 3.11 that
    leaves the eval loop's "pending" flag set with nothing to raise, and the
    next traced function call (a debugger, coverage) then spins for ever.  An
    exception put in its place and raised at once clears the flag.
    """
    try:
        if _raise_in_thread(threading.get_ident(), _Withdrawn) == 1:
            while True:  # raised at the first check, at the latest this loop's jump back
                pass
    except _Withdrawn:
        pass


class _Watchdog:
    """One thread per process that raises :class:`_Expired` in the threads whose deadline has passed.

    Arming and disarming take its lock, and it raises only under that lock, so
    once :meth:`disarm` returns no exception of that limit can reach the
    thread: any it had set and not yet raised is withdrawn there.  They take
    the bare lock, whose ``with`` enters and leaves in C: the exception can
    reach the thread as it takes the lock, and out of the Python ``__enter__``
    of a ``threading.Condition`` it left the lock held and the watchdog stuck.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked child has the state but not the thread

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._condition = threading.Condition(self._lock)  # waited on by the watchdog thread only
        # token -> (thread ident, deadline, the limit's closing flag: [True] once the work has returned)
        self._armed: dict[object, tuple[int, float, list[bool]]] = {}
        self._thread: threading.Thread | None = None

    def arm(self, token: object, ident: int, deadline: float, closing: list[bool]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="wall-clock-limit", daemon=True)
                self._thread.start()
            self._armed[token] = (ident, deadline, closing)
            self._condition.notify()

    def disarm(self, token: object, ident: int) -> None:
        """End limit ``token`` of thread ``ident``, from that thread; safe to repeat (an :class:`_Expired` can
        cut it short)."""
        with self._lock:
            self._armed.pop(token, None)
            if all(other != ident for other, _, _ in self._armed.values()):
                _withdraw_own()

    def _watch(self) -> None:
        with self._condition:
            while True:
                now, wake = time.monotonic(), math.inf
                for ident, deadline, closing in self._armed.values():
                    if closing[0]:  # the work has returned: nothing more is raised in its thread
                        continue
                    if now >= deadline:
                        _raise_in_thread(ident, _Expired)
                        deadline = now + ALARM_REPEAT_S  # repeated, for the reason given in _signal_limit
                    wake = min(wake, deadline)
                self._condition.wait(None if wake == math.inf else wake - now)


_watchdog = _Watchdog()


def _run_limited(arm: Callable[[], None], disarm: Callable[[], None], closing: list[bool],
                 timed_out: Callable[[], Exception], function: Callable[..., T], args: tuple, kwargs: dict) -> T:
    """Call ``function(*args, **kwargs)`` between ``arm()`` and ``disarm()``; :class:`_Expired` ends as ``timed_out()``.

    A function call, not a ``with`` block, for a reason: Python delivers an
    asynchronous exception or runs a signal handler at the next check of its
    eval loop, which can fall just after the work returns.  At the end of a
    ``with`` block that check can land in the ``__exit__`` frame before it
    has disarmed anything (a context manager's ``__exit__`` is Python code, with
    a check on entry), and the exception escaped the block.  Here the work
    returns into a ``try`` of this frame, and ``closing[0] = True`` follows
    with no check in between (a store into a list calls nothing), also as the
    first statement of each handler: from then on the alarm handler and the
    watchdog raise nothing, so at most one ``_Expired``, set before, is still
    pending, and the first ``disarm()`` either withdraws it or is cut short
    by it inside its ``try``.  ``disarm`` is repeated until it completes.

    The work's own exception, if it raised one, wins over a timeout that came
    as the limit was taken off (KeyboardInterrupt stays KeyboardInterrupt).
    """
    expired, failure, result = False, None, None
    try:
        arm()
        result = function(*args, **kwargs)
        closing[0] = True
    except _Expired:
        closing[0] = True
        expired = True
    except BaseException as error:  # re-raised below, once the limit is off
        closing[0] = True
        failure = error
    while True:
        try:
            disarm()
            break
        except _Expired:  # raised after the deadline and before the disarm: the work is over anyway
            expired = True
        except BaseException as error:  # (a KeyboardInterrupt, say) kept, and the disarm done all the same
            if failure is None:
                failure = error
    if failure is not None:
        try:
            raise failure
        finally:
            failure = None  # no reference cycle through this frame
    if expired:
        raise timed_out() from None
    return result


def _thread_limit(deadline: float, closing: list[bool]) -> tuple[Callable[[], None], Callable[[], None]]:
    """A thread's limit, as (arm, disarm): the process's watchdog raises :class:`_Expired` in it past ``deadline``."""
    token, ident = object(), threading.get_ident()
    return lambda: _watchdog.arm(token, ident, deadline, closing), lambda: _watchdog.disarm(token, ident)


def _signal_limit(remaining: float, closing: list[bool]) -> tuple[Callable[[], None], Callable[[], None]]:
    """The main thread's limit, as (arm, disarm): SIGALRM, whose handler raises :class:`_Expired` while the block runs.

    The alarm repeats: an exception raised by a signal handler while Python
    runs a weakref callback or a ``__del__`` (garbage collection can run them
    anywhere) is dropped, and the work would go on; the next alarm stops it.
    Such a dropped ``_Expired`` is kept from ``sys.unraisablehook`` (it is
    expected, not a bug to report).  The handler raises nothing once the limit
    is closing, and closing is repeated until it is done, so no alarm can
    outlive the work: one that fired in the middle of the clean-up used to
    leave the timer running and the handler installed.
    """
    previous: list = []
    previous_hook = sys.unraisablehook

    def on_alarm(signum, frame):
        if not closing[0]:
            raise _Expired()

    def unraisable(unraisable_exception) -> None:
        if not isinstance(unraisable_exception.exc_value, _Expired):
            previous_hook(unraisable_exception)

    def arm() -> None:
        previous.append(signal.getsignal(signal.SIGALRM))  # first: disarm restores it, whatever cuts arm short
        signal.signal(signal.SIGALRM, on_alarm)
        sys.unraisablehook = unraisable
        signal.setitimer(signal.ITIMER_REAL, remaining, ALARM_REPEAT_S)

    def disarm() -> None:
        closing[0] = True
        signal.setitimer(signal.ITIMER_REAL, 0)
        if previous:
            signal.signal(signal.SIGALRM, previous[0])
        sys.unraisablehook = previous_hook

    return arm, disarm


def call_with_limit(deadline: float, timed_out: Callable[[], Exception],
                    function: Callable[..., T], /, *args, **kwargs) -> T:
    """Return ``function(*args, **kwargs)``, or raise ``timed_out()`` once ``time.monotonic()`` passes ``deadline``.

    Inside the call the limit raises an internal BaseException, which the
    ``except Exception`` of a parser cannot swallow; it becomes ``timed_out()``
    once the alarm or watchdog is disarmed.  Nothing of the limit is left
    after this returns or raises.  Other exceptions of ``function`` pass through.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise timed_out()
    if not math.isfinite(remaining):
        return function(*args, **kwargs)
    closing = [False]
    arm, disarm = _thread_limit(deadline, closing) if threading.current_thread() is not threading.main_thread() \
        else _signal_limit(remaining, closing)
    return _run_limited(arm, disarm, closing, timed_out, function, args, kwargs)

"""Wall-clock limits on pure-Python work, in the main thread (SIGALRM) and in others (as on a Dask worker)."""

from __future__ import annotations

import dis
import sys
import threading
import time
from pathlib import Path

import pytest

from musicid import deadline
from musicid.deadline import _Expired, call_with_limit


class TookTooLong(Exception):
    pass


def busy_python(seconds: float) -> int:
    """A pure-Python loop, as a parser's, that swallows every ordinary exception it meets."""
    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            count += 1
        except Exception:  # noqa: BLE001 - a parser's catch-all must not defeat the limit
            pass
    return count


def limited(seconds_of_work: float, limit_s: float) -> tuple[str, float]:
    started = time.monotonic()
    try:
        call_with_limit(started + limit_s, lambda: TookTooLong("late"), busy_python, seconds_of_work)
    except TookTooLong:
        return "timed out", time.monotonic() - started
    return "finished", time.monotonic() - started


def in_thread(function, *args):
    """``function(*args)`` run in a new thread; what it raised is raised here."""
    outcome = []

    def target():
        try:
            outcome.append((True, function(*args)))
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            outcome.append((False, error))

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    returned, value = outcome[0]
    if not returned:
        raise value
    return value


@pytest.mark.parametrize("where", ["main thread", "other thread"])
def test_work_past_the_deadline_is_interrupted(where):
    outcome, seconds = limited(30.0, 0.3) if where == "main thread" else in_thread(limited, 30.0, 0.3)
    assert outcome == "timed out"
    assert seconds < 3.0


@pytest.mark.parametrize("where", ["main thread", "other thread"])
def test_work_within_the_deadline_finishes_and_nothing_fires_later(where):
    def run():
        outcome = limited(0.05, 0.2)
        busy_python(0.5)  # a late exception would surface here, outside the block
        return outcome

    outcome, seconds = run() if where == "main thread" else in_thread(run)
    assert outcome == "finished" and seconds < 0.2


def test_deadlines_at_the_edge_of_the_block_never_leak_out_of_it():
    """Thousands of blocks whose deadline falls as they end, in a thread: each ends as timed out or
    finished, nothing is raised after the block, and one watchdog thread serves them all."""
    def run():
        outcomes = {"timed out": 0, "finished": 0}
        for attempt in range(3000):
            started = time.monotonic()
            try:
                call_with_limit(started + 0.0005 * (attempt % 5), lambda: TookTooLong("late"), busy_python, 0.001)
                outcomes["finished"] += 1
            except TookTooLong:
                outcomes["timed out"] += 1
        busy_python(0.3)  # an exception left behind would surface here
        return outcomes

    before = threading.active_count()
    outcomes = in_thread(run)
    assert sum(outcomes.values()) == 3000 and outcomes["timed out"] > 0 and outcomes["finished"] > 0
    assert threading.active_count() <= before + 1  # the watchdog, not a thread per block


CALLS = ("CALL", "CALL_FUNCTION_EX")


def _checks_of(code) -> set[int]:
    """Offsets of ``code``'s instructions before which CPython looks for a pending signal or asynchronous
    exception: those right after a call returns, and backward jumps (function entry is the 'call' event)."""
    checks, previous = set(), None
    for instruction in dis.get_instructions(code):
        if instruction.opname == "JUMP_BACKWARD" or (previous is not None and previous.opname in CALLS):
            checks.add(instruction.offset)
        previous = instruction
    return checks


def deliver_after_the_work_returns(k: int) -> tuple[bool, str]:
    """Run a limited call that finishes in time, with an expiry delivered at the ``k``-th point after the
    work returns where CPython could deliver one, up to the limit's disarm; returns (delivered, outcome)."""
    def work() -> int:
        return sum(range(10))

    points, delivered, over = [0], [False], [False]
    checks: dict = {}

    def tracer(frame, event, arg):
        frame.f_trace_opcodes = True
        code = frame.f_code
        if over[0] or delivered[0]:
            return tracer
        if event == "return" and code is work.__code__:
            points[0] = 0
            over[0] = None  # from here on, count
        elif event == "return" and code.co_name == "disarm" and Path(code.co_filename) == Path(deadline.__file__):
            over[0] = True  # the limit is off: nothing can be delivered any more
        elif over[0] is None and (event == "call" or (event == "opcode" and frame.f_lasti in checks.setdefault(
                code, _checks_of(code)))):
            if points[0] == k:
                delivered[0] = True
                raise _Expired()  # raised from the tracer, it surfaces in the traced frame at this point
            points[0] += 1
        return tracer

    before = sys.gettrace()  # a debugger's or coverage's, put back after
    sys.settrace(tracer)
    try:
        try:
            call_with_limit(time.monotonic() + 30, lambda: TookTooLong("late"), work)
            outcome = "finished"
        except TookTooLong:
            outcome = "timed out"
    except _Expired:
        outcome = "escaped"
    finally:
        sys.settrace(before)
    return delivered[0], outcome


@pytest.mark.parametrize("where", ["main thread", "other thread"])
def test_an_expiry_at_any_point_after_the_work_returns_never_escapes(where):
    """The deadline can fall between the work's return and the limit's disarm.  At every point there where
    Python could deliver it (traced opcode by opcode), the call ends as timed out, never with the internal
    exception: with a ``with`` block, one delivered on entry to ``__exit__`` escaped."""
    def sweep():
        outcomes = []
        for k in range(200):
            delivered, outcome = deliver_after_the_work_returns(k)
            if not delivered:
                break
            outcomes.append(outcome)
        return outcomes

    outcomes = sweep() if where == "main thread" else in_thread(sweep)
    assert len(outcomes) >= 3  # the return into the limit's frame, the call of disarm and the checks in it
    assert set(outcomes) == {"timed out"}, outcomes


@pytest.mark.parametrize("where", ["main thread", "other thread"])
def test_nothing_is_raised_once_the_work_has_returned(where, monkeypatch):
    """The deadline passes while the limit is being taken off (a first disarm that sleeps for six of the
    alarm's 50 ms repeats, the GIL released): the work has returned, so its result comes back, and no
    expiry cuts the disarm short (one that did, and then another at the retry, escaped)."""
    import signal

    slept = []

    def sleep_once():
        if not slept:
            slept.append(True)
            time.sleep(0.3)

    if where == "main thread":
        real_setitimer = signal.setitimer

        def setitimer(which, seconds, interval=0.0):
            if seconds == 0:
                sleep_once()  # the real SIGALRM fires meanwhile; its handler runs once this returns
            return real_setitimer(which, seconds, interval)

        monkeypatch.setattr(deadline.signal, "setitimer", setitimer)
    else:
        real_disarm = deadline._Watchdog.disarm

        def disarm(self, token, ident):
            sleep_once()  # the watchdog runs meanwhile, past the deadline
            real_disarm(self, token, ident)

        monkeypatch.setattr(deadline._Watchdog, "disarm", disarm)

    def run():
        result = call_with_limit(time.monotonic() + 0.05, lambda: TookTooLong("late"), sum, [1, 2])
        busy_python(0.2)  # an exception left behind would surface here
        return result

    assert (run() if where == "main thread" else in_thread(run)) == 3
    assert slept


@pytest.mark.parametrize("where", ["main thread", "other thread"])
def test_the_work_s_own_interrupt_passes_through(where):
    """A KeyboardInterrupt (any BaseException) of the work comes out as itself, with the limit taken off."""
    def interrupted():
        raise KeyboardInterrupt

    def run():
        with pytest.raises(KeyboardInterrupt):
            call_with_limit(time.monotonic() + 0.2, lambda: TookTooLong("late"), interrupted)
        busy_python(0.4)  # past the deadline: an alarm or watchdog left armed would raise here
        return True

    assert run() if where == "main thread" else in_thread(run)


def test_an_alarm_during_the_clean_up_leaves_nothing_behind(monkeypatch):
    """The alarm's handler run at the worst moment: as the block's clean-up stops the timer."""
    import signal

    from musicid import deadline

    real_setitimer = signal.setitimer
    fired = []

    def setitimer(which, seconds, interval=0.0):
        if seconds == 0 and not fired:  # the clean-up: the alarm arrives right now
            fired.append(True)
            signal.getsignal(signal.SIGALRM)(signal.SIGALRM, None)
        return real_setitimer(which, seconds, interval)

    monkeypatch.setattr(deadline.signal, "setitimer", setitimer)
    before = signal.getsignal(signal.SIGALRM)
    call_with_limit(time.monotonic() + 10, lambda: TookTooLong("late"), busy_python, 0.01)
    assert fired
    assert signal.getsignal(signal.SIGALRM) is before and real_setitimer(signal.ITIMER_REAL, 0) == (0.0, 0.0)

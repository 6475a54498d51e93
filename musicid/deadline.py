"""Wall-clock limits on pure-Python work (parsing a MIDI file, converting a score).

Parsers such as mido's and music21's run in Python loops that never look at a
clock; SIGALRM interrupts them.  Signals reach only the main thread, so
elsewhere the block runs to its end and the deadline is checked after it.
Only Python code should run under a limit: an exception raised in the middle
of a C library's clean-up (FluidSynth's) could corrupt its state.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from typing import Callable, Iterator

# After the first alarm, further ones every this many seconds (see wall_clock_limit).
ALARM_REPEAT_S = 0.05


@contextlib.contextmanager
def wall_clock_limit(deadline: float, timed_out: Callable[[], Exception]) -> Iterator[None]:
    """Raise ``timed_out()`` inside the block once ``time.monotonic()`` passes ``deadline``."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise timed_out()
    use_alarm = threading.current_thread() is threading.main_thread() and math.isfinite(remaining)
    if not use_alarm:
        yield
        if time.monotonic() > deadline:
            raise timed_out()
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

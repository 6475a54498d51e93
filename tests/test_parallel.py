"""Worker pools: results in input order, and no worker outlives a killed stage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from musicid.parallel import ordered_map
from tests.conftest import running_in_group


def _square(x: int) -> int:
    return x * x


def test_results_come_in_input_order_with_two_workers():
    assert list(ordered_map(_square, list(range(7)), jobs=2)) == [x * x for x in range(7)]
    assert list(ordered_map(_square, [3], jobs=2)) == [9]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its new parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("ending", [signal.SIGKILL, signal.SIGTERM])
def test_workers_exit_when_the_stage_is_killed(tmp_path, ending):
    """SIGKILL: the workers notice and end by themselves. SIGTERM: the stage unwinds at once (exit 143), not
    after the items in flight, and takes its workers with it."""
    pids = tmp_path / "pids"
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(tmp_path)!r})
        from musicid.parallel import ordered_map
        from musicid.stage import run_stage
        from sleeper import sleep_and_report
        def body():
            for _ in ordered_map(sleep_and_report, [{str(pids)!r}] * 4, jobs=2):
                pass
        sys.exit(run_stage("stage", body))
    """)
    (tmp_path / "sleeper.py").write_text(textwrap.dedent("""
        import os, time
        def sleep_and_report(path):
            with open(path, "a") as handle:
                handle.write(f"{os.getpid()}\\n")
            time.sleep(120)
    """))
    stage = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
            time.sleep(0.1)
        workers = [int(pid) for pid in pids.read_text().split()]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
        sent = time.monotonic()
        stage.send_signal(ending)
        code = stage.wait(timeout=60)
        if ending == signal.SIGTERM:
            assert code == 143 and time.monotonic() - sent < 10  # the items sleep for 120 s
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "workers outlived their stage"
    finally:
        stage.kill()
        for pid in [int(p) for p in pids.read_text().split()] if pids.exists() else []:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _crash_on_poison(item: str) -> str:
    """A worker: dies (as FluidSynth can) on "poison", every time; "once" dies the first time only."""
    if item == "poison":
        time.sleep(0.2)  # in the middle of the work, while the other worker is busy too
        os._exit(13)
    if item.startswith("once:"):
        marker = item.split(":", 1)[1]
        try:
            with open(marker, "x"):
                pass
        except FileExistsError:
            return item.upper()
        time.sleep(0.2)
        os._exit(13)
    time.sleep(0.05)
    return item.upper()


def test_a_dead_worker_costs_a_retry_and_a_poison_item_gives_on_crash(tmp_path):
    items = ["a", "b", f"once:{tmp_path / 'marker'}", "c", "poison", "d", "e", "f"]
    results = list(ordered_map(_crash_on_poison, items, jobs=2, on_crash=lambda item: f"crashed {item}"))
    assert results == ["A", "B", f"ONCE:{str(tmp_path / 'marker').upper()}", "C", "crashed poison", "D", "E", "F"]


def test_isolated_work_survives_a_crash_on_one_core_and_for_one_item(monkeypatch):
    import musicid.parallel

    monkeypatch.setattr(musicid.parallel.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert musicid.parallel.resolve_jobs(0) == 1
    crashed = lambda item: f"crashed {item}"  # noqa: E731
    # jobs 0 ("one per core") on one core: one worker process takes the crash, the good items come back.
    assert list(ordered_map(_crash_on_poison, ["a", "poison", "b"], jobs=0, on_crash=crashed, isolate=True)) \
        == ["A", "crashed poison", "B"]
    assert list(ordered_map(_crash_on_poison, ["poison"], jobs=0, on_crash=crashed, isolate=True)) == \
        ["crashed poison"]
    # One item runs in a worker when isolated, in this process (no worker to start) when not, or with jobs 1.
    assert list(ordered_map(_pid, ["a"], jobs=0, isolate=True)) != [os.getpid()]
    assert list(ordered_map(_pid, ["a"], jobs=0)) == [os.getpid()]
    assert list(ordered_map(_pid, ["a", "b"], jobs=1, isolate=True)) == [os.getpid()] * 2


def _pid(item: str) -> int:
    return os.getpid()


def test_a_poison_item_without_on_crash_stops_with_a_stage_error():
    from musicid.stage import StageError

    with pytest.raises(StageError, match="killed one worker process after another"):
        list(ordered_map(_crash_on_poison, ["a", "poison", "b"], jobs=2))


def _fail_on_b(item: str) -> str:
    if item == "b":
        raise ValueError("bad b")
    return item


def test_an_exception_in_a_worker_is_raised_as_before():
    import pytest

    with pytest.raises(ValueError, match="bad b"):
        list(ordered_map(_fail_on_b, ["a", "b", "c"], jobs=2))


def _sigint_state(_: int) -> tuple[bool, bool]:
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN, \
        signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_workers_leave_ctrl_c_to_the_stage():
    """A worker ignores SIGINT (the stage handles it) and holds no signal back."""
    assert list(ordered_map(_sigint_state, [0, 1], jobs=2)) == [(True, False), (True, False)]
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the stage's mask is as it was


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.2, 0.4])
def test_ctrl_c_while_workers_start_gives_the_stages_one_line(tmp_path, delay):
    """Ctrl-C reaches the terminal's whole process group: a worker still importing NumPy printed its own
    KeyboardInterrupt traceback beside the stage's one line."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(tmp_path)!r})
        from musicid.parallel import ordered_map
        from musicid.stage import run_stage
        from slow import slow
        def body():
            print("starting", flush=True)
            for _ in ordered_map(slow, range(8), jobs=2):
                pass
        sys.exit(run_stage("stage", body))
    """)
    (tmp_path / "slow.py").write_text("import time\nimport numpy\ndef slow(x):\n    time.sleep(30)\n")
    stage = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True,
                             # a terminal's Ctrl-C, even when the tests run with SIGINT ignored (started with &)
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert stage.stdout.readline() == "starting\n"  # the stage's own handler is in place; workers start now
        time.sleep(delay)
        os.killpg(stage.pid, signal.SIGINT)
        _, err = stage.communicate(timeout=60)
    finally:
        try:
            os.killpg(stage.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert stage.returncode == 130
    assert "Traceback" not in err and len(err.splitlines()) == 1, err


HALF_WRITTEN = """
import os, struct, sys, time
def slow(x):
    if x == 1:  # a result cut off by the kill: a message's length, then a part of it, in the pool's result pipe
        time.sleep(0.5)  # after the first item's result, which the stage must receive whole
        result_queue = sys._getframe(1).f_locals["result_queue"]  # concurrent.futures' _process_worker
        os.write(result_queue._writer.fileno(), struct.pack("!i", 1 << 20) + bytes(100))
    if x > 0:
        open(os.path.join(os.path.dirname(__file__), f"started{x}"), "w").close()
    time.sleep(0 if x == 0 else 120)
"""


@pytest.mark.parametrize("held", ["working", "half_written"])
def test_ctrl_c_in_the_stages_own_loop_ends_the_workers_at_once_and_in_one_line(tmp_path, held):
    """A Ctrl-C that lands while the stage handles a result (not inside the pool) closes the generator: the
    workers are killed, not waited for (the items they hold may take minutes). One killed while it writes its
    result leaves part of it in the result pipe, where the pool's reader would wait for the rest for ever."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(tmp_path)!r})
        from musicid.parallel import ordered_map
        from musicid.stage import run_stage
        from slow import slow
        def body():
            for _ in ordered_map(slow, range(6), jobs=2):
                print("result", flush=True)
                time.sleep(120)  # the stage's own work on a result
        sys.exit(run_stage("stage", body))
    """)
    (tmp_path / "slow.py").write_text(HALF_WRITTEN if held == "half_written" else
                                      HALF_WRITTEN.replace("if x == 1:", "if False:"))
    stage = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True,
                             # a terminal's Ctrl-C, even when the tests run with SIGINT ignored (started with &)
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert stage.stdout.readline() == "result\n"
        deadline = time.monotonic() + 60  # the second item has started (and, half_written, written its part)
        while not (tmp_path / "started1").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "started1").exists()
        sent = time.monotonic()
        os.killpg(stage.pid, signal.SIGINT)
        _, err = stage.communicate(timeout=60)
        took = time.monotonic() - sent
        # The workers hold items of 120 s: one left running would still be there after the grace time.
        left = running_in_group(stage.pid)
    finally:
        try:
            os.killpg(stage.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert stage.returncode == 130 and took < 10, (took, err)  # the items in hand take 120 s each
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert left == []


def test_a_sigterm_while_work_is_handed_to_the_pool_arrives_after_it():
    """The stage's handler raises on SIGTERM as on Ctrl-C; raised inside the pool's submit, between the acquire
    of its work-id queue's lock and the block that releases it, it left the lock held and the pool's shutdown
    waiting for ever (predict, SIGTERM to its group, once in a test run). Both are held back there now, in a
    process with other threads too (which a signal mask alone left free to take the signal)."""
    import threading

    from musicid.parallel import _interrupts_held

    class Stop(Exception):
        pass

    def raise_stop(signum, frame):
        raise Stop

    other = threading.Event()
    helper = threading.Thread(target=other.wait, daemon=True)  # a thread that does not block the signal
    helper.start()
    previous = signal.signal(signal.SIGTERM, raise_stop)
    reached = []
    try:
        with pytest.raises(Stop):
            with _interrupts_held():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # time for the handler to run, were it not held back
                    time.sleep(0.0001)
                reached.append("the end of the block")
        assert signal.getsignal(signal.SIGTERM) is raise_stop  # its own handler, back
    finally:
        signal.signal(signal.SIGTERM, previous)
        other.set()
    assert reached == ["the end of the block"]

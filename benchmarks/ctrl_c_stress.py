"""Ctrl-C at random moments in a stage whose workers return large results: does it always end, and how fast?

A stage's Ctrl-C kills the worker processes rather than waiting for the
items they hold (see ``musicid.parallel._pool_map``).  A worker killed while
it writes its result leaves part of a message in the pool's result pipe; the
pool's reader must not wait for the rest of it.  This script makes that
likely: each item returns ``--megabytes`` of bytes (a pipe holds 64 KiB, so a
worker spends most of its time writing), the stage spends a random few
milliseconds on each result, and SIGINT reaches the whole process group at a
random moment of the run, as a terminal's Ctrl-C does.  Each trial must end
with exit code 130, one line on stderr and no worker left; one that takes
longer than ``--timeout`` seconds counts as hung and is killed.  Prints the
trials' count of hangs and failures and the median and maximum time from the
signal to the end.

    python benchmarks/ctrl_c_stress.py [--trials 100] [--megabytes 20] [--timeout 30]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORK = """
import random, time
def work(x):
    time.sleep(random.random() * 0.02)
    return bytes({size})
"""

STAGE = """
import random, sys, time
sys.path.insert(0, {folder!r})
sys.path.insert(0, {root!r})
from musicid.parallel import ordered_map
from musicid.stage import run_stage
from work import work
def body():
    print("started", flush=True)
    for result in ordered_map(work, range(100000), jobs=2):
        time.sleep(random.random() * 0.01)  # the stage's own work on a result
sys.exit(run_stage("stage", body))
"""


def alive_in_group(group: int) -> list[str]:
    pids = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True).stdout.split()
    alive = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.append(pid)
        except FileNotFoundError:
            pass
    return alive


def trial(folder: Path, rng: random.Random, timeout: float) -> tuple[str, float]:
    stage = subprocess.Popen([sys.executable, "-c", STAGE.format(folder=str(folder), root=str(ROOT))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stage.stdout.readline()
        time.sleep(1.0 + rng.random() * 2.0)  # workers started, results flowing
        sent = time.monotonic()
        os.killpg(stage.pid, signal.SIGINT)
        try:
            _, err = stage.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            return "hung", time.monotonic() - sent
        took = time.monotonic() - sent
        time.sleep(0.2)
        left = alive_in_group(stage.pid)
    finally:
        try:
            os.killpg(stage.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stage.wait()
    if stage.returncode != 130 or len(err.splitlines()) != 1 or left:
        return f"failed: exit {stage.returncode}, stderr {err!r}, left {left}", took
    return "ok", took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--megabytes", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    outcomes: dict[str, int] = {}
    times = []
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "work.py").write_text(textwrap.dedent(WORK.format(size=int(args.megabytes * 2**20))))
        for index in range(args.trials):
            outcome, took = trial(Path(folder), rng, args.timeout)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            times.append(took)
            if outcome != "ok":
                print(f"trial {index}: {outcome} ({took:.1f} s)", flush=True)
    print(f"{args.trials} trials, results of {args.megabytes:g} MB: "
          + ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())))
    print(f"signal to exit: median {statistics.median(times):.2f} s, max {max(times):.2f} s")
    return 0 if outcomes.get("ok", 0) == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())

"""What download's cache of converted scores saves on the default dataset, measured side by side.

    python benchmarks/score_cache.py [--params params.yaml] [--repeat 2] [--jobs 0]

Runs the download stage (``stages/download.py``, music21's corpus with the
given params, or any other source they name) ``--repeat`` times with an empty
score cache and as often with one that holds every score (filled by a first
run, not timed), alternating, into folders of its own; prints each run's
seconds, the best of each and their ratio, and checks that every run wrote the
same files, byte for byte.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(params: Path, out: Path, cache: Path, jobs: int) -> tuple[float, str]:
    """(seconds, the stage's summary line) of one download into ``out`` with the score cache ``cache``."""
    environment = {**os.environ, "MUSICID_SCORE_CACHE": str(cache), "MUSICID_PROGRESS": "0"}
    environment.pop("MUSICID_NO_CACHE", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "stages" / "download.py"), "--params", str(params), "--out",
                           str(out), "--jobs", str(jobs)], check=True, env=environment, capture_output=True, text=True)
    return time.perf_counter() - start, done.stdout.strip().splitlines()[-1]


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each kind (default 2)")
    parser.add_argument("--jobs", type=int, default=0, help="download's --jobs (default 0: one per core)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    with tempfile.TemporaryDirectory(prefix="score-cache-bench-") as scratch:
        scratch = Path(scratch)
        warm = scratch / "warm-cache"
        run(args.params.resolve(), scratch / "fill", warm, args.jobs)
        reference = files(scratch / "fill")
        times: dict[str, list[float]] = {"empty": [], "full": []}
        for index in range(args.repeat):
            for kind in (("empty", "full") if index % 2 == 0 else ("full", "empty")):
                cache = warm if kind == "full" else scratch / f"cold-{index}"
                out = scratch / f"{kind}-{index}"
                seconds, summary = run(args.params.resolve(), out, cache, args.jobs)
                times[kind].append(seconds)
                if (kind == "full") != ("from the score cache" in summary):  # the full cache must serve, the empty not
                    print(f"run {kind} {index + 1}: {summary}", file=sys.stderr)
                    return 1
                if files(out) != reference:
                    print(f"run {kind} {index + 1} wrote other files than the first run", file=sys.stderr)
                    return 1
            print(f"pair {index + 1}: empty cache {times['empty'][-1]:.1f} s, full cache {times['full'][-1]:.1f} s")
        best_empty, best_full = min(times["empty"]), min(times["full"])
        print(f"best: empty cache {best_empty:.1f} s, full cache {best_full:.1f} s, ratio {best_empty / best_full:.1f} "
              f"({len(reference) - 1} files and the manifest, the same bytes in every run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

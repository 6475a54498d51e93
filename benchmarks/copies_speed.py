"""What finding copies of one recording costs the clip stage (musicid/copies.py).

Fingerprints the WAVs a render wrote (default: data/audio, the default dataset's 160 renders, about six
hours), in the stage's process and on 2 workers, side by side, then compares them all (copy_groups), and
times the comparison of N synthetic fingerprints of 30 s and of 10 s, every one of the same length (the worst
case: a collection of excerpts). Prints seconds and seconds per recorded hour.

    python benchmarks/copies_speed.py [--audio data/audio] [--excerpts 1000] [--repeats 2] [--times 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from musicid.copies import BANDS, _fingerprint_or_none, copy_groups  # noqa: E402
from musicid.parallel import ordered_map  # noqa: E402


def fingerprints(paths: list[str], jobs: int) -> tuple[float, dict]:
    started = time.perf_counter()
    prints = dict(zip(paths, ordered_map(_fingerprint_or_none, paths, jobs=jobs)))  # (a repeated path: once)
    return time.perf_counter() - started, prints


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, default=Path("data/audio"))
    parser.add_argument("--excerpts", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--times", type=int, default=1, help="fingerprint each recording this many times over "
                                                              "(a longer collection)")
    args = parser.parse_args()
    for name in ("excerpts", "repeats", "times"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not (args.audio / "report.json").is_file():
        parser.error(f"{args.audio / 'report.json'} is missing: render first (dvc repro render)")
    records = [r for r in json.loads((args.audio / "report.json").read_text())["files"] if r["outputs"]]
    paths = [str(args.audio / r["outputs"][0]) for r in records] * args.times
    hours = sum(r["duration_s"] for r in records) / 3600 * args.times
    print(f"{len(paths)} recordings, {hours:.2f} h of audio in {args.audio}"
          + (f" ({args.times} times over)" if args.times > 1 else ""))
    for repeat in range(args.repeats):
        one, prints = fingerprints(paths, 1)
        two, again = fingerprints(paths, 2)
        same = all(np.array_equal(prints[p], again[p]) for p in paths)
        print(f"run {repeat + 1}: fingerprints {one:.1f} s in one process ({one / hours:.2f} s an hour), "
              f"{two:.1f} s on 2 workers ({two / hours:.2f} s an hour), {one / two:.2f}x; same prints: {same}")
    started = time.perf_counter()
    groups = copy_groups(prints)
    print(f"comparing the {len(paths)}: {time.perf_counter() - started:.2f} s, {len(groups)} groups of copies"
          + (f" ({'; '.join(' = '.join(Path(p).name for p in g) for g in groups)})" if groups else ""))
    rng = np.random.default_rng(0)
    for seconds in (30, 10):  # compared first by their first 10 s, or 5 s
        excerpts = {}
        for index in range(args.excerpts):  # smooth over seconds, as music's spectrum is, each its own
            walk = np.cumsum(rng.normal(size=(seconds * 10, BANDS)), axis=0)
            excerpts[f"x{index}"] = (walk - walk.mean(axis=0)).astype(np.float32)
        started = time.perf_counter()
        groups = copy_groups(excerpts)
        print(f"comparing {args.excerpts} excerpts of {seconds} s, all of one length: "
              f"{time.perf_counter() - started:.2f} s, {len(groups)} groups of copies")
    return 0


if __name__ == "__main__":
    sys.exit(main())

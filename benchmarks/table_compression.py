"""What gzip costs on the audio and feature columns of clips.h5 and features.h5, in one run.

Writes the first clips of the given tables again, in batches of 64 rows as the
stages do, once as RowWriter stores them (array columns as they are) and once
with the gzip level 1 and shuffle filter they had before, alternating, then
reads each copy back whole (as featurize and train read them).  Prints the
median seconds of each way, their ratio and the sizes.

    python benchmarks/table_compression.py [--clips data/clips.h5] [--features data/features.h5] [--rows 1024]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
WAYS = {"plain": {}, "gzip": {"compression": "gzip", "compression_opts": 1, "shuffle": True}}


def write(path: Path, rows: np.ndarray, filters: dict) -> float:
    started = time.perf_counter()
    with h5py.File(path, "w", libver="v112") as table:
        column = table.create_dataset("x", shape=(0, *rows.shape[1:]), maxshape=(None, *rows.shape[1:]),
                                      dtype=rows.dtype, chunks=(16, *rows.shape[1:]), track_times=False, **filters)
        for start in range(0, len(rows), 64):
            column.resize((min(start + 64, len(rows)), *rows.shape[1:]))
            column[start:start + 64] = rows[start:start + 64]
    return time.perf_counter() - started


def read(path: Path, rows: np.ndarray) -> float:
    started = time.perf_counter()
    with h5py.File(path, "r") as table:
        back = table["x"][:]
    seconds = time.perf_counter() - started
    if not np.array_equal(back, rows):
        raise AssertionError(f"{path} does not give back the rows written")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=PROJECT / "data" / "clips.h5")
    parser.add_argument("--features", type=Path, default=PROJECT / "data" / "features.h5")
    parser.add_argument("--rows", type=int, default=1024, help="rows of each table (default 1024)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for table in (args.clips, args.features):
        if not table.is_file():
            print(f"table_compression: {table} is missing: run `dvc repro featurize` first", file=sys.stderr)
            return 2
    print(f"the first {args.rows} rows of each table, written in batches of 64 and read whole, "
          f"{args.repeats} runs of each way, alternating; medians")
    print(f"{'column':24s} {'way':6s} {'write s':>8s} {'read s':>7s} {'MB':>7s}")
    with tempfile.TemporaryDirectory() as scratch:
        for table, column in ((args.clips, "audio"), (args.features, "features")):
            with h5py.File(table, "r") as source:
                rows = source[column][:args.rows]
            seconds = {way: ([], []) for way in WAYS}
            sizes = {}
            for repeat in range(args.repeats):
                for way, filters in WAYS.items():
                    path = Path(scratch) / f"{column}-{way}.h5"
                    seconds[way][0].append(write(path, rows, filters))
                    seconds[way][1].append(read(path, rows))
                    sizes[way] = path.stat().st_size / 1e6
            median = {way: (statistics.median(w), statistics.median(r)) for way, (w, r) in seconds.items()}
            for way in WAYS:
                print(f"{table.name + ':' + column:24s} {way:6s} {median[way][0]:8.2f} {median[way][1]:7.2f} "
                      f"{sizes[way]:7.1f}")
            print(f"{'':24s} gzip / plain: write {median['gzip'][0] / median['plain'][0]:.1f}x, "
                  f"read {median['gzip'][1] / median['plain'][1]:.1f}x, size {sizes['gzip'] / sizes['plain']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

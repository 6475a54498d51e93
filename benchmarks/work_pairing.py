"""What finding the versions of one work costs on a large collection: download's pairing of MIDI files by their
melodic patterns (musicid.dataset.same_work_groups), against the product over all pairs it replaced.

    python benchmarks/work_pairing.py [--files 2000 8000] [--repeat 3] [--seed 0]

For each ``--files`` count it makes a synthetic collection of pattern sets (no MIDI is read: the cost measured is
the pairing's): each file's size drawn log-uniformly from 100 to 10,000 distinct patterns (a minute's piece to a
long movement), its patterns drawn from a Zipf law over a shared vocabulary (scales and repeated notes in nearly
every file, most figures rare), every 25th file followed by a version of it (a fifth of its patterns dropped, a
few of its own added). It times, in one process, the best of ``--repeat`` runs of

- ``all pairs``: the sparse product of every file's patterns against every other file's, 512 rows at a time, both
  halves of the triangle (download before 2026-12-08), and
- ``by size``: :func:`musicid.dataset.alike_pairs` as download runs it, files in order of size, each block against
  the larger files up to twice its largest only (a set more than twice another's cannot share half their union),

checks that the two find the same pairs (it stops otherwise), and prints seconds, the pairs found and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from musicid.dataset import PAIRING_ROWS, SAME_WORK_SHARE, alike_pairs, pattern_matrix  # noqa: E402


def all_pairs(patterns: list) -> tuple[np.ndarray, np.ndarray]:
    """The pairing before: every file's patterns against all others', both halves of the product."""
    present = np.array([index for index, found in enumerate(patterns) if found is not None and len(found)])
    sizes = np.array([len(patterns[index]) for index in present])
    matrix = pattern_matrix([patterns[index] for index in present])
    transposed = matrix.T.tocsc()
    found_rows, found_cols = [], []
    for start in range(0, len(present), PAIRING_ROWS):
        shared = (matrix[start:start + PAIRING_ROWS] @ transposed).tocoo()
        rows, cols = shared.row + start, shared.col
        alike = (rows < cols) & (shared.data >= SAME_WORK_SHARE * (sizes[rows] + sizes[cols] - shared.data))
        found_rows.append(present[rows[alike]])
        found_cols.append(present[cols[alike]])
    return np.concatenate(found_rows), np.concatenate(found_cols)


def collection(files: int, seed: int) -> list[np.ndarray]:
    """Synthetic pattern sets (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    patterns = []
    while len(patterns) < files:
        size = int(np.exp(rng.uniform(np.log(100), np.log(10_000))))
        found = np.unique(rng.zipf(1.2, 2 * size) % (1 << 28)).astype(np.int64)
        patterns.append(found[rng.permutation(len(found))[:size]])
        if len(patterns) % 25 == 1 and len(patterns) < files:
            version = found[rng.random(len(found)) > 0.2]
            patterns.append(np.concatenate([version, rng.integers(1 << 27, 1 << 28, size // 20)]))
    return [np.unique(found) for found in patterns[:files]]


def pair_set(rows: np.ndarray, cols: np.ndarray) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in zip(rows.tolist(), cols.tolist())}


def best(function, patterns: list, repeat: int) -> tuple[float, set]:
    seconds = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        found = function(patterns)
        seconds = min(seconds, time.perf_counter() - started)
    return seconds, pair_set(*found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[2000, 8000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.files) < 2 or args.repeat < 1:
        parser.error("--files must be at least 2, --repeat at least 1")
    print("| files | distinct patterns a file (median) | all pairs, s | by size, s | pairs found | ratio |")
    print("|---|---|---|---|---|---|")
    for files in args.files:
        patterns = collection(files, args.seed)
        before, before_pairs = best(all_pairs, patterns, args.repeat)
        after, after_pairs = best(alike_pairs, patterns, args.repeat)
        if before_pairs != after_pairs:
            sys.exit(f"{files} files: the two found different pairs ({len(before_pairs)} and {len(after_pairs)})")
        print(f"| {files} | {int(np.median([len(p) for p in patterns]))} | {before:.2f} | {after:.2f} | "
              f"{len(after_pairs)} | {before / after:.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

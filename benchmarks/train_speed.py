"""What thread-invariant training costs: PyTorch's own convolutions against oneDNN's, in one run.

Training runs its convolutions without oneDNN, whose weight gradient splits
its sum among the threads (so the weights depend on the thread count).  This
script trains the default model for a few epochs on the same clips both ways,
alternating, and prints the median seconds per epoch of each and their ratio,
and whether each way gives the same weights with 1 and 2 threads.

    python benchmarks/train_speed.py [--features data/features.h5] [--clips 512] [--epochs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from musicid import training
from musicid.h5 import read_strings
from musicid.model import ModelConfig
from musicid.params import load_section

PROJECT = Path(__file__).resolve().parent.parent


def load(features: Path, clips: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The first ``clips`` training clips and the first quarter as many validation clips, normalised."""
    with h5py.File(features, "r") as table:
        splits = read_strings(table["split"])
        mean = np.asarray(table.attrs["band_mean"], np.float32)
        std = np.asarray(table.attrs["band_std"], np.float32)
        rows = {split: np.flatnonzero(splits == split)[:count]
                for split, count in (("train", clips), ("val", max(clips // 4, 1)))}
        data = {split: (training.normalise(table["features"][index], mean, std),
                        table["label"][index].astype(np.int64)) for split, index in rows.items()}
    return (*data["train"], *data["val"])


def train_once(arrays, params, invariant: bool, threads: int) -> tuple[float, bytes]:
    """(seconds per epoch, the trained weights' bytes) of one training run."""
    train_x, train_y, val_x, val_y = arrays
    config = ModelConfig(n_bands=train_x.shape[1], n_classes=int(train_y.max()) + 1,
                         channels=list(params.channels), embedding_dim=params.embedding_dim,
                         dropout=params.dropout)
    torch.set_num_threads(threads)
    kernels = training.thread_invariant_kernels
    if not invariant:  # oneDNN's kernels, as PyTorch uses them by default
        training.thread_invariant_kernels = contextlib.nullcontext
    try:
        started = time.perf_counter()
        model, log, _ = training.train_model(train_x, train_y, val_x, val_y, config, params)
        seconds = (time.perf_counter() - started) / len(log)
    finally:
        training.thread_invariant_kernels = kernels
    weights = b"".join(value.numpy().tobytes() for value in model.state_dict().values())
    return seconds, weights


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, default=PROJECT / "data" / "features.h5")
    parser.add_argument("--params", type=Path, default=PROJECT / "params.yaml")
    parser.add_argument("--clips", type=int, default=512, help="training clips (default 512)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.features.is_file():
        print(f"train_speed: {args.features} is missing: run `dvc repro featurize` first", file=sys.stderr)
        return 2
    params = load_section(args.params, "train").model_copy(update={"epochs": args.epochs, "patience": 0})
    arrays = load(args.features, args.clips)
    threads = torch.get_num_threads()
    print(f"{len(arrays[0])} training clips [{arrays[0].shape[1]} x {arrays[0].shape[2]}], {args.epochs} epochs, "
          f"{threads} threads, {args.repeats} runs of each, alternating")
    times = {True: [], False: []}
    weights = {}
    for _ in range(args.repeats):
        for invariant in (True, False):
            seconds, weights[invariant, threads] = train_once(arrays, params, invariant, threads)
            times[invariant].append(seconds)
    for invariant in (True, False):
        _, weights[invariant, 1] = train_once(arrays, params, invariant, 1)
    for invariant, name in ((True, "PyTorch's convolutions (as train runs)"), (False, "oneDNN's convolutions")):
        same = "the same weights as" if weights[invariant, 1] == weights[invariant, threads] else "other weights than"
        print(f"{name:40s} median {statistics.median(times[invariant]):6.2f} s per epoch; "
              f"1 thread gives {same} {threads}")
    ratio = statistics.median(times[True]) / statistics.median(times[False])
    print(f"thread-invariant / oneDNN time per epoch: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What thread-invariant training costs: four choices of convolution kernels, in one run.

oneDNN's convolution weight gradient splits its sum over the batch among the
threads, so weights trained with it depend on the thread count.  Training
(``musicid.model.ThreadInvariantConv3x3``) cuts the batch into
``WEIGHT_GRAD_PARTS`` fixed parts and runs that pass of oneDNN on one thread
per part, the threads working at once, and the forward pass and the input
gradient on all.  This script trains the default model (with the table's
symbolic features and piano roll, as train does) for a few epochs on the same clips four
ways, alternating:

- PyTorch's own kernels for all three passes (how training ran at first),
- oneDNN with the whole batch's weight gradient on one thread (how training ran
  before the parts),
- training's way (oneDNN, the weight gradient in parts, one thread each),
- oneDNN on all threads for all three (PyTorch's default, not thread-invariant),

and prints the median seconds per epoch of each, the ratios, and whether each
gives the same weights with 1 and all threads.

    python benchmarks/train_speed.py [--features data/features.h5] [--clips 512] [--epochs 2] [--repeats 3]

Like the train stage, it sets ``GOMP_SPINCOUNT=10000`` unless the environment
has it; ``GOMP_SPINCOUNT=300000`` (OpenMP's default) shows what the parts gain
without it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("GOMP_SPINCOUNT", "10000")  # as stages/train.py sets it (see there), before torch loads

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from musicid import training
from musicid.h5 import read_strings
import musicid.model as cnn
from musicid.model import ConvBlock, ModelConfig, onednn
from musicid.params import load_section

PROJECT = Path(__file__).resolve().parent.parent
WAYS = {"pytorch": "PyTorch's kernels (at first)",
        "single": "oneDNN, weight grad 1 thread",
        "pooled": "  + channels-last max pooling",
        "training": f"  + weight grad in {cnn.WEIGHT_GRAD_PARTS} parts",
        "onednn": "oneDNN's kernels"}


def load(features: Path, clips: int) -> dict:
    """The first ``clips`` training clips and the first quarter as many validation clips, normalised,
    with their symbolic branch input when the table has symbolic features."""
    with h5py.File(features, "r") as table:
        splits = read_strings(table["split"])
        mean = np.asarray(table.attrs["band_mean"], np.float32)
        std = np.asarray(table.attrs["band_std"], np.float32)
        symbolic = "symbolic" in table and "symbolic_mean" in table.attrs
        data = {"roll_shape": [int(n) for n in table.attrs.get("symbolic_roll_shape", [])]}
        for split, count in (("train", clips), ("val", max(clips // 4, 1))):
            index = np.flatnonzero(splits == split)[:count]
            data[f"{split}_x"] = training.normalise(table["features"][index], mean, std)
            data[f"{split}_y"] = table["label"][index].astype(np.int64)
            data[f"{split}_symbolic"] = None if not symbolic else training.read_symbolic_input(
                table, index, np.asarray(table.attrs["symbolic_mean"], np.float32),
                np.asarray(table.attrs["symbolic_std"], np.float32))
    return data


def plain_conv_block(self, x: torch.Tensor) -> torch.Tensor:
    """ConvBlock.forward with nn.Conv2d's own autograd: one kernel family, all threads, for all three passes,
    and PyTorch's max pooling after the ReLU."""
    return F.max_pool2d(F.relu(self.norm(self.conv(x))), kernel_size=2, ceil_mode=True)


def single_conv_block(self, x: torch.Tensor) -> torch.Tensor:
    """ConvBlock.forward as it was before its pooling: PyTorch's (B, C, H, W) max pooling after the ReLU."""
    return F.max_pool2d(F.relu(self.norm(cnn.ThreadInvariantConv3x3.apply(x, self.conv.weight))),
                        kernel_size=2, ceil_mode=True)


@contextlib.contextmanager
def kernels(way: str):
    """Training's way, or one of the others: ``ConvBlock.forward`` and ``WEIGHT_GRAD_PARTS`` swapped in."""
    block = {"pytorch": plain_conv_block, "onednn": plain_conv_block, "single": single_conv_block}.get(way)
    training_forward, parts = ConvBlock.forward, cnn.WEIGHT_GRAD_PARTS
    ConvBlock.forward = block or training_forward
    cnn.WEIGHT_GRAD_PARTS = 1 if way in ("single", "pooled") else parts
    try:
        with onednn(way != "pytorch"):
            yield
    finally:
        ConvBlock.forward, cnn.WEIGHT_GRAD_PARTS = training_forward, parts


def train_once(data: dict, params, way: str, threads: int) -> tuple[float, bytes]:
    """(seconds per epoch, the trained weights' bytes) of one training run."""
    symbolic = data["train_symbolic"]
    config = ModelConfig(n_bands=data["train_x"].shape[1], n_classes=int(data["train_y"].max()) + 1,
                         channels=list(params.channels), embedding_dim=params.embedding_dim,
                         dropout=params.dropout, symbolic_dim=0 if symbolic is None else symbolic.shape[1] - 1,
                         roll_shape=data["roll_shape"] if symbolic is not None else [],
                         roll_channels=list(params.roll_channels), roll_pool=params.roll_pool)
    torch.set_num_threads(threads)
    with kernels(way):
        started = time.perf_counter()
        model, log, _ = training.train_model(data["train_x"], data["train_y"], data["val_x"], data["val_y"],
                                             config, params, train_symbolic=symbolic,
                                             val_symbolic=data["val_symbolic"])
        seconds = (time.perf_counter() - started) / len(log)
    weights = b"".join(value.numpy().tobytes() for value in model.state_dict().values())
    return seconds, weights


def training_parser(doc: str, features_help: str | None = None) -> argparse.ArgumentParser:
    """The arguments of the benchmarks that time training on a features table's clips; ``features_help``:
    the table is required (no default) and this says what it must hold."""
    parser = argparse.ArgumentParser(description=" ".join(doc.split("\n\n")[0].split()))  # its first paragraph
    if features_help is None:
        parser.add_argument("--features", type=Path, default=PROJECT / "data" / "features.h5")
    else:
        parser.add_argument("--features", type=Path, required=True, help=features_help)
    parser.add_argument("--params", type=Path, default=PROJECT / "params.yaml")
    parser.add_argument("--clips", type=positive, default=512, help="training clips (default 512)")
    parser.add_argument("--epochs", type=positive, default=2)
    parser.add_argument("--repeats", type=positive, default=3)
    return parser


def positive(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def main() -> int:
    args = training_parser(__doc__).parse_args()
    if not args.features.is_file():
        print(f"train_speed: {args.features} is missing: run `dvc repro featurize` first", file=sys.stderr)
        return 2
    params = load_section(args.params, "train").model_copy(update={"epochs": args.epochs, "patience": 0})
    data = load(args.features, args.clips)
    threads = torch.get_num_threads()
    symbolic = "with" if data["train_symbolic"] is not None else "without"
    if data["train_symbolic"] is not None and data["roll_shape"]:
        symbolic += " the piano roll and"
    print(f"{len(data['train_x'])} training clips [{data['train_x'].shape[1]} x {data['train_x'].shape[2]}] "
          f"{symbolic} symbolic features, {args.epochs} epochs, {threads} threads, {args.repeats} runs of each, "
          "alternating")
    times = {way: [] for way in WAYS}
    weights = {}
    for _ in range(args.repeats):
        for way in WAYS:
            seconds, weights[way, threads] = train_once(data, params, way, threads)
            times[way].append(seconds)
    for way in WAYS:
        _, weights[way, 1] = train_once(data, params, way, 1)
    for way, name in WAYS.items():
        same = "the same weights as" if weights[way, 1] == weights[way, threads] else "other weights than"
        print(f"{name:32s} median {statistics.median(times[way]):6.2f} s per epoch; "
              f"1 thread gives {same} {threads}")
    same = "the same" if weights["pooled", threads] == weights["single", threads] else "other"
    print(f"channels-last max pooling gives {same} weights as the pooling before it")
    median = {way: statistics.median(values) for way, values in times.items()}
    print(f"time per epoch, PyTorch's / training's: {median['pytorch'] / median['training']:.2f}; "
          f"weight grad on 1 thread's / training's: {median['single'] / median['training']:.2f} "
          f"(the pooling {median['single'] / median['pooled']:.2f}, the parts {median['pooled'] / median['training']:.2f}); "
          f"training's / oneDNN's: {median['training'] / median['onednn']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

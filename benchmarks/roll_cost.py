"""What the piano-roll branch costs in training: the same clips trained without the roll and with each
roll branch, in one run.

``features.symbolic_roll`` adds a conv branch beside the audio one; its cost grows with its first block's
activations (88 pitches x the frames it sees x its first width). This script trains the default model on
the same clips of a table made with ``features.symbolic_roll: true``, alternating:

- without the roll (the table's other symbolic features only, as ``symbolic_roll: false`` trains),
- with the roll branch of each ``train.roll_channels`` / ``train.roll_pool`` below,

and prints the median seconds per epoch of each and its ratio to training without the roll. Its ratios
held on a whole collection on an Intel Xeon (pool 2 with [8, 16, 32]: 1.03-1.09x here, 1.08x for the 11520
training clips of ``collection_budget.py`` run back to back with the default), less well on an AMD EPYC
(1.09x here, 1.20x on the collection); what it leaves out is the roll's featurize and the evaluate stage:
for a budget, time ``collection_budget.py`` with the params.

    python benchmarks/roll_cost.py --features <a features.h5 with a piano roll> [--clips 512] [--epochs 2]
"""

from __future__ import annotations

import statistics
import sys
import time

from train_speed import load, training_parser  # first: it sets GOMP_SPINCOUNT, as train does, before torch loads

import h5py
import numpy as np
import torch

from musicid import training
from musicid.model import ModelConfig
from musicid.params import load_section

# name -> (train.roll_channels, train.roll_pool); None: without the roll
BRANCHES = {"no roll": None, "roll 16-32-64": ([16, 32, 64], 1), "roll 8-16-32, pool 2": ([8, 16, 32], 2),
            "roll 8-16": ([8, 16], 1)}


def train_once(data: dict, params, roll_shape: list[int], branch: tuple[list[int], int] | None) -> float:
    """Seconds per epoch of one training run."""
    symbolic = data["train_symbolic"]
    val_symbolic = data["val_symbolic"]
    if branch is None:  # drop the roll's columns, keep the presence flag
        plain = symbolic.shape[1] - 1 - int(np.prod(roll_shape))
        symbolic, val_symbolic = (np.concatenate([s[:, :plain], s[:, -1:]], axis=1) for s in (symbolic, val_symbolic))
    channels, pool = branch if branch is not None else ([16, 32, 64], 1)
    config = ModelConfig(n_bands=data["train_x"].shape[1], n_classes=int(data["train_y"].max()) + 1,
                         channels=list(params.channels), embedding_dim=params.embedding_dim, dropout=params.dropout,
                         symbolic_dim=symbolic.shape[1] - 1, roll_shape=[] if branch is None else roll_shape,
                         roll_channels=channels, roll_pool=pool)
    started = time.perf_counter()
    _, log, _ = training.train_model(data["train_x"], data["train_y"], data["val_x"], data["val_y"], config,
                                     params, train_symbolic=symbolic, val_symbolic=val_symbolic)
    return (time.perf_counter() - started) / len(log)


def main(argv: list[str] | None = None) -> int:
    args = training_parser(__doc__, "a features.h5 made with features.symbolic_roll: true").parse_args(argv)
    if not args.features.is_file():
        print(f"roll_cost: {args.features} is missing", file=sys.stderr)
        return 2
    with h5py.File(args.features, "r") as table:
        roll_shape = [int(n) for n in table.attrs.get("symbolic_roll_shape", [])]
    if not roll_shape:
        print(f"roll_cost: {args.features} has no piano roll: featurize with features.symbolic_roll: true",
              file=sys.stderr)
        return 2
    params = load_section(args.params, "train").model_copy(update={"epochs": args.epochs, "patience": 0})
    data = load(args.features, args.clips)
    print(f"{len(data['train_x'])} training clips [{data['train_x'].shape[1]} x {data['train_x'].shape[2]}], "
          f"roll {' x '.join(map(str, roll_shape))}, {args.epochs} epochs, {torch.get_num_threads()} threads, "
          f"{args.repeats} runs of each, alternating")
    train_once(data, params, roll_shape, None)  # warm-up, not timed: the first run pays one-time costs
    times = {name: [] for name in BRANCHES}
    for _ in range(args.repeats):
        for name, branch in BRANCHES.items():
            times[name].append(train_once(data, params, roll_shape, branch))
    base = statistics.median(times["no roll"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:22s} median {median:6.2f} s per epoch  {median / base:5.2f}x without the roll")
    return 0


if __name__ == "__main__":
    sys.exit(main())

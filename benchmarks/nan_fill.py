"""What deterministic mode's NaN filling of new tensors cost training, in one run.

``torch.use_deterministic_algorithms(True)``, which training asks for, also
fills the memory of every new tensor with NaN before an operation writes it
(``torch.utils.deterministic.fill_uninitialized_memory``, on by default): a
debugging aid that catches reads of memory nothing wrote.  Training
(``musicid.training.seed_everything``) turns the filling off and keeps the
deterministic kernels.  This script trains the model the params describe on
the same clips of a features table both ways, alternating, after one warm-up
run:

- the filling on (how training ran before),
- the filling off (how it runs now),

and prints the median seconds per epoch of each, their ratio, and whether the
two give the same weights, byte for byte (they must: were training to read
memory nothing wrote, the NaNs would show in the weights).  With a table made
with ``features.symbolic_roll: true`` the model has the params' roll branch.

    python benchmarks/nan_fill.py [--features data/features.h5] [--clips 512] [--epochs 2] [--repeats 3]
"""

from __future__ import annotations

import statistics
import sys
import time

from train_speed import load, training_parser  # first: it sets GOMP_SPINCOUNT, as train does, before torch loads

import h5py
import torch
import torch.utils.deterministic

from musicid import training
from musicid.model import ModelConfig
from musicid.params import load_section

WAYS = {True: "NaN filling on (before)", False: "NaN filling off (training now)"}


def train_once(data: dict, params, roll_shape: list[int], fill: bool) -> tuple[float, bytes]:
    """(seconds per epoch, the trained weights' bytes) of one training run with the filling ``fill``."""
    symbolic = data["train_symbolic"]
    config = ModelConfig(n_bands=data["train_x"].shape[1], n_classes=int(data["train_y"].max()) + 1,
                         channels=list(params.channels), embedding_dim=params.embedding_dim,
                         dropout=params.dropout, symbolic_dim=0 if symbolic is None else symbolic.shape[1] - 1,
                         roll_shape=roll_shape, roll_channels=list(params.roll_channels), roll_pool=params.roll_pool)
    seed_everything = training.seed_everything

    def seeded(seed: int) -> None:
        seed_everything(seed)
        torch.utils.deterministic.fill_uninitialized_memory = fill

    training.seed_everything = seeded
    try:
        started = time.perf_counter()
        model, log, _ = training.train_model(data["train_x"], data["train_y"], data["val_x"], data["val_y"],
                                             config, params, train_symbolic=symbolic,
                                             val_symbolic=data["val_symbolic"])
        seconds = (time.perf_counter() - started) / len(log)
    finally:
        training.seed_everything = seed_everything
    weights = b"".join(value.numpy().tobytes() for value in model.state_dict().values())
    return seconds, weights


def main(argv: list[str] | None = None) -> int:
    args = training_parser(__doc__).parse_args(argv)
    if not args.features.is_file():
        print(f"nan_fill: {args.features} is missing: run `dvc repro featurize` first", file=sys.stderr)
        return 2
    with h5py.File(args.features, "r") as table:
        roll_shape = [int(n) for n in table.attrs.get("symbolic_roll_shape", [])]
    params = load_section(args.params, "train").model_copy(update={"epochs": args.epochs, "patience": 0})
    data = load(args.features, args.clips)
    symbolic = "with" if data["train_symbolic"] is not None else "without"
    roll = (f", roll {' x '.join(map(str, roll_shape))} (channels {list(params.roll_channels)}, pool "
            f"{params.roll_pool})" if roll_shape else "")
    print(f"{len(data['train_x'])} training clips [{data['train_x'].shape[1]} x {data['train_x'].shape[2]}] "
          f"{symbolic} symbolic features{roll}, {args.epochs} epochs, {torch.get_num_threads()} threads, "
          f"{args.repeats} runs of each, alternating")
    train_once(data, params, roll_shape, False)  # warm-up, not timed: the first run pays one-time costs
    times = {fill: [] for fill in WAYS}
    weights = {}
    for _ in range(args.repeats):
        for fill in WAYS:
            seconds, weights[fill] = train_once(data, params, roll_shape, fill)
            times[fill].append(seconds)
    for fill, name in WAYS.items():
        print(f"{name:32s} median {statistics.median(times[fill]):6.2f} s per epoch "
              f"({', '.join(f'{s:.2f}' for s in times[fill])})")
    ratio = statistics.median(times[True]) / statistics.median(times[False])
    same = "the same weights" if weights[True] == weights[False] else "OTHER weights"
    print(f"time per epoch, filling on / off: {ratio:.2f}; the two give {same}")
    return 0 if weights[True] == weights[False] else 1


if __name__ == "__main__":
    sys.exit(main())

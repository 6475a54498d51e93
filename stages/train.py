"""Stage `train`: fit the spectrogram CNN on the training split; keep the best val epoch.

    python stages/train.py --params params.yaml --features data/features.h5 \
        --model models/model.pt --log metrics/training.csv
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import h5py
import numpy as np

from musicid.h5 import read_strings
from musicid.io import atomic_path
from musicid.model import ModelConfig
from musicid.params import ParamsError, as_dict, load_section
from musicid.progress import progress
from musicid.training import normalise, save_checkpoint, train_model


def load_split(features_path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(features float32 [N, n_bands, T], labels int64 [N]) of the known-class rows of one split."""
    with h5py.File(features_path, "r") as table:
        mask = (read_strings(table["split"]) == split) & table["known"][:]
        rows = np.nonzero(mask)[0]
        features = table["features"][rows] if len(rows) else np.zeros((0, *table["features"].shape[1:]), np.float32)
        labels = table["label"][rows].astype(np.int64)
    return features, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, type=Path)
    parser.add_argument("--features", required=True, type=Path, help="input: data/features.h5")
    parser.add_argument("--model", required=True, type=Path, help="output: models/model.pt")
    parser.add_argument("--log", required=True, type=Path, help="output: per-epoch CSV for dvc plots")
    args = parser.parse_args(argv)
    try:
        params = load_section(args.params, "train")
    except ParamsError as error:
        print(f"train: {error}", file=sys.stderr)
        return 2

    with h5py.File(args.features, "r") as table:
        # Held-out classes (open set) come after the known ones; the model never sees them.
        n_known = int(table.attrs["n_known"])
        label_names = [str(name) for name in table.attrs["label_names"]][:n_known]
        band_mean = np.asarray(table.attrs["band_mean"], dtype=np.float32)
        band_std = np.asarray(table.attrs["band_std"], dtype=np.float32)
        upstream = json.loads(table.attrs["params"])
        sample_rate = int(table.attrs["sample_rate"])
    train_x, train_y = load_split(args.features, "train")
    val_x, val_y = load_split(args.features, "val")
    if len(train_x) == 0:
        print("train: the training split is empty", file=sys.stderr)
        return 1
    train_x = normalise(train_x, band_mean, band_std)
    val_x = normalise(val_x, band_mean, band_std)

    config = ModelConfig(n_bands=train_x.shape[1], n_classes=len(label_names),
                         channels=list(params.channels), embedding_dim=params.embedding_dim,
                         dropout=params.dropout)
    model, log, best_epoch = train_model(
        train_x, train_y, val_x, val_y, config, epochs=params.epochs, batch_size=params.batch_size,
        lr=params.lr, weight_decay=params.weight_decay, seed=params.seed, progress=progress)

    save_checkpoint(args.model, model, label_names, band_mean, band_std,
                    {**upstream, "train": as_dict(params), "sample_rate": sample_rate},
                    extra={"best_epoch": best_epoch})
    with atomic_path(args.log) as temporary:
        lines = ["epoch,train_loss,train_accuracy,val_accuracy,val_macro_f1,lr"]
        lines += [f"{e.epoch},{e.train_loss:.6f},{e.train_accuracy:.6f},{e.val_accuracy:.6f},"
                  f"{e.val_macro_f1:.6f},{e.lr:.8f}" for e in log]
        temporary.write_text("\n".join(lines) + "\n")
    best = log[best_epoch - 1]
    print(f"train: {len(train_x)} clips, {params.epochs} epochs; best epoch {best_epoch} "
          f"(val clip accuracy {best.val_accuracy:.3f}, macro-F1 {best.val_macro_f1:.3f}) -> {args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage `evaluate`: clip- and track-level metrics, per-class table and confusion plots.

    python stages/evaluate.py --params params.yaml --model models/model.pt \
        --features data/features.h5 --metrics metrics/metrics.json \
        --per-class metrics/per_class.json --confusion metrics/confusion
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import h5py
import numpy as np

from musicid.h5 import read_strings
from musicid.io import atomic_directory, dumps_json, write_json_atomic
from musicid.metrics import confusion_records, summarise, track_probabilities
from musicid.params import ParamsError, load_section
from musicid.training import load_checkpoint, normalise, pick_device, predict_proba


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, type=Path)
    parser.add_argument("--model", required=True, type=Path, help="input: models/model.pt")
    parser.add_argument("--features", required=True, type=Path, help="input: data/features.h5")
    parser.add_argument("--metrics", required=True, type=Path, help="output: metrics.json")
    parser.add_argument("--per-class", required=True, type=Path, help="output: per-class table (JSON)")
    parser.add_argument("--confusion", required=True, type=Path,
                        help="output directory: one confusion-plot JSON per split and level")
    args = parser.parse_args(argv)
    try:
        params = load_section(args.params, "evaluate")
    except ParamsError as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 2

    device = pick_device()
    model, checkpoint = load_checkpoint(args.model, device)
    label_names = checkpoint["label_names"]
    mean, std = checkpoint["band_mean"].numpy(), checkpoint["band_std"].numpy()
    metrics: dict = {}
    per_class: dict = {}
    with atomic_directory(args.confusion) as confusion_dir, h5py.File(args.features, "r") as table:
        splits = read_strings(table["split"])
        for split in ("val", "test"):
            # Classification metrics cover the known classes; held-out ones are unknown.
            rows = np.nonzero((splits == split) & table["known"][:])[0]
            features = normalise(table["features"][rows], mean, std) if len(rows) else \
                np.zeros((0, *table["features"].shape[1:]), np.float32)
            labels = table["label"][rows].astype(np.int64)
            tracks = read_strings(table["track"])[rows]
            probabilities = predict_proba(model, features, params.batch_size, device)
            track_probs, track_labels, _ = track_probabilities(probabilities, labels, tracks)
            levels = {
                "clip": (labels, probabilities.argmax(1) if len(rows) else labels),
                "track": (track_labels, track_probs.argmax(1) if len(rows) else track_labels),
            }
            metrics[split] = {}
            per_class[split] = {}
            for level, (truth, predicted) in levels.items():
                metrics[split][level], per_class[split][level] = summarise(truth, predicted, label_names)
                (confusion_dir / f"{split}_{level}.json").write_text(
                    dumps_json(confusion_records(truth, predicted, label_names)))
    write_json_atomic(args.metrics, metrics)
    write_json_atomic(args.per_class, per_class)
    test = metrics["test"]
    print(f"evaluate: test clip accuracy {test['clip']['accuracy']:.3f} macro-F1 {test['clip']['macro_f1']:.3f}; "
          f"track accuracy {test['track']['accuracy']:.3f} macro-F1 {test['track']['macro_f1']:.3f} "
          f"({test['track']['n']} tracks) -> {args.metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

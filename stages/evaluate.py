"""Stage `evaluate`: clip- and track-level metrics, confusion matrices, open-set novelty.

    python stages/evaluate.py --params params.yaml --model models/model.pt \
        --features data/features.h5 --metrics metrics/metrics.json \
        --per-class metrics/per_class.json --confusion metrics/confusion \
        --novelty metrics/novelty.csv --figures metrics/figures
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import h5py
import numpy as np

from musicid.figures import save_confusion_png, save_embedding_png
from musicid.h5 import read_strings
from musicid.io import atomic_directory, atomic_path, dumps_json, write_json_atomic
from musicid.metrics import confusion_matrix, confusion_records, open_set_metrics, summarise, track_probabilities
from musicid.novelty import cosine_scores
from musicid.params import ParamsError, load_section
from musicid.training import checkpoint_novelty, class_probabilities, load_checkpoint, normalise, pick_device


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, type=Path)
    parser.add_argument("--model", required=True, type=Path, help="input: models/model.pt")
    parser.add_argument("--features", required=True, type=Path, help="input: data/features.h5")
    parser.add_argument("--metrics", required=True, type=Path, help="output: metrics.json")
    parser.add_argument("--per-class", required=True, type=Path, help="output: per-class table (JSON)")
    parser.add_argument("--confusion", required=True, type=Path,
                        help="output directory: one confusion-plot JSON per split and level")
    parser.add_argument("--novelty", required=True, type=Path, help="output: test tracks by novelty (CSV)")
    parser.add_argument("--figures", required=True, type=Path, help="output directory: PNG figures")
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
    centroids = checkpoint["centroids"].numpy()
    try:
        novelty = checkpoint_novelty(checkpoint)
    except ValueError as error:
        print(f"evaluate: {args.model}: {error}", file=sys.stderr)
        return 2
    metrics: dict = {}
    per_class: dict = {}
    with h5py.File(args.features, "r") as table, atomic_directory(args.confusion) as confusion_dir, \
            atomic_directory(args.figures) as figures_dir:
        all_names = [str(name) for name in table.attrs["label_names"]]
        splits = read_strings(table["split"])
        known = table["known"][:]
        all_tracks = read_strings(table["track"])
        for split in ("val", "test"):
            rows = np.nonzero(splits == split)[0]
            features = normalise(table["features"][rows], mean, std) if len(rows) else \
                np.zeros((0, *table["features"].shape[1:]), np.float32)
            labels = table["label"][rows].astype(np.int64)
            tracks = all_tracks[rows]
            probabilities, embeddings = class_probabilities(model, features, centroids, params.batch_size, device)
            # Classification metrics cover the known classes; held-out ones are unknown.
            is_known = known[rows]
            track_probs, track_labels, _ = track_probabilities(probabilities[is_known], labels[is_known],
                                                               tracks[is_known])
            levels = {
                "clip": (labels[is_known], probabilities[is_known].argmax(1)),
                "track": (track_labels, track_probs.argmax(1)),
            }
            metrics[split], per_class[split] = {}, {}
            for level, (truth, predicted) in levels.items():
                metrics[split][level], per_class[split][level] = summarise(truth, predicted, label_names)
                (confusion_dir / f"{split}_{level}.json").write_text(
                    dumps_json(confusion_records(truth, predicted, label_names)))
                save_confusion_png(figures_dir / f"confusion_{split}_{level}.png",
                                   confusion_matrix(truth, predicted, len(label_names)), label_names,
                                   f"{split}, {level} level")
            if split == "test":
                save_embedding_png(figures_dir / "embeddings_test.png", embeddings,
                                   [all_names[i] + ("" if is_known[j] else " (unknown)")
                                    for j, i in enumerate(labels)], "test clips, PCA of the embeddings")
                # Tracks are ranked by the Mahalanobis score; the cosine score is shown for comparison.
                names, scores = novelty.track_scores(embeddings, tracks)
                _, cosine = cosine_scores(embeddings, tracks, centroids)
                track_label = {t: all_names[l] for t, l in zip(tracks, labels)}
                track_known = {t: bool(k) for t, k in zip(tracks, is_known)}
                unknown = np.array([not track_known[t] for t in names])
                if unknown.any():
                    metrics["open_set"] = {"score": "mahalanobis", **open_set_metrics(scores, unknown),
                                           "cosine": open_set_metrics(cosine, unknown)}
                order = sorted(range(len(names)), key=lambda i: (-scores[i], names[i]))
                with atomic_path(args.novelty) as temporary:
                    lines = ["track,label,known,novelty,novelty_cosine"]
                    lines += [f"{names[i]},{track_label[names[i]]},{str(track_known[names[i]]).lower()},"
                              f"{scores[i]:.6f},{cosine[i]:.6f}" for i in order]
                    temporary.write_text("\n".join(lines) + "\n")
    write_json_atomic(args.metrics, metrics)
    write_json_atomic(args.per_class, per_class)
    test = metrics["test"]
    open_set = metrics.get("open_set")
    extra = f"; novelty AUROC {open_set['auroc']:.3f}, FPR@95%TPR {open_set['fpr_at_95_tpr']:.3f}" if open_set else ""
    print(f"evaluate: test clip accuracy {test['clip']['accuracy']:.3f} macro-F1 {test['clip']['macro_f1']:.3f}; "
          f"track accuracy {test['track']['accuracy']:.3f} macro-F1 {test['track']['macro_f1']:.3f} "
          f"({test['track']['n']} tracks){extra} -> {args.metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

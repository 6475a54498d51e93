"""What an ensemble over training seeds would give: the models of a composer_quality.py run, averaged.

``composer_quality.py --seeds 0 1`` trains every fold once per seed and reports the mean of the seeds' figures.
This script reads those models back (no training) and scores each fold's test clips three ways:

- each seed's model alone (its clip macro-F1 must equal what evaluate wrote: a check that the scoring matches),
- the mean of the single seeds' figures (what the suite reports for the fold),
- the ensemble: the seeds' clip probabilities averaged, then pooled into tracks as evaluate pools them.

It prints, per task, the single-seed mean and the ensemble's track and clip macro-F1 over the folds (mean +- sd)
and the ensemble's gain fold by fold (mean +- sd, folds better / worse). The ensemble costs one training per
seed: its time is the suite's minutes for the fold.

    python benchmarks/seed_ensemble.py --out /tmp/cq --tasks default-piano quartets --config default --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import h5py
import numpy as np
import yaml

from musicid.h5 import read_strings
from musicid.metrics import summarise, track_probabilities
from musicid.training import (class_probabilities, load_checkpoint, normalise, pick_device, read_symbolic_input,
                              to_numpy)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from composer_quality import mean_sd  # noqa: E402  (the suite's mean +- sample sd)

TABLE_SECTIONS = ("clip", "split", "features")  # the params a features table was made from


def read_params(folder: Path) -> dict:
    return yaml.safe_load((folder / "params.yaml").read_text())


def find_runs(task_dir: Path, config: str, fold: int, seeds: list[int]) -> dict[int, Path]:
    """seed -> the run folder of ``config``'s fold trained with that ``train.seed`` (each must exist)."""
    runs: dict[int, Path] = {}
    for folder in sorted((task_dir / config / f"fold{fold}").glob("*/")):
        if (folder / "model.pt").is_file() and (folder / "params.yaml").is_file():
            seed = read_params(folder)["train"]["seed"]
            if seed in seeds:
                if seed in runs:
                    raise SystemExit(f"seed_ensemble: {folder} and {runs[seed]}: two runs of seed {seed}; "
                                     "give --config a name that holds one configuration")
                runs[seed] = folder
    missing = [seed for seed in seeds if seed not in runs]
    if missing:
        raise SystemExit(f"seed_ensemble: {task_dir / config / f'fold{fold}'}: no run of train.seed {missing}; "
                         "run composer_quality.py with --seeds first")
    return runs


def find_table(task_dir: Path, run: Path) -> Path:
    """The features table a run was trained on: the one made from the same clip, split and features params."""
    wanted = {key: read_params(run)[key] for key in TABLE_SECTIONS}
    matches = [folder / "features.h5" for folder in sorted(task_dir.glob("features-*/"))
               if (folder / "features.h5").is_file()
               and all(read_params(folder)[key] == value for key, value in wanted.items())]
    if len(matches) != 1:
        raise SystemExit(f"seed_ensemble: {run}: {len(matches)} features tables match its params (want 1)")
    return matches[0]


def test_probabilities(model_path: Path, table_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clip probabilities float32 [N, C], labels [N], tracks [N]) of the test clips of the known classes."""
    device = pick_device()
    model, checkpoint = load_checkpoint(model_path, device)
    mean, std = to_numpy(checkpoint["band_mean"]), to_numpy(checkpoint["band_std"])
    with h5py.File(table_path, "r") as table:
        rows = np.nonzero((read_strings(table["split"]) == "test") & table["known"][:].astype(bool))[0]
        features = normalise(table["features"][rows], mean, std)
        symbolic = read_symbolic_input(table, rows, to_numpy(checkpoint["symbolic_mean"]),
                                       to_numpy(checkpoint["symbolic_std"])) if model.config.symbolic_dim else None
        labels = table["label"][rows].astype(np.int64)
        tracks = read_strings(table["track"])[rows]
    probabilities, _ = class_probabilities(model, features, to_numpy(checkpoint["centroids"]), 64, device, symbolic)
    return probabilities, labels, tracks


def scores(probabilities: np.ndarray, labels: np.ndarray, tracks: np.ndarray, n_classes: int) -> dict:
    names = [str(i) for i in range(n_classes)]
    track_probs, track_labels, _ = track_probabilities(probabilities, labels, tracks)
    return {"clip": summarise(labels, probabilities.argmax(1), names)[0]["macro_f1"],
            "track": summarise(track_labels, track_probs.argmax(1), names)[0]["macro_f1"]}


def cell(values: list[float]) -> str:
    mean, sd = mean_sd(values)
    return f"{mean:.3f} +- {sd:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="composer_quality.py's --out")
    parser.add_argument("--tasks", nargs="+", required=True)
    parser.add_argument("--config", default="default")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("--seeds: give at least two seeds")

    print("| task | single seed track / clip | ensemble track / clip | gain track | gain clip (better / worse) |")
    print("|---|---|---|---|---|")
    for task in args.tasks:
        task_dir = args.out / task
        single = {"track": [], "clip": []}
        ensemble = {"track": [], "clip": []}
        for fold in range(args.folds):
            runs = find_runs(task_dir, args.config, fold, args.seeds)
            table = find_table(task_dir, runs[args.seeds[0]])
            per_seed = []
            for seed in args.seeds:
                probabilities, labels, tracks = test_probabilities(runs[seed] / "model.pt", table)
                figures = scores(probabilities, labels, tracks, probabilities.shape[1])
                written = json.loads((runs[seed] / "metrics.json").read_text())["test"]["clip"]["macro_f1"]
                if abs(figures["clip"] - written) > 5e-6:
                    raise SystemExit(f"seed_ensemble: {runs[seed]}: clip macro-F1 {figures['clip']:.6f} here, "
                                     f"{written:.6f} in its metrics.json: the scoring does not match evaluate's")
                per_seed.append((probabilities, figures))
            for level in ("track", "clip"):
                single[level].append(statistics.fmean(figures[level] for _, figures in per_seed))
            averaged = np.mean([probabilities for probabilities, _ in per_seed], axis=0)
            together = scores(averaged, labels, tracks, averaged.shape[1])
            for level in ("track", "clip"):
                ensemble[level].append(together[level])
            print(f"{task} fold {fold}: seeds {[round(f['clip'], 3) for _, f in per_seed]} clip, "
                  f"ensemble {together['clip']:.3f} clip, {together['track']:.3f} track", file=sys.stderr)
        gains = {level: [e - s for e, s in zip(ensemble[level], single[level])] for level in ("track", "clip")}
        print(f"| {task} | {cell(single['track'])} / {cell(single['clip'])} | "
              f"{cell(ensemble['track'])} / {cell(ensemble['clip'])} | {cell(gains['track'])} | "
              f"{cell(gains['clip'])} ({sum(g > 0 for g in gains['clip'])} / "
              f"{sum(g < 0 for g in gains['clip'])}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What an ensemble over training seeds would give: the models of a composer_quality.py run, averaged.

``composer_quality.py --seeds 0 1`` trains every fold once per seed and reports the mean of the seeds' figures.
This script reads those models back (no training) and scores each fold's test clips three ways:

- each seed's model alone (its clip macro-F1 must equal what evaluate wrote: a check that the scoring matches),
- the mean of the single seeds' figures (what the suite reports for the fold),
- the ensemble: the seeds' clip probabilities averaged, then pooled into tracks as evaluate pools them.

A clip is named as evaluate names it: with ``evaluate.clip_audio`` > 0 (a run's own), by its answer with its
notes mixed with its audio alone's (the ensemble averages the seeds' mixed answers); a track pools the answers
with the notes.

It prints, per task, the single-seed mean and the ensemble's track and clip macro-F1 over the folds (mean +- sd)
and the ensemble's gain fold by fold (mean +- sd, folds better / worse). The ensemble costs one training per
seed: its time is the suite's minutes for the fold. Tracks are named here by their clips alone (the mean
probability as the models give it), without ``train.track_notes``' regression on the notes, which no training seed
changes, and without ``train.track_prior``'s division by the training shares: its track figures are those of
evaluate's ``track_pooling`` ``mean`` in per_class.json for runs made with ``train.track_prior: 0``, not its
headline.

    python benchmarks/seed_ensemble.py --out /tmp/cq --tasks default-piano quartets --config default --seeds 0 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

from musicid.metrics import clip_answers, summarise, track_probabilities

sys.path.insert(0, str(Path(__file__).resolve().parent))
from composer_quality import mean_sd_text as cell  # noqa: E402  (the suite's mean +- sample sd)
from suite_runs import clip_views, find_runs, find_table, fold_count, read_params, written_macro_f1  # noqa: E402


def scores(answers: np.ndarray, probabilities: np.ndarray, labels: np.ndarray, tracks: np.ndarray) -> dict:
    """Clip macro-F1 of the clips' own answers, track macro-F1 of the probabilities with the notes pooled."""
    names = [str(i) for i in range(probabilities.shape[1])]
    track_probs, track_labels, _ = track_probabilities(probabilities, labels, tracks)
    return {"clip": summarise(labels, answers.argmax(1), names)[0]["macro_f1"],
            "track": summarise(track_labels, track_probs.argmax(1), names)[0]["macro_f1"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="composer_quality.py's --out")
    parser.add_argument("--tasks", nargs="+", required=True)
    parser.add_argument("--config", default="default")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--folds", type=int, default=None,
                        help="the folds of the runs (default: read from them; given, it must agree)")
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("--seeds: give at least two seeds")

    fold_counts = {task: fold_count(args.out / task, args.config, args.folds) for task in args.tasks}  # all first
    print("| task | single seed track / clip | ensemble track / clip | gain track | gain clip (better / worse) |")
    print("|---|---|---|---|---|")
    for task in args.tasks:
        task_dir = args.out / task
        single = {"track": [], "clip": []}
        ensemble = {"track": [], "clip": []}
        for fold in range(fold_counts[task]):
            runs = find_runs(task_dir, args.config, fold, args.seeds)
            table = find_table(task_dir, runs[args.seeds[0]])
            per_seed = []
            for seed in args.seeds:
                views = clip_views(runs[seed] / "model.pt", table)
                labels, tracks = views.labels, views.tracks
                answers = clip_answers(views.with_notes, views.alone, views.has_notes,
                                       read_params(runs[seed])["evaluate"].get("clip_audio", 0.0))
                figures = scores(answers, views.with_notes, labels, tracks)
                written = written_macro_f1(runs[seed], "clip")
                if abs(figures["clip"] - written) > 5e-6:
                    raise SystemExit(f"seed_ensemble: {runs[seed]}: clip macro-F1 {figures['clip']:.6f} here, "
                                     f"{written:.6f} in its metrics.json: the scoring does not match evaluate's")
                per_seed.append((answers, views.with_notes, figures))
            for level in ("track", "clip"):
                single[level].append(statistics.fmean(figures[level] for *_, figures in per_seed))
            together = scores(np.mean([answers for answers, *_ in per_seed], axis=0),
                              np.mean([probabilities for _, probabilities, _ in per_seed], axis=0), labels, tracks)
            for level in ("track", "clip"):
                ensemble[level].append(together[level])
            print(f"{task} fold {fold}: seeds {[round(f['clip'], 3) for *_, f in per_seed]} clip, "
                  f"ensemble {together['clip']:.3f} clip, {together['track']:.3f} track", file=sys.stderr)
        gains = {level: [e - s for e, s in zip(ensemble[level], single[level])] for level in ("track", "clip")}
        print(f"| {task} | {cell(single['track'])} / {cell(single['clip'])} | "
              f"{cell(ensemble['track'])} / {cell(ensemble['clip'])} | {cell(gains['track'])} | "
              f"{cell(gains['clip'])} ({sum(g > 0 for g in gains['clip'])} / "
              f"{sum(g < 0 for g in gains['clip'])}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

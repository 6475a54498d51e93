"""How a track's clips are best pooled into its answer: the models of a composer_quality.py run, re-scored.

evaluate and predict name a track by the mean of its clips' probabilities (each divided by the training clips'
class shares first, ``train.track_prior``, and averaged with the regression on the notes, ``train.track_notes``).
This script reads a suite run's models back (no training) and names each test track these ways:

- ``mean``: the mean probability of the clips as the model gives them (evaluate's for a run without
  ``train.track_prior`` and the regression),
- ``log_mean``: the mean log-probability (a geometric mean; the suite's own second column),
- ``median``: each class's median probability over the clips,
- ``vote``: the class most clips name, ties broken by the mean probability,
- ``learned``: a pooling learned from the training tracks: a logistic regression (scikit-learn, balanced class
  weights) on each training track's mean clip embedding, applied to the test tracks' mean embeddings,
- ``notes``: ``train.track_notes``' regression on the tracks' note statistics alone (musicid.track_model; the
  run's own when its model holds one, else fitted here on the training tracks with ``--notes-c``),
- ``mean+notes``: the mean averaged with that regression for tracks with notes,
- ``prior`` and ``prior+notes``: the mean of the clips' probabilities each divided by the training clips' class
  shares to the power ``--prior`` (``train.track_prior``, musicid.metrics.prior_corrected; the shares the run's
  model stores, or for a model from before that param those of the table's training clips), alone and averaged
  with the regression.

Whatever ``--prior`` is, the track macro-F1 evaluate wrote is computed again as evaluate computed it (the run's own
``train.track_prior`` and regression) and must come out the same: a check that the scoring matches.

It prints, per task, each pooling's test track macro-F1 over the folds (mean +- sd; with several seeds a fold's
figure is the mean of its seeds) and its difference from ``mean`` fold by fold (mean +- sd, folds better / worse),
and the share of training clips the model itself names right: a pooling learned on the training tracks sees the
model's answers there, which are nearly all right.

    python benchmarks/track_pooling.py --out /tmp/cq --tasks default-piano quartets lopsided --config default --seeds 0
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from musicid.metrics import class_shares, macro_f1, pool, prior_corrected, track_means
from musicid.metrics import track_labels as metrics_track_labels
from musicid.track_model import (TrackStatistics, checkpoint_regression, fit_table_regression, fuse_notes,
                                 regression_probabilities, split_statistics)
from musicid.training import checkpoint_track_prior, load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from composer_quality import mean_sd_text as cell  # noqa: E402  (the suite's mean +- sample sd)
from suite_runs import (SplitOutputs, find_runs, find_table, fold_count, read_params, split_outputs,  # noqa: E402
                        written_macro_f1)

POOLINGS = ("mean", "log_mean", "median", "vote", "learned", "notes", "mean+notes", "prior", "prior+notes")


def track_labels(outputs: SplitOutputs) -> np.ndarray:
    """The label of each track [M], tracks sorted by id (as evaluate sorts them)."""
    return metrics_track_labels(outputs.labels, outputs.tracks)


def per_track(values: np.ndarray, tracks: np.ndarray, reduce: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``reduce`` of each track's rows [M, ...], tracks sorted by id."""
    _, inverse = np.unique(tracks, return_inverse=True)
    return np.stack([reduce(values[inverse == index]) for index in range(inverse.max() + 1)])


def vote(probabilities: np.ndarray) -> np.ndarray:
    """Votes per class of a track's clips, plus its mean probability (< 1) to break ties."""
    votes = np.bincount(probabilities.argmax(1), minlength=probabilities.shape[1]).astype(np.float64)
    return votes + probabilities.mean(0)


def learned(train: SplitOutputs, test: SplitOutputs, seed: int) -> np.ndarray:
    """Predicted class of each test track by a logistic regression on the training tracks' mean embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, train_x = track_means(train.embeddings, train.tracks)
    _, test_x = track_means(test.embeddings, test.tracks)
    pooler = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, class_weight="balanced",
                                                                random_state=seed))
    pooler.fit(train_x, track_labels(train))
    return pooler.predict(test_x)


def track_predictions(train: SplitOutputs, test: SplitOutputs, seed: int,
                      notes: tuple[dict[str, np.ndarray], TrackStatistics] | None = None,
                      prior: tuple[np.ndarray, float] | None = None) -> dict[str, np.ndarray]:
    """pooling -> the predicted class of each test track, tracks sorted by id. ``notes``: the regression on the
    notes and the test tracks' statistics (None: no note poolings); ``prior``: the training clips' class shares
    and the power the ``prior`` poolings divide by (None: the shares of ``train``'s clips, power 1)."""
    probabilities, tracks = test.probabilities.astype(np.float64), test.tracks
    mean = pool(probabilities, tracks, "mean")[1]
    predictions = {"mean": mean.argmax(1),
                   "log_mean": pool(probabilities, tracks, "log_mean")[1].argmax(1),
                   "median": per_track(probabilities, tracks, lambda rows: np.median(rows, axis=0)).argmax(1),
                   "vote": per_track(probabilities, tracks, vote).argmax(1),
                   "learned": learned(train, test, seed)}
    if notes is not None:
        regression, statistics = notes
        alone = regression_probabilities(regression, statistics.values)
        # A track without notes has no answer of the regression's: the clips' mean names it.
        predictions["notes"] = np.where(statistics.has_notes, alone.argmax(1), mean.argmax(1))
        predictions["mean+notes"] = fuse_notes(mean, regression, statistics).argmax(1)
    shares, power = prior or (class_shares(train.labels, probabilities.shape[1]), 1.0)
    divided = pool(prior_corrected(probabilities, shares, power), tracks, "mean")[1]
    predictions["prior"] = divided.argmax(1)
    if notes is not None:
        predictions["prior+notes"] = fuse_notes(divided, *notes).argmax(1)
    return predictions


def note_statistics(table_path: Path, split: str) -> tuple[TrackStatistics, np.ndarray] | None:
    """(the note statistics of a split's known tracks, their labels), None for a table without notes."""
    with h5py.File(table_path, "r") as table:
        return split_statistics(table, split) if "symbolic" in table else None


def notes_regression(run: Path, table_path: Path, n_classes: int, c: float,
                     ) -> tuple[dict[str, np.ndarray], TrackStatistics, bool] | None:
    """(the regression on the notes, the test tracks' statistics, whether it is the run's own), None when the
    table has no notes, the training tracks with notes do not cover every class, or the run rendered
    augmented copies into a table that does not mark them (written before featurize did: train fitted none)."""
    test = note_statistics(table_path, "test")
    augmented = bool(read_params(run)["render"]["augment"]["copies"])
    if test is None:
        return None
    own = checkpoint_regression(load_checkpoint(run / "model.pt")[1])
    if own is not None:
        return own, test[0], True
    regression, _, _ = fit_table_regression(table_path, c, [str(i) for i in range(n_classes)], augmented)
    return None if regression is None else (regression, test[0], False)


def score_fold(task_dir: Path, config: str, fold: int, seeds: list[int], notes_c: float = 0.1,
               power: float = 1.0) -> tuple[dict[str, float], float]:
    """(pooling -> test track macro-F1, mean over the seeds; share of training clips named right) of one fold.
    The note poolings are left out of a fold whose table has no notes."""
    runs = find_runs(task_dir, config, fold, seeds)
    figures: dict[str, list[float]] = {name: [] for name in POOLINGS}
    train_right = []
    for seed, run in sorted(runs.items()):
        table = find_table(task_dir, run)
        test = split_outputs(run / "model.pt", table, "test")
        train = split_outputs(run / "model.pt", table, "train")
        truth = track_labels(test)
        notes = notes_regression(run, table, test.probabilities.shape[1], notes_c)
        shares, own_power = checkpoint_track_prior(load_checkpoint(run / "model.pt")[1])  # train.track_prior
        if shares is None:  # a model from before the param: the shares of the clips it was trained on
            shares = class_shares(train.labels, test.probabilities.shape[1])
        for name, predicted in track_predictions(train, test, seed, None if notes is None else notes[:2],
                                                 (shares, power)).items():
            figures[name].append(macro_f1(truth, predicted))
        # What evaluate named the tracks by: its own train.track_prior, and its own regression if it has one.
        pooled = pool(prior_corrected(test.probabilities, shares, own_power), test.tracks, "mean")[1]
        if notes is not None and notes[2]:
            pooled = fuse_notes(pooled, *notes[:2])
        evaluated, written = macro_f1(truth, pooled.argmax(1)), written_macro_f1(run, "track")
        if abs(evaluated - written) > 5e-6:
            raise SystemExit(f"track_pooling: {run}: track macro-F1 {evaluated:.6f} here, {written:.6f} "
                             "in its metrics.json: the scoring does not match evaluate's")
        train_right.append(float(np.mean(train.probabilities.argmax(1) == train.labels)))
    return ({name: statistics.fmean(values) for name, values in figures.items() if values},
            statistics.fmean(train_right))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="composer_quality.py's --out")
    parser.add_argument("--tasks", nargs="+", required=True)
    parser.add_argument("--config", default="default")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--notes-c", type=float, default=0.1,
                        help="C of the regression on the notes for runs whose model holds none (train.track_notes)")
    parser.add_argument("--prior", type=float, default=1.0,
                        help="the power of the prior poolings for runs whose model holds no train.track_prior")
    parser.add_argument("--folds", type=int, default=None,
                        help="the folds of the runs (default: read from them; given, it must agree)")
    args = parser.parse_args(argv)
    if not args.notes_c > 0:
        parser.error(f"--notes-c must be > 0, got {args.notes_c:g}")
    if not 0 <= args.prior <= 2:
        parser.error(f"--prior must be 0 .. 2 (train.track_prior's range), got {args.prior:g}")

    fold_counts = {task: fold_count(args.out / task, args.config, args.folds) for task in args.tasks}  # all first
    print("| task | pooling | test track macro-F1 | against mean (better / worse) | training clips right |")
    print("|---|---|---|---|---|")
    for task in args.tasks:
        folds = []
        for fold in range(fold_counts[task]):
            figures, train_right = score_fold(args.out / task, args.config, fold, args.seeds, args.notes_c,
                                              args.prior)
            folds.append((figures, train_right))
            print(f"{task} fold {fold}: " + ", ".join(f"{name} {value:.3f}" for name, value in figures.items())
                  + f"; training clips right {train_right:.3f}", file=sys.stderr)
        right = cell([train_right for _, train_right in folds])
        for name in POOLINGS:
            if any(name not in figures for figures, _ in folds):  # no notes in some fold's table
                continue
            values = [figures[name] for figures, _ in folds]
            gains = [figures[name] - figures["mean"] for figures, _ in folds]
            against = "" if name == "mean" else (f"{cell(gains, '+')} ({sum(g > 0 for g in gains)} / "
                                                 f"{sum(g < 0 for g in gains)})")
            print(f"| {task} | {name} | {cell(values)} | {against} | {right if name == 'mean' else ''} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

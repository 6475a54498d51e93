"""A clip's own answer from its notes and its audio: the models of a composer_quality.py run, re-scored.

evaluate scores each test clip of a MIDI file by the model with the clip's notes and, with ``evaluate.clip_audio``
> 0, by the same model with the notes hidden (its audio alone, as for an audio file's clip), and names the clip
by the mix: that share of the second and the rest of the first. This script reads a suite run's models back (no
training) and gives, per task and for each share of ``--shares``:

- the test clip macro-F1 of the mixed answers, and its difference from share 0 (the answers with the notes) fold
  by fold (mean +- sd, folds better / worse);
- the test track macro-F1 if a track pooled the mixed answers instead of those with the notes (evaluate pools the
  latter: divided by the training clips' class shares, ``train.track_prior``, and averaged with the regression on
  the notes, ``train.track_notes``, as evaluate does), and its difference from share 0.

Whatever the shares, the clip and track macro-F1 evaluate wrote are computed again as evaluate computed them
(the run's own ``evaluate.clip_audio``, 0 for a run from before it) and must come out the same: a check that the
scoring matches.

    python benchmarks/clip_answers.py --out /tmp/cq --tasks quartets lopsided --config default --shares 0 0.25 0.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from musicid.metrics import class_shares, clip_answers, macro_f1, pool, prior_corrected, track_labels
from musicid.track_model import checkpoint_regression, fuse_notes
from musicid.training import checkpoint_track_prior, load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from composer_quality import mean_sd_text as cell  # noqa: E402  (the suite's mean +- sample sd)
from suite_runs import (clip_views, find_runs, find_table, fold_count, read_params, stop,  # noqa: E402
                        written_macro_f1)
from track_pooling import notes_regression  # noqa: E402


def score_run(run: Path, table: Path, shares: list[float], prior: float
              ) -> tuple[dict[float, float], dict[float, float]]:
    """(share -> test clip macro-F1, share -> test track macro-F1 pooling the mixed answers) of one run."""
    views = clip_views(run / "model.pt", table)
    if not views.has_notes.any():
        raise stop(f"{run}: no test clip with notes (an audio-only model or table): nothing to mix")
    n_classes = views.with_notes.shape[1]
    class_share, own_power = checkpoint_track_prior(load_checkpoint(run / "model.pt")[1])
    power = own_power
    if class_share is None:  # a model from before train.track_prior: the shares of its training clips, --prior
        class_share, power = class_shares(views.train_labels, n_classes), prior
    # The run's own regression on the notes (a run without one names its tracks by the clips alone, as evaluate).
    notes = notes_regression(run, table, n_classes, 0.1) \
        if checkpoint_regression(load_checkpoint(run / "model.pt")[1]) is not None else None
    truth = track_labels(views.labels, views.tracks)

    def track_f1(answers: np.ndarray, power: float = power) -> float:
        pooled = pool(prior_corrected(answers, class_share, power), views.tracks, "mean")[1]
        return macro_f1(truth, (pooled if notes is None else fuse_notes(pooled, *notes[:2])).argmax(1))

    def clip_f1(share: float) -> float:
        return macro_f1(views.labels, clip_answers(views.with_notes, views.alone, views.has_notes, share).argmax(1))

    # What evaluate wrote: the clips mixed at the run's own share, the tracks pooled with the notes.
    own = read_params(run)["evaluate"].get("clip_audio", 0.0)
    for level, figure in (("clip", clip_f1(own)), ("track", track_f1(views.with_notes, own_power))):
        if abs(figure - written_macro_f1(run, level)) > 5e-6:
            raise stop(f"{run}: {level} macro-F1 {figure:.6f} here, {written_macro_f1(run, level):.6f} in its "
                       "metrics.json: the scoring does not match evaluate's")
    clips = {share: clip_f1(share) for share in shares}
    tracks = {share: track_f1(clip_answers(views.with_notes, views.alone, views.has_notes, share))
              for share in shares}
    return clips, tracks


def paired(values: list[float], base: list[float]) -> str:
    gains = [value - first for value, first in zip(values, base)]
    return f"{cell(gains, '+')} ({sum(g > 5e-7 for g in gains)} / {sum(g < -5e-7 for g in gains)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="composer_quality.py's --out")
    parser.add_argument("--tasks", nargs="+", required=True)
    parser.add_argument("--config", default="default")
    parser.add_argument("--seed", type=int, default=0, help="the train.seed of the runs")
    parser.add_argument("--shares", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0],
                        help="evaluate.clip_audio values to score (0, the answers with the notes, is always scored)")
    parser.add_argument("--prior", type=float, default=1.0,
                        help="train.track_prior for runs whose model holds none")
    args = parser.parse_args(argv)
    if not all(0 <= share <= 1 for share in args.shares):
        parser.error(f"--shares must each be 0 .. 1 (evaluate.clip_audio's range), got {args.shares}")
    if not 0 <= args.prior <= 2:
        parser.error(f"--prior must be 0 .. 2 (train.track_prior's range), got {args.prior:g}")
    shares = sorted({0.0, *args.shares})

    fold_counts = {task: fold_count(args.out / task, args.config) for task in args.tasks}  # all first
    print("| task | evaluate.clip_audio | test clip macro-F1 | against 0 (better / worse) "
          "| test track macro-F1, the mix pooled | against 0 (better / worse) |")
    print("|---|---|---|---|---|---|")
    for task in args.tasks:
        clips: list[dict[float, float]] = []
        tracks: list[dict[float, float]] = []
        for fold in range(fold_counts[task]):
            run = find_runs(args.out / task, args.config, fold, [args.seed])[args.seed]
            clip_fold, track_fold = score_run(run, find_table(args.out / task, run), shares, args.prior)
            clips.append(clip_fold)
            tracks.append(track_fold)
            print(f"{task} fold {fold}: clip " + ", ".join(f"{s:g} {v:.3f}" for s, v in clip_fold.items())
                  + "; track " + ", ".join(f"{s:g} {v:.3f}" for s, v in track_fold.items()), file=sys.stderr)
        base_clip, base_track = [fold[0.0] for fold in clips], [fold[0.0] for fold in tracks]
        for share in shares:
            clip_values, track_values = [fold[share] for fold in clips], [fold[share] for fold in tracks]
            print(f"| {task} | {share:g} | {cell(clip_values)} | {paired(clip_values, base_clip) if share else ''} "
                  f"| {cell(track_values)} | {paired(track_values, base_track) if share else ''} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

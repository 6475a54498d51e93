"""How much a split by track flatters a collection whose works have several movements.

A string quartet's movements share its keys, themes and edition.  Split by
track (``split.group: track``, the default), a test movement's siblings are
often in training; split by work (``split.group: folder``), none is.  This
runs the same tracks both ways: the Beethoven and Mozart string quartets of
the music21 corpus (the suite's ``quartets`` task without Haydn, whose two
works cannot fill the folds of a split by work), all parts on one violin,
laid out one folder per work as a user's collection would be
(``beethoven/opus59no1/movement1.mid``), k-fold cross-validated with the
pipeline's own stages (``benchmarks/composer_quality.py``'s steps, cached in
its ``--out``: the conversions of the suite's ``quartets`` are reused), and
prints test track and clip macro-F1 per fold and mean +- sample sd for each
split, each clip named by evaluate as configured.  The two splits deal other
folds, so the figures compare as means, not fold by fold.

    python benchmarks/split_by_work.py [--folds 3] [--seeds 0] [--out benchmarks/runs/composer_quality]
        [--jobs 0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import composer_quality as suite  # noqa: E402

QUARTETS = suite.TASKS["quartets"]
TASK = suite.Task(QUARTETS.name, tuple(spec for spec in QUARTETS.classes if spec.composer != "haydn"),
                  QUARTETS.render)


def measure(group: str, args, base: dict) -> dict:
    params = suite.task_params(TASK, base, {"split.group": group})
    audio, _ = suite.prepare_data(TASK, params, 0, args.out, args.jobs, works=True)
    folds = []
    for fold in range(args.folds):
        fold_params = json.loads(json.dumps(params))
        fold_params["split"].update(folds=args.folds, fold=fold)
        features, _ = suite.prepare_features(TASK, audio, fold_params, fold, args.out, args.jobs)
        runs = []
        for seed in args.seeds:
            fold_params["train"]["seed"] = seed
            metrics, _ = suite.train_and_evaluate(features, fold_params,
                                                  args.out / TASK.name / f"bywork-{group}" / f"fold{fold}")
            runs.append((metrics["test"]["track"]["macro_f1"], metrics["test"]["clip"]["macro_f1"]))
        folds.append(tuple(statistics.fmean(values) for values in zip(*runs)))
        print(f"split by {group}, fold {fold}: track macro-F1 {folds[-1][0]:.3f}, clip macro-F1 {folds[-1][1]:.3f}",
              file=sys.stderr)
    return {"track": [f[0] for f in folds], "clip": [f[1] for f in folds]}


def summary(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f} +- {statistics.stdev(values):.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=3, help="k of the cross-validation (default 3: Mozart has 4 "
                                                             "works)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="train.seed of each run (a fold's "
                                                                         "figure is their mean)")
    parser.add_argument("--params", type=Path, default=suite.PROJECT / "params.yaml")
    parser.add_argument("--out", type=Path, default=suite.PROJECT / "benchmarks" / "runs" / "composer_quality")
    parser.add_argument("--jobs", type=int, default=0, help="worker processes of the stages (0: one per core)")
    args = parser.parse_args(argv)
    if not 2 <= args.folds <= 4:
        parser.error("--folds must be 2 to 4 (Mozart's 4 works must fill the folds, with a val work beside)")
    args.out = args.out.resolve()
    base = suite.read_params(args.params)
    results = {group: measure(group, args, base) for group in ("track", "folder")}
    print(f"Beethoven and Mozart string quartets, {args.folds}-fold cross-validation, seeds {args.seeds}: "
          "test macro-F1, mean +- sd over folds")
    for group, figures in results.items():
        per_fold = ", ".join(f"{t:.3f} / {c:.3f}" for t, c in zip(figures["track"], figures["clip"]))
        print(f"  split by {group:6s}  track {summary(figures['track'])}  clip {summary(figures['clip'])}  "
              f"(per fold, track / clip: {per_fold})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a configuration does to the open set: each class held out in turn, how well novelty tells it apart.

The suite (``benchmarks/composer_quality.py``) scores who wrote a known piece; a lever can raise that and
still make a composer never seen in training harder to flag as new (a triplet term beside the
cross-entropy did: benchmarks/RESULTS.md). This runs the open set of the README's default dataset for
each configuration: the suite's ``default-piano`` task (the four default classes on one piano; ``--task
quartets``: Haydn, Mozart and Beethoven, two known classes in each run), one split
by fractions as ``dvc repro`` makes it (``split.folds: 0``), and for each class ``split.holdout_classes:
[<class>]`` (all its tracks in test, as unknown), trained once per ``--seeds``, with the pipeline's own
stages and the suite's cache (``--out``: the task's conversions and renders are shared with the suite's).
It prints, per held-out class, the cosine and Mahalanobis AUROC of the novelty score (known test tracks
against the held-out class's), the FPR at 95 % TPR of the score ``train.novelty`` names and the test clip
macro-F1 of the known classes, each the mean over the seeds; the mean over the classes; and, with two
configurations or more, each against the first, paired by class and seed (mean +- sd, pairs better /
worse).

    python benchmarks/open_set.py [--task default-piano|quartets] [--configs default cetrip
        'name:train.dropout=0.3,...'] [--seeds 0 1] [--classes bach trecento] [--max-per-class 0] [--epochs 0] [--out benchmarks/runs/composer_quality]
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

# The tasks whose classes leave at least two known ones when one is held out.
TASKS = tuple(name for name, task in suite.TASKS.items() if len(task.classes) >= 3)
# Per run: the figures read from evaluate's outputs.
FIGURES = ("cosine_auroc", "mahalanobis_auroc", "fpr_at_95_tpr", "known_clip_macro_f1")


def held_out_params(params: dict, held_out: str) -> dict:
    """``params`` with one split by fractions (as ``dvc repro``) and ``held_out`` as the unknown class."""
    params = json.loads(json.dumps(params))
    params["split"].update(folds=0, fold=0, holdout_classes=[held_out])
    return params


def run_figures(folder: Path) -> dict:
    """The open-set figures of one finished run folder (evaluate's ``per_class.json`` and ``metrics.json``)."""
    open_set = json.loads((folder / "per_class.json").read_text())["open_set"]
    metrics = json.loads((folder / "metrics.json").read_text())
    return {"cosine_auroc": open_set["cosine"]["auroc"], "mahalanobis_auroc": open_set["mahalanobis"]["auroc"],
            "fpr_at_95_tpr": open_set["fpr_at_95_tpr"], "known_clip_macro_f1": metrics["test"]["clip"]["macro_f1"]}


def measure(name: str, overrides: dict, args, base: dict) -> dict:
    """Every held-out class and seed of one configuration: {class: [figures of each seed]}."""
    task = suite.TASKS[args.task]
    params = suite.task_params(task, base, overrides)
    if args.epochs:
        params["train"]["epochs"] = args.epochs
    audio, _ = suite.prepare_data(task, params, args.max_per_class, args.out, args.jobs)
    runs = {}
    for held_out in args.classes:
        run_params = held_out_params(params, held_out)
        # (prepare_features keys its folder by the split params, the held-out class among them)
        features, _ = suite.prepare_features(task, audio, run_params, 0, args.out, args.jobs)
        runs[held_out] = []
        for seed in args.seeds:
            run_params["train"]["seed"] = seed
            fold_folder = args.out / task.name / name / f"holdout-{held_out}"
            suite.train_and_evaluate(features, run_params, fold_folder)
            figures = run_figures(fold_folder / suite.run_key(features, run_params))
            runs[held_out].append(figures)
            print(f"{name}, {held_out} held out, seed {seed}: cosine AUROC {figures['cosine_auroc']:.3f}, "
                  f"Mahalanobis {figures['mahalanobis_auroc']:.3f}", file=sys.stderr)
    return runs


def table(results: dict[str, dict], seeds: list[int], task: str = "default-piano") -> str:
    """The printed table: a line per configuration and held-out class, means over the seeds, then the paired
    comparison of each configuration with the first."""
    lines = [f"open set of task {task} ({suite.TASKS[task].describe()}), each class held out in turn; seeds {seeds}; "
             "per class the mean over the seeds",
             f"{'config':14s} {'held out':12s} {'cosine AUROC':>13s} {'Mahalanobis':>12s} {'FPR@95%TPR':>11s} "
             f"{'known clip F1':>14s}"]
    for name, runs in results.items():
        for held_out, figures in runs.items():
            means = [statistics.fmean(f[key] for f in figures) for key in FIGURES]
            lines.append(f"{name:14s} {held_out:12s} {means[0]:13.3f} {means[1]:12.3f} {means[2]:11.3f} "
                         f"{means[3]:14.3f}")
        every = [f for figures in runs.values() for f in figures]
        lines.append(f"{name:14s} {'mean':12s} " + " ".join(
            f"{statistics.fmean(f[key] for f in every):{width}.3f}" for key, width in zip(FIGURES, (13, 12, 11, 14))))
    first, *others = results
    for name in others:
        for key in ("cosine_auroc", "known_clip_macro_f1"):
            differences = [b[key] - a[key] for held_out in results[first]
                           for a, b in zip(results[first][held_out], results[name][held_out])]
            # (one pair, one class and one seed, has no sd)
            shown = suite.mean_sd_text(differences, "+") if len(differences) > 1 else f"{differences[0]:+.3f}"
            lines.append(f"{name} against {first}, {key.replace('_', ' ')}: {shown} "
                         f"({sum(d > 0 for d in differences)} / {sum(d < 0 for d in differences)} of "
                         f"{len(differences)} class-seed pairs better / worse)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["default"],
                        help="built-in names of the suite or name:section.key=value,...")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="train.seed of each run")
    parser.add_argument("--task", default="default-piano", choices=TASKS,
                        help="the suite's task whose classes are held out (default: default-piano)")
    parser.add_argument("--classes", nargs="+", default=None,
                        help="the classes held out, one at a time (default: each of the task's)")
    parser.add_argument("--max-per-class", type=int, default=0,
                        help="cap every class at this many works (0: the task's own counts)")
    parser.add_argument("--epochs", type=int, default=0, help="train.epochs for every run (0: as configured)")
    parser.add_argument("--params", type=Path, default=suite.PROJECT / "params.yaml", help="the base params")
    parser.add_argument("--out", type=Path, default=suite.PROJECT / "benchmarks" / "runs" / "composer_quality")
    parser.add_argument("--jobs", type=int, default=0, help="worker processes of the stages (0: one per core)")
    args = parser.parse_args(argv)
    suite.PROGRAM = "open_set"  # names this script in the messages of the suite's helpers
    classes = [spec.composer for spec in suite.TASKS[args.task].classes]
    args.classes = classes if args.classes is None else args.classes
    unknown = [name for name in args.classes if name not in classes]
    if unknown:
        parser.error(f"--classes: {', '.join(unknown)} not a class of task {args.task} ({', '.join(classes)})")
    if len(set(args.seeds)) != len(args.seeds) or len(set(args.classes)) != len(args.classes):
        parser.error("--seeds and --classes: a value is given twice")
    if args.max_per_class < 0 or args.epochs < 0:
        parser.error("--max-per-class and --epochs must be >= 0")
    configs = [suite.parse_config(text) for text in args.configs]
    if len({name for name, _ in configs}) != len(configs):
        parser.error("--configs: two configurations have the same name")
    try:
        base = suite.read_params(args.params)
    except suite.ParamsError as error:
        parser.error(f"--params: {error}")
    for name, overrides in configs:  # a bad configuration stops the run now, not after the ones before it
        suite.task_params(suite.TASKS[args.task], base, overrides)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        results = {name: measure(name, overrides, args, base) for name, overrides in configs}
    except KeyboardInterrupt:
        print("open_set: interrupted; the same command resumes, keeping every step that finished", file=sys.stderr)
        return 130
    print(table(results, args.seeds, args.task))
    summary = {"args": {"task": args.task, "configs": args.configs, "seeds": args.seeds, "classes": args.classes,
                        "max_per_class": args.max_per_class, "epochs": args.epochs}, "runs": results}
    (args.out / "open_set.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(f"open_set: -> {args.out / 'open_set.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

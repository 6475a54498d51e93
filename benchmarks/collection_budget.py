"""End-to-end time of the default pipeline on a collection of a given size (default: 200 files, 20 hours).

A seeded collection of generated MIDI pieces (pretty_midi), four labels of
``--files`` / 4 pieces each, every piece ``--hours`` * 3600 / ``--files``
seconds long, is run through the pipeline's own stage scripts with the
project's params.yaml (only the dataset section pointed at the collection):
download (a ``path`` source), render, clip, featurize, train, evaluate, one
after another as ``dvc repro`` runs them.  Prints the seconds of each stage,
the clip counts that drive training's cost, and the total against
``--budget`` minutes.  The labels differ in register, tempo and texture, so
training has something to learn; the scores it prints say nothing about real
music, the time is what is measured.  The render cache is off, as on a new
machine (``MUSICID_NO_CACHE=1``).

    python benchmarks/collection_budget.py                          # 200 files, 20 h, budget 15 min
    python benchmarks/collection_budget.py --files 40 --hours 1     # a quick look (about 2 minutes)
    python benchmarks/collection_budget.py --set clip.max_clips_per_track=64   # a param changed
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from musicid.params import ParamsLoader, read_params

sys.path.insert(0, str(Path(__file__).resolve().parent))
import composer_quality  # noqa: E402
from composer_quality import apply, run_stage, write_params  # noqa: E402  (the suite's stage runner)

# Register (lowest pitch), seconds per step and notes per step of each label's pieces.
STYLES = {"low_slow": (36, (0.5, 1.0), (2, 4)), "mid_even": (48, (0.25, 0.5), (1, 3)),
          "high_fast": (60, (0.125, 0.25), (1, 2)), "wide_chords": (40, (0.25, 1.0), (3, 5))}


def make_piece(path: Path, seconds: float, style: tuple, seed: int) -> None:
    """One piano piece of ``seconds`` s in ``style``: a melody over chords, drawn with ``seed``."""
    import pretty_midi

    low, steps, voices = style
    rng = np.random.default_rng(seed)
    midi = pretty_midi.PrettyMIDI(initial_tempo=100.0)
    piano = pretty_midi.Instrument(program=0)
    t = 0.0
    while t < seconds:
        length = float(rng.choice(steps))
        count = int(rng.integers(voices[0], voices[1] + 1))
        for pitch in rng.choice(np.arange(low, low + 36), size=count, replace=False):
            piano.notes.append(pretty_midi.Note(velocity=int(rng.integers(50, 110)), pitch=int(pitch),
                                                start=t, end=min(t + length * 1.5, seconds)))
        t += length
    midi.instruments.append(piano)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))


def parse_set(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected section.key=value")
    try:
        return key, yaml.load(value, Loader=ParamsLoader)  # 1e-3 a number, as DVC reads it
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"--set {text!r}: the value is not YAML") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200, help="pieces in the collection (a multiple of 4)")
    parser.add_argument("--hours", type=float, default=20.0, help="hours of music in all")
    parser.add_argument("--budget", type=float, default=15.0, help="minutes the whole run may take")
    parser.add_argument("--set", type=parse_set, action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a param changed from params.yaml (repeatable)")
    parser.add_argument("--jobs", type=int, default=0, help="worker processes of the stages (0: one per core)")
    args = parser.parse_args(argv)
    if args.files < 12 or args.files % 4 or args.hours <= 0:
        parser.error("--files must be a multiple of 4 of at least 12 (the clip stage needs 3 tracks a class) "
                     "and --hours > 0")
    seconds = args.hours * 3600 / args.files
    base = read_params(Path(__file__).resolve().parent.parent / "params.yaml")
    composer_quality.PROGRAM = "collection_budget"
    changes = {"dataset.source": "path", "dataset.classes": [], "dataset.max_per_class": 0, **dict(args.set)}
    apply(base, changes)  # a misspelt --set key stops here, before the pieces are generated

    # Kept when a stage fails, so that the log its message names can be read; removed after a run.
    scratch = Path(tempfile.mkdtemp(prefix="musicid-budget-"))
    try:
        os.environ["MUSICID_NO_CACHE"] = "1"
        started = time.perf_counter()
        labels = list(STYLES)
        for index in range(args.files):
            label = labels[index % 4]
            make_piece(scratch / "collection" / label / f"piece{index:04d}.mid", seconds, STYLES[label], index)
        generated = time.perf_counter() - started
        params = apply(base, {"dataset.path": str(scratch / "collection"), **changes})
        path = write_params(scratch, params)
        data, jobs = scratch / "data", args.jobs
        steps = [
            ("download", ["--params", path, "--out", data / "raw"], jobs),
            ("render", ["--params", path, "--raw", data / "raw", "--out", data / "audio"], jobs),
            ("clip", ["--params", path, "--audio", data / "audio", "--out", data / "clips.h5",
                      "--report", data / "clips_report.json"], jobs),
            ("featurize", ["--params", path, "--clips", data / "clips.h5", "--out", data / "features.h5",
                           "--render-report", data / "audio" / "report.json", "--raw", data / "raw"], jobs),
            ("train", ["--params", path, "--features", data / "features.h5", "--model", data / "model.pt",
                       "--live", data / "live"], None),
            ("evaluate", ["--params", path, "--model", data / "model.pt", "--features", data / "features.h5",
                          "--metrics", data / "metrics.json", "--per-class", data / "per_class.json",
                          "--confusion", data / "confusion", "--novelty", data / "novelty.csv",
                          "--predictions", data / "predictions.csv", "--figures", data / "figures"], None),
        ]
        timings = []
        for name, arguments, stage_jobs in steps:
            timings.append((name, run_stage(name, arguments, scratch, stage_jobs)))
            print(f"collection_budget: {name} {timings[-1][1]:.1f} s", file=sys.stderr)
        report = json.loads((data / "clips_report.json").read_text())
        metrics = json.loads((data / "metrics.json").read_text())
    except BaseException:
        print(f"collection_budget: the run's folder is kept: {scratch}", file=sys.stderr)
        raise
    shutil.rmtree(scratch)

    total = sum(s for _, s in timings)
    changed = ", ".join(f"{k}={v}" for k, v in args.set) or "none"
    print(f"{args.files} generated piano pieces of {seconds / 60:.1f} min ({args.hours:g} h), params.yaml "
          f"(changed: {changed}); generating them took {generated:.0f} s (not counted)")
    print(f"{'stage':<10} {'seconds':>8} {'share':>6}")
    for name, value in timings:
        print(f"{name:<10} {value:8.1f} {value / total:6.1%}")
    print(f"{'total':<10} {total:8.1f}  = {total / 60:.1f} min; budget {args.budget:g} min: "
          f"{'within' if total <= args.budget * 60 else 'OVER'}")
    per_split = {split: sum(c[split]["clips"] for c in report["counts"].values()) for split in ("train", "val", "test")}
    print(f"clips: {report['clips']} ({', '.join(f'{s} {n}' for s, n in per_split.items())})")
    print(f"test track macro-F1 {metrics['test']['track']['macro_f1']:.3f}, clip macro-F1 "
          f"{metrics['test']['clip']['macro_f1']:.3f} (generated labels: says nothing about real music)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

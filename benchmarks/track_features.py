"""The whole piece's note statistics beside the clips', for the track-level regression on the notes.

``train.track_notes`` names a track with a logistic regression on the mean and standard deviation of its clips'
symbolic features (musicid.track_model): 4-second windows in which every part's notes are mixed, so a melodic
interval is often one between two voices, and nothing is measured in beats. ``features.symbolic_piece`` adds
statistics of the whole piece, read part by part (musicid.piece). This script measures what they change, on a
composer_quality.py run (``--out``) of the default configuration, two ways, with no training:

``--mode cv`` (the regression alone, many splits): on each task's tracks (its MIDI files, and the clips'
statistics of every track from one fold's features table) it cross-validates, by track, a logistic regression
(scikit-learn, standardised inputs, balanced class weights, C = ``--c``) on

- ``clips``: the pipeline's statistics (mean and sd over the clips of the 44 note statistics),
- ``piece``: the whole piece's statistics (musicid.piece),
- ``both``: the two side by side (what train fits with ``features.symbolic_piece: true``),

``--repeats`` times with a different shuffle of the stratified ``--folds``-fold split. Per repeat it pools the
out-of-fold answers of all tracks (each answered once) into one macro-F1 and also takes the mean of the folds' own
macro-F1 (what the suite reports); it prints mean +- sd over the repeats and each set's paired difference from
``clips`` (mean +- sd, repeats better / worse).

``--mode suite`` (what evaluate would write, on the suite's own folds): per fold, the run's CNN (its clips' mean
probability on the test tracks, as evaluate computes it) averaged with the run's own regression on the clips'
statistics (its figure checked against the run's metrics.json) and with a regression on both, fitted here on the
fold's training tracks as train fits it. The CNN does not read the regression, so this is the test track macro-F1
a run with ``features.symbolic_piece: true`` gives, without training it again. Prints per task the fused and the
regression-alone figures over the folds (mean +- sd, each fold) and the paired difference of ``both`` from
``clips`` (mean +- sd, folds better / worse).

``--mode played``: the whole piece's statistics of each task's MIDI files as written and as two of
``benchmarks/performed_midi.py``'s copies (seeded as there, copy numbers 7 and 8): ``no tempo map`` (every note
at its second, in a file of 120 beats a minute, so that a quarter note is half a second whatever the piece's
tempo, as in a performance recorded from a keyboard) and ``recorded`` (that, with velocities and onsets drawn
around their own), cross-validated as ``--mode cv`` alone and beside the clips' statistics (those of the
scores' clips: only the whole piece's block reads the copy). Prints mean +- sd over the repeats and the paired
difference from the scores'.

``--mode grams``: a bag of interval n-grams beside the notes' regression, a lever measured and not built. Each
track's MIDI file is read part by part, each run of ``--grams`` successive melodic intervals counted (as the
n-gram profiles of composer recognition in the literature), and a second logistic regression (tf-idf of the counts,
balanced class weights, C = ``--grams-c``) cross-validated as ``--mode cv`` on the same splits as the regression on
the clips' and whole piece's statistics (what train fits by default); prints both alone and their probabilities
summed (the n-grams' weighed ``--grams-weight``), with the paired difference (mean +- sd, repeats better / worse).

``--mode cost``: what reading the whole piece adds to the parse of a task's MIDI files (musicid.symbolic's
read_midi_notes, as featurize's workers call it, with and without the piece), both ways in turn ``--repeats`` times
in one process: the best time of each, and their ratio.

    python benchmarks/track_features.py --out <composer_quality out> --tasks default-piano quartets lopsided
        [--mode cv|suite|played|cost|grams] [--config default] [--seed 0] [--repeats 20] [--folds 5] [--c 0.1]
        [--grams 1 2 3] [--grams-c 1] [--grams-weight 0.5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from composer_quality import mean_sd, mean_sd_text as cell  # noqa: E402  (mean +- sample sd)
from suite_runs import find_runs, find_table, fold_count, split_outputs, stop, written_macro_f1  # noqa: E402

from musicid.h5 import read_strings  # noqa: E402
from musicid.metrics import macro_f1, pool, prior_corrected, track_labels  # noqa: E402
from musicid.symbolic import read_midi_notes  # noqa: E402
from musicid.track_model import (TrackStatistics, checkpoint_regression, fit_regression, fuse_notes,  # noqa: E402
                                 note_columns, regression_probabilities, select_tracks, track_statistics,
                                 with_piece)
from musicid.training import checkpoint_track_prior, load_checkpoint  # noqa: E402


def raw_folder(task_dir: Path, tracks: np.ndarray) -> Path:
    """A raw folder of the task that holds every one of ``tracks`` (every render setting shares its MIDI files)."""
    raws = [raw for raw in sorted(task_dir.glob("data-*/raw")) if all((raw / track).is_file() for track in tracks)]
    if not raws:
        raise stop(f"no raw folder under {task_dir} holds all of its tracks")
    return raws[0]


def piece_table(task_dir: Path, tracks: np.ndarray) -> np.ndarray:
    """The whole piece's statistics [M, PIECE_DIM] of ``tracks``, read (as featurize reads them) from the task's
    raw folder."""
    raw = raw_folder(task_dir, tracks)
    pieces = [read_midi_notes(raw / track)[1] for track in tracks]
    if any(piece is None for piece in pieces):
        raise stop(f"a track of {task_dir} has no notes")
    return np.stack(pieces)


def clip_statistics(table, rows: np.ndarray) -> TrackStatistics:
    """The clips' statistics (no whole piece, whatever the table holds) of the tracks of ``rows``."""
    roll_shape = [int(n) for n in table.attrs.get("symbolic_roll_shape", [])]
    columns = note_columns(table["symbolic"].shape[1], roll_shape)
    return track_statistics(table["symbolic"][rows, :columns], table["has_symbolic"][rows].astype(bool),
                            read_strings(table["track"])[rows])


def task_tracks(task_dir: Path, config: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tracks sorted, their clips' statistics [M, 2D], labels [M]) of every known track of a task, from the
    features table of its first fold's run."""
    table_path = find_table(task_dir, find_runs(task_dir, config, 0, [seed])[seed])
    with h5py.File(table_path, "r") as table:
        rows = np.nonzero(table["known"][:].astype(bool))[0]
        statistics_ = clip_statistics(table, rows)
        labels = track_labels(table["label"][rows].astype(np.int64), read_strings(table["track"])[rows])
    if not statistics_.has_notes.all():
        raise stop(f"{table_path}: a track has no notes")
    return statistics_.tracks, statistics_.values, labels


def cross_validate(x, y: np.ndarray, folds: int, repeats: int, c: float, model=None) -> tuple[list, list]:
    """(pooled macro-F1 per repeat, mean of the folds' macro-F1 per repeat)."""
    pooled, per_fold, _ = cross_validate_probabilities(x, y, folds, repeats, c, model)
    return pooled, per_fold


def regression(c: float):
    """The pipeline's regression on the notes' statistics: standardised inputs, balanced class weights."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=5000))


def cross_validate_probabilities(x, y: np.ndarray, folds: int, repeats: int, c: float, model=None,
                                 ) -> tuple[list, list, list]:
    """:func:`cross_validate`, and each repeat's out-of-fold probabilities [M, classes]. ``x``: an array or a list
    of one input per track; ``model``: a function of C giving an unfitted scikit-learn model (:func:`regression`)."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    model = model or regression
    pooled, per_fold, probabilities = [], [], []
    for repeat in range(repeats):
        answers = np.zeros((len(y), int(y.max()) + 1))
        scores = []
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=repeat).split(np.zeros(len(y)), y):
            fitted = model(c).fit(pick(x, train), y[train])
            answers[np.ix_(test, fitted.classes_)] = fitted.predict_proba(pick(x, test))
            scores.append(f1_score(y[test], answers[test].argmax(1), average="macro", labels=np.unique(y)))
        pooled.append(float(f1_score(y, answers.argmax(1), average="macro")))
        per_fold.append(float(np.mean(scores)))
        probabilities.append(answers)
    return pooled, per_fold, probabilities


def pick(x, rows: np.ndarray):
    return x[rows] if isinstance(x, np.ndarray) else [x[row] for row in rows]


def against(values: list[float], base: list[float]) -> str:
    diff = [a - b for a, b in zip(values, base)]
    mean, sd = mean_sd(diff)
    return f"{mean:+.3f} +- {sd:.3f} ({sum(d > 0 for d in diff)} / {sum(d < 0 for d in diff)})"


def cv_mode(args, task: str) -> None:
    tracks, clips, y = task_tracks(args.out / task, args.config, args.seed)
    piece = piece_table(args.out / task, tracks)
    counts = np.bincount(y)
    print(f"{task}: {len(tracks)} tracks ({', '.join(str(n) for n in counts)} a class), {args.repeats} x "
          f"{args.folds}-fold, C {args.c:g}")
    results = {name: cross_validate(x, y, args.folds, args.repeats, args.c)
               for name, x in (("clips", clips), ("piece", piece), ("both", np.hstack([clips, piece])))}
    print("| set | pooled macro-F1 | folds' mean | pooled, against clips (repeats better / worse) |")
    print("|---|---|---|---|")
    for name, (pooled, per_fold) in results.items():
        print(f"| {name} | {cell(pooled)} | {cell(per_fold)} | "
              f"{'' if name == 'clips' else against(pooled, results['clips'][0])} |")


def played_mode(args, task: str) -> None:
    import io

    from musicid.augment import copy_seed
    from performed_midi import VARIANTS, variant

    tracks, clips, y = task_tracks(args.out / task, args.config, args.seed)
    raw = raw_folder(args.out / task, tracks)
    sets = {"score": piece_table(args.out / task, tracks)}
    for name in ("no tempo map", "recorded"):
        rows = []
        for track in tracks:
            data = io.BytesIO()
            variant(raw / track, name, copy_seed(0, str(track), VARIANTS.index(name) + 1)).write(data)
            rows.append(read_midi_notes(data.getvalue())[1])
        sets[name] = np.stack(rows)
    print(f"{task}: {len(tracks)} tracks, {args.repeats} x {args.folds}-fold, C {args.c:g}; clips alone "
          f"{cell(cross_validate(clips, y, args.folds, args.repeats, args.c)[0])}")
    print("| MIDI | piece alone | against the score | clips + piece | against the score |")
    print("|---|---|---|---|---|")
    results = {}
    for name, piece in sets.items():
        results[name] = [cross_validate(x, y, args.folds, args.repeats, args.c)[0]
                         for x in (piece, np.hstack([clips, piece]))]
        (alone, both), (base_alone, base_both) = results[name], results["score"]
        print(f"| {name} | {cell(alone)} | {'' if name == 'score' else against(alone, base_alone)} | "
              f"{cell(both)} | {'' if name == 'score' else against(both, base_both)} |")


def interval_grams(path: Path, sizes: tuple[int, ...]) -> dict[str, int]:
    """How often each run of ``sizes`` successive melodic intervals occurs in a MIDI file, part by part (pretty_midi's
    instruments, drums out; a part's notes in the order they start, a chord from the low note up; intervals in
    semitones, larger than an octave counted as one): ``{"2:2,-1": 14, ...}``."""
    import collections
    import io

    import pretty_midi

    from musicid.midi import read_midi
    from musicid.symbolic import MAX_TICKS

    pretty_midi.pretty_midi.MAX_TICK = max(pretty_midi.pretty_midi.MAX_TICK, MAX_TICKS)  # as read_midi_notes
    counts: collections.Counter = collections.Counter()
    for part in pretty_midi.PrettyMIDI(io.BytesIO(read_midi(path).data)).instruments:
        if part.is_drum:
            continue
        steps = np.clip(np.diff([note.pitch for note in sorted(part.notes, key=lambda n: (n.start, n.pitch))]),
                        -12, 12)
        for size in sizes:
            for start in range(len(steps) - size + 1):
                counts[f"{size}:" + ",".join(str(step) for step in steps[start:start + size])] += 1
    return dict(counts)


def grams_model(c: float):
    """A bag of interval n-grams: tf-idf (log counts) and a logistic regression with balanced class weights."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(DictVectorizer(), TfidfTransformer(sublinear_tf=True),
                         LogisticRegression(C=c, class_weight="balanced", max_iter=5000))


def grams_mode(args, task: str) -> None:
    """The notes' regression as train fits it (clips' and whole piece's statistics), alone and with a second
    regression on each track's interval n-grams beside it (the two answers' probabilities summed, the second
    weighed ``--grams-weight``), on the same splits."""
    from sklearn.metrics import f1_score

    tracks, clips, y = task_tracks(args.out / task, args.config, args.seed)
    both = np.hstack([clips, piece_table(args.out / task, tracks)])
    raw = raw_folder(args.out / task, tracks)
    grams = [interval_grams(raw / track, tuple(args.grams)) for track in tracks]
    print(f"{task}: {len(tracks)} tracks, {args.repeats} x {args.folds}-fold, C {args.c:g}; n-grams of "
          f"{', '.join(str(size) for size in args.grams)} intervals, C {args.grams_c:g}, weight {args.grams_weight:g}")
    base, _, base_answers = cross_validate_probabilities(both, y, args.folds, args.repeats, args.c)
    alone, _, gram_answers = cross_validate_probabilities(grams, y, args.folds, args.repeats, args.grams_c,
                                                          grams_model)
    fused = [float(f1_score(y, (a + args.grams_weight * b).argmax(1), average="macro"))
             for a, b in zip(base_answers, gram_answers)]
    print("| set | pooled macro-F1 | against clips + piece (repeats better / worse) |")
    print("|---|---|---|")
    print(f"| clips + piece | {cell(base)} |  |")
    print(f"| n-grams | {cell(alone)} | {against(alone, base)} |")
    print(f"| clips + piece, n-grams beside | {cell(fused)} | {against(fused, base)} |")


def suite_fold(task_dir: Path, config: str, fold: int, seed: int, c: float) -> dict[str, float]:
    """Test track macro-F1 of one fold: the run's CNN fused with its own regression on the clips' statistics
    (``clips``), and with one on them and the whole piece's (``both``); each regression alone too."""
    run = find_runs(task_dir, config, fold, [seed])[seed]
    table_path = find_table(task_dir, run)
    checkpoint = load_checkpoint(run / "model.pt")[1]
    own = checkpoint_regression(checkpoint)
    if own is None:
        raise stop(f"{run}: its model holds no regression on the notes (train.track_notes)")
    test = split_outputs(run / "model.pt", table_path, "test")
    # As evaluate pools: each clip divided by the training shares first (train.track_prior; off in older runs).
    mean = pool(prior_corrected(test.probabilities, *checkpoint_track_prior(checkpoint)), test.tracks, "mean")[1]
    truth = track_labels(test.labels, test.tracks)
    with h5py.File(table_path, "r") as table:
        if "piece" in table:
            raise stop(f"{table_path} holds the whole pieces already: score a run made without them")
        split = read_strings(table["split"])
        known = table["known"][:].astype(bool)
        train_rows, test_rows = (np.nonzero((split == name) & known)[0] for name in ("train", "test"))
        train, test_notes = clip_statistics(table, train_rows), clip_statistics(table, test_rows)
        train_labels = track_labels(table["label"][train_rows].astype(np.int64),
                                    read_strings(table["track"])[train_rows])
    test_notes = select_tracks(test_notes, np.unique(test.tracks))
    figures = {"clips": macro_f1(truth, fuse_notes(mean, own, test_notes).argmax(1))}
    written = written_macro_f1(run, "track")
    if abs(figures["clips"] - written) > 5e-6:
        raise stop(f"{run}: track macro-F1 {figures['clips']:.6f} here, {written:.6f} in its metrics.json: the "
                   "scoring does not match evaluate's")
    widened = [with_piece(s, s.tracks, piece_table(task_dir, s.tracks)) for s in (train, test_notes)]
    both, why_not = fit_regression(widened[0], train_labels, [str(i) for i in range(mean.shape[1])], c)
    if both is None:
        raise stop(f"{run}: {why_not}")
    figures["both"] = macro_f1(truth, fuse_notes(mean, both, widened[1]).argmax(1))
    figures["clips alone"] = macro_f1(truth, regression_probabilities(own, test_notes.values).argmax(1))
    figures["both alone"] = macro_f1(truth, regression_probabilities(both, widened[1].values).argmax(1))
    return figures


def suite_mode(args, task: str) -> None:
    task_dir = args.out / task
    folds = [suite_fold(task_dir, args.config, fold, args.seed, args.c)
             for fold in range(fold_count(task_dir, args.config))]
    for name in folds[0]:
        values = [figures[name] for figures in folds]
        base = name.replace("both", "clips")
        print(f"| {task} | {name} | {cell(values)} | {', '.join(f'{v:.3f}' for v in values)} | "
              f"{against(values, [figures[base] for figures in folds]) if base != name else ''} |")


def cost_mode(args, task: str) -> None:
    import time

    raws = sorted((args.out / task).glob("data-*/raw"))
    if not raws:
        raise stop(f"no raw folder under {args.out / task}")
    files = sorted(path for path in raws[0].rglob("*") if path.suffix.lower() in (".mid", ".midi"))
    best = {False: float("inf"), True: float("inf")}
    notes = 0
    for _ in range(args.repeats):
        for piece in (False, True):
            started = time.perf_counter()
            counted = sum(len(read_midi_notes(path, piece)[0].start) for path in files)
            best[piece] = min(best[piece], time.perf_counter() - started)
            notes = counted
    print(f"| {task} | {len(files)} | {notes} | {best[False]:.2f} | {best[True]:.2f} | "
          f"{best[True] / best[False]:.2f}x |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="composer_quality.py's --out")
    parser.add_argument("--tasks", nargs="+", required=True)
    parser.add_argument("--mode", choices=("cv", "suite", "played", "cost", "grams"), default="suite")
    parser.add_argument("--config", default="default", help="the configuration whose runs are read")
    parser.add_argument("--seed", type=int, default=0, help="their train.seed")
    parser.add_argument("--folds", type=int, default=5, help="--mode cv: folds of each split")
    parser.add_argument("--repeats", type=int, default=20, help="--mode cv, played: splits; --mode cost: timings")
    parser.add_argument("--c", type=float, default=0.1, help="C of the regression (train.track_notes)")
    parser.add_argument("--grams", type=int, nargs="+", default=[1, 2, 3],
                        help="--mode grams: the n-grams' sizes, in intervals")
    parser.add_argument("--grams-c", type=float, default=1.0, help="--mode grams: C of the n-grams' regression")
    parser.add_argument("--grams-weight", type=float, default=0.5,
                        help="--mode grams: the n-grams' share beside the notes' regression")
    args = parser.parse_args(argv)
    if not args.c > 0 or args.folds < 2 or args.repeats < 2:
        parser.error("--c must be > 0, --folds and --repeats at least 2")
    if not args.grams_c > 0 or not args.grams_weight > 0 or min(args.grams) < 1:
        parser.error("--grams-c and --grams-weight must be > 0, --grams at least 1")
    if args.mode == "suite":
        print("| task | track macro-F1 of | mean +- sd | folds | both against clips (folds better / worse) |")
        print("|---|---|---|---|---|")
    if args.mode == "cost":
        print("| task | MIDI files | notes | notes alone, s | with the piece, s | ratio |")
        print("|---|---|---|---|---|---|")
    for task in args.tasks:
        {"cv": cv_mode, "suite": suite_mode, "played": played_mode, "cost": cost_mode,
         "grams": grams_mode}[args.mode](args, task)
    return 0


if __name__ == "__main__":
    sys.exit(main())

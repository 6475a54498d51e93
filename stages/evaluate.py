"""Stage `evaluate`: clip- and track-level metrics, confusion matrices, open-set novelty, per-track predictions.

    python stages/evaluate.py --params params.yaml --model models/model.pt \
        --features data/features.h5 --metrics metrics/metrics.json \
        --per-class metrics/per_class.json --confusion metrics/confusion \
        --novelty metrics/novelty.csv --predictions metrics/predictions.csv --figures metrics/figures

``--metrics`` holds only what runs are compared on (macro-F1 and balanced
accuracy per split and level, the open-set AUROC and FPR when a class is held
out), so `dvc metrics diff` and `dvc exp show` stay narrow; the details
(accuracy, counts, each class's precision and recall, the cosine score) are in
``--per-class``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import get_args

import h5py
import numpy as np

# This project's musicid before any installed one: a queued `dvc exp run` runs the stages in a copy of the
# project (.dvc/tmp/exps/...), whose code is the experiment's, while an editable install points elsewhere.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from musicid.figures import save_confusion_png, save_embedding_png
from musicid.h5 import read_strings
from musicid.io import dumps_json
from musicid.metrics import (TRACK_POOLING, Pooling, clip_answers, confusion_matrix, confusion_records, headline,
                             open_set_metrics, prior_corrected, summarise, track_probabilities)
from musicid.novelty import MIN_THRESHOLD_TRACKS
from musicid.params import load_section
from musicid.piece import PIECE_DIM
from musicid.stage import output_set, run_stage
from musicid.track_model import (checkpoint_regression, fuse_notes, note_columns, regression_probabilities,
                                 reads_piece, select_tracks, statistic_columns, table_statistics)
from musicid.training import (AUDIO_ONLY, NOTES_NOVELTY, CheckpointError, FeaturesError, audio_only_stored,
                              check_features_table, checkpoint_novelty, checkpoint_novelty_kind, checkpoint_threshold,
                              checkpoint_track_prior, class_probabilities, load_checkpoint, normalise, pick_device,
                              read_symbolic_input, to_numpy, track_novelty)

NOVELTY_SCORES = ("cosine", "mahalanobis")  # the columns of novelty.csv and the keys of per_class.json's open_set


def csv_text(header: list[str], rows: list[list]) -> str:
    """CSV with "\\n" line ends; track ids holding commas or quotes are quoted."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def mismatch(checkpoint: dict, table: h5py.File) -> str | None:
    """Why the model cannot score this features table, or None when it can."""
    n_known = int(table.attrs["n_known"])
    known_names = [str(name) for name in table.attrs["label_names"]][:n_known]
    bands = table["features"].shape[1]
    trained_bands = checkpoint["model_config"]["n_bands"]
    if bands != trained_bands:
        return f"the model was trained on {trained_bands}-band features, the table holds {bands}-band ones"
    symbolic_dim = checkpoint["model_config"].get("symbolic_dim", 0)
    table_dim = table["symbolic"].shape[1] if "symbolic" in table else 0
    if symbolic_dim and symbolic_dim != table_dim:
        held = f"{table_dim}-value symbolic features" if table_dim else "no symbolic features"
        return (f"the model was trained with {symbolic_dim}-value symbolic features, the table holds {held} "
                "(features.symbolic)")
    regression = checkpoint_regression(checkpoint)
    if regression is not None:
        columns = note_columns(table["symbolic"].shape[1], checkpoint["model_config"].get(
            "roll_shape", [])) if "symbolic" in table else 0
        piece = PIECE_DIM if "piece" in table else 0
        if regression["track_notes_mean"].shape[0] != 2 * columns + piece:
            def words(width: int, whole: int) -> str:
                return f"{width} statistics of a track" + (f" and {whole} of the whole piece" if whole else "")
            read, whole = regression["track_notes_mean"].shape[0], PIECE_DIM if reads_piece(checkpoint) else 0
            return (f"the model's regression on the notes reads {words((read - whole) // 2, whole)}, the table "
                    f"holds {words(columns, piece)} (features.symbolic, features.symbolic_piece)")
    if list(checkpoint["label_names"]) != known_names:
        return (f"the model knows the classes {list(checkpoint['label_names'])}, the table's known classes are "
                f"{known_names}")
    return None


def run(args: argparse.Namespace) -> int:
    """The work of the stage; failures a user can fix end in one line (musicid.stage)."""
    params = load_section(args.params, "evaluate")

    device = pick_device()
    try:
        check_features_table(args.features)
        model, checkpoint = load_checkpoint(args.model, device)
        checkpoint_novelty(checkpoint)  # a checkpoint without novelty statistics: ValueError
        novelty_kind = checkpoint_novelty_kind(checkpoint)
        # train.track_prior: each clip's probabilities are divided by the training clips' class shares before pooling.
        prior = checkpoint_track_prior(checkpoint, args.model)
    except (CheckpointError, FeaturesError) as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 1
    except ValueError as error:  # a checkpoint without novelty statistics
        print(f"evaluate: {args.model}: {error}", file=sys.stderr)
        return 1
    label_names = list(checkpoint["label_names"])
    mean, std = to_numpy(checkpoint["band_mean"]), to_numpy(checkpoint["band_std"])
    centroids = to_numpy(checkpoint["centroids"])
    # A model with a symbolic branch reads the table's symbolic columns; an audio-only one ignores them.
    uses_symbolic = bool(model.config.symbolic_dim)
    # train.track_notes: a track with notes is also named by a regression on its notes' statistics.
    regression = checkpoint_regression(checkpoint)
    # Tracks scored above this are flagged as unlike every known class (as predict does).
    threshold = checkpoint_threshold(checkpoint)
    # train.novelty_notes: a track with notes is scored partly by its notes (none without the regression)
    notes_share = float(checkpoint.get(NOTES_NOVELTY[0], 0.0)) if regression is not None else 0.0
    audio_only = uses_symbolic and audio_only_stored(checkpoint)
    # A clip's audio alone is named as an audio file's clip is (a triplet model: by the notes-less centroids).
    audio_centroids = to_numpy(checkpoint[f"{AUDIO_ONLY}centroids"]) \
        if audio_only and not model.uses_classifier else centroids
    metrics: dict = {}
    details: dict = {}
    predictions: list[list] = []
    with h5py.File(args.features, "r") as table:
        problem = mismatch(checkpoint, table)
        if problem:
            print(f"evaluate: {args.model} does not fit {args.features}: {problem}; retrain with "
                  "`dvc repro train`", file=sys.stderr)
            return 1
        scored = read_strings(table["split"])[table["known"][:].astype(bool)]
        for split, key in (("val", "split.val"), ("test", "split.test")):
            if not (scored == split).any():
                print(f"evaluate: {args.features}: the {split} split holds no clip of a known class, so there is "
                      f"nothing to score: set {key} > 0 in params.yaml (each class then gets {split} tracks)",
                      file=sys.stderr)
                return 1
        # Every output is written to a temporary first and all move into place together at the block's end.
        with output_set() as outputs:
            confusion_dir, figures_dir = outputs.folder(args.confusion), outputs.folder(args.figures)
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
                symbolic = read_symbolic_input(table, rows, to_numpy(checkpoint["symbolic_mean"]),
                                               to_numpy(checkpoint["symbolic_std"])) if uses_symbolic else None
                probabilities, embeddings = class_probabilities(model, features, centroids, params.batch_size,
                                                                device, symbolic)
                # A symbolic model's tracks without notes (audio files) are scored as predict scores such a
                # file: against the statistics of clips embedded without notes, where the model stores them.
                no_notes = tracks_without_notes(tracks, symbolic) if audio_only else np.zeros(len(rows), bool)
                if no_notes.any() and not model.uses_classifier:  # a triplet model names classes by centroid
                    probabilities[no_notes] = class_probabilities(
                        model, features[no_notes], to_numpy(checkpoint[f"{AUDIO_ONLY}centroids"]),
                        params.batch_size, device)[0]
                # evaluate.clip_audio: a clip with notes is also scored by its audio alone (as an audio file's clip
                # is; per_class.json gives that figure at any share), and its own answer mixes the two; a track
                # pools the answers with the notes.
                has_notes = symbolic[:, -1] > 0 if symbolic is not None else np.zeros(len(rows), bool)
                alone = probabilities
                if has_notes.any():
                    alone = probabilities.copy()
                    alone[has_notes] = class_probabilities(model, features[has_notes], audio_centroids,
                                                           params.batch_size, device)[0]
                answers = clip_answers(probabilities, alone, has_notes, params.clip_audio)
                # Classification metrics cover the known classes; held-out ones are unknown.
                is_known = known[rows]
                notes = None if regression is None else table_statistics(
                    table, rows, statistic_columns(regression, "piece" in table))
                # train.track_prior: the clips' probabilities divided by the training shares before pooling.
                divided = prior_corrected(probabilities, *prior)
                cnn_probs, track_labels, known_names = track_probabilities(
                    divided[is_known], labels[is_known], tracks[is_known])
                known_notes = None if notes is None else select_tracks(notes, known_names)
                track_probs = cnn_probs if known_notes is None else fuse_notes(cnn_probs, regression, known_notes)
                levels = {
                    "clip": (labels[is_known], answers[is_known].argmax(1)),
                    "track": (track_labels, track_probs.argmax(1)),
                }
                metrics[split], details[split] = {}, {}
                for level, (truth, predicted) in levels.items():
                    summary, per_class = summarise(truth, predicted, label_names)
                    metrics[split][level] = headline(summary)
                    details[split][level] = {**summary, "classes": per_class}
                    (confusion_dir / f"{split}_{level}.json").write_text(
                        dumps_json(confusion_records(truth, predicted, label_names)))
                    save_confusion_png(figures_dir / f"confusion_{split}_{level}.png",
                                       confusion_matrix(truth, predicted, len(label_names)), label_names,
                                       f"{split}, {level} level")
                # Clip macro-F1 of the model with the notes, and of the audio alone, beside the mix the headline has.
                details[split]["clip_answers"] = {
                    # no scored clip with notes (an audio collection; held-out classes are not scored): nothing mixed
                    "clip_audio": params.clip_audio if has_notes[is_known].any() else 0.0,
                    **{way: summarise(labels[is_known], values[is_known].argmax(1), label_names)[0]["macro_f1"]
                       for way, values in (("with_notes", probabilities), ("audio_alone", alone))}}
                # Track macro-F1 under each way of pooling the clips alone, and of the notes' regression alone
                # (the headline uses TRACK_POOLING, averaged with the regression when the model has one).
                # The regression names only tracks with notes: with none in the split (audio files), it was not used.
                fused = known_notes is not None and bool(known_notes.has_notes.any())
                details[split]["track_pooling"] = {
                    "used": f"{TRACK_POOLING} and the notes' regression" if fused else TRACK_POOLING,
                    "track_prior": prior[1],  # the power the clips were divided by (0: as the model gives them)
                    **{way: summarise(track_labels, track_probabilities(
                        divided[is_known], labels[is_known], tracks[is_known], way)[0].argmax(1),
                        label_names)[0]["macro_f1"] for way in get_args(Pooling)}}
                if known_notes is not None:
                    with_notes = known_notes.has_notes
                    details[split]["track_pooling"]["notes"] = summarise(
                        track_labels[with_notes], regression_probabilities(
                            regression, known_notes.values[with_notes]).argmax(1), label_names)[0]["macro_f1"] \
                        if with_notes.any() else None
                    if 0 < with_notes.sum() < len(with_notes):  # the others (audio files) are not in its figure
                        details[split]["track_pooling"]["notes_tracks"] = \
                            f"{int(with_notes.sum())} of {len(with_notes)} (the tracks with notes)"
                # Every track of the split, known classes or not: what it was, what the model said.
                names, scores = track_novelty(checkpoint, None, embeddings, tracks, no_notes, notes)
                all_track_probs = track_probabilities(divided, labels, tracks)[0]  # sorted like names
                if notes is not None:
                    all_track_probs = fuse_notes(all_track_probs, regression, notes)
                track_label = {t: all_names[l] for t, l in zip(tracks, labels)}
                track_known = {t: bool(k) for t, k in zip(tracks, is_known)}
                for i, name in enumerate(names):
                    flagged = bool(np.isfinite(threshold) and scores[i] > threshold)
                    predictions.append([split, name, track_label[name], str(track_known[name]).lower(),
                                        label_names[int(all_track_probs[i].argmax())],
                                        *(f"{p:.6f}" for p in all_track_probs[i]), f"{scores[i]:.6f}",
                                        str(flagged).lower()])
                if split == "test":
                    save_embedding_png(figures_dir / "embeddings_test.png", embeddings,
                                       [all_names[i] + ("" if is_known[j] else " (unknown)")
                                        for j, i in enumerate(labels)], "test clips, PCA of the embeddings")
                    # Tracks are ranked by train.novelty's score; both scores are shown for comparison.
                    both = {kind: track_novelty(checkpoint, kind, embeddings, tracks, no_notes, notes)[1]
                            for kind in NOVELTY_SCORES}
                    unknown = np.array([not track_known[t] for t in names])
                    if unknown.any():
                        open_set = open_set_metrics(scores, unknown)
                        metrics["open_set"] = {"auroc": open_set["auroc"],
                                               "fpr_at_95_tpr": open_set["fpr_at_95_tpr"]}
                        # notes_share: train.novelty_notes, the share of a track's notes in its scores (0: none)
                        details["open_set"] = {"score": novelty_kind, "notes_share": notes_share, **open_set,
                                               **{kind: open_set_metrics(both[kind], unknown)
                                                  for kind in NOVELTY_SCORES}}
                    order = sorted(range(len(names)), key=lambda i: (-scores[i], names[i]))
                    outputs.file(args.novelty).write_bytes(csv_text(
                        ["track", "label", "known", "novelty", *(f"novelty_{kind}" for kind in NOVELTY_SCORES)],
                        [[names[i], track_label[names[i]], str(track_known[names[i]]).lower(),
                          f"{scores[i]:.6f}", *(f"{both[kind][i]:.6f}" for kind in NOVELTY_SCORES)]
                         for i in order]).encode("utf-8"))
            outputs.file(args.predictions).write_bytes(csv_text(
                ["split", "track", "label", "known", "predicted", *(f"p_{name}" for name in label_names),
                 "novelty", "flagged"], sorted(predictions, key=lambda row: (row[0] != "val", row[1]))
            ).encode("utf-8"))
            # Classes clip left out (too few tracks, none rendered): named, or they would vanish from the scores.
            excluded = json.loads(table.attrs.get("excluded_classes", "{}"))
            if excluded:
                details["excluded_classes"] = excluded
            outputs.file(args.per_class).write_bytes(dumps_json(details).encode("utf-8"))
            outputs.file(args.metrics).write_bytes(dumps_json(metrics).encode("utf-8"))
    test = details["test"]
    open_set = metrics.get("open_set")
    extra = f"; novelty AUROC {open_set['auroc']:.3f}, FPR@95%TPR {open_set['fpr_at_95_tpr']:.3f}" if open_set else ""
    print(f"evaluate: test clip accuracy {test['clip']['accuracy']:.3f} macro-F1 {test['clip']['macro_f1']:.3f}; "
          f"track accuracy {test['track']['accuracy']:.3f} macro-F1 {test['track']['macro_f1']:.3f} "
          f"({test['track']['n']} tracks){extra} -> {args.metrics}")
    if excluded:
        print(f"evaluate: classes left out by clip, not scored: "
              f"{'; '.join(f'{label} ({reason})' for label, reason in excluded.items())}")
    # A known class with no track in a split (its only test track gave no clip, say) is left out of that split's
    # macro-F1: a figure over fewer classes than the model knows, which a comparison must not take for another.
    reference_tracks = checkpoint.get("novelty_reference_tracks")
    if np.isfinite(threshold) and reference_tracks is not None and int(reference_tracks) < MIN_THRESHOLD_TRACKS:
        # As predict says: flagged rows of predictions.csv rest on a threshold from a handful of tracks.
        print(f"evaluate: warning: the novelty threshold rests on {int(reference_tracks)} validation tracks (fewer "
              f"than {MIN_THRESHOLD_TRACKS}), so predictions.csv's flagged column means little", file=sys.stderr)
    for split in ("val", "test"):
        unscored = [row["label"] for row in details[split]["track"]["classes"] if row["support"] == 0]
        if unscored:
            print(f"evaluate: warning: no {split} track of {', '.join(unscored)}: the {split} scores are over "
                  f"{len(label_names) - len(unscored)} of {len(label_names)} classes", file=sys.stderr)
    return 0


def tracks_without_notes(tracks: np.ndarray, symbolic: np.ndarray) -> np.ndarray:
    """bool [N]: whether each clip's track has no clip with notes (its symbolic input's presence flag)."""
    with_notes = set(tracks[symbolic[:, -1] > 0])
    return np.array([track not in with_notes for track in tracks], dtype=bool)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, type=Path)
    parser.add_argument("--model", required=True, type=Path, help="input: models/model.pt")
    parser.add_argument("--features", required=True, type=Path, help="input: data/features.h5")
    parser.add_argument("--metrics", required=True, type=Path, help="output: headline metrics (JSON)")
    parser.add_argument("--per-class", required=True, type=Path,
                        help="output: every metric of each split and level, per class too (JSON)")
    parser.add_argument("--confusion", required=True, type=Path,
                        help="output directory: one confusion-plot JSON per split and level")
    parser.add_argument("--novelty", required=True, type=Path, help="output: test tracks by novelty (CSV)")
    parser.add_argument("--predictions", required=True, type=Path,
                        help="output: each val and test track's prediction (CSV)")
    parser.add_argument("--figures", required=True, type=Path, help="output directory: PNG figures")
    args = parser.parse_args(argv)
    return run_stage("evaluate", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())

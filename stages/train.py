"""Stage `train`: fit the spectrogram CNN on the training split; keep the last epoch (or the best val one).

    python stages/train.py --params params.yaml --features data/features.h5 \
        --model models/model.pt --live metrics/train

Writes the checkpoint and a folder of training curves: dvclive's per-epoch
values (``plots/metrics/*.tsv``, step = epoch counted from 1, as in the log)
and ``curves.png``.  Both are replaced only when training ends: an interrupted
run leaves the previous model and curves as they were.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Read by OpenMP (GNU libgomp, PyTorch's) when torch loads: a thread that finished its share of an
# operation waits this many spins (default 300,000) before it sleeps.  Spinning that long takes the core
# the convolution weight gradient's other thread needs (musicid.model.part_weight_grads): training ran 0.97x
# as fast with the parts as without, and 1.13x to 1.14x as fast with this (benchmarks/train_speed.py).
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import h5py
import numpy as np
import torch

# This project's musicid before any installed one: a queued `dvc exp run` runs the stages in a copy of the
# project (.dvc/tmp/exps/...), whose code is the experiment's, while an editable install points elsewhere.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from musicid.figures import save_training_curves_png
from musicid.h5 import read_strings
from musicid.metrics import class_shares
from musicid.model import ModelConfig
from musicid.novelty import Cosine, Mahalanobis
from musicid.params import ParamsError, as_dict, load_section
from musicid.progress import progress, progress_enabled
from musicid.track_model import fit_table_regression, notes_centroids, notes_novelty, split_statistics
from musicid.training import (AUDIO_ONLY, NOTES_NOVELTY, EmptyValidationSplit, FeaturesError, PitchAxis,
                              SymbolicAxis, check_features_table, checkpoint_bytes, class_centroids, embed, normalise,
                              notes_mixed, pick_device, read_symbolic_input, train_model)
from musicid.stage import output_set, run_stage
from musicid.symbolic_layout import roll_planes_of


class StageError(Exception):
    """Stops the stage with a one-line message before anything is replaced."""


# The per-epoch values dvclive writes as curves for `dvc plots`.
CURVES = ("train_loss", "train_accuracy", "val_accuracy", "val_macro_f1", "lr")


def load_split(features_path: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features float32 [N, n_bands, T], labels int64 [N], tracks str [N]) of the known-class rows of a split."""
    with h5py.File(features_path, "r") as table:
        rows = split_rows(table, split)
        features = table["features"][rows] if len(rows) else np.zeros((0, *table["features"].shape[1:]), np.float32)
        labels = table["label"][rows].astype(np.int64)
        tracks = read_strings(table["track"])[rows]
    return features, labels, tracks


def fit_track_notes(features_path: Path, c: float, label_names: list[str], augmented: bool,
                    ) -> tuple[dict[str, np.ndarray] | None, str]:
    """(train.track_notes' regression on the training tracks' note statistics or None, what was done)."""
    if not c:
        return None, ""
    regression, why_not, tracks = fit_table_regression(features_path, c, label_names, augmented)
    if regression is None:
        return None, f"; no regression on the notes ({why_not})"
    return regression, f"; regression on the notes of {tracks} training tracks"


def split_rows(table: h5py.File, split: str) -> np.ndarray:
    """Row indices int64 [N] of the known-class clips of a split."""
    return np.nonzero((read_strings(table["split"]) == split) & table["known"][:])[0]


def load_symbolic(features_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(train input, val input float32 [N, D + 1], mean, std float32 [D]) of the symbolic branch, in the
    row order of :func:`load_split`; None for a table without symbolic features."""
    with h5py.File(features_path, "r") as table:
        if "symbolic" not in table:
            return None
        mean = np.asarray(table.attrs["symbolic_mean"], dtype=np.float32)
        std = np.asarray(table.attrs["symbolic_std"], dtype=np.float32)
        train, val = (read_symbolic_input(table, split_rows(table, split), mean, std) for split in ("train", "val"))
    return train, val, mean, std


def epoch_printer(epochs: int):
    """One line per epoch on stderr: above the progress bars on a terminal, as it is elsewhere (a log file, CI,
    MUSICID_PROGRESS=0)."""
    if progress_enabled() and sys.stderr.isatty():
        from tqdm import tqdm

        return lambda entry: tqdm.write(f"train: {entry.line(epochs)}", file=sys.stderr)
    return lambda entry: print(f"train: {entry.line(epochs)}", file=sys.stderr, flush=True)


def pitch_axis(params, features: dict | None, params_path: Path, features_path: Path, band_mean: np.ndarray,
               band_std: np.ndarray) -> PitchAxis | None:
    """The band layout train.pitch_shift transposes along; ParamsError when the features have no pitch axis."""
    if params.pitch_shift == 0:
        return None
    kind = (features or {}).get("kind")
    if kind not in ("cqt", "chroma"):
        raise ParamsError(f"{params_path}: train.pitch_shift must be 0 for features of kind {kind or 'unknown'} "
                          f"({features_path}): transposing needs features.kind cqt or chroma, got "
                          f"{params.pitch_shift}")
    return PitchAxis.of(features, band_mean, band_std)


def run(args: argparse.Namespace) -> int:
    """The work of the stage; failures a user can fix end in one line (musicid.stage)."""
    params = load_section(args.params, "train")

    try:
        check_features_table(args.features)
    except FeaturesError as error:
        print(f"train: {error}", file=sys.stderr)
        return 1
    with h5py.File(args.features, "r") as table:
        # Held-out classes (open set) come after the known ones; the model never sees them.
        n_known = int(table.attrs["n_known"])
        label_names = [str(name) for name in table.attrs["label_names"]][:n_known]
        band_mean = np.asarray(table.attrs["band_mean"], dtype=np.float32)
        band_std = np.asarray(table.attrs["band_std"], dtype=np.float32)
        upstream = json.loads(table.attrs["params"])
        sample_rate = int(table.attrs["sample_rate"])
        # [pitches, frames] of the piano roll that ends each clip's symbolic features (features.symbolic_roll);
        # [2, pitches, frames] with its onset plane (features.symbolic_onsets).
        roll_shape = [int(n) for n in table.attrs.get("symbolic_roll_shape", [])]
    if roll_shape and params.roll_pool > roll_shape[-1]:  # a bad param, found only against the table
        raise ParamsError(f"{args.params}: train.roll_pool must be at most the piano roll's {roll_shape[-1]} "
                          f"frames ({args.features}), got {params.roll_pool}")
    pitch = pitch_axis(params, upstream.get("features"), args.params, args.features, band_mean, band_std)
    train_x, train_y, train_tracks = load_split(args.features, "train")
    val_x, val_y, val_tracks = load_split(args.features, "val")
    if len(train_x) == 0:
        print("train: the training split is empty", file=sys.stderr)
        return 1
    for key, width, limit, what in (("freq_mask", params.freq_mask, train_x.shape[1], "bands"),
                                    ("time_mask", params.time_mask, train_x.shape[2], "frames")):
        if width > limit and params.masks:  # a mask wider than the clip would blank whole clips (masks 0: none)
            raise ParamsError(f"{args.params}: train.{key} must be at most the features' {limit} {what} "
                              f"({args.features}), got {width}")
    if len(val_x) == 0:
        print(f"train: {args.features}: the validation split is empty, so no epoch can be chosen on it: "
              "set split.val > 0 in params.yaml (each class needs a validation track)", file=sys.stderr)
        return 1
    train_x = normalise(train_x, band_mean, band_std)
    val_x = normalise(val_x, band_mean, band_std)
    symbolic = load_symbolic(args.features)
    train_symbolic, val_symbolic = (None, None) if symbolic is None else symbolic[:2]
    symbolic_axis = None if symbolic is None else SymbolicAxis(
        symbolic[2], symbolic[3], roll=bool(roll_shape), planes=roll_planes_of(roll_shape),
        key_relative=(upstream.get("features") or {}).get("symbolic_key") == "relative")
    if params.symbolic_transpose and symbolic is None:  # a bad param, found only against the table
        raise ParamsError(f"{args.params}: train.symbolic_transpose must be 0 for a features table without "
                          f"symbolic features ({args.features}: made with features.symbolic false, or from audio "
                          f"only), got {params.symbolic_transpose}")

    config = ModelConfig(n_bands=train_x.shape[1], n_classes=len(label_names),
                         channels=list(params.channels), embedding_dim=params.embedding_dim,
                         dropout=params.dropout, symbolic_dim=0 if symbolic is None else len(symbolic[2]),
                         roll_shape=[] if symbolic is None else roll_shape,
                         roll_channels=list(params.roll_channels), roll_pool=params.roll_pool)
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    print_epoch = epoch_printer(params.epochs)
    # dvclive writes into a staging folder, the checkpoint into a staging file: both replace the outputs only
    # once both are written, together, so a model never goes with curves of another run; any exception,
    # KeyboardInterrupt included, a full disk too, leaves both as they were.
    try:
        with output_set() as outputs:
            staging = outputs.folder(args.live)
            try:
                # The stage itself is the DVC experiment, so dvclive neither records
                # one of its own nor edits dvc.yaml.
                live = Live(str(staging), save_dvc_exp=False, dvcyaml=None)
            except SCMError as error:  # dvclive reads the current git revision
                raise StageError(f"dvclive cannot read the git repository ({error}); commit the project "
                                 "(`git add -A && git commit`) before running the pipeline") from None
            with live:
                def on_epoch(entry) -> None:
                    live.step = entry.epoch  # the curves' step is the epoch number the log prints
                    for name in CURVES:
                        if getattr(entry, name) is not None:
                            live.log_metric(name, round(getattr(entry, name), 6))
                    print_epoch(entry)

                model, log, kept_epoch = train_model(train_x, train_y, val_x, val_y, config, params,
                                                     progress=progress, on_epoch=on_epoch, pitch=pitch,
                                                     train_symbolic=train_symbolic, val_symbolic=val_symbolic,
                                                     symbolic_axis=symbolic_axis, train_tracks=train_tracks)
            save_training_curves_png(staging / "curves.png", [e.epoch for e in log],
                                     [e.train_loss for e in log], [e.val_macro_f1 for e in log], kept_epoch)
            device = pick_device()
            train_embeddings = embed(model, train_x, 256, device, train_symbolic)
            val_embeddings = embed(model, val_x, 256, device, val_symbolic)
            centroids = class_centroids(train_embeddings, train_y, config.n_classes)
            novelty = Mahalanobis.fit(train_embeddings, train_y)  # stored whichever score is used
            scorer = Cosine(centroids) if params.novelty == "cosine" else novelty
            # How novel known music looks: the 95th percentile of the validation tracks'
            # novelty scores (train.novelty's), the threshold above which predict flags a file.
            _, val_scores = scorer.track_scores(val_embeddings, val_tracks)
            reference = float(np.percentile(val_scores, 95))
            # A symbolic model embeds a clip without notes (an audio file's, in predict) elsewhere than the
            # same clip with them, so those get statistics and a threshold of their own: the training and
            # validation clips embedded with their notes hidden.
            without_notes = {} if symbolic is None else novelty_without_notes(
                model, train_x, train_y, val_x, val_tracks, config.n_classes, device,
                {"cosine": Cosine(centroids), "mahalanobis": novelty}, val_embeddings)
            augmented = bool(((upstream.get("render") or {}).get("augment") or {}).get("copies"))
            regression, notes_said = fit_track_notes(args.features, params.track_notes, label_names, augmented)
            # train.novelty_notes: a track with notes also scored by how unlike the training tracks' its notes
            # are; the threshold is then the validation tracks' mixed scores'.
            notes_novelty_keys, notes_reference = {}, None
            if regression is not None and params.novelty_notes:
                notes_novelty_keys, notes_reference = novelty_with_notes(
                    args.features, regression, config.n_classes, params.novelty_notes, params.novelty,
                    {"cosine": Cosine(centroids), "mahalanobis": novelty}, val_embeddings, val_tracks,
                    without_notes)
            if notes_reference is not None:
                reference = notes_reference
                notes_said += f"; novelty {params.novelty_notes:g} from the notes"
            checkpoint = checkpoint_bytes(
                model, label_names, band_mean, band_std,
                {**upstream, "train": as_dict(params), "sample_rate": sample_rate},
                centroids=centroids, novelty=novelty,
                extra={"kept_epoch": kept_epoch, "novelty_score": params.novelty, "novelty_reference": reference,
                       # train.track_prior divides each clip's probabilities by these before evaluate and
                       # predict pool a track's clips.
                       "train_class_shares": torch.from_numpy(class_shares(train_y, config.n_classes)),
                       "novelty_reference_tracks": int(len(val_scores)), **without_notes,
                       # The symbolic branch's normalisation (config.symbolic_dim > 0 says it is used).
                       **({} if symbolic is None else {"symbolic_mean": torch.from_numpy(symbolic[2]),
                                                       "symbolic_std": torch.from_numpy(symbolic[3])}),
                       **({} if regression is None else {key: torch.from_numpy(value)
                                                          for key, value in regression.items()}),
                       **notes_novelty_keys})
            outputs.file(args.model).write_bytes(checkpoint)
    except (StageError, EmptyValidationSplit) as error:
        print(f"train: {error}", file=sys.stderr)
        return 1
    if novelty.euclidean and params.novelty == "mahalanobis":
        print("train: the training clips of each class coincide, so the novelty score is the plain "
              "distance to the nearest class mean (no covariance to weigh it by)", file=sys.stderr)
    kept = log[kept_epoch - 1]
    # How many training clips the symbolic branch had notes for (none in a collection of audio files)
    inputs = ("" if symbolic is None else
              f", audio and symbolic features, notes for {int(train_symbolic[:, -1].sum())} of {len(train_x)} clips")
    print(f"train: {len(train_x)} clips, {len(log)} of {params.epochs} epochs ({params.loss}{inputs}); "
          f"{params.keep} epoch {kept_epoch} (val clip accuracy {kept.val_accuracy:.3f}, "
          f"macro-F1 {kept.val_macro_f1:.3f}){notes_said} "
          f"-> {args.model}")
    return 0


def novelty_without_notes(model, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray,
                          val_tracks: np.ndarray, n_classes: int, device, scorers: dict,
                          val_embeddings: np.ndarray) -> dict:
    """The checkpoint keys (prefix AUDIO_ONLY) of the centroids and novelty statistics of the training clips
    embedded by a symbolic model without their notes, and, for each novelty score, the factor that puts a
    score against them on the scale of the scores of clips with notes: the ratio of the 95th percentiles of
    the validation tracks' scores with and without their notes (``scorers``: each score's scorer of clips
    with notes; ``val_embeddings``: the validation clips embedded with them)."""
    train_embeddings = embed(model, train_x, 256, device)
    hidden = embed(model, val_x, 256, device)
    centroids = class_centroids(train_embeddings, train_y, n_classes)
    novelty = Mahalanobis.fit(train_embeddings, train_y)
    scale = {}
    for kind, scorer in scorers.items():
        alone = Cosine(centroids) if kind == "cosine" else novelty
        with_notes = float(np.percentile(scorer.track_scores(val_embeddings, val_tracks)[1], 95))
        without = float(np.percentile(alone.track_scores(hidden, val_tracks)[1], 95))
        scale[kind] = with_notes / without if without > 0 and np.isfinite(with_notes / without) else 1.0
    return {f"{AUDIO_ONLY}centroids": torch.from_numpy(centroids),
            f"{AUDIO_ONLY}novelty_class_means": torch.from_numpy(np.asarray(novelty.class_means, dtype=np.float64)),
            f"{AUDIO_ONLY}novelty_precision": torch.from_numpy(np.asarray(novelty.precision, dtype=np.float64)),
            f"{AUDIO_ONLY}novelty_scale": scale}


def novelty_with_notes(features_path: Path, regression: dict[str, np.ndarray], n_classes: int, share: float,
                       kind: str, scorers: dict, val_embeddings: np.ndarray, val_tracks: np.ndarray,
                       without_notes: dict) -> tuple[dict, float | None]:
    """(the checkpoint keys of train.novelty_notes (musicid.training.NOTES_NOVELTY), the novelty threshold: the
    95th percentile of the validation tracks' mixed scores of ``kind``), or ({}, None) when no validation track
    has notes. For each score of ``scorers`` the notes' distance (musicid.track_model.notes_novelty) is scaled so
    that its validation tracks' 95th percentile is the embedding's; ``without_notes``' factors for tracks without
    notes (novelty_without_notes) are rescaled in place onto the mixed scores' percentile, so that one threshold
    still flags both."""
    with h5py.File(features_path, "r") as table:
        train_statistics, train_labels = split_statistics(table, "train")
        val_statistics, _ = split_statistics(table, "val")
    if not val_statistics.has_notes.any():
        return {}, None
    centroids = notes_centroids(regression, train_statistics, train_labels, n_classes)
    keys = {NOTES_NOVELTY[0]: float(share), NOTES_NOVELTY[1]: torch.from_numpy(centroids), NOTES_NOVELTY[2]: {}}
    notes_val = notes_novelty(regression, centroids, val_statistics.values[val_statistics.has_notes])
    references, notes_top = {}, float(np.percentile(notes_val, 95))
    for name, scorer in scorers.items():
        names, scores = scorer.track_scores(val_embeddings, val_tracks)
        embedding_top = float(np.percentile(scores, 95))
        keys[NOTES_NOVELTY[2]][name] = embedding_top / notes_top if notes_top > 0 else 0.0
        mixed = notes_mixed({**regression, **keys}, name, names, scores, val_statistics)
        references[name] = float(np.percentile(mixed, 95))
        scales = without_notes.get(f"{AUDIO_ONLY}novelty_scale")
        if scales and name in scales and embedding_top > 0:
            scales[name] *= references[name] / embedding_top
    return keys, references[kind]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, type=Path)
    parser.add_argument("--features", required=True, type=Path, help="input: data/features.h5")
    parser.add_argument("--model", required=True, type=Path, help="output: models/model.pt")
    parser.add_argument("--live", required=True, type=Path, help="output: folder of training curves")
    args = parser.parse_args(argv)
    return run_stage("train", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())

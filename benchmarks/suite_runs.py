"""Reading back what a composer_quality.py run left: its run folders, their features tables and their models' outputs.

Used by the scripts that re-score a suite's models without training (seed_ensemble.py, track_pooling.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from musicid.h5 import read_strings
from musicid.params import read_params as read_params_file
from musicid.training import (AUDIO_ONLY, audio_only_stored, class_probabilities, load_checkpoint, normalise,
                              pick_device, read_symbolic_input, to_numpy)

TABLE_SECTIONS = ("clip", "split", "features")  # the params a features table was made from


def stop(message: str) -> SystemExit:
    """The exit of the script that runs (seed_ensemble, track_pooling), with its name before the message."""
    return SystemExit(f"{Path(sys.argv[0]).stem}: {message}")


def read_params(folder: Path) -> dict:
    return read_params_file(folder / "params.yaml")


def without_seed(params: dict) -> dict:
    """What the runs of one configuration share: a run's params without train.seed and split.fold, and without
    the params at their off value (as composer_quality keys its runs: one made before such a param existed
    is the same run)."""
    from composer_quality import NEUTRAL_EVALUATE, NEUTRAL_FEATURES, NEUTRAL_SPLIT, NEUTRAL_TRAIN, without_neutral

    params = json.loads(json.dumps(params))
    del params["train"]["seed"], params["split"]["fold"]
    params["train"] = without_neutral(params["train"], NEUTRAL_TRAIN)
    params["features"] = without_neutral(params["features"], NEUTRAL_FEATURES)
    params["split"] = without_neutral(params["split"], NEUTRAL_SPLIT)
    params["evaluate"] = without_neutral(params["evaluate"], NEUTRAL_EVALUATE)
    return params


def find_runs(task_dir: Path, config: str, fold: int, seeds: list[int]) -> dict[int, Path]:
    """seed -> the run folder of ``config``'s fold trained with that ``train.seed`` (each must exist, and all
    must have the same params but the seed: runs of other settings kept under the name are not mixed in)."""
    if len(set(seeds)) != len(seeds):
        raise stop(f"a seed is given twice: {seeds}")
    runs: dict[int, Path] = {}
    for folder in sorted((task_dir / config / f"fold{fold}").glob("*/")):
        if (folder / "model.pt").is_file() and (folder / "params.yaml").is_file():
            seed = read_params(folder)["train"]["seed"]
            if seed in seeds:
                if seed in runs:
                    raise stop(f"{folder} and {runs[seed]}: two runs of seed {seed}; "
                                     "give --config a name that holds one configuration")
                runs[seed] = folder
    missing = [seed for seed in seeds if seed not in runs]
    if missing:
        raise stop(f"{task_dir / config / f'fold{fold}'}: no run of train.seed {missing}; "
                         "run composer_quality.py with --seeds first")
    first, *others = sorted(runs.items())
    for seed, folder in others:
        if without_seed(read_params(folder)) != without_seed(read_params(first[1])):
            raise stop(f"{folder} (seed {seed}) and {first[1]} (seed {first[0]}) were run with other params "
                             "than each other's seed: give --config a name that holds one configuration")
    return runs


def fold_count(task_dir: Path, config: str, given: int | None = None) -> int:
    """How many folds ``config``'s runs of a task have: their split.folds (1 for runs of a single split).
    ``given`` (a script's --folds), when not None, must agree."""
    for folder in sorted((task_dir / config / "fold0").glob("*/")):
        if (folder / "params.yaml").is_file():
            found = max(1, int(read_params(folder)["split"]["folds"]))
            if given is not None and given != found:
                raise stop(f"--folds {given}: the runs of {config} in {task_dir} have "
                                 f"{found} fold{'s' * (found != 1)}")
            return found
    raise stop(f"{task_dir / config / 'fold0'}: no run there; run composer_quality.py first "
                     "(or check --out, --tasks and --config)")


def find_table(task_dir: Path, run: Path) -> Path:
    """The features table a run was trained on: the one made from the same clip, split and features params."""
    from composer_quality import NEUTRAL_FEATURES, NEUTRAL_SPLIT, TRAINING_CODE, run_key, without_neutral

    def table_params(params: dict) -> dict:  # as composer_quality keys a table: params at their off value left out
        return {key: without_neutral(params[key], {"split": NEUTRAL_SPLIT, "features": NEUTRAL_FEATURES}.get(key, {}))
                for key in TABLE_SECTIONS}

    params = read_params(run)
    wanted = table_params(params)
    matches = [folder / "features.h5" for folder in sorted(task_dir.glob("features-*/"))
               if (folder / "features.h5").is_file() and table_params(read_params(folder)) == wanted]
    if len(matches) > 1:  # the same params over other audio (the task rendered again): the run's key says which
        matches = [table for table in matches  # (a run of any training code: its key says which table)
                   if run.name in {run_key(table, params, code) for code in range(1, TRAINING_CODE + 1)}]
    if len(matches) != 1:
        raise stop(f"{run}: {len(matches)} features tables match its params (want 1)")
    return matches[0]


class SplitOutputs(NamedTuple):
    probabilities: np.ndarray  # float32 [N, C]
    embeddings: np.ndarray  # float32 [N, D]
    labels: np.ndarray  # int64 [N]
    tracks: np.ndarray  # str [N]


def split_outputs(model_path: Path, table_path: Path, split: str = "test") -> SplitOutputs:
    """The model's clip probabilities and embeddings for the clips of ``split`` of the known classes, as evaluate
    computes them."""
    device = pick_device()
    model, checkpoint = load_checkpoint(model_path, device)
    mean, std = to_numpy(checkpoint["band_mean"]), to_numpy(checkpoint["band_std"])
    with h5py.File(table_path, "r") as table:
        rows = np.nonzero((read_strings(table["split"]) == split) & table["known"][:].astype(bool))[0]
        features = normalise(table["features"][rows], mean, std)
        symbolic = read_symbolic_input(table, rows, to_numpy(checkpoint["symbolic_mean"]),
                                       to_numpy(checkpoint["symbolic_std"])) if model.config.symbolic_dim else None
        labels = table["label"][rows].astype(np.int64)
        tracks = read_strings(table["track"])[rows]
    probabilities, embeddings = class_probabilities(model, features, to_numpy(checkpoint["centroids"]), 64, device,
                                                    symbolic)
    return SplitOutputs(probabilities, embeddings, labels, tracks)


def written_macro_f1(run: Path, level: str) -> float:
    """The test macro-F1 at ``level`` (clip or track) that evaluate wrote for a run."""
    return json.loads((run / "metrics.json").read_text())["test"][level]["macro_f1"]


class ClipViews(NamedTuple):
    with_notes: np.ndarray  # float32 [N, C]: the model's probabilities with each clip's notes
    alone: np.ndarray  # float32 [N, C]: with the notes hidden (rows without notes: the same as with_notes)
    has_notes: np.ndarray  # bool [N]
    labels: np.ndarray  # int64 [N]
    tracks: np.ndarray  # str [N]
    train_labels: np.ndarray  # int64: the training clips' labels (the shares of a model from before track_prior)


def clip_views(model_path: Path, table_path: Path, split: str = "test") -> ClipViews:
    """The clips of ``split`` of the known classes, scored with and without their notes, as evaluate scores them
    (an audio-only model: the same answers twice, no clip with notes)."""
    device = pick_device()
    model, checkpoint = load_checkpoint(model_path, device)
    centroids = to_numpy(checkpoint["centroids"])
    audio_centroids = to_numpy(checkpoint[f"{AUDIO_ONLY}centroids"]) \
        if model.config.symbolic_dim and audio_only_stored(checkpoint) and not model.uses_classifier else centroids
    with h5py.File(table_path, "r") as table:
        splits, known = read_strings(table["split"]), table["known"][:].astype(bool)
        rows = np.nonzero((splits == split) & known)[0]
        features = normalise(table["features"][rows], to_numpy(checkpoint["band_mean"]),
                             to_numpy(checkpoint["band_std"]))
        symbolic = read_symbolic_input(table, rows, to_numpy(checkpoint["symbolic_mean"]),
                                       to_numpy(checkpoint["symbolic_std"])) if model.config.symbolic_dim else None
        labels = table["label"][rows].astype(np.int64)
        tracks = read_strings(table["track"])[rows]
        train_labels = table["label"][np.nonzero((splits == "train") & known)[0]].astype(np.int64)
    with_notes = class_probabilities(model, features, centroids, 64, device, symbolic)[0]
    has_notes = symbolic[:, -1] > 0 if symbolic is not None else np.zeros(len(rows), bool)
    if audio_centroids is not centroids:  # a triplet model names a track without notes by the notes-less centroids
        noted = set(tracks[has_notes])
        no_notes = np.array([track not in noted for track in tracks], dtype=bool)
        with_notes[no_notes] = class_probabilities(model, features[no_notes], audio_centroids, 64, device)[0]
    alone = with_notes.copy()
    alone[has_notes] = class_probabilities(model, features[has_notes], audio_centroids, 64, device)[0]
    return ClipViews(with_notes, alone, has_notes, labels, tracks, train_labels)

"""Ask a trained model about new files: who wrote (or plays) them, and how new they look.

Each file goes through the same render, clip and featurize steps as the
training data, with the params stored in the checkpoint, so a prediction
needs nothing but the checkpoint and the files.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from musicid.dataset import is_hidden, is_musicxml
from musicid.features import n_bands
from musicid.filetypes import ACCEPTED_EXTENSIONS, SCORE_EXTENSIONS
from musicid.io import unreadable_reason
from musicid.metrics import clip_answers, pool, prior_corrected
from musicid.model import symbolic_input
from musicid.novelty import MIN_THRESHOLD_TRACKS
from musicid.params import parse_section
from musicid.prepare import OUT_OF_MEMORY, FileReader, Prediction, Prepared, prepare_all
from musicid.symbolic import sounding, symbolic_dim
from musicid.piece import PIECE_DIM
from musicid.track_model import checkpoint_regression, fuse_notes, statistic_columns, track_statistics, with_piece
from musicid.training import (AUDIO_ONLY, CheckpointError, audio_only_stored, checkpoint_novelty,
                              checkpoint_threshold, checkpoint_track_prior, class_probabilities, load_checkpoint,
                              normalise, pick_device, to_numpy, track_novelty)

EMPTY_FOLDER = "no_files: no MIDI or audio file of a kind musicid reads in this folder"


def files_under(folder: Path) -> tuple[list[Path], list[tuple[Path, str]], Counter]:
    """(the MIDI and audio files inside ``folder`` and its sub-folders, sorted, hidden ones left out; the
    folders that could not be listed, with why; how many other files there are by extension).

    Linked folders are followed, as a user browsing the folder sees them, each real folder once (a link
    back up the tree is not a loop). Broken links and special files (a FIFO) named like a MIDI or audio file
    are kept (see :func:`collect_inputs`).
    """
    files, seen, unlisted, others = [], set(), [], Counter()

    def unreadable(error: OSError) -> None:
        unlisted.append((Path(error.filename), unreadable_reason(error)))

    for root, folders, names in os.walk(folder, followlinks=True, onerror=unreadable):
        real = os.path.realpath(root)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = sorted(name for name in folders if not is_hidden(name))  # visited in a fixed order
        for name in names:
            # Every name of a file, a broken link or a FIFO named like music: predict says what each one is.
            if is_hidden(name):
                continue
            path, suffix = Path(root) / name, Path(name).suffix.lower()
            # A .xml file beside music is most often not a score (iTunes Library.xml): a regular one is read
            # for a MusicXML score first (a FIFO or a broken link so named is kept, to be named as such).
            if suffix in ACCEPTED_EXTENSIONS + SCORE_EXTENSIONS and (
                    suffix != ".xml" or not os.path.isfile(path) or is_musicxml(path)):
                files.append(path)
            else:
                others[suffix or "no extension"] += 1
    return sorted(files), sorted(unlisted), others


def collect_inputs(paths: list[str | Path]) -> list[tuple[Path, str | None]]:
    """(path, None) for each file given directly and each MIDI or audio file inside a given folder
    (sorted; hidden files and folders left out), and (folder, reason) for a folder that holds none, so
    that it is reported, not skipped. A broken link named like a MIDI or audio file is kept: predict says
    what it is, where leaving it out would hide a file the user meant to ask about. A file reached twice is
    listed once; an empty path is reported as missing (Path("") would be the current folder)."""
    found: list[tuple[Path, str | None]] = []
    for given in paths:
        if str(given) == "":  # Path("") is the current folder: a shell variable left unset, not a wish to score it
            found.append((Path(""), "missing: an empty path (an unset variable?)"))
            continue
        path = Path(given)
        try:
            is_dir = path.is_dir()
            missing = not is_dir and not path.exists() and not path.is_symlink()
        except OSError as error:  # under a folder that cannot be entered
            found.append((path, unreadable_reason(error)))
            continue
        if str(given).endswith(("/", os.sep)) and missing:
            found.append((path, "missing: no such folder"))  # "recordings/": a folder was meant
            continue
        if is_dir:
            files, unlisted, others = files_under(path)
            found.extend((file, None) for file in files)
            found.extend(unlisted)  # a folder without read permission: said, not skipped
            if not files and not unlisted:
                kinds = ", ".join(f"{extension} {count}" for extension, count in sorted(others.items()))
                found.append((path, EMPTY_FOLDER + (f" ({sum(others.values())} of other types: {kinds})"
                                                    if others else "")))
        else:
            found.append((path, None))
    # A file named twice (by itself and in its folder, or twice over) is scored once, where it first came.
    seen: set[str] = set()
    unique = []
    for path, reason in found:
        key = os.path.abspath(path) if reason is None else None
        if key is None or key not in seen:
            unique.append((path, reason))
            seen.add(key)
    return unique


# Params a checkpoint may lack, with the value that reproduces how it was made.
ABSENT_KEYS = {
    "render": {"interpolation": "4th", "augment": {"copies": 0, "transpose": 0, "tempo": 0.0, "programs": [], "soundfonts": [], "seed": 0}},
    "clip": {"find_copies": True},  # never read by predict
    "features": {"symbolic": False, "symbolic_key": "absolute", "symbolic_texture": False, "symbolic_roll": False,
                 "symbolic_piece": False, "symbolic_onsets": False,
                 "bins_per_octave": 12,
                 "n_bins": 84},
}


def parts_problem(checkpoint: dict, model, features) -> str | None:
    """What in a checkpoint disagrees with the rest (its features params, the model, the label names, the
    normalisation and centroids), or None."""
    config = model.config
    bands = n_bands(features)
    if bands != config.n_bands or len(checkpoint["band_mean"]) != config.n_bands:
        return (f"the features params ({features.kind}) give {bands} bands, the model reads {config.n_bands}, the "
                f"normalisation has {len(checkpoint['band_mean'])}")
    # A model that reads notes must read as many numbers as the features params give a clip (an audio-only
    # model may come from a table with symbolic features: it ignores them).
    if config.symbolic_dim:
        width = symbolic_dim(features.symbolic_texture, features.symbolic_roll, features.symbolic_onsets) \
            if features.symbolic else 0
        stored = len(checkpoint.get("symbolic_mean", ()))
        if not width == stored == config.symbolic_dim:
            return (f"the features params give {width} symbolic numbers a clip, the model reads "
                    f"{config.symbolic_dim}, the normalisation has {stored}")
    regression = checkpoint_regression(checkpoint)
    if regression is not None and features.symbolic:
        # train.track_notes' regression reads the mean and sd of the clips' statistics (not the roll) and, with
        # features.symbolic_piece, the whole piece's.
        columns = symbolic_dim(features.symbolic_texture, False)
        piece = PIECE_DIM if features.symbolic_piece else 0
        if len(regression["track_notes_mean"]) != 2 * columns + piece:
            return (f"the regression on the notes reads {len(regression['track_notes_mean'])} numbers a track, the "
                    f"features params give {2 * columns + piece} ({columns} statistics' mean and sd"
                    f"{f', {piece} of the whole piece' if piece else ''})")
    names, centroids = len(checkpoint["label_names"]), len(checkpoint["centroids"])
    if not names == centroids == config.n_classes:
        return f"{names} label names, {centroids} class centroids, a model of {config.n_classes} classes"
    return None


class Predictor(FileReader):
    """Loads a checkpoint once and scores files with it."""

    def __init__(self, checkpoint_path: str | Path):
        self.device = pick_device()
        self.model, self.checkpoint = load_checkpoint(checkpoint_path, self.device)
        params = self.checkpoint["params"]
        if not params.get("render"):
            raise ValueError(f"{checkpoint_path} holds no render params; retrain it with this version")
        # The checkpoint's params pass the same checks as params.yaml does for the stages. Keys that a
        # checkpoint does not record (made before the key existed; a table featurized without symbolic
        # features leaves that key out to keep its bytes) take the value that means what it did then.
        missing = [name for name in ("clip", "features") if not isinstance(params.get(name), dict)]
        if missing:
            raise CheckpointError(f"{checkpoint_path} holds no {' or '.join(missing)} params, so its files cannot "
                                  "be clipped and featurized as its data was; retrain it with `dvc repro train`")
        stored = {name: {**ABSENT_KEYS.get(name, {}), **params[name]} for name in ("render", "clip", "features")}
        if "symbolic" not in params["features"]:
            # featurize leaves features.symbolic out of a table no clip of which has notes (an audio
            # collection), and the model reads none: the other symbolic keys then say nothing either.
            stored["features"].update({key: value for key, value in ABSENT_KEYS["features"].items()
                                       if key.startswith("symbolic")})
        render, clip, features = (parse_section(stored[name], name, source=f"{checkpoint_path} (params)",
                                                stored=True)
                                  for name in ("render", "clip", "features"))
        problem = parts_problem(self.checkpoint, self.model, features)
        if problem:
            raise CheckpointError(f"{checkpoint_path}: its parts do not fit together ({problem}): it was not "
                                  "written whole by the train stage; retrain it with `dvc repro train`")
        if checkpoint_regression(self.checkpoint) is None:  # the whole piece is read for the regression alone
            features = features.model_copy(update={"symbolic_piece": False})
        # A model with a symbolic branch gets the symbolic features of a MIDI file's clips; an audio
        # file's clips (or those of a MIDI file whose notes cannot be read) go through the audio branch alone.
        super().__init__(render, clip, features, symbolic=bool(self.model.config.symbolic_dim))
        self.label_names = list(self.checkpoint["label_names"])
        self.centroids = to_numpy(self.checkpoint["centroids"])
        self.band_mean = to_numpy(self.checkpoint["band_mean"])
        self.band_std = to_numpy(self.checkpoint["band_std"])
        checkpoint_novelty(self.checkpoint)  # a checkpoint without novelty statistics: ValueError
        # A symbolic model embeds the clips of a file without notes elsewhere: they are named (by a triplet
        # model) and scored against the training clips embedded without theirs (training.track_novelty; a
        # checkpoint written before train stored those uses the others as is).
        self.audio_centroids = to_numpy(self.checkpoint[f"{AUDIO_ONLY}centroids"]) \
            if audio_only_stored(self.checkpoint) else self.centroids
        if self.uses_symbolic:
            self.symbolic_mean = to_numpy(self.checkpoint["symbolic_mean"])
            self.symbolic_std = to_numpy(self.checkpoint["symbolic_std"])
        # train.track_notes' regression on a MIDI file's note statistics (None: trained without it).
        self.regression = checkpoint_regression(self.checkpoint)
        # train.track_prior: each clip's probabilities are divided by the training clips' class shares, then pooled.
        self.prior = checkpoint_track_prior(self.checkpoint, checkpoint_path)
        # Files whose novelty is above this (the 95th percentile of the validation
        # tracks' scores) are flagged; NaN when the checkpoint holds none.
        self.novelty_reference = checkpoint_threshold(self.checkpoint)
        # How many validation tracks the threshold rests on (None: a checkpoint that did not record it).
        tracks = self.checkpoint.get("novelty_reference_tracks")
        self.novelty_reference_tracks = None if tracks is None else int(tracks)

    def reader_args(self) -> tuple:
        """A plain :class:`FileReader`'s: a worker reads files, it needs no model."""
        return FileReader, super().reader_args()[1]

    def threshold_warning(self) -> str | None:
        """Why the novelty flag means little with this checkpoint, or None."""
        if not np.isfinite(self.novelty_reference):
            return "the model holds no novelty threshold, so no file is flagged; retrain it with `dvc repro train`"
        if self.novelty_reference_tracks is None:
            return ("the model does not record how many validation tracks its novelty threshold rests on; "
                    "retrain it with `dvc repro train`")
        if self.novelty_reference_tracks < MIN_THRESHOLD_TRACKS:
            return (f"the novelty threshold rests on {self.novelty_reference_tracks} validation tracks "
                    f"(fewer than {MIN_THRESHOLD_TRACKS}), so the flag means little")
        return None

    def symbolic_of(self, path: Path, offsets_s: np.ndarray, clip_samples: int) -> np.ndarray | None:
        """The symbolic branch's input float32 [k, D + 1] of a file's clips, None for an audio file or a
        MIDI file whose notes cannot be read or sound in none of its clips (the audio branch alone then
        decides), as featurize does."""
        features = self.notes_of(path, offsets_s, clip_samples)
        return None if features is None else self.symbolic_input(features)

    def symbolic_input(self, features: np.ndarray) -> np.ndarray:
        """The symbolic branch's input float32 [k, D + 1] of clips' symbolic features [k, D]; a clip in
        which no note sounds gets none, as featurize marks it."""
        return symbolic_input(features, sounding(features), self.symbolic_mean, self.symbolic_std)

    def predict(self, path: str | Path, top: int = 3, clip_audio: float | None = None) -> Prediction:
        """Score one file; what makes it unusable is its Prediction's ``error``, and the next file goes on.
        With ``clip_audio`` (0..1) each clip's own answer too (:meth:`score`)."""
        return self.score(self.prepare(Path(path)), top, clip_audio)

    def predict_all(self, inputs: list[tuple[Path, str | None]], top: int = 3, jobs: int = 1,
                    clip_audio: float | None = None, scheduler: str | None = None):
        """:meth:`predict` of each (path, None) of :func:`collect_inputs`, in order; a (path, reason) is that
        path's error. With ``jobs`` other than 1, files are rendered, clipped and featurized by that many worker
        processes (0: $MUSICID_JOBS, else one per core) while this one runs the model; with ``scheduler``, by
        that Dask cluster's workers. Ended early (a Ctrl-C while this process scores a file, or this generator
        closed), it ends the local workers at once; a cluster's workers finish the files they hold, and start no
        other."""
        prepared_files = prepare_all(self, inputs, jobs, scheduler)
        try:
            for prepared in prepared_files:
                yield self.score(prepared, top, clip_audio)
        finally:  # now, not when a traceback lets go of it: closed early, the pool kills its workers
            prepared_files.close()

    def score(self, prepared: Prepared, top: int = 3, clip_audio: float | None = None) -> Prediction:
        """The model's answer for a prepared file (its error, if it had one).

        With ``clip_audio`` (0..1, ``predict --clips``) also each clip's own answer, its ``top`` labels, as
        evaluate names a clip at ``evaluate.clip_audio`` = ``clip_audio``: a MIDI clip's probabilities with its
        notes mixed with its audio alone's (:func:`musicid.metrics.clip_answers`), an audio clip's as they are;
        no division by the training's class shares (a track's pooling only).
        """
        if prepared.prediction.error:
            return prepared.prediction
        try:
            return self._score(prepared, top, clip_audio)
        except MemoryError:
            return Prediction(prepared.prediction.path, error=OUT_OF_MEMORY)

    def _score(self, prepared: Prepared, top: int, clip_audio: float | None = None) -> Prediction:
        prediction, notes = replace(prepared.prediction), prepared.notes
        features = normalise(prepared.features, self.band_mean, self.band_std)
        # The model's notes-less embedding: an audio-only model's every file, a symbolic model's audio files.
        without_notes = notes is None and self.uses_symbolic
        probabilities, embeddings = class_probabilities(
            self.model, features, self.audio_centroids if without_notes else self.centroids, 64, self.device,
            None if notes is None else self.symbolic_input(notes))
        one_track = np.zeros(len(probabilities), dtype=int)
        mean = pool(prior_corrected(probabilities, *self.prior), one_track)[1]  # as evaluate names a track
        statistics = None  # the notes' statistics of a MIDI file, for the regression and train.novelty_notes
        if notes is not None and self.regression is not None:  # train.track_notes, as evaluate names a track
            piece = self.features.symbolic_piece  # its width agrees (parts_problem)
            columns = statistic_columns(self.regression, piece)
            statistics = track_statistics(notes[:, :columns], sounding(notes), one_track)
            if piece:  # features.symbolic_piece: the whole piece's statistics too (none: CNN alone, as evaluate)
                pieces = np.zeros((0, PIECE_DIM)) if prepared.piece is None else prepared.piece[None]
                statistics = with_piece(statistics, one_track[:len(pieces)], pieces)
            mean = fuse_notes(mean, self.regression, statistics)
        mean = mean[0]
        order = np.argsort(-mean, kind="stable")[:top]
        prediction.labels = [(self.label_names[i], float(mean[i])) for i in order]
        _, scores = track_novelty(self.checkpoint, None, embeddings, one_track, np.full(len(embeddings), without_notes),
                                  statistics)
        prediction.novelty = float(scores[0])
        prediction.flagged = bool(np.isfinite(self.novelty_reference) and prediction.novelty > self.novelty_reference)
        if clip_audio is not None:
            # the clips whose notes the model read (evaluate's: a clip in which no note sounds is read as audio)
            has_notes = sounding(notes) if notes is not None else np.zeros(len(probabilities), dtype=bool)
            alone = class_probabilities(self.model, features, self.audio_centroids, 64, self.device)[0] \
                if has_notes.any() and clip_audio > 0 else probabilities
            answers = clip_answers(probabilities, alone, has_notes, clip_audio)
            # With several SoundFonts a MIDI file's clips restart at 0:00 in each render: name the render's.
            soundfonts = self.render_params.soundfonts
            shown = [Path(soundfont).name for soundfont in soundfonts]
            shown = shown if len(set(shown)) == len(shown) else soundfonts  # two of one name: their paths
            names = [None] * len(answers) if prepared.renders is None or len(soundfonts) < 2 \
                else [shown[index] for index in prepared.renders]
            prediction.clip_labels = [
                (float(start), name,
                 [(self.label_names[i], float(row[i])) for i in np.argsort(-row, kind="stable")[:top]])
                for start, name, row in zip(prepared.offsets, names, answers)]
        return prediction


def format_threshold(reference: float, tracks: int | None) -> str:
    """The line that says which novelty score gets a file flagged."""
    if not np.isfinite(reference):
        return "novelty threshold: none stored in the model"
    basis = "" if tracks is None else f" of {tracks}"
    return (f"novelty threshold {reference:.3f} (95th percentile{basis} validation tracks' scores): "
            "a file above it is flagged as unlike every known class")


# A newline or other control character in a file name would break the one line per file.
CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(32), 127)}


# An error longer than this, printed again for another file, is shortened to its kind (format_prediction).
REPEATED_ERROR_CHARS = 100


def recovered_text(prediction: Prediction) -> str:
    """``; recovered: <repair>`` for each thing render repaired to use the file ("" for a whole one)."""
    return "".join(f"; recovered: {repair}" for repair in prediction.repaired)


def format_prediction(prediction: Prediction, shown: set[str] | None = None) -> str:
    """One line per file for people.  ``shown`` collects the errors already printed whole: a long one that
    is the same for every file (no SoundFont for a folder of MIDI files) is then its kind and "as above"."""
    path = prediction.path.translate(CONTROL_ESCAPES)
    # A file repaired and still not scored (cut short, then too short) says both.
    repaired = recovered_text(prediction)
    if prediction.error:
        error = prediction.error
        if shown is not None and len(error) > REPEATED_ERROR_CHARS:
            if error in shown:
                error = f"{error.split(':', 1)[0]}: as above"
            shown.add(prediction.error)
        return f"{path}: cannot score ({error}){repaired}"
    labels = ", ".join(f"{label} {probability:.2f}" for label, probability in prediction.labels)
    # Labels may be composers, performers or genres: the flag names none of them.
    flag = "; flagged: unlike every known class" if prediction.flagged else ""
    # A MIDI file is read by its notes and its audio; say when its notes were not read, and why.
    unread = f"; notes not read ({prediction.notes_unread}): its audio alone" if prediction.notes_unread else ""
    clips = f"{prediction.clips} clip{'s' if prediction.clips != 1 else ''}"
    line = f"{path}: {labels}; novelty {prediction.novelty:.3f}{flag}{repaired}{unread} ({clips})"
    # predict --clips: one more line per clip, where it starts (minutes:seconds), with several SoundFonts the
    # one its render was made with, and its own answer.
    return line + "".join(f"\n  {minutes_seconds(start)}  " + (f"{soundfont}  " if soundfont else "")
                          + ", ".join(f"{label} {p:.2f}" for label, p in answer)
                          for start, soundfont, answer in prediction.clip_labels or ())


REPAIRS_SEPARATOR = " | "  # between a file's repairs in one CSV cell


def csv_header(label_names: list[str]) -> list[str]:
    """``predict --csv``'s columns: a file's row, then one per clip (with ``--clips``), every class's
    probability in the model's order, as evaluate's ``metrics/predictions.csv`` gives them; then what the
    text output says beside the answer (``--json``'s keys): whether the notes were read, why not, and what
    render repaired to use the file."""
    return ["path", "clip_start_s", "soundfont", "predicted", *(f"p_{name}" for name in label_names), "novelty",
            "flagged", "clips", "error", "symbolic", "notes_unread", "repaired"]


def csv_rows(prediction: Prediction, label_names: list[str]) -> list[list[str]]:
    """A file's rows under :func:`csv_header` (its ``labels`` and ``clip_labels`` must hold every class).
    A clip's row leaves the file's columns empty (novelty, flagged, clips and the three after error); a file
    that could not be scored has its reason and what render repaired (a file cut short, then too short),
    nothing else.  Several repairs are joined by REPAIRS_SEPARATOR (a repair's own words hold ``; ``)."""
    def probabilities(labels: list[tuple[str, float]]) -> list[str]:
        if {label for label, _ in labels} != set(label_names):
            raise ValueError(f"{prediction.path}: a CSV row needs every class's probability")
        named = dict(labels)
        return [labels[0][0], *(f"{named[name]:.6f}" for name in label_names)]

    repaired = REPAIRS_SEPARATOR.join(prediction.repaired)
    if prediction.error:
        return [[prediction.path, "", "", "", *("" for _ in label_names), "", "", "", prediction.error, "", "",
                 repaired]]
    rows = [[prediction.path, "", "", *probabilities(prediction.labels), f"{prediction.novelty:.6f}",
             str(prediction.flagged).lower(), str(prediction.clips), "", str(prediction.symbolic).lower(),
             prediction.notes_unread or "", repaired]]
    return rows + [[prediction.path, f"{start:.3f}", soundfont or "", *probabilities(labels), "", "", "", "", "",
                    "", ""]
                   for start, soundfont, labels in prediction.clip_labels or ()]


def minutes_seconds(seconds: float) -> str:
    """``m:ss.s`` of a clip's start, rounded to a tenth first (119.96 s is 2:00.0, not 1:60.0)."""
    minutes, rest = divmod(round(seconds * 10), 600)
    return f"{minutes}:{rest / 10:04.1f}"

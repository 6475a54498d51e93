"""Typed, validated params: one pydantic model per section of ``params.yaml``.

Each stage loads only its own section with :func:`load_section`; ``predict``
checks the params stored in a checkpoint with :func:`parse_section`, and the
tests build sections the same way.  The models are strict (no string "3" for
an int, no ``true`` for a number), forbid unknown keys, refuse NaN and
infinity, and have no defaults: ``params.yaml`` is the one place a default is
written.  Every problem stops the stage at once with one line naming the key,
e.g. ``params.yaml: render.sample_rate must be an integer, got 'fast'``.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from musicid.io import safe_name


class ParamsError(ValueError):
    """A params file or one of its values is invalid; the message names the key."""


class KeyProblem(ValueError):
    """Raised inside a model's checks: ``key`` is the param the message is about."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
        self.message = message


class Section(BaseModel):
    """Base of every section: strict types, no unknown keys, finite numbers, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


def _no_duplicates(key: str, values: list) -> None:
    if len(set(values)) != len(values):
        raise KeyProblem(key, f"has duplicates: {values}")


class LabelTableParams(Section):
    """``dataset.label_table``: each file's label read from a table of the collection (a CSV with a column of
    paths and one of labels, as MAESTRO's) instead of from the folder it sits in."""

    file: str | None  # the table: a path inside the collection (or on disk); null: labels are folder names
    path_column: str = Field(min_length=1)  # each row's file, relative to the table's folder
    label_column: str = Field(min_length=1)  # its label, as a label folder's name would be
    group_column: str | None  # rows of one value are one work for split.group folder; null: the path's folders
    split_column: str | None  # each file's split, the collection's own (train, validation, test); null: split.*



class DatasetParams(Section):
    source: Literal["music21", "url", "path"]  # offline corpus, an archive, or a local folder
    classes: list[str]  # labels to keep; for url and path sources, [] keeps every label found
    max_per_class: int = Field(ge=0)  # cap of pieces per class (0: no cap)
    seed: int  # picks which pieces are kept when a class has more than the cap
    url: str | None  # source "url": http(s):// or file:// URL of a .zip, .tar, .tar.gz or .tgz
    sha256: str | None  # source "url": the archive's SHA-256; null fetches and prints it
    allow_unverified: bool  # source "url": use an archive without a pinned sha256
    path: str | None  # source "path": a local folder (relative to params.yaml's folder)
    labels: dict[str, str]  # folder name (or label_table label) -> label, to merge or rename classes
    unlabeled: str | None  # folder name of files with no label, kept apart for prediction
    label_table: LabelTableParams  # url and path sources: labels from a table instead of folder names
    max_bytes: int = Field(gt=0)  # cap on the bytes an archive may expand to
    max_files: int = Field(gt=0)  # cap on the number of files in an archive
    timeout_s: float = Field(gt=0)  # wall-clock limit on converting one score (the corpus, a collection's scores)
    program: int | None = Field(ge=0, le=127)  # source "music21": every melodic part on this General MIDI program

    @field_validator("labels", mode="before")
    @classmethod
    def _empty_labels(cls, value: Any) -> Any:
        return {} if value is None else value  # `labels:` with nothing after it in YAML

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        from musicid.io import RESERVED_LABELS, safe_name

        for folder, label in value.items():
            if label in RESERVED_LABELS:
                raise KeyProblem(f"labels[{folder!r}]", f"is a name the pipeline keeps for its own files in data/raw "
                                                        f"and data/audio ({', '.join(sorted(RESERVED_LABELS))}), "
                                                        f"got {label!r}")
            # The label written is the label used: one that would be changed to fit a file name is refused
            # (and one of nothing but dots and underscores, which safe_name gives for a name with no letter).
            if label != safe_name(label) or not label.strip("._"):
                suggestion = f" (e.g. {safe_name(label)!r})" if label.strip("._ ") else ""
                raise KeyProblem(f"labels[{folder!r}]", f"must be a label as the pipeline writes one: letters, "
                                                        f"digits and .-_, neither starting nor ending with . or _, "
                                                        f"at most 200 bytes{suggestion}, got {label!r}")
        return value

    @model_validator(mode="after")
    def _check(self) -> DatasetParams:
        if self.source == "music21" and not self.classes:
            raise KeyProblem("classes", "must name at least one composer of the music21 corpus")
        if self.source == "url":
            if not self.url:
                raise KeyProblem("url", "must be set when dataset.source is url")
            scheme = self.url.split("://", 1)[0].lower() if "://" in self.url else ""
            if scheme not in ("http", "https", "file"):
                raise KeyProblem("url", f"must start with http://, https:// or file://, got {self.url!r}")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256):
            raise KeyProblem("sha256", f"must be 64 hexadecimal digits, got {self.sha256!r}")
        if self.source == "path" and not self.path:
            raise KeyProblem("path", "must be set when dataset.source is path")
        table = self.label_table
        if table.file is not None and not table.file.strip():
            raise KeyProblem("label_table.file", "must name the table (a CSV file), or be null")
        if table.label_column == table.path_column:
            raise KeyProblem("label_table.label_column", f"must be another column than label_table.path_column, "
                                                         f"got {table.label_column!r}")
        if table.group_column is not None and table.group_column in (table.path_column, table.label_column):
            raise KeyProblem("label_table.group_column", f"must be another column than label_table.path_column "
                                                         f"and label_table.label_column, got {table.group_column!r}")
        if table.split_column is not None and table.split_column in (table.path_column, table.label_column,
                                                                     table.group_column):
            raise KeyProblem("label_table.split_column", f"must be another column than the table's other columns, "
                                                         f"got {table.split_column!r}")
        if self.source == "music21" and self.label_table.file is not None:
            raise KeyProblem("label_table.file", "is for dataset.source url or path (the music21 corpus is "
                                                 "labelled by composer): set it to null")
        _no_duplicates("classes", self.classes)
        if self.unlabeled is not None and ("/" in self.unlabeled or not self.unlabeled.strip()):
            raise KeyProblem("unlabeled", f"must be a single folder name, got {self.unlabeled!r}")
        return self


class AugmentParams(Section):
    """``render.augment``: extra renders of each MIDI source, each with its own seeded transform."""

    copies: int = Field(ge=0, le=16)  # extra renders per MIDI source (0: off)
    transpose: int = Field(ge=0, le=12)  # semitones: each copy shifted by a uniform integer in [-transpose, transpose]
    tempo: float = Field(ge=0, lt=0.5)  # each copy's tempo scaled by a uniform factor in [1 - tempo, 1 + tempo]
    programs: list[int]  # General MIDI programs a copy's melodic parts may be put on ([]: the file's own)
    soundfonts: list[str]  # SoundFonts a copy may be rendered with ([]: render.soundfonts)
    seed: int


class RenderParams(Section):
    soundfonts: list[str] = Field(min_length=1)  # .sf2/.sf3 files; each MIDI file is rendered once per SoundFont
    sample_rate: int = Field(ge=8000, le=192000)  # Hz of the written WAV files
    channels: Literal[1, 2]  # 1 (mono mix) or 2 (stereo) in the written WAV files
    gain: float = Field(gt=0, le=10)  # FluidSynth master gain
    reverb: bool
    chorus: bool
    interpolation: Literal["none", "linear", "4th", "7th"]  # FluidSynth's sample interpolation
    program: int | None = Field(ge=0, le=127)  # force every melodic part to this General MIDI program
    max_seconds: float = Field(gt=0)  # a source longer than this is rejected as too_long
    timeout_s: float = Field(gt=0)  # wall-clock limit for reading and rendering one file
    trim_db: float = Field(lt=0)  # trailing audio quieter than this (dB below the peak) is trimmed
    min_rms: float = Field(ge=0)  # a render quieter than this (linear RMS) is rejected as silent
    augment: AugmentParams  # extra, transformed renders of MIDI sources, used for training tracks only

    @field_validator("channels", mode="before")
    @classmethod
    def _channels_int(cls, value: Any) -> Any:
        # A Literal compares by ==, so true and 1.0 would pass as 1
        if not isinstance(value, int) or isinstance(value, bool):
            raise KeyProblem("channels", f"must be 1 or 2, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check(self) -> RenderParams:
        _no_duplicates("soundfonts", self.soundfonts)
        bad = [program for program in self.augment.programs if not 0 <= program <= 127]
        if bad:
            raise KeyProblem("augment.programs", f"must be General MIDI programs 0 .. 127, got {bad[0]}")
        _no_duplicates("augment.programs", self.augment.programs)
        _no_duplicates("augment.soundfonts", self.augment.soundfonts)
        return self


class SplitParams(Section):
    val: float = Field(ge=0, lt=1)  # fraction of each class's tracks (outside the test fold) for validation
    test: float = Field(ge=0, lt=1)  # fraction of each class's tracks for test (unused when folds > 0)
    seed: int
    holdout_classes: list[str]  # classes whose every track goes to test, as unknown (open set)
    folds: int = Field(ge=0)  # k-fold cross-validation by track: k >= 2 folds, 0: one split by fractions
    fold: int = Field(ge=0)  # which fold is test, 0 .. folds - 1 (0 when folds is 0)
    # What is dealt: each track; each sub-folder of a label folder as one (folder); each folder a file sits in,
    # however deep below its label folder, as one (parent).
    group: Literal["track", "folder", "parent"]
    # The order a class's tracks are dealt in: one seeded shuffle of them all (an added track reorders every one),
    # or each track's own hash with the seed (stable: an added track moves at most three others of its class).
    order: Literal["shuffle", "stable"]

    @field_validator("holdout_classes")
    @classmethod
    def _as_labels(cls, names: list[str]) -> list[str]:
        """A class named as its folder reads (`Élan Drones`) is the label download gives it (`Élan_Drones`), as
        in dataset.classes."""
        labels = [safe_name(name) for name in names]
        for label in sorted({label for label in labels if labels.count(label) > 1}):
            spellings = sorted({name for name, other in zip(names, labels) if other == label})
            if len(spellings) > 1:  # two spellings of one label (the same spelling twice: _no_duplicates says so)
                raise KeyProblem("holdout_classes",
                                 f"names the class {label} twice: {' and '.join(map(repr, spellings))}")
        return labels

    @model_validator(mode="after")
    def _check(self) -> SplitParams:
        if self.val == 0:  # found here, not after clip and featurize have run
            raise KeyProblem("val", "must be > 0: train needs validation tracks (it scores each epoch on them and "
                                    "sets predict's novelty threshold from them), got 0")
        if self.folds == 0 and self.test == 0:
            raise KeyProblem("test", "must be > 0 when split.folds is 0: evaluate scores the test tracks (with "
                                     "split.folds >= 2 the test fold is the test split), got 0")
        if self.folds == 0 and self.val + self.test >= 1:
            raise KeyProblem("test", f"must leave tracks to train on: split.val + split.test must be < 1, got "
                                    f"{self.val} + {self.test}")
        if self.folds == 1:
            raise KeyProblem("folds", "must be 0 (one split by fractions) or at least 2, got 1")
        if self.folds == 0 and self.fold != 0:
            raise KeyProblem("fold", f"must be 0 when split.folds is 0 (no cross-validation), got {self.fold}")
        if self.folds and self.fold >= self.folds:
            raise KeyProblem("fold", f"must be < split.folds ({self.folds}), got {self.fold}")
        _no_duplicates("holdout_classes", self.holdout_classes)
        return self


MAX_OVERLAP = 8  # clips a moment of audio may be part of (clip.clip_seconds / clip.hop_seconds)


class ClipParams(Section):
    sample_rate: int = Field(ge=1000, le=192000)  # Hz of the clips (audio is resampled with soxr when it differs)
    clip_seconds: float = Field(ge=0.1)
    hop_seconds: float = Field(gt=0)  # distance between clip starts; < clip_seconds means overlap (at most 8x)
    normalize: Literal["none", "track", "peak", "rms"]  # loudness normalisation of the track, or of each clip
    target_db: float = Field(le=0)  # level (dBFS) of the track's sounding part, or each clip's peak or RMS
    min_rms: float = Field(ge=0)  # a 50 ms frame quieter than this (linear RMS) counts as silence
    max_silence: float = Field(ge=0, le=1)  # clips with a larger fraction of silent frames are skipped
    max_clips_per_track: int = Field(ge=0)  # 0: no cap; otherwise evenly spaced clips are kept
    max_clips_per_class: int = Field(ge=0)  # 0: no cap; otherwise shared out over the class's training tracks
    find_copies: bool  # copies of one recording among the audio sources left out before the split, one kept (musicid.copies)

    @model_validator(mode="after")
    def _check(self) -> ClipParams:
        # Each track's clips are cut at once: 100x overlap on an hour of music would be 90 GB.
        if self.hop_seconds < self.clip_seconds / MAX_OVERLAP:
            raise KeyProblem("hop_seconds", f"must be at least clip.clip_seconds / {MAX_OVERLAP} "
                                            f"({self.clip_seconds:g} / {MAX_OVERLAP} = "
                                            f"{self.clip_seconds / MAX_OVERLAP:g}: each moment in at most "
                                            f"{MAX_OVERLAP} clips), got {self.hop_seconds:g}: raise it, or "
                                            f"lower clip.clip_seconds")
        # The whole track is scaled to target_db before its silence is measured: at or below min_rms's level,
        # its every frame would count as silence, and the stage would stop blaming the silence params.
        if self.normalize == "track" and self.min_rms > 0 and self.target_db <= 20 * math.log10(self.min_rms):
            raise KeyProblem("target_db", f"must be above clip.min_rms's level ({20 * math.log10(self.min_rms):g} "
                                          f"dBFS) with clip.normalize track (each track is scaled to it before "
                                          f"silence is measured), got {self.target_db:g}")
        return self


class FeatureParams(Section):
    kind: Literal["logmel", "mfcc", "cqt", "chroma"]
    n_mels: int = Field(gt=0)
    n_fft: int = Field(gt=0)
    hop_length: int = Field(gt=0)
    fmin: float = Field(ge=0)
    fmax: float = Field(gt=0)  # Hz; must not exceed the clips' Nyquist frequency
    floor_db: float  # dB values are clipped below this (power_to_db with amin=1e-10)
    top_db: float | None = Field(gt=0)  # and below each clip's maximum minus this (librosa's top_db); null: off
    n_mfcc: int = Field(gt=0)  # kind "mfcc": coefficients kept (DCT-II, orthonormal, of the log-mel bands)
    batch_size: int = Field(gt=0)  # clips read, computed (shared among the threads) and written per step
    symbolic: bool  # also write each clip's symbolic features (musicid.symbolic) read from its MIDI source
    symbolic_key: Literal["absolute", "relative"]  # pitch classes from C, or from each source's estimated tonic
    symbolic_texture: bool  # with symbolic: also vertical intervals and duration and inter-onset histograms (musicid.symbolic)
    symbolic_roll: bool  # with symbolic: also an 88 x 32 piano roll of the clip's window (musicid.symbolic), read by a conv branch
    symbolic_piece: bool  # with symbolic: also each MIDI source's whole-piece statistics (musicid.piece), for train.track_notes
    symbolic_onsets: bool  # with symbolic_roll: also an onset plane beside the roll (where each note starts)
    bins_per_octave: int = Field(gt=0)  # kinds "cqt" and "chroma": constant-Q bins per octave, a multiple of 12
    n_bins: int = Field(gt=0)  # kinds "cqt" and "chroma": constant-Q bins from fmin up (84 at 12 per octave: 7 octaves)

    @property
    def bands(self) -> int:
        """Rows of each clip's feature matrix."""
        return {"logmel": self.n_mels, "mfcc": self.n_mfcc, "cqt": self.n_bins, "chroma": 12}[self.kind]

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> FeatureParams:
        if self.n_fft % 2:
            raise KeyProblem("n_fft", f"must be even (frames are centred on their sample), got {self.n_fft}")
        if self.kind in ("logmel", "mfcc") and self.n_mels > self.n_fft // 2 + 1:
            raise KeyProblem("n_mels", f"must be at most the {self.n_fft // 2 + 1} frequency bins of features.n_fft "
                                       f"{self.n_fft} (more mel bands than bins leaves bands empty), got {self.n_mels}")
        # (Not for the params a checkpoint stores: a model trained before this rule keeps working in predict.)
        if self.kind in ("logmel", "mfcc") and self.hop_length > self.n_fft and not _stored(info):
            raise KeyProblem("hop_length", f"must be at most features.n_fft ({self.n_fft}) for features.kind "
                                           f"{self.kind} (a longer hop skips the samples between windows), got "
                                           f"{self.hop_length}")
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise KeyProblem("n_mfcc", f"must be <= features.n_mels ({self.n_mels}) for features.kind mfcc, got "
                                       f"{self.n_mfcc}")
        if self.symbolic_onsets and not self.symbolic_roll:
            raise KeyProblem("symbolic_onsets", "must be false unless features.symbolic_roll is true (it is a second "
                                                "plane of the piano roll)")
        if self.fmin >= self.fmax:
            raise KeyProblem("fmax", f"must be greater than features.fmin ({self.fmin:g} Hz), got {self.fmax:g}")
        # Whole semitones per bin step keep transposition a shift by whole bins.
        if self.bins_per_octave % 12:
            raise KeyProblem("bins_per_octave", f"must be a multiple of 12 (12, 24, 36, ...), got {self.bins_per_octave}")
        if self.kind in ("cqt", "chroma"):
            if self.fmin <= 0:
                raise KeyProblem("fmin", f"must be > 0 for features.kind {self.kind} (the lowest constant-Q bin's "
                                         f"centre, e.g. 32.703 for C1), got {self.fmin:g}")
            if self.n_bins < self.bins_per_octave:
                raise KeyProblem("n_bins", f"must be at least one octave (features.bins_per_octave = "
                                           f"{self.bins_per_octave}) for features.kind {self.kind}, got {self.n_bins}")
        return self


class TrainParams(Section):
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    lr: float = Field(gt=0)  # peak learning rate of the one-cycle schedule (AdamW)
    weight_decay: float = Field(ge=0)
    channels: list[int] = Field(min_length=1)  # output channels of each conv block
    embedding_dim: int = Field(gt=0)
    dropout: float = Field(ge=0, lt=1)
    loss: Literal["ce", "triplet", "ce+triplet"]  # triplet: batch-hard, on the embedding
    triplet_margin: float = Field(gt=0)
    sampler: Literal["shuffle", "balanced"]  # class weights in the loss, or classes taking turns
    patience: int = Field(ge=0)  # early stopping: epochs without a better val macro-F1 (0: off)
    keep: Literal["best", "last"]  # the epoch the model keeps: best val macro-F1, or the schedule's last
    freq_mask: int = Field(ge=0)  # SpecAugment: widest band mask (0: off)
    time_mask: int = Field(ge=0)  # SpecAugment: widest frame mask (0: off)
    masks: int = Field(ge=0)  # SpecAugment: masks of each kind per clip
    seed: int = Field(ge=0, le=2**32 - 1)  # seeds NumPy and PyTorch, whose seeds are unsigned 32-bit
    symbolic_dropout: float = Field(ge=0, le=1)  # fraction of training clips whose symbolic input is hidden
    pitch_shift: int = Field(ge=0, le=12)  # features cqt/chroma: transpose each clip by up to this many semitones (0: off)
    symbolic_transpose: int = Field(ge=0, le=12)  # transpose each clip's notes by up to this many semitones (0: off)
    label_smoothing: float = Field(ge=0, lt=1)  # cross-entropy's label smoothing (0: off)
    mixup: float = Field(ge=0)  # mixup's Beta(alpha, alpha) parameter, loss ce only (0: off)
    grad_clip: float = Field(ge=0)  # largest global gradient norm (0: off)
    ema: float = Field(ge=0, lt=1)  # decay per step of the kept weights' moving average (0: off, the last step's)
    novelty: Literal["cosine", "mahalanobis"]  # the novelty score evaluate ranks by and predict flags with
    novelty_notes: float = Field(ge=0, le=1)  # with track_notes: a track with notes is scored this share by its notes
    roll_channels: list[int] = Field(min_length=1)  # features.symbolic_roll: output channels of each roll conv block
    roll_pool: int = Field(ge=1)  # features.symbolic_roll: frames merged (max) before the roll's convs (<= its frames)
    track_notes: float = Field(ge=0)  # C of the track-level regression on the notes' statistics (0: off)
    track_balance: float = Field(ge=0, le=1)  # a training clip's loss weight, within its class: its track's clips ** -this
    track_prior: float = Field(ge=0, le=2)  # each clip's probabilities / the training clips' class shares ** this, pooled

    @model_validator(mode="after")
    def _check(self) -> TrainParams:
        if any(width <= 0 for width in self.channels):
            raise KeyProblem("channels", f"must be a non-empty list of positive ints, got {self.channels}")
        if any(width <= 0 for width in self.roll_channels):
            raise KeyProblem("roll_channels", f"must be a non-empty list of positive ints, got {self.roll_channels}")
        if self.mixup and self.loss != "ce":
            raise KeyProblem("mixup", f"must be 0 with train.loss {self.loss} (a mixed clip has no one label for "
                                      f"its triplets), got {self.mixup:g}")
        if self.loss != "ce" and self.batch_size < 3:
            raise KeyProblem("batch_size", f"must be at least 3 with train.loss {self.loss} (a triplet is an anchor, "
                                           f"a clip of its class and one of another), got {self.batch_size}")
        if self.loss == "triplet" and self.track_balance:
            raise KeyProblem("track_balance", f"must be 0 with train.loss triplet (it weighs the cross-entropy, which "
                                              f"that loss has none of), got {self.track_balance:g}")
        if self.loss == "triplet" and self.track_prior:
            raise KeyProblem("track_prior", f"must be 0 with train.loss triplet (such a model names a class by the "
                                            f"distance to its centroid and learns no prior of the training clips to "
                                            f"divide out), got {self.track_prior:g}")
        if self.mixup and self.track_balance:
            raise KeyProblem("track_balance", f"must be 0 with train.mixup > 0 (a mixed clip belongs to two tracks), "
                                              f"got {self.track_balance:g}")
        if self.keep == "last" and self.patience:
            raise KeyProblem("patience", f"must be 0 with train.keep last (early stopping keeps the best epoch, "
                                         f"not the last), got {self.patience}")
        return self


class EvaluateParams(Section):
    batch_size: int = Field(gt=0)
    clip_audio: float = Field(ge=0, le=1)  # a MIDI clip's own answer: this share from its audio alone, the rest with its notes


SECTIONS: dict[str, type[Section]] = {
    "dataset": DatasetParams,
    "render": RenderParams,
    "split": SplitParams,
    "clip": ClipParams,
    "features": FeatureParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
}

# What each of pydantic's error types means, in the words of a params file.
_TYPE_WORDS = {
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "finite_number": "must be a finite number",
    "model_type": "must be a mapping",
    "none_required": "must be null",
}
_BOUND_WORDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _key_parts(error: dict) -> list[str]:
    """The key path of a pydantic error, without the type names pydantic adds for the branches of a union."""
    parts = [str(part) for part in error["loc"] if not (isinstance(part, str) and "[" in part)]
    return [p for p in parts if p not in ("int", "float", "str", "none", "list", "dict")] or parts


def _describe(error: dict, section: str, names_at) -> str:
    """One line for one pydantic error: ``<section>.<key> <what is wrong>, got <value>``."""
    kind, context = error["type"], error.get("ctx", {})
    parts = _key_parts(error)
    if kind == "extra_forbidden":
        # A key of a nested mapping (render.augment.x) is named with its path and its siblings.
        known = names_at(parts[:-1])
        near = difflib.get_close_matches(parts[-1], known, n=1, cutoff=0.75)
        guess = f": is it {near[0]!r}?" if near else ""
        return f"unknown key {'.'.join([section, *parts])}{guess} (known: {', '.join(known)})"
    if kind == "missing":
        return f"missing key {'.'.join([section, *parts])}"
    if isinstance(context.get("error"), KeyProblem):
        problem = context["error"]
        return f"{section}.{problem.key} {problem.message}"
    where = f"{section}." + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts).lstrip(".")
    got = f", got {error['input']!r}"
    if kind in _TYPE_WORDS:
        return f"{where} {_TYPE_WORDS[kind]}{got}"
    if kind in _BOUND_WORDS:
        bound = next(iter(context.values()))
        return f"{where} must be {_BOUND_WORDS[kind]} {bound if isinstance(bound, int) else format(bound, 'g')}{got}"
    if kind == "literal_error":
        return f"{where} must be {context['expected']}{got}"
    if kind == "too_short":
        return f"{where} must not be empty{got}"
    return f"{where}: {error['msg']}{got}"


def _stored(info: ValidationInfo) -> bool:
    """Whether the params being checked are a checkpoint's (``parse_section(..., stored=True)``)."""
    return bool(info.context and info.context.get("stored"))


def parse_section(raw: Any, section: str, source: str = "params.yaml", stored: bool = False) -> Section:
    """Build the model of ``section`` from a mapping; :class:`ParamsError` names the first bad key, and the
    section's others after it.

    ``stored``: the params a checkpoint recorded when it was trained, which rules made since then that only
    stop a bad configuration before work do not refuse.
    """
    params, problems = _check_section(raw, section, stored)
    if problems:
        raise ParamsError(_problems_message(source, problems))
    return params


def _problems_message(source: str, problems: list[str]) -> str:
    """``<source>: <first problem> (and N more: <the others>)``."""
    first, *rest = problems
    more = f" (and {len(rest)} more: {'; '.join(rest)})" if rest else ""
    return f"{source}: {first}{more}"


def _check_section(raw: Any, section: str, stored: bool = False) -> tuple[Section | None, list[str]]:
    """(the model of ``section``, []) or (None, one line for each bad key: an unknown key first)."""
    model = SECTIONS[section]
    if not isinstance(raw, dict):
        return None, [f"section '{section}' must be a mapping, got {raw!r}"]
    try:
        return model.model_validate(raw, context={"stored": stored}), []
    except ValidationError as error:
        def names_at(path: list[str]) -> list[str]:
            """The keys of the (nested) mapping at ``path`` inside the section."""
            nested = model
            for part in path:
                nested = nested.model_fields[part].annotation
            return list(nested.model_fields)

        # Report an unknown key first, then a missing one: a misspelt key (train.patiense) is both, and the
        # one the user wrote is the one to name; either is usually the cause of the rest.
        order = {"extra_forbidden": 0, "missing": 1}
        errors = sorted(error.errors(), key=lambda e: order.get(e["type"], 2))
        # Every other bad key of the section too, so that one run names them all: one line per key (a value
        # that fails every branch of a union is one error a branch), and no missing key beside an unknown one.
        misspelt = any(e["type"] == "extra_forbidden" for e in errors)
        lines = {}
        for problem in errors:
            key = tuple(_key_parts(problem))
            if key not in lines and not (misspelt and problem["type"] == "missing"):
                lines[key] = _describe(problem, section, names_at)
        return None, list(lines.values())  # errors[0] is always kept: an unknown key, or any error without one


def _refuse_keys_written_twice(node: yaml.Node, seen_nodes: set[int] | None = None) -> None:
    """Raise ``yaml.YAMLError`` for a key written twice in one mapping of the (composed, not yet built) YAML
    ``node``: plain YAML keeps the last one, so an edit further down would silently win over the line the user
    is looking at (DVC refuses it too). Merge keys (``<<: *defaults``) and their overrides are not duplicates."""
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:  # an alias: checked where its anchor is
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys = set()
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in keys:
                    mark = key_node.start_mark
                    raise yaml.YAMLError(f"the key {key_node.value!r} is written twice (line {mark.line + 1}, "
                                         f"column {mark.column + 1})")
                keys.add(key_node.value)
            _refuse_keys_written_twice(value_node, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_keys_written_twice(item, seen_nodes)


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading exponent notation as YAML 1.2 does, as DVC (ruamel.yaml) reads params.yaml:
    ``1e-3`` and ``1.0e3`` are numbers (YAML 1.1 wants a dot and a signed exponent, ``1.0e-3``, and reads the
    others as strings), so that the value a stage uses is the one ``dvc params diff`` shows. Other YAML 1.1
    readings stay (``yes`` a boolean, ``010`` octal): params.yaml's own values use neither."""


ParamsLoader.add_implicit_resolver(  # numbers with an exponent only: 42 and 09 read as before
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def read_params(path: str | Path) -> dict:
    """The mapping a params file holds (keys written twice refused, numbers read as DVC reads them)."""
    path = Path(path)
    try:
        text = path.read_text()
        root = yaml.compose(text, Loader=ParamsLoader)
        if root is not None:
            _refuse_keys_written_twice(root)
        document = yaml.load(text, Loader=ParamsLoader)
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise ParamsError(f"{path}: must be a mapping of sections ({', '.join(SECTIONS)}), got "
                          f"{type(document).__name__ if document is not None else 'an empty file'}")
    # A section no stage reads may hold YAML anchors (`defaults: &clip ...`, `train_base: &t ...`); one named
    # nearly as a stage's section (`trian`, `Clip`, `splits`) is a misspelling, whose values would silently go
    # unused.
    for key in document:
        if key not in SECTIONS:
            name = str(key).casefold()
            if name not in SECTIONS and set(re.split(r"[^a-z0-9]+", name)) & set(SECTIONS):
                continue  # a name built on a section's, as anchors are named
            near = difflib.get_close_matches(name, SECTIONS, n=1, cutoff=0.75)
            if near:
                raise ParamsError(f"{path}: unknown section {key!r}: is it {near[0]!r}? (the sections: "
                                  f"{', '.join(SECTIONS)})")
    return document


def load_section(path: str | Path, section: str) -> Section:
    """Read ``path`` (a params.yaml) and return its validated ``section`` model.

    Every other section the file holds is validated too, so that a bad value anywhere stops the first stage
    that runs, not the stage that reads it after the others have worked (checks that need a stage's data stay
    in that stage). One :class:`ParamsError` names every bad key of every section: ``section``'s first."""
    document = read_params(path)
    if section not in document:
        raise ParamsError(f"{path}: missing section '{section}'")
    params, problems = _check_section(document[section], section)
    parsed = {section: params}
    for other in SECTIONS:
        if other in document and other != section:
            parsed[other], found = _check_section(document[other], other)
            problems += found
    problems += _mask_problems(parsed.get("train"), parsed.get("features"), parsed.get("clip"))
    if problems:
        raise ParamsError(_problems_message(str(path), problems))
    return params


def _mask_problems(train: TrainParams | None, features: FeatureParams | None, clip: ClipParams | None) -> list[str]:
    """A SpecAugment mask wider than the features it masks would blank whole clips: the params alone give each
    clip's bands and frames, so every stage refuses it, not train after featurize has run (train checks its
    table again)."""
    if train is None or features is None or train.masks == 0:  # masking off: no width matters
        return []
    problems = []
    if train.freq_mask > features.bands:
        problems.append(f"train.freq_mask must be at most the {features.bands} bands of the features "
                        f"(features.kind {features.kind}), got {train.freq_mask}")
    samples = int(round(clip.clip_seconds * clip.sample_rate)) if clip is not None else 0
    # A hop longer than half a clip is featurize's to name (features.hop_length), not the mask's.
    if clip is not None and 2 * features.hop_length <= samples:
        frames = 1 + samples // features.hop_length  # features.n_frames
        if train.time_mask > frames:
            problems.append(f"train.time_mask must be at most the {frames} frames of a clip (clip.clip_seconds "
                            f"{clip.clip_seconds:g} at clip.sample_rate {clip.sample_rate} Hz, features.hop_length "
                            f"{features.hop_length}), got {train.time_mask}")
    return problems


def as_dict(params: Section) -> dict:
    """The params as a plain dict (for HDF5 attributes and checkpoints)."""
    return params.model_dump()

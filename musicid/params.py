"""Typed, validated params: one dataclass per section of ``params.yaml``.

Each stage loads only its own section with :func:`load_section`.  Unknown keys,
missing keys and values of the wrong type stop the stage at once with a message
naming the key, e.g. ``params.yaml: render.sample_rate must be int, got 'fast'``.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ParamsError(ValueError):
    """A params file or one of its values is invalid; the message names the key."""


@dataclasses.dataclass(frozen=True)
class DatasetParams:
    source: str  # "music21" (offline corpus), "url" (an archive) or "path" (a local folder)
    classes: list[str]  # labels to keep; for url and path sources, [] keeps every label found
    max_per_class: int  # cap of pieces per class (0: no cap)
    seed: int  # picks which pieces are kept when a class has more than the cap
    url: str | None  # source "url": http(s):// or file:// URL of a .zip, .tar, .tar.gz or .tgz
    sha256: str | None  # source "url": the archive's SHA-256; null fetches and prints it
    allow_unverified: bool  # source "url": use an archive without a pinned sha256
    path: str | None  # source "path": a local folder (relative to params.yaml's folder)
    labels: dict[str, str]  # folder name -> label, to merge or rename classes
    unlabeled: str | None  # folder name of files with no label, kept apart for prediction
    max_bytes: int  # cap on the bytes an archive may expand to
    max_files: int  # cap on the number of files in an archive

    def check(self, fail) -> None:
        sources = ("music21", "url", "path")
        if self.source not in sources:
            fail("source", f"must be one of {list(sources)}, got {self.source!r}")
        if self.source == "music21" and not self.classes:
            fail("classes", "must name at least one composer of the music21 corpus")
        if self.source == "url":
            if not self.url:
                fail("url", "must be set when dataset.source is url")
            scheme = self.url.split("://", 1)[0].lower() if "://" in self.url else ""
            if scheme not in ("http", "https", "file"):
                fail("url", f"must start with http://, https:// or file://, got {self.url!r}")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256):
            fail("sha256", f"must be 64 hexadecimal digits, got {self.sha256!r}")
        if self.source == "path" and not self.path:
            fail("path", "must be set when dataset.source is path")
        if len(set(self.classes)) != len(self.classes):
            fail("classes", f"has duplicates: {self.classes}")
        if self.max_per_class < 0:
            fail("max_per_class", f"must be >= 0, got {self.max_per_class}")
        if self.max_bytes <= 0:
            fail("max_bytes", f"must be > 0, got {self.max_bytes}")
        if self.max_files <= 0:
            fail("max_files", f"must be > 0, got {self.max_files}")
        if self.unlabeled is not None and ("/" in self.unlabeled or not self.unlabeled.strip()):
            fail("unlabeled", f"must be a single folder name, got {self.unlabeled!r}")


@dataclasses.dataclass(frozen=True)
class RenderParams:
    soundfonts: list[str]  # .sf2/.sf3 files; each MIDI file is rendered once per SoundFont
    sample_rate: int  # Hz of the written WAV files
    channels: int  # 1 (mono mix) or 2 (stereo) in the written WAV files
    gain: float  # FluidSynth master gain
    reverb: bool
    chorus: bool
    program: int | None  # force every melodic part to this General MIDI program (0-127)
    max_seconds: float  # a source longer than this is rejected as too_long
    timeout_s: float  # wall-clock limit for rendering one file
    trim_db: float  # trailing audio quieter than this (dB below the peak) is trimmed
    min_rms: float  # a render quieter than this (linear RMS) is rejected as silent

    def check(self, fail) -> None:
        if not self.soundfonts:
            fail("soundfonts", "must list at least one SoundFont file")
        if len(set(self.soundfonts)) != len(self.soundfonts):
            fail("soundfonts", f"has duplicates: {self.soundfonts}")
        if self.sample_rate < 8000 or self.sample_rate > 192000:
            fail("sample_rate", f"must be between 8000 and 192000 Hz, got {self.sample_rate}")
        if self.channels not in (1, 2):
            fail("channels", f"must be 1 or 2, got {self.channels}")
        if not 0 < self.gain <= 10:
            fail("gain", f"must be in (0, 10], got {self.gain}")
        if self.program is not None and not 0 <= self.program <= 127:
            fail("program", f"must be a General MIDI program 0-127 or null, got {self.program}")
        if self.max_seconds <= 0:
            fail("max_seconds", f"must be > 0, got {self.max_seconds}")
        if self.timeout_s <= 0:
            fail("timeout_s", f"must be > 0, got {self.timeout_s}")
        if self.trim_db >= 0:
            fail("trim_db", f"must be negative (dB below the peak), got {self.trim_db}")
        if self.min_rms < 0:
            fail("min_rms", f"must be >= 0, got {self.min_rms}")


@dataclasses.dataclass(frozen=True)
class SplitParams:
    val: float  # fraction of each class's tracks for validation
    test: float  # fraction of each class's tracks for test
    seed: int
    holdout_classes: list[str]  # classes whose every track goes to test, as unknown (open set)

    def check(self, fail) -> None:
        for key in ("val", "test"):
            value = getattr(self, key)
            if not 0 <= value < 1:
                fail(key, f"must be in [0, 1), got {value}")
        if self.val + self.test >= 1:
            fail("test", f"val + test must be < 1, got {self.val} + {self.test}")
        if len(set(self.holdout_classes)) != len(self.holdout_classes):
            fail("holdout_classes", f"has duplicates: {self.holdout_classes}")


@dataclasses.dataclass(frozen=True)
class ClipParams:
    sample_rate: int  # Hz of the clips (audio is resampled with soxr when it differs)
    clip_seconds: float
    hop_seconds: float  # distance between clip starts; < clip_seconds means overlap
    normalize: str  # "none", "peak" or "rms": loudness normalisation of each clip
    target_db: float  # level (dBFS) of the peak or RMS after normalisation
    min_rms: float  # a 50 ms frame quieter than this (linear RMS) counts as silence
    max_silence: float  # clips with a larger fraction of silent frames are skipped
    max_clips_per_track: int  # 0: no cap; otherwise evenly spaced clips are kept
    max_clips_per_class: int  # 0: no cap; otherwise each track of a class gets an equal share

    def check(self, fail) -> None:
        if self.sample_rate < 1000:
            fail("sample_rate", f"must be >= 1000 Hz, got {self.sample_rate}")
        if self.clip_seconds <= 0:
            fail("clip_seconds", f"must be > 0, got {self.clip_seconds}")
        if self.hop_seconds <= 0:
            fail("hop_seconds", f"must be > 0, got {self.hop_seconds}")
        if self.normalize not in ("none", "peak", "rms"):
            fail("normalize", f"must be one of ['none', 'peak', 'rms'], got {self.normalize!r}")
        if self.target_db > 0:
            fail("target_db", f"must be <= 0 dBFS, got {self.target_db}")
        if self.min_rms < 0:
            fail("min_rms", f"must be >= 0, got {self.min_rms}")
        if not 0 <= self.max_silence <= 1:
            fail("max_silence", f"must be in [0, 1], got {self.max_silence}")
        for key in ("max_clips_per_track", "max_clips_per_class"):
            if getattr(self, key) < 0:
                fail(key, f"must be >= 0 (0: no cap), got {getattr(self, key)}")


@dataclasses.dataclass(frozen=True)
class FeatureParams:
    kind: str  # "logmel" or "mfcc"
    n_mels: int
    n_fft: int
    hop_length: int
    fmin: float
    fmax: float  # Hz; must not exceed the clips' Nyquist frequency
    floor_db: float  # dB values are clipped below this (power_to_db with amin=1e-10)
    top_db: float | None  # and below each clip's maximum minus this (librosa's top_db); null: off
    n_mfcc: int  # kind "mfcc": coefficients kept (DCT-II, orthonormal, of the log-mel bands)
    batch_size: int  # clips read, computed (shared among the threads) and written per step

    def check(self, fail) -> None:
        if self.kind not in ("logmel", "mfcc"):
            fail("kind", f"must be one of ['logmel', 'mfcc'], got {self.kind!r}")
        for key in ("n_mels", "n_fft", "hop_length", "batch_size", "n_mfcc"):
            if getattr(self, key) <= 0:
                fail(key, f"must be > 0, got {getattr(self, key)}")
        if self.n_fft % 2:
            fail("n_fft", f"must be even (frames are centred on their sample), got {self.n_fft}")
        if self.n_mfcc > self.n_mels:
            fail("n_mfcc", f"must be <= n_mels ({self.n_mels}), got {self.n_mfcc}")
        if not 0 <= self.fmin < self.fmax:
            fail("fmax", f"must be greater than fmin ({self.fmin}), got {self.fmax}")
        if self.top_db is not None and self.top_db <= 0:
            fail("top_db", f"must be > 0 or null, got {self.top_db}")


@dataclasses.dataclass(frozen=True)
class TrainParams:
    epochs: int
    batch_size: int
    lr: float  # peak learning rate of the one-cycle schedule (AdamW)
    weight_decay: float
    channels: list[int]  # output channels of each conv block
    embedding_dim: int
    dropout: float
    loss: str  # "ce", "triplet" (batch-hard, on the embedding) or "ce+triplet"
    triplet_margin: float
    sampler: str  # "shuffle" (class weights in the loss) or "balanced" (classes take turns)
    patience: int  # early stopping: epochs without a better val macro-F1 (0: off)
    freq_mask: int  # SpecAugment: widest band mask (0: off)
    time_mask: int  # SpecAugment: widest frame mask (0: off)
    masks: int  # SpecAugment: masks of each kind per clip
    seed: int

    def check(self, fail) -> None:
        for key in ("epochs", "batch_size", "embedding_dim"):
            if getattr(self, key) <= 0:
                fail(key, f"must be > 0, got {getattr(self, key)}")
        if self.lr <= 0:
            fail("lr", f"must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            fail("weight_decay", f"must be >= 0, got {self.weight_decay}")
        if not self.channels or any(c <= 0 for c in self.channels):
            fail("channels", f"must be a non-empty list of positive ints, got {self.channels}")
        if not 0 <= self.dropout < 1:
            fail("dropout", f"must be in [0, 1), got {self.dropout}")
        if self.loss not in ("ce", "triplet", "ce+triplet"):
            fail("loss", f"must be one of ['ce', 'triplet', 'ce+triplet'], got {self.loss!r}")
        if self.triplet_margin <= 0:
            fail("triplet_margin", f"must be > 0, got {self.triplet_margin}")
        if self.sampler not in ("shuffle", "balanced"):
            fail("sampler", f"must be one of ['shuffle', 'balanced'], got {self.sampler!r}")
        for key in ("patience", "freq_mask", "time_mask", "masks"):
            if getattr(self, key) < 0:
                fail(key, f"must be >= 0, got {getattr(self, key)}")


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    batch_size: int

    def check(self, fail) -> None:
        if self.batch_size <= 0:
            fail("batch_size", f"must be > 0, got {self.batch_size}")


SECTIONS: dict[str, type] = {
    "dataset": DatasetParams,
    "render": RenderParams,
    "split": SplitParams,
    "clip": ClipParams,
    "features": FeatureParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a simple type annotation; ints are accepted for floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ParamsError(f"{where} must be a mapping, got {value!r}")
        return {_coerce(k, key_type, f"{where} key"): _coerce(v, value_type, f"{where}.{k}")
                for k, v in value.items()}
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ParamsError(f"{where} must be a list, got {value!r}")
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{where} must be a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{where} must be an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{where} must be true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ParamsError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation!r} for {where}")


def parse_section(raw: Any, section: str, source: str = "params.yaml"):
    """Build the dataclass of ``section`` from a mapping, validating every key."""
    cls = SECTIONS[section]
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: section '{section}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ParamsError(
            f"{source}: unknown key {section}.{unknown[0]} (known: {', '.join(names)})"
        )
    missing = [n for n in names if n not in raw]
    if missing:
        raise ParamsError(f"{source}: missing key {section}.{missing[0]}")
    values = {n: _coerce(raw[n], hints[n], f"{source}: {section}.{n}") for n in names}
    params = cls(**values)

    def fail(key: str, message: str) -> None:
        raise ParamsError(f"{source}: {section}.{key} {message}")

    params.check(fail)
    return params


def load_section(path: str | Path, section: str):
    """Read ``path`` (a params.yaml) and return its validated ``section`` dataclass."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(document, dict) or section not in document:
        raise ParamsError(f"{path}: missing section '{section}'")
    return parse_section(document[section], section, source=str(path))


def as_dict(params) -> dict:
    """The params as a plain dict (for HDF5 attributes and checkpoints)."""
    return dataclasses.asdict(params)

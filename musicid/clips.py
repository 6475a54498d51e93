"""Track-level splits and fixed-length clips.

Splits are assigned to whole tracks before any clip is cut, stratified by
label and seeded, so no track ever has clips on both sides of a split; all
renders of one source (one per SoundFont) are one track.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicid.audio import read_audio, resample

SILENCE_FRAME_SECONDS = 0.05


def assign_splits(tracks: dict[str, str], val: float, test: float, seed: int,
                  holdout_classes: list[str] = ()) -> dict[str, str]:
    """Map each track id to "train", "val" or "test".

    tracks: track id -> label.  Every track of a class in ``holdout_classes``
    goes to test.  For every other label, its tracks are shuffled with a
    generator seeded by ``seed`` and the label, then ``round(test * n)`` go to
    test and ``round(val * n)`` to val (at least one each when the fraction is
    positive and the label has three tracks or more), the rest to train.
    """
    by_label: dict[str, list[str]] = {}
    for track, label in tracks.items():
        by_label.setdefault(label, []).append(track)
    splits: dict[str, str] = {}
    for label in sorted(by_label):
        members = sorted(by_label[label])
        if label in holdout_classes:
            splits.update({track: "test" for track in members})
            continue
        label_seed = int.from_bytes(hashlib.sha256(f"{seed}:{label}".encode()).digest()[:8], "little")
        order = np.random.default_rng(label_seed).permutation(len(members))
        n = len(members)
        n_test = round(test * n)
        n_val = round(val * n)
        if n >= 3:
            n_test = max(n_test, 1) if test > 0 else 0
            n_val = max(n_val, 1) if val > 0 else 0
        n_test = min(n_test, n)
        n_val = min(n_val, n - n_test)
        for rank, index in enumerate(order):
            split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            splits[members[index]] = split
    return splits


def clip_starts(n_samples: int, clip_samples: int, hop_samples: int) -> np.ndarray:
    """Start samples of every whole clip: 0, hop, 2*hop, ... while the clip fits.

    int64 [n_clips]; empty when the audio is shorter than one clip.
    """
    if n_samples < clip_samples:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_samples - clip_samples + 1, hop_samples, dtype=np.int64)


def evenly_spaced(count: int, cap: int) -> np.ndarray:
    """Indices of at most ``cap`` items spread evenly over ``count`` (all when cap is 0)."""
    if cap == 0 or count <= cap:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, cap)).astype(np.int64))


def load_mono(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read an audio file as float32 [n] mono at ``sample_rate`` Hz (soxr when resampling)."""
    audio, file_rate = read_audio(path)
    return resample(audio.mean(axis=1, dtype=np.float32), file_rate, sample_rate)


def silent_fraction(clips: np.ndarray, frame_samples: int, min_rms: float) -> np.ndarray:
    """Fraction of ``frame_samples``-long frames quieter than ``min_rms``, per clip.

    clips: float32 [k, clip_samples] -> float64 [k]; a partial last frame is ignored.
    """
    n_frames = clips.shape[1] // frame_samples
    if n_frames == 0:
        return np.zeros(len(clips))
    frames = clips[:, : n_frames * frame_samples].reshape(len(clips), n_frames, frame_samples)
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=2))
    return np.mean(rms < min_rms, axis=1)


def normalize_loudness(clips: np.ndarray, mode: str, target_db: float) -> np.ndarray:
    """Scale each clip so its peak ("peak") or RMS ("rms") is ``target_db`` dBFS.

    clips float32 [k, n]; silent clips are left as they are; after RMS scaling
    samples beyond full scale are clipped to [-1, 1].
    """
    if mode == "none" or len(clips) == 0:
        return clips
    target = 10.0 ** (target_db / 20.0)
    if mode == "peak":
        level = np.abs(clips).max(axis=1)
    else:
        level = np.sqrt(np.mean(np.square(clips, dtype=np.float64), axis=1))
    gain = np.where(level > 0, target / np.maximum(level, 1e-12), 1.0).astype(np.float32)
    return np.clip(clips * gain[:, None], -1.0, 1.0)


@dataclass(frozen=True)
class ClipSpec:
    sample_rate: int
    clip_seconds: float
    hop_seconds: float
    normalize: str = "none"
    target_db: float = -20.0
    min_rms: float = 0.001
    max_silence: float = 0.5

    @classmethod
    def from_params(cls, clip) -> ClipSpec:
        """From the ``clip`` params section."""
        return cls(clip.sample_rate, clip.clip_seconds, clip.hop_seconds, clip.normalize, clip.target_db,
                   clip.min_rms, clip.max_silence)


def cut_clips(mono: np.ndarray, spec: ClipSpec, max_clips: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Cut ``mono`` (float32 [n] at spec.sample_rate Hz) into clips.

    Returns ``(clips float32 [k, clip_samples], offsets_s float64 [k], n_silent)``:
    the clips kept after skipping those with more than ``spec.max_silence`` of
    their 50 ms frames under ``spec.min_rms`` and capping the rest to
    ``max_clips`` evenly spaced ones (0: no cap), normalised; their start times
    in seconds; and how many were skipped as silence.
    """
    sample_rate = spec.sample_rate
    clip_samples = int(round(spec.clip_seconds * sample_rate))
    hop_samples = max(1, int(round(spec.hop_seconds * sample_rate)))
    starts = clip_starts(len(mono), clip_samples, hop_samples)
    if starts.size == 0:
        return np.zeros((0, clip_samples), np.float32), np.zeros(0), 0
    windows = np.lib.stride_tricks.sliding_window_view(mono, clip_samples)[starts]
    frame_samples = max(1, int(round(SILENCE_FRAME_SECONDS * sample_rate)))
    loud = silent_fraction(windows, frame_samples, spec.min_rms) <= spec.max_silence
    n_silent = int((~loud).sum())
    starts = starts[loud]
    starts = starts[evenly_spaced(len(starts), max_clips)]
    clips = np.stack([mono[s:s + clip_samples] for s in starts]) if len(starts) else \
        np.zeros((0, clip_samples), np.float32)
    clips = normalize_loudness(clips.astype(np.float32, copy=False), spec.normalize, spec.target_db)
    return clips, starts / sample_rate, n_silent


@dataclass(frozen=True)
class ClipTask:
    paths: tuple[str, ...]  # the track's WAVs (one per SoundFont)
    spec: ClipSpec
    max_clips: int  # for the whole track (0: no cap), shared out over its WAVs


def clip_track(task: ClipTask) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Worker: load every WAV of one track and cut its clips.

    Returns (clips [k, clip_samples], offsets_s [k], output index [k], n_silent),
    where "output index" tells which of the track's WAVs a clip came from.
    """
    all_clips, all_offsets, all_index, silent = [], [], [], 0
    per_output = 0
    if task.max_clips:
        per_output = max(1, task.max_clips // len(task.paths))
    for index, path in enumerate(task.paths):
        mono = load_mono(path, task.spec.sample_rate)
        clips, offsets, n_silent = cut_clips(mono, task.spec, per_output)
        all_clips.append(clips)
        all_offsets.append(offsets)
        all_index.append(np.full(len(clips), index, dtype=np.int64))
        silent += n_silent
    return (np.concatenate(all_clips), np.concatenate(all_offsets), np.concatenate(all_index), silent)


def per_track_cap(max_per_track: int, max_per_class: int, tracks_in_class: int) -> int:
    """Clips one track may give: the track cap, and an equal share of the class cap (0: none)."""
    caps = [cap for cap in (max_per_track, max_per_class // max(tracks_in_class, 1) if max_per_class else 0)
            if cap]
    if max_per_class and max_per_class < tracks_in_class:
        caps.append(1)  # every track keeps at least one clip
    return min(caps) if caps else 0


def expected_clip_count(seconds: float, clip_seconds: float, hop_seconds: float) -> int:
    """How many whole clips fit in ``seconds`` of audio (before silence and caps)."""
    if seconds < clip_seconds:
        return 0
    return int(math.floor((seconds - clip_seconds) / hop_seconds + 1e-9)) + 1

"""Track-level splits and fixed-length clips.

Splits are assigned to whole tracks before any clip is cut, stratified by
label and seeded, so no track ever has clips on both sides of a split.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np


def assign_splits(tracks: dict[str, str], val: float, test: float, seed: int) -> dict[str, str]:
    """Map each track id to "train", "val" or "test".

    tracks: track id -> label.  For every label, its tracks are shuffled with a
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
    import soundfile
    import soxr

    audio, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1, dtype=np.float32)
    if file_rate != sample_rate and mono.size:
        mono = soxr.resample(mono, file_rate, sample_rate, quality="HQ").astype(np.float32)
    return mono


def cut_clips(mono: np.ndarray, sample_rate: int, clip_seconds: float, hop_seconds: float,
              max_clips: int, min_rms: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Cut ``mono`` (float32 [n]) into clips.

    Returns ``(clips float32 [k, clip_samples], offsets_s float64 [k], n_silent)``:
    the clips kept after skipping those quieter than ``min_rms`` and capping the
    rest to ``max_clips`` evenly spaced ones, their start times in seconds, and
    how many were skipped as silence.
    """
    clip_samples = int(round(clip_seconds * sample_rate))
    hop_samples = max(1, int(round(hop_seconds * sample_rate)))
    starts = clip_starts(len(mono), clip_samples, hop_samples)
    if starts.size == 0:
        return np.zeros((0, clip_samples), np.float32), np.zeros(0), 0
    windows = np.lib.stride_tricks.sliding_window_view(mono, clip_samples)[starts]
    rms = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1))
    loud = rms >= min_rms
    n_silent = int((~loud).sum())
    starts = starts[loud]
    keep = evenly_spaced(len(starts), max_clips)
    starts = starts[keep]
    clips = np.stack([mono[s:s + clip_samples] for s in starts]) if len(starts) else \
        np.zeros((0, clip_samples), np.float32)
    return clips.astype(np.float32, copy=False), starts / sample_rate, n_silent


def clip_track(task: tuple) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Worker: load every WAV of one track and cut its clips.

    task: (wav paths, sample_rate, clip_seconds, hop_seconds, max_clips, min_rms).
    Returns (clips [k, clip_samples], offsets_s [k], output index [k], n_silent),
    where "output index" tells which of the track's WAVs (one per SoundFont) a
    clip came from.
    """
    paths, sample_rate, clip_seconds, hop_seconds, max_clips, min_rms = task
    all_clips, all_offsets, all_index, silent = [], [], [], 0
    for index, path in enumerate(paths):
        mono = load_mono(path, sample_rate)
        per_output = max_clips // len(paths) if max_clips else 0
        if max_clips and per_output == 0:
            per_output = 1
        clips, offsets, n_silent = cut_clips(mono, sample_rate, clip_seconds, hop_seconds,
                                             per_output, min_rms)
        all_clips.append(clips)
        all_offsets.append(offsets)
        all_index.append(np.full(len(clips), index, dtype=np.int64))
        silent += n_silent
    return (np.concatenate(all_clips), np.concatenate(all_offsets), np.concatenate(all_index), silent)


def expected_clip_count(seconds: float, clip_seconds: float, hop_seconds: float) -> int:
    """How many whole clips fit in ``seconds`` of audio (before silence and caps)."""
    if seconds < clip_seconds:
        return 0
    return int(math.floor((seconds - clip_seconds) / hop_seconds + 1e-9)) + 1

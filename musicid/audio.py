"""Reading and resampling audio, shared by the render, clip and predict steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples float32 [n, channels], sample rate in Hz) of an audio file, through libsndfile."""
    import soundfile

    return soundfile.read(str(path), dtype="float32", always_2d=True)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """float32 [n] or [n, channels] from ``from_rate`` to ``to_rate`` Hz with soxr (HQ).

    Returned unchanged when the rates agree or there are no samples.
    """
    if from_rate == to_rate or len(samples) == 0:
        return samples
    import soxr

    return soxr.resample(samples, from_rate, to_rate, quality="HQ").astype(np.float32)

"""Log-mel spectrograms and MFCCs computed for a batch of clips at once.

The numbers follow librosa's definitions (``librosa.feature.melspectrogram``
with a centred, zero-padded, periodic-Hann STFT and power 2, then
``librosa.power_to_db`` with ``ref=1``, ``amin=1e-10`` and an optional
``top_db``; ``librosa.feature.mfcc`` is the orthonormal DCT-II of that), also
floored at ``floor_db``; but one STFT and one matrix product with the mel
filterbank serve several clips at once instead of one librosa call per clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
import scipy.signal

AMIN = 1e-10


@dataclass(frozen=True)
class LogMelConfig:
    sample_rate: int
    n_fft: int
    hop_length: int
    n_mels: int
    fmin: float
    fmax: float
    floor_db: float
    top_db: float | None = None


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa's Slaney-normalised mel filterbank, float32 [n_mels, 1 + n_fft // 2]."""
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                               dtype=np.float32)


@lru_cache(maxsize=8)
def hann_window(n_fft: int) -> np.ndarray:
    return scipy.signal.get_window("hann", n_fft, fftbins=True).astype(np.float32)


def n_frames(n_samples: int, hop_length: int) -> int:
    """Frames of a centred STFT over ``n_samples`` samples."""
    return 1 + n_samples // hop_length


@lru_cache(maxsize=8)
def _torch_constants(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float):
    """(Hann window [n_fft], mel filterbank [n_mels, 1 + n_fft // 2]) as float64 tensors."""
    import torch

    window = torch.from_numpy(hann_window(n_fft).astype(np.float64))
    filters = torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax).astype(np.float64))
    return window, filters


def logmel(clips: np.ndarray, config: LogMelConfig) -> np.ndarray:
    """clips float32 [batch, n_samples] at config.sample_rate Hz -> dB float32 [batch, n_mels, n_frames].

    The STFT and the mel projection run in float64 (as librosa's do: its
    window is float64), through PyTorch, whose FFT spreads a batch over the
    threads ``torch.set_num_threads`` allows.
    """
    import torch

    signal = torch.from_numpy(np.ascontiguousarray(clips, dtype=np.float32)).to(torch.float64)
    window, filters = _torch_constants(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    spectrum = torch.stft(signal, config.n_fft, config.hop_length, window=window, center=True,
                          pad_mode="constant", return_complex=True)  # (B, 1 + n_fft // 2, T)
    power = spectrum.real.square() + spectrum.imag.square()
    decibels = 10.0 * torch.log10(torch.clamp(filters @ power, min=AMIN))  # (B, n_mels, T)
    if config.top_db is not None:
        # librosa's top_db: nothing more than top_db below the clip's loudest bin.
        loudest = decibels.amax(dim=(1, 2), keepdim=True)
        decibels = torch.maximum(decibels, loudest - config.top_db)
    decibels = torch.clamp(decibels, min=config.floor_db)
    return decibels.to(torch.float32).numpy()


def mfcc(clips: np.ndarray, config: LogMelConfig, n_mfcc: int) -> np.ndarray:
    """clips float32 [batch, n_samples] -> MFCCs float32 [batch, n_mfcc, n_frames].

    The orthonormal DCT-II over the mel bands of :func:`logmel`, as
    ``librosa.feature.mfcc`` computes it (which uses ``top_db=80``).
    """
    bands = logmel(clips, config)
    return scipy.fft.dct(bands, type=2, norm="ortho", axis=1)[:, :n_mfcc].astype(np.float32)


# Clips per FFT call: two 4 s clips at 16 kHz keep the working set in the CPU
# cache; 32 at once is half as fast per clip (measured).
COMPUTE_CHUNK = 2


def compute_features(clips: np.ndarray, config: LogMelConfig, kind: str, n_mfcc: int) -> np.ndarray:
    """Features of a batch: clips float32 [batch, n_samples] -> float32 [batch, n_bands, n_frames].

    The batch is computed in chunks of :data:`COMPUTE_CHUNK` clips, so that
    the frame matrix stays in the CPU cache; the numbers do not depend on the
    batch size.
    """
    parts = []
    for start in range(0, len(clips), COMPUTE_CHUNK):
        chunk = clips[start:start + COMPUTE_CHUNK]
        parts.append(mfcc(chunk, config, n_mfcc) if kind == "mfcc" else logmel(chunk, config))
    return np.concatenate(parts)


class RunningBandStats:
    """Per-band mean and standard deviation over many [batch, n_bands, n_frames] arrays."""

    def __init__(self, n_bands: int):
        self.count = 0
        self.total = np.zeros(n_bands, dtype=np.float64)
        self.total_sq = np.zeros(n_bands, dtype=np.float64)

    def update(self, features: np.ndarray) -> None:
        if features.shape[0] == 0:
            return
        values = features.astype(np.float64)
        self.count += values.shape[0] * values.shape[2]
        self.total += values.sum(axis=(0, 2))
        self.total_sq += np.square(values).sum(axis=(0, 2))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) float32 [n_bands]; std is at least 1e-6."""
        if self.count == 0:
            raise ValueError("no training rows to compute normalisation statistics from")
        mean = self.total / self.count
        variance = np.maximum(self.total_sq / self.count - np.square(mean), 0.0)
        return mean.astype(np.float32), np.maximum(np.sqrt(variance), 1e-6).astype(np.float32)

"""Log-mel spectrograms, MFCCs, constant-Q spectrograms and chroma of many clips, with librosa's numbers.

The numbers follow librosa's definitions (``librosa.feature.melspectrogram``
with a centred, zero-padded, periodic-Hann STFT and power 2, then
``librosa.power_to_db`` with ``ref=1``, ``amin=1e-10`` and an optional
``top_db``; ``librosa.feature.mfcc`` is the orthonormal DCT-II of that), also
floored at ``floor_db``; computed with the same float64 FFT, but without
librosa's per-call overhead (it builds the mel filterbank anew on every call)
and on several threads at once.

The pitch-aware kinds are librosa's own: ``cqt`` is ``librosa.cqt`` (tuning
0, so bin k is ``fmin * 2 ** (k / bins_per_octave)`` Hz) in dB like the
log-mel (``20 log10 |C|`` with the same ``amin``, ``top_db`` and
``floor_db``); ``chroma`` folds the magnitudes of that constant-Q transform
into 12 pitch classes from C to B and scales each frame to a maximum of 1,
as ``librosa.feature.chroma_cqt`` does (its values lie in [0, 1], so the dB
floors do not apply to it).  A transposition by one semitone moves a ``cqt``
clip by ``bins_per_octave / 12`` bins and rolls a ``chroma`` clip by one.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import scipy.fft
import scipy.signal

if TYPE_CHECKING:
    from musicid.params import FeatureParams

AMIN = 1e-10


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa's Slaney-normalised mel filterbank, float32 [n_mels, 1 + n_fft // 2]."""
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                               dtype=np.float32)


@lru_cache(maxsize=8)
def hann_window(n_fft: int) -> np.ndarray:
    """The periodic Hann window librosa uses, float64 [n_fft]."""
    return scipy.signal.get_window("hann", n_fft, fftbins=True)


def n_frames(n_samples: int, hop_length: int) -> int:
    """Frames of a centred STFT over ``n_samples`` samples."""
    return 1 + n_samples // hop_length


@lru_cache(maxsize=8)
def _sparse_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float):
    """The mel filterbank as a float64 CSR matrix [n_mels, 1 + n_fft // 2].

    Each frequency bin feeds at most two triangular filters, so about 3 % of
    the dense matrix is non-zero: the sparse product is several times cheaper.
    """
    import scipy.sparse

    return scipy.sparse.csr_matrix(mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax).astype(np.float64))


class _Workspace:
    """Buffers for computing one chunk of clips, reused from chunk to chunk.

    Fresh multi-megabyte temporaries for every chunk can each cost a page
    fault per 4 KiB page (whether they do depends on the state of the C
    heap): measured up to 1.5x slower and noisy. One workspace per thread
    keeps the speed steady.
    """

    def __init__(self, n_fft: int, hop_length: int, n_samples: int):
        half = n_fft // 2
        count = n_frames(n_samples, hop_length)
        bins = half + 1
        self.padded = np.zeros((COMPUTE_CHUNK, n_samples + 2 * half))  # zero edges stay zero
        self.windowed = np.empty((COMPUTE_CHUNK, count, n_fft))
        self.spectrum = np.empty((COMPUTE_CHUNK, count, bins), dtype=np.complex128)
        self.power = np.empty((COMPUTE_CHUNK, count, bins))
        self.scratch = np.empty((COMPUTE_CHUNK, count, bins))

    def features(self, chunk: np.ndarray, params: FeatureParams, sample_rate: int, kind: str,
                 n_mfcc: int) -> np.ndarray:
        """A few clips float32 [<= COMPUTE_CHUNK, n_samples] at ``sample_rate`` Hz -> [chunk, n_bands, n_frames].

        librosa's arithmetic: zero-padded centred frames times the float64
        window, one float64 real FFT over every frame of the chunk, power 2,
        one product with the mel filterbank, then dB. Every clip's numbers
        are independent of the other clips in its chunk.
        """
        size, n_samples = chunk.shape
        half = params.n_fft // 2
        padded = self.padded[:size]
        padded[:, half:half + n_samples] = chunk
        frames = np.lib.stride_tricks.sliding_window_view(padded, params.n_fft, axis=1)[:, ::params.hop_length]
        windowed = np.multiply(frames, hann_window(params.n_fft), out=self.windowed[:size])
        spectrum = np.fft.rfft(windowed, axis=-1, out=self.spectrum[:size])  # [chunk, n_frames, n_bins]
        parts = spectrum.view(np.float64)  # real and imaginary parts interleaved
        power = np.square(parts[..., 0::2], out=self.power[:size])
        power += np.square(parts[..., 1::2], out=self.scratch[:size])
        count = power.shape[1]
        filters = _sparse_filterbank(sample_rate, params.n_fft, params.n_mels, params.fmin, params.fmax)
        mel = filters @ power.reshape(size * count, -1).T  # [n_mels, chunk * n_frames]
        decibels = 10.0 * np.log10(np.maximum(mel.reshape(-1, size, count).transpose(1, 0, 2), AMIN))
        if params.top_db is not None:
            # librosa's top_db: nothing more than top_db below the clip's loudest bin.
            decibels = np.maximum(decibels, decibels.max(axis=(1, 2), keepdims=True) - params.top_db)
        decibels = np.maximum(decibels, params.floor_db)
        if kind == "mfcc":
            # librosa computes the DCT of float32 dB values.
            return scipy.fft.dct(decibels.astype(np.float32), type=2, norm="ortho", axis=1)[:, :n_mfcc]
        return decibels.astype(np.float32)


def logmel(clips: np.ndarray, features: FeatureParams, sample_rate: int, threads: int = 1) -> np.ndarray:
    """clips float32 [batch, n_samples] at ``sample_rate`` Hz -> dB float32 [batch, n_mels, n_frames].

    The ``features`` params section gives the STFT, mel bands and dB floors; its ``kind`` is not read.
    """
    return _compute(clips, features, sample_rate, "logmel", 0, threads)


def mfcc(clips: np.ndarray, features: FeatureParams, sample_rate: int, threads: int = 1) -> np.ndarray:
    """clips float32 [batch, n_samples] at ``sample_rate`` Hz -> MFCCs float32 [batch, features.n_mfcc, n_frames].

    The orthonormal DCT-II over the mel bands of :func:`logmel`, as
    ``librosa.feature.mfcc`` computes it (which uses ``top_db=80``).
    """
    return _compute(clips, features, sample_rate, "mfcc", features.n_mfcc, threads)


# Clips per FFT call: two 4 s clips at 16 kHz keep the frame matrix (2 MB of
# float64) in the CPU cache; 8 or 16 at once are slower per clip (measured).
COMPUTE_CHUNK = 2
# Clips per librosa.cqt call: its per-call work (filters, resampling set-up)
# is shared by the clips of a call; 2 clips per call take 3x longer than 16 (measured).
CONSTANT_Q_CHUNK = 16
PITCH_KINDS = ("cqt", "chroma")


def n_bands(features: FeatureParams) -> int:
    """Rows of each clip's feature matrix for the ``features`` params section."""
    return features.bands


def constant_q_cutoff(features: FeatureParams) -> float:
    """Hz: the highest frequency the top constant-Q filter reaches (librosa's check against Nyquist)."""
    import librosa

    frequencies = librosa.cqt_frequencies(features.n_bins, fmin=features.fmin,
                                          bins_per_octave=features.bins_per_octave)
    # librosa.cqt's own bandwidths (one bin of spacing each), so this is the limit it enforces.
    alpha = librosa.filters._relative_bandwidth(freqs=frequencies)
    _, cutoff = librosa.filters.wavelet_lengths(freqs=frequencies, sr=1.0, window="hann", filter_scale=1,
                                                gamma=0, alpha=alpha)
    return float(cutoff)


def constant_q(clips: np.ndarray, features: FeatureParams, sample_rate: int) -> np.ndarray:
    """clips float32 [batch, n_samples] at ``sample_rate`` Hz -> float32 [batch, n_bands, n_frames].

    ``features.kind`` "cqt": dB of librosa's constant-Q magnitudes, n_bands =
    ``n_bins``; "chroma": 12 pitch classes (C first), each frame scaled to a
    maximum of 1 (a silent frame stays 0).  Frames are centred every
    ``hop_length`` samples, as the log-mel's.  One clip's numbers do not
    depend on the others in the batch.
    """
    import librosa

    magnitude = np.abs(librosa.cqt(np.asarray(clips, dtype=np.float32), sr=sample_rate,
                                   hop_length=features.hop_length, fmin=features.fmin, n_bins=features.n_bins,
                                   bins_per_octave=features.bins_per_octave, tuning=0.0))
    if features.kind == "chroma":
        return _chroma(magnitude, features)
    decibels = 20.0 * np.log10(np.maximum(magnitude.astype(np.float64), np.sqrt(AMIN)))
    if features.top_db is not None:
        decibels = np.maximum(decibels, decibels.max(axis=(1, 2), keepdims=True) - features.top_db)
    return np.maximum(decibels, features.floor_db).astype(np.float32)


@lru_cache(maxsize=8)
def _chroma_filter(n_bins: int, bins_per_octave: int, fmin: float):
    """librosa's constant-Q to chroma map [12, n_bins] as a float64 CSR matrix."""
    import librosa
    import scipy.sparse

    return scipy.sparse.csr_matrix(librosa.filters.cq_to_chroma(n_bins, bins_per_octave=bins_per_octave,
                                                                fmin=fmin).astype(np.float64))


def _chroma(magnitude: np.ndarray, features: FeatureParams) -> np.ndarray:
    """``librosa.feature.chroma_cqt`` of constant-Q magnitudes [batch, n_bins, n_frames], batch-independent.

    librosa folds the bins with ``np.einsum(..., optimize=True)``, which hands
    the whole batch to BLAS: on some CPUs (AVX-512 OpenBLAS kernels) a clip's
    sums then round differently with the batch size.  A sparse product adds
    each chroma bin's constant-Q bins in one fixed order whatever the batch.
    """
    import librosa

    batch, n_bins, count = magnitude.shape
    fold = _chroma_filter(n_bins, features.bins_per_octave, features.fmin)
    columns = magnitude.astype(np.float64).transpose(1, 0, 2).reshape(n_bins, batch * count)
    chroma = (fold @ columns).reshape(-1, batch, count).transpose(1, 0, 2)
    return librosa.util.normalize(chroma, norm=np.inf, axis=-2).astype(np.float32)


def compute_features(clips: np.ndarray, features: FeatureParams, sample_rate: int, threads: int = 1) -> np.ndarray:
    """The features the ``features`` params section names (``kind``) of clips at ``sample_rate`` Hz.

    clips float32 [batch, n_samples] -> float32 [batch, n_bands, n_frames],
    n_bands being ``n_mels`` (log-mel, dB), ``n_mfcc`` (MFCC), ``n_bins``
    (constant-Q, dB) or 12 (chroma); see :func:`constant_q`.

    The batch is computed in chunks of :data:`COMPUTE_CHUNK` clips
    (:data:`CONSTANT_Q_CHUNK` for the constant-Q kinds), shared
    among ``threads`` threads (NumPy and SciPy's FFT let go of the GIL while
    they compute). Each clip's numbers are the same whatever the batch size
    or thread count.
    """
    return _compute(clips, features, sample_rate, features.kind, features.n_mfcc, threads)


@dataclass(frozen=True)
class FeatureBlock:
    """Consecutive rows of a clips table whose features one worker computes (on a Dask cluster)."""

    start: int  # the first row's index in the table
    clips: np.ndarray  # float32 [batch, n_samples]
    features: FeatureParams
    sample_rate: int  # Hz


def block_features(block: FeatureBlock) -> np.ndarray:
    """Worker: :func:`compute_features` of ``block.clips`` on one thread (a worker process is one core)."""
    return compute_features(block.clips, block.features, block.sample_rate, 1)


def _compute(clips: np.ndarray, params: FeatureParams, sample_rate: int, kind: str, n_mfcc: int,
             threads: int) -> np.ndarray:
    clips = np.asarray(clips, dtype=np.float32)
    bands = n_mfcc if kind == "mfcc" else params.n_mels
    if kind in PITCH_KINDS:
        bands = n_bands(params)
    out = np.empty((len(clips), bands, n_frames(clips.shape[1], params.hop_length)), dtype=np.float32)
    chunk = CONSTANT_Q_CHUNK if kind in PITCH_KINDS else COMPUTE_CHUNK
    starts = range(0, len(clips), chunk)
    workers = max(1, min(threads, len(starts)))

    def compute(worker: int) -> None:
        if kind in PITCH_KINDS:
            for start in starts[worker::workers]:
                out[start:start + chunk] = constant_q(clips[start:start + chunk], params, sample_rate)
            return
        key = (params.n_fft, params.hop_length, clips.shape[1])
        workspace = _take_workspace(key)
        try:
            for start in starts[worker::workers]:
                out[start:start + COMPUTE_CHUNK] = workspace.features(clips[start:start + COMPUTE_CHUNK], params,
                                                                      sample_rate, kind, n_mfcc)
        finally:
            _give_back(workspace, key)

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(compute, range(workers)))  # list() re-raises a worker's exception
    else:
        compute(0)
    return out


# Idle workspaces by (n_fft, hop_length, clip length), the sizes of their buffers; each thread takes its own.
_WORKSPACES: dict[tuple[int, int, int], queue.SimpleQueue] = {}


def _idle(key: tuple[int, int, int]) -> queue.SimpleQueue:
    return _WORKSPACES.setdefault(key, queue.SimpleQueue())


def _take_workspace(key: tuple[int, int, int]) -> _Workspace:
    try:
        return _idle(key).get_nowait()
    except queue.Empty:
        return _Workspace(*key)


def _give_back(workspace: _Workspace, key: tuple[int, int, int]) -> None:
    _idle(key).put(workspace)


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

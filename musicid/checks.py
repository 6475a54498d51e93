"""Checks that a rendered or decoded signal is usable audio, and the reasons a source is rejected.

Every source the render step cannot use is rejected with one machine-readable
reason (``RenderError.reason``) and a one-line detail:

- ``unparseable``: not a MIDI file mido and FluidSynth can read, even after repair
  (the detail says what is wrong: cut short, bad header, unknown SMPTE frame rate, ...);
- ``no_notes``: a MIDI file without a single note;
- ``too_long``: the notes (MIDI) or the header's length (audio) pass ``render.max_seconds``;
- ``timeout``: reading plus rendering one file took longer than ``render.timeout_s``;
- ``empty_render``: FluidSynth gave no audio frames;
- ``duration_mismatch``: the render stops well before the MIDI file's last note;
- ``decode_error``: libsndfile (FFmpeg for ``.m4a``, ``.wma``, ``.wv``, ``.aac``) cannot read the audio file;
- ``implausible_rate``: an audio file whose sample rate no recording has
  (outside ``MIN_AUDIO_RATE`` .. ``MAX_AUDIO_RATE`` Hz);
- ``non_finite``: NaN or infinite samples;
- ``silent``: RMS under ``render.min_rms``, also once a constant (DC) offset is
  removed, so a file holding one constant value is silent;
- ``clipping``: an audio file whose samples pass ``MAX_AUDIO_PEAK`` (far beyond
  full scale: a float file of garbage or of wrongly scaled integers);
- ``unsupported_format``: neither a MIDI nor an audio file extension;
- ``worker_crash``: on a Dask cluster, the file killed one worker process after
  another (see :mod:`musicid.cluster`).
"""

from __future__ import annotations

import numpy as np

DURATION_TOLERANCE_S = 2.0  # allowed |rendered - expected| length, or 5 % when larger
MIN_AUDIO_RATE = 4000  # Hz; below this no recording of music is made (telephone speech is 8000)
MAX_AUDIO_RATE = 768000  # Hz; the highest rate converters and libsndfile's formats use
# Float files a little over full scale are common (a mix that was never limited)
# and are clipped on writing; 12 dB over it is not music but wrong data.
MAX_AUDIO_PEAK = 4.0


class RenderError(Exception):
    """A source cannot be rendered; ``reason`` is the machine-readable cause."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def check_audio_header(frames: int, file_rate: int, max_seconds: float) -> None:
    """Reject an audio file from its header alone, before any sample is decoded.

    frames: the header's frame count; file_rate: its sample rate in Hz.
    Raises :class:`RenderError` ``implausible_rate`` or ``too_long``.
    """
    if not MIN_AUDIO_RATE <= file_rate <= MAX_AUDIO_RATE:
        raise RenderError("implausible_rate", f"sample rate {file_rate} Hz is outside "
                                              f"{MIN_AUDIO_RATE}..{MAX_AUDIO_RATE} Hz")
    if frames / file_rate > max_seconds:
        raise RenderError("too_long", f"the audio lasts {frames / file_rate:.0f} s "
                                      f"(render.max_seconds {max_seconds:g})")


def validate_audio(audio: np.ndarray, sample_rate: int, min_rms: float,
                   expected_seconds: float | None = None, max_peak: float | None = None,
                   source_level: tuple[float, float] | None = None) -> None:
    """Raise :class:`RenderError` when ``audio`` (float32 [channels, n]) is unusable.

    With ``expected_seconds`` (a MIDI file's end time), a render that stops
    short of it by more than the tolerance is a ``duration_mismatch``.  With
    ``max_peak``, a sample beyond it is ``clipping``.  ``source_level`` is
    (RMS without the offset, offset) measured on a decoded file's own samples
    before resampling; without it they are measured on ``audio``.
    """
    if audio.size == 0 or audio.shape[-1] == 0:
        raise RenderError("empty_render", "no audio frames")
    # Channel by channel: one BLAS pass each, and no copy of a sliced [channels, n] view. A NaN or an
    # infinity anywhere makes the sum of squares non-finite.
    channels = [channel.astype(np.float32, copy=False) for channel in audio.reshape(-1, audio.shape[-1])]
    energies = [float(np.dot(channel, channel)) for channel in channels]
    energy = sum(energies)
    if not np.isfinite(energy):
        raise RenderError("non_finite", "audio holds NaN or infinite samples")
    rms = (energy / audio.size) ** 0.5
    if rms < min_rms:
        raise RenderError("silent", f"RMS {rms:.2e} below {min_rms:.2e}")
    if source_level is None and _offset_cannot_matter(channels, energies, rms, min_rms):
        source_level = (rms, 0.0)  # only compared with min_rms below, which it passes either way
    signal_rms, offset = source_level if source_level is not None else _rms_without_offset(audio)
    if signal_rms < min_rms:
        raise RenderError("silent", f"a constant offset of {offset:.3g} and no signal around it "
                                    f"(RMS {signal_rms:.2e} without it, below {min_rms:.2e})")
    if max_peak is not None:
        peak = max(float(audio.max()), -float(audio.min()))
        if peak > max_peak:
            raise RenderError("clipping", f"samples reach {peak:.3g}, far beyond full scale 1.0 "
                                          f"(limit {max_peak:g})")
    if expected_seconds is not None:
        seconds = audio.shape[-1] / sample_rate
        tolerance = max(DURATION_TOLERANCE_S, 0.05 * expected_seconds)
        if seconds < expected_seconds - tolerance:
            raise RenderError(
                "duration_mismatch",
                f"rendered {seconds:.1f} s, the MIDI file's notes end at {expected_seconds:.1f} s",
            )


def _offset_cannot_matter(channels: list[np.ndarray], energies: list[float], rms: float,
                          min_rms: float) -> bool:
    """True when removing each channel's mean cannot bring the RMS below ``min_rms``.

    Removing a mean m from a channel of n samples and energy e leaves e - n m**2.
    When every channel's mean is at most half its RMS, at least 3/4 of the
    energy stays, so the RMS without the offset is at least 0.86 of ``rms``;
    with ``rms`` >= 2 ``min_rms`` it stays above ``min_rms`` with a margin far
    wider than the rounding of float32 sums.  This spares the centred copy of
    every channel that :func:`_rms_without_offset` makes (a render is tens of
    megabytes) for the ordinary render, whose mean is near zero.
    """
    if rms < 2 * min_rms:
        return False
    for channel, channel_energy in zip(channels, energies):
        mean = float(channel.sum(dtype=np.float64)) / channel.size
        if mean * mean > 0.25 * channel_energy / channel.size:
            return False
    return True


def _rms_without_offset(audio: np.ndarray) -> tuple[float, float]:
    """(RMS once each channel's mean is removed, the largest |mean|) of float32 [channels, n].

    The deviations are summed directly: subtracting the squared mean from the
    energy would cancel catastrophically in float32 and leave rounding noise
    louder than ``min_rms``.
    """
    energy, offset = 0.0, 0.0
    for channel in audio:
        mean = float(channel.sum(dtype=np.float64) / channel.size)
        centred = channel - np.float32(mean)
        energy += float(np.dot(centred, centred))
        offset = max(offset, abs(mean))
    return (energy / audio.size) ** 0.5, offset


def frame_peaks(audio: np.ndarray) -> np.ndarray:
    """float32 [channels, n] -> the largest |sample| of each frame, [n]."""
    peaks = np.abs(audio[0])
    for channel in audio[1:]:  # row by row: much faster than a reduction over axis 0
        np.maximum(peaks, np.abs(channel), out=peaks)
    return peaks


def peak_level(audio: np.ndarray) -> float:
    """The largest |sample| of float32 [channels, n] (NaN when a sample is NaN), without an |audio| copy."""
    return max(float(audio.max()), -float(audio.min())) if audio.size else 0.0


def cut_after_last_loud(audio: np.ndarray, threshold: float, chunk_frames: int = 1 << 16) -> np.ndarray:
    """audio float32 [channels, n] up to its last frame whose largest |sample| passes ``threshold``.

    Looks from the end backwards a chunk at a time: the last loud frame of a
    render is a few seconds from its end at most, so only the tail is read.
    """
    end = audio.shape[1]
    while end > 0:
        start = max(0, end - chunk_frames)
        loud = np.flatnonzero(frame_peaks(audio[:, start:end]) > threshold)
        if loud.size:
            return audio[:, : start + int(loud[-1]) + 1]
        end = start
    return audio[:, :0]


def trim_trailing_silence(audio: np.ndarray, threshold: float = 1e-4) -> np.ndarray:
    """Drop the frames after the last one whose peak exceeds ``threshold``.

    audio: float32 [channels, n_frames]; returns a view of the same dtype.
    """
    if audio.shape[1] == 0:
        return audio
    return cut_after_last_loud(audio, threshold)

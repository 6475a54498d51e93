"""Reading, resampling, decoding and writing audio, shared by the render, clip and predict steps."""

from __future__ import annotations

import errno
import io
import math
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from musicid.filetypes import ASF_HEADER, first_bytes_of_frames, frames_start, is_adts, is_mpeg_frame

DECODE_BLOCK_FRAMES = 1 << 16  # source frames decoded (and resampled) at a time


class AudioTooLong(Exception):
    """An audio file holds more than the frames a caller allows, whatever its header says."""


NON_FINITE_MENDED_SHARE = 0.001  # NaN or infinite samples up to this share of a file's are set to 0 (render)


def non_finite_problem(count: int, samples: int) -> str | None:
    """Why a decoded file's ``count`` NaN or infinite samples (of ``samples``, all channels) cannot be mended:
    more than NON_FINITE_MENDED_SHARE of them; None when it has none, or few enough to set to 0."""
    if not count or count <= NON_FINITE_MENDED_SHARE * samples:
        return None
    return (f"audio holds {count} NaN or infinite samples ({100 * count / samples:.3g} % of its samples; at most "
            f"{100 * NON_FINITE_MENDED_SHARE:g} % are set to 0)")


class Level:
    """Per-channel mean and spread of a signal read block by block, in float64.

    Blocks are merged with Chan et al.'s pairwise update, so the spread around
    the mean is summed from deviations (no cancellation between two large
    sums).  Measured on a file's own samples, before resampling: a resampling
    filter rings at the edges of a constant signal, which would look like
    music around a DC offset.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None  # float64 [channels]
        self.spread: np.ndarray | None = None  # float64 [channels]: sum of squared deviations
        self.beyond = 0  # samples (of all channels) beyond full scale, |x| > 1: only a float file has any
        self.mix_energy = 0.0  # sum of squares of the channels' mean (the mono mix), about zero
        self.non_finite = 0  # NaN or infinite samples (of all channels)

    def add(self, block: np.ndarray) -> None:
        """Take in float32 [n, channels]."""
        if len(block) == 0:
            return
        self.beyond += int(np.count_nonzero(block > 1.0)) + int(np.count_nonzero(block < -1.0))
        with np.errstate(invalid="ignore", over="ignore"):  # NaN or inf samples: the checks name them
            mean = block.mean(axis=0, dtype=np.float64)
            if not np.isfinite(mean).all():  # only then is there a NaN or infinite sample to count
                self.non_finite += block.size - int(np.count_nonzero(np.isfinite(block)))
            # The mono mix's energy: a sum of squares (never below 0, however nearly the channels cancel), of
            # the channels' float32 sum (exact to ~1e-7 of the samples), over channels squared.
            mix = block[:, 0] if block.shape[1] == 1 else block @ np.ones(block.shape[1], block.dtype)
            self.mix_energy += float(np.dot(mix, mix)) / block.shape[1] ** 2
            deviations = block - mean.astype(np.float32)
            spread = np.einsum("ij,ij->j", deviations, deviations, dtype=np.float64)
        if self.count == 0:
            self.count, self.mean, self.spread = len(block), mean, spread
            return
        total = self.count + len(block)
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, once such samples came in
            delta = mean - self.mean
            self.spread = self.spread + spread + delta ** 2 * self.count * len(block) / total
            self.mean = self.mean + delta * len(block) / total
        self.count = total

    def mix_rms(self) -> float:
        """RMS of the mono mix (the channels' mean) of the samples taken in; 0 for none."""
        return math.sqrt(self.mix_energy / self.count) if self.count else 0.0

    def rms_without_offset(self) -> tuple[float, float]:
        """(RMS once each channel's mean is removed, the largest |mean|); (0, 0) for no samples."""
        if self.count == 0:
            return 0.0, 0.0
        rms = float(np.sqrt(self.spread.sum() / (self.count * len(self.spread))))
        return rms, float(np.abs(self.mean).max())


# Audio files libsndfile cannot read, decoded by FFmpeg through PyAV instead: MPEG-4 audio (AAC, ALAC), Windows
# Media audio (WMA 1 and 2, Pro, Lossless), WavPack, a raw AAC stream (ADTS, whose length FFmpeg estimates from
# its bitrate: render does not judge it cut short by that length); and MP3, which libsndfile 1.2.2 reads wrong
# block by block (each read after the first garbles the next frame or two, up to 0.36 off on a 0.3 sine: 3.6 %
# of the samples at blocks of 2^16 frames; read whole, it gives FFmpeg's samples to 1.4e-6, at the same offset).
FFMPEG_EXTENSIONS = (".m4a", ".wma", ".wv", ".aac", ".mp3")
# FFmpeg's sample formats (packed or planar) -> the scale that takes them to -1 .. 1, and the offset first.
_FFMPEG_SCALES = {"u8": (2.0 ** -7, 128.0), "s16": (2.0 ** -15, 0.0), "s32": (2.0 ** -31, 0.0),
                  "s64": (2.0 ** -63, 0.0), "flt": (1.0, 0.0), "dbl": (1.0, 0.0)}
# Frames of a file whose header gives no length: libsndfile's count for one (a FLAC's 0), and FFmpeg's reader's.
UNKNOWN_LENGTH = 2 ** 63 - 1


class FFmpegDecodeError(Exception):
    """FFmpeg could not open or decode an audio file; ``error_string`` is its words, without the file's name."""

    def __init__(self, words: str):
        super().__init__(words)
        self.error_string = words

    @classmethod
    def of(cls, error) -> FFmpegDecodeError:
        """PyAV's ``av.FFmpegError`` in FFmpeg's words alone (its text would name the file)."""
        return cls(error.strerror or type(error).__name__)


ASF_FILE_PROPERTIES_GUID = bytes.fromhex("a1dcab8c47a9cf118ee400c00c205365")
ASF_HEAD_BYTES = 1 << 16  # read for the header objects before the file properties


def asf_seconds(head: bytes) -> float | None:
    """The length an ASF (.wma) file's header declares, seconds (its play duration less its preroll), from its
    first bytes ``head``; None for another kind of file, a broadcast (whose durations mean nothing) or a header
    that does not hold one. FFmpeg reports a length estimated from the file's size when the file is shorter
    than its header says: the declared one tells that such a file was cut short."""
    if not head.startswith(ASF_HEADER) or len(head) < 30:
        return None
    header_size, count = struct.unpack_from("<QI", head, 16)
    at, end = 30, min(header_size, len(head))
    for _ in range(count):
        if at + 24 > end:
            return None
        guid, size = head[at:at + 16], struct.unpack_from("<Q", head, at + 16)[0]
        if guid == ASF_FILE_PROPERTIES_GUID:
            if size < 104 or at + 104 > end:
                return None
            play, _, preroll, flags = struct.unpack_from("<QQQI", head, at + 64)
            seconds = play / 1e7 - preroll / 1e3
            return None if flags & 1 or seconds <= 0 else seconds
        if size < 24:
            return None
        at += size
    return None


def adts_shortfall(data: bytes) -> int:
    """The bytes a raw AAC stream (ADTS frames, perhaps after an ID3v2 tag) lacks to end on a whole frame: 0 for
    a stream whose frames each fit in it (or one whose frames cannot be followed: damage that is not a cut, or
    bytes after the last frame that start none). Such a stream declares no length; a copy cut short ends inside
    a frame, which FFmpeg drops without a word."""
    at = frames_start(io.BytesIO(data))[1]  # after an ID3 tag and padding, as an MP3's
    while at + 7 <= len(data):
        if not is_adts(data[at:at + 2]):
            return 0  # not a frame where one should start: not followed further
        length = (data[at + 3] & 3) << 11 | data[at + 4] << 3 | data[at + 5] >> 5
        if length < 7:
            return 0
        at += length
    if at >= len(data):
        return at - len(data)  # its last frame cut (0: whole)
    tail = data[at:]  # fewer than a header's 7 bytes: a header cut, if they start one
    return at + 7 - len(data) if tail[:1] == b"\xff" and (len(tail) < 2 or is_adts(tail)) else 0


class _SeekGuard:
    """A binary file as FFmpeg reads it through PyAV, whose seek to an impossible place (a damaged header's
    offset, before the start) is an error FFmpeg hears, not a Python exception PyAV would raise instead of its
    own (and print as "dropped" on the way)."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return self._raw.seek(offset, whence)
        except (OSError, ValueError, OverflowError):
            return -errno.EINVAL

    def tell(self) -> int:
        return self._raw.tell()


class _FromOffset:
    """A binary file as seen from ``start`` on (its byte ``start`` is byte 0): FFmpeg reads an MP3 from its first
    frame when zero bytes come before it."""

    def __init__(self, raw: BinaryIO, start: int):
        self._raw, self._start = raw, start
        raw.seek(start)

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            if offset < 0:
                raise ValueError(f"negative seek position {offset}")
            offset += self._start
        return self._raw.seek(offset, whence) - self._start

    def tell(self) -> int:
        return self._raw.tell() - self._start


def padded_mp3_start(raw: BinaryIO) -> int | None:
    """Where an MP3's first frame starts (an offset in ``raw``, read from its current position, which is kept)
    when zero bytes, a stream's padding (up to MP3_PADDING, after an ID3 tag or not), come before it; None when
    none do. FFmpeg takes a Xing, Info or VBRI header (the length, the encoder's delay) only from a first frame
    where it looks for one: after padding it guessed the length from the bitrate (an 8 s file as 11.9 s, then
    "cut short") and kept the delay."""
    tag, frames = frames_start(raw)
    return raw.tell() + frames if frames > tag and is_mpeg_frame(first_bytes_of_frames(raw, 2)) else None


class FFmpegAudioFile:
    """The part of ``soundfile.SoundFile`` that decoding reads (``samplerate``, ``channels``, ``frames``,
    ``read``), for a file of FFMPEG_EXTENSIONS: its first audio stream decoded by FFmpeg (PyAV), a packet at a
    time, as float32 [n, channels] whatever its sample format. ``frames`` comes from the container's duration
    (UNKNOWN_LENGTH when it gives none), an estimate as for any compressed format; an encoder's priming
    samples, when the file's edit list does not drop them, are part of what it decodes."""

    def __init__(self, source: str | Path | BinaryIO):
        import av

        # The file is opened here (a name that is not UTF-8 too) and FFmpeg reads it as a stream: its messages
        # then name no file, and a report stays the same on every machine.
        self._owned = None if hasattr(source, "read") else open(source, "rb")
        self._container = None
        try:
            self._open(av, source)
        except av.FFmpegError as error:
            self.close()
            raise FFmpegDecodeError.of(error) from None
        except BaseException:
            self.close()
            raise

    def _open(self, av, source) -> None:
        raw = self._owned or source
        start = raw.tell()
        declared = asf_seconds(raw.read(ASF_HEAD_BYTES))
        raw.seek(start)
        first_frame = padded_mp3_start(raw)
        if first_frame is not None:
            raw = _FromOffset(raw, first_frame)
        # Tags are never read here: one in another encoding than UTF-8 (a Latin-1 title) must not stop the music.
        self._container = av.open(_SeekGuard(raw), "r", metadata_errors="replace")
        if not self._container.streams.audio:
            raise FFmpegDecodeError("the file holds no audio stream")
        stream = self._container.streams.audio[0]
        if stream.codec_context is None:  # FFmpeg has no decoder for it (or its codec tag is damaged)
            raise FFmpegDecodeError("no decoder for its audio stream (an unknown or damaged codec)")
        self.samplerate = int(stream.codec_context.sample_rate or stream.rate or 0)
        self.channels = int(stream.codec_context.channels)
        if self.samplerate <= 0 or self.channels <= 0:
            raise FFmpegDecodeError(f"its audio stream gives {self.samplerate} Hz and {self.channels} channels")
        seconds = declared or (float(stream.duration * stream.time_base) if stream.duration and stream.time_base
                               else self._container.duration / 1e6 if self._container.duration else None)
        self.frames = UNKNOWN_LENGTH if seconds is None else int(round(seconds * self.samplerate))
        self._frames = self._container.decode(stream)
        self._pending: list[np.ndarray] = []
        self._pending_frames = 0
        self._ended = False
        self._error: FFmpegDecodeError | None = None  # a decoding error, raised once the frames before it are read

    def _next(self) -> np.ndarray | None:
        """The next decoded frame as float32 [n, channels]; None at the end of the stream."""
        import av

        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except av.FFmpegError as error:
            raise FFmpegDecodeError.of(error) from None
        kind = frame.format.name.rstrip("p")  # "fltp" -> "flt"
        if kind not in _FFMPEG_SCALES:
            raise FFmpegDecodeError(f"unknown sample format {frame.format.name}")
        if frame.sample_rate != self.samplerate:  # it would be resampled from the wrong rate
            raise FFmpegDecodeError(f"its sample rate changes from {self.samplerate} to {frame.sample_rate} Hz "
                                    "mid-stream")
        samples = frame.to_ndarray()  # planar: [channels, n]; packed: [1, n * channels]
        samples = samples.T if frame.format.is_planar else samples.reshape(-1, self.channels)
        if samples.shape[1] != self.channels:
            raise FFmpegDecodeError(f"its channels change from {self.channels} to {samples.shape[1]} mid-stream")
        scale, offset = _FFMPEG_SCALES[kind]
        if scale == 1.0:
            return np.ascontiguousarray(samples, dtype=np.float32)
        return ((samples.astype(np.float64) - offset) * scale).astype(np.float32)

    def read(self, frames: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        """Up to ``frames`` frames, float32 [n, channels]; fewer only at the end of the stream, or before a
        decoding error, which the next call raises."""
        if self._error is not None and not self._pending_frames:
            raise self._error
        while self._pending_frames < frames and not self._ended and self._error is None:
            try:
                block = self._next()
            except FFmpegDecodeError as error:  # the frames decoded before it are given first (a file cut short)
                self._error = error
                if not self._pending_frames:
                    raise
                break
            if block is None:
                self._ended = True
            elif len(block):
                self._pending.append(block)
                self._pending_frames += len(block)
        joined = np.concatenate(self._pending) if self._pending else np.zeros((0, self.channels), np.float32)
        taken, rest = joined[:frames], joined[frames:]
        self._pending, self._pending_frames = ([rest] if len(rest) else []), len(rest)
        return taken

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self) -> FFmpegAudioFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def decoded_by_ffmpeg(source: str | Path | BinaryIO, suffix: str | None = None) -> bool:
    """Whether FFmpeg, not libsndfile, reads ``source``: ``suffix`` (the kind of file it is read as; default a
    path's own extension) is one of FFMPEG_EXTENSIONS."""
    if suffix is None and not hasattr(source, "read"):
        suffix = Path(source).suffix
    return (suffix or "").lower() in FFMPEG_EXTENSIONS


def open_audio(source: str | Path | BinaryIO, suffix: str | None = None):
    """An open audio file to read block by block: a ``soundfile.SoundFile``, or for a file FFmpeg reads
    (:func:`decoded_by_ffmpeg`) an :class:`FFmpegAudioFile`."""
    if decoded_by_ffmpeg(source, suffix):
        return FFmpegAudioFile(source)
    import soundfile

    return soundfile.SoundFile(soundfile_source(source))


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples float32 [n, channels], sample rate in Hz) of an audio file, through libsndfile."""
    import soundfile

    return soundfile.read(soundfile_source(path), dtype="float32", always_2d=True)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """float32 [n] or [n, channels] from ``from_rate`` to ``to_rate`` Hz with soxr (HQ).

    Returned unchanged when the rates agree or there are no samples.
    """
    if from_rate == to_rate or len(samples) == 0:
        return samples
    import soxr

    return soxr.resample(samples, from_rate, to_rate, quality="HQ").astype(np.float32)


def error_words(error: BaseException) -> str:
    """A decoding error in words that depend on the file's content alone (at most 200 characters): libsndfile's
    own words, without soundfile's "Error opening <name>: " (the record names the file, and an in-memory file's
    address, different every run, or a path, different on every machine, would make reports differ)."""
    return f"{type(error).__name__}: {getattr(error, 'error_string', None) or error}"[:200]


def soundfile_source(path: str | Path | BinaryIO) -> str | bytes | BinaryIO:
    """What soundfile opens: an open binary file as it is, a path as text, or as the file system's bytes when
    the name is not UTF-8 (Python keeps such a name with surrogates, which libsndfile cannot take as text;
    as text a name reads as itself in libsndfile's messages)."""
    if hasattr(path, "read"):
        return path
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def audio_header(path: str | Path | BinaryIO, suffix: str | None = None) -> tuple[int, int]:
    """(frames, sample rate in Hz) from an audio file's header (its path or an open binary file), without
    decoding a sample; ``suffix`` as in :func:`open_audio`."""
    if decoded_by_ffmpeg(path, suffix):
        with FFmpegAudioFile(path) as handle:
            return handle.frames, handle.samplerate
    import soundfile

    info = soundfile.info(soundfile_source(path))
    return int(info.frames), int(info.samplerate)


def read_blocks(handle, stopped_by: list[str] | None = None,
                block_frames: int = DECODE_BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """An open ``soundfile.SoundFile``'s (or :class:`FFmpegAudioFile`'s) frames as float32 [n, channels]
    blocks of ``block_frames``, the last one shorter (perhaps empty).  ``stopped_by``, when given, makes a read
    error after the first block the end of the file (one cut short mid-stream): the error's text is appended to
    it, and the block it stopped is lost (smaller blocks lose less; FFmpeg's gives the frames before the error
    first, and ends there)."""
    import soundfile

    read = 0
    while True:
        try:
            block = handle.read(block_frames, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, FFmpegDecodeError) as error:
            if stopped_by is None or read == 0:
                raise
            stopped_by.append(f"{type(error).__name__}: {error}")
            block = np.zeros((0, handle.channels), np.float32)
        read += len(block)
        yield block
        if len(block) < block_frames:
            return


def decode_audio(path: str | Path | BinaryIO, sample_rate: int, channels: int,
                 max_seconds: float = math.inf, level: Level | None = None,
                 stopped_by: list[str] | None = None, offset: np.ndarray | None = None,
                 block_frames: int = DECODE_BLOCK_FRAMES, zero_non_finite: bool = False,
                 suffix: str | None = None) -> np.ndarray:
    """Decode an audio file block by block, resampled to ``sample_rate`` Hz and mixed to ``channels``
    (``suffix``: the kind of file it is read as, :func:`open_audio`).

    Returns float32 [channels, n] (channels 1: the mean of the file's channels;
    2: its first two, a mono file doubled).  Memory stays at the result plus
    one block: each block is resampled with a streaming soxr resampler (the
    same samples as resampling the whole file at once) and mixed before the
    next is read.  Raises :class:`AudioTooLong` as soon as the file holds more
    than ``max_seconds`` of audio, whatever its header claims, and libsndfile's
    (FFmpegDecodeError: FFmpeg's) errors for a file it cannot read.  ``level``, when given, takes in the
    file's own samples, before resampling.  ``stopped_by``, when given, keeps
    what was decoded before a read error (a file cut short mid-stream): the
    error's text is appended to it and the audio up to there returned.
    ``offset`` (float [file channels]), when given, is taken from each channel before ``level`` sees it and
    before resampling (a constant offset removed there leaves no ringing at the edges, as after the filter).
    ``zero_non_finite``: NaN and infinite samples are set to 0 first (the resampling filter would spread each
    one over its neighbours).
    """
    parts: list[np.ndarray] = []
    with open_audio(path, suffix) as handle:
        file_rate = handle.samplerate
        allowed = math.inf if math.isinf(max_seconds) else int(max_seconds * file_rate)
        stream = None
        if file_rate != sample_rate:
            import soxr

            stream = soxr.ResampleStream(file_rate, sample_rate, handle.channels, dtype="float32", quality="HQ")
        read = 0
        for block in read_blocks(handle, stopped_by, block_frames):  # [n, file channels]
            read += len(block)
            if offset is not None:
                block = block - offset.astype(np.float32)
            if zero_non_finite:  # after the offset is out: a mended sample is silence, not a click at -offset
                block = np.where(np.isfinite(block), block, np.float32(0.0))
            if level is not None:
                level.add(block)
            if read > allowed:
                raise AudioTooLong(f"the audio lasts more than {max_seconds:g} s")
            last = len(block) < block_frames
            if stream is not None:
                block = stream.resample_chunk(block, last=last)
            if len(block):
                parts.append(to_channels(block.T, channels))
            if last:
                break
    if not parts:
        return np.zeros((channels, 0), np.float32)
    joined = np.concatenate(parts)  # [n] or [n, 2]
    return joined[np.newaxis] if channels == 1 else np.ascontiguousarray(joined.T)


def to_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """float32 [c, n] -> float32 [n] (channels=1, the mean) or [n, 2] (channels=2)."""
    if channels == 1:
        mono = audio[0].copy() if len(audio) else np.zeros(0, np.float32)
        for channel in audio[1:]:
            mono += channel
        return mono * np.float32(1.0 / max(len(audio), 1))
    if audio.shape[0] == 1:
        audio = np.repeat(audio, 2, axis=0)
    return np.ascontiguousarray(audio[:2].T)


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """float32 [n] or [n, channels] as the bytes of a 16-bit PCM WAV file ."""
    import soundfile

    if audio.size and max(float(audio.max()), -float(audio.min())) > 1.0:  # no |audio| copy
        audio = np.clip(audio, -1.0, 1.0)
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def wav_damage(path: str | Path) -> str | None:
    """Why the WAV file at ``path`` is not whole, in words, or None when it is.

    Checks what libsndfile forgives: it reads a cut-off file's remaining
    samples without complaint, so a truncated file is found by comparing the
    size its ``data`` chunk declares with the bytes present.  Reads the
    chunk headers only.
    """
    path = Path(path)
    if not path.is_file():
        return "missing"
    try:
        handle = open(path, "rb")
    except OSError as error:
        return f"unreadable ({error.strerror})"
    with handle:
        return _riff_damage(handle, path.stat().st_size)


def wav_bytes_damage(data: bytes) -> str | None:
    """:func:`wav_damage` of a WAV file's bytes."""
    return _riff_damage(io.BytesIO(data), len(data))


def wav_data_sizes(path: str | Path, data: bytes | None = None) -> tuple[int, int] | None:
    """(bytes a WAV file's ``data`` chunk declares, bytes of it present) of the file at ``path`` (or of its
    bytes, ``data``), None when it is no RIFF/WAVE file or has no data chunk."""
    if data is not None:
        sizes = _riff_data(io.BytesIO(data), len(data))
    else:
        with open(path, "rb") as handle:
            sizes = _riff_data(handle, Path(path).stat().st_size)
    return sizes if isinstance(sizes, tuple) else None


class PatchedFile(io.RawIOBase):
    """A seekable binary file that reads as ``raw`` (an open file of ``size`` bytes) with some bytes replaced:
    ``patches`` maps an offset to the bytes read there instead. Nothing is copied but the patches."""

    def __init__(self, raw: BinaryIO, size: int, patches: dict[int, bytes]) -> None:
        super().__init__()
        self._raw, self._size, self._patches, self._position = raw, size, patches, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        self._raw.seek(self._position)
        count = self._raw.readinto(buffer)
        view = memoryview(buffer)
        for at, patch in self._patches.items():
            low, high = max(at, self._position), min(at + len(patch), self._position + count)
            if low < high:
                view[low - self._position:high - self._position] = patch[low - at:high - at]
        self._position += count
        return count


def _chunks(handle: BinaryIO, start: int, size: int) -> Iterator[tuple[bytes, int, int]]:
    """(id, position, declared length) of each RIFF chunk from ``start`` on, while a chunk header fits."""
    position = start
    while position + 8 <= size:
        handle.seek(position)
        chunk, length = struct.unpack("<4sI", handle.read(8))
        yield chunk, position, length
        position += 8 + length + (length & 1)  # chunks are padded to an even size


def unfinished_wav_patches(handle: BinaryIO, size: int) -> dict[int, bytes] | None:
    """The header bytes that make a WAV file whose header was never finished readable to its end, or None.

    A recorder (or any program) killed mid-take leaves its data chunk's size 0 with the samples after it, which
    libsndfile reads as no frames; the patches give the data chunk (and the RIFF chunk) the sizes of what the
    file holds. A data chunk that is truly empty is followed by nothing, or by whole chunks to the end of the
    file (a LIST of tags): None for it, as for any other file.
    """
    handle.seek(0)
    header = handle.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return None
    for chunk, position, length in _chunks(handle, 12, size):
        if chunk != b"data":
            continue
        after = position + 8
        if length != 0 or size - after < 64:  # a few stray bytes are no take
            return None
        end = after
        for following, at, following_length in _chunks(handle, after, size):
            if not all(0x20 <= byte <= 0x7E for byte in following):
                break  # samples, not a chunk id
            end = at + 8 + following_length + (following_length & 1)
        else:
            if end in (size, size + 1):  # whole chunks to the end (the last one's pad byte may be missing)
                return None
        return {4: struct.pack("<I", min(size - 8, 0xFFFFFFFF)),
                position + 4: struct.pack("<I", min(size - after, 0xFFFFFFFE))}
    return None


def _riff_damage(handle, size: int) -> str | None:
    sizes = _riff_data(handle, size)
    if not isinstance(sizes, tuple):
        return sizes
    declared, present = sizes
    if declared > present:
        return f"truncated (its data chunk declares {declared} bytes, {present} are present)"
    return None


def _riff_data(handle, size: int) -> tuple[int, int] | str:
    """(bytes the data chunk declares, bytes present after its header), or what is wrong in words."""
    header = handle.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return "not a WAV file (no RIFF/WAVE header)"
    for chunk, position, length in _chunks(handle, 12, size):
        if chunk == b"data":
            return length, size - position - 8
    return "truncated (no data chunk)"

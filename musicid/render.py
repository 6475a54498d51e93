"""Per-file work of the render stage: render (MIDI) or decode (audio) one source, check it, write its WAVs.

Every source ends as ``rendered``, ``recovered`` (usable after a repair: see
:mod:`musicid.midi`, and the re-serialisation through mido below) or
``rejected`` with a machine-readable reason (listed in :mod:`musicid.checks`).

``render.timeout_s`` bounds the wall time of one source as a whole: reading and
repairing a MIDI file with mido, every render (one per SoundFont) and a retry.

Output names.  A source's track id is the safe name of its path inside the
label folder without the extension (``a/sub/x.mid`` -> ``sub__x``).  When two
sources of one label would get the same id (``x.mid`` and ``x.wav``, names
that differ only in characters a file name cannot keep, or only in case, which
a case-insensitive file system (macOS, Windows) cannot hold apart), each keeps
its extension (``x_mid``, ``x_wav``), and if that still collides, a hash of
its path.  The same holds for any two output names that would clash (an audio
file named like another source's per-SoundFont WAV).  So every source gets its
own WAVs, and the names depend only on the set of source names, never on the
order of work.  A MIDI file gets one WAV per
SoundFont (``<id>__<soundfont>.wav`` when there are several); every name fits
the 255-byte limit of file systems.

Augmentation.  With ``render.augment.copies`` > 0, every MIDI source gets
that many extra renders, ``<id>__aug<k>.wav``, each of the source transformed
as :mod:`musicid.augment` draws it, listed in the record's ``augmented``
list.  A copy that fails its checks is left out (``augment_rejected``) and
nothing of it is written; the plain renders never depend on the copies.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, NamedTuple, TypeVar

import numpy as np

from musicid.augment import Augmentation, apply_augmentation, draw_augmentation
from musicid.audio import (DECODE_BLOCK_FRAMES, UNKNOWN_LENGTH, AudioTooLong, Level, PatchedFile, adts_shortfall,
                           audio_header, decode_audio, decoded_by_ffmpeg, error_words, non_finite_problem, to_channels,
                           unfinished_wav_patches, wav_bytes, wav_data_sizes)
from musicid.checks import (MAX_AUDIO_PEAK, RenderError, check_audio_header, cut_after_last_loud,
                            peak_level, validate_audio)
from musicid.deadline import call_with_limit
from musicid.filetypes import AUDIO_EXTENSIONS, MIDI_EXTENSIONS, WAV_EXTENSIONS, first_bytes_of_frames
from musicid.io import safe_name, write_bytes_atomic
from musicid.midi import midi_end_time, read_midi, reserialize_midi
from musicid.params import RenderParams
from musicid.synth import TAIL_SECONDS, FluidSynthUnavailable, MidiRenderer

T = TypeVar("T")

__all__ = ["FluidSynthUnavailable", "RenderTask", "Rendered", "assign_outputs", "crashed", "finish_render",
           "init_worker", "load_source", "output_names", "render_one", "write_rendered"]

# Failures a stricter-than-usual MIDI player can cause on a file that mido reads.
RECOVERABLE = ("empty_render", "duration_mismatch", "silent")
HIGH_BAND_SHARE = 0.1  # a file whose resampled RMS is under this share of its own lies above the rendered band
TRACK_ID_BYTES = 200  # room left for "__<soundfont>.wav" (or "__aug<k>.wav") within 255 bytes
SOUNDFONT_SUFFIX_BYTES = 40

_worker_renderer: MidiRenderer | None = None


class Loaded(NamedTuple):
    """What :func:`load_source` gives for one source."""

    renders: list[np.ndarray]  # audio float32 [channels, n] at render.sample_rate Hz, one per output
    repairs: list[str]  # what was repaired to use the source: empty for a whole one
    programs: tuple[int, ...] | None  # a MIDI file's programs heard (musicid.midi.MidiSource); None for audio


def init_worker(render: RenderParams, midi: bool = True) -> None:
    """Load the SoundFonts (those of render.augment too) once in this process (a pool initializer); with
    ``midi`` False (a collection of recordings alone) FluidSynth is not loaded, nor any SoundFont."""
    global _worker_renderer
    _worker_renderer = MidiRenderer(render, augment=True) if midi else None


@dataclass(frozen=True)
class RenderTask:
    """Everything one source's render needs, files included: a worker reads and writes nothing shared."""

    source: str  # path relative to the raw data directory, e.g. "bach/bwv1.6.mid"
    label: str
    data: bytes  # the source file's bytes (for a worker on another machine); b"" with ``file``
    output_names: tuple[str, ...]  # relative WAV paths: one per SoundFont for MIDI, one for audio
    render: RenderParams
    augmented_names: tuple[str, ...] = ()  # relative WAV paths of the render.augment.copies extra renders (MIDI)
    file: str = ""  # where a local worker reads the source itself, so the stage does not hold every file in flight


@dataclass(frozen=True)
class Rendered:
    """What rendering one source gives: its report record and the bytes of each WAV it names."""

    record: dict
    wavs: tuple[tuple[str, bytes], ...]  # (relative WAV path, 16-bit PCM WAV file bytes), outputs then copies


def _stem_id(source: str) -> str:
    stem = source.rsplit(".", 1)[0] if "." in Path(source).name else source
    return safe_name(stem.replace("/", "__"), TRACK_ID_BYTES)


def _id_with_extension(source: str) -> str:
    stem, _, extension = source.rpartition(".")
    return safe_name(f"{stem.replace('/', '__')}_{extension}", TRACK_ID_BYTES)


def _id_with_hash(source: str, attempt: int) -> str:
    digest = hashlib.sha256(f"{source}\0{attempt}".encode() if attempt else source.encode()).hexdigest()[:12]
    return f"{safe_name(_id_with_extension(source), TRACK_ID_BYTES - len(digest) - 1)}-{digest}"


def assign_outputs(label: str, sources: list[str], soundfonts: list[str]) -> dict[str, tuple[str, ...]]:
    """The WAV paths of each source of one label: ``sources`` are paths inside the label folder (``sub/x.mid``).

    Every source gets names no other source of the label has (see the module
    docstring for the rule); they depend only on the set of names.
    """
    return {source: plain for source, (plain, _) in assign_all_outputs(label, sources, soundfonts, 0).items()}


def assign_all_outputs(label: str, sources: list[str], soundfonts: list[str],
                       copies: int) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Each source's (plain WAV paths, augmented WAV paths): ``copies`` augmented ones per MIDI source.

    As :func:`assign_outputs`, with the augmented names (see
    :func:`augmented_names`) counted among the names no two sources may
    share; with ``copies`` 0 the plain names are those of :func:`assign_outputs`.
    """
    ids = {source: _stem_id(source) for source in sources}
    for attempt in range(len(sources) + 2):
        names = {}
        for source in sources:
            is_midi = Path(source).suffix.lower() in MIDI_EXTENSIONS
            names[source] = (output_names(label, ids[source], soundfonts, is_midi),
                             augmented_names(label, ids[source], soundfonts, copies if is_midi else 0))
        # Compared case-folded: on macOS or Windows ``Tone.wav`` would overwrite ``tone.wav``.
        counts = Counter(name.casefold() for plain, augmented in names.values() for name in plain + augmented)
        clashing = [source for source in sources
                    if any(counts[name.casefold()] > 1 for name in sum(names[source], ()))]
        if not clashing:
            return names
        for source in clashing:
            ids[source] = _id_with_extension(source) if attempt == 0 else _id_with_hash(source, attempt - 1)
    raise AssertionError(f"output names of label {label!r} still clash after hashing")  # a bug, not bad input


def augmented_names(label: str, track_id: str, soundfonts: list[str], copies: int) -> tuple[str, ...]:
    """Relative WAV paths of a MIDI source's augmented renders: ``<label>/<id>__aug<k>.wav``, k = 1 .. copies.

    The marker ``aug`` takes an underscore more while a SoundFont's suffix
    (``<id>__<soundfont>.wav``, with several SoundFonts) would be the same as
    a copy's name, so that a source's names never clash among themselves.
    """
    suffixes = {suffix.casefold() for suffix in soundfont_suffixes(soundfonts)} if len(soundfonts) > 1 else set()
    marker = "aug"
    while any(f"{marker}{copy}" in suffixes for copy in range(1, copies + 1)):
        marker += "_"
    return tuple(f"{label}/{track_id}__{marker}{copy}.wav" for copy in range(1, copies + 1))


def soundfont_suffixes(soundfonts: list[str]) -> list[str]:
    """One short, distinct name per SoundFont for output names (its file stem; an index when stems repeat, in
    any case: ``GM`` and ``gm`` would name one file on macOS or Windows)."""
    stems = [safe_name(Path(path).stem, SOUNDFONT_SUFFIX_BYTES) for path in soundfonts]
    counts = Counter(stem.casefold() for stem in stems)
    return [f"{stem}-{index}" if counts[stem.casefold()] > 1 else stem for index, stem in enumerate(stems)]


def output_names(label: str, track_id: str, soundfonts: list[str], is_midi: bool) -> tuple[str, ...]:
    """Relative WAV paths of one source: ``<label>/<id>.wav``, or one per SoundFont for MIDI with several."""
    if len(soundfonts) == 1 or not is_midi:
        return (f"{label}/{track_id}.wav",)
    return tuple(f"{label}/{track_id}__{suffix}.wav" for suffix in soundfont_suffixes(soundfonts))


def with_time_limit(deadline: float, function: Callable[..., T], /, *args, **kwargs) -> T:
    """``function(*args, **kwargs)``, or :class:`RenderError` ``timeout`` once ``time.monotonic()`` passes ``deadline``.

    Parsing a MIDI file runs in mido's pure-Python loops; see
    :func:`musicid.deadline.call_with_limit` for how they are interrupted.
    Only Python code runs under this limit (never FluidSynth).
    """
    if deadline - time.monotonic() <= 0:
        raise RenderError("timeout", "no time left for this file")
    return call_with_limit(deadline, lambda: RenderError(
        "timeout", "reading the file took longer than render.timeout_s"), function, *args, **kwargs)


def finish_render(audio: np.ndarray, sample_rate: int, end_seconds: float, trim_db: float) -> np.ndarray:
    """Cut a render to the MIDI's end plus the release tail, then trim trailing silence.

    Notes left without a note-off ring (and the player can run on after the
    last note); nothing past ``end_seconds + TAIL_SECONDS`` belongs to the
    piece.  Silence is judged against the render's peak: frames after the last
    one within ``trim_db`` dB of it are dropped.  audio: float32 [channels, n].
    """
    limit = int(round((end_seconds + TAIL_SECONDS) * sample_rate))
    audio = audio[:, :limit]
    if audio.shape[1] == 0:
        return audio
    peak = peak_level(audio)
    if peak == 0 or not np.isfinite(peak):
        return audio
    return cut_after_last_loud(audio, peak * 10 ** (trim_db / 20))


def _render_validated(renderer: MidiRenderer, midi: Path | bytes, index: int, expected: float,
                      render: RenderParams, deadline: float) -> np.ndarray:
    audio = renderer.render(midi, index, stop_after_s=expected + TAIL_SECONDS,
                            timeout_s=deadline - time.monotonic())
    audio = finish_render(audio, renderer.sample_rate, expected, render.trim_db)
    validate_audio(audio, renderer.sample_rate, render.min_rms, expected_seconds=expected)
    return audio


def render_midi_source(renderer: MidiRenderer, path: Path, render: RenderParams,
                       deadline: float, data: bytes | None = None) -> Loaded:
    """Render one MIDI file with every SoundFont; returns its renders, what was repaired and its programs.

    ``data``: the file's bytes, when they are at hand (``path`` is then not read).
    When FluidSynth's player gives empty, truncated or silent audio for a file
    that mido reads, the file is written again through mido and rendered once
    more; if that validates, the source counts as recovered.
    """
    source = with_time_limit(deadline, read_midi, path if data is None else data, program=render.program)
    expected = source.end_seconds
    if expected > render.max_seconds:
        raise RenderError("too_long", f"the notes last {expected:.0f} s (render.max_seconds "
                                      f"{render.max_seconds:g})")
    repairs = list(source.repairs)
    # FluidSynth's player reads the file itself when nothing was changed, else the changed bytes (from memory).
    midi: Path | bytes = source.data if repairs or source.rewritten_by_mido or data is not None else path
    rewritten = source.rewritten_by_mido
    renders = []
    for index in range(renderer.n_soundfonts):
        try:
            renders.append(_render_validated(renderer, midi, index, expected, render, deadline))
            continue
        except RenderError as error:
            if error.reason not in RECOVERABLE or rewritten:
                raise
            first = error
        try:
            midi = with_time_limit(deadline, reserialize_midi, source.data)
        except RenderError as error:
            if error.reason == "timeout":
                raise
            raise first from None  # mido could read it but not write it: keep the first reason
        rewritten = True
        try:
            renders.append(_render_validated(renderer, midi, index, expected, render, deadline))
        except RenderError as second:
            if second.reason == "timeout":
                raise
            if (second.reason, second.detail) == (first.reason, first.detail):  # the file, not the player
                raise RenderError(first.reason, f"{first.detail} (the same re-serialized with mido)") from None
            raise RenderError(first.reason, f"{first.detail}; re-serialized with mido: "
                                            f"{second.reason}: {second.detail}") from None
        repairs.append(f"FluidSynth's player gave {first.reason}; re-serialized with mido")
    return Loaded(renders, repairs, source.programs)


def render_augmented(renderer: MidiRenderer, path: Path, render: RenderParams, source: str,
                     copy: int, data: bytes | None = None) -> tuple[Augmentation, np.ndarray]:
    """Render copy ``copy`` (1 ..) of the MIDI file ``path`` (``source`` in data/raw; ``data``: its bytes,
    when at hand) with its drawn transform.

    Returns (the transform, audio float32 [2, n] at ``render.sample_rate`` Hz),
    checked as a plain render is; raises :class:`RenderError` when the copy
    is unusable (e.g. ``no_notes`` when the transposition pushed every note
    out of range, ``too_long`` when the slower tempo passes
    render.max_seconds).  A copy has its own ``render.timeout_s``.
    """
    import mido

    deadline = time.monotonic() + render.timeout_s
    augmentation = draw_augmentation(render.augment, render.soundfonts, source, copy)

    def transform() -> tuple[bytes, float]:
        # The source as its plain render reads it (repairs, render.program), then transformed.
        source = read_midi(path if data is None else data, program=render.program)
        midi = mido.MidiFile(file=io.BytesIO(source.data), clip=True)
        apply_augmentation(midi, augmentation)
        transformed = io.BytesIO()
        midi.save(file=transformed)
        return transformed.getvalue(), midi_end_time(transformed.getvalue())

    transformed, expected = with_time_limit(deadline, transform)
    if expected > render.max_seconds:
        raise RenderError("too_long", f"the notes last {expected:.0f} s at tempo x{augmentation.tempo:g} "
                                      f"(render.max_seconds {render.max_seconds:g})")
    audio = _render_validated(renderer, transformed, renderer.soundfont_index(augmentation.soundfont),
                              expected, render, deadline)
    return augmentation, audio


# A constant offset of at least 1e-3 (-60 dBFS) and a tenth of the signal's RMS is taken out of an audio source:
# it is no music, it can push samples past full scale, and clip's level measures and normalisation would count it
# as sound. (A mean of loud music over a few seconds can reach 1e-3 without any offset: it stays.)
OFFSET_REMOVED_FROM, OFFSET_SHARE = 1e-3, 0.1
# More than this share of a float file's own samples beyond full scale (a file mastered hot): it is scaled down to
# full scale rather than clipped. A resampler's overshoot on a loud master is clipped as it is written.
CLIPPED_SHARE_SCALED = 0.01
UNKNOWN_LENGTH_BLOCK_FRAMES = 1024  # frames decoded at a time from a file of unknown length
CUT_SHORT_FRACTION = 0.02  # an audio file that decodes to this much less than its header declares
CUT_SHORT_SECONDS = 0.5    # (and by this many seconds) was cut short: compressed formats' headers are estimates
# Formats whose length is estimated (an MP3 without a Xing, Info or VBRI header: from its first frame's bitrate;
# ADTS: FFmpeg's, from the mean bitrate), which a whole file can fall short of.
ESTIMATED_LENGTH = (".mp3", ".aac")


def load_audio_source(path: Path, render: RenderParams, data: bytes | None = None, suffix: str | None = None,
                      ) -> tuple[np.ndarray, list[str]]:
    """Decode one audio file (from ``data``, its bytes, when given), checking its header first; ``suffix``: the
    kind of file it is read as (default: its own extension's).

    Returns (float32 [render.channels, n] at render.sample_rate, what was repaired): a file cut short (an
    interrupted copy or download) keeps the audio that is there, and says how much of it that is.
    """
    suffix = (suffix or path.suffix).lower()
    if suffix not in WAV_EXTENSIONS:
        return _decode_checked(path, data, lambda: path if data is None else io.BytesIO(data), render,
                               unfinished=False, suffix=suffix)
    with contextlib.ExitStack() as stack:
        try:
            raw = stack.enter_context(open(path, "rb")) if data is None else io.BytesIO(data)
            size = os.fstat(raw.fileno()).st_size if data is None else len(data)
            patches = unfinished_wav_patches(raw, size)
        except OSError as error:  # as libsndfile would have said it, had it been first to open the file
            raise RenderError("decode_error", f"{type(error).__name__}: {error.strerror or error}") from None

        def source() -> Path | BinaryIO:
            if patches:  # a WAV whose header was never finished: read with the sizes it should have had
                return PatchedFile(raw, size, patches)
            return path if data is None else io.BytesIO(data)

        return _decode_checked(path, data, source, render, unfinished=patches is not None, suffix=suffix)


def _decode_checked(path: Path, data: bytes | None, source, render: RenderParams, unfinished: bool, suffix: str,
                    ) -> tuple[np.ndarray, list[str]]:
    """:func:`load_audio_source` of the file ``source()`` opens (afresh at each call)."""
    try:
        frames, file_rate = audio_header(source(), suffix)
    except Exception as error:  # noqa: BLE001 - libsndfile errors come as several types
        raise RenderError("decode_error", error_words(error)) from None
    unknown_length = frames >= UNKNOWN_LENGTH  # decoding stops at render.max_seconds all the same
    # An estimated length is not held against render.max_seconds either (a quiet start makes a raw AAC
    # stream's estimate many times its length): decoding measures it.
    check_audio_header(frames if not unknown_length and length_declared(path, data, suffix) else 0, file_rate,
                       render.max_seconds)
    # A file of unknown length ends in a failed seek, which loses the block it stops: small blocks lose little.
    block_frames = UNKNOWN_LENGTH_BLOCK_FRAMES if unknown_length else DECODE_BLOCK_FRAMES
    level = Level()
    stopped: list[str] = []
    zero_non_finite = False

    def decode(into: Level, stopped_by: list[str], offset: np.ndarray | None = None) -> np.ndarray:
        try:
            return decode_audio(source(), render.sample_rate, render.channels, max_seconds=render.max_seconds,
                                level=into, stopped_by=stopped_by, offset=offset, block_frames=block_frames,
                                zero_non_finite=zero_non_finite, suffix=suffix)
        except AudioTooLong as error:  # the header understated the length
            raise RenderError("too_long", f"{error} (render.max_seconds)") from None
        except Exception as error:  # noqa: BLE001 - libsndfile and soxr errors come as several types
            raise RenderError("decode_error", error_words(error)) from None

    audio = decode(level, stopped)
    mended = []
    if level.non_finite:  # a few NaN samples (a faulty export) are set to 0; a file of them is rejected
        count = level.non_finite
        problem = non_finite_problem(count, level.count * len(level.mean))
        if problem:
            raise RenderError("non_finite", problem)
        del audio  # decoded again with them set to 0, before resampling spreads them
        zero_non_finite, level, stopped = True, Level(), []
        audio = decode(level, stopped)
        mended.append(f"{count} NaN or infinite sample{'s' if count > 1 else ''} set to 0")
    _validate_source(audio, render, level, level.rms_without_offset())
    repairs = [f"header never finished (its data chunk declares 0 bytes); the {level.count / file_rate:.1f} s "
               "present are read"] if unfinished else []
    repairs += mended
    if unknown_length:  # libsndfile stops it with a failed seek at its end
        decoder = "FFmpeg" if decoded_by_ffmpeg(path, suffix) else "libsndfile"
        repairs.append(f"its header gives no length (a file written to a pipe); read as far as {decoder} goes: "
                       f"{level.count / file_rate:.1f} s")
    else:
        repairs += cut_short(path, data, level.count, frames, file_rate, stopped, suffix)
    signal_rms, offset = level.rms_without_offset()
    if offset >= OFFSET_REMOVED_FROM and offset >= OFFSET_SHARE * signal_rms:
        del audio  # decoded again without it, before resampling
        offsets, level = level.mean, Level()
        audio = decode(level, [], offset=offsets)
        repairs.append(f"a constant offset of {offset:.3g} removed")
        _validate_source(audio, render, level, None)  # L = -R around a shared offset cancels only now
    samples = level.count * len(level.mean)
    if level.beyond > CLIPPED_SHARE_SCALED * samples:  # counted on the file's own samples: only float files
        # Scaled by what the mix (or the channels kept) reaches: never up, and not at all when it fits.
        peak = max(float(audio.max()), -float(audio.min()))
        if peak > 1.0:
            audio *= np.float32(1.0 / peak)
            repairs.append(f"{100 * level.beyond / samples:.1f} % of its samples beyond full scale (peak "
                           f"{peak:.3g}): scaled by {1.0 / peak:.3g} rather than clipped")
    return audio, repairs


def _validate_source(audio: np.ndarray, render: RenderParams, level: Level,
                     source_level: tuple[float, float] | None) -> None:
    """:func:`validate_audio` of a decoded source; a mono mix that is silent because its channels cancel says so."""
    try:
        validate_audio(audio, render.sample_rate, render.min_rms, max_peak=MAX_AUDIO_PEAK,
                       source_level=source_level)
    except RenderError as error:
        channel_rms = np.sqrt(level.spread / level.count) if level.count else np.zeros(0)
        resampled_rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
        if error.reason == "silent" and level.mix_rms() >= render.min_rms and \
                resampled_rms < HIGH_BAND_SHARE * level.mix_rms():
            # Loud enough at the file's own rate, silent once resampled: what it holds lies above the band
            # the render keeps (a 20 kHz test tone, a bat call). Hiss loses part of its energy there, not this.
            raise RenderError("silent", f"{error.detail}: the file (RMS {level.mix_rms():.2e} at its own rate) "
                                        f"holds nothing below {render.sample_rate // 2} Hz, half "
                                        "render.sample_rate, which resampling keeps") from None
        if error.reason == "silent" and render.channels == 1 and len(channel_rms) > 1 and \
                channel_rms.min() >= render.min_rms:
            # L = -R (a channel wired the wrong way round) mixes to nothing: say so, not just "silent".
            levels = ", ".join(f"{value:.2e}" for value in channel_rms)
            raise RenderError("silent", f"{error.detail}: its channels (RMS {levels}) cancel out when mixed to "
                                        "mono, one the other inverted") from None
        raise


def length_declared(path: Path, data: bytes | None, suffix: str | None = None) -> bool:
    """Whether an audio file's header declares its length; an MP3 without a Xing, Info or VBRI header and a raw
    AAC stream (ADTS) do not: their count is an estimate from the bitrate."""
    suffix = (suffix or path.suffix).lower()
    return suffix not in ESTIMATED_LENGTH or \
        (suffix == ".mp3" and any(tag in _first_frame(path, data) for tag in (b"Xing", b"Info", b"VBRI")))


FIRST_FRAME_BYTES = 256  # an MP3's first frame as far as a Xing or Info (at 13 to 36 bytes) or VBRI (36) header


def _first_frame(path: Path, data: bytes | None) -> bytes:
    """The first bytes of an MP3's first frame: after its ID3 tag (whose text could hold "Info") and any zero
    padding after that."""
    with open(path, "rb") if data is None else io.BytesIO(data) as handle:
        return first_bytes_of_frames(handle, FIRST_FRAME_BYTES)


def cut_short(path: Path, data: bytes | None, frames_read: int, header_frames: int, file_rate: int,
              stopped: list[str], suffix: str | None = None) -> list[str]:
    """What render says of an audio file that holds less than it declares ([] when it is whole): decoding
    stopped by an error, fewer frames than the header's count, or a WAV whose data chunk declares more bytes
    than the file has (libsndfile then counts only the frames present). An MP3's count is used only when the
    file has a Xing, Info or VBRI header: without one the decoder guesses it from the bitrate; a
    raw AAC stream's never (FFmpeg's is from its mean bitrate): one is cut short when its last frame is
    (:func:`musicid.audio.adts_shortfall`), which FFmpeg drops without an error."""
    counted = length_declared(path, data, suffix)
    suffix = (suffix or path.suffix).lower()
    read_s, header_s = f"{frames_read / file_rate:.1f} s", f"{header_frames / file_rate:.1f} s"
    if stopped:
        declared = f" of the {header_s} its header declares" if counted else ""
        return [f"cut short: decoding stopped after {read_s}{declared} ({stopped[0][:120]}); those {read_s} are "
                "kept"]

    def short(missing_frames: float, declared_frames: float) -> bool:
        return missing_frames > max(CUT_SHORT_FRACTION * declared_frames, CUT_SHORT_SECONDS * file_rate)

    if counted and short(header_frames - frames_read, header_frames):
        return [f"cut short: {read_s} of the {header_s} its header declares could be read, and are kept"]
    if suffix == ".aac":
        missing = adts_shortfall(data if data is not None else path.read_bytes())
        if missing:
            return [f"cut short: its last AAC frame lacks {missing} bytes; the {read_s} before it are kept"]
    sizes = wav_data_sizes(path, data) if suffix in WAV_EXTENSIONS and frames_read else None
    if sizes is not None:
        declared, present = sizes
        frame_bytes = present / frames_read
        # 0 and 0xFFFFFFFF: the size of a WAV written to a pipe, unknown when its header was
        if declared not in (0, 0xFFFFFFFF) and short((declared - present) / frame_bytes, declared / frame_bytes):
            return [f"cut short: truncated (its data chunk declares {declared} bytes, {present} are present); "
                    f"the {read_s} present are kept"]
    return []


def load_source(renderer: MidiRenderer, path: Path, render: RenderParams, data: bytes | None = None,
                suffix: str | None = None) -> Loaded:
    """Render (MIDI, once per SoundFont of ``renderer``) or decode (audio) one source and check it.

    ``data``: the file's bytes, when they are at hand (``path`` then only names the file, by its suffix).
    ``suffix``: the kind of file it is read as, when not its own extension's (an MP3 named ``.wav``).

    Returns its :class:`Loaded` (what was repaired: empty unless the source was recovered); raises
    :class:`RenderError` with the reason when the source is unusable, ``timeout``
    when it took longer than ``render.timeout_s``.
    """
    deadline = time.monotonic() + render.timeout_s
    suffix = (suffix or path.suffix).lower()
    if suffix in MIDI_EXTENSIONS:
        if renderer is None:  # a worker set up for recordings alone (init_worker): never given MIDI by the stage
            raise RenderError("no_fluidsynth", "this process was set up without FluidSynth (no MIDI source expected)")
        return render_midi_source(renderer, path, render, deadline, data)
    if suffix in AUDIO_EXTENSIONS:
        audio, repairs = load_audio_source(path, render, data, suffix)
        return Loaded([audio], repairs, None)
    raise RenderError("unsupported_format", f"unknown file type {suffix!r}")


def render_one(task: RenderTask) -> Rendered:
    """Render or decode one source, validate it, and return its record with its WAV files' bytes.

    Works from ``task`` alone, so that it can run where the raw files are not
    (another process or machine); the caller writes the WAVs
    (:func:`write_rendered`).  The source's bytes are read from memory
    (FluidSynth's player and libsndfile both can), so nothing is written that
    a killed worker could leave behind.
    """
    record = {"source": task.source, "label": task.label, "status": "rejected",
              "reason": None, "detail": None, "duration_s": None, "outputs": []}
    if task.render.augment.copies:  # absent when augmentation is off: the report is as it always was
        record["augmented"], record["augment_rejected"] = [], []
    renderer = _worker_renderer
    sample_rate = task.render.sample_rate
    wavs = []
    path = Path(task.source)  # names the file; its bytes are task.data (or task.file's), read from memory
    data = Path(task.file).read_bytes() if task.file and not task.data else task.data
    try:
        renders, repairs, programs = load_source(renderer, path, task.render, data)
    except RenderError as error:
        record["reason"] = error.reason
        record["detail"] = error.detail or None
        return Rendered(record, ())
    for name, audio in zip(task.output_names, renders):
        wavs.append((name, wav_bytes(to_channels(audio, task.render.channels), sample_rate)))
        record["outputs"].append(name)
    if repairs:
        record["status"], record["detail"] = "recovered", "; ".join(repairs)
    else:
        record["status"] = "rendered"
    record["duration_s"] = round(renders[0].shape[1] / sample_rate, 3)
    if programs is not None:  # what the render plays: the instruments the file names, or render.program
        record["programs"] = list(programs)
    for copy, name in enumerate(task.augmented_names, start=1):
        try:
            augmentation, audio = render_augmented(renderer, path, task.render, task.source, copy, data)
        except RenderError as error:
            # Only this copy is lost: the plain renders above are kept.
            record["augment_rejected"].append({"copy": copy, "reason": error.reason,
                                               "detail": error.detail or None})
            continue
        wavs.append((name, wav_bytes(to_channels(audio, task.render.channels), sample_rate)))
        record["augmented"].append(augmentation.record(name))
    return Rendered(record, tuple(wavs))


def crashed(task: RenderTask) -> Rendered:
    """The result of a source that killed worker after worker (local or Dask): rejected, ``worker_crash``."""
    record = {"source": task.source, "label": task.label, "status": "rejected", "reason": "worker_crash",
              "detail": "the worker processes rendering this file died, one after another", "duration_s": None,
              "outputs": []}
    if task.render.augment.copies:
        record["augmented"], record["augment_rejected"] = [], []
    return Rendered(record, ())


def write_rendered(rendered: Rendered, output_dir: Path) -> dict:
    """Write the WAVs of ``rendered`` under ``output_dir`` (each through a temporary name); its record."""
    for name, data in rendered.wavs:
        write_bytes_atomic(Path(output_dir) / name, data)
    return rendered.record

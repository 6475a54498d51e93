"""Per-file work of the render stage: render (MIDI) or decode (audio) one source, check it, write its WAVs.

Every source ends as ``rendered``, ``recovered`` (usable after a repair: see
:mod:`musicid.midi`, and the re-serialisation through mido below) or
``rejected`` with a machine-readable reason (listed in :mod:`musicid.checks`).

``render.timeout_s`` bounds the wall time of one source as a whole: reading and
repairing a MIDI file with mido, every render (one per SoundFont) and a retry.

Output names.  A source's track id is the safe name of its path inside the
label folder without the extension (``a/sub/x.mid`` -> ``sub__x``).  When two
sources of one label would get the same id (``x.mid`` and ``x.wav``, or names
that differ only in characters a file name cannot keep), each of them keeps
its extension (``x_mid``, ``x_wav``), and if that still collides, a hash of
its path.  The same holds for any two output names that would clash (an audio
file named like another source's per-SoundFont WAV).  So every source gets its
own WAVs, and the names depend only on the set of source names, never on the
order of work.  A MIDI file gets one WAV per
SoundFont (``<id>__<soundfont>.wav`` when there are several); every name fits
the 255-byte limit of file systems.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicid.audio import AudioTooLong, Level, audio_header, decode_audio, to_channels, write_wav
from musicid.checks import (MAX_AUDIO_PEAK, RenderError, check_audio_header, cut_after_last_loud, frame_peaks,
                            validate_audio)
from musicid.deadline import wall_clock_limit
from musicid.filetypes import AUDIO_EXTENSIONS, MIDI_EXTENSIONS
from musicid.io import safe_name
from musicid.midi import read_midi, reserialize_midi
from musicid.params import RenderParams
from musicid.synth import TAIL_SECONDS, FluidSynthUnavailable, MidiRenderer

__all__ = ["FluidSynthUnavailable", "RenderTask", "assign_outputs", "finish_render", "init_worker", "load_source",
           "output_names", "render_one"]

# Failures a stricter-than-usual MIDI player can cause on a file that mido reads.
RECOVERABLE = ("empty_render", "duration_mismatch", "silent")
TRACK_ID_BYTES = 200  # room left for "__<soundfont>.wav" within 255 bytes
SOUNDFONT_SUFFIX_BYTES = 40

_worker_renderer: MidiRenderer | None = None


def init_worker(render: RenderParams) -> None:
    """Load the SoundFonts once in this process (a pool initializer)."""
    global _worker_renderer
    _worker_renderer = MidiRenderer(render)


@dataclass(frozen=True)
class RenderTask:
    source: str  # path relative to the raw data directory, e.g. "bach/bwv1.6.mid"
    label: str
    input_path: str  # absolute path of the source file
    output_dir: str  # where the WAVs go (the stage's staging directory)
    output_names: tuple[str, ...]  # relative WAV paths: one per SoundFont for MIDI, one for audio
    render: RenderParams


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
    ids = {source: _stem_id(source) for source in sources}
    for attempt in range(len(sources) + 2):
        names = {source: output_names(label, ids[source], soundfonts,
                                      Path(source).suffix.lower() in MIDI_EXTENSIONS) for source in sources}
        counts = Counter(name for source_names in names.values() for name in source_names)
        clashing = [source for source in sources if any(counts[name] > 1 for name in names[source])]
        if not clashing:
            return names
        for source in clashing:
            ids[source] = _id_with_extension(source) if attempt == 0 else _id_with_hash(source, attempt - 1)
    raise AssertionError(f"output names of label {label!r} still clash after hashing")  # a bug, not bad input


def soundfont_suffixes(soundfonts: list[str]) -> list[str]:
    """One short, distinct name per SoundFont for output names (its file stem; an index when stems repeat)."""
    stems = [safe_name(Path(path).stem, SOUNDFONT_SUFFIX_BYTES) for path in soundfonts]
    counts = Counter(stems)
    return [f"{stem}-{index}" if counts[stem] > 1 else stem for index, stem in enumerate(stems)]


def output_names(label: str, track_id: str, soundfonts: list[str], is_midi: bool) -> tuple[str, ...]:
    """Relative WAV paths of one source: ``<label>/<id>.wav``, or one per SoundFont for MIDI with several."""
    if len(soundfonts) == 1 or not is_midi:
        return (f"{label}/{track_id}.wav",)
    return tuple(f"{label}/{track_id}__{suffix}.wav" for suffix in soundfont_suffixes(soundfonts))


def time_limit(deadline: float) -> contextlib.AbstractContextManager[None]:
    """Raise :class:`RenderError` ``timeout`` inside the block once ``time.monotonic()`` passes ``deadline``.

    Parsing a MIDI file runs in mido's pure-Python loops; see
    :func:`musicid.deadline.wall_clock_limit` for how they are interrupted.
    Only Python code runs under this limit (never FluidSynth).
    """
    if deadline - time.monotonic() <= 0:
        raise RenderError("timeout", "no time left for this file")
    return wall_clock_limit(deadline, lambda: RenderError(
        "timeout", "reading the file took longer than render.timeout_s"))


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
    peaks = frame_peaks(audio)
    peak = float(peaks.max())
    if peak == 0 or not np.isfinite(peak):
        return audio
    return cut_after_last_loud(audio, peaks, peak * 10 ** (trim_db / 20))


def _render_validated(renderer: MidiRenderer, midi_path: Path, index: int, expected: float,
                      render: RenderParams, deadline: float) -> np.ndarray:
    audio = renderer.render(midi_path, index, stop_after_s=expected + TAIL_SECONDS,
                            timeout_s=deadline - time.monotonic())
    audio = finish_render(audio, renderer.sample_rate, expected, render.trim_db)
    validate_audio(audio, renderer.sample_rate, render.min_rms, expected_seconds=expected)
    return audio


def render_midi_source(renderer: MidiRenderer, path: Path, render: RenderParams,
                       deadline: float) -> tuple[list[np.ndarray], list[str]]:
    """Render one MIDI file with every SoundFont; returns (renders, what was repaired).

    When FluidSynth's player gives empty, truncated or silent audio for a file
    that mido reads, the file is written again through mido and rendered once
    more; if that validates, the source counts as recovered.
    """
    with time_limit(deadline):
        source = read_midi(path, program=render.program)
    expected = source.end_seconds
    if expected > render.max_seconds:
        raise RenderError("too_long", f"the notes last {expected:.0f} s (render.max_seconds "
                                      f"{render.max_seconds:g})")
    repairs = list(source.repairs)
    with tempfile.TemporaryDirectory(prefix="musicid-render-") as scratch:
        # FluidSynth reads a path: the file itself when nothing was changed, else the changed bytes.
        reserialized = Path(scratch) / "reserialized.mid"
        if repairs or source.rewritten_by_mido:
            reserialized.write_bytes(source.data)
            path = reserialized
        rewritten = source.rewritten_by_mido
        renders = []
        for index in range(renderer.n_soundfonts):
            try:
                renders.append(_render_validated(renderer, path, index, expected, render, deadline))
                continue
            except RenderError as error:
                if error.reason not in RECOVERABLE or rewritten:
                    raise
                first = error
            try:
                with time_limit(deadline):
                    data = reserialize_midi(source.data)
            except RenderError as error:
                if error.reason == "timeout":
                    raise
                raise first from None  # mido could read it but not write it: keep the first reason
            reserialized.write_bytes(data)
            path, rewritten = reserialized, True
            try:
                renders.append(_render_validated(renderer, path, index, expected, render, deadline))
            except RenderError as second:
                if second.reason == "timeout":
                    raise
                raise RenderError(first.reason, f"{first.detail}; re-serialized with mido: "
                                                f"{second.reason}: {second.detail}") from None
            repairs.append(f"FluidSynth's player gave {first.reason}; re-serialized with mido")
    return renders, repairs


def load_audio_source(path: Path, render: RenderParams) -> np.ndarray:
    """Decode one audio file, checking its header first; float32 [render.channels, n] at render.sample_rate."""
    try:
        frames, file_rate = audio_header(path)
    except Exception as error:  # noqa: BLE001 - libsndfile errors come as several types
        raise RenderError("decode_error", f"{type(error).__name__}: {error}"[:200]) from None
    check_audio_header(frames, file_rate, render.max_seconds)
    level = Level()
    try:
        audio = decode_audio(path, render.sample_rate, render.channels, max_seconds=render.max_seconds,
                             level=level)
    except AudioTooLong as error:  # the header understated the length
        raise RenderError("too_long", f"{error} (render.max_seconds)") from None
    except Exception as error:  # noqa: BLE001 - libsndfile and soxr errors come as several types
        raise RenderError("decode_error", f"{type(error).__name__}: {error}"[:200]) from None
    validate_audio(audio, render.sample_rate, render.min_rms, max_peak=MAX_AUDIO_PEAK,
                   source_level=level.rms_without_offset())
    return audio


def load_source(renderer: MidiRenderer, path: Path, render: RenderParams,
                ) -> tuple[list[np.ndarray], list[str]]:
    """Render (MIDI, once per SoundFont of ``renderer``) or decode (audio) one source and check it.

    Returns (audio float32 [channels, n] at ``render.sample_rate`` Hz per output,
    what was repaired: empty unless the source was recovered); raises
    :class:`RenderError` with the reason when the source is unusable, ``timeout``
    when it took longer than ``render.timeout_s``.
    """
    deadline = time.monotonic() + render.timeout_s
    suffix = path.suffix.lower()
    if suffix in MIDI_EXTENSIONS:
        return render_midi_source(renderer, path, render, deadline)
    if suffix in AUDIO_EXTENSIONS:
        return [load_audio_source(path, render)], []
    raise RenderError("unsupported_format", f"unknown file type {suffix!r}")


def render_one(task: RenderTask) -> dict:
    """Render or decode one source, validate it, write its WAVs; return its report record."""
    record = {"source": task.source, "label": task.label, "status": "rejected",
              "reason": None, "detail": None, "duration_s": None, "outputs": []}
    renderer = _worker_renderer
    sample_rate = renderer.sample_rate
    try:
        renders, repairs = load_source(renderer, Path(task.input_path), task.render)
    except RenderError as error:
        record["reason"] = error.reason
        record["detail"] = error.detail or None
        return record
    for name, audio in zip(task.output_names, renders):
        write_wav(Path(task.output_dir) / name, to_channels(audio, task.render.channels), sample_rate)
        record["outputs"].append(name)
    if repairs:
        record["status"], record["detail"] = "recovered", "; ".join(repairs)
    else:
        record["status"] = "rendered"
    record["duration_s"] = round(renders[0].shape[1] / sample_rate, 3)
    return record

"""Symbolic features of a MIDI source, per clip: what notes sound in each clip's time window.

Alignment.  The render stage plays a MIDI file from its time 0 and writes every
frame FluidSynth gives from the first one (``musicid.synth.MidiRenderer.render``);
``musicid.render.finish_render`` only cuts the end (the release tail and
trailing silence).  So time t of a rendered WAV is time t of the MIDI file, and
a clip at ``offset_s`` of a WAV covers MIDI time ``[offset_s, offset_s +
clip_seconds)``.  An extra render of a source listed in its render-report
record under ``augmented`` (``{"output", "transpose", "tempo"}``) plays the
notes ``transpose`` semitones higher and ``tempo`` times faster: WAV time t is
MIDI time ``t * tempo``.  Features are computed on the notes as that render
plays them (pitches shifted, times divided by ``tempo``), so a density or a
duration is per second of the audio the clip holds.

Layout of one clip's vector, float32 [SYMBOLIC_DIM] = [44]; every block is
computed from the non-drum notes sounding in the window (a note counts for the
part of it inside the window):

====== ==== =================================================================
index  size block
====== ==== =================================================================
0-11   12   pitch-class histogram weighted by sounding time (C = 0), sums to 1
12-23  12   pitch-class histogram of the onsets inside the window, sums to 1
            (zeros when no note starts in the window)
24-36  13   histogram of intervals between successive onsets, in semitones
            folded to 0..12 (0 unison, 12 octave, 13 -> 1, 24 -> 12), sums to 1;
            onsets are ordered by time then pitch, so a chord gives its
            harmonic intervals and a melody its melodic ones
37     1    note density: log(1 + onsets per second)
38     1    mean polyphony: log(1 + sounding notes averaged over the window)
39     1    max polyphony: log(1 + most notes sounding at once)
40     1    pitch mean / 127 (weighted by sounding time)
41     1    pitch standard deviation / 12 (octaves; weighted by sounding time)
42     1    pitch range (highest - lowest sounding) / 12 (octaves)
43     1    mean note duration: log(1 + seconds), whole notes sounding in the window
====== ==== =================================================================

With ``texture`` (``features.symbolic_texture: true``) 25 more follow, float32
[SYMBOLIC_DIM + TEXTURE_DIM] = [69]: how the notes sound together and in time.

====== ==== =================================================================
44-56  13   vertical intervals: for each onset in the window, its interval to
            every note already sounding when it starts (those earlier in
            (start, pitch) order, so a chord's notes pair up once), folded to
            0..12 as above; sums to 1 (zeros when no onset has company).
            In a window of more than MAX_PAIRS (onset, note) pairs (tens of
            thousands of notes in 4 s) every k-th onset only, so that memory
            and time stay bounded on any file
57-62  6    durations of the notes starting in the window (whole notes), in
            bins with edges 0.125, 0.25, 0.5, 1 and 2 seconds; sums to 1
63-68  6    inter-onset intervals (between the distinct onset times in the
            window, to the millisecond), the same bins; sums to 1
====== ==== =================================================================

With ``roll`` (``features.symbolic_roll: true``) a piano roll of the window
follows the blocks above, ROLL_PITCHES x ROLL_FRAMES = 88 x 32 = 2816 more:
row p (MIDI note 21 + p, A0 to C8; lower and higher notes on the edge rows),
column f (the f-th 32nd of the window), holds the fraction of that frame in
which the pitch sounds, at most 1. Unlike the histograms it keeps what comes
after what: melodic lines, voice leading, chord changes. The model reads it
with a small convolutional network of its own (``musicid.model.RollBranch``);
its values are not standardised (they are 0..1 already, and a convolution
wants one scale everywhere). With ``onsets`` (``features.symbolic_onsets:
true``) a second plane of the same shape follows it: 1 where a note of that
pitch starts in that frame, else 0. The first plane cannot tell a note struck
again from one held on, nor a run of repeated notes from a long one; the
second says where each note begins (the two planes are read as two channels).

A window in which no note sounds gives the zero vector.

Key.  With ``relative`` (``features.symbolic_key: relative``) the two
pitch-class blocks are rotated so that index 0 is the tonic of the key
estimated for the whole source (as that render plays it), not C: they then
tell scale degrees, a composer's harmonic vocabulary, whatever key a piece is
in.  The key is the one of the 24 major and minor keys whose Krumhansl-Kessler
profile correlates best (Pearson) with the source's pitch-class histogram
weighted by sounding time (Krumhansl & Kessler 1982; the Krumhansl-Schmuckler
algorithm, as in music21's ``analysis.discrete``).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from musicid.checks import RenderError
from musicid.io import unreadable_reason
from musicid.midi import coarser_ticks, read_midi, tempo_in_first_track
from musicid.piece import KK_MAJOR, KK_MINOR, estimate_key, piece_features, share  # noqa: F401 (the profiles are part of this interface)
from musicid.symbolic_layout import (  # noqa: F401 (the layout is part of this module's interface)
    DENSITY, DURATION_BLOCK, INTERVAL_BLOCK, IOI_BLOCK, MAX_POLYPHONY, MEAN_DURATION, MEAN_POLYPHONY,
    ONSET_CLASS_BLOCK, PITCH_CLASS_BLOCK, PITCH_MEAN, PITCH_RANGE, PITCH_STD, ROLL_DIM, ROLL_FRAMES, ROLL_LOW,
    ROLL_PITCHES, SYMBOLIC_DIM, TEXTURE_DIM, VERTICAL_BLOCK, sounding)

# Bin edges, seconds, of the duration and inter-onset-interval histograms: 1/8 s to 2 s in octaves.
TIME_EDGES = np.array([0.125, 0.25, 0.5, 1.0, 2.0])
# Most (onset, sounding note) pairs the vertical-interval block weighs in one window (a 4 MB mask).
MAX_PAIRS = 1 << 22
# Largest tick pretty_midi may read: its tick-to-time table is then at most 400 MB (8 bytes a tick).
MAX_TICKS = 50_000_000


@dataclass
class Notes:
    """The non-drum notes of a MIDI file, sorted by (start, pitch)."""

    start: np.ndarray  # float64 [n] seconds
    end: np.ndarray  # float64 [n] seconds, > start
    pitch: np.ndarray  # int64 [n] MIDI note numbers

    def played(self, transpose: int = 0, tempo: float = 1.0) -> Notes:
        """The notes as a render ``transpose`` semitones up and ``tempo`` times faster plays them."""
        if transpose == 0 and tempo == 1.0:
            return self
        pitch = np.clip(self.pitch + transpose, 0, 127)
        return _sorted(self.start / tempo, self.end / tempo, pitch)


def _sorted(start: np.ndarray, end: np.ndarray, pitch: np.ndarray) -> Notes:
    order = np.lexsort((pitch, start))
    return Notes(start[order], end[order], pitch[order])


def read_notes(midi: str | Path | bytes) -> Notes:
    """The non-drum notes of a MIDI file (its path, or its bytes), read as the render stage reads it.

    The bytes come from :func:`musicid.midi.read_midi` (RMID unwrapped, impossible
    key signatures dropped, SMPTE timing converted), so a file that rendered
    also has notes.  Raises :class:`RenderError` ``unparseable`` when neither mido
    nor pretty_midi can read it.
    """
    return read_midi_notes(midi, piece=False)[0]


def read_midi_notes(midi: str | Path | bytes, piece: bool = True) -> tuple[Notes, np.ndarray | None]:
    """(:func:`read_notes`, the whole piece's statistics float64 [PIECE_DIM] (``musicid.piece``), None without
    notes or without ``piece``), from one parse of the file."""
    import pretty_midi

    source = read_midi(midi)
    # pretty_midi refuses a file whose largest tick passes its MAX_TICK (1e7) as
    # "likely corrupt", since it sizes a float64 array by it (8 bytes a tick).
    # Real scores pass it: a 10-minute Palestrina Gloria has 12.2 million ticks.
    # read_midi has checked the file's timing already, so allow up to MAX_TICKS.
    pretty_midi.pretty_midi.MAX_TICK = max(pretty_midi.pretty_midi.MAX_TICK, MAX_TICKS)
    data = tempo_in_first_track(source.data)  # where pretty_midi reads the tempo changes FluidSynth plays
    for attempt in range(2):
        try:
            with warnings.catch_warnings():  # key and time signatures in other tracks: not read here
                warnings.filterwarnings("ignore", message="Tempo, Key or Time signature change events found on "
                                                          "non-zero tracks", category=RuntimeWarning)
                midi = pretty_midi.PrettyMIDI(io.BytesIO(data))
            break
        except Exception as error:  # noqa: BLE001 - pretty_midi and mido raise many types on bad files
            # A long piece at a fine resolution (music21 writes 10080 ticks a beat: 41 minutes at 120 beats a
            # minute pass MAX_TICKS) is read on a coarser grid of ticks (see coarser_ticks), at 10 million
            # ticks at most, pretty_midi's own limit: its times move by less than a millisecond.
            if attempt == 0 and str(error).startswith("MIDI file has a largest tick"):
                data = coarser_ticks(data, 10_000_000)
                continue
            raise RenderError("unparseable", f"pretty_midi: {type(error).__name__}: {error}"[:200]) from None
    parts = [instrument.notes for instrument in midi.instruments if not instrument.is_drum]
    notes = [(note, index) for index, part in enumerate(parts) for note in part if note.end > note.start]
    start = np.array([note.start for note, _ in notes], dtype=np.float64)
    end = np.array([note.end for note, _ in notes], dtype=np.float64)
    pitch = np.array([note.pitch for note, _ in notes], dtype=np.int64)
    part = np.array([index for _, index in notes], dtype=np.int64)
    order = np.lexsort((pitch, start))
    sorted_notes = Notes(start[order], end[order], pitch[order])
    if not piece:
        return sorted_notes, None
    change_times, tempi = midi.get_tempo_changes()
    return sorted_notes, piece_features(sorted_notes.start, sorted_notes.end, sorted_notes.pitch, part[order],
                                        np.asarray(change_times, np.float64), np.asarray(tempi, np.float64))


def fold_intervals(semitones: np.ndarray) -> np.ndarray:
    """|intervals| in semitones folded into 0..12: 0 stays 0, others keep their size within an octave
    (13 -> 1, 24 -> 12); int64 [n]."""
    size = np.abs(semitones)
    return np.where(size == 0, 0, (size - 1) % 12 + 1)


def symbolic_dim(texture: bool = False, roll: bool = False, onsets: bool = False) -> int:
    """Length of a clip's symbolic vector: SYMBOLIC_DIM, plus TEXTURE_DIM with ``texture``, plus ROLL_DIM
    with ``roll`` (the piano roll, always last), twice with ``onsets`` as well (its onset plane after it)."""
    return SYMBOLIC_DIM + (TEXTURE_DIM if texture else 0) + roll_planes(roll, onsets) * ROLL_DIM


def roll_planes(roll: bool, onsets: bool) -> int:
    """How many ROLL_PITCHES x ROLL_FRAMES planes end a clip's symbolic vector: 0 without ``roll``, 2 with
    ``onsets`` too (features.symbolic_onsets), else 1."""
    return (2 if onsets else 1) if roll else 0


def roll_shape(roll: bool, onsets: bool) -> list[int]:
    """The piano roll's shape as featurize records it (``symbolic_roll_shape``) and the model reads it: [] without
    ``roll``, [pitches, frames] with one plane, [2, pitches, frames] with the onset plane too."""
    planes = roll_planes(roll, onsets)
    return [] if not planes else [ROLL_PITCHES, ROLL_FRAMES] if planes == 1 else [planes, ROLL_PITCHES, ROLL_FRAMES]


def window_features(notes: Notes, offsets_s: np.ndarray, clip_seconds: float, texture: bool = False,
                    roll: bool = False, onsets: bool = False) -> np.ndarray:
    """Features of the windows ``[offset, offset + clip_seconds)`` (seconds of ``notes``' time).

    offsets_s float [k] -> float32 [k, symbolic_dim(texture, roll, onsets)] (layout in the module docstring).
    """
    offsets_s = np.asarray(offsets_s, dtype=np.float64)
    out = np.zeros((len(offsets_s), symbolic_dim(texture, roll, onsets)), dtype=np.float32)
    if len(notes.start) == 0:
        return out
    # Notes sorted by start: those starting before a window's end are a prefix; those that have all
    # ended before its start are a prefix of the running maximum of the ends.
    ended_by = np.maximum.accumulate(notes.end)
    lows = np.searchsorted(ended_by, offsets_s, side="right")
    highs = np.searchsorted(notes.start, offsets_s + clip_seconds, side="left")
    for row, (offset, low, high) in enumerate(zip(offsets_s, lows, highs)):
        out[row] = _one_window(notes, int(low), int(high), float(offset), float(offset) + clip_seconds, texture,
                               roll, onsets)
    return out


def _one_window(notes: Notes, low: int, high: int, window_start: float, window_end: float,
                texture: bool = False, roll: bool = False, onsets: bool = False) -> np.ndarray:
    features = np.zeros(symbolic_dim(texture, roll, onsets), dtype=np.float64)
    start, end, pitch = notes.start[low:high], notes.end[low:high], notes.pitch[low:high]
    sounding = end > window_start
    if not sounding.any():
        return features
    start, end, pitch = start[sounding], end[sounding], pitch[sounding]
    seconds = window_end - window_start
    begin, finish = np.maximum(start, window_start), np.minimum(end, window_end)
    overlap = finish - begin  # > 0 for every sounding note
    weight = overlap / overlap.sum()
    features[PITCH_CLASS_BLOCK] = np.bincount(pitch % 12, weights=weight, minlength=12)
    onset = start >= window_start
    if onset.any():
        onset_pitch = pitch[onset]  # in (start, pitch) order
        features[ONSET_CLASS_BLOCK] = np.bincount(onset_pitch % 12, minlength=12) / len(onset_pitch)
        if len(onset_pitch) > 1:
            intervals = np.bincount(fold_intervals(np.diff(onset_pitch)), minlength=13)
            features[INTERVAL_BLOCK] = intervals / intervals.sum()
        features[DENSITY] = np.log1p(len(onset_pitch) / seconds)
    features[MEAN_POLYPHONY] = np.log1p(overlap.sum() / seconds)
    # Most notes at once: +1 at each clipped start, -1 at each clipped end, ends first on ties.
    times = np.concatenate([begin, finish])
    steps = np.concatenate([np.ones(len(begin)), -np.ones(len(finish))])
    order = np.lexsort((steps, times))
    features[MAX_POLYPHONY] = np.log1p(np.cumsum(steps[order]).max())
    mean_pitch = float(np.sum(weight * pitch))
    features[PITCH_MEAN] = mean_pitch / 127.0
    features[PITCH_STD] = np.sqrt(np.sum(weight * np.square(pitch - mean_pitch))) / 12.0
    features[PITCH_RANGE] = (pitch.max() - pitch.min()) / 12.0
    features[MEAN_DURATION] = np.log1p(np.mean(end - start))
    if texture and onset.any():
        _texture(features, start, end, pitch, onset)
    if roll:
        first = symbolic_dim(texture)
        features[first:first + ROLL_DIM] = piano_roll(begin, finish, pitch, window_start, window_end).ravel()
        if onsets:
            features[first + ROLL_DIM:] = onset_roll(start, pitch, window_start, window_end).ravel()
    return features


def piano_roll(begin: np.ndarray, finish: np.ndarray, pitch: np.ndarray, window_start: float,
               window_end: float) -> np.ndarray:
    """float64 [ROLL_PITCHES, ROLL_FRAMES]: the share of each frame of the window in which each pitch
    sounds (module docstring), from the notes' sounding parts ``[begin, finish)`` inside the window."""
    edges = frame_edges(window_start, window_end)
    # overlap[n, f]: seconds note n sounds in frame f.
    overlap = np.clip(np.minimum(finish[:, None], edges[None, 1:]) - np.maximum(begin[:, None], edges[None, :-1]),
                      0.0, None)
    rows = np.clip(pitch - ROLL_LOW, 0, ROLL_PITCHES - 1)
    out = np.zeros((ROLL_PITCHES, ROLL_FRAMES))
    np.add.at(out, rows, overlap / np.diff(edges)[None, :])
    return np.minimum(out, 1.0)


def frame_edges(window_start: float, window_end: float) -> np.ndarray:
    """float64 [ROLL_FRAMES + 1]: the times, seconds, that bound the roll's frames of a window."""
    return window_start + (window_end - window_start) * np.arange(ROLL_FRAMES + 1) / ROLL_FRAMES


def onset_roll(start: np.ndarray, pitch: np.ndarray, window_start: float, window_end: float) -> np.ndarray:
    """float64 [ROLL_PITCHES, ROLL_FRAMES]: 1 where a note of ``pitch`` starts (``start``, seconds) in that frame
    of the window, else 0: the onset plane (module docstring). A start outside ``[window_start, window_end)``
    is no onset of the window. The frames are :func:`piano_roll`'s, so a note starts in the first frame in
    which it sounds."""
    inside = (start >= window_start) & (start < window_end)
    frames = np.searchsorted(frame_edges(window_start, window_end), start[inside], side="right") - 1
    out = np.zeros((ROLL_PITCHES, ROLL_FRAMES))
    out[np.clip(pitch[inside] - ROLL_LOW, 0, ROLL_PITCHES - 1), np.clip(frames, 0, ROLL_FRAMES - 1)] = 1.0
    return out


def _texture(features: np.ndarray, start: np.ndarray, end: np.ndarray, pitch: np.ndarray,
             onset: np.ndarray) -> None:
    """Fill the texture blocks (module docstring) from a window's sounding notes in (start, pitch) order."""
    index = np.flatnonzero(onset)
    paired = index[::-(-len(index) * len(start) // MAX_PAIRS)]  # every onset, or every k-th (docstring)
    # company[a, j]: note j, earlier in (start, pitch) order, still sounds when onset paired[a] starts.
    company = (np.arange(len(start))[None, :] < paired[:, None]) & (end[None, :] > start[paired][:, None])
    rows, columns = np.nonzero(company)
    vertical = fold_intervals(pitch[paired][rows] - pitch[columns])
    features[VERTICAL_BLOCK] = share(np.bincount(vertical, minlength=13))
    bins = len(TIME_EDGES) + 1
    durations = np.searchsorted(TIME_EDGES, end[index] - start[index], side="right")
    features[DURATION_BLOCK] = share(np.bincount(durations, minlength=bins))
    gaps = np.diff(np.unique(np.round(start[index], 3)))
    features[IOI_BLOCK] = share(np.bincount(np.searchsorted(TIME_EDGES, gaps, side="right"), minlength=bins))


def estimate_tonic(notes: Notes) -> int:
    """Pitch class (C = 0) of the tonic of the best-fitting major or minor key of ``notes`` (module
    docstring, Key); 0 when no note sounds or every pitch class sounds equally long."""
    return estimate_key(np.bincount(notes.pitch % 12, weights=notes.end - notes.start, minlength=12))[0]


def key_relative(features: np.ndarray, tonic: int) -> np.ndarray:
    """Features float32 [k, SYMBOLIC_DIM] with both pitch-class blocks rotated so that index 0 is ``tonic``."""
    out = features.copy()
    for block in (PITCH_CLASS_BLOCK, ONSET_CLASS_BLOCK):
        out[:, block] = np.roll(features[:, block], -tonic, axis=1)
    return out


def render_variants(record: dict) -> dict[str, tuple[int, float]]:
    """Output WAV name -> (transpose semitones, tempo factor) for each output of a render-report record.

    Plain renders are (0, 1.0); extra renders listed under ``augmented`` carry
    their own values (missing fields count as plain).
    """
    variants = {name: (0, 1.0) for name in record.get("outputs") or []}
    for extra in record.get("augmented") or []:
        variants[extra["output"]] = (int(extra.get("transpose", 0)), float(extra.get("tempo", 1.0)))
    return variants


def clip_features(notes: Notes, offsets_s: np.ndarray, clip_seconds: float, transpose: int = 0,
                  tempo: float = 1.0, relative: bool = False, texture: bool = False, roll: bool = False,
                  onsets: bool = False) -> np.ndarray:
    """Features float32 [k, symbolic_dim(texture, roll, onsets)] of clips at ``offsets_s`` (seconds of a WAV
    rendered with ``transpose`` and ``tempo``, see the module docstring) of ``clip_seconds`` each;
    ``relative``: pitch classes counted from the source's estimated tonic (module docstring, Key);
    ``texture``: the texture blocks too; ``roll``: the piano roll too; ``onsets``: its onset plane too."""
    if tempo <= 0:
        raise ValueError(f"tempo factor must be > 0, got {tempo}")
    played = notes.played(transpose, tempo)
    features = window_features(played, offsets_s, clip_seconds, texture, roll, onsets)
    return key_relative(features, estimate_tonic(played)) if relative else features


@dataclass
class TrackTask:
    """The clips of one source whose symbolic features are wanted (one worker item), the file's bytes included."""

    data: bytes | None  # the MIDI file's bytes; None when it could not be read (``unreadable`` says why)
    offsets_s: np.ndarray  # float64 [k] clip starts in their WAVs
    transpose: np.ndarray  # int64 [k] of the WAV each clip comes from
    tempo: np.ndarray  # float64 [k]
    clip_seconds: float
    unreadable: str | None = None  # why ``data`` is None: "unreadable: <error>"
    relative: bool = False  # pitch classes counted from the source's tonic (features.symbolic_key: relative)
    texture: bool = False  # the texture blocks too (features.symbolic_texture)
    roll: bool = False  # the piano roll too (features.symbolic_roll)
    piece: bool = False  # the whole piece's statistics too (features.symbolic_piece, musicid.piece)
    onsets: bool = False  # with roll, its onset plane too (features.symbolic_onsets)


def track_features(task: TrackTask) -> tuple[np.ndarray | None, str | None, np.ndarray | None]:
    """Worker: (features float32 [k, symbolic_dim(task.texture, task.roll, task.onsets)], None, the whole piece's statistics
    float64 [PIECE_DIM] with ``task.piece`` and notes, else None), or (None, "reason: detail", None) for an
    unreadable file.

    The file is parsed once; each distinct (transpose, tempo) render of it is featurised in one call.
    Works from ``task`` alone (another process or machine), on the file's bytes, as the render stage reads
    a source; nothing is written, so a killed worker leaves nothing behind.
    """
    if task.data is None:
        return None, task.unreadable, None
    try:
        notes, piece = read_midi_notes(task.data, task.piece)
    except RenderError as error:
        return None, str(error), None
    out = np.zeros((len(task.offsets_s), symbolic_dim(task.texture, task.roll, task.onsets)), dtype=np.float32)
    variants = sorted(set(zip(task.transpose.tolist(), task.tempo.tolist())))
    for transpose, tempo in variants:
        rows = (task.transpose == transpose) & (task.tempo == tempo)
        out[rows] = clip_features(notes, task.offsets_s[rows], task.clip_seconds, transpose, tempo, task.relative,
                                  task.texture, task.roll, task.onsets)
    return out, None, piece


def crashed_source(task: TrackTask) -> tuple[None, str, None]:
    """The result of a source that killed worker after worker (on a Dask cluster): no symbolic features."""
    return None, "worker_crash: the worker processes reading this file died, one after another", None


@dataclass
class TableSymbolic:
    """Symbolic features of every row of a clips table."""

    features: np.ndarray  # float32 [n, symbolic_dim(texture, roll, onsets)]; zeros where absent
    present: np.ndarray  # bool [n]: False for clips of audio sources, of unreadable MIDI files, and in which
    # no note sounds (see sounding)
    audio_sources: int  # sources that are audio files (no notes to read)
    unreadable: dict[str, str]  # MIDI source -> why its notes cannot be read
    noteless: list[str] = field(default_factory=list)  # MIDI sources read, with no note sounding in any clip
    quiet_clips: int = 0  # clips of the other MIDI sources read in which no note sounds (a rest, a drum break)
    piece: dict[str, np.ndarray] = field(default_factory=dict)  # MIDI source with notes -> its whole piece's
    # statistics float64 [PIECE_DIM] (with ``piece``: features.symbolic_piece)
    # bool [n]: the clip was cut from one of render.augment's copies (a training track's transposed, tempo-scaled
    # render), not from a plain render; None: render.augment was off (no record lists copies)
    augmented: np.ndarray | None = None


def table_features(tracks: np.ndarray, outputs: np.ndarray, offsets_s: np.ndarray, clip_seconds: float,
                   records: list[dict], raw_dir: Path, jobs: int = 1, scheduler: str | None = None,
                   relative: bool = False, texture: bool = False, roll: bool = False,
                   piece: bool = False, onsets: bool = False) -> TableSymbolic:
    """Symbolic features of the clips of a clips table.

    tracks str [n]: each clip's source under ``raw_dir`` (the render report's
    ``source``); outputs str [n]: the WAV it was cut from (one of the record's
    ``outputs`` or ``augmented`` names); offsets_s float64 [n]. ``records`` are
    the render report's ``files``. MIDI files are read here, as they are sent
    to ``jobs`` processes or to the Dask cluster at ``scheduler``, which parse them. ``relative``:
    pitch classes counted from each source's estimated tonic; ``texture``: the texture blocks too; ``roll``: the
    piano roll too, ``onsets`` its onset plane too; ``piece``: each MIDI source's whole-piece statistics too (read
    from the file as it is: a source's augmented renders share them).
    """
    from musicid.filetypes import MIDI_EXTENSIONS
    from musicid.parallel import ordered_map, resolve_jobs

    by_source = {record["source"]: record for record in records}
    features = np.zeros((len(tracks), symbolic_dim(texture, roll, onsets)), dtype=np.float32)
    present = np.zeros(len(tracks), dtype=bool)
    names = sorted(set(tracks.tolist()))
    midi_names = [name for name in names if Path(name).suffix.lower() in MIDI_EXTENSIONS]
    wanted, rows_of, unreadable = [], [], {}
    # The clips cut from one of render.augment's copies: their WAVs are listed under their sources' "augmented".
    copies = {extra["output"] for record in records for extra in record.get("augmented") or []}
    augmented = np.array([output in copies for output in outputs.tolist()], dtype=bool)
    for name in midi_names:
        rows = np.flatnonzero(tracks == name)
        record = by_source.get(name)
        if record is None:
            unreadable[name] = "missing: not in the render report"
            continue
        variants = render_variants(record)
        unknown = sorted(set(outputs[rows].tolist()) - set(variants))
        if unknown:
            unreadable[name] = f"missing: the render report does not list its WAV {unknown[0]}"
            continue
        transpose = np.array([variants[o][0] for o in outputs[rows]], dtype=np.int64)
        tempo = np.array([variants[o][1] for o in outputs[rows]], dtype=np.float64)
        wanted.append((raw_dir / name, offsets_s[rows].astype(np.float64), transpose, tempo))
        rows_of.append((name, rows))

    def tasks() -> Iterator[TrackTask]:
        # A generator: a file is read only when its task is sent out.
        for path, offsets, transpose, tempo in wanted:
            try:
                yield TrackTask(path.read_bytes(), offsets, transpose, tempo, clip_seconds, relative=relative,
                                texture=texture, roll=roll, piece=piece, onsets=onsets)
            except OSError as error:  # the source left data/raw after it was rendered
                yield TrackTask(None, offsets, transpose, tempo, clip_seconds,
                                unreadable_reason(error), relative, texture, roll, piece, onsets)

    # Capped by the count (a generator has no length for ordered_map to see): one file is parsed in this process.
    jobs = min(resolve_jobs(jobs), max(1, len(wanted)))
    noteless: list[str] = []
    quiet_clips = 0
    pieces: dict[str, np.ndarray] = {}
    # Closed here, not when collected: zip leaves the map suspended, and the shutdown of its pool in a
    # garbage collector's hands would swallow a Ctrl-C or SIGTERM arriving then (the stage ran on).
    with contextlib.closing(ordered_map(track_features, tasks(), jobs=jobs, scheduler=scheduler,
                                        on_crash=crashed_source)) as results:
        for (name, rows), (values, reason, whole) in zip(rows_of, results):
            if values is None:
                unreadable[name] = reason
                continue
            features[rows] = values
            present[rows] = sounding(values)
            if not present[rows].any():
                noteless.append(name)
            else:
                quiet_clips += int((~present[rows]).sum())
                if whole is not None:
                    pieces[name] = whole
    return TableSymbolic(features, present, len(names) - len(midi_names), dict(sorted(unreadable.items())),
                         noteless, quiet_clips, pieces,
                         # With render.augment on (its records list their copies, perhaps none), the marks are
                         # written even when no copy was cut: train then knows that none blends in.
                         augmented if any("augmented" in record for record in records) else None)

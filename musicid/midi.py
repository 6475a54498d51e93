"""Reading MIDI files with mido, and repairing what other readers accept but FluidSynth or mido refuse.

Repairs, each reported in the source's record (status ``recovered``):

- a RIFF-wrapped MIDI file (RMID, ``RIFF....RMID`` with the Standard MIDI File
  in its ``data`` chunk) is unwrapped;
- a key-signature meta event with an impossible key (mido raises on it) is
  turned into a sequencer-specific meta event of the same length, which every
  player ignores; a key signature changes nothing in the sound;
- SMPTE time division (ticks per frame at 24, 25, 29.97 or 30 frames per
  second, which FluidSynth's player does not implement and mido reads as a
  negative tick rate) is converted to the same timing in ticks per beat with
  one tempo, the tempo events the file may hold being meaningless under SMPTE;
- a file that stops before its header's promise (an interrupted copy or
  download) keeps what it holds: the track it stops in is read up to its
  last whole event, the notes still sounding there ended, the tracks that
  never came not counted; a last track whose length field merely overstates
  its bytes, its events ending with an End of Track, is read to it.

A file still unreadable after these repairs is rejected ``unparseable`` with
mido's reason.
"""

from __future__ import annotations

import collections
import hashlib
import io
import itertools
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from musicid.checks import RenderError

DRUM_CHANNEL = 9  # General MIDI channel 10
SMPTE_FRAME_RATES = {24: 24.0, 25: 25.0, 29: 30000 / 1001, 30: 30.0}  # header code -> frames per second
# Data bytes after the status byte, by the status's high nibble (channel messages).
_CHANNEL_DATA_BYTES = {0x8: 2, 0x9: 2, 0xA: 2, 0xB: 2, 0xC: 1, 0xD: 1, 0xE: 2}
_SYSTEM_DATA_BYTES = {0xF1: 1, 0xF2: 2, 0xF3: 1}  # system common messages with data (the others have none)
_SEQUENCER_SPECIFIC = 0x7F
# System common and real-time messages (status 0xF1-0xFE), by mido's names: a Standard MIDI File holds only
# channel, sysex and meta events; FluidSynth's player refuses a whole file for one of them, and mido takes one
# for the running status of the data bytes after it (a real-time byte keeps the running status on the wire).
_SYSTEM_MESSAGES = {0xF1: "quarter_frame", 0xF2: "songpos", 0xF3: "song_select", 0xF6: "tune_request",
                    0xF8: "clock", 0xFA: "start", 0xFB: "continue", 0xFC: "stop", 0xFE: "active_sensing"}
_SYSTEM_TYPES = frozenset(_SYSTEM_MESSAGES.values())
FLUIDSYNTH_MAX_TRACKS = 127  # FluidSynth's player (2.3) plays nothing of a file of more tracks
_KEY_SIGNATURE = 0x59
_END_OF_TRACK_KIND = 0x2F
_END_OF_TRACK = b"\x00\xff\x2f\x00"  # delta 0, meta event End of Track, no data


@dataclass
class MidiSource:
    """A MIDI file as it will be rendered."""

    data: bytes  # the Standard MIDI File bytes to hand to FluidSynth
    end_seconds: float  # time of the last note event
    programs: tuple[int, ...]  # the General MIDI programs of the notes heard, sorted; -1 for drums (channel 10)
    repairs: list[str]  # what was repaired, empty for a file read as it is
    rewritten_by_mido: bool  # ``data`` was written by mido (SMPTE conversion, forced program)


def read_midi(path: str | Path | bytes, program: int | None = None) -> MidiSource:
    """Read a MIDI file (its path or its bytes), repair what can be repaired, and find the time of its last note.

    With ``program``, every melodic part is forced to that General MIDI
    program (see :func:`force_program`).  Raises :class:`RenderError`
    ``unparseable`` or ``no_notes``.
    """
    return read_midi_data(path if isinstance(path, bytes) else Path(path).read_bytes(), program)


def read_midi_data(data: bytes, program: int | None = None) -> MidiSource:
    """:func:`read_midi` of a file's bytes (e.g. received from another machine, or written by mido)."""
    midi, data, repairs, rewrite = _repaired(data, program)
    if rewrite:
        data = _serialize(midi)
    end_seconds, programs = _played(midi)
    return MidiSource(data, end_seconds, programs, repairs, rewrite)


def _repaired(data: bytes, program: int | None = None):
    """(the mido file, the bytes it was read from, the repairs made, whether ``data`` no longer holds the
    repairs and must be written again) of :func:`read_midi_data`."""
    import mido

    repairs: list[str] = []
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":
        data = unwrap_rmid(data)
        repairs.append("RIFF-wrapped MIDI (RMID) unwrapped")
    data, system = drop_system_messages(data)  # before mido reads the file: see _SYSTEM_MESSAGES
    # Each repair at most once, in the order mido's errors ask for them (a file can need both).
    keys_dropped, cut_error = False, None
    while True:
        try:
            midi = _parse(data)
            break
        except mido.midifiles.meta.KeySignatureError as error:
            dropped = 0
            if not keys_dropped:
                data, dropped = drop_impossible_key_signatures(data)
            if not dropped:
                raise RenderError("unparseable", f"KeySignatureError: {error}"[:200]) from None
            keys_dropped = True
            repairs.append(f"{dropped} key-signature event(s) with an impossible key dropped")
        except RenderError as error:
            if error.reason == "timeout":
                raise
            if cut_error is not None:  # fitted, and still not readable: the fault was not (only) the cut
                raise cut_error from None
            # A file that stops before its header's promise: read what it holds (see fit_cut_file).
            data, repair = fit_cut_file(data)
            if not repair:
                raise
            cut_error = error
            repairs.append(repair)
            data, more = drop_system_messages(data)  # in the track that was cut, now whole
            system += more
    rewrite = False
    stalled = sum(map(is_zero_tempo, itertools.chain(*midi.tracks)))
    if stalled:  # 0 microseconds a beat: every later note at once (and pretty_midi divides by it)
        drop_messages(midi, is_zero_tempo)
        repairs.append(f"{stalled} tempo event(s) of 0 microseconds a beat dropped")
        rewrite = True
    late = collections.Counter(message.type for message in itertools.chain(*midi.tracks)
                               if message.type in _SYSTEM_TYPES)
    if late:  # where the walk did not go: after an End of Track inside its chunk, or a track it found damaged
        drop_messages(midi, lambda message: message.type in _SYSTEM_TYPES)
        system += late
        rewrite = True
    if system:
        repairs.append(f"{system.total()} system message(s) a MIDI file cannot hold dropped "
                       f"({', '.join(f'{kind} x{count}' for kind, count in sorted(system.items()))})")
    if len(midi.tracks) > FLUIDSYNTH_MAX_TRACKS:  # its player would play none of them: silence
        repairs.append(f"{len(midi.tracks)} tracks merged into one (FluidSynth plays at most "
                       f"{FLUIDSYNTH_MAX_TRACKS})")
        midi.tracks = [mido.merge_tracks(midi.tracks)]
        midi.type = 0
        rewrite = True
    if midi.ticks_per_beat < 0:  # SMPTE: the division's high bit is set
        repairs.append(smpte_to_metrical(midi))
        rewrite = True
    if program is not None:
        force_program(midi, program)
        rewrite = True
    return midi, data, repairs, rewrite


NOTE_GRID = 48  # steps a beat: onsets compared on this grid (a 32nd-note triplet is 4 steps)
MIN_DIGEST_NOTES = 8  # fewer heard notes say too little to call two files one piece
_VOLUME_CONTROLS = {7: 100, 11: 127}  # channel volume and expression, with their usual starting values
_RESET_ALL_CONTROLLERS = 121
_LEVEL_CONTROLS = {*_VOLUME_CONTROLS, _RESET_ALL_CONTROLLERS}


def _follow_level(levels: dict[int, list[int]], message) -> None:
    """Keep ``levels`` (control -> value per channel) after a control change: a reset of all controllers sets
    expression back to 127 and leaves the volume, as FluidSynth does (MIDI's recommended practice RP-015)."""
    if message.control == _RESET_ALL_CONTROLLERS:
        levels[11][message.channel] = 127
    elif message.control in levels:
        levels[message.control][message.channel] = message.value


def heard_notes(data: bytes) -> list[tuple[int, int, int]] | None:
    """What a MIDI file plays, as :func:`notes_digest` compares it: each heard note's (onset in steps of
    1 / NOTE_GRID beat from the first note, instrument: its program or -1 for drums, pitch), sorted; None
    for a file render cannot read (it says why) or without a heard note."""
    return _heard(data)[0]


def heard_notes_and_patterns(data: bytes) -> tuple[list[tuple[int, int, int]] | None, np.ndarray | None]:
    """(:func:`heard_notes`, :func:`melodic_patterns`) of a MIDI file's bytes, read once."""
    return _heard(data)


PATTERN_INTERVALS = 4  # a melodic pattern: this many successive intervals of one part (5 notes)
MIN_PATTERNS = 32  # a set of fewer distinct patterns is too short to call a file a version of another
CHORD_BEATS = 0.1  # notes starting within this many beats of a chord's first note are one chord (50 ms at 120 bpm)
WHOLE_FILE = 1 << 40  # added to the patterns of the whole file's top line (above every part's 28-bit code)


def melodic_patterns(parts: dict[tuple[int, int], list[tuple[int, int]]], ticks_per_beat: int) -> np.ndarray | None:
    """The distinct melodic patterns a file plays, two sets in one sorted int64 array: every run of
    PATTERN_INTERVALS successive intervals in semitones, one code each, of the top line of each part (a track's
    channel; drums left out), its highest note at each chord in the order they start (notes within CHORD_BEATS of
    a chord's first onset are one chord: a performance spreads a chord over a few milliseconds; a single note is
    a chord of one), codes below WHOLE_FILE; and of the whole file's top line, every part's notes heard as one,
    each code + WHOLE_FILE: what a keyboard performance recorded in one track shares with its score in parts (both
    hands in one stream). The chords' lower notes are left out, so that two pieces over the same block chords do
    not share their spacing. Neither tempo nor key changes them, nor note values slower than CHORD_BEATS apart:
    two versions of one work (another edition's note values, a transposition, a performance of the score, a score
    in parts against a performance in one track) share most of one set or the other, two works rarely a quarter
    (:func:`musicid.dataset.same_work_groups` compares each set apart). Notes closer than CHORD_BEATS (64ths,
    grace notes) are read as a chord. A set of fewer than MIN_PATTERNS is left out; None when both are."""
    tolerance = CHORD_BEATS * ticks_per_beat
    lines = [_top_line(notes, tolerance) for notes in parts.values() if len(notes) > PATTERN_INTERVALS]
    merged = [note for notes in parts.values() for note in notes]
    top = [_top_line(merged, tolerance)] if len(merged) > PATTERN_INTERVALS else []
    found = [_codes(lines), _codes(top) + WHOLE_FILE]
    kept = [codes for codes in found if len(codes) >= MIN_PATTERNS]
    return np.concatenate(kept) if kept else None


def _top_line(notes: list[tuple[int, int]], tolerance: float) -> np.ndarray:
    """The highest pitch of each chord of ``notes`` ((tick, pitch) each), in the order the chords start; a chord:
    the notes within ``tolerance`` ticks of its first onset (a single note is a chord of one)."""
    ticks, pitches = np.array(sorted(notes), dtype=np.int64).T
    chords = np.empty(len(ticks), dtype=np.int64)
    first = ticks[0]
    for index, tick in enumerate(ticks.tolist()):
        if tick - first > tolerance:
            first = tick
        chords[index] = first
    return np.maximum.reduceat(pitches, np.r_[0, np.nonzero(np.diff(chords))[0] + 1])  # from each chord's first


def _codes(lines: list[np.ndarray]) -> np.ndarray:
    """The distinct codes of every run of PATTERN_INTERVALS successive intervals of each line of pitches, sorted."""
    codes = []
    for pitches in lines:
        if len(pitches) <= PATTERN_INTERVALS:
            continue
        steps = np.clip(np.diff(pitches), -63, 63) + 64  # 7 bits an interval
        windows = np.lib.stride_tricks.sliding_window_view(steps, PATTERN_INTERVALS)
        codes.append(windows @ (1 << (7 * np.arange(PATTERN_INTERVALS, dtype=np.int64))))
    return np.unique(np.concatenate(codes)) if codes else np.zeros(0, dtype=np.int64)


def _heard(data: bytes) -> tuple[list[tuple[int, int, int]] | None, np.ndarray | None]:
    try:
        midi = _repaired(data)[0]
    except RenderError:
        return None, None
    if midi.ticks_per_beat <= 0:  # a division of 0 ticks: no beat to count in
        return None, None
    # The tracks on one timeline, as a player merges them (a program set in another track counts), the events
    # of one tick in the order of their tracks; only what the digest reads (mido.merge_tracks copies all).
    events = []
    for index, track in enumerate(midi.tracks):
        tick = 0
        for position, message in enumerate(track):
            tick += message.time
            if message.type == "program_change" or (message.type == "note_on" and message.velocity > 0) or \
                    (message.type == "control_change" and message.control in _LEVEL_CONTROLS):
                events.append((tick, index, position, message))
    events.sort(key=lambda event: event[:3])
    programs = [0] * 16
    levels = {control: [start] * 16 for control, start in _VOLUME_CONTROLS.items()}
    notes = []
    parts: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (track, channel) -> its heard (tick, pitch)
    for tick, track, _, message in events:
        if message.type == "program_change":
            programs[message.channel] = message.program
        elif message.type == "control_change":
            _follow_level(levels, message)
        elif all(level[message.channel] > 0 for level in levels.values()):
            instrument = -1 if message.channel == DRUM_CHANNEL else programs[message.channel]
            notes.append((tick, instrument, message.note))
            if message.channel != DRUM_CHANNEL:
                parts.setdefault((track, message.channel), []).append((tick, message.note))
    if not notes:
        return None, None
    first = min(tick for tick, _, _ in notes)
    return sorted((round((tick - first) * NOTE_GRID / midi.ticks_per_beat), instrument, pitch)
                  for tick, instrument, pitch in notes), melodic_patterns(parts, midi.ticks_per_beat)


def notes_digest(data: bytes) -> str | None:
    """The sha256 of what a MIDI file plays, to find one piece saved twice: each heard note's onset in beats
    (counted from the first note, on a grid of 1 / NOTE_GRID beat), its pitch, and its channel's instrument
    (its program, or drums).  A copy another program saved (other meta events, track layout or running
    status, another resolution or tempo map, other velocities or note lengths, a lead-in) has the same
    digest; the same notes on other instruments do not, nor a copy in which a part is silenced (a note
    under channel volume or expression 0 is not heard, so not counted).  The file is read as render reads
    it (its repairs made); None for one it cannot read (render says why) or with fewer than
    MIN_DIGEST_NOTES heard notes.
    """
    return digest_of_notes(heard_notes(data))


def digest_of_notes(notes: list[tuple[int, int, int]] | None) -> str | None:
    """:func:`notes_digest` of a file's :func:`heard_notes` (read once by a caller that needs them for more)."""
    if notes is None or len(notes) < MIN_DIGEST_NOTES:
        return None
    return hashlib.sha256(repr(notes).encode()).hexdigest()


MIN_CONTAINED_NOTES = 64  # a file of fewer heard notes is never taken for a part of another
EARLY_BEATS = 8  # the beats from the first note whose notes a file's :func:`early_notes` hold


def early_notes(notes: list[tuple[int, int, int]] | None) -> frozenset:
    """The heard notes (:func:`heard_notes`) of a file's first EARLY_BEATS beats, for one of at least
    MIN_CONTAINED_NOTES (empty otherwise): a file held in another (:func:`holds_notes`) has its early notes
    among the other's, which is quick to test on many pairs."""
    if notes is None or len(notes) < MIN_CONTAINED_NOTES:
        return frozenset()
    return frozenset(note for note in notes if note[0] < EARLY_BEATS * NOTE_GRID)


def pitch_counts(notes: list[tuple[int, int, int]] | None) -> tuple[int, ...]:
    """How many heard notes of each of the 128 pitches a file plays (:func:`heard_notes`): a file held in
    another plays no pitch more often than it, which is quick to test on many pairs."""
    counts = [0] * 128
    for _, _, pitch in notes or ():
        counts[pitch] += 1
    return tuple(counts)


def holds_notes(whole: list[tuple[int, int, int]], part: list[tuple[int, int, int]]) -> bool:
    """Whether every heard note of ``part`` is one of ``whole`` (both sorted, as :func:`heard_notes` gives
    them; a note twice in ``part`` must be twice in ``whole``), ``part`` having at least MIN_CONTAINED_NOTES:
    a copy cut short (the tracks it holds whole, the one it stops in as far as it goes, none after) or an
    excerpt from the start, or one part of the piece alone."""
    if len(part) < MIN_CONTAINED_NOTES or len(part) > len(whole):
        return False
    position = 0
    for note in part:
        while position < len(whole) and whole[position] < note:
            position += 1
        if position == len(whole) or whole[position] != note:
            return False
        position += 1
    return True


def fit_cut_file(data: bytes) -> tuple[bytes, str]:
    """(``data`` made whole, what was done) for a file that stops before its header's promise; (``data``, "")
    when it does not, or when what follows cannot be told apart from a file that is whole but wrong.

    The track chunk that runs past the end of the file keeps its whole events; notes they leave sounding get a
    note-off there (FluidSynth would hold them to the end of the render, and pretty_midi drops a note without
    one), then an End of Track; the header then counts only the tracks present (those after the cut never
    came). A last track whose events end with an End of Track before the end of the file merely overstates
    its length: it is read to that End of Track. Not done when the chunk that runs past the end is not a track,
    when the bytes of a track chunk's name follow it (a length field that is wrong, not a file cut short:
    that chunk's header would be read as events), or when its events are damaged before the end.
    """
    if data[:4] != b"MThd" or len(data) < 14:
        return data, ""
    tracks = struct.unpack(">H", data[10:12])[0]
    position = 8 + struct.unpack(">I", data[4:8])[0]
    seen = 0
    while position + 8 <= len(data):
        chunk, length = data[position:position + 4], struct.unpack(">I", data[position + 4:position + 8])[0]
        if position + 8 + length <= len(data):
            seen += chunk == b"MTrk"
            position += 8 + length
            continue
        if chunk != b"MTrk" or b"MTrk" in data[position + 8:] or seen >= tracks:
            return data, ""
        seen += 1
        events, stop = _track_events(data, position + 8, len(data))
        if stop == "damaged":
            return data, ""
        ended = bool(events) and _is_end_of_track(data, events[-1])
        whole = events[-1][3] if events else position + 8
        if ended and seen == tracks:
            body = data[position + 8:whole]
            repair = (f"the last track's length overstated by {position + 8 + length - len(data)} bytes; read to "
                      "its End of Track")
        else:
            sounding = _sounding_notes(data, events)
            body = (data[position + 8:whole] + b"".join(bytes([0, 0x80 | channel, note, 64])
                                                        for channel, note in sounding) + _END_OF_TRACK)
            held = f" ({len(sounding)} note(s) it left sounding end there)" if sounding else ""
            repair = (f"cut short: the file stops inside track {seen} of {tracks}; its events before the cut are "
                      f"read{held}")
        return _with_tracks(data[:position + 4] + struct.pack(">I", len(body)) + body, seen), repair
    if seen == 0 or seen >= tracks:
        return data, ""
    if position == len(data):  # no part of a next chunk: cut between two, or a header that counts too many
        return (_with_tracks(data, seen), f"the header counts {tracks} tracks, the file holds {seen} (cut short "
                                          "after the last, or a wrong count); those are read")
    return (_with_tracks(data[:position], seen),
            f"cut short: the file stops after track {seen} of {tracks}; those are read")


def _with_tracks(data: bytes, tracks: int) -> bytes:
    """A file's bytes with its header counting ``tracks`` tracks."""
    return data[:10] + struct.pack(">H", tracks) + data[12:]


# An event of a track: (where its status byte is, or its first data byte under running status; its status;
# where its data begins, after a meta or sysex event's length; where the event ends).
Event = tuple[int, int, int, int]


def _track_events(data: bytes, start: int, end: int) -> tuple[list[Event], str]:
    """The whole events of the track events from ``start`` to ``end``, and why the walk stopped: ``"end"``
    (at ``end``, or after an End of Track), ``"cut"`` (an event runs past ``end``) or ``"damaged"`` (a data
    byte with no running status before it)."""
    events: list[Event] = []
    index, running = start, None
    while index < end:
        delta = _varlen(data, index, end)
        if delta is None or delta[1] >= end:
            return events, "cut"
        at = delta[1]
        status = data[at]
        if status == 0xFF or status in (0xF0, 0xF7):  # meta (its kind, then a length) or sysex (a length)
            if status == 0xFF and at + 1 >= end:
                return events, "cut"
            length = _varlen(data, at + 2 if status == 0xFF else at + 1, end)
            if length is None:
                return events, "cut"
            body, after = length[1], length[1] + length[0]
        elif status > 0xF0:  # system common and real-time messages: a fixed length. A file's running status
            # is its writer's, which concerns channel messages only: data bytes after this one's own go on with
            # the channel's status (mido reads them as more of this message; a track that starts so is mido's).
            body, after = at + 1, at + 1 + _SYSTEM_DATA_BYTES.get(status, 0)
        elif status >= 0x80:
            running, body, after = status, at + 1, at + 1 + _CHANNEL_DATA_BYTES[status >> 4]
        elif running is not None:
            status, body, after = running, at, at + _CHANNEL_DATA_BYTES[running >> 4]
        else:
            return events, "damaged"
        if after > end:
            return events, "cut"
        events.append((at, status, body, after))
        if _is_end_of_track(data, events[-1]):
            return events, "end"
        index = after
    return events, "end"


def _is_end_of_track(data: bytes, event: Event) -> bool:
    return event[1] == 0xFF and data[event[0] + 1] == _END_OF_TRACK_KIND


def _sounding_notes(data: bytes, events: list[Event]) -> list[tuple[int, int]]:
    """(channel, key) of each note the events turn on and not off, in order."""
    sounding: dict[tuple[int, int], None] = {}
    for _, status, body, _ in events:
        if status >> 4 in (0x8, 0x9):
            note = (status & 0x0F, data[body])
            if status >> 4 == 0x9 and data[body + 1] > 0:
                sounding[note] = None
            else:  # a note-off, or a note-on of velocity 0
                sounding.pop(note, None)
    return sorted(sounding)


def _varlen(data: bytes, position: int, end: int) -> tuple[int, int] | None:
    """(value, position after it) of a MIDI variable-length quantity; None when it does not end before ``end``."""
    value = 0
    while position < end:
        byte = data[position]
        position += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, position
    return None


def drop_system_messages(data: bytes) -> tuple[bytes, collections.Counter]:
    """``data`` without the system common and real-time messages of its whole track chunks (see
    :data:`_SYSTEM_MESSAGES`; undefined statuses 0xF4, 0xF5, 0xF9 and 0xFD too), each one's delta time added to
    the next event's, and how many of each kind went. A track with none, or whose events are damaged or run
    past its chunk, is left as it is (:func:`fit_cut_file` makes a cut one whole)."""
    from mido.midifiles.midifiles import encode_variable_int

    dropped: collections.Counter = collections.Counter()
    if data[:4] != b"MThd" or len(data) < 14:
        return data, dropped
    position = 8 + struct.unpack(">I", data[4:8])[0]
    kept = [data[:position]]
    while position + 8 <= len(data):
        chunk, end = data[position:position + 4], position + 8 + struct.unpack(">I", data[position + 4:position + 8])[0]
        if end > len(data):
            break
        events, stop = _track_events(data, position + 8, end) if chunk == b"MTrk" else ([], "")
        if stop != "end" or not any(0xF0 < status < 0xFF for _, status, _, _ in events):
            kept.append(data[position:end])
            position = end
            continue
        body, previous, carried = bytearray(), position + 8, 0
        for at, status, _, after in events:
            delta = _varlen(data, previous, end)[0]
            if 0xF0 < status < 0xFF:
                carried += delta
                dropped[_SYSTEM_MESSAGES.get(status, f"undefined 0x{status:X}")] += 1
            else:
                body += bytes(encode_variable_int(delta + carried)) + data[at:after]
                carried = 0
            previous = after
        if carried:  # dropped after the last event, with no End of Track to take their time
            body += bytes(encode_variable_int(carried)) + _END_OF_TRACK[1:]
        body += data[events[-1][3]:end]  # anything after an End of Track, as it was (read_midi_data drops
        kept.append(b"MTrk" + struct.pack(">I", len(body)) + bytes(body))  # system messages there)
        position = end
    return b"".join(kept) + data[position:], dropped


def is_zero_tempo(message) -> bool:
    return message.type == "set_tempo" and message.tempo == 0


def drop_messages(midi, unwanted: Callable[[object], bool]) -> None:
    """Take a parsed file's messages for which ``unwanted`` is true out of it, their delta times kept."""
    import mido

    for index, track in enumerate(midi.tracks):
        kept, carried = mido.MidiTrack(), 0
        for message in track:
            if unwanted(message):
                carried += message.time
                continue
            kept.append(message.copy(time=message.time + carried))
            carried = 0
        midi.tracks[index] = kept


def tempo_in_first_track(data: bytes) -> bytes:
    """A type-1 or type-2 file's bytes with the tempo changes of its other tracks moved into its first, at the
    same times.

    FluidSynth's player and mido follow a tempo change in any track; pretty_midi reads them from the first
    track only, so the notes it reads of such a file would drift from the render's time. Other files are
    returned as they are.
    """
    import mido

    midi = _parse(data)
    # Type 2 (tracks meant one after another) is played with its tracks together too, by FluidSynth and mido.
    if midi.type == 0 or not any(message.type == "set_tempo" for track in midi.tracks[1:] for message in track):
        return data

    def timed(track) -> list[tuple[int, object]]:
        """(absolute tick, message) of each message of a track."""
        return list(zip(itertools.accumulate(message.time for message in track), track))

    def relative(events: list[tuple[int, object]]) -> mido.MidiTrack:
        ticks = [tick for tick, _ in events]
        return mido.MidiTrack(message.copy(time=tick - previous)
                              for (tick, message), previous in zip(events, [0, *ticks]))

    tempos = [(tick, message) for track in midi.tracks[1:] for tick, message in timed(track)
              if message.type == "set_tempo"]
    first = [(tick, message) for tick, message in timed(midi.tracks[0]) if message.type != "end_of_track"]
    # A stable sort: at one tick, the first track's own messages, then the tempo changes in track order.
    midi.tracks[0] = relative(sorted(first + tempos, key=lambda event: event[0]))
    for index in range(1, len(midi.tracks)):
        midi.tracks[index] = relative([(tick, message) for tick, message in timed(midi.tracks[index])
                                       if message.type != "set_tempo"])
    return _serialize(midi)


def _parse(data: bytes):
    import mido

    try:
        return mido.MidiFile(file=io.BytesIO(data), clip=True)
    except (mido.midifiles.meta.KeySignatureError, RenderError):
        raise  # repairable (read_midi handles it), or a time limit that ran out
    except EOFError:  # mido's message for a file that stops mid-structure is empty
        raise RenderError("unparseable", "the file ends in the middle of a MIDI chunk (cut short?)") from None
    except Exception as error:  # noqa: BLE001 - mido raises many types on bad files
        raise RenderError("unparseable", f"{type(error).__name__}: {error}"[:200]) from None


def _serialize(midi) -> bytes:
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def coarser_ticks(data: bytes, most: int) -> bytes:
    """The MIDI file ``data`` with fewer ticks per beat, so that its largest tick is at most about ``most``.

    Every event moves to the nearest tick of the coarser grid from its absolute time (so the rounding does
    not add up along a track); tempos stay, so times in seconds move by less than one coarse tick (at 10080
    ticks per beat made 1440, a fifth of a millisecond at 120 beats a minute).
    """
    midi = _parse(data)
    largest = max((sum(message.time for message in track) for track in midi.tracks), default=0)
    old = midi.ticks_per_beat
    new = max(1, old * most // max(largest, 1))
    if new >= old:
        return data
    for track in midi.tracks:
        absolute = placed = 0
        for message in track:
            absolute += message.time
            moved = (2 * absolute * new + old) // (2 * old)  # round(absolute * new / old), in integers
            message.time, placed = moved - placed, moved
    midi.ticks_per_beat = new
    return _serialize(midi)


def _played(midi) -> tuple[float, tuple[int, ...]]:
    """(seconds of the last note event, the programs heard: :attr:`MidiSource.programs`), following tempo
    and program changes in every track, as FluidSynth's player does.

    The seconds are the same float as summing the delta times of mido's merged
    playback (``for message in midi``), delta by delta, without building that
    merged copy of every message: the messages of all tracks are sorted by
    absolute tick (stable, as mido sorts them), and since mido drops the
    end-of-track events and adds their delta to the next message, each delta
    is the distance in ticks to the previous other message, converted with
    mido's own :func:`tick2second` at the tempo then in force.  A program is
    heard when a note starts on its channel (drums: on channel 10) while the
    channel's volume and expression are not 0, as :func:`heard_notes` counts.
    """
    from mido.midifiles.units import tick2second

    try:
        ticks_per_beat = midi.ticks_per_beat
        entries = []  # (absolute tick, message), end-of-track events left out
        last_tick = 0
        for track in midi.tracks:
            tick = 0
            for message in track:
                tick += message.time
                if message.type != "end_of_track":
                    entries.append((tick, message))
            last_tick = max(last_tick, tick)
        entries.sort(key=lambda entry: entry[0])
        tempo = 500000  # microseconds per beat until a set_tempo (MIDI's default, mido's DEFAULT_TEMPO)
        previous, now, last_note, notes = 0, 0.0, 0.0, 0
        channel_programs = [0] * 16
        levels = {control: [start] * 16 for control, start in _VOLUME_CONTROLS.items()}
        heard = set()
        for tick, message in entries:
            if tick > previous:
                now += tick2second(tick - previous, ticks_per_beat, tempo)
                previous = tick
            kind = message.type
            if kind == "note_on":
                last_note = now
                if message.velocity > 0:
                    notes += 1
                    channel = message.channel
                    if all(level[channel] > 0 for level in levels.values()):
                        heard.add(-1 if channel == DRUM_CHANNEL else channel_programs[channel])
            elif kind == "note_off":
                last_note = now
            elif kind == "set_tempo":
                tempo = message.tempo
            elif kind == "program_change":
                channel_programs[message.channel] = message.program
            elif kind == "control_change":
                _follow_level(levels, message)
        if last_tick > previous:  # the closing end-of-track delta, converted as mido converts it
            tick2second(last_tick - previous, ticks_per_beat, tempo)
    except RenderError:
        raise  # a time limit that ran out
    except Exception as error:  # noqa: BLE001 - mido raises many types on bad files
        raise RenderError("unparseable", f"{type(error).__name__}: {error}"[:200]) from None
    if notes == 0:
        raise RenderError("no_notes", "the file holds no note events")
    return float(last_note), tuple(sorted(heard))


def midi_end_time(midi: str | Path | bytes) -> float:
    """Time of the last note event of a MIDI file (its path or its bytes), in seconds (after repairs)."""
    return read_midi(midi).end_seconds


def unwrap_rmid(data: bytes) -> bytes:
    """The Standard MIDI File inside a RIFF RMID file's ``data`` chunk."""
    position = 12
    while position + 8 <= len(data):
        chunk, size = data[position:position + 4], struct.unpack("<I", data[position + 4:position + 8])[0]
        if chunk == b"data":
            return data[position + 8: position + 8 + size]
        position += 8 + size + (size & 1)  # RIFF chunks are padded to an even length
    raise RenderError("unparseable", "RIFF-wrapped MIDI (RMID) without a data chunk")


def drop_impossible_key_signatures(data: bytes) -> tuple[bytes, int]:
    """Turn each key-signature meta event whose key mido refuses into a sequencer-specific one.

    A valid key has -7..7 sharps (a signed byte) and mode 0 (major) or 1
    (minor).  The event keeps its length, so no delta time or chunk size
    changes.  Returns (the new bytes, how many events were changed).  Walking
    stops quietly at the first malformed event of a track: mido then names it.
    """
    out = bytearray(data)
    dropped = 0
    position = 8 + struct.unpack(">I", data[4:8])[0] if len(data) >= 8 else len(data)
    while position + 8 <= len(data):
        chunk, size = data[position:position + 4], struct.unpack(">I", data[position + 4:position + 8])[0]
        start = position + 8
        position = start + size
        if chunk != b"MTrk":
            continue
        for at, status, body, after in _track_events(data, start, min(start + size, len(data)))[0]:
            if status == 0xFF and data[at + 1] == _KEY_SIGNATURE and not _valid_key(data[body:after]):
                out[at + 1] = _SEQUENCER_SPECIFIC
                dropped += 1
    return bytes(out), dropped


def _valid_key(body: bytes) -> bool:
    if len(body) < 2:
        return False
    sharps = body[0] - 256 if body[0] > 127 else body[0]
    return -7 <= sharps <= 7 and body[1] in (0, 1)


def smpte_to_metrical(midi) -> str:
    """Convert a mido MidiFile with SMPTE time division, in place, to ticks per beat; returns a description.

    mido reads the division as a signed 16-bit number: the high byte is minus
    the frame rate code, the low byte the ticks per frame.  A tick lasts
    1 / (frames per second * ticks per frame) s; the converted file has
    ``code * ticks per frame`` ticks per beat and one tempo giving that length.
    """
    import mido

    raw = midi.ticks_per_beat & 0xFFFF
    code, ticks_per_frame = 256 - (raw >> 8), raw & 0xFF
    if code not in SMPTE_FRAME_RATES or ticks_per_frame == 0:
        raise RenderError("unparseable", f"SMPTE time division with an unknown frame rate "
                                         f"(code {code}, {ticks_per_frame} ticks per frame)")
    ticks_per_second = SMPTE_FRAME_RATES[code] * ticks_per_frame
    midi.ticks_per_beat = code * ticks_per_frame
    tempo = round(1_000_000 * midi.ticks_per_beat / ticks_per_second)  # microseconds per beat
    for track in midi.tracks:
        kept, carried = [], 0
        for message in track:
            if message.type == "set_tempo":
                carried += message.time  # its delta time passes on to the next event
                continue
            kept.append(message.copy(time=message.time + carried) if carried else message)
            carried = 0
        track[:] = kept
    if midi.tracks:
        midi.tracks[0].insert(0, mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    return (f"SMPTE time division ({SMPTE_FRAME_RATES[code]:.5g} fps x {ticks_per_frame} ticks) converted "
            f"to {midi.ticks_per_beat} ticks per beat")


def force_program(midi, program: int) -> None:
    """Set every program change on a melodic channel to ``program``, and start each melodic channel with it.

    Drums (channel 10) stay drums.  midi: a mido MidiFile, changed in place.
    """
    import mido

    for track in midi.tracks:
        for index, message in enumerate(track):
            if message.type == "program_change" and message.channel != DRUM_CHANNEL:
                track[index] = message.copy(program=program)
    if midi.tracks:  # FluidSynth's player plays the tracks of a type-2 file together too: track 0 sets them all
        first = [mido.Message("program_change", channel=c, program=program, time=0)
                 for c in range(16) if c != DRUM_CHANNEL]
        midi.tracks[0][0:0] = first


def with_program(data: bytes, program: int) -> bytes:
    """Standard MIDI File bytes ``data`` with every melodic part on ``program`` (:func:`force_program`),
    written again through mido."""
    midi = _parse(data)
    force_program(midi, program)
    return _serialize(midi)


def reserialize_midi(data: bytes) -> bytes:
    """``data`` written again through mido.

    mido writes well-formed events whatever it read (e.g. meta events of the
    length the standard gives), which FluidSynth's stricter player then
    accepts.
    """
    return _serialize(_parse(data))

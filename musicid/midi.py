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
  last whole event and ended there, the tracks that never came are not
  counted; a last track whose length field merely overstates its bytes,
  its events whole, is read as it is.

A file still unreadable after these repairs is rejected ``unparseable`` with
mido's reason.
"""

from __future__ import annotations

import io
import itertools
import struct
from dataclasses import dataclass
from pathlib import Path

from musicid.checks import RenderError

DRUM_CHANNEL = 9  # General MIDI channel 10
SMPTE_FRAME_RATES = {24: 24.0, 25: 25.0, 29: 30000 / 1001, 30: 30.0}  # header code -> frames per second
# Data bytes after the status byte, by the status's high nibble (channel messages).
_CHANNEL_DATA_BYTES = {0x8: 2, 0x9: 2, 0xA: 2, 0xB: 2, 0xC: 1, 0xD: 1, 0xE: 2}
_SEQUENCER_SPECIFIC = 0x7F
FLUIDSYNTH_MAX_TRACKS = 127  # FluidSynth's player (2.3) plays nothing of a file of more tracks
_KEY_SIGNATURE = 0x59
_END_OF_TRACK_KIND = 0x2F
_END_OF_TRACK = b"\x00\xff\x2f\x00"  # delta 0, meta event End of Track, no data


@dataclass
class MidiSource:
    """A MIDI file as it will be rendered."""

    data: bytes  # the Standard MIDI File bytes to hand to FluidSynth
    end_seconds: float  # time of the last note event
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
    import mido

    repairs: list[str] = []
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":
        data = unwrap_rmid(data)
        repairs.append("RIFF-wrapped MIDI (RMID) unwrapped")
    # Each repair at most once, in the order mido's errors ask for them (a file can need both).
    keys_dropped, first_error = False, None
    while True:
        try:
            midi = _parse(data)
            break
        except mido.midifiles.meta.KeySignatureError as error:
            data, dropped = (data, 0) if keys_dropped else drop_impossible_key_signatures(data)
            if not dropped:
                raise RenderError("unparseable", f"KeySignatureError: {error}"[:200]) from None
            keys_dropped = True
            repairs.append(f"{dropped} key-signature event(s) with an impossible key dropped")
        except RenderError as error:
            # A file that stops before its header's promise: read what it holds (see fit_cut_file).
            data, repair = (data, "") if first_error else fit_cut_file(data)
            if not repair:
                raise (first_error or error) from None
            first_error = error
            repairs.append(repair)
    rewrite = False
    stalled = sum(message.type == "set_tempo" and message.tempo == 0 for track in midi.tracks for message in track)
    if stalled:  # 0 microseconds a beat: every later note at once (and pretty_midi divides by it)
        drop_zero_tempos(midi)
        repairs.append(f"{stalled} tempo event(s) of 0 microseconds a beat dropped")
        rewrite = True
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
    if rewrite:
        data = _serialize(midi)
    return MidiSource(data, _end_time(midi), repairs, rewrite)


def fit_cut_file(data: bytes) -> tuple[bytes, str]:
    """(``data`` made whole, what was done) for a file that stops before its header's promise; (``data``, "")
    when it does not, or when what follows cannot be told apart from a file that is whole but wrong.

    The track chunk that runs past the end of the file is cut after its last whole event and given an End of
    Track there, and the header then counts only the tracks present (those after the cut never came). Not done
    when another track chunk follows the one that runs past the end (a length field that is wrong, not a file
    cut short: that chunk's header would be read as events), nor when the chunk is not a track.
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
        seen += 1
        if chunk != b"MTrk" or b"MTrk" in data[position + 8:] or seen > tracks:
            return data, ""
        events, ended = _whole_events(data, position + 8, len(data))
        if ended and seen == tracks:
            repair = (f"the last track's length overstated by {position + 8 + length - len(data)} bytes; "
                      "its events read as they are")
        else:
            repair = (f"cut short: the file stops inside track {seen} of {tracks}; its events before the cut "
                      "are read")
        body = data[position + 8:events] + (b"" if ended else _END_OF_TRACK)
        return (data[:10] + struct.pack(">H", seen) + data[12:position + 4]
                + struct.pack(">I", len(body)) + body), repair
    if seen == 0 or seen >= tracks or position > len(data):
        return data, ""
    return (data[:10] + struct.pack(">H", seen) + data[12:position],
            f"cut short: the file stops after track {seen} of {tracks}; those are read")


def _whole_events(data: bytes, start: int, end: int) -> tuple[int, bool]:
    """(where the last whole event of the track events from ``start`` ends, whether that event is the End of
    Track) for events that run to ``end`` or past it; the walk stops at the first event that does not fit, or
    that no reader could take (a data byte with no running status)."""
    index, whole, running = start, start, None
    while index < end:
        _, after = _read_varlen(data, index, end)  # delta time
        if not _ended_varlen(data, index, after) or after >= end:
            break
        index = after
        status = data[index]
        if status == 0xFF:
            if index + 2 > end:
                break
            kind = data[index + 1]
            length, body = _read_varlen(data, index + 2, end)
            index = body + length if _ended_varlen(data, index + 2, body) else end + 1
            if index <= end and kind == _END_OF_TRACK_KIND:
                return index, True
        elif status in (0xF0, 0xF7):
            length, body = _read_varlen(data, index + 1, end)
            index = body + length if _ended_varlen(data, index + 1, body) else end + 1
        elif status >= 0x80:
            running = status
            index += 1 + _CHANNEL_DATA_BYTES.get(status >> 4, 0)
        elif running is not None:
            index += _CHANNEL_DATA_BYTES[running >> 4]
        else:
            break
        if index > end:
            break
        whole = index
    return whole, False


def _ended_varlen(data: bytes, start: int, after: int) -> bool:
    """Whether the variable-length quantity read from ``start`` to ``after`` has its last byte (not one the
    end of the data stopped)."""
    return after > start and data[after - 1] < 0x80


def drop_zero_tempos(midi) -> None:
    """Take a parsed file's tempo events of 0 microseconds a beat out of it, their delta times kept."""
    import mido

    for index, track in enumerate(midi.tracks):
        kept, carried = mido.MidiTrack(), 0
        for message in track:
            if message.type == "set_tempo" and message.tempo == 0:
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


def _end_time(midi) -> float:
    """Seconds of the last note event, following tempo changes in every track, as FluidSynth's player does.

    The same float as summing the delta times of mido's merged playback
    (``for message in midi``), delta by delta, without building that merged
    copy of every message: the messages of all tracks are sorted by absolute
    tick (stable, as mido sorts them), and since mido drops the end-of-track
    events and adds their delta to the next message, each delta is the
    distance in ticks to the previous other message, converted with mido's own
    :func:`tick2second` at the tempo then in force.
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
        for tick, message in entries:
            if tick > previous:
                now += tick2second(tick - previous, ticks_per_beat, tempo)
                previous = tick
            kind = message.type
            if kind == "note_on":
                last_note = now
                notes += message.velocity > 0
            elif kind == "note_off":
                last_note = now
            elif kind == "set_tempo":
                tempo = message.tempo
        if last_tick > previous:  # the closing end-of-track delta, converted as mido converts it
            tick2second(last_tick - previous, ticks_per_beat, tempo)
    except RenderError:
        raise  # a time limit that ran out
    except Exception as error:  # noqa: BLE001 - mido raises many types on bad files
        raise RenderError("unparseable", f"{type(error).__name__}: {error}"[:200]) from None
    if notes == 0:
        raise RenderError("no_notes", "the file holds no note events")
    return float(last_note)


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


def _read_varlen(data: bytes, position: int, end: int) -> tuple[int, int]:
    """(value, position after it) of a MIDI variable-length quantity."""
    value = 0
    for _ in range(4):
        if position >= end:
            break
        byte = data[position]
        position += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            break
    return value, position


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
        end = min(start + size, len(data))
        position = start + size
        if chunk != b"MTrk":
            continue
        index, running = start, None
        while index < end:
            _, index = _read_varlen(data, index, end)  # delta time
            if index >= end:
                break
            status = data[index]
            if status == 0xFF and index + 1 < end:
                kind = data[index + 1]
                length, body = _read_varlen(data, index + 2, end)
                if kind == _KEY_SIGNATURE and not _valid_key(data[body:body + length]):
                    out[index + 1] = _SEQUENCER_SPECIFIC
                    dropped += 1
                index = body + length
            elif status in (0xF0, 0xF7):
                length, body = _read_varlen(data, index + 1, end)
                index = body + length
            elif status >= 0x80:
                running = status
                index += 1 + _CHANNEL_DATA_BYTES.get(status >> 4, 0)
            elif running is not None:
                index += _CHANNEL_DATA_BYTES[running >> 4]
            else:
                break
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
    if midi.type != 2 and midi.tracks:
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

"""MIDI files other readers accept: repaired and rendered (recovered), or rejected with the true reason."""

from __future__ import annotations

import io
import struct

import mido
import pytest

from musicid import render, synth
from musicid.midi import drop_impossible_key_signatures, read_midi
from tests.test_render import render_to, renderer, smf, task, worker  # noqa: F401 - fixtures used by name

NOTE_HALF_SECOND = "00903C64" "8360803C40" "00FF2F00"  # C4 for 480 ticks: 0.5 s at 120 bpm


def rmid(standard_midi_file: bytes) -> bytes:
    """A RIFF RMID file wrapping ``standard_midi_file`` in its data chunk (padded to an even length)."""
    pad = b"\0" * (len(standard_midi_file) & 1)
    body = b"RMID" + b"data" + struct.pack("<I", len(standard_midi_file)) + standard_midi_file + pad
    return b"RIFF" + struct.pack("<I", len(body)) + body


def put(tmp_path, name, data):
    path = tmp_path / "a" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def test_riff_wrapped_midi_is_unwrapped_and_rendered(worker, tmp_path):
    path = put(tmp_path, "wrapped.mid", rmid(smf("00FF0301" "41" + NOTE_HALF_SECOND)))  # odd length: padded
    with pytest.raises(OSError, match="MThd not found"):
        mido.MidiFile(path)  # what made it unparseable
    record = render_to(tmp_path, task(tmp_path, "a/wrapped.mid"))
    assert (record["status"], record["reason"], record["outputs"]) == ("recovered", None, ["a/x.wav"])
    assert record["detail"] == "RIFF-wrapped MIDI (RMID) unwrapped"
    assert 0.5 <= record["duration_s"] <= 0.5 + synth.TAIL_SECONDS


@pytest.mark.parametrize("name, wrap", [("song.kar", False), ("song.RMI", True)])
def test_karaoke_and_rmi_files_are_midi_files(worker, tmp_path, name, wrap):
    """Two names MIDI files go by in real collections: download skipped them as unsupported_type and predict
    refused them, while the same bytes named .mid were rendered."""
    from musicid.filetypes import check_file

    data = smf("00FF0501" "41" + NOTE_HALF_SECOND)  # a lyric event, as a karaoke file has
    path = put(tmp_path, name, rmid(data) if wrap else data)
    assert check_file(path) is None
    record = render_to(tmp_path, task(tmp_path, f"a/{name}"))
    assert record["status"] == ("recovered" if wrap else "rendered") and record["outputs"] == ["a/x.wav"]


def test_riff_without_a_data_chunk_is_named(worker, tmp_path):
    put(tmp_path, "nodata.mid", b"RIFF" + struct.pack("<I", 12) + b"RMID" + b"LIST" + struct.pack("<I", 0))
    record = render_to(tmp_path, task(tmp_path, "a/nodata.mid"))
    assert (record["status"], record["reason"], record["detail"]) == (
        "rejected", "unparseable", "RIFF-wrapped MIDI (RMID) without a data chunk")


def test_impossible_key_signature_is_dropped(worker, tmp_path):
    data = smf("00FF59020900" + NOTE_HALF_SECOND)  # nine sharps: no such key
    path = put(tmp_path, "key.mid", data)
    with pytest.raises(mido.midifiles.meta.KeySignatureError):
        mido.MidiFile(path)
    record = render_to(tmp_path, task(tmp_path, "a/key.mid"))
    assert (record["status"], record["reason"]) == ("recovered", None)
    assert record["detail"] == "1 key-signature event(s) with an impossible key dropped"
    assert 0.5 <= record["duration_s"] <= 0.5 + synth.TAIL_SECONDS


def test_only_impossible_keys_are_touched():
    # A valid key (two flats, minor), an impossible mode, running status in between.
    data = smf("00FF5902FE01" "00903C64" "00403C" "00FF59020003" "8360803C40" "00FF2F00")
    repaired, dropped = drop_impossible_key_signatures(data)
    assert dropped == 1
    assert repaired == data.replace(bytes.fromhex("FF59020003"), bytes.fromhex("FF7F020003"))
    keys = [m for m in mido.MidiFile(file=__import__("io").BytesIO(repaired)).tracks[0] if m.type == "key_signature"]
    assert [m.key for m in keys] == ["Gm"]


def test_smpte_division_is_converted(worker, tmp_path):
    # 25 frames per second x 40 ticks per frame: 1000 ticks per second; the note lasts 1000 ticks.
    # The tempo event means nothing under SMPTE timing and must not stretch the note.
    path = put(tmp_path, "smpte.mid", smf("00FF510307A120" "00903C64" "8768803C40" "00FF2F00",
                                          division=0xE728))
    assert read_midi(path).end_seconds == pytest.approx(1.0)
    record = render_to(tmp_path, task(tmp_path, "a/smpte.mid"))
    assert (record["status"], record["reason"]) == ("recovered", None)
    assert record["detail"] == "SMPTE time division (25 fps x 40 ticks) converted to 1000 ticks per beat"
    assert 1.0 <= record["duration_s"] <= 1.0 + synth.TAIL_SECONDS


def many_tracks(count: int) -> bytes:
    """A type-1 file of ``count`` tracks: a half-second note in the first and a second one, after it, in the
    last; the others empty."""
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    for index in range(count):
        track = mido.MidiTrack()
        if index in (0, count - 1):
            track += [mido.Message("note_on", note=60, velocity=100, time=0 if index == 0 else 480),
                      mido.Message("note_off", note=60, velocity=64, time=480)]
        midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def test_a_file_of_more_tracks_than_fluidsynth_plays_is_merged(worker, tmp_path):
    """FluidSynth's player plays nothing of a file of 128 tracks or more: it was rejected as silent."""
    assert read_midi(many_tracks(127)).repairs == []  # as many as it plays: untouched
    put(tmp_path, "many.mid", many_tracks(150))
    record = render_to(tmp_path, task(tmp_path, "a/many.mid"))
    assert (record["status"], record["reason"]) == ("recovered", None)
    assert record["detail"] == "150 tracks merged into one (FluidSynth plays at most 127)"
    assert 1.0 <= record["duration_s"] <= 1.0 + synth.TAIL_SECONDS  # the last track's note is played too


def test_a_tempo_of_zero_is_dropped(worker, tmp_path):
    """A tempo event of 0 microseconds a beat played every later note at once (a 1-second piece rendered as
    0.46 s) and made pretty_midi divide by zero."""
    midi = mido.MidiFile(type=0, ticks_per_beat=480)
    midi.tracks.append(mido.MidiTrack([
        mido.Message("note_on", note=60, velocity=90, time=0), mido.Message("note_off", note=60, time=480),
        mido.MetaMessage("set_tempo", tempo=0, time=0),
        mido.Message("note_on", note=64, velocity=90, time=0), mido.Message("note_off", note=64, time=480)]))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    put(tmp_path, "stalled.mid", buffer.getvalue())
    record = render_to(tmp_path, task(tmp_path, "a/stalled.mid"))
    assert (record["status"], record["detail"]) == ("recovered", "1 tempo event(s) of 0 microseconds a beat dropped")
    assert 1.0 <= record["duration_s"] <= 1.0 + synth.TAIL_SECONDS
    from musicid.symbolic import read_notes

    assert read_notes(tmp_path / "a" / "stalled.mid").start.tolist() == [0.0, 0.5]


@pytest.mark.parametrize("system, running, kind", [
    ("F301", False, "song_select"), ("F20000", False, "songpos"), ("F100", False, "quarter_frame"),
    ("F6", False, "tune_request"), ("F8", False, "clock"), ("FE", False, "active_sensing"), ("F4", False,
    "undefined 0xF4"), ("F8", True, "clock"), ("FA", True, "start")])
def test_system_messages_a_midi_file_cannot_hold_are_dropped(worker, tmp_path, system, running, kind):
    """A song select (F3), song position (F2), MTC quarter frame (F1), tune request (F6), real-time byte or
    undefined status in a track: FluidSynth's player refused the whole file and the piece was rejected as
    silent; mido took a real-time byte for the running status of the note-off after it (unparseable). Its delta
    time is kept: the second note still starts at 1 s."""
    note_off = "4000" if running else "804040"  # running: a note-on of velocity 0, across the real-time byte
    data = smf("00903C64" "8360803C40" f"8360{system}" "00904064" f"8360{system}" f"00{note_off}" "00FF2F00")
    put(tmp_path, "system.mid", data)
    record = render_to(tmp_path, task(tmp_path, "a/system.mid"))
    assert (record["status"], record["detail"]) == (
        "recovered", f"2 system message(s) a MIDI file cannot hold dropped ({kind} x2)")
    assert 1.5 <= record["duration_s"] <= 1.5 + synth.TAIL_SECONDS
    from musicid.symbolic import read_notes

    notes = read_notes(tmp_path / "a" / "system.mid")
    assert notes.start.tolist() == [0.0, 1.0] and notes.end.tolist() == [0.5, 1.5]


@pytest.mark.parametrize("events, kind, kept", [
    # Inserted into a stream of running status (a writer's running status concerns channel messages only): the
    # data bytes after the song position's own are the notes' (mido reads them as more song positions).
    ("00903C64" "00F20102" "003E64" "8360803C40" "00803E40", "songpos x1",
     [("note_on", 60), ("note_on", 62), ("note_off", 60), ("note_off", 62)]),
    # Quarter frames under running status at the start of a track, where no channel status came before: the
    # walk finds that damaged, mido reads more quarter frames, and they are dropped all the same.
    ("00F101" "0002" "0003" "00903C64" "8360803C40", "quarter_frame x3", [("note_on", 60), ("note_off", 60)]),
])
def test_system_messages_among_running_status_are_dropped(events, kind, kept):
    repaired = read_midi(smf(events + "00FF2F00"))
    count = int(kind.rsplit("x", 1)[1])
    assert repaired.repairs == [f"{count} system message(s) a MIDI file cannot hold dropped ({kind})"]
    track = mido.MidiFile(file=io.BytesIO(repaired.data)).tracks[0]
    assert [(message.type, getattr(message, "program", getattr(message, "note", None))) for message in track
            if not message.is_meta] == kept


def test_a_system_message_after_the_end_of_track_is_dropped_and_other_bytes_there_kept():
    """After an End of Track inside its chunk the walk does not go: mido read the clock there, and writing the
    file again (a forced program) raised ValueError out of the stage. Bytes there that are no system message
    stay as they were."""
    with_clock = smf("00903C64" "8360803C40" "00FF2F00" "00F8")
    repaired = read_midi(with_clock, program=0)
    assert repaired.repairs == ["1 system message(s) a MIDI file cannot hold dropped (clock x1)"]
    assert all(message.type != "clock" for message in mido.MidiFile(file=io.BytesIO(repaired.data)).tracks[0])
    trailing = smf("00F8" "00903C64" "8360803C40" "00FF2F00" "00903E64")
    data = read_midi(trailing).data
    assert data.endswith(bytes.fromhex("00FF2F00" "00903E64")) and b"\xf8" not in data


def test_a_system_message_last_in_a_track_without_end_keeps_its_time():
    """Dropped where no End of Track follows to take its delta time, one is written with it."""
    data = smf("00903C64" "8360803C40" "8360F8")
    repaired = read_midi(data)
    assert repaired.repairs == ["1 system message(s) a MIDI file cannot hold dropped (clock x1)"]
    track = mido.MidiFile(file=io.BytesIO(repaired.data)).tracks[0]
    assert [(message.type, message.time) for message in track] == [
        ("note_on", 0), ("note_off", 480), ("end_of_track", 480)]


def test_a_last_track_whose_length_is_overstated_is_read_as_it_is(worker, tmp_path):
    """Its events all there, the length field 100 bytes too long: mido refused it (unparseable, "cut short?"),
    FluidSynth plays it."""
    whole = many_tracks(2)
    last = whole.rindex(b"MTrk")
    length = struct.unpack(">I", whole[last + 4:last + 8])[0]
    put(tmp_path, "long.mid", whole[:last + 4] + struct.pack(">I", length + 100) + whole[last + 8:])
    record = render_to(tmp_path, task(tmp_path, "a/long.mid"))
    assert (record["status"], record["detail"]) == (
        "recovered", "the last track's length overstated by 100 bytes; read to its End of Track")
    assert 1.0 <= record["duration_s"] <= 1.0 + synth.TAIL_SECONDS
    from musicid.symbolic import read_notes

    assert read_notes(tmp_path / "a" / "long.mid").start.tolist() == [0.0, 0.5]
    # The header counts 2 tracks, 3 follow, the second overstated: not the last track, not fitted (its length
    # would take the third chunk's header for events).
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    for index in range(3):
        midi.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60 + index, velocity=90, time=480 * index),
                                           mido.Message("note_off", note=60 + index, time=480)]))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    three = buffer.getvalue()
    second = three.index(b"MTrk", three.index(b"MTrk") + 4)
    length = struct.unpack(">I", three[second + 4:second + 8])[0]
    miscounted = three[:10] + struct.pack(">H", 2) + three[12:second + 4] + struct.pack(">I", length + 1000) + \
        three[second + 8:]
    put(tmp_path, "miscounted.mid", miscounted)
    assert render_to(tmp_path, task(tmp_path, "a/miscounted.mid"))["reason"] == "unparseable"


def three_parts() -> bytes:
    """A type-1 file of three tracks of half-second notes one after the other: C4 in the first, D4 then E4 in
    the second, F4 in the third."""
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    for first, notes in ((0, [60]), (480, [62, 64]), (1440, [65])):
        track = mido.MidiTrack()
        for index, note in enumerate(notes):
            track += [mido.Message("note_on", note=note, velocity=100, time=first if index == 0 else 0),
                      mido.Message("note_off", note=note, velocity=64, time=480)]
        midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("cut, starts, detail", [
    # Inside the last track's last note-off (delta 2 bytes, 3 bytes of message, then 4 of End of Track).
    (-6, [0.0, 0.5, 1.0], "the file stops inside track 3 of 3; its events before the cut are read (1 note(s) "
                          "it left sounding end there)"),
    # Inside the End of Track itself: every note there.
    (-3, [0.0, 0.5, 1.0, 1.5], "the file stops inside track 3 of 3; its events before the cut are read"),
    # Inside the second track's second note-off: the third track never came.
    ("second+3", [0.0, 0.5], "the file stops inside track 2 of 3; its events before the cut are read (1 "
                             "note(s) it left sounding end there)"),
    # After the second track, and a few bytes into the third's chunk header.
    # Between two chunks, it may as well be a header that counts a track too many.
    ("third", [0.0, 0.5, 1.0], "the header counts 3 tracks, the file holds 2 (cut short after the last, or a "
                               "wrong count); those are read"),
    ("third+5", [0.0, 0.5, 1.0], "the file stops after track 2 of 3; those are read"),
])
def test_a_midi_file_cut_short_keeps_what_it_holds(worker, tmp_path, cut, starts, detail):
    """An interrupted copy or download: mido refused the file ("ends in the middle of a MIDI chunk") and its
    music was lost; now the notes before the cut are rendered and read, the file marked recovered."""
    from musicid.symbolic import read_notes

    whole = three_parts()
    second = whole.index(b"MTrk", whole.index(b"MTrk") + 4)
    third = whole.index(b"MTrk", second + 4)
    ends = {"second+3": third - 7, "third": third, "third+5": third + 5}  # second track: note-off, End of Track
    data = whole[:cut] if isinstance(cut, int) else whole[:ends[cut]]
    with pytest.raises(EOFError):
        mido.MidiFile(file=io.BytesIO(data))
    path = put(tmp_path, "cut.mid", data)
    record = render_to(tmp_path, task(tmp_path, "a/cut.mid"))
    assert (record["status"], record["detail"]) == ("recovered", detail if detail.startswith("the header") else
                                                    "cut short: " + detail)
    assert max(starts) + 0.5 - 0.01 <= record["duration_s"] <= max(starts) + 0.5 + synth.TAIL_SECONDS
    assert read_notes(path).start.tolist() == starts


def test_a_file_cut_short_with_an_impossible_key_gets_both_repairs(worker, tmp_path):
    """Either repair alone left it unparseable: mido names one fault, the repair of the other never ran."""
    whole = smf("00FF59020900" "00903C64" "8360803C40" "00903E64" "8360803E40" "00FF2F00")  # nine sharps; C4, D4
    put(tmp_path, "both.mid", whole[:-6])  # cut inside D4's note-off
    record = render_to(tmp_path, task(tmp_path, "a/both.mid"))
    assert (record["status"], record["detail"]) == ("recovered", "1 key-signature event(s) with an impossible key "
                                                    "dropped; cut short: the file stops inside track 1 of 1; its "
                                                    "events before the cut are read (1 note(s) it left sounding "
                                                    "end there)")
    from musicid.symbolic import read_notes

    assert read_notes(tmp_path / "a" / "both.mid").start.tolist() == [0.0]


def test_a_cut_ends_the_notes_it_left_sounding():
    """FluidSynth held a note whose note-off was cut away to the end of the render (12 s of a 0.5 s note), and
    pretty_midi dropped it: it now ends where the file stops, in sound and in notes."""
    from musicid.midi import fit_cut_file

    whole = smf("00C013" "00903064" "00913C64" "8360803040" "8360813C40" "00FF2F00")  # C3 and C4 on two channels
    fitted, repair = fit_cut_file(whole[:-6])  # inside C4's note-off
    assert repair.endswith("(1 note(s) it left sounding end there)")
    track = mido.MidiFile(file=io.BytesIO(fitted)).tracks[0]
    assert [(m.type, getattr(m, "channel", None), getattr(m, "note", None)) for m in track][-3:] == [
        ("note_off", 0, 48), ("note_off", 1, 60), ("end_of_track", None, None)]


def test_system_messages_and_damage_in_a_cut_track(worker, tmp_path):
    """A song-select message (which mido reads, and FluidSynth's player refuses) made the walk raise KeyError,
    a cut file and a whole one with an overstated length alike; a track damaged before the cut (a data byte with
    no running status) is no cut."""
    with_song_select = smf("00F305" + "00903C64" "8360803C40" "00903E64" "8360803E40" "00FF2F00")
    assert read_midi(with_song_select[:-6]).repairs[0].startswith("cut short: ")
    overstated = with_song_select[:18] + struct.pack(">I", len(with_song_select) - 22 + 10) + with_song_select[22:]
    assert read_midi(overstated).repairs == ["the last track's length overstated by 10 bytes; read to its End of "
                                             "Track", "1 system message(s) a MIDI file cannot hold dropped "
                                             "(song_select x1)"]
    put(tmp_path, "damaged.mid", smf("3C64" + "00903C64" "8360803C40" "00FF2F00")[:-6])
    assert render_to(tmp_path, task(tmp_path, "a/damaged.mid"))["reason"] == "unparseable"


def test_a_midi_file_cut_in_its_header_is_unparseable_and_before_its_first_note_has_none(worker, tmp_path):
    whole = three_parts()
    first = whole.index(b"MTrk")
    for name, data in (("header.mid", whole[:12]), ("chunk.mid", whole[:first + 6])):
        put(tmp_path, name, data)
        record = render_to(tmp_path, task(tmp_path, f"a/{name}"))
        assert (record["status"], record["reason"]) == ("rejected", "unparseable"), name
    # Cut inside the first track's first event: the file holds one empty track, read, and no note.
    put(tmp_path, "event.mid", whole[:first + 10])
    record = render_to(tmp_path, task(tmp_path, "a/event.mid"))
    assert (record["status"], record["reason"]) == ("rejected", "no_notes")


def test_smpte_drop_frame_rate(tmp_path):
    # Code 29 is 29.97 frames per second: 2997 ticks at 100 ticks per frame are one second.
    path = put(tmp_path, "drop.mid", smf("00903C64" "9735803C40" "00FF2F00", division=0xE364))
    assert read_midi(path).end_seconds == pytest.approx(1.0, abs=1e-5)  # the tempo is whole microseconds


def test_smpte_with_an_unknown_frame_rate_is_named(worker, tmp_path):
    put(tmp_path, "smpte20.mid", smf(NOTE_HALF_SECOND, division=0xEC28))  # -20 fps does not exist
    record = render_to(tmp_path, task(tmp_path, "a/smpte20.mid"))
    assert (record["status"], record["reason"], record["detail"]) == (
        "rejected", "unparseable", "SMPTE time division with an unknown frame rate (code 20, 40 ticks per frame)")

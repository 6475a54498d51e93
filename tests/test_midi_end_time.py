"""The end time of a MIDI file's notes: the same float as mido's merged playback gives, on awkward files."""

from __future__ import annotations

import io
import random

import mido
import pytest

from musicid.checks import RenderError
from musicid.midi import _played, midi_end_time, read_midi, read_midi_data


def end_time_by_merged_playback(midi: mido.MidiFile) -> float:
    """The end time as first computed: summing the delta times of ``for message in midi``, one by one."""
    now, last_note = 0.0, 0.0
    for message in midi:
        now += message.time
        if message.type in ("note_on", "note_off"):
            last_note = now
    return last_note


def random_file(seed: int) -> mido.MidiFile:
    """A multi-track file with tempo changes in several tracks, events sharing ticks across tracks,
    and tracks ending at different ticks (their end-of-track events fall between other events)."""
    draw = random.Random(seed)
    midi = mido.MidiFile(type=1, ticks_per_beat=draw.choice([96, 480, 10080]))
    for track_index in range(draw.randint(1, 5)):
        track = mido.MidiTrack()
        for _ in range(draw.randint(0, 60)):
            delta = draw.choice([0, 0, 1, 7, 480, 5040, draw.randint(0, 30000)])
            kind = draw.random()
            if kind < 0.15:
                track.append(mido.MetaMessage("set_tempo", tempo=draw.randint(200000, 1500000), time=delta))
            elif kind < 0.55:
                track.append(mido.Message("note_on", note=60, velocity=draw.choice([0, 64]), time=delta))
            elif kind < 0.85:
                track.append(mido.Message("note_off", note=60, time=delta))
            else:
                track.append(mido.Message("control_change", control=7, value=100, time=delta))
        track.append(mido.MetaMessage("end_of_track", time=draw.choice([0, 1, 960, 100000])))
        midi.tracks.append(track)
    # Round trip through bytes, as read_midi reads every file.
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return mido.MidiFile(file=io.BytesIO(buffer.getvalue()), clip=True)


@pytest.mark.parametrize("seed", range(200))
def test_end_time_is_bit_identical_to_merged_playback(seed):
    midi = random_file(seed)
    if not any(message.type == "note_on" and message.velocity > 0 for track in midi.tracks for message in track):
        with pytest.raises(RenderError) as error:
            _played(midi)[0]
        assert error.value.reason == "no_notes"
        return
    assert _played(midi)[0] == end_time_by_merged_playback(midi)


def test_tempo_set_at_a_note_s_tick_in_a_later_track_applies_after_it():
    # Track 0's note at tick 480 comes before track 1's tempo change at the same tick in
    # merged order, so the beat before it is at 120 bpm and the next beat at 60 bpm.
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    midi.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=64, time=480),
                                       mido.Message("note_off", note=60, time=480)]))
    midi.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=1000000, time=480)]))
    assert _played(midi)[0] == 0.5 + 1.0


def test_end_of_track_events_between_notes_do_not_split_a_delta():
    # 5 ticks + 1 tick is not 6 ticks in floating point: the note at tick 6 is reached in one delta.
    midi = mido.MidiFile(type=1, ticks_per_beat=5)  # at 120 bpm a tick is 0.1 s
    midi.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=64, time=0),
                                       mido.MetaMessage("end_of_track", time=5)]))
    midi.tracks.append(mido.MidiTrack([mido.Message("note_off", note=60, time=6)]))
    assert end_time_by_merged_playback(midi) == 6 * 0.1
    assert _played(midi)[0] == 6 * 0.1 != 5 * 0.1 + 1 * 0.1


def test_zero_ticks_per_beat_is_unparseable_as_before(tmp_path):
    # mido divides by the division when converting a delta: the reason names the error it raised.
    path = tmp_path / "x.mid"
    events = bytes.fromhex("00903C64" "8360803C40" "00FF2F00")
    path.write_bytes(b"MThd" + (6).to_bytes(4, "big") + bytes([0, 0, 0, 1, 0, 0])
                     + b"MTrk" + len(events).to_bytes(4, "big") + events)
    with pytest.raises(RenderError) as error:
        read_midi(path)
    assert (error.value.reason, error.value.detail) == ("unparseable", "ZeroDivisionError: float division by zero")


def test_the_bytes_of_a_file_read_as_the_file(tmp_path):
    path = tmp_path / "x.mid"
    midi = random_file(3)
    midi.save(str(path))
    assert midi_end_time(path.read_bytes()) == midi_end_time(path) == end_time_by_merged_playback(midi)
    assert read_midi_data(path.read_bytes()) == read_midi(path)

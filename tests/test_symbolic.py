"""Symbolic features of hand-built MIDI notes: exact values per block, empty windows, transposed and faster renders."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest

from musicid.checks import RenderError
from musicid.symbolic import (DENSITY, DURATION_BLOCK, INTERVAL_BLOCK, IOI_BLOCK, MAX_POLYPHONY, MEAN_DURATION,
                              MEAN_POLYPHONY, ONSET_CLASS_BLOCK, PITCH_CLASS_BLOCK, PITCH_MEAN, PITCH_RANGE,
                              PITCH_STD, ROLL_DIM, ROLL_FRAMES, ROLL_PITCHES, SYMBOLIC_DIM, VERTICAL_BLOCK,
                              Notes, clip_features, estimate_tonic,
                              fold_intervals, read_notes, render_variants, symbolic_dim)


def write_triad(path, with_drums: bool = True):
    """C4 E4 G4 held from 0 to 2 s (piano), and, on the drum channel, a hi-hat at 0.5 s (ignored)."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    piano = pretty_midi.Instrument(program=0)
    for pitch in (60, 64, 67):
        piano.notes.append(pretty_midi.Note(velocity=100, pitch=pitch, start=0.0, end=2.0))
    midi.instruments.append(piano)
    if with_drums:
        drums = pretty_midi.Instrument(program=0, is_drum=True)
        drums.notes.append(pretty_midi.Note(velocity=100, pitch=42, start=0.5, end=0.6))
        midi.instruments.append(drums)
    midi.write(str(path))
    return path


def one_hot_thirds(classes):
    values = np.zeros(12)
    values[list(classes)] = 1 / 3
    return values


def test_a_c_major_triad_window(tmp_path):
    notes = read_notes(write_triad(tmp_path / "triad.mid"))
    assert notes.pitch.tolist() == [60, 64, 67]  # the drum note is not a note of the music
    (row,) = clip_features(notes, np.array([0.0]), 4.0)
    assert row.dtype == np.float32 and row.shape == (SYMBOLIC_DIM,) == (44,)
    np.testing.assert_allclose(row[PITCH_CLASS_BLOCK], one_hot_thirds([0, 4, 7]), atol=1e-7)
    np.testing.assert_allclose(row[ONSET_CLASS_BLOCK], one_hot_thirds([0, 4, 7]), atol=1e-7)
    intervals = np.zeros(13)
    intervals[[3, 4]] = 0.5  # C-E a major third, E-G a minor third
    np.testing.assert_allclose(row[INTERVAL_BLOCK], intervals, atol=1e-7)
    pitches = np.array([60.0, 64.0, 67.0])
    expected = {DENSITY: np.log1p(3 / 4), MEAN_POLYPHONY: np.log1p(6 / 4), MAX_POLYPHONY: np.log1p(3),
                PITCH_MEAN: pitches.mean() / 127, PITCH_STD: pitches.std() / 12, PITCH_RANGE: 7 / 12,
                MEAN_DURATION: np.log1p(2.0)}
    for index, value in expected.items():
        assert row[index] == pytest.approx(value, rel=1e-6), index


def test_windows_without_notes_or_onsets(tmp_path):
    notes = read_notes(write_triad(tmp_path / "triad.mid"))
    empty, held, late = clip_features(notes, np.array([4.0, 1.0, 2.0]), 4.0)
    assert not empty.any()
    assert not late.any()  # the notes end exactly where the window starts
    # Held notes without an onset: sounding pitch classes, but no onset, interval or density.
    np.testing.assert_allclose(held[PITCH_CLASS_BLOCK], one_hot_thirds([0, 4, 7]), atol=1e-7)
    assert not held[ONSET_CLASS_BLOCK].any() and not held[INTERVAL_BLOCK].any() and held[DENSITY] == 0
    assert held[MEAN_POLYPHONY] == pytest.approx(np.log1p(3 / 4))  # three notes for 1 s of 4
    assert held[MAX_POLYPHONY] == pytest.approx(np.log1p(3))


def test_a_transposed_faster_render_rotates_pitch_classes_and_scales_time(tmp_path):
    notes = read_notes(write_triad(tmp_path / "triad.mid"))
    # Two semitones up, twice as fast: the chord is D F# A from 0 to 1 s of the WAV.
    first, second = clip_features(notes, np.array([0.0, 1.0]), 4.0, transpose=2, tempo=2.0)
    np.testing.assert_allclose(first[PITCH_CLASS_BLOCK], one_hot_thirds([2, 6, 9]), atol=1e-7)
    assert first[MEAN_DURATION] == pytest.approx(np.log1p(1.0))
    assert first[MEAN_POLYPHONY] == pytest.approx(np.log1p(3 / 4))
    assert first[PITCH_MEAN] == pytest.approx((62 + 66 + 69) / 3 / 127, rel=1e-6)
    assert not second.any()  # WAV 1 s is MIDI 2 s, where the chord has ended
    plain = clip_features(notes, np.array([0.0]), 4.0)[0]
    np.testing.assert_allclose(first[INTERVAL_BLOCK], plain[INTERVAL_BLOCK])  # intervals do not move


def texture_notes() -> Notes:
    """C4 held 0-2 s; E4 0-0.5 s; G4 0.5-1 s; C5 1-1.1 s."""
    return Notes(np.array([0.0, 0.0, 0.5, 1.0]), np.array([2.0, 0.5, 1.0, 1.1]), np.array([60, 64, 67, 72]))


def test_texture_blocks_of_a_hand_built_window():
    (row,) = clip_features(texture_notes(), np.array([0.0]), 4.0, texture=True)
    assert row.dtype == np.float32 and row.shape == (symbolic_dim(True),) == (69,)
    # E4 starts over C4 (a major third), G4 over C4 only (E4 ends as it starts: a fifth), C5 over C4 only
    # (G4 ends as it starts: an octave).
    vertical = np.zeros(13)
    vertical[[4, 7, 12]] = 1 / 3
    np.testing.assert_allclose(row[VERTICAL_BLOCK], vertical, atol=1e-7)
    # Durations 2 s (bin >= 2 s), 0.5 s twice (bin 0.5-1 s), 0.1 s (bin < 0.125 s).
    np.testing.assert_allclose(row[DURATION_BLOCK], [0.25, 0, 0, 0.5, 0, 0.25], atol=1e-7)
    # Distinct onsets 0, 0.5 and 1 s: two gaps of 0.5 s.
    np.testing.assert_allclose(row[IOI_BLOCK], [0, 0, 0, 1, 0, 0], atol=1e-7)
    # The first 44 are the features without texture, unchanged.
    np.testing.assert_array_equal(row[:SYMBOLIC_DIM], clip_features(texture_notes(), np.array([0.0]), 4.0)[0])


def test_piano_roll_of_a_hand_built_window():
    (row,) = clip_features(texture_notes(), np.array([0.0]), 4.0, roll=True)
    assert row.dtype == np.float32 and row.shape == (symbolic_dim(roll=True),) == (44 + 88 * 32,)
    roll = row[SYMBOLIC_DIM:].reshape(ROLL_PITCHES, ROLL_FRAMES)  # frames of 4 s / 32 = 0.125 s
    expected = np.zeros((88, 32))
    expected[60 - 21, :16] = 1.0  # C4 0-2 s
    expected[64 - 21, :4] = 1.0  # E4 0-0.5 s
    expected[67 - 21, 4:8] = 1.0  # G4 0.5-1 s
    expected[72 - 21, 8] = 0.8  # C5 1-1.1 s: 0.1 of a 0.125 s frame
    np.testing.assert_allclose(roll, expected, atol=1e-6)
    np.testing.assert_array_equal(row[:SYMBOLIC_DIM], clip_features(texture_notes(), np.array([0.0]), 4.0)[0])
    # After the texture blocks when both are on; a window starting inside a note counts its part inside.
    (both,) = clip_features(texture_notes(), np.array([1.0]), 4.0, texture=True, roll=True)
    assert both.shape == (symbolic_dim(True, True),) == (69 + ROLL_DIM,)
    late = both[symbolic_dim(True):].reshape(ROLL_PITCHES, ROLL_FRAMES)
    assert late[60 - 21, :8].tolist() == [1.0] * 8 and not late[60 - 21, 8:].any()  # C4 1-2 s of its 0-2 s
    assert late[72 - 21, 0] == pytest.approx(0.8) and late.sum() == pytest.approx(8.8)


def test_piano_roll_edges_and_unisons():
    # A0 and C8 bound the roll: lower and higher notes land on its edge rows. Two overlapping notes of one
    # pitch sound it once (at most 1), and a faster render shortens the notes in the roll.
    notes = Notes(np.array([0.0, 0.0, 0.0, 0.25]), np.array([0.5, 0.5, 0.5, 0.75]), np.array([10, 120, 60, 60]))
    (row,) = clip_features(notes, np.array([0.0]), 4.0, roll=True)
    roll = row[SYMBOLIC_DIM:].reshape(ROLL_PITCHES, ROLL_FRAMES)
    assert roll[0, :4].tolist() == [1.0] * 4 and roll[87, :4].tolist() == [1.0] * 4
    assert roll[60 - 21, :6].tolist() == [1.0] * 6 and roll.max() == 1.0
    (faster,) = clip_features(notes, np.array([0.0]), 4.0, tempo=2.0, transpose=1, roll=True)
    fast = faster[SYMBOLIC_DIM:].reshape(ROLL_PITCHES, ROLL_FRAMES)
    assert fast[61 - 21, :3].tolist() == [1.0] * 3 and not fast[61 - 21, 3:].any() and not fast[60 - 21].any()


def test_texture_of_a_lone_onset_and_of_held_notes():
    # Window 0.9-4.9 s: C4 and G4 held into it (no onset), C5 starts at 1 s, over C4 alone.
    held, lone = clip_features(texture_notes(), np.array([1.5, 0.9]), 4.0, texture=True)
    assert held[PITCH_CLASS_BLOCK].any() and not held[SYMBOLIC_DIM:].any()  # no onset: no texture
    vertical = np.zeros(13)
    vertical[12] = 1.0
    np.testing.assert_allclose(lone[VERTICAL_BLOCK], vertical, atol=1e-7)
    np.testing.assert_allclose(lone[DURATION_BLOCK], [1, 0, 0, 0, 0, 0], atol=1e-7)
    assert not lone[IOI_BLOCK].any()  # one onset: no interval between onsets
    # A faster render halves the durations: 0.1 s stays in the first bin, the windows move with it.
    (faster,) = clip_features(texture_notes(), np.array([0.0]), 4.0, tempo=2.0, texture=True)
    np.testing.assert_allclose(faster[DURATION_BLOCK], [0.25, 0, 0.5, 0, 0.25, 0], atol=1e-7)
    np.testing.assert_allclose(faster[IOI_BLOCK], [0, 0, 1, 0, 0, 0], atol=1e-7)


def test_vertical_intervals_of_a_crowded_window_come_from_every_kth_onset(monkeypatch):
    import musicid.symbolic

    # 4 onsets x 4 notes = 16 pairs; at most 8: every 2nd onset (C4, G4), and G4 sounds over C4 alone.
    monkeypatch.setattr(musicid.symbolic, "MAX_PAIRS", 8)
    (row,) = clip_features(texture_notes(), np.array([0.0]), 4.0, texture=True)
    vertical = np.zeros(13)
    vertical[7] = 1.0
    np.testing.assert_allclose(row[VERTICAL_BLOCK], vertical, atol=1e-7)
    np.testing.assert_allclose(row[DURATION_BLOCK], [0.25, 0, 0, 0.5, 0, 0.25], atol=1e-7)  # every onset still
    # 20000 notes starting in 4 s: the mask stays at MAX_PAIRS of the default.
    monkeypatch.undo()
    count = 20_000
    start = np.linspace(0.0, 3.9, count)
    crowd = Notes(start, start + 1.0, (np.arange(count) % 88 + 21).astype(np.int64))
    (crowded,) = clip_features(crowd, np.array([0.0]), 4.0, texture=True)
    assert crowded[VERTICAL_BLOCK].sum() == pytest.approx(1.0)


def scale_notes(pitches, seconds=0.5) -> Notes:
    """One note after another, ``seconds`` each, in the order given."""
    start = np.arange(len(pitches)) * seconds
    return Notes(start, start + seconds, np.array(pitches, dtype=np.int64))


def test_the_key_profiles_are_music21s():
    from music21.analysis.discrete import KrumhanslKessler

    from musicid.symbolic import KK_MAJOR, KK_MINOR

    assert KK_MAJOR.tolist() == KrumhanslKessler().getWeights("major")
    assert KK_MINOR.tolist() == KrumhanslKessler().getWeights("minor")


@pytest.mark.parametrize("pitches, tonic", [
    ([60, 62, 64, 65, 67, 69, 71, 72, 60, 64, 67], 0),  # C major scale and triad
    ([67, 69, 71, 72, 74, 76, 78, 79, 67, 71, 74], 7),  # G major
    ([57, 59, 60, 62, 64, 65, 68, 69, 57, 60, 64], 9),  # A harmonic minor
    ([], 0),  # no notes
    (list(range(60, 72)), 0),  # every pitch class equally long: no key to prefer
])
def test_estimate_tonic(pitches, tonic):
    assert estimate_tonic(scale_notes(pitches)) == tonic


def test_key_relative_pitch_classes_do_not_move_with_transposition():
    notes = scale_notes([62, 64, 66, 67, 69, 71, 73, 74, 62, 66, 69])  # D major: tonic 2
    offsets = np.array([0.0, 2.0])
    absolute = clip_features(notes, offsets, 2.0)
    relative = clip_features(notes, offsets, 2.0, relative=True)
    for block in (PITCH_CLASS_BLOCK, ONSET_CLASS_BLOCK):
        np.testing.assert_array_equal(relative[:, block], np.roll(absolute[:, block], -2, axis=1))
    np.testing.assert_array_equal(relative[:, 24:], absolute[:, 24:])  # the other blocks are the same
    assert relative[0, 0] == pytest.approx(0.25)  # the first 2 s: D E F# G, the tonic is index 0
    for transpose in (-5, 1, 3):  # a render in another key: the same scale degrees
        moved = clip_features(notes, offsets, 2.0, transpose=transpose, relative=True)
        np.testing.assert_array_equal(moved[:, :24], relative[:, :24])
        assert not np.array_equal(clip_features(notes, offsets, 2.0, transpose=transpose)[:, :24],
                                  absolute[:, :24])


def test_render_variants_read_augmented_records_with_defaults():
    record = {"source": "a/x.mid", "outputs": ["a/x.wav"],
              "augmented": [{"output": "a/x__aug1.wav", "transpose": -3, "tempo": 1.1},
                            {"output": "a/x__aug2.wav"}]}
    assert render_variants(record) == {"a/x.wav": (0, 1.0), "a/x__aug1.wav": (-3, 1.1), "a/x__aug2.wav": (0, 1.0)}
    assert render_variants({"source": "a/y.mid", "outputs": ["a/y.wav"]}) == {"a/y.wav": (0, 1.0)}


def test_folded_intervals():
    assert fold_intervals(np.array([0, 1, -1, 7, 12, 13, -19, 24, 25])).tolist() == [0, 1, 1, 7, 12, 1, 7, 12, 1]


def test_an_unreadable_file_is_unparseable(tmp_path):
    path = tmp_path / "bad.mid"
    path.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01")  # header cut short
    with pytest.raises(RenderError) as error:
        read_notes(path)
    assert error.value.reason == "unparseable"


def test_a_worker_reads_the_notes_from_the_bytes_and_writes_no_file(tmp_path, monkeypatch):
    from dataclasses import replace

    from musicid.symbolic import TrackTask, read_midi_notes, track_features

    path = write_triad(tmp_path / "triad.mid")
    from_bytes, from_path = read_notes(path.read_bytes()), read_notes(path)
    for name in ("start", "end", "pitch"):
        np.testing.assert_array_equal(getattr(from_bytes, name), getattr(from_path, name))
    # Nothing goes to a temporary file, which a worker killed mid-file would leave behind.
    for maker in ("mkdtemp", "mkstemp", "NamedTemporaryFile"):
        monkeypatch.setattr(f"tempfile.{maker}", lambda *args, **kwargs: pytest.fail("wrote a temporary file"))
    task = TrackTask(path.read_bytes(), np.array([0.0]), np.array([0]), np.array([1.0]), 4.0)
    values, reason, piece = track_features(task)
    assert reason is None and values[0, :12].sum() == pytest.approx(1.0) and piece is None
    # With the whole piece's statistics: those read_midi_notes gives for the file.
    values_too, _, piece = track_features(replace(task, piece=True))
    np.testing.assert_array_equal(values_too, values)
    np.testing.assert_array_equal(piece, read_midi_notes(path)[1])
    bad = TrackTask(b"MThd\x00\x00\x00\x06\x00\x01", np.array([0.0]), np.array([0]), np.array([1.0]), 4.0,
                    piece=True)
    values, reason, piece = track_features(bad)
    assert values is None and piece is None and reason.startswith("unparseable")


def test_features_are_deterministic_and_batch_independent(tmp_path):
    notes = read_notes(write_triad(tmp_path / "triad.mid"))
    offsets = np.array([0.0, 0.5, 1.5, 3.0])
    together = clip_features(notes, offsets, 1.0)
    apart = np.concatenate([clip_features(notes, offsets[i:i + 1], 1.0) for i in range(4)])
    assert together.tobytes() == apart.tobytes()


def test_a_long_score_past_pretty_midis_tick_guard_has_its_notes(tmp_path):
    """A score with 12 million ticks (as a 10-minute Palestrina Gloria has) is read, not refused as corrupt."""
    import mido

    midi = mido.MidiFile(ticks_per_beat=30000)  # 120 bpm: 60000 ticks a second
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.Message("note_on", note=60, velocity=90, time=0))
    track.append(mido.Message("note_off", note=60, velocity=0, time=60000))
    track.append(mido.Message("note_on", note=67, velocity=90, time=12_000_000 - 60000))  # at 200 s
    track.append(mido.Message("note_off", note=67, velocity=0, time=30000))
    midi.save(str(tmp_path / "long.mid"))
    notes = read_notes(tmp_path / "long.mid")
    assert notes.pitch.tolist() == [60, 67]
    assert notes.start.tolist() == [0.0, 200.0] and notes.end.tolist() == [1.0, 200.5]


def _long_fine_midi(path, beats_apart: int, ticks_per_beat: int = 10080):
    """Two notes ``beats_apart`` beats apart at 120 beats a minute, with music21's fine resolution."""
    import mido

    midi = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=500_000, time=0))
    track.append(mido.Message("note_on", note=60, velocity=80, time=0))
    track.append(mido.Message("note_off", note=60, velocity=0, time=ticks_per_beat))
    track.append(mido.Message("note_on", note=67, velocity=80, time=(beats_apart - 1) * ticks_per_beat))
    track.append(mido.Message("note_off", note=67, velocity=0, time=ticks_per_beat))
    midi.tracks.append(track)
    midi.save(path)
    return path


def test_a_long_piece_at_a_fine_resolution_keeps_its_notes(tmp_path):
    """6000 beats at 10080 ticks a beat (50 minutes at 120 beats a minute) pass the ticks pretty_midi can
    table: the notes are read on a coarser grid, their times within a millisecond."""
    from musicid.symbolic import MAX_TICKS, read_notes

    assert 6001 * 10080 > MAX_TICKS
    notes = read_notes(_long_fine_midi(tmp_path / "long.mid", 6000))
    assert notes.pitch.tolist() == [60, 67]
    np.testing.assert_allclose(notes.start, [0.0, 3000.0], atol=1e-3)
    np.testing.assert_allclose(notes.end, [0.5, 3000.5], atol=1e-3)


def test_coarser_ticks_rounds_absolute_times_so_errors_do_not_add_up():
    import io

    import mido

    from musicid.midi import coarser_ticks

    midi = mido.MidiFile(ticks_per_beat=10080)
    track = mido.MidiTrack([mido.Message("note_on", note=60, velocity=80, time=7) for _ in range(3000)])
    midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    coarse = mido.MidiFile(file=io.BytesIO(coarser_ticks(buffer.getvalue(), 2100)))  # 21000 ticks -> ~2100
    ratio = coarse.ticks_per_beat / 10080
    assert coarse.ticks_per_beat == 1008
    absolute = np.cumsum([message.time for message in coarse.tracks[0]])[:3000]  # (then mido's end of track)
    exact = np.arange(1, 3001) * 7 * ratio
    assert np.abs(absolute - exact).max() <= 0.5  # per-delta rounding would drift by 0.3 a message, 900 in all
    assert coarser_ticks(buffer.getvalue(), 10**9) == buffer.getvalue()  # fine enough already: unchanged


def test_a_tempo_change_in_another_track_moves_the_notes_as_the_render_plays_them(tmp_path):
    """pretty_midi reads tempo changes from the first track only (and warned); FluidSynth and mido follow
    them in any track, so the notes after such a change were read at other times than the render plays them."""
    import warnings

    import mido

    from musicid.midi import midi_end_time

    for kind in (1, 2):  # type 2 is played with its tracks together as well
        midi = mido.MidiFile(type=kind, ticks_per_beat=480)
        midi.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0)]))  # 120 bpm
        midi.tracks.append(mido.MidiTrack([
            mido.Message("note_on", note=60, velocity=90, time=0), mido.Message("note_off", note=60, time=480),
            mido.MetaMessage("set_tempo", tempo=1000000, time=480),  # beat 2: 60 bpm, in the notes' track
            mido.Message("note_on", note=64, velocity=90, time=960), mido.Message("note_off", note=64, time=480)]))
        path = tmp_path / f"tempo{kind}.mid"
        midi.save(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            notes = read_notes(path)
        # Beats 0-2 at 0.5 s, then 1 s a beat: the second note starts at beat 4 = 3 s, ends at 4 s.
        assert notes.start.tolist() == pytest.approx([0.0, 3.0]), kind
        assert notes.end.tolist() == pytest.approx([0.5, 4.0]), kind
        assert midi_end_time(path) == pytest.approx(4.0)  # what render expects of FluidSynth

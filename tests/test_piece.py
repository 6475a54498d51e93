"""Whole-piece note statistics (musicid.piece) of hand-built MIDI files: exact values per block."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest

from musicid.piece import (CHORD_BLOCK, CONTOUR_BLOCK, DURATION_BLOCK, IN_SCALE, KEY_BLOCK, MINOR, ONSET_BLOCK,
                           ONSET_RATE, PART_RANGE, PARTS, PIECE_DIM, STEP_BLOCK, estimate_key, piece_features,
                           quarter_notes)
from musicid.symbolic import KK_MAJOR, KK_MINOR, read_midi_notes, read_notes


def write(path, parts, tempo=120.0, drums=()):
    """parts: lists of (start, end, pitch) in seconds, one list per instrument."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    for notes in parts:
        instrument = pretty_midi.Instrument(program=0)
        instrument.notes = [pretty_midi.Note(velocity=90, pitch=p, start=s, end=e) for s, e, p in notes]
        midi.instruments.append(instrument)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        kit.notes = [pretty_midi.Note(velocity=90, pitch=p, start=s, end=e) for s, e, p in drums]
        midi.instruments.append(kit)
    midi.write(str(path))
    return path


def test_a_melody_over_a_held_chord(tmp_path):
    # At 120 a quarter is 0.5 s. Part 0: C4 D4 E4 C4 (quarters), then G4 a half note; part 1: C3 + G3 held 3 s.
    melody = [(0.0, 0.5, 60), (0.5, 1.0, 62), (1.0, 1.5, 64), (1.5, 2.0, 60), (2.0, 3.0, 67)]
    bass = [(0.0, 3.0, 48), (0.0, 3.0, 55)]
    notes, piece = read_midi_notes(write(tmp_path / "a.mid", [melody, bass], drums=[(0.25, 0.3, 42)]))
    assert piece.shape == (PIECE_DIM,) and piece.dtype == np.float64
    assert notes.pitch.tolist() == read_notes(tmp_path / "a.mid").pitch.tolist()  # one parse, the same notes
    # C major: sounding time C 1.0 + 3.0 (C3), D 0.5, E 0.5, G 1.0 + 3.0 (G3) = 9 s; tonic C.
    expected = np.zeros(12)
    expected[[0, 2, 4, 7]] = [4.0, 0.5, 0.5, 4.0]
    np.testing.assert_allclose(piece[KEY_BLOCK], expected / 9)
    assert piece[MINOR] == 0.0 and piece[IN_SCALE] == pytest.approx(1.0)
    # Melodies: part 0 steps +2 +2 -4 +7; part 1's melody is G3 alone (its highest note at its one onset).
    steps = np.zeros(25)
    np.add.at(steps, np.array([2, 2, -4, 7]) + 12, 1)
    np.testing.assert_allclose(piece[STEP_BLOCK], steps / 4)
    # Contour classes: +2 step up (4), -4 leap down (1), +7 leap up (5): bigrams (4,4), (4,1), (1,5).
    contour = np.zeros((7, 7))
    contour[4, 4] = contour[4, 1] = contour[1, 5] = 1
    np.testing.assert_allclose(piece[CONTOUR_BLOCK], contour.ravel() / 3)
    # Durations in quarters: 1 x4, 2 (the half note), 6 x2: log2 0, 1, 2.585 -> bins 4, 5, 7 (edges -3.5 .. 2.5).
    durations = np.zeros(8)
    durations[[4, 5, 7]] = [4, 1, 2]
    np.testing.assert_allclose(piece[DURATION_BLOCK], durations / 7)
    # Onsets 0, 1, 2, 3, 4 quarters (the drum's is not one): four gaps of one quarter.
    onsets = np.zeros(8)
    onsets[4] = 1
    np.testing.assert_allclose(piece[ONSET_BLOCK], onsets)
    # Chords above the bass C3: {C4, G3} at 0 (G3 = 7, C4 = 0); D4 at 1 (2); E4 (4); C4 (0); G4 (7).
    chord = np.zeros(12)
    for top in (60, 62, 64, 60, 67):
        chord[7] += 1  # G3
        chord[(top - 48) % 12] += 1
    chord[0] = 0
    np.testing.assert_allclose(piece[CHORD_BLOCK], chord / chord.sum())
    assert piece[PARTS] == 2
    assert piece[ONSET_RATE] == pytest.approx(np.log1p(5 / 4))
    assert piece[PART_RANGE] == pytest.approx(np.mean([7 / 12, 7 / 12]))


def test_a_minor_key_is_found_and_counted_from_its_tonic(tmp_path):
    # A natural-minor scale on A, longest on A, C and E.
    scale = [57, 59, 60, 62, 64, 65, 67, 69]
    lengths = [3, 1, 2, 1, 2, 1, 1, 3]
    notes, t = [], 0.0
    for pitch, length in zip(scale, lengths):
        notes.append((t, t + length * 0.5, pitch))
        t += length * 0.5
    _, piece = read_midi_notes(write(tmp_path / "a.mid", [notes]))
    assert piece[MINOR] == 1.0
    assert piece[KEY_BLOCK][0] == pytest.approx(6 / 14)  # A twice, 3 quarters each, of 14 quarters
    assert piece[IN_SCALE] == pytest.approx(1.0)


def test_estimate_key_matches_the_profiles():
    for tonic in range(12):
        assert estimate_key(np.roll(KK_MAJOR, tonic)) == (tonic, False)
        assert estimate_key(np.roll(KK_MINOR, tonic)) == (tonic, True)
    assert estimate_key(np.ones(12)) == (0, False)


def test_quarter_notes_follow_the_tempo_map():
    # 120 for 2 s (4 quarters), then 60: 1 quarter a second.
    times = np.array([0.0, 1.0, 2.0, 3.0, 5.0])
    np.testing.assert_allclose(quarter_notes(times, np.array([0.0, 2.0]), np.array([120.0, 60.0])),
                               [0, 2, 4, 5, 7])
    np.testing.assert_allclose(quarter_notes(times, np.zeros(0), np.zeros(0)), times * 2)  # no map: 120
    # A first change after 0: 120 until it.
    np.testing.assert_allclose(quarter_notes(np.array([1.0, 3.0]), np.array([2.0]), np.array([60.0])), [2, 5])


def test_durations_are_read_in_quarters_of_the_files_tempo(tmp_path):
    # The same notes, written at 60 and at 120 quarters a minute with times scaled: the same piece.
    slow = [(0.0, 1.0, 60), (1.0, 3.0, 64), (3.0, 3.5, 67)]
    fast = [(s / 2, e / 2, p) for s, e, p in slow]
    _, at_60 = read_midi_notes(write(tmp_path / "slow.mid", [slow], tempo=60.0))
    _, at_120 = read_midi_notes(write(tmp_path / "fast.mid", [fast], tempo=120.0))
    np.testing.assert_allclose(at_60, at_120, atol=1e-6)
    assert at_60[DURATION_BLOCK][[3, 4, 5]] == pytest.approx([1 / 3] * 3)  # an eighth, a quarter, a half note


def test_no_notes_no_piece(tmp_path):
    _, piece = read_midi_notes(write(tmp_path / "drums.mid", [], drums=[(0.0, 0.5, 42)]))
    assert piece is None
    assert piece_features(*(np.zeros(0),) * 4, np.zeros(0), np.zeros(0)) is None


def test_read_notes_leaves_the_piece_out(tmp_path, monkeypatch):
    import musicid.symbolic

    def fail(*args):
        raise AssertionError("computed")

    path = write(tmp_path / "a.mid", [[(0.0, 1.0, 60)]])
    monkeypatch.setattr(musicid.symbolic, "piece_features", fail)  # the name read_midi_notes calls
    with pytest.raises(AssertionError, match="computed"):
        read_midi_notes(path)
    assert read_notes(path).pitch.tolist() == [60]
    assert read_midi_notes(path, piece=False)[1] is None

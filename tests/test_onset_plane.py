"""features.symbolic_onsets: a second plane beside the piano roll, 1 where a note starts."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from musicid.h5 import read_strings
from musicid.model import symbolic_input
from musicid.symbolic import (ROLL_DIM, ROLL_FRAMES, ROLL_PITCHES, SYMBOLIC_DIM, Notes, clip_features, onset_roll,
                              roll_shape, symbolic_dim, window_features)
from musicid.training import SymbolicAxis, load_checkpoint, transpose_symbolic
from musicid.predict import Predictor
from tests.conftest import write_midi
from tests.test_clip_featurize_stages import audio, digest, run_clip, run_symbolic_featurize, symbolic_sources  # noqa: F401
from tests.test_symbolic_model import (EVALUATE, TRAIN, params, stage_arguments,  # noqa: F401  (params: a fixture)
                                       write_symbolic_checkpoint, write_symbolic_features)
from tests.test_symbolic_transpose import NOTES, drawn_semitones, shifted, statistics


def planes(row: np.ndarray, first: int = SYMBOLIC_DIM) -> tuple[np.ndarray, np.ndarray]:
    """(the roll, the onset plane) [88, 32] each of a symbolic row whose planes start at ``first``."""
    both = row[first:first + 2 * ROLL_DIM].reshape(2, ROLL_PITCHES, ROLL_FRAMES)
    return both[0], both[1]


def test_the_onset_plane_tells_a_note_struck_again_from_one_held():
    held = Notes(np.array([0.0]), np.array([2.0]), np.array([60]))
    # The same C4 struck four times, 0.5 s each, one after the other: the same sound in the roll.
    struck = Notes(np.arange(4) * 0.5, np.arange(1, 5) * 0.5, np.full(4, 60))
    (one,) = clip_features(held, np.array([0.0]), 4.0, roll=True, onsets=True)
    (four,) = clip_features(struck, np.array([0.0]), 4.0, roll=True, onsets=True)
    assert one.shape == (symbolic_dim(roll=True, onsets=True),) == (SYMBOLIC_DIM + 2 * 88 * 32,)
    roll_one, onsets_one = planes(one)
    roll_four, onsets_four = planes(four)
    np.testing.assert_array_equal(roll_one, roll_four)  # the roll alone cannot tell them apart
    assert roll_one[60 - 21, :16].tolist() == [1.0] * 16 and roll_one.sum() == 16
    assert np.flatnonzero(onsets_one[60 - 21]).tolist() == [0] and onsets_one.sum() == 1
    assert np.flatnonzero(onsets_four[60 - 21]).tolist() == [0, 4, 8, 12] and onsets_four.sum() == 4
    # Everything before the onset plane is what the features without it are.
    (without,) = clip_features(struck, np.array([0.0]), 4.0, roll=True)
    np.testing.assert_array_equal(four[:SYMBOLIC_DIM + ROLL_DIM], without)


def test_a_note_held_into_the_window_has_no_onset_in_it_and_edges_are_clamped():
    # C4 from before the window, A0-below and C8-above at the window's last instant.
    notes = Notes(np.array([0.5, 3.99, 3.99]), np.array([3.0, 4.5, 4.5]), np.array([60, 10, 120]))
    (row,) = window_features(notes, np.array([1.0]), 4.0, texture=True, roll=True, onsets=True)
    roll, onsets = planes(row, symbolic_dim(texture=True))
    assert roll[60 - 21, :16].tolist() == [1.0] * 16 and not onsets[60 - 21].any()
    assert onsets[0, 23] == 1 and onsets[87, 23] == 1 and onsets.sum() == 2  # (3.99 - 1) / 4 * 32 = frame 23


def test_an_onset_is_in_the_first_frame_its_note_sounds_in_and_only_inside_its_window():
    # A window starting at 0.2 s (not a whole number of frames from 0): a note at 0.575 s, 0.375 s in, starts on
    # the edge of the 4th frame, where the roll first has it. One starting at the window's end is the next one's.
    notes = Notes(np.array([0.575, 4.2]), np.array([1.0, 5.0]), np.array([64, 67]))
    (row,) = window_features(notes, np.array([0.2]), 4.0, roll=True, onsets=True)
    roll, onsets = planes(row)
    first_sounding = int(np.flatnonzero(roll[64 - 21])[0])
    assert np.flatnonzero(onsets[64 - 21]).tolist() == [first_sounding] and onsets.sum() == 1
    assert not roll[67 - 21].any() and not onsets[67 - 21].any()
    # Starts before or at the end of the window are no onsets of it.
    assert not onset_roll(np.array([0.1, 4.2, 5.0]), np.array([60, 60, 60]), 0.2, 4.2).any()


def test_a_transposed_input_moves_both_planes():
    batch, most, seed = 16, 4, 5
    window = window_features(NOTES, np.array([0.0]), 4.0, roll=True, onsets=True)
    mean, std = statistics(window.shape[1])
    mean[-2 * ROLL_DIM:], std[-2 * ROLL_DIM:] = 0.0, 1.0  # the planes' scale, as featurize writes it
    present = np.ones(batch, bool)
    x = torch.from_numpy(symbolic_input(np.repeat(window, batch, axis=0), present, mean, std))
    out = transpose_symbolic(x, most, SymbolicAxis(mean, std, roll=True, key_relative=False, planes=2),
                             torch.Generator().manual_seed(seed)).numpy()
    for clip, semitone in zip(out, drawn_semitones(batch, most, seed)):
        moved = window_features(shifted(NOTES, int(semitone)), np.array([0.0]), 4.0, roll=True, onsets=True)
        assert np.allclose(clip, symbolic_input(moved, present[:1], mean, std)[0], atol=1e-5), semitone
    assert not np.allclose(out, x.numpy())


def test_featurize_writes_the_onset_plane_and_refuses_it_without_the_roll(tmp_path, audio, capsys):  # noqa: F811
    raw = symbolic_sources(tmp_path, audio)
    _, clips = run_clip(tmp_path, audio)
    _, roll_path = run_symbolic_featurize(tmp_path, clips, audio, raw, name="roll", symbolic_roll=True)
    capsys.readouterr()
    code, path = run_symbolic_featurize(tmp_path, clips, audio, raw, name="onsets", symbolic_roll=True,
                                        symbolic_onsets=True)
    assert code == 0 and f"; symbolic [{SYMBOLIC_DIM + 2 * ROLL_DIM}] for 80 of 90 clips" in capsys.readouterr().out
    with h5py.File(roll_path, "r") as roll, h5py.File(path, "r") as table:
        assert table["symbolic"].shape == (90, SYMBOLIC_DIM + 2 * ROLL_DIM)
        np.testing.assert_array_equal(table["symbolic"][:, :SYMBOLIC_DIM + ROLL_DIM], roll["symbolic"][:])
        assert table.attrs["symbolic_roll_shape"].tolist() == [2, 88, 32]
        # Both planes on their own 0..1 scale, the statistics standardised as before.
        assert not table.attrs["symbolic_mean"][SYMBOLIC_DIM:].any()
        assert (table.attrs["symbolic_std"][SYMBOLIC_DIM:] == 1).all()
        np.testing.assert_array_equal(table.attrs["symbolic_mean"][:SYMBOLIC_DIM], roll.attrs["symbolic_mean"][:SYMBOLIC_DIM])
        assert json.loads(table.attrs["params"])["features"]["symbolic_onsets"] is True
        assert "symbolic_onsets" not in json.loads(roll.attrs["params"])["features"]
        # Class b's D4 is struck every 0.5 s: in the 1-second clip at 1 s it sounds throughout and starts in the
        # first frame and in the 17th.
        row = np.flatnonzero((read_strings(table["track"]) == "b/t0.mid") & (table["offset_s"][:] == 1.0))[0]
        sounding, onsets = planes(table["symbolic"][row])
        assert (sounding[62 - 21] == 1).all() and sounding.sum() == 32
        assert np.flatnonzero(onsets[62 - 21]).tolist() == [0, 16] and onsets.sum() == 2
    code, again = run_symbolic_featurize(tmp_path, clips, audio, raw, name="again", symbolic_roll=True,
                                         symbolic_onsets=True)
    assert code == 0 and digest(again) == digest(path)
    capsys.readouterr()
    code, bad = run_symbolic_featurize(tmp_path, clips, audio, raw, name="bad", symbolic_onsets=True)  # roll off
    assert code == 2 and "features.symbolic_onsets" in capsys.readouterr().err and not bad.exists()


def test_train_evaluate_and_reload_a_model_with_two_planes(tmp_path, params, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 6, roll=True,
                            onsets=True)
    train, evaluate = stage_arguments(tmp_path, params)
    assert TRAIN.main(train) == 0
    first = (tmp_path / "model.pt").read_bytes()
    assert TRAIN.main(train) == 0 and (tmp_path / "model.pt").read_bytes() == first
    model, _ = load_checkpoint(tmp_path / "model.pt")
    assert model.config.roll_shape == [2, 88, 32] and model.config.symbolic_dim == SYMBOLIC_DIM + 2 * ROLL_DIM
    assert model.roll.blocks[0].conv.in_channels == 2
    assert EVALUATE.main(evaluate) == 0


def test_train_transposes_the_notes_of_both_planes(tmp_path, params, monkeypatch):  # noqa: F811
    """train.symbolic_transpose with the onset plane: train tells the transposition both planes are there."""
    import yaml

    import musicid.training as training

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    values = yaml.safe_load(params.read_text())
    values["train"]["symbolic_transpose"] = 2
    params.write_text(yaml.safe_dump(values))
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 6, roll=True,
                            onsets=True)
    seen = []
    original = training.transpose_symbolic

    def recording(symbolic, most, axis, generator):
        seen.append((most, axis.roll, axis.planes))
        return original(symbolic, most, axis, generator)

    monkeypatch.setattr(training, "transpose_symbolic", recording)
    train, _ = stage_arguments(tmp_path, params)
    assert TRAIN.main(train) == 0
    assert seen and set(seen) == {(2, True, 2)}


def test_predict_reads_both_planes_of_a_midi_file(tmp_path):
    predictor = Predictor(write_symbolic_checkpoint(tmp_path / "onsets.pt", symbolic_roll=True, symbolic_onsets=True))
    assert predictor.model.config.roll_shape == roll_shape(True, True) == [2, 88, 32]
    # C4 struck four times a second for 9 s: two clips.
    midi = write_midi(tmp_path / "tune.mid", [(60, 0.25 * k, 0.25 * k + 0.25) for k in range(36)])
    clips, offsets, _ = predictor.clips_and_offsets(midi)
    symbolic = predictor.symbolic_of(midi, offsets, clips.shape[1])
    assert symbolic.shape == (2, SYMBOLIC_DIM + 2 * ROLL_DIM + 1)
    sounding, onsets = planes(symbolic[0])
    assert sounding[60 - 21].tolist() == [1.0] * 32 and np.flatnonzero(onsets[60 - 21]).tolist() == list(range(0, 32, 2))
    answer = predictor.predict(midi)
    assert answer.error is None and answer.symbolic


@pytest.mark.parametrize("shape", [[88, 32], [2, 88, 32]])
def test_the_roll_branch_reads_one_or_two_planes(shape):
    from musicid.model import RollBranch

    branch = RollBranch(shape, [4, 8], pool=2)
    assert branch.blocks[0].conv.in_channels == (2 if len(shape) == 3 else 1)
    out = branch(torch.rand(3, int(np.prod(shape))))
    assert out.shape == (3, 64) and torch.isfinite(out).all()

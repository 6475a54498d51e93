"""train.symbolic_transpose: the notes behind each training clip's symbolic features moved by -k..k semitones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from musicid.model import symbolic_input
from musicid.params import ParamsError
from musicid.symbolic import (PITCH_CLASS_BLOCK, PITCH_MEAN, ROLL_DIM, ROLL_FRAMES, ROLL_PITCHES, Notes,
                              key_relative, window_features)
from musicid.training import SymbolicAxis, load_checkpoint, transpose_symbolic
from tests.conftest import section_params
from tests.test_symbolic_model import TRAIN, stage_arguments, write_symbolic_features

# A bar of four-part writing: a held chord, a moving line, a late onset (MIDI 36 .. 84, so a shift of
# up to 5 semitones stays on the 88-key roll).
NOTES = Notes(start=np.array([0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.2]),
              end=np.array([2.0, 2.0, 2.0, 1.0, 1.5, 2.5, 4.0, 3.9]),
              pitch=np.array([36, 55, 64, 72, 74, 76, 67, 84]))


def shifted(notes: Notes, semitones: int) -> Notes:
    return Notes(notes.start, notes.end, notes.pitch + semitones)


def drawn_semitones(batch: int, most: int, seed: int) -> np.ndarray:
    """The shifts transpose_symbolic draws from a generator seeded with ``seed``."""
    return torch.randint(-most, most + 1, (batch,), generator=torch.Generator().manual_seed(seed)).numpy()


def statistics(dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.random(dim).astype(np.float32), (rng.random(dim) + 0.5).astype(np.float32)


@pytest.mark.parametrize("texture, roll", [(False, False), (True, True)])
def test_a_transposed_input_is_the_input_of_the_transposed_notes(texture, roll):
    """Every block, histograms, texture and roll alike, is what featurize computes for the notes played
    that many semitones higher or lower: only what depends on absolute pitch moves."""
    batch, most, seed = 24, 5, 3
    window = window_features(NOTES, np.array([0.0]), 4.0, texture=texture, roll=roll)
    mean, std = statistics(window.shape[1])
    present = np.ones(batch, bool)
    x = torch.from_numpy(symbolic_input(np.repeat(window, batch, axis=0), present, mean, std))
    out = transpose_symbolic(x, most, SymbolicAxis(mean, std, roll=roll, key_relative=False),
                             torch.Generator().manual_seed(seed)).numpy()
    semitones = drawn_semitones(batch, most, seed)
    assert set(semitones) == set(range(-most, most + 1))
    for clip, semitone in zip(out, semitones):
        moved = window_features(shifted(NOTES, int(semitone)), np.array([0.0]), 4.0, texture=texture, roll=roll)
        expected = symbolic_input(moved, present[:1], mean, std)[0]
        assert np.allclose(clip, expected, atol=1e-5), semitone
    assert not np.allclose(out, x.numpy())


def test_pitch_classes_counted_from_the_tonic_stay_and_the_rest_moves():
    window = window_features(NOTES, np.array([0.0]), 4.0, roll=True)
    relative = np.concatenate([key_relative(window[:, :44], 7), window[:, 44:]], axis=1)
    mean, std = np.zeros(window.shape[1], np.float32), np.ones(window.shape[1], np.float32)
    x = torch.from_numpy(symbolic_input(np.repeat(relative, 8, axis=0), np.ones(8, bool), mean, std))
    out = transpose_symbolic(x, 4, SymbolicAxis(mean, std, roll=True, key_relative=True),
                             torch.Generator().manual_seed(0)).numpy()
    for clip, semitone in zip(out, drawn_semitones(8, 4, 0)):
        moved = window_features(shifted(NOTES, int(semitone)), np.array([0.0]), 4.0, roll=True)[0]
        assert np.allclose(clip[:24], relative[0, :24])  # scale degrees: the same in any key
        assert np.isclose(clip[PITCH_MEAN], moved[PITCH_MEAN], atol=1e-6)
        assert np.allclose(clip[-1 - ROLL_DIM:-1], moved[-ROLL_DIM:], atol=1e-6)


def test_the_roll_does_not_wrap_around():
    top = Notes(np.array([0.0, 0.0]), np.array([4.0, 4.0]), np.array([21, 108]))  # the roll's lowest and highest
    window = window_features(top, np.array([0.0]), 4.0, roll=True)
    dim = window.shape[1]
    x = torch.from_numpy(symbolic_input(np.repeat(window, 16, axis=0), np.ones(16, bool), np.zeros(dim, np.float32),
                                        np.ones(dim, np.float32)))
    out = transpose_symbolic(x, 2, SymbolicAxis(np.zeros(dim, np.float32), np.ones(dim, np.float32), roll=True,
                                                key_relative=False), torch.Generator().manual_seed(2)).numpy()
    for clip, semitone in zip(out, drawn_semitones(16, 2, 2)):
        roll = clip[-1 - ROLL_DIM:-1].reshape(ROLL_PITCHES, ROLL_FRAMES)
        lit = sorted(set(np.flatnonzero(roll.any(axis=1)).tolist()))
        assert lit == sorted({row + semitone for row in (0, ROLL_PITCHES - 1)} & set(range(ROLL_PITCHES))), semitone


def test_absent_hidden_and_silent_clips_keep_their_input():
    window = window_features(NOTES, np.array([0.0, 8.0]), 4.0)  # the second window is past the last note
    assert not window[1].any()
    mean, std = statistics(window.shape[1])
    present = np.array([True, True, False])
    x = torch.from_numpy(symbolic_input(np.stack([window[0], window[1], window[0]]), present, mean, std))
    axis = SymbolicAxis(mean, std, roll=False, key_relative=False)
    for seed in range(20):
        if drawn_semitones(3, 3, seed)[0] != 0:
            break
    out = transpose_symbolic(x, 3, axis, torch.Generator().manual_seed(seed))
    assert not torch.equal(out[0], x[0])
    assert torch.equal(out[1:], x[1:])  # a window without a note, and an audio source's clip
    assert np.isclose(out[0, PITCH_CLASS_BLOCK].numpy() @ std[PITCH_CLASS_BLOCK] + mean[PITCH_CLASS_BLOCK].sum(),
                      1.0, atol=1e-5)  # still a histogram
    generator = torch.Generator().manual_seed(0)
    assert transpose_symbolic(x, 0, axis, generator) is x
    assert torch.equal(torch.rand(1, generator=generator), torch.rand(1, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("value, message", [
    (-1, r"train\.symbolic_transpose must be >= 0, got -1"),
    (13, r"train\.symbolic_transpose must be <= 12, got 13"),
    (1.5, r"train\.symbolic_transpose must be an integer, got 1\.5"),
])
def test_a_bad_symbolic_transpose_is_named(value, message):
    with pytest.raises(ParamsError, match=message):
        section_params("train", symbolic_transpose=value)


@pytest.fixture
def params(tmp_path):
    from musicid.params import as_dict

    values = {"train": as_dict(section_params(
        "train", epochs=3, channels=[4], embedding_dim=4, batch_size=4, freq_mask=2, time_mask=2, masks=1,
        symbolic_dropout=0.3))}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def with_transpose(tmp_path, params, semitones: int):
    values = yaml.safe_load(params.read_text())
    values["train"]["symbolic_transpose"] = semitones
    path = tmp_path / f"transpose{semitones}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_training_with_transposition_is_deterministic_and_changes_the_model(tmp_path, params, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 6, roll=True)

    def trained(semitones: int) -> bytes:
        train, _ = stage_arguments(tmp_path, with_transpose(tmp_path, params, semitones))
        assert TRAIN.main(train) == 0
        return (tmp_path / "model.pt").read_bytes()

    first = trained(3)
    assert trained(3) == first
    assert trained(0) != first
    model, _ = load_checkpoint(tmp_path / "model.pt")
    assert model.roll is not None


def test_transposition_without_symbolic_features_stops_train(tmp_path, params, capsys):
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 6, symbolic=False)
    train, _ = stage_arguments(tmp_path, with_transpose(tmp_path, params, 2))
    assert TRAIN.main(train) == 2
    assert capsys.readouterr().err == (
        f"train: {tmp_path / 'transpose2.yaml'}: train.symbolic_transpose must be 0 for a features table without "
        f"symbolic features ({tmp_path / 'features.h5'}: made with features.symbolic false, or from audio only), "
        "got 2\n")
    assert not (tmp_path / "model.pt").exists()

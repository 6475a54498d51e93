"""train.novelty_notes: a track with notes is scored as new partly by how unlike the training tracks' its notes'
statistics are, in train's threshold, evaluate's scores and predict's flag."""

from __future__ import annotations

import csv

import h5py
import numpy as np
import pytest
import torch
import yaml

from musicid.model import symbolic_input
from musicid.novelty import Cosine
from musicid.predict import Predictor
from musicid.track_model import notes_centroids, notes_novelty, TrackStatistics
from musicid.training import AUDIO_ONLY, NOTES_NOVELTY, embed, load_checkpoint
from tests.conftest import sine, write_midi, write_wav
from tests.test_symbolic_model import (EVALUATE, TRAIN, params, stage_arguments,  # noqa: F401  (params: a fixture)
                                       write_symbolic_checkpoint, write_symbolic_features)

SPLITS = ["train"] * 16 + ["val"] * 8 + ["test"] * 6  # two clips a track: 8, 4 and 3 tracks


def set_train(params, **values):
    loaded = yaml.safe_load(params.read_text())
    loaded["train"].update(values)
    params.write_text(yaml.safe_dump(loaded))


def unit(values: np.ndarray) -> np.ndarray:
    return values / np.linalg.norm(values, axis=1, keepdims=True)


def by_hand(checkpoint, table_path):
    """Per track (sorted): split, label, whether it has notes, and its note statistics standardised by the
    checkpoint's regression, computed here from the table's clips (the mean and sd over its clips with notes)."""
    with h5py.File(table_path, "r") as table:
        tracks = np.array([t.decode() if isinstance(t, bytes) else t for t in table["track"][:]])
        symbolic, present = table["symbolic"][:].astype(np.float64), table["has_symbolic"][:].astype(bool)
        labels = table["label"][:].astype(np.int64)
    names = np.unique(tracks)
    rows = {name: (tracks == name) & present for name in names}
    values = np.array([np.concatenate([symbolic[rows[n]].mean(0), symbolic[rows[n]].std(0)])
                       if rows[n].any() else np.zeros(2 * symbolic.shape[1]) for n in names])
    standardised = (values - checkpoint["track_notes_mean"].numpy()) / checkpoint["track_notes_scale"].numpy()
    split = np.array([SPLITS[np.flatnonzero(tracks == n)[0]] for n in names])
    label = np.array([labels[tracks == n][0] for n in names])
    return names, split, label, np.array([rows[n].any() for n in names]), standardised


def cnn_scores(model, checkpoint, table_path, centroids):
    """Each track's cosine score (sorted names) of its clips embedded with their notes, and of those without
    notes embedded with them hidden against the notes-less centroids."""
    with h5py.File(table_path, "r") as table:
        features = table["features"][:]
        tracks = np.array([t.decode() if isinstance(t, bytes) else t for t in table["track"][:]])
        symbolic = symbolic_input(table["symbolic"][:], table["has_symbolic"][:], checkpoint["symbolic_mean"].numpy(),
                                  checkpoint["symbolic_std"].numpy())
    normalised = (features - checkpoint["band_mean"].numpy()[None, :, None]) / \
        checkpoint["band_std"].numpy()[None, :, None]
    seen = embed(model, normalised, 64, torch.device("cpu"), symbolic)
    hidden = embed(model, normalised, 64, torch.device("cpu"))
    return tracks, Cosine(centroids).track_scores(seen, tracks), hidden


def test_train_stores_the_notes_novelty_and_evaluate_mixes_it(tmp_path, params, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    write_symbolic_features(tmp_path / "features.h5", SPLITS, without_notes=2)  # test track t014: an audio file
    train, evaluate = stage_arguments(tmp_path, params)
    set_train(params, track_notes=0.1, novelty_notes=0.0)
    assert TRAIN.main(train) == 0
    _, plain = load_checkpoint(tmp_path / "model.pt")
    assert not any(key in plain for key in NOTES_NOVELTY)
    assert "training tracks ->" in capsys.readouterr().out
    set_train(params, novelty_notes=0.4)
    assert TRAIN.main(train) == 0
    assert "; regression on the notes of 8 training tracks; novelty 0.4 from the notes ->" in capsys.readouterr().out
    model, checkpoint = load_checkpoint(tmp_path / "model.pt")
    for key, value in plain["state_dict"].items():  # the same network: the notes' score is added after training
        assert torch.equal(value, checkpoint["state_dict"][key]), key
    assert checkpoint["novelty_notes_share"] == 0.4

    names, split, label, has_notes, standardised = by_hand(checkpoint, tmp_path / "features.h5")
    # The centroids: each class's mean of its training tracks' standardised statistics, at unit length.
    train_rows = (split == "train") & has_notes
    expected = unit(np.stack([standardised[train_rows & (label == c)].mean(0) for c in (0, 1)]))
    np.testing.assert_allclose(checkpoint["novelty_notes_centroids"].numpy(), expected, atol=1e-9)
    notes_score = np.linalg.norm(unit(standardised)[:, None] - expected[None], axis=2).min(1)

    # The notes' scale: the validation tracks' 95th percentiles, the embedding's over the notes'; the threshold:
    # the 95th percentile of their mixed scores.
    tracks, (cnn_names, cnn), hidden = cnn_scores(model, checkpoint, tmp_path / "features.h5",
                                                  checkpoint["centroids"].numpy())
    assert list(cnn_names) == list(names)
    val = split == "val"
    scale = np.percentile(cnn[val], 95) / np.percentile(notes_score[val], 95)
    assert checkpoint["novelty_notes_scale"]["cosine"] == pytest.approx(scale, rel=1e-6)
    mixed = np.where(has_notes, 0.6 * cnn + 0.4 * scale * notes_score, cnn)
    assert checkpoint["novelty_reference"] == pytest.approx(np.percentile(mixed[val], 95), rel=1e-6)
    assert plain["novelty_reference"] == pytest.approx(np.percentile(cnn[val], 95), rel=1e-6)
    # A track without notes keeps the embedding's score, its factor moved onto the mixed scores' threshold.
    audio_scale = plain[f"{AUDIO_ONLY}novelty_scale"]["cosine"] * \
        np.percentile(mixed[val], 95) / np.percentile(cnn[val], 95)
    assert checkpoint[f"{AUDIO_ONLY}novelty_scale"]["cosine"] == pytest.approx(audio_scale, rel=1e-6)

    assert EVALUATE.main(evaluate) == 0
    with open(tmp_path / "novelty.csv", newline="") as handle:
        rows = {row["track"]: row for row in csv.DictReader(handle)}
    test = np.flatnonzero(split == "test")
    assert set(rows) == set(names[test]) and not has_notes[test[-1]]
    for index in test[:-1]:
        assert float(rows[names[index]]["novelty_cosine"]) == pytest.approx(mixed[index], abs=2e-6)
        assert float(rows[names[index]]["novelty_cosine"]) != pytest.approx(cnn[index], abs=1e-4)
    audio = names[test[-1]]
    _, alone = Cosine(checkpoint[f"{AUDIO_ONLY}centroids"].numpy()).track_scores(hidden[tracks == audio],
                                                                                  tracks[tracks == audio])
    assert float(rows[audio]["novelty_cosine"]) == pytest.approx(float(alone[0]) * audio_scale, abs=2e-6)


def test_without_the_regression_no_notes_score_is_stored(tmp_path, params, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    write_symbolic_features(tmp_path / "features.h5", SPLITS)
    train, _ = stage_arguments(tmp_path, params)
    set_train(params, track_notes=0.0, novelty_notes=0.5)
    assert TRAIN.main(train) == 0
    _, checkpoint = load_checkpoint(tmp_path / "model.pt")
    assert not any(key in checkpoint for key in NOTES_NOVELTY)


@pytest.mark.parametrize("value", [-0.1, 1.5, "half"])
def test_a_bad_novelty_notes_is_named(tmp_path, params, capsys, value):
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 8 + ["val"] * 4)
    train, _ = stage_arguments(tmp_path, params)
    set_train(params, novelty_notes=value)
    assert TRAIN.main(train) == 2
    assert "train.novelty_notes" in capsys.readouterr().err and not (tmp_path / "model.pt").exists()


def test_the_notes_score_is_the_distance_to_the_nearest_unit_centroid():
    model = {"track_notes_mean": np.array([1.0, 0.0]), "track_notes_scale": np.array([2.0, 1.0])}
    statistics = TrackStatistics(np.array(["a", "b", "c", "d"]), np.array([[3.0, 0.0], [1.0, 5.0], [9.0, 1.0],
                                                                           [0.0, 0.0]]),
                                 np.array([True, True, False, True]))
    centroids = notes_centroids(model, statistics, np.array([0, 1, 0, 1]), 3)
    # Class 0: track a alone (c has no notes), (1, 0); class 1: b and d, ((0, 5) + (-0.5, 0)) / 2; class 2: none.
    np.testing.assert_allclose(centroids[0], [1.0, 0.0])
    np.testing.assert_allclose(centroids[1], unit(np.array([[-0.25, 2.5]]))[0])
    assert not centroids[2].any()
    scores = notes_novelty(model, centroids, np.array([[5.0, 0.0], [1.0, -3.0]]))
    # (2, 0) lies on class 0's centroid; (0, -3) points away from both, nearest class 0 at distance sqrt(2).
    np.testing.assert_allclose(scores, [0.0, np.sqrt(2.0)], atol=1e-12)


def test_predict_mixes_the_notes_score_for_a_midi_file_and_not_for_a_wav(tmp_path):
    plain = Predictor(write_symbolic_checkpoint(tmp_path / "plain.pt"))
    path = write_symbolic_checkpoint(tmp_path / "notes.pt", symbolic_piece=False)
    checkpoint = torch.load(path, weights_only=False)
    dim = 44
    centroids = np.zeros((2, 2 * dim))
    centroids[0, 0], centroids[1, 1] = 1.0, 1.0
    checkpoint.update({"track_notes_mean": torch.zeros(2 * dim, dtype=torch.float64),
                       "track_notes_scale": torch.ones(2 * dim, dtype=torch.float64),
                       "track_notes_coef": torch.zeros((2, 2 * dim), dtype=torch.float64),
                       "track_notes_intercept": torch.zeros(2, dtype=torch.float64),
                       "novelty_notes_share": 0.5, "novelty_notes_centroids": torch.from_numpy(centroids),
                       "novelty_notes_scale": {"cosine": 1000.0, "mahalanobis": 1000.0}})
    torch.save(checkpoint, path)
    mixed = Predictor(path)
    midi = write_midi(tmp_path / "tune.mid", [(60 + (k % 5), 0.5 * k, 0.5 * k + 0.5) for k in range(18)])
    wav = write_wav(tmp_path / "tune.wav", sine(440.0, 9.0, 22050, 0.3), 22050)
    clips, offsets, _ = mixed.clips_and_offsets(midi)
    notes = mixed.symbolic_of(midi, offsets, clips.shape[1])[:, :dim].astype(np.float64)
    values = unit(np.concatenate([notes.mean(0), notes.std(0)])[None])
    expected = np.linalg.norm(values - centroids, axis=1).min()
    from_plain, from_mixed = plain.predict(midi), mixed.predict(midi)
    # The mixed score: half the embedding's, half 1000 times the notes' distance.
    assert from_mixed.novelty == pytest.approx(0.5 * from_plain.novelty + 500.0 * expected, rel=1e-5)
    assert mixed.predict(wav).novelty == pytest.approx(plain.predict(wav).novelty, rel=1e-9)  # no notes: unmixed

"""train.track_notes: the track-level regression on the notes' statistics, fused with the clips' pooled
probabilities in evaluate and predict."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml

from musicid.predict import Predictor
from musicid.track_model import (KEYS, TrackStatistics, checkpoint_regression, fit_regression, fit_table_regression,
                                 fuse_notes, note_columns, regression_probabilities, track_statistics)
from musicid.training import load_checkpoint
from tests.conftest import sine, write_midi, write_wav
from tests.test_symbolic_model import (EVALUATE, TRAIN, params, stage_arguments,  # noqa: F401  (params: a fixture)
                                       write_symbolic_checkpoint, write_symbolic_features)


def separable_tracks(n_classes: int, per_class: int = 6, dim: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    values = rng.standard_normal((len(labels), 2 * dim)) + labels[:, None] * 0.8
    names = np.array([f"t{i:03d}" for i in range(len(labels))], dtype=object)
    return TrackStatistics(names, values, np.ones(len(names), bool)), labels


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_stored_regression_gives_scikit_learns_probabilities(n_classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    statistics, labels = separable_tracks(n_classes)
    names = [f"c{index}" for index in range(n_classes)]
    regression, why_not = fit_regression(statistics, labels, names, c=0.5)
    assert why_not is None and set(regression) == set(KEYS)
    assert regression["track_notes_coef"].shape == (n_classes, statistics.values.shape[1])
    scaler = StandardScaler().fit(statistics.values)
    reference = LogisticRegression(C=0.5, class_weight="balanced", max_iter=5000).fit(
        scaler.transform(statistics.values), labels)
    others = np.random.default_rng(1).standard_normal((7, statistics.values.shape[1]))
    np.testing.assert_allclose(regression_probabilities(regression, others),
                               reference.predict_proba(scaler.transform(others)), rtol=1e-9, atol=1e-12)
    again, _ = fit_regression(statistics, labels, names, c=0.5)
    assert all(np.array_equal(regression[key], again[key]) for key in KEYS)  # deterministic


def test_track_statistics_are_the_mean_and_sd_of_the_clips_with_notes():
    symbolic = np.array([[1.0, 2.0], [3.0, 6.0], [100.0, 100.0], [5.0, 5.0], [0.0, 0.0]], np.float32)
    present = np.array([True, True, False, True, False])
    tracks = np.array(["b", "b", "b", "a", "c"], dtype=object)
    statistics = track_statistics(symbolic, present, tracks)
    assert statistics.tracks.tolist() == ["a", "b", "c"]
    assert statistics.has_notes.tolist() == [True, True, False]
    np.testing.assert_array_equal(statistics.values[0], [5.0, 5.0, 0.0, 0.0])
    np.testing.assert_array_equal(statistics.values[1], [2.0, 4.0, 1.0, 2.0])  # the clip without notes left out
    np.testing.assert_array_equal(statistics.values[2], [0.0, 0.0, 0.0, 0.0])


def test_no_regression_when_a_class_has_no_training_track_with_notes():
    statistics, labels = separable_tracks(3)
    without = statistics._replace(has_notes=labels != 2)
    names = ["bach", "haydn", "mozart"]
    regression, why_not = fit_regression(without, labels, names, c=1.0)
    assert regression is None and why_not == ("no training track of mozart has notes: audio files, or MIDI files in "
                                              "which no note sounds")
    regression, why_not = fit_regression(statistics._replace(has_notes=np.zeros(len(labels), bool)), labels, names,
                                         1.0)
    assert regression is None and why_not == ("no training track has notes: audio files, or MIDI files in which no "
                                              "note sounds")


def test_fusion_averages_only_the_tracks_with_notes():
    statistics, labels = separable_tracks(2, per_class=3)
    regression, _ = fit_regression(statistics, labels, ["a", "b"], c=1.0)
    pooled = np.tile([0.9, 0.1], (len(labels), 1))
    partly = statistics._replace(has_notes=np.arange(len(labels)) % 2 == 0)
    fused = fuse_notes(pooled, regression, partly)
    notes = regression_probabilities(regression, statistics.values)
    np.testing.assert_allclose(fused[0::2], (pooled[0::2] + notes[0::2]) / 2)
    np.testing.assert_array_equal(fused[1::2], pooled[1::2])
    np.testing.assert_allclose(fused.sum(axis=1), 1.0)
    assert fuse_notes(pooled, None, statistics) is pooled


def test_note_columns_leave_the_piano_roll_out():
    assert note_columns(44, []) == 44
    assert note_columns(44 + 88 * 32, [88, 32]) == 44


def with_track_notes(params, value):
    values = yaml.safe_load(params.read_text())
    values["train"]["track_notes"] = value
    params.write_text(yaml.safe_dump(values))


def train_with_notes(tmp_path, params, monkeypatch) -> tuple[list[str], list[str]]:
    """Train (train.track_notes 0.1) on a small table of two classes told apart by their notes; (train's and
    evaluate's arguments)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 6)
    train, evaluate = stage_arguments(tmp_path, params)
    with_track_notes(params, 0.1)
    assert TRAIN.main(train) == 0
    return train, evaluate


def test_train_stores_the_regression_and_evaluate_fuses_it(tmp_path, params, monkeypatch, capsys):
    train, evaluate = train_with_notes(tmp_path, params, monkeypatch)
    assert "; regression on the notes of 8 training tracks;" in capsys.readouterr().out  # then the novelty
    _, checkpoint = load_checkpoint(tmp_path / "model.pt")
    regression = checkpoint_regression(checkpoint)
    assert regression is not None and regression["track_notes_mean"].shape == (2 * 44,)
    assert EVALUATE.main(evaluate) == 0
    details = json.loads((tmp_path / "per_class.json").read_text())
    assert details["test"]["track_pooling"]["used"] == "mean and the notes' regression"
    # Two classes told apart by their notes alone (the audio is noise): the regression names every track.
    assert details["test"]["track_pooling"]["notes"] == 1.0
    fused_metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert fused_metrics["test"]["track"]["macro_f1"] == 1.0

    # A regression that names the second class whatever the notes: the headline and predictions.csv must
    # follow the average, while the clips alone still name every track right.
    checkpoint = torch.load(tmp_path / "model.pt", weights_only=True)
    checkpoint["track_notes_coef"] = torch.zeros_like(checkpoint["track_notes_coef"])
    checkpoint["track_notes_intercept"] = torch.tensor([-20.0, 20.0], dtype=torch.float64)
    torch.save(checkpoint, tmp_path / "model.pt")
    assert EVALUATE.main(evaluate) == 0
    details = json.loads((tmp_path / "per_class.json").read_text())
    assert details["test"]["track_pooling"]["mean"] == 1.0 and details["test"]["track_pooling"]["notes"] < 1.0
    assert json.loads((tmp_path / "metrics.json").read_text())["test"]["track"]["macro_f1"] < 1.0
    with open(tmp_path / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["predicted"] == "b" and float(row["p_b"]) >= 0.5 for row in rows)

    with_track_notes(params, 0)
    assert TRAIN.main(train) == 0
    _, checkpoint = load_checkpoint(tmp_path / "model.pt")
    assert checkpoint_regression(checkpoint) is None
    assert EVALUATE.main(evaluate) == 0
    details = json.loads((tmp_path / "per_class.json").read_text())
    assert details["test"]["track_pooling"]["used"] == "mean" and "notes" not in details["test"]["track_pooling"]


def test_a_split_without_notes_says_the_regression_was_not_used(tmp_path, params, monkeypatch):
    """A model with the regression scoring test tracks that have no notes (audio files): per_class.json said the
    regression named them."""
    import h5py

    _, evaluate = train_with_notes(tmp_path, params, monkeypatch)
    with h5py.File(tmp_path / "features.h5", "r+") as table:
        present = table["has_symbolic"][:]
        present[-6:] = False  # every test clip without notes
        table["has_symbolic"][:] = present
    assert EVALUATE.main(evaluate) == 0
    details = json.loads((tmp_path / "per_class.json").read_text())
    assert details["test"]["track_pooling"]["used"] == "mean" and details["test"]["track_pooling"]["notes"] is None
    assert details["val"]["track_pooling"]["used"] == "mean and the notes' regression"
    assert "notes_tracks" not in details["val"]["track_pooling"]  # every val track has notes


def test_the_notes_figure_says_how_many_tracks_it_covers(tmp_path, params, monkeypatch, capsys):
    """With some test tracks audio files, the regression's figure covers fewer tracks than the others: said so.
    Classes clip left out are named beside the scores."""
    import h5py

    _, evaluate = train_with_notes(tmp_path, params, monkeypatch)
    with h5py.File(tmp_path / "features.h5", "r+") as table:
        present = table["has_symbolic"][:]
        tracks = table["track"][:]
        present[tracks == tracks[-1]] = False  # the last test track without notes
        table["has_symbolic"][:] = present
        table.attrs["excluded_classes"] = json.dumps({"zz": "1 rendered track; split.val 0.2 and split.test 0.2 "
                                                            "need at least 3 (one for each split used)"})
        with_notes = len(set(tracks[(present > 0) & (tracks != tracks[-1])]) & set(tracks[-6:]))
        all_tracks = len(set(tracks[-6:]))
    capsys.readouterr()
    assert EVALUATE.main(evaluate) == 0
    details = json.loads((tmp_path / "per_class.json").read_text())
    assert 0 < with_notes < all_tracks
    assert details["test"]["track_pooling"]["notes_tracks"] == f"{with_notes} of {all_tracks} (the tracks with notes)"
    assert details["excluded_classes"] == {"zz": "1 rendered track; split.val 0.2 and split.test 0.2 need at least 3 "
                                                 "(one for each split used)"}
    assert capsys.readouterr().out.splitlines()[-1] == (
        "evaluate: classes left out by clip, not scored: zz (1 rendered track; split.val 0.2 and split.test 0.2 "
        "need at least 3 (one for each split used))")


def test_an_audio_only_table_trains_without_the_regression(tmp_path, params, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 6, symbolic=False)
    train, evaluate = stage_arguments(tmp_path, params)
    with_track_notes(params, 0.1)
    assert TRAIN.main(train) == 0
    assert "; no regression on the notes (the table holds no symbolic features) ->" in capsys.readouterr().out
    assert checkpoint_regression(load_checkpoint(tmp_path / "model.pt")[1]) is None
    assert EVALUATE.main(evaluate) == 0


def test_a_negative_track_notes_is_named(tmp_path, params, capsys):
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 8 + ["val"] * 4)
    train, _ = stage_arguments(tmp_path, params)
    with_track_notes(params, -1)
    assert TRAIN.main(train) == 2
    error = capsys.readouterr().err
    assert "train.track_notes" in error and not (tmp_path / "model.pt").exists()


def test_predict_fuses_the_regression_for_a_midi_file_and_not_for_a_wav(tmp_path):
    plain = Predictor(write_symbolic_checkpoint(tmp_path / "plain.pt"))
    path = write_symbolic_checkpoint(tmp_path / "notes.pt", symbolic_piece=False)  # the clips' statistics alone
    checkpoint = torch.load(path, weights_only=True)
    dim = 44
    # A regression that names the second class whatever the notes.
    checkpoint.update({"track_notes_mean": torch.zeros(2 * dim, dtype=torch.float64),
                       "track_notes_scale": torch.ones(2 * dim, dtype=torch.float64),
                       "track_notes_coef": torch.zeros((2, 2 * dim), dtype=torch.float64),
                       "track_notes_intercept": torch.tensor([-20.0, 20.0], dtype=torch.float64)})
    torch.save(checkpoint, path)
    fused = Predictor(path)
    midi = write_midi(tmp_path / "tune.mid", [(60 + (k % 5), 0.5 * k, 0.5 * k + 0.5) for k in range(18)])
    wav = write_wav(tmp_path / "tune.wav", sine(440.0, 9.0, 22050, 0.3), 22050)
    alone, with_notes = dict(plain.predict(midi).labels), dict(fused.predict(midi).labels)
    assert with_notes["palestrina"] == pytest.approx((alone["palestrina"] + 1.0) / 2, abs=1e-6)
    assert with_notes["bach"] == pytest.approx(alone["bach"] / 2, abs=1e-6)
    assert fused.predict(wav).labels == plain.predict(wav).labels  # an audio file: the CNN alone
    # A drums-only file sounds, but no note of it can be read: the audio alone, as for a WAV (its clips'
    # symbolic numbers were all zeros, which the model and the regression read as music of their own).
    drums = write_midi(tmp_path / "drums.mid", [(38 + k % 3, 0.5 * k, 0.5 * k + 0.3) for k in range(18)], drum=True)
    prediction = fused.predict(drums)
    assert prediction.error is None and prediction.clips > 0 and prediction.symbolic is False
    assert prediction.labels == plain.predict(drums).labels
    from musicid.predict import format_prediction

    assert "; notes not read (no_notes: no note sounds in its clips): its audio alone (" in \
        format_prediction(prediction)
    assert prediction.to_dict()["notes_unread"] == "no_notes: no note sounds in its clips"
    for other in (fused.predict(midi), fused.predict(wav)):
        assert other.notes_unread is None and "notes not read" not in format_prediction(other)


def mark_augmented(path, rows, shift: float = 0.0) -> None:
    """Mark ``rows`` of a features table as cut from render.augment's copies (featurize's ``augmented`` column),
    their notes moved by ``shift``, as a transposed, tempo-scaled copy's are."""
    import h5py

    with h5py.File(path, "r+") as table:
        augmented = np.zeros(len(table["split"]), bool)
        augmented[rows] = True
        table.create_dataset("augmented", data=augmented)
        symbolic = table["symbolic"][:]
        symbolic[rows] += shift
        table["symbolic"][:] = symbolic


def test_with_augmented_copies_the_regression_reads_the_plain_renders_clips_only(tmp_path):
    """A training track's augmented renders share its id: their transposed notes would blend into its
    statistics, which no plainly rendered val, test or predicted track has."""
    import shutil

    import h5py

    splits = ["train"] * 16 + ["val"] * 8 + ["test"] * 6
    write_symbolic_features(tmp_path / "plain.h5", splits)
    copies = [1, 5, 9, 13]  # the second clip of four training tracks (two clips a track)
    for name, shift in (("same.h5", 0.0), ("moved.h5", 3.0)):
        shutil.copy(tmp_path / "plain.h5", tmp_path / name)
        mark_augmented(tmp_path / name, copies, shift)
    names = ["a", "b"]
    fitted = {name: fit_table_regression(tmp_path / name, 0.1, names, augmented=True)
              for name in ("same.h5", "moved.h5")}
    assert fitted["same.h5"][1:] == fitted["moved.h5"][1:] == (None, 8)
    for key in KEYS:  # the copies' notes are not read
        assert np.array_equal(fitted["same.h5"][0][key], fitted["moved.h5"][0][key])
    # Read, the moved notes would change it: the marks are what keeps them out.
    shutil.copy(tmp_path / "plain.h5", tmp_path / "unmarked.h5")
    mark_augmented(tmp_path / "unmarked.h5", [], 0.0)
    with h5py.File(tmp_path / "unmarked.h5", "r+") as table:
        symbolic = table["symbolic"][:]
        symbolic[copies] += 3.0
        table["symbolic"][:] = symbolic
    unmarked, _, _ = fit_table_regression(tmp_path / "unmarked.h5", 0.1, names, augmented=True)
    assert not np.array_equal(unmarked["track_notes_coef"], fitted["moved.h5"][0]["track_notes_coef"])


def test_no_regression_on_an_augmented_table_that_does_not_mark_the_copies(tmp_path, params, monkeypatch, capsys):
    """A table written before featurize marked render.augment's copies: the copies cannot be told apart."""
    import h5py

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 6)
    with h5py.File(tmp_path / "features.h5", "r+") as table:
        table.attrs["params"] = json.dumps({"render": {"augment": {"copies": 2}}})
    train, _ = stage_arguments(tmp_path, params)
    with_track_notes(params, 0.1)
    assert TRAIN.main(train) == 0
    assert ("; no regression on the notes (the table does not mark render.augment's copies, which would blend "
            "into the tracks' statistics (written before featurize marked them: dvc repro featurize)) ->") \
        in capsys.readouterr().out
    assert checkpoint_regression(load_checkpoint(tmp_path / "model.pt")[1]) is None
    mark_augmented(tmp_path / "features.h5", [1, 5])
    assert TRAIN.main(train) == 0
    assert "; regression on the notes of 8 training tracks" in capsys.readouterr().out
    assert checkpoint_regression(load_checkpoint(tmp_path / "model.pt")[1]) is not None


def test_the_whole_piece_is_appended_to_each_tracks_statistics():
    from musicid.piece import PIECE_DIM
    from musicid.track_model import with_piece

    statistics = TrackStatistics(np.array(["a", "b", "c"]), np.arange(6.0).reshape(3, 2), np.array([True, True, False]))
    pieces = np.stack([np.full(PIECE_DIM, 1.0), np.full(PIECE_DIM, 3.0)])
    widened = with_piece(statistics, np.array(["a", "c"]), pieces)
    assert widened.values.shape == (3, 2 + PIECE_DIM)
    np.testing.assert_array_equal(widened.values[:, :2], statistics.values)
    assert (widened.values[0, 2:] == 1).all() and (widened.values[2, 2:] == 3).all()
    # b has clips with notes but no whole piece (which featurize never writes): not read by the regression.
    assert not widened.values[1, 2:].any() and widened.has_notes.tolist() == [True, False, False]
    none = with_piece(statistics, np.array([], dtype=str), np.zeros((0, PIECE_DIM)))
    assert not none.has_notes.any() and none.values.shape == (3, 2 + PIECE_DIM)


def test_train_and_evaluate_read_the_whole_piece(tmp_path, params, monkeypatch, capsys):
    """Clips whose notes are noise, whole pieces that tell the classes apart: the regression names every test
    track only by reading the pieces, which it does when the table has them."""
    import h5py

    from musicid.h5 import STRING, read_strings
    from musicid.piece import PIECE_DIM

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    splits = ["train"] * 16 + ["val"] * 8 + ["test"] * 6
    write_symbolic_features(tmp_path / "features.h5", splits)
    rng = np.random.default_rng(1)
    with h5py.File(tmp_path / "features.h5", "r+") as table:
        symbolic = rng.random(table["symbolic"].shape).astype(np.float32)
        symbolic[~table["has_symbolic"][:]] = 0
        table["symbolic"][:] = symbolic  # the same noise for both classes
        tracks, labels = read_strings(table["track"]), table["label"][:]
        names = sorted(set(tracks[table["has_symbolic"][:]]))
        label_of = {t: int(l) for t, l in zip(tracks, labels)}
        table.create_dataset("piece_track", data=np.array(names, dtype=STRING))
        table.create_dataset("piece", data=rng.random((len(names), PIECE_DIM))
                             + 3.0 * np.array([label_of[n] for n in names])[:, None])
        table.attrs["params"] = json.dumps({"features": {"symbolic_piece": True}})  # as featurize writes it
    train, evaluate = stage_arguments(tmp_path, params)
    with_track_notes(params, 0.1)
    assert TRAIN.main(train) == 0
    regression = checkpoint_regression(load_checkpoint(tmp_path / "model.pt")[1])
    assert regression["track_notes_mean"].shape == (2 * 44 + PIECE_DIM,)
    assert EVALUATE.main(evaluate) == 0
    assert json.loads((tmp_path / "per_class.json").read_text())["test"]["track_pooling"]["notes"] == 1.0
    # The same table without the pieces: the clips' noise alone does not name every test track.
    with h5py.File(tmp_path / "features.h5", "r+") as table:
        del table["piece"], table["piece_track"]
        table.attrs["params"] = json.dumps({})
    assert EVALUATE.main(evaluate) == 1  # a model that reads the pieces, a table without them
    assert "reads 44 statistics of a track and 119 of the whole piece, the table holds 44 statistics of a track " \
           "(features.symbolic, features.symbolic_piece); retrain" in capsys.readouterr().err
    assert TRAIN.main(train) == 0 and EVALUATE.main(evaluate) == 0
    assert checkpoint_regression(load_checkpoint(tmp_path / "model.pt")[1])["track_notes_mean"].shape == (2 * 44,)
    assert json.loads((tmp_path / "per_class.json").read_text())["test"]["track_pooling"]["notes"] < 1.0


def test_predict_reads_the_whole_piece_of_a_midi_file(tmp_path):
    from musicid.piece import PIECE_DIM
    from musicid.symbolic import read_midi_notes

    plain = Predictor(write_symbolic_checkpoint(tmp_path / "plain.pt"))
    path = write_symbolic_checkpoint(tmp_path / "piece.pt", symbolic_piece=True)
    checkpoint = torch.load(path, weights_only=True)
    width = 2 * 44 + PIECE_DIM
    coef = np.zeros((2, width))
    coef[1, 2 * 44:], coef[0, 2 * 44:] = 1.0, -1.0  # the piece's numbers alone move the answer
    coef[1, :44] = 0.5  # and the clips' mean a little
    regression = {"track_notes_mean": np.full(width, 0.1), "track_notes_scale": np.full(width, 2.0),
                  "track_notes_coef": coef, "track_notes_intercept": np.array([0.3, -0.3])}
    checkpoint.update({key: torch.from_numpy(value) for key, value in regression.items()})
    torch.save(checkpoint, path)
    fused = Predictor(path)
    midi = write_midi(tmp_path / "tune.mid", [(60 + (k % 5), 0.5 * k, 0.5 * k + 0.5) for k in range(18)])
    clips, offsets, _ = plain.clips_and_offsets(midi)
    notes = plain.notes_of(midi, offsets, clips.shape[1])
    values = np.concatenate([notes.mean(0), notes.std(0), read_midi_notes(midi)[1]])
    reading = regression_probabilities(regression, values[None])[0]
    alone, with_piece = dict(plain.predict(midi).labels), dict(fused.predict(midi).labels)
    for index, name in enumerate(["bach", "palestrina"]):
        assert with_piece[name] == pytest.approx((alone[name] + reading[index]) / 2, abs=1e-6)
    wav = write_wav(tmp_path / "tune.wav", sine(440.0, 9.0, 22050, 0.3), 22050)
    assert fused.predict(wav).labels == plain.predict(wav).labels  # an audio file: the CNN alone
    # Without a regression (train.track_notes 0) nothing reads the piece, so predict does not compute it.
    assert fused.features.symbolic_piece and not plain.features.symbolic_piece
    assert plain.read_notes_of(midi, offsets, clips.shape[1])[2] is None
    assert fused.read_notes_of(midi, offsets, clips.shape[1])[2] is not None

    # A checkpoint whose regression does not read what its features params say is refused, with what each says.
    from musicid.training import CheckpointError

    for name, features, width in (("without.pt", {"symbolic_piece": False}, 2 * 44 + PIECE_DIM),
                                  ("with.pt", {"symbolic_piece": True}, 2 * 44)):
        odd = write_symbolic_checkpoint(tmp_path / name, **features)
        checkpoint = torch.load(odd, weights_only=True)
        checkpoint.update({key: torch.from_numpy(np.ascontiguousarray(value[..., :width]))
                           for key, value in regression.items() if key != "track_notes_intercept"})
        checkpoint["track_notes_intercept"] = torch.from_numpy(regression["track_notes_intercept"])
        torch.save(checkpoint, odd)
        with pytest.raises(CheckpointError, match=f"the regression on the notes reads {width} numbers a track"):
            Predictor(odd)

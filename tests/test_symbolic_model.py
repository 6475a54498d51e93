"""The model's symbolic branch: forward with and without it, train and evaluate on a table with symbolic
features, predict on a MIDI and a WAV file with a symbolic checkpoint."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
import yaml

from musicid.h5 import RowWriter, feature_columns
from musicid.model import ModelConfig, SpectrogramCNN, symbolic_input
from musicid.novelty import Mahalanobis
from musicid.params import as_dict
from musicid.predict import Predictor
from musicid.symbolic import ROLL_DIM, ROLL_FRAMES, ROLL_PITCHES, SYMBOLIC_DIM, roll_shape, symbolic_dim
from musicid.training import drop_symbolic, load_checkpoint, save_checkpoint
from tests.conftest import (PROJECT_ROOT, SOUNDFONT, load_benchmark, load_stage, section_params, sine, write_midi,
                            write_wav)
from tests.test_train_stage import write_table_attrs

TRAIN = load_stage("train")
EVALUATE = load_stage("evaluate")


def test_forward_with_and_without_symbolic_input():
    torch.manual_seed(0)
    model = SpectrogramCNN(ModelConfig(n_bands=8, n_classes=3, channels=[4], embedding_dim=4, dropout=0.0,
                                       symbolic_dim=SYMBOLIC_DIM)).eval()
    x = torch.randn(5, 8, 16)
    features = np.random.default_rng(0).standard_normal((5, SYMBOLIC_DIM)).astype(np.float32)
    present = np.array([True, True, False, True, False])
    symbolic = torch.from_numpy(symbolic_input(features, present, np.zeros(SYMBOLIC_DIM, np.float32),
                                               np.ones(SYMBOLIC_DIM, np.float32)))
    assert symbolic.shape == (5, SYMBOLIC_DIM + 1) and symbolic[:, -1].tolist() == [1, 1, 0, 1, 0]
    assert not symbolic[2].any() and not symbolic[4].any()
    with torch.no_grad():
        fused = model.embed(x, symbolic)
        alone = model.embed(x)  # an audio file: every clip absent
        logits = model(x, symbolic=symbolic)
    assert fused.shape == (5, 4) and logits.shape == (5, 3)
    assert torch.allclose(fused.norm(dim=1), torch.ones(5))
    absent = [2, 4]
    assert torch.equal(fused[absent], alone[absent])  # absent rows are the audio-only path
    assert not torch.allclose(fused[[0, 1, 3]], alone[[0, 1, 3]])
    audio_only = SpectrogramCNN(ModelConfig(n_bands=8, n_classes=3, channels=[4], embedding_dim=4)).eval()
    assert audio_only.symbolic is None and audio_only.project.in_features == 8
    assert model.project.in_features == 8 + 64


def test_the_roll_branch_reads_the_roll_and_the_mlp_the_rest():
    torch.manual_seed(0)
    dim = SYMBOLIC_DIM + ROLL_DIM
    model = SpectrogramCNN(ModelConfig(n_bands=8, n_classes=3, channels=[4], embedding_dim=4, dropout=0.0,
                                       symbolic_dim=dim, roll_shape=[ROLL_PITCHES, ROLL_FRAMES])).eval()
    assert model.roll is not None and model.project.in_features == 8 + 64 + 64
    assert model.symbolic.layers[0].in_features == SYMBOLIC_DIM + 1
    assert model.config.to_dict()["roll_shape"] == [88, 32]
    plain = ModelConfig(n_bands=8, n_classes=3).to_dict()  # without a roll: older checkpoints' bytes
    assert not {"roll_shape", "roll_channels", "roll_pool"} & set(plain)
    x = torch.randn(3, 8, 16)
    features = np.random.default_rng(0).random((3, dim)).astype(np.float32)
    symbolic = torch.from_numpy(symbolic_input(features, np.array([True, True, False]), np.zeros(dim, np.float32),
                                               np.ones(dim, np.float32)))
    moved = symbolic.clone()
    moved[:, SYMBOLIC_DIM:-1] = torch.roll(moved[:, SYMBOLIC_DIM:-1].reshape(3, 88, 32), 5, dims=2).reshape(3, -1)
    with torch.no_grad():
        fused, alone, other = model.embed(x, symbolic), model.embed(x), model.embed(x, moved)
    assert torch.equal(fused[2], alone[2])  # absent: the audio-only path
    assert not torch.allclose(fused[:2], other[:2])  # the roll is read: moving it in time moves the embedding


def test_a_lighter_roll_branch_merges_frames_and_still_reads_time():
    torch.manual_seed(0)
    dim = SYMBOLIC_DIM + ROLL_DIM
    config = ModelConfig(n_bands=8, n_classes=3, channels=[4], embedding_dim=4, dropout=0.0, symbolic_dim=dim,
                         roll_shape=[ROLL_PITCHES, ROLL_FRAMES], roll_channels=[8, 16], roll_pool=2)
    model = SpectrogramCNN(config).eval()
    assert [block.conv.out_channels for block in model.roll.blocks] == [8, 16] and model.roll.pool == 2
    assert model.roll.out[0].in_features == 2 * 16
    assert config.to_dict()["roll_channels"] == [8, 16] and config.to_dict()["roll_pool"] == 2
    # A roll checkpoint written before the branch had these keys builds the branch it was trained with.
    older = {key: value for key, value in config.to_dict().items() if key not in ("roll_channels", "roll_pool")}
    default = SpectrogramCNN(ModelConfig(**older))
    assert [block.conv.out_channels for block in default.roll.blocks] == [16, 32, 64] and default.roll.pool == 1
    roll = torch.zeros(2, ROLL_PITCHES, ROLL_FRAMES)
    roll[:, 40, 3] = 1.0  # one note, in frame 3 (merged with frame 2) or, moved, frame 20
    moved = torch.roll(roll, 17, dims=2)
    shifted = torch.zeros_like(roll)
    shifted[:, 40, 2] = 1.0  # the other frame of frame 3's pair: merged, the same input
    with torch.no_grad():
        first, other, same = (model.roll(r.reshape(2, -1)) for r in (roll, moved, shifted))
    assert torch.equal(first, same)
    assert not torch.allclose(first, other)


def test_symbolic_dropout_hides_a_seeded_fraction():
    symbolic = torch.ones(1000, SYMBOLIC_DIM + 1)
    first = drop_symbolic(symbolic, 0.3, torch.Generator().manual_seed(0))
    again = drop_symbolic(symbolic, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(first, again)
    hidden = (first.sum(dim=1) == 0).sum().item()
    assert 250 < hidden < 350 and set(first.sum(dim=1).tolist()) == {0.0, SYMBOLIC_DIM + 1.0}
    assert torch.equal(drop_symbolic(symbolic, 0.0, torch.Generator()), symbolic)
    assert not drop_symbolic(symbolic, 1.0, torch.Generator().manual_seed(0)).any()


def write_symbolic_features(path, splits: list[str], bands: int = 8, frames: int = 16,
                            symbolic: bool = True, roll: bool = False, without_notes: int = 1,
                            onsets: bool = False) -> None:
    """Two classes told apart only by their symbolic features (the audio is noise); the last
    ``without_notes`` clips have none (2: the whole last track, an audio source). ``roll``: a piano roll
    follows, as features.symbolic_roll writes it (``onsets``: and its onset plane)."""
    rng = np.random.default_rng(0)
    n = len(splits)
    labels = (np.arange(n, dtype=np.int16) // 2) % 2
    values = dict(features=rng.standard_normal((n, bands, frames)).astype(np.float32), label=labels,
                  known=np.ones(n, bool), track=np.array([f"t{i // 2:03d}" for i in range(n)], dtype=object),
                  offset_s=np.zeros(n), split=np.array(splits, dtype=object))
    if symbolic:
        notes = rng.random((n, symbolic_dim(roll=roll, onsets=onsets))).astype(np.float32)
        notes[labels == 1, :12] += 2.0
        present = np.ones(n, bool)
        present[n - without_notes:] = False
        notes[~present] = 0
        values.update(symbolic=notes, has_symbolic=present)
    with RowWriter(path, feature_columns(bands, frames, symbolic_dim(roll=roll, onsets=onsets) if symbolic else 0)) \
            as writer:
        writer.append(**values)
        write_table_attrs(writer, bands)
        if symbolic:
            writer.attrs["symbolic_mean"] = notes[present].mean(axis=0)
            writer.attrs["symbolic_std"] = np.maximum(notes[present].std(axis=0), 1e-6)
            if roll:
                writer.attrs["symbolic_roll_shape"] = np.array(roll_shape(roll, onsets))
        writer.attrs["params"] = json.dumps({})


@pytest.fixture
def params(tmp_path):
    values = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    values["train"].update({"epochs": 3, "channels": [4], "embedding_dim": 4, "batch_size": 4,
                            "freq_mask": 2, "time_mask": 2, "masks": 1, "symbolic_dropout": 0.3})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def stage_arguments(tmp_path, params, features="features.h5", model="model.pt"):
    train = ["--params", str(params), "--features", str(tmp_path / features), "--model", str(tmp_path / model),
             "--live", str(tmp_path / "live")]
    evaluate = ["--params", str(params), "--model", str(tmp_path / model), "--features", str(tmp_path / features),
                "--metrics", str(tmp_path / "metrics.json"), "--per-class", str(tmp_path / "per_class.json"),
                "--confusion", str(tmp_path / "confusion"), "--novelty", str(tmp_path / "novelty.csv"),
                "--predictions", str(tmp_path / "predictions.csv"), "--figures", str(tmp_path / "figures")]
    return train, evaluate


def test_train_and_evaluate_with_symbolic_features(tmp_path, params, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 6)
    train, evaluate = stage_arguments(tmp_path, params)
    assert TRAIN.main(train) == 0
    assert "(ce, audio and symbolic features, notes for 16 of 16 clips)" in capsys.readouterr().out
    first = (tmp_path / "model.pt").read_bytes()
    assert TRAIN.main(train) == 0
    assert (tmp_path / "model.pt").read_bytes() == first  # the dropout masks are seeded
    model, checkpoint = load_checkpoint(tmp_path / "model.pt")
    assert model.config.symbolic_dim == SYMBOLIC_DIM
    with h5py.File(tmp_path / "features.h5", "r") as table:
        assert np.array_equal(checkpoint["symbolic_mean"].numpy(), table.attrs["symbolic_mean"])
    assert EVALUATE.main(evaluate) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"val", "test"}
    # The symbolic model on a table without symbolic features is refused, naming the param.
    write_symbolic_features(tmp_path / "plain.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 6, symbolic=False)
    _, evaluate_plain = stage_arguments(tmp_path, params, features="plain.h5")
    capsys.readouterr()
    assert EVALUATE.main(evaluate_plain) == 1
    assert ("the model was trained with 44-value symbolic features, the table holds no symbolic features "
            "(features.symbolic)") in capsys.readouterr().err


def test_tracks_without_notes_are_scored_against_statistics_of_clips_without_notes(tmp_path, params, monkeypatch):
    """A symbolic model embeds an audio file's clips elsewhere than the same music with its notes: train stores
    centroids and novelty statistics of clips embedded without notes, and the factor that puts a score against
    them on the others' scale; evaluate (like predict) scores a track without notes so."""
    import csv

    from musicid.novelty import Cosine, Mahalanobis
    from musicid.training import AUDIO_ONLY, embed

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    splits = ["train"] * 16 + ["val"] * 8 + ["test"] * 6
    write_symbolic_features(tmp_path / "features.h5", splits, without_notes=2)  # test track t014: no notes
    train, evaluate = stage_arguments(tmp_path, params)
    values = yaml.safe_load(params.read_text())
    values["train"]["novelty_notes"] = 0.0  # the embedding's score alone (tests/test_notes_novelty.py: mixed)
    params.write_text(yaml.safe_dump(values))
    assert TRAIN.main(train) == 0
    model, checkpoint = load_checkpoint(tmp_path / "model.pt")
    with h5py.File(tmp_path / "features.h5", "r") as table:
        features, labels = table["features"][:], table["label"][:].astype(np.int64)
        tracks = np.array([t.decode() if isinstance(t, bytes) else t for t in table["track"][:]])
        symbolic = symbolic_input(table["symbolic"][:], table["has_symbolic"][:], checkpoint["symbolic_mean"].numpy(),
                                  checkpoint["symbolic_std"].numpy())
    normalised = (features - checkpoint["band_mean"].numpy()[None, :, None]) / \
        checkpoint["band_std"].numpy()[None, :, None]
    hidden = embed(model, normalised, 64, torch.device("cpu"))  # every clip with its notes hidden
    seen = embed(model, normalised, 64, torch.device("cpu"), symbolic)  # and with them
    train_rows, val_rows, test_rows = (np.array([s == name for s in splits]) for name in ("train", "val", "test"))
    centroids = checkpoint[f"{AUDIO_ONLY}centroids"].numpy()
    expected = np.zeros_like(centroids, dtype=np.float64)
    np.add.at(expected, labels[train_rows], hidden[train_rows])
    np.testing.assert_allclose(centroids, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)
    # Each score's factor: the 95th percentiles of the validation tracks' scores with and without notes.
    scale = checkpoint[f"{AUDIO_ONLY}novelty_scale"]
    with_notes = {"cosine": Cosine(checkpoint["centroids"].numpy()),
                  "mahalanobis": Mahalanobis(checkpoint["novelty_class_means"].numpy(),
                                             checkpoint["novelty_precision"].numpy())}
    without = {"cosine": Cosine(centroids),
               "mahalanobis": Mahalanobis(checkpoint[f"{AUDIO_ONLY}novelty_class_means"].numpy(),
                                          checkpoint[f"{AUDIO_ONLY}novelty_precision"].numpy())}
    for kind in ("cosine", "mahalanobis"):
        ratio = np.percentile(with_notes[kind].track_scores(seen[val_rows], tracks[val_rows])[1], 95) / \
            np.percentile(without[kind].track_scores(hidden[val_rows], tracks[val_rows])[1], 95)
        assert scale[kind] == pytest.approx(ratio, rel=1e-5) and scale[kind] != pytest.approx(1.0)
    assert EVALUATE.main(evaluate) == 0
    rows = {row["track"]: row for row in csv.DictReader(open(tmp_path / "predictions.csv"))}
    audio_track = tracks[-1]
    _, score = Cosine(centroids).track_scores(hidden[tracks == audio_track], tracks[tracks == audio_track])
    assert float(rows[audio_track]["novelty"]) == pytest.approx(float(score[0]) * scale["cosine"], abs=2e-6)
    assert rows[audio_track]["flagged"] == str(bool(float(rows[audio_track]["novelty"]) >
                                                    checkpoint["novelty_reference"])).lower()
    # A track with notes keeps the scorer of clips with notes.
    track = tracks[test_rows][0]
    _, score = with_notes["cosine"].track_scores(seen[tracks == track], tracks[tracks == track])
    assert float(rows[track]["novelty"]) == pytest.approx(float(score[0]), abs=2e-6)


def test_a_triplet_model_names_a_track_without_notes_by_the_centroids_of_clips_without_notes(tmp_path, params,
                                                                                           monkeypatch):
    """Without a classifier, classes are the nearest centroid: a notes-less track's clips are compared with the
    centroids of the training clips embedded without their notes."""
    import csv

    from musicid.training import AUDIO_ONLY, class_probabilities

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    values = yaml.safe_load(params.read_text())
    values["train"]["loss"] = "triplet"
    values["train"]["track_prior"] = 0.0  # refused with a triplet model
    params.write_text(yaml.safe_dump(values))
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 6, without_notes=2)
    train, evaluate = stage_arguments(tmp_path, params)
    assert TRAIN.main(train) == 0 and EVALUATE.main(evaluate) == 0
    model, checkpoint = load_checkpoint(tmp_path / "model.pt")
    assert not model.uses_classifier
    with h5py.File(tmp_path / "features.h5", "r") as table:
        features = table["features"][-2:]  # the last track's two clips, without notes
    normalised = (features - checkpoint["band_mean"].numpy()[None, :, None]) / \
        checkpoint["band_std"].numpy()[None, :, None]
    expected = class_probabilities(model, normalised, checkpoint[f"{AUDIO_ONLY}centroids"].numpy(), 64,
                                   torch.device("cpu"))[0].mean(axis=0)
    row = {r["track"]: r for r in csv.DictReader(open(tmp_path / "predictions.csv"))}["t014"]
    np.testing.assert_allclose([float(row["p_a"]), float(row["p_b"])], expected, atol=2e-6)


def test_predict_scores_an_audio_file_against_the_statistics_of_clips_without_notes(tmp_path):
    from musicid.training import AUDIO_ONLY

    checkpoint = torch.load(write_symbolic_checkpoint(tmp_path / "model.pt"), weights_only=False)
    # Nothing is flagged on its own scale (threshold 1e9); a file without notes is scored 1e12 times higher.
    checkpoint.update({f"{AUDIO_ONLY}centroids": checkpoint["centroids"],
                       f"{AUDIO_ONLY}novelty_class_means": checkpoint["novelty_class_means"],
                       f"{AUDIO_ONLY}novelty_precision": checkpoint["novelty_precision"],
                       f"{AUDIO_ONLY}novelty_scale": {"cosine": 1e12, "mahalanobis": 1e12}})
    torch.save(checkpoint, tmp_path / "both.pt")
    predictor = Predictor(tmp_path / "both.pt")
    midi = write_midi(tmp_path / "tune.mid", [(60 + (k % 5), 0.5 * k, 0.5 * k + 0.5) for k in range(18)])
    wav = write_wav(tmp_path / "tune.wav", sine(440.0, 9.0, 22050, 0.3), 22050)
    from_midi, from_wav = predictor.predict(midi), predictor.predict(wav)
    assert from_midi.symbolic and not from_midi.flagged
    assert not from_wav.symbolic and from_wav.flagged
    # A checkpoint without them (written before train stored them) scores both as they are.
    old = Predictor(tmp_path / "model.pt")
    plain = old.predict(wav)
    assert not plain.flagged and from_wav.novelty == pytest.approx(plain.novelty * 1e12)


def test_train_evaluate_and_reload_a_model_with_a_roll_branch(tmp_path, params, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 6, roll=True)
    train, evaluate = stage_arguments(tmp_path, params)
    assert TRAIN.main(train) == 0
    first = (tmp_path / "model.pt").read_bytes()
    assert TRAIN.main(train) == 0 and (tmp_path / "model.pt").read_bytes() == first
    model, _ = load_checkpoint(tmp_path / "model.pt")
    assert model.config.roll_shape == [88, 32] and model.roll is not None
    assert model.config.symbolic_dim == SYMBOLIC_DIM + ROLL_DIM
    assert EVALUATE.main(evaluate) == 0


def test_train_with_a_lighter_roll_branch_and_its_params_checked(tmp_path, params, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 6, roll=True)
    values = yaml.safe_load(params.read_text())

    def with_train(**changes) -> list[str]:
        path = tmp_path / "lighter.yaml"
        path.write_text(yaml.safe_dump({**values, "train": {**values["train"], **changes}}))
        return stage_arguments(tmp_path, path)[0]

    assert TRAIN.main(with_train(roll_channels=[8, 16], roll_pool=4)) == 0
    model, _ = load_checkpoint(tmp_path / "model.pt")
    assert model.config.roll_channels == [8, 16] and model.config.roll_pool == 4
    assert [block.conv.out_channels for block in model.roll.blocks] == [8, 16]
    capsys.readouterr()
    assert TRAIN.main(with_train(roll_pool=33)) == 2
    error = capsys.readouterr().err
    assert "train.roll_pool must be at most the piano roll's 32 frames" in error and error.rstrip().endswith("got 33")
    assert TRAIN.main(with_train(roll_channels=[8, 0])) == 2
    assert "train.roll_channels must be a non-empty list of positive ints, got [8, 0]" in capsys.readouterr().err
    assert TRAIN.main(with_train(roll_pool=0)) == 2
    assert "train.roll_pool" in capsys.readouterr().err
    # SpecAugment masks wider than the table's 8 bands or 16 frames would blank whole clips.
    assert TRAIN.main(with_train(freq_mask=9)) == 2
    assert capsys.readouterr().err.endswith(f"train.freq_mask must be at most the features' 8 bands "
                                            f"({tmp_path / 'features.h5'}), got 9\n")
    assert TRAIN.main(with_train(time_mask=17)) == 2
    assert "train.time_mask must be at most the features' 16 frames" in capsys.readouterr().err
    assert TRAIN.main(with_train(freq_mask=9, time_mask=17, masks=0)) == 0  # masking off: no width matters


def test_the_roll_cost_benchmark_times_each_branch_against_none(tmp_path, params, monkeypatch, capsys):
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    roll_cost = load_benchmark("roll_cost")
    write_symbolic_features(tmp_path / "roll.h5", ["train"] * 16 + ["val"] * 8, roll=True)
    write_symbolic_features(tmp_path / "plain.h5", ["train"] * 16 + ["val"] * 8)
    arguments = ["--params", str(params), "--clips", "8", "--epochs", "1", "--repeats", "1"]
    assert roll_cost.main(["--features", str(tmp_path / "roll.h5"), *arguments]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("8 training clips [8 x 16], roll 88 x 32, 1 epochs")
    assert [line.split(" median")[0].strip() for line in lines[1:]] == list(roll_cost.BRANCHES)
    assert lines[1].endswith("1.00x without the roll")
    assert roll_cost.main(["--features", str(tmp_path / "plain.h5"), *arguments]) == 2
    assert "has no piano roll: featurize with features.symbolic_roll: true" in capsys.readouterr().err


@pytest.mark.parametrize("roll", [False, True])
def test_the_nan_fill_benchmark_gives_the_same_weights_both_ways(tmp_path, params, monkeypatch, capsys, roll):
    import torch.utils.deterministic
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    nan_fill = load_benchmark("nan_fill")
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 16 + ["val"] * 8, roll=roll)
    seed_everything = nan_fill.training.seed_everything
    assert nan_fill.main(["--features", str(tmp_path / "features.h5"), "--params", str(params), "--clips", "8",
                          "--epochs", "1", "--repeats", "1"]) == 0
    assert nan_fill.training.seed_everything is seed_everything  # put back
    torch.utils.deterministic.fill_uninitialized_memory = False
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("8 training clips [8 x 16] with symbolic features" +
                               (", roll 88 x 32 (channels" if roll else ", 1 epochs"))
    assert [line.split(" median")[0].strip() for line in lines[1:3]] == list(nan_fill.WAYS.values())
    assert lines[3].endswith("the two give the same weights")
    assert nan_fill.main(["--features", str(tmp_path / "missing.h5")]) == 2
    assert "missing.h5 is missing" in capsys.readouterr().err


def test_an_audio_only_model_ignores_symbolic_columns(tmp_path, params, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    write_symbolic_features(tmp_path / "plain.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 6, symbolic=False)
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 16 + ["val"] * 8 + ["test"] * 6)
    train, _ = stage_arguments(tmp_path, params, features="plain.h5")
    assert TRAIN.main(train) == 0
    assert load_checkpoint(tmp_path / "model.pt")[0].config.symbolic_dim == 0
    _, evaluate = stage_arguments(tmp_path, params)
    assert EVALUATE.main(evaluate) == 0


@pytest.mark.parametrize("value,message", [
    (1.5, "train.symbolic_dropout must be <= 1, got 1.5"),
    (-0.1, "train.symbolic_dropout must be >= 0, got -0.1"),
    ("often", "train.symbolic_dropout must be a number, got 'often'"),
])
def test_a_bad_symbolic_dropout_is_named(tmp_path, params, capsys, value, message):
    values = yaml.safe_load(params.read_text())
    values["train"]["symbolic_dropout"] = value
    params.write_text(yaml.safe_dump(values))
    write_symbolic_features(tmp_path / "features.h5", ["train"] * 8 + ["val"] * 4)
    train, _ = stage_arguments(tmp_path, params)
    assert TRAIN.main(train) == 2
    assert capsys.readouterr().err == f"train: {params}: {message}\n"


def write_symbolic_checkpoint(path, **features):
    params = {name: as_dict(section_params(name)) for name in ("render", "clip", "features")}
    if not SOUNDFONT.is_file():
        pytest.fail(f"{SOUNDFONT} is missing: run `make setup`")
    params["render"]["soundfonts"] = [str(SOUNDFONT)]
    params["features"].update(symbolic=True, **{"symbolic_roll": False, **features})  # the roll: asked for by name
    dim = symbolic_dim(params["features"]["symbolic_texture"], params["features"]["symbolic_roll"],
                       params["features"]["symbolic_onsets"])
    torch.manual_seed(0)
    config = ModelConfig(n_bands=params["features"]["n_mels"], n_classes=2, channels=[4], embedding_dim=4,
                         dropout=0.0, symbolic_dim=dim,
                         roll_shape=roll_shape(params["features"]["symbolic_roll"], params["features"]["symbolic_onsets"]))
    embeddings = np.random.default_rng(0).standard_normal((20, 4))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    save_checkpoint(path, SpectrogramCNN(config), ["bach", "palestrina"], np.zeros(config.n_bands, np.float32),
                    np.ones(config.n_bands, np.float32), params,
                    novelty=Mahalanobis.fit(embeddings, np.arange(20) % 2),
                    extra={"novelty_reference": 1e9, "novelty_reference_tracks": 24,
                           "symbolic_mean": torch.zeros(dim), "symbolic_std": torch.ones(dim)})
    return path


def test_predict_reads_the_notes_of_a_midi_file_and_not_of_a_wav(tmp_path):
    predictor = Predictor(write_symbolic_checkpoint(tmp_path / "model.pt"))
    assert predictor.uses_symbolic
    midi = write_midi(tmp_path / "tune.mid", [(60 + (k % 5), 0.5 * k, 0.5 * k + 0.5) for k in range(18)])
    wav = write_wav(tmp_path / "tune.wav", sine(440.0, 9.0, 22050, 0.3), 22050)
    from_midi, from_wav = predictor.predict(midi), predictor.predict(wav)
    assert from_midi.error is None and from_wav.error is None
    assert from_midi.symbolic and not from_wav.symbolic
    assert from_midi.clips == 2 and from_wav.clips == 2
    clips, offsets, _ = predictor.clips_and_offsets(midi)
    symbolic = predictor.symbolic_of(midi, offsets, clips.shape[1])
    assert symbolic.shape == (2, SYMBOLIC_DIM + 1) and symbolic[:, -1].tolist() == [1.0, 1.0]
    assert offsets.tolist() == [0.0, 4.0] and symbolic[0, :12].sum() == pytest.approx(1.0)
    assert predictor.symbolic_of(wav, offsets, clips.shape[1]) is None


def test_predict_refuses_a_symbolic_model_whose_features_params_give_other_numbers(tmp_path):
    from musicid.training import CheckpointError

    path = write_symbolic_checkpoint(tmp_path / "model.pt")
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["params"]["features"]["symbolic_texture"] = True
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=r"its parts do not fit together \(the features params give 69 "
                                              r"symbolic numbers a clip, the model reads 44, the normalisation "
                                              r"has 44\)"):
        Predictor(path)


def test_predict_counts_pitch_classes_from_the_tonic_as_the_model_was_trained(tmp_path):
    from musicid.symbolic import estimate_tonic, read_notes

    absolute = Predictor(write_symbolic_checkpoint(tmp_path / "absolute.pt"))
    relative = Predictor(write_symbolic_checkpoint(tmp_path / "relative.pt", symbolic_key="relative"))
    # G major up and down: the tonic is pitch class 7.
    scale = [67, 69, 71, 72, 74, 76, 78, 79, 78, 76, 74, 72, 71, 69, 67, 67]
    midi = write_midi(tmp_path / "tune.mid", [(pitch, 0.5 * k, 0.5 * k + 0.5) for k, pitch in enumerate(scale)])
    assert estimate_tonic(read_notes(midi)) == 7
    clips, offsets, _ = relative.clips_and_offsets(midi)
    by_c = absolute.symbolic_of(midi, offsets, clips.shape[1])
    by_tonic = relative.symbolic_of(midi, offsets, clips.shape[1])
    np.testing.assert_array_equal(by_tonic[:, :12], np.roll(by_c[:, :12], -7, axis=1))
    np.testing.assert_array_equal(by_tonic[:, 24:], by_c[:, 24:])
    assert relative.predict(midi).error is None


def test_predict_reads_the_texture_blocks_when_the_model_was_trained_with_them(tmp_path):
    plain = Predictor(write_symbolic_checkpoint(tmp_path / "plain.pt"))
    texture = Predictor(write_symbolic_checkpoint(tmp_path / "texture.pt", symbolic_texture=True))
    midi = write_midi(tmp_path / "tune.mid", [(60 + (k % 5), 0.5 * k, 0.5 * k + 0.5) for k in range(18)])
    clips, offsets, _ = texture.clips_and_offsets(midi)
    without = plain.symbolic_of(midi, offsets, clips.shape[1])
    with_texture = texture.symbolic_of(midi, offsets, clips.shape[1])
    assert without.shape == (2, SYMBOLIC_DIM + 1) and with_texture.shape == (2, symbolic_dim(True) + 1)
    np.testing.assert_array_equal(with_texture[:, :SYMBOLIC_DIM], without[:, :SYMBOLIC_DIM])
    assert with_texture[:, SYMBOLIC_DIM:-1].any()
    assert texture.predict(midi).error is None


def test_predict_reads_the_piano_roll_when_the_model_was_trained_with_it(tmp_path):
    plain = Predictor(write_symbolic_checkpoint(tmp_path / "plain.pt"))
    roll = Predictor(write_symbolic_checkpoint(tmp_path / "roll.pt", symbolic_roll=True))
    assert roll.model.roll is not None
    # C4 C#4 D4 D#4 E4 repeated, half a second each: 9 s, two clips.
    midi = write_midi(tmp_path / "tune.mid", [(60 + (k % 5), 0.5 * k, 0.5 * k + 0.5) for k in range(18)])
    clips, offsets, _ = roll.clips_and_offsets(midi)
    without = plain.symbolic_of(midi, offsets, clips.shape[1])
    with_roll = roll.symbolic_of(midi, offsets, clips.shape[1])
    assert with_roll.shape == (2, SYMBOLIC_DIM + ROLL_DIM + 1)
    np.testing.assert_array_equal(with_roll[:, :SYMBOLIC_DIM], without[:, :SYMBOLIC_DIM])
    first = with_roll[0, SYMBOLIC_DIM:-1].reshape(ROLL_PITCHES, ROLL_FRAMES)
    assert first[60 - 21, :4].tolist() == [1.0] * 4 and first[61 - 21, 4:8].tolist() == [1.0] * 4
    assert roll.predict(midi).error is None
    # An audio file (the roll is on by default): its clips are scored with no notes, roll and all.
    wav = write_wav(tmp_path / "tune.wav", sine(440.0, 9.0, 22050, 0.3), 22050)
    from_wav = roll.predict(wav)
    assert from_wav.error is None and not from_wav.symbolic and from_wav.clips == 2

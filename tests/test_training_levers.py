"""Training levers: transposition of constant-Q and chroma features, mixup, label smoothing, gradient clipping."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
import yaml

from musicid.model import ModelConfig, SpectrogramCNN
from musicid.params import ParamsError
from musicid.training import (PitchAxis, checkpoint_bytes, clip_gradients, parameter_groups, pitch_shift,
                              track_balance_weights, train_model, weighted_cross_entropy)
from tests.conftest import PROJECT_ROOT, SOUNDFONT, load_stage, section_params, sine, write_wav
from tests.test_train_stage import arguments, splits_of, write_features

TRAIN = load_stage("train")


def drawn_semitones(batch: int, most: int, seed: int) -> np.ndarray:
    """The shifts pitch_shift draws first from a generator seeded with ``seed``."""
    return torch.randint(-most, most + 1, (batch,), generator=torch.Generator().manual_seed(seed)).numpy()


def test_cqt_shift_moves_by_bins_per_semitone_and_fills_with_the_floor():
    bands, frames, batch = 24, 3, 16
    mean = np.linspace(-80, -20, bands).astype(np.float32)
    std = np.full(bands, 4.0, np.float32)
    raw = np.full((batch, bands, frames), -100.0, np.float32)
    raw[:, 10] = -30.0  # one lit band, at bin 10
    raw[:, 11] = -40.0
    axis = PitchAxis("cqt", 24, -100.0, mean, std)
    x = torch.from_numpy((raw - mean[:, None]) / std[:, None])
    out = pitch_shift(x, 3, axis, torch.Generator().manual_seed(5)).numpy() * std[:, None] + mean[:, None]
    semitones = drawn_semitones(batch, 3, 5)
    assert set(semitones) == {-3, -2, -1, 0, 1, 2, 3}
    for clip, semitone in zip(out, semitones):
        expected = np.full((bands, frames), -100.0, np.float32)
        expected[10 + 2 * semitone] = -30.0  # 24 bins per octave: two bins a semitone
        expected[11 + 2 * semitone] = -40.0
        assert np.allclose(clip, expected, atol=1e-4), semitone


def test_cqt_shift_does_not_wrap_around():
    bands = 12
    raw = np.arange(bands, dtype=np.float32)[None, :, None].repeat(2, axis=2)  # (1, 12, 2)
    axis = PitchAxis("cqt", 12, -100.0, np.zeros(bands, np.float32), np.ones(bands, np.float32))
    for seed in range(40):
        (semitone,) = drawn_semitones(1, 2, seed)
        if semitone == 2:
            out = pitch_shift(torch.from_numpy(raw), 2, axis, torch.Generator().manual_seed(seed)).numpy()
            assert out[0, :, 0].tolist() == [-100.0, -100.0, *range(10)]
            break
    else:
        pytest.fail("no seed drew a shift of 2")


def test_chroma_shift_rolls_round_the_twelve_pitch_classes():
    batch = 8
    mean = np.linspace(0.1, 0.5, 12).astype(np.float32)
    std = np.linspace(0.2, 0.4, 12).astype(np.float32)
    raw = np.tile(np.arange(12, dtype=np.float32)[None, :, None] / 12, (batch, 1, 4))
    axis = PitchAxis("chroma", 36, -100.0, mean, std)  # bins_per_octave does not matter for chroma
    x = torch.from_numpy((raw - mean[:, None]) / std[:, None])
    out = pitch_shift(x, 5, axis, torch.Generator().manual_seed(1)).numpy() * std[:, None] + mean[:, None]
    for clip, semitone, original in zip(out, drawn_semitones(batch, 5, 1), raw):
        assert np.allclose(clip, np.roll(original, semitone, axis=0), atol=1e-5)


def test_zero_shift_draws_nothing_and_returns_the_batch():
    x = torch.ones(2, 12, 3)
    generator = torch.Generator().manual_seed(0)
    assert pitch_shift(x, 0, None, generator) is x
    assert torch.equal(torch.rand(1, generator=generator), torch.rand(1, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="features.kind cqt or chroma"):
        pitch_shift(x, 1, None, generator)


@pytest.mark.parametrize("bands", [12, 84])
def test_the_cnn_takes_12_and_84_bands(bands):
    torch.manual_seed(0)
    model = SpectrogramCNN(ModelConfig(n_bands=bands, n_classes=3)).eval()
    x = torch.randn(2, bands, 126)
    feature_map = model.blocks(x.unsqueeze(1))
    assert feature_map.shape == (2, 128, -(-bands // 16), 8)  # ceil pooling: 12 bands end as 1 row, not 0
    logits = model(x)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    assert not torch.allclose(logits[0], logits[1])


def test_gradient_clipping_is_clip_grad_norm_and_leaves_small_gradients():
    torch.manual_seed(0)
    first, second = SpectrogramCNN(ModelConfig(n_bands=12, n_classes=2, channels=[4])), None
    second = SpectrogramCNN(ModelConfig(n_bands=12, n_classes=2, channels=[4]))
    for model in (first, second):
        for index, parameter in enumerate(model.parameters()):
            parameter.grad = torch.full_like(parameter, 0.5 + index)
    clip_gradients(first, 1.0)
    torch.nn.utils.clip_grad_norm_(second.parameters(), 1.0)
    for mine, theirs in zip(first.parameters(), second.parameters()):
        assert torch.allclose(mine.grad, theirs.grad, rtol=1e-5)
    total = np.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in first.parameters()))
    assert total == pytest.approx(1.0, rel=1e-5)
    before = [p.grad.clone() for p in first.parameters()]
    clip_gradients(first, 10.0)  # already below: unchanged
    assert all(torch.equal(a, p.grad) for a, p in zip(before, first.parameters()))


def test_weight_decay_skips_biases_and_batch_norm():
    model = SpectrogramCNN(ModelConfig(n_bands=12, n_classes=2, channels=[4, 8]))
    decayed, kept = parameter_groups(model, 0.01)
    names = {id(p): name for name, p in model.named_parameters()}
    assert decayed["weight_decay"] == 0.01 and kept["weight_decay"] == 0.0
    assert sorted(names[id(p)] for p in decayed["params"]) == [
        "blocks.0.conv.weight", "blocks.1.conv.weight", "classifier.weight", "project.weight"]
    assert sorted(names[id(p)] for p in kept["params"]) == [
        "blocks.0.norm.bias", "blocks.0.norm.weight", "blocks.1.norm.bias", "blocks.1.norm.weight",
        "classifier.bias", "project.bias"]


def tiny_data(bands: int = 12):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, bands, 16)).astype(np.float32)
    y = (np.arange(48) % 2).astype(np.int64)
    x[y == 1, :3] += 1.5
    return x[:32], y[:32], x[32:], y[32:]


def uneven_tracks(labels: np.ndarray) -> np.ndarray:
    """Each class's clips in one long track (its first 12 clips: rows 0..23 alternate between the two classes)
    and single-clip tracks (the rest)."""
    return np.array([f"{label}-long" if i < 24 else f"{label}-{i}" for i, label in enumerate(labels)], dtype=object)


def trained_bytes(**levers) -> bytes:
    train_x, train_y, val_x, val_y = tiny_data()
    params = section_params("train", epochs=2, channels=[4, 8], embedding_dim=4, batch_size=8, **levers)
    config = ModelConfig(n_bands=12, n_classes=2, channels=[4, 8], embedding_dim=4, dropout=params.dropout)
    axis = PitchAxis("chroma", 12, -100.0, np.zeros(12, np.float32), np.ones(12, np.float32))
    model, log, _ = train_model(train_x, train_y, val_x, val_y, config, params, pitch=axis,
                                train_tracks=uneven_tracks(train_y))
    assert all(np.isfinite(entry.train_loss) for entry in log)
    return checkpoint_bytes(model, ["a", "b"], np.zeros(12), np.ones(12), {})


@pytest.mark.parametrize("levers", [{"label_smoothing": 0.1}, {"mixup": 0.4, "loss": "ce"}, {"grad_clip": 0.05},
                                    {"pitch_shift": 2}, {"ema": 0.9}, {"track_balance": 1.0},
                                    {"track_balance": 0.5}])
def test_each_lever_changes_the_model_and_is_deterministic(levers):
    once = trained_bytes(**levers)
    assert trained_bytes(**levers) == once
    # against the same loss without the lever (mixup takes the cross-entropy alone, not the default ce+triplet)
    assert once != trained_bytes(**{key: value for key, value in levers.items() if key == "loss"})


@pytest.mark.parametrize("key, value, message", [
    ("label_smoothing", 1.0, r"train\.label_smoothing must be < 1, got 1\.0"),
    ("label_smoothing", -0.1, r"train\.label_smoothing must be >= 0, got -0\.1"),
    ("mixup", -0.2, r"train\.mixup must be >= 0, got -0\.2"),
    ("grad_clip", -1.0, r"train\.grad_clip must be >= 0, got -1\.0"),
    ("ema", 1.0, r"train\.ema must be < 1, got 1\.0"),
    ("ema", -0.5, r"train\.ema must be >= 0, got -0\.5"),
    ("pitch_shift", -1, r"train\.pitch_shift must be >= 0, got -1"),
    ("pitch_shift", 1.5, r"train\.pitch_shift must be an integer, got 1\.5"),
    ("novelty", "euclid", r"train\.novelty must be 'cosine' or 'mahalanobis', got 'euclid'"),
    ("keep", "first", r"train\.keep must be 'best' or 'last', got 'first'"),
    ("track_balance", 1.5, r"train\.track_balance must be <= 1, got 1\.5"),
    ("track_balance", -0.5, r"train\.track_balance must be >= 0, got -0\.5"),
    ("track_prior", 2.5, r"train\.track_prior must be <= 2, got 2\.5"),
    ("track_prior", -1.0, r"train\.track_prior must be >= 0, got -1\.0"),
    ("track_prior", True, r"train\.track_prior must be a number, got True"),
])
def test_bad_lever_values_are_named(key, value, message):
    with pytest.raises(ParamsError, match=message):
        section_params("train", **{key: value})


@pytest.mark.parametrize("loss", ["triplet", "ce+triplet"])
def test_mixup_needs_the_cross_entropy_loss_alone(loss):
    with pytest.raises(ParamsError, match=rf"train\.mixup must be 0 with train\.loss {loss.replace('+', '.')} "
                                          r"\(a mixed clip has no one label for its triplets\), got 0\.2"):
        section_params("train", mixup=0.2, loss=loss)


def test_track_prior_refuses_the_triplet_loss_alone():
    with pytest.raises(ParamsError, match=r"train\.track_prior must be 0 with train\.loss triplet \(such a model names "
                                          r"a class by the distance to its centroid.*, got 1$"):
        section_params("train", loss="triplet", track_prior=1.0)
    assert section_params("train", loss="triplet", track_prior=0.0).track_prior == 0.0
    assert section_params("train", loss="ce+triplet", track_prior=1.0).track_prior == 1.0


def test_track_balance_refuses_the_triplet_loss_alone():
    with pytest.raises(ParamsError, match=r"train\.track_balance must be 0 with train\.loss triplet \(it weighs the "
                                          r"cross-entropy, which that loss has none of\), got 0\.5"):
        section_params("train", loss="triplet", track_balance=0.5)
    assert section_params("train", loss="ce+triplet", track_balance=0.5).track_balance == 0.5


def test_track_balance_refuses_mixup():
    with pytest.raises(ParamsError, match=r"train\.track_balance must be 0 with train\.mixup > 0 \(a mixed clip "
                                          r"belongs to two tracks\), got 1"):
        section_params("train", mixup=0.2, track_balance=1.0, loss="ce")


def test_track_balance_weighs_tracks_within_their_class_and_keeps_the_classes_totals():
    labels = np.array([0, 0, 0, 0, 1, 1])
    tracks = np.array(["a", "a", "a", "b", "c", "d"], dtype=object)
    class_weights = np.array([0.75, 1.5])  # inverse frequency, as train gives them: 6 / (2 * count)
    assert np.allclose(track_balance_weights(labels, tracks, class_weights, 0.0), [0.75] * 4 + [1.5] * 2)
    whole = track_balance_weights(labels, tracks, class_weights, 1.0)
    assert np.allclose(whole, [0.5, 0.5, 0.5, 1.5, 1.5, 1.5])  # tracks a and b weigh 1.5 each
    root = track_balance_weights(labels, tracks, class_weights, 0.5)
    assert np.isclose(root[:3].sum() / root[3], np.sqrt(3))  # a track of 3 clips weighs sqrt(3) one of 1
    for weights in (whole, root):
        assert np.isclose(weights[:4].sum(), 3.0) and np.isclose(weights[4:].sum(), 3.0)


def test_weighted_cross_entropy_is_the_class_weighted_mean_with_a_weight_per_clip():
    generator = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(10, 3, generator=generator), torch.tensor([0, 1, 2, 2, 2, 1, 0, 2, 2, 1])
    class_weights = torch.tensor([2.0, 0.5, 1.25])
    cross_entropy = torch.nn.functional.cross_entropy
    # each clip at its class's weight: what cross_entropy's class weights give
    assert torch.isclose(weighted_cross_entropy(logits, labels, class_weights[labels], 0.0),
                         cross_entropy(logits, labels, weight=class_weights))
    # equal weights, label smoothing on: the plain mean
    assert torch.isclose(weighted_cross_entropy(logits, labels, torch.full((10,), 3.0), 0.1),
                         cross_entropy(logits, labels, label_smoothing=0.1))
    # a clip of weight 0 counts for nothing, and the smoothed part takes the clip's weight
    weights = torch.tensor([0.0] + [1.0] * 9)
    assert torch.isclose(weighted_cross_entropy(logits, labels, weights, 0.1),
                         cross_entropy(logits[1:], labels[1:], label_smoothing=0.1))


def test_track_balance_needs_the_training_tracks():
    train_x, train_y, val_x, val_y = tiny_data()
    params = section_params("train", epochs=1, channels=[4], embedding_dim=4, batch_size=8, track_balance=1.0)
    config = ModelConfig(n_bands=12, n_classes=2, channels=[4], embedding_dim=4, dropout=params.dropout)
    with pytest.raises(ValueError, match="train.track_balance needs the training clips' tracks, one per clip: "
                                         "got none for 32 clips"):
        train_model(train_x, train_y, val_x, val_y, config, params)
    with pytest.raises(ValueError, match="one per clip: got 31 for 32 clips"):
        train_model(train_x, train_y, val_x, val_y, config, params, train_tracks=uneven_tracks(train_y)[:31])


def test_keep_last_needs_early_stopping_off():
    with pytest.raises(ParamsError, match=r"train\.patience must be 0 with train\.keep last \(early stopping "
                                          r"keeps the best epoch, not the last\), got 2"):
        section_params("train", keep="last", patience=2)


def test_keep_last_keeps_the_final_weights_whatever_val_says(monkeypatch):
    """Val macro-F1 falling epoch by epoch: keep best returns epoch 1, keep last the final epoch, whose
    weights are those keep best returns when val rises instead (the same seeded training)."""
    import musicid.training as training
    train_x, train_y, val_x, val_y = tiny_data()
    config = ModelConfig(n_bands=12, n_classes=2, channels=[4, 8], embedding_dim=4, dropout=0.2)

    def run(keep: str, scores: list[float]):
        calls = iter(scores)
        monkeypatch.setattr(training, "_val_scores", lambda *_, **__: (0.5, next(calls)))
        params = section_params("train", epochs=3, channels=[4, 8], embedding_dim=4, batch_size=8, keep=keep)
        model, log, epoch = train_model(train_x, train_y, val_x, val_y, config, params)
        assert [entry.val_macro_f1 for entry in log] == scores
        return checkpoint_bytes(model, ["a", "b"], np.zeros(12), np.ones(12), {}), epoch

    falling, rising = [0.9, 0.6, 0.3], [0.3, 0.6, 0.9]
    first, first_epoch = run("best", falling)
    last, last_epoch = run("last", falling)
    final, final_epoch = run("best", rising)
    assert (first_epoch, last_epoch, final_epoch) == (1, 3, 3)
    assert last == final
    assert last != first


@pytest.fixture
def params(tmp_path):
    values = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    values["train"].update({"epochs": 2, "channels": [4], "embedding_dim": 4, "batch_size": 4, "pitch_shift": 2})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def stored_features_params(path, **features) -> None:
    with h5py.File(path, "r+") as table:
        table.attrs["params"] = json.dumps({"features": features})


@pytest.mark.parametrize("kind", ["logmel", "mfcc", None])
def test_pitch_shift_on_features_without_a_pitch_axis_stops_train(tmp_path, params, capsys, kind):
    write_features(tmp_path / "features.h5", splits_of(4, 2))
    if kind:
        stored_features_params(tmp_path / "features.h5", kind=kind, bins_per_octave=12, floor_db=-100.0)
    assert TRAIN.main(arguments(tmp_path, params)) == 2
    assert capsys.readouterr().err == (
        f"train: {params}: train.pitch_shift must be 0 for features of kind {kind or 'unknown'} "
        f"({tmp_path / 'features.h5'}): transposing needs features.kind cqt or chroma, got 2\n")
    assert not (tmp_path / "model.pt").exists()


def test_the_train_stage_weighs_the_tracks_of_its_table(tmp_path, params, monkeypatch):
    """train.track_balance reads the table's track column: on uneven tracks the model differs from one
    trained without it (the same params giving the same bytes is test_each_lever_changes_the_model...)."""
    write_features(tmp_path / "features.h5", splits_of(8, 4))
    with h5py.File(tmp_path / "features.h5", "r+") as table:
        tracks, labels = table["track"][:].astype(object), table["label"][:]
        tracks[:12] = np.where(labels[:12] == 0, b"t000", b"t001")  # the first three train tracks of each class
        # merged into one long one
        del table["track"]
        table.create_dataset("track", data=tracks, dtype=h5py.string_dtype())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    bytes_of = {}
    for balance in (0.0, 1.0):
        values = yaml.safe_load(params.read_text())
        values["train"].update({"pitch_shift": 0, "track_balance": balance})
        params.write_text(yaml.safe_dump(values))
        assert TRAIN.main(arguments(tmp_path, params)) == 0
        bytes_of[balance] = (tmp_path / "model.pt").read_bytes()
    assert bytes_of[1.0] != bytes_of[0.0]


def test_pitch_shift_trains_on_cqt_features_deterministically(tmp_path, params, monkeypatch):
    write_features(tmp_path / "features.h5", splits_of(8, 4), bands=24)
    stored_features_params(tmp_path / "features.h5", kind="cqt", bins_per_octave=24, floor_db=-100.0)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    assert TRAIN.main(arguments(tmp_path, params)) == 0
    first = (tmp_path / "model.pt").read_bytes()
    assert TRAIN.main(arguments(tmp_path, params)) == 0
    assert (tmp_path / "model.pt").read_bytes() == first


@pytest.mark.parametrize("kind, bands", [("cqt", 84), ("chroma", 12)])
def test_predict_with_a_pitch_feature_checkpoint(tmp_path, capsys, kind, bands):
    from musicid.__main__ import main
    from musicid.novelty import Mahalanobis
    from musicid.params import as_dict
    from musicid.training import save_checkpoint

    params = {name: as_dict(section_params(name)) for name in ("render", "clip")}
    params["render"]["soundfonts"] = [str(SOUNDFONT)]
    params["features"] = as_dict(section_params("features", kind=kind, fmin=32.703, n_bins=84, bins_per_octave=12))
    torch.manual_seed(0)
    config = ModelConfig(n_bands=bands, n_classes=2, channels=[4], embedding_dim=4, dropout=0.0)
    embeddings = np.random.default_rng(0).standard_normal((20, 4))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    save_checkpoint(tmp_path / "model.pt", SpectrogramCNN(config), ["bach", "palestrina"],
                    np.zeros(bands, np.float32), np.ones(bands, np.float32), params,
                    novelty=Mahalanobis.fit(embeddings, np.arange(20) % 2),
                    extra={"novelty_reference": 1e9, "novelty_reference_tracks": 24})
    write_wav(tmp_path / "tune.wav", sine(440.0, 9.0, 22050, 0.3), 22050)
    assert main(["predict", str(tmp_path / "tune.wav"), "--model", str(tmp_path / "model.pt"), "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["files"]
    assert entry["error"] is None and entry["clips"] == 2
    assert sorted(label["label"] for label in entry["labels"]) == ["bach", "palestrina"]


def test_mixup_mixes_the_symbolic_input_with_the_same_partners():
    import torch

    from musicid.training import mixup

    x = torch.arange(8, dtype=torch.float32).reshape(4, 2)
    symbolic = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    y = torch.tensor([0, 1, 0, 1])
    mixed, partner_y, share, mixed_symbolic = mixup(x, y, 0.4, torch.Generator().manual_seed(0), symbolic)
    # Recover each row's partner from x (rows of x are distinct) and check symbolic used the same one.
    for row in range(4):
        weights = (mixed[row] - share * x[row]) / (1 - share)
        match = [j for j in range(4) if torch.allclose(weights, x[j], atol=1e-5)]
        assert len(match) == 1 and partner_y[row] == y[match[0]]
        assert torch.allclose(mixed_symbolic[row], share * symbolic[row] + (1 - share) * symbolic[match[0]])
    assert mixup(x, y, 0.0, torch.Generator(), symbolic)[3] is symbolic

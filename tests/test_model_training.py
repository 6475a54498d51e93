import numpy as np
import torch

from musicid.model import ModelConfig, SpectrogramCNN
from musicid.training import load_checkpoint, normalise, predict_proba, save_checkpoint, train_model


def toy_data(n_per_class: int, seed: int):
    """Two classes of 8 x 16 'spectrograms': energy in the low or in the high bands."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, size=(2 * n_per_class, 8, 16)).astype(np.float32)
    y = np.repeat([0, 1], n_per_class).astype(np.int64)
    x[y == 0, :4] += 2.0
    x[y == 1, 4:] += 2.0
    return x, y


CONFIG = ModelConfig(n_bands=8, n_classes=2, channels=[4, 8], embedding_dim=8, dropout=0.0)


def test_shapes_and_unit_embeddings():
    model = SpectrogramCNN(ModelConfig(n_bands=64, n_classes=4, channels=[4, 8, 8], embedding_dim=16))
    x = torch.randn(3, 64, 101)
    assert model(x).shape == (3, 4)
    embedding = model.embed(x)
    assert embedding.shape == (3, 16)
    assert torch.allclose(embedding.norm(dim=1), torch.ones(3), atol=1e-5)


def test_training_learns_an_easy_task_and_is_deterministic():
    train_x, train_y = toy_data(32, 0)
    val_x, val_y = toy_data(16, 1)
    runs = [train_model(train_x, train_y, val_x, val_y, CONFIG, epochs=4, batch_size=8, lr=0.01,
                        weight_decay=0.0, seed=3) for _ in range(2)]
    (model, log, best_epoch), (model2, log2, _) = runs
    assert len(log) == 4 and 1 <= best_epoch <= 4
    assert log[best_epoch - 1].val_accuracy >= 0.9
    assert [e.train_loss for e in log] == [e.train_loss for e in log2]
    for (name, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert torch.equal(a, b), name


def test_checkpoint_round_trip(tmp_path):
    train_x, train_y = toy_data(8, 0)
    model, _, _ = train_model(train_x, train_y, train_x, train_y, CONFIG, epochs=1, batch_size=8,
                              lr=0.01, weight_decay=0.0, seed=0)
    mean, std = np.zeros(8, np.float32), np.ones(8, np.float32)
    save_checkpoint(tmp_path / "m.pt", model, ["low", "high"], mean, std, {"features": {"n_mels": 8}})
    first = (tmp_path / "m.pt").read_bytes()
    save_checkpoint(tmp_path / "m.pt", model, ["low", "high"], mean, std, {"features": {"n_mels": 8}})
    assert (tmp_path / "m.pt").read_bytes() == first
    loaded, checkpoint = load_checkpoint(tmp_path / "m.pt")
    assert checkpoint["label_names"] == ["low", "high"]
    assert checkpoint["params"] == {"features": {"n_mels": 8}}
    device = torch.device("cpu")
    assert np.array_equal(predict_proba(model, train_x, 4, device), predict_proba(loaded, train_x, 4, device))


def test_normalise_per_band():
    x = np.stack([np.full((2, 3), 5.0), np.full((2, 3), 1.0)]).astype(np.float32)  # (2, 2, 3)
    out = normalise(x, np.array([5.0, 1.0], np.float32), np.array([2.0, 0.5], np.float32))
    assert out[0].tolist() == [[0.0] * 3, [8.0] * 3]
    assert out[1].tolist() == [[-2.0] * 3, [0.0] * 3]

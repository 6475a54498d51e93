import os

import numpy as np
import pytest
import torch

from tests.conftest import section_params
from musicid.model import ModelConfig, SpectrogramCNN
from musicid.novelty import Mahalanobis
from musicid.training import (EmptyValidationSplit, balanced_order, batch_hard_triplet_loss, checkpoint_novelty,
                              class_centroids, class_probabilities, embed, load_checkpoint, normalise,
                              predict_proba, save_checkpoint, spec_augment, to_numpy, train_model)


def toy_data(n_per_class: int, seed: int, classes: int = 2):
    """'Spectrograms' of 8 x 16 whose energy sits in a class's own pair of bands."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, size=(classes * n_per_class, 8, 16)).astype(np.float32)
    y = np.repeat(np.arange(classes), n_per_class).astype(np.int64)
    for c in range(classes):
        x[y == c, 2 * c: 2 * c + 2] += 3.0
    return x, y


CONFIG = ModelConfig(n_bands=8, n_classes=2, channels=[4, 8], embedding_dim=8, dropout=0.0)


def schedule(**changes):
    """The project's train params with a short, fast schedule; no SpecAugment unless asked for
    (the toy inputs are only 8 bands high)."""
    return section_params("train", **{**dict(epochs=4, batch_size=8, lr=0.01, weight_decay=0.0, seed=3,
                                             loss="ce", sampler="shuffle", patience=0, freq_mask=0,
                                             time_mask=0, masks=0), **changes})


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
    runs = [train_model(train_x, train_y, val_x, val_y, CONFIG, schedule()) for _ in range(2)]
    (model, log, best_epoch), (model2, log2, _) = runs
    assert len(log) == 4 and 1 <= best_epoch <= 4
    assert log[best_epoch - 1].val_accuracy >= 0.9
    assert [e.train_loss for e in log] == [e.train_loss for e in log2]
    for (name, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("loss,sampler", [("triplet", "balanced"), ("ce+triplet", "balanced"), ("ce", "balanced")])
def test_other_losses_and_sampler_learn(loss, sampler):
    config = ModelConfig(n_bands=8, n_classes=3, channels=[4, 8], embedding_dim=8, dropout=0.0)
    train_x, train_y = toy_data(24, 0, classes=3)
    val_x, val_y = toy_data(12, 1, classes=3)
    model, log, best = train_model(train_x, train_y, val_x, val_y, config,
                                   schedule(loss=loss, sampler=sampler, epochs=5, freq_mask=2, time_mask=3,
                                            track_prior=0.0 if loss == "triplet" else 1.0))
    assert log[best - 1].val_macro_f1 >= 0.9
    assert model.uses_classifier == (loss != "triplet")
    centroids = class_centroids(embed(model, train_x, 16, torch.device("cpu")), train_y, 3)
    probabilities, _ = class_probabilities(model, val_x, centroids, 16, torch.device("cpu"))
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.argmax(1) == val_y).mean() >= 0.9


def test_early_stopping_keeps_the_best_epoch():
    train_x, train_y = toy_data(16, 0)
    _, log, best = train_model(train_x, train_y, train_x, train_y, CONFIG, schedule(epochs=30, patience=2, keep="best"))
    assert len(log) < 30
    assert len(log) - best == 2
    assert log[best - 1].val_macro_f1 == max(entry.val_macro_f1 for entry in log)


def test_batch_hard_triplet_loss_exact():
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    # Anchor 0: hardest positive at sqrt(2), nearest negative at 2 -> relu(sqrt 2 - 2 + 1).
    # Anchor 1: positive sqrt(2), negative sqrt(2) -> 1.  Anchor 2 has no positive.
    expected = ((2 ** 0.5 - 2 + 1) + 1.0) / 2
    assert batch_hard_triplet_loss(embeddings, labels, margin=1.0).item() == pytest.approx(expected, rel=1e-5)
    assert batch_hard_triplet_loss(embeddings, torch.tensor([0, 1, 2]), 1.0).item() == 0.0


def test_balanced_order_takes_turns():
    labels = np.array([0] * 6 + [1] * 2)
    order = balanced_order(labels, torch.Generator().manual_seed(0)).numpy()
    assert len(order) == 12
    assert labels[order].tolist() == [0, 1] * 6
    assert sorted(set(order[labels[order] == 1].tolist())) == [6, 7]


def test_spec_augment_masks_and_is_seeded():
    x = torch.ones(4, 10, 20)
    first = spec_augment(x, 3, 5, 1, torch.Generator().manual_seed(1))
    again = spec_augment(x, 3, 5, 1, torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    assert torch.equal(x, torch.ones(4, 10, 20))  # the input is left alone
    zeros = (first == 0)
    # Masked values are whole bands or whole frames of a clip.
    for clip in zeros:
        rows = clip.all(dim=1).sum().item()
        columns = clip.all(dim=0).sum().item()
        assert rows <= 3 and columns <= 5
        assert clip.sum().item() == rows * 20 + columns * 10 - rows * columns
    assert spec_augment(x, 0, 0, 2, torch.Generator()) is x


def test_checkpoint_round_trip(tmp_path):
    train_x, train_y = toy_data(8, 0)
    model, _, _ = train_model(train_x, train_y, train_x, train_y, CONFIG, schedule(epochs=1))
    mean, std = np.zeros(8, np.float32), np.ones(8, np.float32)
    embeddings = embed(model, train_x, 4, torch.device("cpu"))
    centroids = class_centroids(embeddings, train_y, 2)
    novelty = Mahalanobis.fit(embeddings, train_y)
    save_checkpoint(tmp_path / "m.pt", model, ["low", "high"], mean, std, {"features": {"n_mels": 8}},
                    centroids=centroids, novelty=novelty)
    first = (tmp_path / "m.pt").read_bytes()
    save_checkpoint(tmp_path / "m.pt", model, ["low", "high"], mean, std, {"features": {"n_mels": 8}},
                    centroids=centroids, novelty=novelty)
    assert (tmp_path / "m.pt").read_bytes() == first
    loaded, checkpoint = load_checkpoint(tmp_path / "m.pt")
    assert checkpoint["label_names"] == ["low", "high"]
    assert checkpoint["params"] == {"features": {"n_mels": 8}}
    assert np.array_equal(checkpoint["centroids"].numpy(), centroids)
    stored = checkpoint_novelty(checkpoint)
    assert np.array_equal(stored.class_means, novelty.class_means)
    assert np.array_equal(stored.precision, novelty.precision)
    # A checkpoint without the novelty statistics (an older version's) is refused with what to do.
    save_checkpoint(tmp_path / "old.pt", model, ["low", "high"], mean, std, {}, centroids=centroids)
    with pytest.raises(ValueError, match="dvc repro train"):
        checkpoint_novelty(load_checkpoint(tmp_path / "old.pt")[1])
    device = torch.device("cpu")
    assert np.array_equal(predict_proba(model, train_x, 4, device), predict_proba(loaded, train_x, 4, device))


def test_normalise_per_band():
    x = np.stack([np.full((2, 3), 5.0), np.full((2, 3), 1.0)]).astype(np.float32)  # (2, 2, 3)
    out = normalise(x, np.array([5.0, 1.0], np.float32), np.array([2.0, 0.5], np.float32))
    assert out[0].tolist() == [[0.0] * 3, [8.0] * 3]
    assert out[1].tolist() == [[-2.0] * 3, [0.0] * 3]


def test_logits_are_built_in_one_place():
    model = SpectrogramCNN(CONFIG).eval()
    x = torch.randn(3, 8, 16)
    embeddings = model.embed(x)
    assert torch.equal(model(x), model.logits(embeddings))
    assert torch.allclose(model.logits(embeddings), 10.0 * model.classifier(embeddings))
    # A triplet-only model scores classes by cosine similarity to their centroids, at the same scale.
    model.uses_classifier = False
    centroids = torch.nn.functional.normalize(torch.randn(2, 8), dim=1)
    assert torch.allclose(model.logits(embeddings, centroids), 10.0 * embeddings @ centroids.T)
    with pytest.raises(ValueError, match="needs the class centroids"):
        model.logits(embeddings)
    probabilities, _ = class_probabilities(model, x.numpy(), centroids.numpy(), 2, torch.device("cpu"))
    assert np.allclose(probabilities, torch.softmax(10.0 * embeddings @ centroids.T, dim=1).detach().numpy(),
                       atol=1e-6)


def test_an_empty_validation_split_is_refused():
    train_x, train_y = toy_data(8, 0)
    with pytest.raises(EmptyValidationSplit, match=r"set split\.val > 0"):
        train_model(train_x, train_y, train_x[:0], train_y[:0], CONFIG, schedule(epochs=1))


class OnFakeGpu(torch.Tensor):
    """A CPU tensor that refuses ``.numpy()`` as a CUDA tensor does, until ``.cpu()`` brings it back."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.numpy:
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first.")
        result = super().__torch_function__(func, types, args, kwargs or {})
        if func is torch.Tensor.cpu:
            with torch._C.DisableTorchFunctionSubclass():
                return result.as_subclass(torch.Tensor)
        return result


def test_model_outputs_on_a_gpu_come_back_to_numpy(monkeypatch):
    model = SpectrogramCNN(CONFIG).eval()
    with pytest.raises(TypeError, match="cuda"):
        model.embed(torch.zeros(1, 8, 16)).as_subclass(OnFakeGpu).numpy()  # the fake refuses as CUDA does
    plain_embed, plain_logits = model.embed, model.logits
    monkeypatch.setattr(model, "embed", lambda x: plain_embed(x).as_subclass(OnFakeGpu))
    monkeypatch.setattr(model, "logits", lambda e, c=None: plain_logits(e, c).as_subclass(OnFakeGpu))
    x, _ = toy_data(3, 0)
    device = torch.device("cpu")
    assert embed(model, x, 4, device).shape == (6, 8)
    assert predict_proba(model, x, 4, device).shape == (6, 2)
    probabilities, embeddings = class_probabilities(model, x, np.eye(2, 8, dtype=np.float32), 4, device)
    assert probabilities.shape == (6, 2) and embeddings.shape == (6, 8)
    assert to_numpy(torch.ones(2).as_subclass(OnFakeGpu)).tolist() == [1.0, 1.0]


def test_a_checkpoint_loads_its_arrays_to_the_cpu_and_only_the_model_to_the_device(tmp_path):
    train_x, train_y = toy_data(8, 0)
    model = SpectrogramCNN(CONFIG)
    embeddings = embed(model, train_x, 4, torch.device("cpu"))
    save_checkpoint(tmp_path / "m.pt", model, ["low", "high"], np.zeros(8, np.float32), np.ones(8, np.float32), {},
                    centroids=class_centroids(embeddings, train_y, 2), novelty=Mahalanobis.fit(embeddings, train_y))
    # "meta" stands for any device NumPy cannot read (a GPU): the model goes there, the arrays do not.
    loaded, checkpoint = load_checkpoint(tmp_path / "m.pt", torch.device("meta"))
    assert {parameter.device.type for parameter in loaded.parameters()} == {"meta"}
    tensors = {key: value for key, value in checkpoint.items() if isinstance(value, torch.Tensor)}
    assert sorted(tensors) == ["band_mean", "band_std", "centroids", "novelty_class_means", "novelty_precision"]
    assert {value.device.type for value in tensors.values()} == {"cpu"}
    assert checkpoint_novelty(checkpoint).class_means.shape == (2, 8)


def test_the_checkpoint_names_its_novelty_score(tmp_path):
    from musicid.novelty import Cosine, cosine_scores

    train_x, train_y = toy_data(8, 0)
    model = SpectrogramCNN(CONFIG)
    embeddings = embed(model, train_x, 4, torch.device("cpu"))
    centroids = class_centroids(embeddings, train_y, 2)
    tracks = np.array([f"t{i % 3}" for i in range(len(embeddings))])
    for extra, kind in [({}, Mahalanobis), ({"novelty_score": "mahalanobis"}, Mahalanobis),
                        ({"novelty_score": "cosine"}, Cosine)]:
        save_checkpoint(tmp_path / "m.pt", model, ["low", "high"], np.zeros(8, np.float32), np.ones(8, np.float32),
                        {}, centroids=centroids, novelty=Mahalanobis.fit(embeddings, train_y), extra=extra)
        _, checkpoint = load_checkpoint(tmp_path / "m.pt", torch.device("cpu"))
        assert type(checkpoint_novelty(checkpoint)) is kind  # none named: written before the choice existed
        assert type(checkpoint_novelty(checkpoint, "cosine")) is Cosine
    names, scores = checkpoint_novelty(checkpoint).track_scores(embeddings, tracks)
    expected_names, expected = cosine_scores(embeddings, tracks, centroids)
    assert names.tolist() == expected_names.tolist() and np.allclose(scores, expected)


def test_numpy_conversions_go_through_to_numpy():
    """``.numpy()`` fails on GPU tensors; every conversion in the model code goes through ``to_numpy``."""
    import re

    from tests.conftest import PROJECT_ROOT

    for name in ("musicid/training.py", "musicid/predict.py", "musicid/novelty.py", "musicid/metrics.py",
                 "stages/train.py", "stages/evaluate.py"):
        lines = (PROJECT_ROOT / name).read_text().splitlines()
        calls = [line.strip() for line in lines if re.search(r"\.numpy\(\)", line)]
        assert calls == (["return tensor.detach().cpu().numpy()"] if name == "musicid/training.py" else []), name


def test_cublas_workspace_is_set_for_deterministic_gpu_work(monkeypatch):
    from musicid.training import seed_everything

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    seed_everything(0)
    import os
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


@pytest.mark.parametrize("frozen", ["weight", "input"])
def test_the_thread_invariant_convolution_gives_pytorchs_gradients(frozen, monkeypatch):
    from musicid.model import ThreadInvariantConv3x3

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 9, generator=generator, dtype=torch.float64, requires_grad=frozen == "weight")
    weight = torch.randn(5, 3, 3, 3, generator=generator, dtype=torch.float64, requires_grad=frozen == "input")
    assert torch.autograd.gradcheck(ThreadInvariantConv3x3.apply, (x, weight))
    if frozen == "weight":  # its gradient, the costly one on one thread, is not even computed
        monkeypatch.setattr(torch.nn.grad, "conv2d_weight", lambda *args, **kwargs: pytest.fail("computed"))
    ThreadInvariantConv3x3.apply(x, weight).square().sum().backward()
    reference_x, reference_weight = x.detach().clone().requires_grad_(x.requires_grad), \
        weight.detach().clone().requires_grad_(weight.requires_grad)
    torch.nn.functional.conv2d(reference_x, reference_weight, padding=1).square().sum().backward()
    # A frozen tensor gets no gradient (none is computed); the other one gets PyTorch's.
    for ours, reference in ((x, reference_x), (weight, reference_weight)):
        assert (ours.grad is None) == (reference.grad is None) == (not ours.requires_grad)
        if ours.grad is not None:
            torch.testing.assert_close(ours.grad, reference.grad)


@pytest.mark.parametrize("shape", [(3, 2, 9, 11), (2, 3, 8, 6), (1, 1, 1, 5)])
def test_a_conv_block_gives_the_values_and_gradients_of_relu_then_pytorchs_pooling(shape):
    """Pooling before the ReLU, through the channels-last kernel, must change no value and no gradient,
    odd rows and columns (ceil mode) and a window whose maximum is negative included, bit for bit."""
    from musicid.model import MaxPool2x2

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=generator)
    x[0, 0, 0, :2] = -1.0  # part of one window negative: only its positive values may get a gradient
    x[-1, -1] = torch.randint(0, 2, x.shape[2:], generator=generator).float()  # ties, as in a piano roll
    ours, reference = x.clone().requires_grad_(), x.clone().requires_grad_()
    upstream = torch.randn(*shape[:2], -(-shape[2] // 2), -(-shape[3] // 2), generator=generator)
    pooled = torch.relu(MaxPool2x2.apply(ours))
    expected = torch.nn.functional.max_pool2d(torch.relu(reference), kernel_size=2, ceil_mode=True)
    assert pooled.is_contiguous() and torch.equal(pooled, expected)
    (pooled * upstream).sum().backward()
    (expected * upstream).sum().backward()
    assert ours.grad.is_contiguous() and torch.equal(ours.grad, reference.grad)
    # No ties here (gradcheck's finite differences split a tie's gradient).
    assert torch.autograd.gradcheck(MaxPool2x2.apply, (torch.randn(*shape, generator=generator, dtype=torch.float64,
                                                                   requires_grad=True),))


@pytest.mark.parametrize("rows", [1, 3, 4, 10, 32])
def test_the_weight_gradients_parts_add_up_to_pytorchs_and_do_not_depend_on_the_thread_count(rows):
    """Each part on one thread, the parts on as many threads as there are (a batch of fewer rows than parts
    leaves some empty): their sum is the convolution's weight gradient, the same bytes on 1, 2 or 3 threads."""
    from musicid import model
    from musicid.model import WEIGHT_GRAD_PARTS, part_weight_grads

    generator = torch.Generator().manual_seed(2)
    # Big enough for oneDNN to share one part's sum among threads, were a worker to have more than one.
    x = torch.randn(rows, 1, 64, 64, generator=generator)  # as the first block's
    weight = torch.randn(16, 1, 3, 3, generator=generator)
    grad = torch.randn(rows, 16, 64, 64, generator=generator)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            parts = part_weight_grads(x, weight.shape, grad)
            assert torch.get_num_threads() == count  # set back once the parts are done
            if count > 1 and rows > 1:  # and the worker thread that took a part runs one thread
                assert model._workers.submit(torch.get_num_threads).result() == 1
            results.append(parts)
    finally:
        torch.set_num_threads(threads)
    assert len(results[0]) == min(rows, WEIGHT_GRAD_PARTS)
    for parts in results[1:]:
        assert [part.numpy().tobytes() for part in parts] == [part.numpy().tobytes() for part in results[0]]
    x, weight, grad = x.double(), weight.double(), grad.double()  # float32 sums in another order differ a little
    torch.testing.assert_close(sum(part_weight_grads(x, weight.shape, grad)),
                               torch.nn.grad.conv2d_weight(x, weight.shape, grad, padding=1))


def test_an_empty_batch_has_a_zero_weight_gradient():
    from musicid.model import part_weight_grads

    parts = part_weight_grads(torch.zeros(0, 3, 4, 4), torch.Size([5, 3, 3, 3]), torch.zeros(0, 5, 4, 4))
    assert len(parts) == 1 and parts[0].shape == (5, 3, 3, 3) and not parts[0].any()


def test_a_forked_child_computes_the_parts_with_workers_of_its_own():
    """A child forked after training has the parent's pool but none of its threads: it must not wait on them."""
    import multiprocessing

    from musicid.model import part_weight_grads

    def parts():
        generator = torch.Generator().manual_seed(3)
        x, grad = torch.randn(8, 2, 6, 6, generator=generator), torch.randn(8, 4, 6, 6, generator=generator)
        return part_weight_grads(x, torch.Size([4, 2, 3, 3]), grad)

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        expected = parts()  # the parent's pool exists now

        def child():
            torch.set_num_threads(2)
            os._exit(0 if all(torch.equal(a, b) for a, b in zip(parts(), expected)) else 1)

        process = multiprocessing.get_context("fork").Process(target=child)
        process.start()
        process.join(timeout=60)
        hung = process.is_alive()
        if hung:
            process.kill()
        assert not hung and process.exitcode == 0
    finally:
        torch.set_num_threads(threads)

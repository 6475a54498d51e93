"""A compact CNN for (n_bands x n_frames) spectrogram inputs, optionally fused with symbolic features."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from musicid.symbolic_layout import roll_planes_of


@dataclass
class ModelConfig:
    n_bands: int
    n_classes: int
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    embedding_dim: int = 128
    dropout: float = 0.2
    # Symbolic features per clip (musicid.symbolic); 0: audio only. The default lets the
    # configs of checkpoints written before the field existed load as audio-only models.
    symbolic_dim: int = 0
    # [pitches, frames]: the last pitches * frames symbolic features are a piano roll
    # (features.symbolic_roll), read by a RollBranch; [planes, pitches, frames]: that many planes of it (the
    # roll, then features.symbolic_onsets' onsets), read as channels; []: none. Left out of to_dict when empty, so
    # checkpoints without one keep their bytes.
    roll_shape: list[int] = field(default_factory=list)
    # The roll branch's conv widths and the frames merged (max) before them; left out with roll_shape,
    # and a checkpoint without them has the branch these defaults build.
    roll_channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    roll_pool: int = 1

    def to_dict(self) -> dict:
        config = asdict(self)
        if not self.roll_shape:
            for key in ("roll_shape", "roll_channels", "roll_pool"):
                del config[key]
        return config


@contextlib.contextmanager
def onednn(enabled: bool) -> Iterator[None]:
    """Let PyTorch's CPU convolutions use oneDNN (MKL-DNN) inside the block, or not."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


# The batch's parts whose convolution weight gradients are each summed on one thread, then added in
# this order: a constant, so that no thread count changes the rounding.  Up to this many threads share
# the pass; on 2 cores the weight gradient alone took as long in 4 parts as in 2.
WEIGHT_GRAD_PARTS = 4


def _one_thread() -> None:
    """A weight-gradient worker's start: PyTorch's threads of this thread (OpenMP's and MKL's are per
    thread) set to one.  ``torch.set_num_threads`` also sets the count new threads start with, which
    ``part_weight_grads`` sets back once its workers are done."""
    torch.get_num_threads()  # takes the process's count first, which would otherwise override the 1 below
    torch.set_num_threads(1)


_workers: concurrent.futures.ThreadPoolExecutor | None = None


def _start_workers() -> concurrent.futures.ThreadPoolExecutor:
    """The pool of ``WEIGHT_GRAD_PARTS - 1`` one-thread workers, every one started before this returns, so
    that no worker starts later (its start would set the count new threads get back to one)."""
    workers = concurrent.futures.ThreadPoolExecutor(WEIGHT_GRAD_PARTS - 1, "musicid-weight-grad",
                                                    initializer=_one_thread)
    started = threading.Barrier(WEIGHT_GRAD_PARTS - 1)
    for future in [workers.submit(started.wait) for _ in range(WEIGHT_GRAD_PARTS - 1)]:
        future.result()
    return workers


def _forget_workers() -> None:
    """In a forked child: the pool's threads are the parent's, so a new one is started when needed."""
    global _workers
    _workers = None


os.register_at_fork(after_in_child=_forget_workers)


def _weight_grads(x: tuple[torch.Tensor, ...], shape: torch.Size, grad: tuple[torch.Tensor, ...],
                  ) -> list[torch.Tensor]:
    """oneDNN's weight gradient of each part, on the calling thread."""
    with torch.no_grad():
        return [torch.nn.grad.conv2d_weight(a, shape, b, padding=1) for a, b in zip(x, grad)]


def part_weight_grads(x: torch.Tensor, shape: torch.Size, grad: torch.Tensor) -> list[torch.Tensor]:
    """The 3x3 convolution's weight gradient of each of the ``WEIGHT_GRAD_PARTS`` parts of the batch, each
    computed on one thread: part i on thread i modulo min(parts, threads), this thread being the first."""
    global _workers
    if not len(x):
        return [grad.new_zeros(shape)]
    xs, grads = x.tensor_split(WEIGHT_GRAD_PARTS), grad.tensor_split(WEIGHT_GRAD_PARTS)
    threads = torch.get_num_threads()
    filled = [i for i in range(WEIGHT_GRAD_PARTS) if len(xs[i])]  # a batch of fewer rows leaves parts empty
    lanes = max(1, min(len(filled), threads))
    groups = [filled[lane::lanes] for lane in range(lanes)]
    try:
        if lanes > 1 and _workers is None:
            _workers = _start_workers()
        futures = [_workers.submit(_weight_grads, tuple(xs[i] for i in group), shape,
                                   tuple(grads[i] for i in group)) for group in groups[1:]]
        torch.set_num_threads(1)
        results = [_weight_grads(tuple(xs[i] for i in groups[0]), shape, tuple(grads[i] for i in groups[0]))]
        results += [future.result() for future in futures]
    finally:
        torch.set_num_threads(threads)  # after the workers: their start sets the count for new threads
    parts = {}
    for group, values in zip(groups, results):
        parts.update(zip(group, values))
    return [parts[i] for i in filled]


class ThreadInvariantConv3x3(torch.autograd.Function):
    """A 3x3, stride-1, padding-1 convolution without bias whose gradients do not depend on the thread count.

    oneDNN's weight gradient splits its sum over the batch among the intra-op
    threads, so its rounding, and with it every trained weight, would depend
    on ``torch.get_num_threads()`` (deterministic mode does not cover that).
    Here the batch is cut into ``WEIGHT_GRAD_PARTS`` fixed parts, each part's
    gradient is computed by oneDNN on one thread, the threads working on
    different parts at once, and the parts are added in their order; the
    forward pass and the input gradient, which compute each output value on
    one thread, use all threads.  PyTorch's own kernels train 1.5x to 1.8x
    slower and, with PyTorch 2.13 on an Intel Xeon, give other weights on one
    thread than on two as well (``benchmarks/train_speed.py``).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        with onednn(True):
            return F.conv2d(x, weight, padding=1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = None
        with onednn(True):
            if ctx.needs_input_grad[0]:
                grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad, padding=1)
            if ctx.needs_input_grad[1] and x.device.type != "cpu":  # the parts are for CPU threads
                grad_weight = torch.nn.grad.conv2d_weight(x, weight.shape, grad, padding=1)
            elif ctx.needs_input_grad[1]:  # not for a frozen weight
                parts = part_weight_grads(x, weight.shape, grad)
                grad_weight = parts[0]
                for part in parts[1:]:
                    grad_weight = grad_weight + part
        return grad_x, grad_weight


class MaxPool2x2(torch.autograd.Function):
    """2x2 max pooling, a last odd row or column pooled on its own (``ceil_mode``).

    The maxima come from PyTorch's channels-last CPU kernel, which with the
    copy into that layout is several times faster than its kernel for the
    (B, C, H, W) layout (training 1.14x to 1.19x faster in
    ``benchmarks/train_speed.py``), and the gradient from the
    latter's backward, so that every other layer keeps its layout and kernels:
    the values are those of ``F.max_pool2d`` (a maximum is exact, and each
    input gets the gradient of at most one output).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        layout = torch.channels_last if x.device.type == "cpu" else torch.contiguous_format  # (a GPU: its own)
        pooled, indices = F.max_pool2d(x.contiguous(memory_format=layout), kernel_size=2,
                                       ceil_mode=True, return_indices=True)
        indices = indices.contiguous()
        ctx.save_for_backward(x, indices)
        return pooled.contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, [2, 2], [2, 2], [0, 0],
                                                               [1, 1], True, indices)


class ConvBlock(nn.Module):
    """3x3 conv, batch norm, 2x2 max pooling, ReLU (the same as ReLU before the pooling, on a quarter of the
    values: ReLU keeps the order of values, and both pass a gradient only to a window's positive maximum)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(MaxPool2x2.apply(self.norm(ThreadInvariantConv3x3.apply(x, self.conv.weight))))


SYMBOLIC_WIDTH = 64  # width of the symbolic branch's hidden layer and output (and of the roll branch's)


class LayerNorm(nn.Module):
    """``nn.LayerNorm`` over the last dimension with its scale and shift applied outside the fused kernel.

    PyTorch's CPU layer-norm backward sums the scale and shift gradients over
    the batch in per-thread parts, so they (and every weight trained after
    them) would depend on ``torch.get_num_threads()``; the gradients of a
    plain product and sum do not.  Same parameters and state-dict keys
    (``weight``, ``bias``) as ``nn.LayerNorm``.
    """

    def __init__(self, width: int, eps: float = 1e-5):
        super().__init__()
        self.width, self.eps = width, eps
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.width,), eps=self.eps) * self.weight + self.bias


class SymbolicBranch(nn.Module):
    """A small MLP on a clip's normalised symbolic features and their presence flag: (B, D + 1) -> (B, 64)."""

    def __init__(self, symbolic_dim: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(symbolic_dim + 1, SYMBOLIC_WIDTH), LayerNorm(SYMBOLIC_WIDTH), nn.ReLU(),
            nn.Linear(SYMBOLIC_WIDTH, SYMBOLIC_WIDTH), LayerNorm(SYMBOLIC_WIDTH), nn.ReLU())

    def forward(self, symbolic: torch.Tensor) -> torch.Tensor:
        return self.layers(symbolic)


class RollBranch(nn.Module):
    """Conv blocks on a clip's piano roll (B, [planes,] pitches, frames), global mean and max pooling, then a
    linear layer: (B, planes * pitches * frames) -> (B, 64). Convolution along pitch sees a figure the same in every
    register and key; along time, what follows what. ``pool`` > 1 first merges that many frames (a pitch
    sounds in the merged frame if it sounds in any), which with narrower ``channels`` makes the branch
    cheaper: its first block is most of its cost."""

    def __init__(self, shape: list[int], channels: list[int] | tuple[int, ...] = (16, 32, 64), pool: int = 1):
        super().__init__()
        # [pitches, frames] is one plane; [planes, pitches, frames] several, read as input channels.
        self.shape = (roll_planes_of(shape), *shape[-2:])
        self.pool = pool
        widths = [self.shape[0], *channels]
        self.blocks = nn.Sequential(*[ConvBlock(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.out = nn.Sequential(nn.Linear(2 * channels[-1], SYMBOLIC_WIDTH), LayerNorm(SYMBOLIC_WIDTH), nn.ReLU())

    def forward(self, roll: torch.Tensor) -> torch.Tensor:
        roll = roll.reshape(len(roll), *self.shape)
        if self.pool > 1:
            roll = F.max_pool2d(roll, kernel_size=(1, self.pool), ceil_mode=True)
        h = self.blocks(roll)
        return self.out(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))


class SpectrogramCNN(nn.Module):
    """Conv blocks -> global mean+max pooling [+ symbolic branch] -> L2-normalised embedding -> class logits.

    With ``config.symbolic_dim`` > 0 the pooled audio vector is concatenated with
    the symbolic branch's output before ``project``, so the embedding, the
    classifier, the centroids and the novelty score all see both; with
    ``config.roll_shape`` also with the roll branch's, which reads the piano
    roll at the end of the symbolic features.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        widths = [1, *config.channels]
        self.blocks = nn.Sequential(*[ConvBlock(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.dropout = nn.Dropout(config.dropout)
        # With a piano roll the MLP reads the features before it (and the presence flag), RollBranch the roll.
        self.roll = RollBranch(config.roll_shape, config.roll_channels, config.roll_pool) \
            if config.symbolic_dim and config.roll_shape else None
        plain = config.symbolic_dim - (int(np.prod(config.roll_shape)) if self.roll is not None else 0)
        self.symbolic = SymbolicBranch(plain) if config.symbolic_dim else None
        fused = 2 * config.channels[-1] + (SYMBOLIC_WIDTH if config.symbolic_dim else 0) + \
            (SYMBOLIC_WIDTH if self.roll is not None else 0)
        self.project = nn.Linear(fused, config.embedding_dim)
        # The classifier sees unit-length embeddings; a fixed scale keeps its logits
        # in a range where softmax can become confident.
        self.classifier = nn.Linear(config.embedding_dim, config.n_classes)
        self.scale = 10.0
        # False for a model trained with the triplet loss alone: its classifier is
        # untrained and classes are told by the nearest class centroid instead.
        self.uses_classifier = True

    def embed(self, x: torch.Tensor, symbolic: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, n_bands, T) normalised features -> (B, embedding_dim), unit length.

        symbolic: (B, symbolic_dim + 1), the normalised symbolic features (zeros
        where absent) then the presence flag (1 or 0), as ``symbolic_input``
        builds it; None means absent for every clip (an audio file). An
        audio-only model ignores it.
        """
        h = self.blocks(x.unsqueeze(1))  # (B, C, n_bands / 2^k, T / 2^k)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # (B, 2C)
        if self.symbolic is not None:
            if symbolic is None:
                symbolic = x.new_zeros((len(x), self.config.symbolic_dim + 1))
            if self.roll is None:
                pooled = torch.cat([pooled, self.symbolic(symbolic)], dim=1)  # (B, 2C + 64)
            else:
                plain = self.config.symbolic_dim - int(np.prod(self.config.roll_shape))
                head = torch.cat([symbolic[:, :plain], symbolic[:, -1:]], dim=1)
                pooled = torch.cat([pooled, self.symbolic(head), self.roll(symbolic[:, plain:-1])], dim=1)
        return F.normalize(self.project(self.dropout(pooled)), dim=1)

    def logits(self, embeddings: torch.Tensor, centroids: torch.Tensor | None = None) -> torch.Tensor:
        """Unit-length embeddings (B, embedding_dim) -> class logits (B, n_classes).

        The classifier's logits, or, for a model without a trained classifier
        (``uses_classifier`` false), the cosine similarity to each class's
        training centroid (``centroids`` (n_classes, embedding_dim), unit length),
        both times ``scale`` so that the two give softmax outputs of one range.
        """
        if self.uses_classifier:
            return self.scale * self.classifier(embeddings)
        if centroids is None:
            raise ValueError("a model trained without a classifier needs the class centroids for its logits")
        return self.scale * embeddings @ centroids.T

    def forward(self, x: torch.Tensor, centroids: torch.Tensor | None = None,
                symbolic: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, n_bands, T) -> logits (B, n_classes); see ``embed`` and ``logits``."""
        embeddings = self.embed(x) if symbolic is None else self.embed(x, symbolic)
        return self.logits(embeddings, centroids)


def symbolic_input(features: np.ndarray, present: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The symbolic branch's input float32 [N, D + 1]: features float32 [N, D] normalised with
    ``mean``/``std`` float32 [D], zeroed where ``present`` (bool [N]) is False, then the flag."""
    normalised = (features - mean[None, :]) / std[None, :]
    normalised = np.where(present[:, None], normalised, 0.0)
    return np.concatenate([normalised, present[:, None].astype(np.float64)], axis=1).astype(np.float32)

"""A compact CNN for (n_bands x n_frames) spectrogram inputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelConfig:
    n_bands: int
    n_classes: int
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    embedding_dim: int = 128
    dropout: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)


class ConvBlock(nn.Module):
    """3x3 conv, batch norm, ReLU, 2x2 max pooling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.norm(self.conv(x))), kernel_size=2, ceil_mode=True)


class SpectrogramCNN(nn.Module):
    """Conv blocks -> global mean+max pooling -> L2-normalised embedding -> class logits."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        widths = [1, *config.channels]
        self.blocks = nn.Sequential(*[ConvBlock(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.dropout = nn.Dropout(config.dropout)
        self.project = nn.Linear(2 * config.channels[-1], config.embedding_dim)
        # The classifier sees unit-length embeddings; a fixed scale keeps its logits
        # in a range where softmax can become confident.
        self.classifier = nn.Linear(config.embedding_dim, config.n_classes)
        self.scale = 10.0
        # False for a model trained with the triplet loss alone: its classifier is
        # untrained and classes are told by the nearest class centroid instead.
        self.uses_classifier = True

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, n_bands, T) normalised features -> (B, embedding_dim), unit length."""
        h = self.blocks(x.unsqueeze(1))  # (B, C, n_bands / 2^k, T / 2^k)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # (B, 2C)
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

    def forward(self, x: torch.Tensor, centroids: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, n_bands, T) -> logits (B, n_classes); see ``logits``."""
        return self.logits(self.embed(x), centroids)

"""PNG figures for people who do not use DVC's renderer: confusion matrices, embedding maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musicid.io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "musicid"  # no random ids in the output
    return plt


LABEL_WIDTH = 32  # characters of a label a figure shows


def shown_names(names: list[str], width: int = LABEL_WIDTH) -> dict[str, str]:
    """Each label as a figure shows it: a long one keeps its start and end around an ellipsis.

    (A 200-character folder name would otherwise push the axes off the figure.) When two shortened
    labels would read the same, they are shown whole.
    """
    keep = (width - 1) // 2
    shown = {name: name if len(name) <= width else f"{name[:keep]}\u2026{name[-keep:]}" for name in set(names)}
    if len(set(shown.values())) < len(shown):
        return {name: name for name in shown}
    return shown


def save_confusion_png(path: str | Path, matrix: np.ndarray, label_names: list[str], title: str) -> None:
    """matrix int [actual, predicted] -> a labelled heat map with counts."""
    plt = _pyplot()
    shown = shown_names(label_names)
    label_names = [shown[name] for name in label_names]
    size = 1.2 + 0.7 * len(label_names)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    axes.set_yticks(range(len(label_names)), label_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(title)
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, str(count), ha="center", va="center",
                  color="white" if count > matrix.max() / 2 else "black")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)


def pca_2d(points: np.ndarray) -> np.ndarray:
    """float [N, D] -> float64 [N, 2]: projection on the two main axes, signs fixed for determinism."""
    centred = points.astype(np.float64) - points.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    axes = axes[:2]
    axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
    return centred @ axes.T


def save_embedding_png(path: str | Path, embeddings: np.ndarray, labels: list[str], title: str) -> None:
    """A PCA map of embeddings [N, D], one colour per label."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 6))
    if len(embeddings) >= 2:
        points = pca_2d(embeddings)
        shown = shown_names(labels)
        for name in sorted(set(labels)):
            chosen = np.array([label == name for label in labels])
            axes.scatter(points[chosen, 0], points[chosen, 1], s=10, alpha=0.7, label=shown[name])
        axes.legend(loc="best", fontsize="small")
    axes.set_title(title)
    axes.set_xlabel("PC 1")
    axes.set_ylabel("PC 2")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)


def save_training_curves_png(path: str | Path, epochs: list[int], train_loss: list[float],
                             val_macro_f1: list[float], kept_epoch: int) -> None:
    """Training loss and validation macro-F1 by epoch (counted from 1), the kept epoch marked."""
    plt = _pyplot()
    figure, (loss_axes, f1_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, train_loss, marker="o")
    loss_axes.set_ylabel("training loss")
    f1_axes.plot(epochs, val_macro_f1, marker="o", color="tab:green")
    f1_axes.set_ylabel("validation macro-F1 (clips)")
    f1_axes.set_ylim(0, 1)
    for axes in (loss_axes, f1_axes):
        axes.axvline(kept_epoch, color="grey", linestyle="--", label=f"kept: epoch {kept_epoch}")
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
    f1_axes.legend(loc="lower right")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)

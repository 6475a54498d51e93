"""Training loop, checkpoints and batched inference for the spectrogram CNN."""

from __future__ import annotations

import copy
import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from musicid.io import write_bytes_atomic
from musicid.model import ModelConfig, SpectrogramCNN


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch and ask PyTorch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def normalise(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """features float32 [N, n_bands, T]; per-band mean/std float32 [n_bands]."""
    return ((features - mean[None, :, None]) / std[None, :, None]).astype(np.float32)


@torch.no_grad()
def predict_proba(model: SpectrogramCNN, features: np.ndarray, batch_size: int,
                  device: torch.device) -> np.ndarray:
    """Class probabilities float32 [N, n_classes] for normalised features [N, n_bands, T]."""
    model.eval()
    outputs = []
    for start in range(0, len(features), batch_size):
        batch = torch.from_numpy(features[start:start + batch_size]).to(device)
        outputs.append(F.softmax(model(batch), dim=1).cpu().numpy())
    if not outputs:
        return np.zeros((0, model.config.n_classes), dtype=np.float32)
    return np.concatenate(outputs)


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float
    val_macro_f1: float
    lr: float


def train_model(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                config: ModelConfig, epochs: int, batch_size: int, lr: float,
                weight_decay: float, seed: int, progress=lambda items, **_: items,
                ) -> tuple[SpectrogramCNN, list[EpochLog], int]:
    """Train with AdamW and a cosine schedule; keep the epoch with the best val macro-F1.

    train_x/val_x: normalised float32 [N, n_bands, T]; train_y/val_y: int64 [N].
    Returns (best model, per-epoch log, best epoch number).
    """
    from sklearn.metrics import f1_score

    seed_everything(seed)
    device = pick_device()
    model = SpectrogramCNN(config).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, -(-len(train_x) // batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, epochs=epochs,
                                                   steps_per_epoch=steps_per_epoch)
    # Weight classes by inverse frequency so a big class cannot dominate the loss.
    counts = np.bincount(train_y, minlength=config.n_classes).astype(np.float64)
    weights = torch.tensor(counts.sum() / np.maximum(counts, 1) / config.n_classes, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.from_numpy(train_x)
    targets = torch.from_numpy(train_y)
    log: list[EpochLog] = []
    best_state, best_f1, best_epoch = None, -1.0, 0
    for epoch in progress(range(1, epochs + 1), total=epochs, desc="train"):
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        total_loss, correct = 0.0, 0
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            x, y = inputs[index].to(device), targets[index].to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y, weight=weights.to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total_loss += loss.item() * len(index)
            correct += int((logits.argmax(1) == y).sum())
        val_pred = predict_proba(model, val_x, 256, device).argmax(1) if len(val_x) else np.zeros(0)
        val_accuracy = float((val_pred == val_y).mean()) if len(val_y) else 0.0
        val_f1 = float(f1_score(val_y, val_pred, average="macro", labels=range(config.n_classes),
                                zero_division=0)) if len(val_y) else 0.0
        log.append(EpochLog(epoch, total_loss / len(inputs), correct / len(inputs), val_accuracy,
                            val_f1, optimiser.param_groups[0]["lr"]))
        if val_f1 > best_f1:
            best_f1, best_epoch = val_f1, epoch
            best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model, log, best_epoch


def save_checkpoint(path: str | Path, model: SpectrogramCNN, label_names: list[str],
                    band_mean: np.ndarray, band_std: np.ndarray, pipeline_params: dict,
                    extra: dict | None = None) -> None:
    """Write a self-describing checkpoint: weights, model config, labels, feature params, statistics."""
    checkpoint = {
        "format": "musicid-checkpoint-1",
        "model_config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "label_names": list(label_names),
        "band_mean": torch.from_numpy(np.asarray(band_mean, dtype=np.float32)),
        "band_std": torch.from_numpy(np.asarray(band_std, dtype=np.float32)),
        "params": pipeline_params,
        **(extra or {}),
    }
    # torch.save names the archive's top folder after the file it writes to; saving
    # to memory gives the fixed name "archive", so equal checkpoints are equal bytes.
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_checkpoint(path: str | Path, device: torch.device | None = None):
    """Return (model in eval mode, checkpoint dict)."""
    checkpoint = torch.load(path, map_location=device or "cpu", weights_only=True)
    if checkpoint.get("format") != "musicid-checkpoint-1":
        raise ValueError(f"{path} is not a musicid checkpoint")
    model = SpectrogramCNN(ModelConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["state_dict"])
    model.to(device or "cpu").eval()
    return model, checkpoint

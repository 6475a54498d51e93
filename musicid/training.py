"""Training loop, checkpoints and batched inference for the spectrogram CNN."""

from __future__ import annotations

import copy
import io
import os
import pickle
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.deterministic
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from musicid.io import write_bytes_atomic
from musicid.model import ModelConfig, SpectrogramCNN, symbolic_input
from musicid.novelty import Cosine, Mahalanobis
from musicid.track_model import checkpoint_regression, notes_novelty
from musicid.params import TrainParams
from musicid.symbolic_layout import ONSET_CLASS_BLOCK, PITCH_CLASS_BLOCK, PITCH_MEAN, ROLL_FRAMES, ROLL_PITCHES, sounding

# cuBLAS is deterministic only with a fixed workspace; PyTorch's deterministic
# mode raises at the first matrix product on a GPU without this setting.
CUBLAS_WORKSPACE = ":4096:8"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch and ask PyTorch for deterministic kernels.

    Deterministic mode also fills every new tensor's memory with NaN before an
    operation writes it, a debugging aid against reading memory nobody wrote,
    which costs a few percent of training's time at most
    (``benchmarks/nan_fill.py``).  Training reads no such memory (a test
    trains with the filling on and off and compares the checkpoints' bytes;
    one such read would put NaNs in the weights), so it is turned off; the
    kernels stay the deterministic ones.
    """
    if torch.cuda.is_available():
        # Read by cuBLAS when it first starts, so it is set before any GPU work.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = False


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor on any device as a NumPy array (NumPy reads only CPU memory, so GPU tensors come back first)."""
    return tensor.detach().cpu().numpy()


def normalise(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """features float32 [N, n_bands, T]; per-band mean/std float32 [n_bands]."""
    return ((features - mean[None, :, None]) / std[None, :, None]).astype(np.float32)


def _symbolic_batch(symbolic: np.ndarray | None, start: int, stop: int, device) -> dict:
    """Rows start:stop of the symbolic branch's input [N, D + 1] (see ``symbolic_input``) as the keyword
    argument of the model's ``embed``/``forward``; no argument at all for an audio-only call."""
    return {} if symbolic is None else {"symbolic": torch.from_numpy(symbolic[start:stop]).to(device)}


@torch.no_grad()
def predict_proba(model: SpectrogramCNN, features: np.ndarray, batch_size: int,
                  device: torch.device, symbolic: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities float32 [N, n_classes] for normalised features [N, n_bands, T]
    (and the symbolic branch's input float32 [N, D + 1], None: absent)."""
    model.eval()
    outputs = []
    for start in range(0, len(features), batch_size):
        batch = torch.from_numpy(features[start:start + batch_size]).to(device)
        outputs.append(to_numpy(F.softmax(
            model(batch, **_symbolic_batch(symbolic, start, start + batch_size, device)), dim=1)))
    if not outputs:
        return np.zeros((0, model.config.n_classes), dtype=np.float32)
    return np.concatenate(outputs)


@torch.no_grad()
def embed(model: SpectrogramCNN, features: np.ndarray, batch_size: int, device: torch.device,
          symbolic: np.ndarray | None = None) -> np.ndarray:
    """Unit-length embeddings float32 [N, embedding_dim] of normalised features [N, n_bands, T]
    (and the symbolic branch's input float32 [N, D + 1], None: absent)."""
    model.eval()
    outputs = [to_numpy(model.embed(torch.from_numpy(features[start:start + batch_size]).to(device),
                                    **_symbolic_batch(symbolic, start, start + batch_size, device)))
               for start in range(0, len(features), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, model.config.embedding_dim), np.float32)


def class_centroids(embeddings: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Unit-length mean embedding of each class: float32 [n_classes, embedding_dim]."""
    centroids = np.zeros((n_classes, embeddings.shape[1]), dtype=np.float64)
    np.add.at(centroids, labels, embeddings)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    return (centroids / np.maximum(norms, 1e-12)).astype(np.float32)


def batch_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet loss on unit-length embeddings (B, D) with labels (B,).

    For each anchor: its farthest same-label clip and nearest other-label clip
    in the batch; anchors without both are left out.
    """
    distances = torch.cdist(embeddings, embeddings)  # (B, B)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = torch.where(same & ~eye, distances, torch.zeros_like(distances)).amax(dim=1)
    negative = torch.where(~same, distances, torch.full_like(distances, float("inf"))).amin(dim=1)
    valid = (same & ~eye).any(dim=1) & (~same).any(dim=1)
    if not valid.any():
        return embeddings.sum() * 0.0
    return F.relu(positive - negative + margin)[valid].mean()


def spec_augment(x: torch.Tensor, freq_mask: int, time_mask: int, masks: int,
                 generator: torch.Generator) -> torch.Tensor:
    """SpecAugment-style masking of normalised features x (B, n_bands, T): zero random bands and frames.

    Each of ``masks`` masks per clip covers up to ``freq_mask`` bands and
    ``time_mask`` frames (0 turns that kind off); positions come from ``generator``.
    """
    if masks == 0 or (freq_mask == 0 and time_mask == 0):
        return x
    x = x.clone()
    batch, bands, frames = x.shape
    for _ in range(masks):
        for size, length, axis in ((freq_mask, bands, 1), (time_mask, frames, 2)):
            if size == 0:
                continue
            widths = torch.randint(0, size + 1, (batch,), generator=generator)
            starts = (torch.rand(batch, generator=generator) * (length - widths + 1).clamp(min=1)).long()
            positions = torch.arange(length)
            mask = (positions[None, :] >= starts[:, None]) & (positions[None, :] < (starts + widths)[:, None])
            x = x.masked_fill(mask[:, :, None] if axis == 1 else mask[:, None, :], 0.0)
    return x


@dataclass(frozen=True)
class PitchAxis:
    """What transposing normalised constant-Q or chroma features needs to know about their bands."""

    kind: str  # features.kind: "cqt" (bands are constant-Q bins) or "chroma" (12 pitch classes, C first)
    bins_per_octave: int  # features.bins_per_octave: cqt bins per octave (a multiple of 12)
    floor_db: float  # features.floor_db: the dB value of a cqt band with nothing in it
    band_mean: np.ndarray  # float32 [n_bands]: featurize's normalisation statistics
    band_std: np.ndarray  # float32 [n_bands]

    @classmethod
    def of(cls, features: dict, band_mean: np.ndarray, band_std: np.ndarray) -> PitchAxis:
        """From the ``features`` params section (as a dict, as features.h5 stores it) and the band statistics."""
        return cls(features["kind"], int(features["bins_per_octave"]), float(features["floor_db"]),
                   np.asarray(band_mean, dtype=np.float32), np.asarray(band_std, dtype=np.float32))


def pitch_shift(x: torch.Tensor, max_semitones: int, axis: PitchAxis | None,
                generator: torch.Generator) -> torch.Tensor:
    """Transpose each clip of normalised features x (B, n_bands, T) by a random -k..k semitones.

    The shift (uniform whole semitones, from ``generator``) is applied to the
    un-normalised values, which are then normalised again, since each band has
    its own statistics.  A cqt clip moves by ``bins_per_octave / 12`` bins a
    semitone and the bands it leaves empty get ``floor_db`` (nothing wraps
    around); a chroma clip rolls round its 12 pitch classes.
    """
    if max_semitones == 0:
        return x
    if axis is None or axis.kind not in ("cqt", "chroma"):
        raise ValueError("pitch shifting needs constant-Q or chroma features (features.kind cqt or chroma)")
    batch, bands, _ = x.shape
    semitones = torch.randint(-max_semitones, max_semitones + 1, (batch,), generator=generator)
    mean = torch.from_numpy(axis.band_mean).to(x.device)[None, :, None]
    std = torch.from_numpy(axis.band_std).to(x.device)[None, :, None]
    raw = x * std + mean
    steps = semitones if axis.kind == "chroma" else semitones * (axis.bins_per_octave // 12)
    source = torch.arange(bands)[None, :] - steps[:, None]  # (B, n_bands): the band each band takes its values from
    if axis.kind == "chroma":
        source = source % bands
    inside = ((source >= 0) & (source < bands)).to(x.device)
    shifted = torch.gather(raw, 1, source.clamp(0, bands - 1).to(x.device)[:, :, None].expand_as(raw))
    shifted = torch.where(inside[:, :, None], shifted, torch.full_like(shifted, axis.floor_db))
    return (shifted - mean) / std


@dataclass
class SymbolicAxis:
    """What train.symbolic_transpose needs to know of the symbolic branch's input (``symbolic_input``)."""

    mean: np.ndarray  # float32 [D]: featurize's normalisation statistics
    std: np.ndarray  # float32 [D]
    roll: bool  # the last planes x ROLL_PITCHES x ROLL_FRAMES features are a piano roll (features.symbolic_roll)
    key_relative: bool  # features.symbolic_key relative: the pitch-class blocks count from each source's tonic
    planes: int = 1  # with roll: how many planes end the features (2: the roll, then features.symbolic_onsets')


def transpose_symbolic(symbolic: torch.Tensor, max_semitones: int, axis: SymbolicAxis,
                       generator: torch.Generator) -> torch.Tensor:
    """Transpose the notes behind each clip's symbolic input (B, D + 1) by a random -k..k semitones.

    Transposing moves what depends on absolute pitch (``musicid.symbolic``):
    the two pitch-class histograms rotate (not when they already count from
    the tonic, ``key_relative``), the mean pitch moves by k/127 and the piano
    roll's rows move by k, its onset plane's with them (rows they leave get
    silence; nothing wraps around).
    Intervals, densities, polyphony, spread and durations stay as they are.
    The shift is applied to the un-normalised values, which are then
    normalised again.  Clips whose input is absent (flag 0: an audio source,
    or hidden by train.symbolic_dropout) and windows without a note keep their
    input; one semitone count is drawn per clip from ``generator`` whatever.
    """
    if max_semitones == 0:
        return symbolic
    batch, width = symbolic.shape
    semitones = torch.randint(-max_semitones, max_semitones + 1, (batch,), generator=generator)
    mean, std = torch.from_numpy(axis.mean), torch.from_numpy(axis.std)
    raw = symbolic[:, :-1] * std + mean
    out = raw.clone()
    present = (symbolic[:, -1] > 0) & sounding(raw)
    if not axis.key_relative:
        source = (torch.arange(12)[None, :] - semitones[:, None]) % 12  # (B, 12): the class each class takes
        for block in (PITCH_CLASS_BLOCK, ONSET_CLASS_BLOCK):
            out[:, block] = torch.gather(raw[:, block], 1, source)
    out[:, PITCH_MEAN] = raw[:, PITCH_MEAN] + semitones.to(raw.dtype) / 127
    if axis.roll:
        start = width - 1 - axis.planes * ROLL_PITCHES * ROLL_FRAMES
        roll = raw[:, start:].reshape(batch, axis.planes, ROLL_PITCHES, ROLL_FRAMES)
        source = torch.arange(ROLL_PITCHES)[None, :] - semitones[:, None]  # (B, pitches)
        inside = (source >= 0) & (source < ROLL_PITCHES)
        index = source.clamp(0, ROLL_PITCHES - 1)[:, None, :, None].expand_as(roll)
        moved = torch.gather(roll, 2, index)  # every plane's rows move alike
        out[:, start:] = torch.where(inside[:, None, :, None], moved, torch.zeros_like(moved)).reshape(batch, -1)
    moved = torch.cat([(out - mean) / std, symbolic[:, -1:]], dim=1)
    return torch.where(present[:, None], moved, symbolic)


def augment_batch(x: torch.Tensor, train: TrainParams, pitch: PitchAxis | None,
                  generator: torch.Generator) -> torch.Tensor:
    """A training batch of normalised features (B, n_bands, T), transposed then masked (``train`` params)."""
    x = pitch_shift(x, train.pitch_shift, pitch, generator)
    return spec_augment(x, train.freq_mask, train.time_mask, train.masks, generator)


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator,
          symbolic: torch.Tensor | None = None,
          ) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor | None]:
    """Mix a batch with a shuffled copy of itself: (mixed x, the copy's labels, weight of the originals,
    mixed symbolic input or None).

    The weight is drawn from Beta(alpha, alpha), seeded from ``generator``
    (PyTorch's Beta sampler has no generator argument); alpha 0 returns the
    batch unchanged with weight 1.  The symbolic input (B, D + 1), when
    given, is mixed with the same partners and weight.  The loss of a mixed
    batch is the same mix of the losses of both label sets, which is the
    cross-entropy against the mixed one-hot targets.
    """
    if alpha == 0:
        return x, y, 1.0, symbolic
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
    share = float(np.random.default_rng(seed).beta(alpha, alpha))
    partner = torch.randperm(len(y), generator=generator).to(x.device)
    mixed_symbolic = None if symbolic is None else share * symbolic + (1.0 - share) * symbolic[partner]
    return share * x + (1.0 - share) * x[partner], y[partner], share, mixed_symbolic


def clip_gradients(model: torch.nn.Module, max_norm: float) -> None:
    """Scale every gradient by min(1, max_norm / global L2 norm), the rule of clip_grad_norm_ (0: off).

    The norm is summed by NumPy in float64, in a fixed order, because
    PyTorch's reductions of large tensors split the sum among the intra-op
    threads and so could round differently with another thread count.
    """
    if max_norm == 0:
        return
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    total = float(np.sqrt(sum(np.sum(np.square(to_numpy(g).astype(np.float64))) for g in gradients)))
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:
        for gradient in gradients:
            gradient.mul_(scale)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW's groups: weight decay on the conv and linear weights, none on biases and batch-norm parameters.

    Decaying a batch-norm scale or a bias towards 0 only fights the
    normalisation; weights (2-d and up) are what decay regularises.
    """
    named = sorted(model.named_parameters())
    return [{"params": [p for _, p in named if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0}]


def balanced_order(labels: np.ndarray, generator: torch.Generator) -> torch.Tensor:
    """An epoch's order of row indices in which classes take turns (class-balanced batches).

    Every class contributes as many rows as the largest one, smaller classes
    being cycled through again in a fresh shuffle, so each batch holds about
    the same number of clips of every class (what batch-hard triplets need).
    """
    classes = np.unique(labels)
    per_class = [np.flatnonzero(labels == c) for c in classes]
    longest = max(len(rows) for rows in per_class)
    streams = []
    for rows in per_class:
        picks = []
        while sum(len(p) for p in picks) < longest:
            picks.append(rows[to_numpy(torch.randperm(len(rows), generator=generator))])
        streams.append(np.concatenate(picks)[:longest])
    interleaved = np.stack(streams, axis=1).reshape(-1)  # class 0, class 1, ..., class 0, ...
    return torch.from_numpy(interleaved)


@dataclass
class EpochLog:
    epoch: int  # counted from 1
    train_loss: float
    train_accuracy: float | None  # of the classifier on the (augmented) training clips; None without one
    val_accuracy: float
    val_macro_f1: float
    lr: float

    def line(self, epochs: int) -> str:
        """One line for a log: ``epoch 3/12: loss 0.512, val macro-F1 0.801``."""
        return (f"epoch {self.epoch}/{epochs}: loss {self.train_loss:.4f}, val accuracy "
                f"{self.val_accuracy:.3f}, val macro-F1 {self.val_macro_f1:.3f}")


class EmptyValidationSplit(ValueError):
    """No validation clips: no epoch could be chosen on them."""


def _val_scores(model, val_x, val_y, n_classes, device, val_symbolic=None) -> tuple[float, float]:
    from musicid.metrics import macro_f1

    if len(val_y) == 0:
        return 0.0, 0.0
    model.eval()
    if model.uses_classifier:
        predicted = predict_proba(model, val_x, 256, device, val_symbolic).argmax(1)
    else:  # a triplet-only model predicts the nearest class centroid of the validation clips' own split
        embeddings = embed(model, val_x, 256, device, val_symbolic)
        predicted = (embeddings @ class_centroids(embeddings, val_y, n_classes).T).argmax(1)
    accuracy = float((predicted == val_y).mean())
    return accuracy, macro_f1(val_y, predicted)  # over the classes val has clips of, as evaluate's


def train_model(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                config: ModelConfig, train: TrainParams, progress=lambda items, **_: items,
                on_epoch=lambda log: None, train_symbolic: np.ndarray | None = None,
                val_symbolic: np.ndarray | None = None, pitch: PitchAxis | None = None,
                symbolic_axis: SymbolicAxis | None = None,
                train_tracks: np.ndarray | None = None) -> tuple[SpectrogramCNN, list[EpochLog], int]:
    """Train with AdamW and a one-cycle schedule; keep the epoch with the best val macro-F1
    (``train.keep`` best) or the last epoch (``train.keep`` last, val then only logged).

    With ``train.ema`` > 0 the model scored on val after each epoch, and kept,
    is the exponential moving average of the weights after every step (decay
    ``train.ema`` per step), batch-norm statistics included.

    train_x/val_x: normalised float32 [N, n_bands, T]; train_y/val_y: int64 [N].
    train_symbolic/val_symbolic: the symbolic branch's input float32 [N, D + 1]
    (``musicid.model.symbolic_input``) for a model with ``config.symbolic_dim``;
    ``train.symbolic_dropout`` of the training clips see theirs as absent.
    ``train`` is the ``train`` section of params.yaml.  ``on_epoch`` receives
    each epoch's log (for dvclive); ``pitch`` describes the bands of
    constant-Q or chroma features, needed by ``train.pitch_shift``; ``symbolic_axis`` the symbolic input,
    needed by ``train.symbolic_transpose``; ``train_tracks`` (str [N]) the training clips' tracks, needed by
    ``train.track_balance``.  Returns (kept model, per-epoch log, kept
    epoch number counted from 1).  Raises EmptyValidationSplit without
    validation clips, as the kept epoch would then be chosen on nothing.
    The weights are the same bytes for the same number of PyTorch threads; with another number only when no
    batch has a row count whose linear-layer product BLAS splits by thread (README, Reproducibility).
    """
    if len(val_y) == 0:
        raise EmptyValidationSplit("the validation split is empty, so no epoch can be chosen on it: "
                                   "set split.val > 0 in params.yaml (each class needs a validation track)")
    if train.symbolic_transpose and (train_symbolic is None or symbolic_axis is None):
        raise ValueError("train.symbolic_transpose needs symbolic features and their SymbolicAxis")
    if train.track_balance and (train_tracks is None or len(train_tracks) != len(train_y)):
        raise ValueError(f"train.track_balance needs the training clips' tracks, one per clip: got "
                         f"{'none' if train_tracks is None else len(train_tracks)} for {len(train_y)} clips")
    return _train(train_x, train_y, val_x, val_y, config, train, progress, on_epoch,
                  train_symbolic, val_symbolic, pitch, symbolic_axis, train_tracks)


def track_balance_weights(labels: np.ndarray, tracks: np.ndarray, class_weights: np.ndarray,
                          power: float) -> np.ndarray:
    """Each training clip's weight in the loss (float64 [N]) under ``train.track_balance`` = ``power``.

    Within its class a clip weighs its track's clip count to the power ``-power`` (1: every track the same
    however long, 0: every clip the same), scaled so that each class's clips add up to what the class
    weights give them (``class_weights[c]`` times the class's clip count): the classes keep their balance
    and only the tracks within a class are reweighted.
    """
    _, track_index, track_clips = np.unique(tracks, return_inverse=True, return_counts=True)
    raw = track_clips[track_index].astype(np.float64) ** -power
    weights = np.zeros(len(labels), np.float64)
    for label in np.unique(labels):
        rows = labels == label
        weights[rows] = class_weights[label] * rows.sum() * raw[rows] / raw[rows].sum()
    return weights


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                           label_smoothing: float) -> torch.Tensor:
    """The batch's cross-entropy under ``train.track_balance``: each clip's loss times its own weight, over
    the batch's total weight (the mean cross_entropy's class weights give, with a weight per clip instead).

    With label smoothing the whole of a clip's loss, smoothed part too, takes the clip's weight, where
    cross_entropy's class weights weigh each class's share of the smoothed part by that class's weight.
    """
    losses = F.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing)
    return (weights * losses).sum() / weights.sum()


def drop_symbolic(symbolic: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Hide the symbolic input (B, D + 1) of a random ``fraction`` of the clips: features and flag zeroed,
    as for a clip of an audio file, so the audio branch learns to stand alone."""
    if fraction == 0:
        return symbolic
    keep = torch.rand(len(symbolic), generator=generator) >= fraction
    return symbolic * keep[:, None].to(symbolic.dtype)


def _train(train_x, train_y, val_x, val_y, config: ModelConfig, train: TrainParams, progress,
           on_epoch, train_symbolic=None, val_symbolic=None, pitch: PitchAxis | None = None,
           symbolic_axis: SymbolicAxis | None = None,
           train_tracks: np.ndarray | None = None) -> tuple[SpectrogramCNN, list[EpochLog], int]:
    seed_everything(train.seed)
    device = pick_device()
    model = SpectrogramCNN(config).to(device)
    model.uses_classifier = train.loss != "triplet"
    optimiser = torch.optim.AdamW(parameter_groups(model, train.weight_decay), lr=train.lr)
    generator = torch.Generator().manual_seed(train.seed)
    epoch_rows = len(train_x) if train.sampler == "shuffle" else \
        int(len(np.unique(train_y)) * np.bincount(train_y).max())
    steps_per_epoch = int(max(1, -(-epoch_rows // train.batch_size)))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=train.lr, epochs=train.epochs,
                                                   steps_per_epoch=steps_per_epoch)
    # With plain shuffling, classes are weighted by inverse frequency so a big
    # class cannot dominate the loss; balanced batches need no weights.
    counts = np.bincount(train_y, minlength=config.n_classes).astype(np.float64)
    weights = torch.tensor(counts.sum() / np.maximum(counts, 1) / config.n_classes, dtype=torch.float32)
    if train.sampler == "balanced":
        weights = torch.ones(config.n_classes)
    # train.track_balance: each clip's own weight instead (its class's weight, shared out among the class's
    # tracks); off, the class weights alone, through cross_entropy's weight as before.
    clip_weights = None if not train.track_balance else torch.from_numpy(track_balance_weights(
        train_y, train_tracks, to_numpy(weights).astype(np.float64), train.track_balance)).to(torch.float32)
    weights = weights.to(device)
    inputs, targets = torch.from_numpy(train_x), torch.from_numpy(train_y)
    # The symbolic dropout masks (and transpositions) come from a generator of their own, so
    # the order of batches and the SpecAugment masks are those of an audio-only run.
    symbolic_inputs = None if train_symbolic is None else torch.from_numpy(train_symbolic)
    symbolic_generator = torch.Generator().manual_seed(train.seed)
    # train.ema: the weights scored on val and kept are a moving average of the
    # steps' weights (batch-norm statistics too), which a single step's noise moves little.
    averaged = None if not train.ema else \
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(train.ema), use_buffers=True)
    kept = model if averaged is None else averaged.module
    log: list[EpochLog] = []
    kept_state, kept_f1, kept_epoch = None, -1.0, 0
    for epoch in progress(range(1, train.epochs + 1), total=train.epochs, desc="train"):
        model.train()
        order = torch.randperm(len(inputs), generator=generator) if train.sampler == "shuffle" else \
            balanced_order(train_y, generator)
        total_loss, correct, seen = 0.0, 0, 0
        # A bar of the epoch's batches too: on a large collection an epoch takes a minute.
        batches = range(0, len(order), train.batch_size)
        for start in progress(batches, total=len(batches), desc=f"epoch {epoch}"):
            index = order[start:start + train.batch_size]
            x = augment_batch(inputs[index], train, pitch, generator)
            x, y = x.to(device), targets[index].to(device)
            symbolic = None if symbolic_inputs is None else transpose_symbolic(
                drop_symbolic(symbolic_inputs[index], train.symbolic_dropout, symbolic_generator),
                train.symbolic_transpose, symbolic_axis, symbolic_generator).to(device)
            x, partner_y, share, symbolic = mixup(x, y, train.mixup, generator, symbolic)
            embeddings = model.embed(x) if symbolic is None else model.embed(x, symbolic)
            loss = torch.zeros((), device=device)
            if model.uses_classifier:
                logits = model.logits(embeddings)
                if clip_weights is None:
                    loss = loss + share * F.cross_entropy(logits, y, weight=weights,
                                                          label_smoothing=train.label_smoothing)
                else:  # mixup is refused with it
                    loss = loss + weighted_cross_entropy(logits, y, clip_weights[index].to(device),
                                                         train.label_smoothing)
                if share < 1.0:
                    loss = loss + (1.0 - share) * F.cross_entropy(logits, partner_y, weight=weights,
                                                                  label_smoothing=train.label_smoothing)
                correct += int((logits.argmax(1) == y).sum())
            if train.loss in ("triplet", "ce+triplet"):
                loss = loss + batch_hard_triplet_loss(embeddings, y, train.triplet_margin)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(model, train.grad_clip)
            optimiser.step()
            schedule.step()
            if averaged is not None:
                averaged.update_parameters(model)
            total_loss += loss.item() * len(index)
            seen += len(index)
        val_accuracy, val_f1 = _val_scores(kept, val_x, val_y, config.n_classes, device, val_symbolic)
        entry = EpochLog(epoch, total_loss / seen, correct / seen if model.uses_classifier else None,
                         val_accuracy, val_f1, optimiser.param_groups[0]["lr"])
        log.append(entry)
        on_epoch(entry)
        keep_this = epoch == train.epochs if train.keep == "last" else val_f1 > kept_f1
        if keep_this:
            kept_f1, kept_epoch = val_f1, epoch
            kept_state = copy.deepcopy(kept.state_dict())
        elif train.patience and epoch - kept_epoch >= train.patience:
            break  # early stopping: the best epoch is kept
    model.load_state_dict(kept_state)
    return model, log, kept_epoch


@torch.no_grad()
def class_probabilities(model: SpectrogramCNN, features: np.ndarray, centroids: np.ndarray, batch_size: int,
                        device: torch.device, symbolic: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities float32 [N, n_classes], embeddings float32 [N, D]) of normalised features
    (and the symbolic branch's input float32 [N, D + 1], None: absent).

    A model trained with a classifier uses it; a triplet-only model scores
    each class by the cosine similarity of the embedding to its training
    centroid (scaled like the classifier's logits).
    """
    embeddings = embed(model, features, batch_size, device, symbolic)
    if len(embeddings) == 0:
        return np.zeros((0, model.config.n_classes), np.float32), embeddings
    logits = model.logits(torch.from_numpy(embeddings).to(device),
                          torch.from_numpy(np.asarray(centroids, dtype=np.float32)).to(device))
    return to_numpy(F.softmax(logits, dim=1)), embeddings


class FeaturesError(ValueError):
    """A features table that lacks what training or evaluation reads; the message names what."""


FEATURE_COLUMNS = ("features", "label", "known", "track", "split")
FEATURE_ATTRIBUTES = ("label_names", "n_known", "band_mean", "band_std", "params", "sample_rate")


def check_features_table(path: str | Path) -> None:
    """Raise FeaturesError unless ``path`` is an HDF5 file with every column and attribute of featurize's table."""
    import h5py

    path = Path(path)
    remedy = "make it with `dvc repro featurize`"
    if not path.is_file():
        raise FeaturesError(f"{path}: no such features table; {remedy}")
    try:
        table = h5py.File(path, "r")
    except OSError as error:
        raise FeaturesError(f"{path}: not a readable HDF5 file ({error}); {remedy}") from None
    with table:
        missing = [f"column '{name}'" for name in FEATURE_COLUMNS if name not in table]
        missing += [f"attribute '{name}'" for name in FEATURE_ATTRIBUTES if name not in table.attrs]
        if missing:
            raise FeaturesError(f"{path}: lacks {', '.join(missing)}; {remedy}")
        rows = {name: len(table[name]) for name in FEATURE_COLUMNS}
        if len(set(rows.values())) != 1:
            raise FeaturesError(f"{path}: columns of different lengths {rows}; {remedy}")
        if table["features"].ndim != 3:
            raise FeaturesError(f"{path}: 'features' has shape {table['features'].shape}, not "
                                f"(clips, bands, frames); {remedy}")
        if "symbolic" in table:  # written by featurize with features.symbolic
            missing = [f"column '{name}'" for name in ("has_symbolic",) if name not in table]
            missing += [f"attribute '{name}'" for name in SYMBOLIC_ATTRIBUTES if name not in table.attrs]
            if missing:
                raise FeaturesError(f"{path}: has symbolic features but lacks {', '.join(missing)}; {remedy}")
            lengths = {name: len(table[name]) for name in ("symbolic", "has_symbolic")}
            if set(lengths.values()) != set(rows.values()):
                raise FeaturesError(f"{path}: columns of different lengths {rows | lengths}; {remedy}")


SYMBOLIC_ATTRIBUTES = ("symbolic_mean", "symbolic_std")


def read_symbolic_input(table, rows: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The symbolic branch's input float32 [len(rows), D + 1] of rows of an open features table
    with symbolic columns, normalised with ``mean``/``std`` float32 [D]."""
    dim = table["symbolic"].shape[1]
    if len(rows) == 0:
        return np.zeros((0, dim + 1), np.float32)
    return symbolic_input(table["symbolic"][rows], table["has_symbolic"][rows].astype(bool), mean, std)


def save_checkpoint(path: str | Path, model: SpectrogramCNN, label_names: list[str],
                    band_mean: np.ndarray, band_std: np.ndarray, pipeline_params: dict,
                    centroids: np.ndarray | None = None, novelty: Mahalanobis | None = None,
                    extra: dict | None = None) -> None:
    """Write a self-describing checkpoint: weights, model config, labels, feature params,
    normalisation statistics, the training classes' embedding centroids and the
    statistics of the novelty score (see ``checkpoint_bytes``), atomically."""
    write_bytes_atomic(path, checkpoint_bytes(model, label_names, band_mean, band_std, pipeline_params,
                                              centroids, novelty, extra))


def checkpoint_bytes(model: SpectrogramCNN, label_names: list[str], band_mean: np.ndarray,
                     band_std: np.ndarray, pipeline_params: dict, centroids: np.ndarray | None = None,
                     novelty: Mahalanobis | None = None, extra: dict | None = None) -> bytes:
    """The checkpoint file's bytes: equal arguments give equal bytes."""
    if centroids is None:
        centroids = np.zeros((model.config.n_classes, model.config.embedding_dim), np.float32)
    checkpoint = {
        "format": "musicid-checkpoint-1",
        "model_config": model.config.to_dict(),
        "uses_classifier": bool(model.uses_classifier),
        "centroids": torch.from_numpy(np.asarray(centroids, dtype=np.float32)),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "label_names": list(label_names),
        "band_mean": torch.from_numpy(np.asarray(band_mean, dtype=np.float32)),
        "band_std": torch.from_numpy(np.asarray(band_std, dtype=np.float32)),
        "params": pipeline_params,
        **({} if novelty is None else {
            "novelty_class_means": torch.from_numpy(np.asarray(novelty.class_means, dtype=np.float64)),
            "novelty_precision": torch.from_numpy(np.asarray(novelty.precision, dtype=np.float64)),
        }),
        **(extra or {}),
    }
    # torch.save names the archive's top folder after the file it writes to; saving
    # to memory gives the fixed name "archive", so equal checkpoints are equal bytes.
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def checkpoint_track_prior(checkpoint: dict, path: str | Path = "the model") -> tuple[np.ndarray | None, float]:
    """(the training clips' class shares, ``train.track_prior``) of a checkpoint, for
    :func:`musicid.metrics.prior_corrected`; (None, 0) for one written before that param existed.
    :class:`CheckpointError` (naming ``path``) for shares that do not fit its classes or a power out of range."""
    if "train_class_shares" not in checkpoint:
        return None, 0.0
    shares = np.asarray(checkpoint["train_class_shares"], dtype=np.float64)
    power = ((checkpoint.get("params") or {}).get("train") or {}).get("track_prior")
    classes = len(checkpoint.get("label_names", ()))
    if shares.shape != (classes,) or not np.isfinite(shares).all() or (shares <= 0).any() \
            or isinstance(power, bool) or not isinstance(power, (int, float)) or not 0 <= power <= 2:
        raise CheckpointError(f"{path}: its parts do not fit together (training class shares {shares.tolist()} for "
                              f"{classes} classes, train.track_prior {power!r}): it was not written whole by the "
                              "train stage; retrain it with `dvc repro train`")
    return shares, float(power)


def checkpoint_novelty_kind(checkpoint: dict) -> str:
    """The novelty score ``train.novelty`` chose for a checkpoint; ``mahalanobis`` for one written before
    that param existed."""
    return checkpoint.get("novelty_score", "mahalanobis")


# A model with a symbolic branch embeds a clip without notes (an audio file) elsewhere than one with notes:
# train stores a second set of centroids, novelty statistics and threshold for that case, under this prefix.
AUDIO_ONLY = "audio_"


def audio_only_stored(checkpoint: dict) -> bool:
    """Whether ``checkpoint`` holds the statistics of clips embedded without their notes (see AUDIO_ONLY)."""
    return f"{AUDIO_ONLY}novelty_precision" in checkpoint


def checkpoint_novelty(checkpoint: dict, kind: str | None = None, audio_only: bool = False) -> Mahalanobis | Cosine:
    """The novelty scorer of a checkpoint: :func:`checkpoint_novelty_kind`'s (``kind`` None), or ``kind``;
    with ``audio_only``, the one for clips embedded without notes, where the checkpoint stores it."""
    if "novelty_precision" not in checkpoint:
        raise ValueError("the checkpoint holds no novelty statistics (it was written by an older "
                         "version of musicid); retrain it with `dvc repro train`")
    prefix = AUDIO_ONLY if audio_only and audio_only_stored(checkpoint) else ""
    kind = kind or checkpoint_novelty_kind(checkpoint)
    if kind == "cosine":
        return Cosine(to_numpy(checkpoint[f"{prefix}centroids"]))
    return Mahalanobis(to_numpy(checkpoint[f"{prefix}novelty_class_means"]),
                       to_numpy(checkpoint[f"{prefix}novelty_precision"]))


def notes_less_scale(checkpoint: dict, kind: str | None = None) -> float:
    """The factor that puts a novelty score (``kind``; None: the checkpoint's) of clips embedded without notes,
    against :func:`checkpoint_novelty`'s ``audio_only`` scorer, on the scale of the scores of clips with notes,
    so that one threshold flags both and they rank together; 1 for a checkpoint that stores none."""
    scales = checkpoint.get(f"{AUDIO_ONLY}novelty_scale") or {}
    return float(scales.get(kind or checkpoint_novelty_kind(checkpoint), 1.0))


def track_novelty(checkpoint: dict, kind: str | None, embeddings: np.ndarray, tracks: np.ndarray,
                  no_notes: np.ndarray, notes=None) -> tuple[np.ndarray, np.ndarray]:
    """(sorted track names, novelty scores) by score ``kind`` (None: the checkpoint's); the tracks of the clips
    ``no_notes`` marks by the statistics of clips embedded without notes, put on the others' scale (evaluate's
    tracks, and predict's one file). With ``notes`` (the tracks' TrackStatistics, as the regression reads them)
    and a checkpoint trained with ``train.novelty_notes``, a track with notes scores the mix of the embedding's
    score and its notes' (:func:`notes_mixed`)."""
    names, scores = checkpoint_novelty(checkpoint, kind).track_scores(embeddings, tracks)
    if no_notes.any():
        audio_names, audio_scores = checkpoint_novelty(checkpoint, kind, audio_only=True).track_scores(
            embeddings[no_notes], tracks[no_notes])
        index = {name: i for i, name in enumerate(names)}
        scores = scores.copy()
        scores[[index[name] for name in audio_names]] = audio_scores * notes_less_scale(checkpoint, kind)
    return names, notes_mixed(checkpoint, kind, names, scores, notes)


# train.novelty_notes: the checkpoint's share of the notes' novelty in a track's score, the unit-length class
# centroids of the training tracks' note statistics, and per score the factor that puts the notes' distance on
# the scale of the embedding's.
NOTES_NOVELTY = ("novelty_notes_share", "novelty_notes_centroids", "novelty_notes_scale")


def notes_mixed(checkpoint: dict, kind: str | None, names: np.ndarray, scores: np.ndarray, notes) -> np.ndarray:
    """``scores`` (of the sorted tracks ``names``, by score ``kind``; None: the checkpoint's) with those of the
    tracks ``notes`` (TrackStatistics) says have notes replaced by ``(1 - share) * score + share * scale *
    notes' score`` (musicid.track_model.notes_novelty), as train.novelty_notes set them; unchanged without
    ``notes``, for a checkpoint trained without it, and for tracks without notes (audio files)."""
    share = float(checkpoint.get(NOTES_NOVELTY[0], 0.0))
    regression = checkpoint_regression(checkpoint)
    if notes is None or not share or regression is None or not notes.has_notes.any():
        return scores
    index = np.searchsorted(notes.tracks, names)
    found = index < len(notes.tracks)
    found[found] = notes.tracks[index[found]] == names[found]
    rows = np.flatnonzero(found)
    rows = rows[notes.has_notes[index[rows]]]
    if not len(rows):
        return scores
    scale = float(checkpoint[NOTES_NOVELTY[2]][kind or checkpoint_novelty_kind(checkpoint)])
    mixed = np.array(scores, dtype=np.float64)
    mixed[rows] = (1 - share) * mixed[rows] + share * scale * notes_novelty(
        regression, to_numpy(checkpoint[NOTES_NOVELTY[1]]), notes.values[index[rows]])
    return mixed


def checkpoint_threshold(checkpoint: dict) -> float:
    """The novelty score above which a track is flagged (NaN: none stored)."""
    return float(checkpoint.get("novelty_reference", float("nan")))


class CheckpointError(ValueError):
    """A checkpoint that is missing or cannot be read; the message names the file and the cause."""


CHECKPOINT_KEYS = ("model_config", "state_dict", "uses_classifier", "label_names", "centroids",
                   "band_mean", "band_std", "params")


def load_checkpoint(path: str | Path, device: torch.device | None = None):
    """Return (model in eval mode on ``device``, checkpoint dict with every tensor on the CPU).

    Only the model moves to ``device``; the stored arrays stay on the CPU, where
    NumPy can read them.  Raises CheckpointError for a missing, truncated or
    foreign file.
    """
    path = Path(path)
    if path.is_dir():
        inside = path / "model.pt"
        hint = f" (did you mean {inside}?)" if inside.is_file() else ""
        raise CheckpointError(f"{path}: a folder, not a model file{hint}")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file; train one with `dvc repro train` "
                              "(or give another with --model)")
    if not zipfile.is_zipfile(path):  # torch.save's format; anything else would reach the legacy unpickler
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or not one): not the zip "
                              "archive torch.save writes")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "weights_only" in cause or "Weights only load failed" in cause:
            # PyTorch's message suggests loading with weights_only=False, which runs whatever code the file
            # holds: a musicid checkpoint never needs it, so that advice is not passed on.
            cause = "it holds Python objects other than tensors and plain data, which are not loaded"
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or not one): "
                              f"{cause}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != "musicid-checkpoint-1":
        raise CheckpointError(f"{path}: not a musicid checkpoint (no 'format: musicid-checkpoint-1')")
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: the checkpoint lacks {', '.join(missing)}")
    try:
        model = SpectrogramCNN(ModelConfig(**checkpoint["model_config"]))
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, RuntimeError) as error:
        cause = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{path}: the weights do not fit the stored model config: {cause}") from None
    if model.config.symbolic_dim and any(key not in checkpoint for key in SYMBOLIC_ATTRIBUTES):
        raise CheckpointError(f"{path}: the model has a symbolic branch but the checkpoint lacks "
                              f"{' and '.join(SYMBOLIC_ATTRIBUTES)}")
    model.uses_classifier = checkpoint["uses_classifier"]
    model.to(device or "cpu").eval()
    return model, checkpoint

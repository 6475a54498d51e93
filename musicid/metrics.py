"""Clip- and track-level classification metrics and confusion-matrix records."""

from __future__ import annotations

from typing import Literal

import numpy as np

# How a track's clip probabilities become the track's: "mean" averages them;
# "log_mean" averages their logarithms (the product of the clips' evidence,
# renormalised, as if the clips were independent), where a clip that all but
# rules a class out weighs more than several that mildly favour it.
# Evaluate reports both (per_class.json, "track_pooling"); the headline and
# predict use TRACK_POOLING.
Pooling = Literal["mean", "log_mean"]
TRACK_POOLING: Pooling = "mean"
LOG_FLOOR = 1e-6  # probabilities are floored here before the logarithm: a single 0 must not veto a class


def pool(probabilities: np.ndarray, tracks: np.ndarray, pooling: Pooling = TRACK_POOLING,
         ) -> tuple[np.ndarray, np.ndarray]:
    """(track ids [M] sorted, pooled probabilities float64 [M, C], rows summing to 1) of clips [N, C], tracks [N]."""
    if pooling == "mean":
        return track_means(probabilities, tracks)
    if pooling != "log_mean":
        raise ValueError(f"unknown pooling {pooling!r}")
    names, log_means = track_means(np.log(np.maximum(probabilities, LOG_FLOOR)), tracks)
    pooled = np.exp(log_means - log_means.max(axis=1, keepdims=True))
    return names, pooled / pooled.sum(axis=1, keepdims=True)


def prior_corrected(probabilities: np.ndarray, shares: np.ndarray | None, power: float) -> np.ndarray:
    """``train.track_prior``: clips' probabilities [N, C] divided by the training clips' class shares [C] to the
    power ``power``, each row summing to 1 again; unchanged (as float64) for ``shares`` None or power 0.

    A model trained on more clips of one class than of another leans to it on music it has not seen, class
    weights in the loss or not (it learns the training clips by heart, and the weights no longer count).
    Dividing each clip's probabilities by the shares (the post-hoc logit adjustment of Menon et al. 2021, here
    on top of the class weights, as the benchmark suite measured it) before they are pooled takes the lean out of
    the track's answer; evaluate and predict pool these, and score a clip on its own by the probabilities as they
    are."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if shares is None or power == 0:
        return probabilities
    corrected = probabilities / np.asarray(shares, dtype=np.float64) ** power
    return corrected / corrected.sum(axis=1, keepdims=True)


def clip_answers(probabilities: np.ndarray, alone: np.ndarray, has_notes: np.ndarray, share: float) -> np.ndarray:
    """``evaluate.clip_audio``: each clip's own answer float64 [N, C], the model's probabilities with the clip's
    notes [N, C] mixed with those of its audio alone (the same model, the notes hidden) [N, C]: ``share`` of the
    latter for a clip with notes (bool [N]); a clip without notes (an audio file's) keeps what it has.

    The model reads a MIDI clip's notes and its audio together and leans on the notes; the second opinion of
    its audio branch (trained to stand alone by train.symbolic_dropout) makes fewer of the errors a clip's few
    notes lead it into, as a two-member ensemble does. Over a whole track the clips' errors average out and the
    audio alone's, which a track's clips share, do not: a track's answer pools the probabilities with the notes."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if share == 0 or not np.any(has_notes):
        return probabilities
    mixed = (1.0 - share) * probabilities + share * np.asarray(alone, dtype=np.float64)
    return np.where(np.asarray(has_notes, dtype=bool)[:, None], mixed, probabilities)


def class_shares(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Each class's share float64 [C] of clips' labels [N] (a class without clips counts as one clip, so that no
    share is 0)."""
    counts = np.maximum(np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes), 1)
    return counts / counts.sum()


def track_probabilities(probabilities: np.ndarray, labels: np.ndarray, tracks: np.ndarray,
                        pooling: Pooling = TRACK_POOLING) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool the clip probabilities of each track (see :func:`pool`).

    probabilities float [N, C], labels int [N], tracks str [N] ->
    (track probabilities [M, C], track labels [M], track ids [M]), sorted by track id.
    """
    names, means = pool(probabilities, tracks, pooling)
    return means, track_labels(labels, tracks), names


def track_labels(labels: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    """The label int64 [M] of each track (sorted by id) of clips' labels [N] and tracks [N]."""
    names, inverse = np.unique(tracks, return_inverse=True)
    result = np.zeros(len(names), dtype=np.int64)
    result[inverse] = labels
    return result


def track_means(values: np.ndarray, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(track ids [M] sorted, mean float64 [M, D] of each track's rows) of values [N, D], tracks [N]."""
    names, inverse = np.unique(tracks, return_inverse=True)
    means = np.zeros((len(names), values.shape[1]), dtype=np.float64)
    np.add.at(means, inverse, values)
    means /= np.bincount(inverse, minlength=len(names))[:, None]
    return names, means


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The mean F1 of the classes ``y_true`` has examples of.

    A class with none here (its tracks in this split all too short, say) has no F1 to average:
    counted as 0 it would lower the score for something the model never got wrong. Predictions
    of it still cost the true classes their recall.
    """
    from sklearn.metrics import f1_score

    present = sorted(set(np.asarray(y_true).tolist()))
    return float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The mean recall of the classes in ``y_true`` (scikit-learn's), without its warning when a
    prediction names a class that has no example here: that is counted, as a miss of the true class."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return balanced_accuracy_score(y_true, y_pred)


def summarise(y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str]) -> tuple[dict, list[dict]]:
    """(headline metrics, per-class rows) for integer labels and predictions."""
    from sklearn.metrics import precision_recall_fscore_support

    labels = list(range(len(label_names)))
    if len(y_true) == 0:
        return {"accuracy": 0.0, "balanced_accuracy": 0.0, "macro_f1": 0.0, "n": 0}, []
    headline = {
        "accuracy": round(float(np.mean(y_true == y_pred)), 6),
        "balanced_accuracy": round(float(_balanced_accuracy(y_true, y_pred)), 6),
        "macro_f1": round(macro_f1(y_true, y_pred), 6),
        "n": int(len(y_true)),
    }
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    predicted = np.bincount(np.asarray(y_pred, dtype=np.int64), minlength=len(labels))

    def value(number: float, defined: bool) -> float | None:
        return round(float(number), 6) if defined else None

    # A class with no track in the split is not scored (null, and left out of macro-F1), not scored 0; its
    # precision is defined when the model named it anyway.
    rows = [{"label": name, "precision": value(p, n > 0 or s > 0), "recall": value(r, s > 0),
             "f1": value(f, s > 0), "support": int(s)}
            for name, p, r, f, s, n in zip(label_names, precision, recall, f1, support, predicted)]
    return headline, rows


def confusion_records(y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str]) -> list[dict]:
    """``[{"actual": name, "predicted": name}, ...]`` for DVC's ``confusion`` plot template."""
    return [{"actual": label_names[int(t)], "predicted": label_names[int(p)]}
            for t, p in zip(y_true, y_pred)]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """int64 [n_classes (actual), n_classes (predicted)], every class a row even when absent."""
    from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

    return sklearn_confusion_matrix(np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64),
                                    labels=list(range(n_classes))).astype(np.int64)


HEADLINE = ("macro_f1", "balanced_accuracy")


def headline(summary: dict) -> dict:
    """The values of ``summarise``'s summary that go into the metrics file compared across runs."""
    return {key: summary[key] for key in HEADLINE}


def open_set_metrics(scores: np.ndarray, unknown: np.ndarray) -> dict:
    """AUROC of ``scores`` for telling unknown (True) from known tracks, and the FPR at 95 % TPR.

    The FPR is the fraction of known tracks scored at or above the highest
    threshold that still flags 95 % of the unknown ones.
    """
    from sklearn.metrics import roc_auc_score

    unknown = np.asarray(unknown, dtype=bool)
    if unknown.all() or not unknown.any():
        return {"auroc": 0.0, "fpr_at_95_tpr": 1.0, "n_known": int((~unknown).sum()), "n_unknown": int(unknown.sum())}
    threshold = np.sort(scores[unknown])[::-1][int(np.ceil(0.95 * unknown.sum())) - 1]
    return {
        "auroc": round(float(roc_auc_score(unknown, scores)), 6),
        "fpr_at_95_tpr": round(float(np.mean(scores[~unknown] >= threshold)), 6),
        "n_known": int((~unknown).sum()),
        "n_unknown": int(unknown.sum()),
    }

"""A track-level reading of the notes: a logistic regression on each track's note statistics.

The CNN names a track by the mean of its 4-second clips' probabilities; each clip sees little of the piece. A
track of a MIDI file also has statistics of the whole piece: the mean and the standard deviation, over its clips,
of each clip's symbolic features (pitch-class and interval histograms, note density, polyphony, ...; not the piano
roll), and with ``features.symbolic_piece`` the whole piece's statistics read part by part (``musicid.piece``:
melodic intervals and their contour, durations in quarter notes, chords, key). ``train.track_notes`` fits a
logistic regression (scikit-learn, balanced class weights) on those of the training tracks; evaluate and predict
then name a track with notes by the mean of the two probabilities, and a track without notes (an audio file, or
a MIDI file in which no note sounds: drums only) by the CNN alone.

The fitted regression is stored in the checkpoint as plain arrays (the scaler's mean and scale, one weight row and
intercept per class) and applied here with numpy: predict needs no pickled scikit-learn object.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from musicid.h5 import read_strings
from musicid.novelty import nearest_unit_distance
from musicid.piece import PIECE_DIM

NO_NOTES = "audio files, or MIDI files in which no note sounds"  # why a class's training tracks have no notes
KEYS = ("track_notes_mean", "track_notes_scale", "track_notes_coef", "track_notes_intercept")


class TrackStatistics(NamedTuple):
    tracks: np.ndarray  # str [M], sorted
    values: np.ndarray  # float64 [M, 2 * D (+ PIECE_DIM)]: the mean, then the standard deviation, of the clips
    # with notes (then, with features.symbolic_piece, the whole piece's statistics)
    has_notes: np.ndarray  # bool [M]: at least one clip of the track has notes


def track_statistics(symbolic: np.ndarray, present: np.ndarray, tracks: np.ndarray) -> TrackStatistics:
    """Per track (sorted by id) the mean and standard deviation of its clips' symbolic features [N, D] over the
    clips with notes (``present`` bool [N]); zeros for a track with none."""
    names, inverse = np.unique(tracks, return_inverse=True)
    dim = symbolic.shape[1]
    values = np.zeros((len(names), 2 * dim), np.float64)
    has_notes = np.zeros(len(names), bool)
    # The clips with notes grouped by track, each group in table order (one pass, not one per track).
    with_notes = np.nonzero(present)[0]
    grouped = with_notes[np.argsort(inverse[with_notes], kind="stable")]
    bounds = np.searchsorted(inverse[grouped], np.arange(len(names) + 1))
    for index in range(len(names)):
        rows = symbolic[grouped[bounds[index]:bounds[index + 1]]].astype(np.float64)
        if len(rows):
            values[index] = np.concatenate([rows.mean(0), rows.std(0)])
            has_notes[index] = True
    return TrackStatistics(names, values, has_notes)


def fit_regression(statistics: TrackStatistics, labels: np.ndarray, label_names: list[str], c: float,
                   ) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """(the regression's arrays, None), or (None, why not) when the training tracks with notes do not cover
    every class: a class it never saw would always lose to the others in the mean.

    ``labels`` int [M] are the tracks' classes (indices into ``label_names``), in ``statistics``' order."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    n_classes = len(label_names)
    x, y = statistics.values[statistics.has_notes], labels[statistics.has_notes]
    counts = np.bincount(y, minlength=n_classes)
    if not len(x):
        return None, f"no training track has notes: {NO_NOTES}"
    if (counts == 0).any():
        missing = ", ".join(label_names[index] for index in np.nonzero(counts == 0)[0])
        return None, f"no training track of {missing} has notes: {NO_NOTES}"
    scaler = StandardScaler().fit(x)
    regression = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(scaler.transform(x), y)
    coef, intercept = regression.coef_, regression.intercept_
    if n_classes == 2:  # one row w for class 1: softmax of (-w/2, w/2) is sigmoid(w), the same probabilities
        coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    arrays = (scaler.mean_, scaler.scale_, coef, intercept)
    return {key: np.ascontiguousarray(value, dtype=np.float64) for key, value in zip(KEYS, arrays)}, None


def regression_probabilities(model: dict[str, np.ndarray], values: np.ndarray) -> np.ndarray:
    """The regression's class probabilities float64 [M, C] of track statistics [M, 2 * D]."""
    mean, scale, coef, intercept = (np.asarray(model[key], dtype=np.float64) for key in KEYS)
    logits = ((values - mean) / scale) @ coef.T + intercept
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def fuse_notes(pooled: np.ndarray, model: dict[str, np.ndarray] | None, statistics: TrackStatistics) -> np.ndarray:
    """A track's probabilities [M, C]: the mean of the CNN's pooled clip probabilities ``pooled`` and the
    regression's for tracks with notes, the CNN's alone for the others (and for every track without ``model``).
    ``pooled`` rows are in ``statistics``' track order."""
    if model is None or not statistics.has_notes.any():
        return pooled
    fused = np.array(pooled, dtype=np.float64)
    rows = statistics.has_notes
    fused[rows] = (fused[rows] + regression_probabilities(model, statistics.values[rows])) / 2
    return fused


def notes_centroids(model: dict[str, np.ndarray], statistics: TrackStatistics, labels: np.ndarray,
                    n_classes: int) -> np.ndarray:
    """Unit-length class centroids float64 [C, F] of the training tracks' note statistics (those with notes),
    standardised by the regression ``model``'s scaler; zeros for a class with no such track."""
    mean, scale = (np.asarray(model[key], dtype=np.float64) for key in KEYS[:2])
    values, labels = (statistics.values[statistics.has_notes] - mean) / scale, labels[statistics.has_notes]
    centroids = np.zeros((n_classes, values.shape[1]))
    for label in np.unique(labels):
        centroids[label] = values[labels == label].mean(0)
    return centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)


def notes_novelty(model: dict[str, np.ndarray], centroids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How unlike every known class the notes of tracks are: the distance float64 [M] of each track's note
    statistics [M, F], standardised by the regression's scaler and brought to unit length, to the nearest of the
    unit-length ``centroids`` [C, F] (:func:`notes_centroids`); the CNN's cosine score, on the notes."""
    mean, scale = (np.asarray(model[key], dtype=np.float64) for key in KEYS[:2])
    used = np.linalg.norm(centroids, axis=1) > 0  # a class no training track with notes stood for
    if not used.any():
        return np.zeros(len(values))
    return nearest_unit_distance((np.asarray(values, dtype=np.float64) - mean) / scale, np.asarray(centroids)[used])


def fit_table_regression(table_path, c: float, label_names: list[str], augmented: bool,
                         ) -> tuple[dict[str, np.ndarray] | None, str | None, int]:
    """(the regression fitted on the training tracks of a features table, None, how many of them have notes),
    or (None, why not, 0): the table holds no symbolic features, or :func:`fit_regression` says why.

    With render.augment (``augmented``), a training track's transposed, tempo-scaled copies share its id, and
    their notes would blend keys and tempos no plainly rendered track has into its statistics: the statistics
    are those of its plain renders' clips, which featurize tells apart (its ``augmented`` column)."""
    import h5py

    with h5py.File(table_path, "r") as table:
        if "symbolic" not in table:
            return None, "the table holds no symbolic features", 0
        if augmented and "augmented" not in table:
            return None, ("the table does not mark render.augment's copies, which would blend into the tracks' "
                          "statistics (written before featurize marked them: dvc repro featurize)"), 0
        statistics, labels = split_statistics(table, "train")
    regression, why_not = fit_regression(statistics, labels, label_names, c)
    return regression, why_not, 0 if regression is None else int(statistics.has_notes.sum())


def checkpoint_regression(checkpoint: dict) -> dict[str, np.ndarray] | None:
    """The regression a checkpoint holds, None for one trained without it (or before it existed)."""
    if KEYS[0] not in checkpoint:
        return None
    return {key: np.asarray(checkpoint[key], dtype=np.float64) for key in KEYS}


def with_piece(statistics: TrackStatistics, tracks: np.ndarray, pieces: np.ndarray) -> TrackStatistics:
    """``statistics`` with each track's whole-piece statistics ``pieces`` [K, PIECE_DIM] (of ``tracks`` [K], sorted)
    appended; a track without them (none of its clips has notes) has zeros and no notes."""
    index = np.minimum(np.searchsorted(tracks, statistics.tracks), max(len(tracks) - 1, 0))
    found = tracks[index] == statistics.tracks if len(tracks) else np.zeros(len(statistics.tracks), bool)
    piece = np.zeros((len(statistics.tracks), PIECE_DIM))
    piece[found] = pieces[index[found]]
    return TrackStatistics(statistics.tracks, np.hstack([statistics.values, piece]), statistics.has_notes & found)


def reads_piece(checkpoint: dict) -> bool:
    """Whether a checkpoint's regression reads the whole piece's statistics (features.symbolic_piece)."""
    return bool(((checkpoint.get("params") or {}).get("features") or {}).get("symbolic_piece", False))


def statistic_columns(model: dict[str, np.ndarray], piece: bool) -> int:
    """How many of a clip's symbolic columns the regression ``model`` reads the mean and sd of."""
    return (len(model[KEYS[0]]) - (PIECE_DIM if piece else 0)) // 2


def note_columns(dim: int, roll_shape: list[int] | tuple[int, ...]) -> int:
    """How many of a table's ``dim`` symbolic columns are statistics: all but the piano roll's (which ends
    the vector, [pitches, frames] = ``roll_shape``, or [planes, pitches, frames] with its onset plane)."""
    return dim - (int(np.prod(roll_shape)) if len(roll_shape) else 0)


def select_tracks(statistics: TrackStatistics, tracks: np.ndarray) -> TrackStatistics:
    """The statistics of ``tracks`` (sorted ids, each one of ``statistics``')."""
    index = np.searchsorted(statistics.tracks, tracks)
    return TrackStatistics(statistics.tracks[index], statistics.values[index], statistics.has_notes[index])


def table_statistics(table, rows: np.ndarray, columns: int) -> TrackStatistics:
    """:func:`track_statistics` of the first ``columns`` symbolic values of ``rows`` (increasing) of an open
    features table with symbolic columns, and the whole piece's (:func:`with_piece`) when the table has them."""
    tracks = read_strings(table["track"])[rows]
    if len(rows) == 0:
        statistics = track_statistics(np.zeros((0, columns), np.float32), np.zeros(0, bool), tracks)
    else:
        statistics = track_statistics(table["symbolic"][rows, :columns], table["has_symbolic"][rows].astype(bool),
                                      tracks)
    if "piece" in table:
        statistics = with_piece(statistics, read_strings(table["piece_track"]), table["piece"][:])
    return statistics


def split_statistics(table, split: str) -> tuple[TrackStatistics, np.ndarray]:
    """(the note statistics of a split's known-class tracks, their labels int64 [M]) of an open features table
    with symbolic columns, over the clips of plain renders (not render.augment's copies: column ``augmented``);
    the piano roll (``symbolic_roll_shape``) left out."""
    from musicid.metrics import track_labels

    wanted = (read_strings(table["split"]) == split) & table["known"][:].astype(bool)
    if "augmented" in table:
        wanted &= ~table["augmented"][:].astype(bool)
    rows = np.nonzero(wanted)[0]
    roll_shape = [int(n) for n in table.attrs.get("symbolic_roll_shape", [])]
    statistics = table_statistics(table, rows, note_columns(table["symbolic"].shape[1], roll_shape))
    return statistics, track_labels(table["label"][rows].astype(np.int64), read_strings(table["track"])[rows])

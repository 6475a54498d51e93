"""How unlike every known class a track is: novelty scores from clip embeddings.

A track's score compares the mean embedding of its clips with the training
classes. Two distances are offered (``train.novelty`` chooses the one
evaluate ranks by and predict flags with; evaluate reports both):

- ``cosine`` (the default): the Euclidean distance between the unit-length
  mean embedding and the nearest unit-length class centroid.
- ``mahalanobis``: the Mahalanobis distance to the nearest class mean, under
  one covariance of the training embeddings around their class means
  (Ledoit-Wolf shrinkage, as there are few clips for the embedding's size).
  It weighs directions by how much known music varies along them.

On the default dataset (every part on one piano), one class held out at a
time with two seeds, the cosine distance was the better of the two for each
of the eight runs (benchmarks/RESULTS.md, "The open set under earlier defaults"); with each collection on
its own instruments the Mahalanobis distance had been.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicid.metrics import track_means

def cosine_scores(embeddings: np.ndarray, tracks: np.ndarray, centroids: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per track: the distance of its unit-length mean embedding to the nearest class centroid.

    embeddings float [N, D] (unit length), tracks str [N], centroids float [C, D]
    (unit length) -> (track ids [M] sorted, scores float64 [M]).  The higher the
    score, the less the track resembles any class seen in training.
    """
    names, means = track_means(embeddings, tracks)
    return names, nearest_unit_distance(means, centroids)


def nearest_unit_distance(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The distance float64 [M] of each of ``vectors`` [M, D], brought to unit length, to the nearest of the
    unit-length ``centroids`` [C, D] (C >= 1): the cosine score, of a track's mean embedding or of its notes."""
    vectors = np.asarray(vectors, dtype=np.float64)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    distances = np.linalg.norm(vectors[:, None, :] - np.asarray(centroids, np.float64)[None, :, :], axis=2)
    return distances.min(axis=1)


@dataclass(frozen=True)
class Cosine:
    """Unit-length class centroids float [C, D]: :func:`cosine_scores` as a scorer like :class:`Mahalanobis`."""

    centroids: np.ndarray

    def track_scores(self, embeddings: np.ndarray, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(track ids [M] sorted, distance float64 [M] of each track's unit-length mean embedding to the
        nearest centroid)."""
        return cosine_scores(embeddings, tracks, self.centroids)


# Below this mean variance per dimension the clips of each class (nearly) coincide
# and no covariance can be estimated from them.
MIN_VARIANCE = 1e-8
# A threshold taken as the 95th percentile of fewer validation tracks than this rests on one or two tracks:
# predict and evaluate say so.
MIN_THRESHOLD_TRACKS = 20


@dataclass(frozen=True)
class Mahalanobis:
    """Class means float64 [C, D] and the shared precision matrix float64 [D, D].

    ``euclidean`` is true when the training clips could not give a covariance
    (no class had two different clips): the precision is then the identity,
    and the score the plain distance to the nearest class mean.
    """

    class_means: np.ndarray
    precision: np.ndarray
    euclidean: bool = False

    @classmethod
    def fit(cls, embeddings: np.ndarray, labels: np.ndarray) -> Mahalanobis:
        """From training embeddings [N, D] and their labels [N]; classes with no clips are left out."""
        from sklearn.covariance import LedoitWolf

        embeddings = np.asarray(embeddings, dtype=np.float64)
        labels = np.asarray(labels)
        if len(embeddings) == 0:
            raise ValueError("the novelty score needs training clips")
        classes = np.unique(labels)
        means = np.stack([embeddings[labels == label].mean(axis=0) for label in classes])
        residuals = embeddings - means[np.searchsorted(classes, labels)]
        if np.mean(np.square(residuals)) < MIN_VARIANCE:
            return cls(means, np.eye(embeddings.shape[1]), euclidean=True)
        precision = LedoitWolf(assume_centered=True).fit(residuals).precision_
        return cls(means, (precision + precision.T) / 2)

    def track_scores(self, embeddings: np.ndarray, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(track ids [M] sorted, distance float64 [M] of each track's mean embedding to the nearest class)."""
        names, means = track_means(embeddings, tracks)
        differences = means[:, None, :] - self.class_means[None, :, :]  # [M, C, D]
        squared = np.einsum("mcd,de,mce->mc", differences, self.precision, differences)
        return names, np.sqrt(np.maximum(squared.min(axis=1), 0.0))


import numpy as np
import pytest

from musicid.metrics import confusion_matrix, confusion_records, pool, summarise, track_probabilities


def test_track_probabilities_average_clips():
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4]])
    labels = np.array([0, 0, 1, 1])
    tracks = np.array(["t1", "t1", "t2", "t2"])
    track_probs, track_labels, names = track_probabilities(probabilities, labels, tracks)
    assert names.tolist() == ["t1", "t2"]
    assert np.allclose(track_probs, [[0.6, 0.4], [0.4, 0.6]])
    assert track_labels.tolist() == [0, 1]


def test_summarise_exact_values():
    truth = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0])
    headline, rows = summarise(truth, predicted, ["a", "b", "c"])
    assert headline["accuracy"] == round(4 / 6, 6)
    assert headline["balanced_accuracy"] == round((0.5 + 1 + 0.5) / 3, 6)
    # per class F1: a: p=1/2 r=1/2 -> 0.5; b: p=2/3 r=1 -> 0.8; c: p=1 r=1/2 -> 2/3
    assert headline["macro_f1"] == round((0.5 + 0.8 + 2 / 3) / 3, 6)
    assert headline["n"] == 6
    assert rows[1] == {"label": "b", "precision": round(2 / 3, 6), "recall": 1.0, "f1": 0.8, "support": 2}


def test_a_class_with_no_example_is_left_out_of_the_macro_average():
    """Class c has no example in this split: averaged as 0 it would take a third off a perfect score."""
    headline, rows = summarise(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), ["a", "b", "c"])
    assert headline["macro_f1"] == 1.0 and headline["balanced_accuracy"] == 1.0
    # Its row says it was not scored (per_class.json showed an F1 of 0.0 that macro-F1 did not count).
    assert rows[2] == {"label": "c", "precision": None, "recall": None, "f1": None, "support": 0}
    # Predicting the absent class still costs the true class its recall (a: F1 2/3), and that class's
    # precision is then defined: 0.
    headline, rows = summarise(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1]), ["a", "b", "c"])
    assert headline["macro_f1"] == round((2 / 3 + 1.0) / 2, 6)
    assert rows[2] == {"label": "c", "precision": 0.0, "recall": None, "f1": None, "support": 0}
    # A class in the split the model never names: precision 0 as before (F1 0 counts in macro-F1).
    _, rows = summarise(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0]), ["a", "b"])
    assert rows[1] == {"label": "b", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}


def test_confusion_records_and_matrix():
    records = confusion_records(np.array([0, 1]), np.array([1, 1]), ["a", "b"])
    assert records == [{"actual": "a", "predicted": "b"}, {"actual": "b", "predicted": "b"}]
    assert confusion_matrix(np.array([0, 1, 1]), np.array([1, 1, 0]), 2).tolist() == [[0, 1], [1, 1]]
    # A class that appears in neither array still has its row and column.
    assert confusion_matrix(np.array([0, 0]), np.array([0, 2]), 3).tolist() == [[1, 0, 1], [0, 0, 0], [0, 0, 0]]


def test_empty_split():
    headline, rows = summarise(np.zeros(0, int), np.zeros(0, int), ["a"])
    assert headline["n"] == 0 and rows == []


@pytest.mark.parametrize("kind", ["mahalanobis", "cosine"])
def test_novelty_ranks_a_held_out_class_above_known_ones(kind):
    from musicid.metrics import open_set_metrics
    from musicid.novelty import Mahalanobis, cosine_scores

    rng = np.random.default_rng(0)
    centroids = np.eye(3)[:2]  # two known classes along the first two axes
    tracks, embeddings, unknown_tracks = [], [], set()
    for track in range(12):
        axis = track % 3  # class 2 (the third axis) was never trained on
        clips = np.eye(3)[axis] + 0.2 * rng.standard_normal((4, 3))
        embeddings.append(clips / np.linalg.norm(clips, axis=1, keepdims=True))
        tracks += [f"t{track:02d}"] * 4
        if axis == 2:
            unknown_tracks.add(f"t{track:02d}")
    embeddings, tracks = np.concatenate(embeddings), np.array(tracks)
    known = np.array([track not in unknown_tracks for track in tracks])
    # Fitted on the known classes' clips, as the train stage fits it on the training split.
    mahalanobis = Mahalanobis.fit(embeddings[known], embeddings[known].argmax(axis=1))
    if kind == "mahalanobis":
        names, scores = mahalanobis.track_scores(embeddings, tracks)
    else:
        names, scores = cosine_scores(embeddings, tracks, centroids)
    unknown = np.array([name in unknown_tracks for name in names])
    assert scores[unknown].min() > scores[~unknown].max()
    result = open_set_metrics(scores, unknown)
    assert result == {"auroc": 1.0, "fpr_at_95_tpr": 0.0, "n_known": 8, "n_unknown": 4}


def test_mahalanobis_weighs_directions_by_how_known_music_varies():
    from musicid.novelty import Mahalanobis, cosine_scores

    rng = np.random.default_rng(1)
    # Two known classes that vary widely along axis 2 and hardly along axis 3.
    means = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    spread = np.array([0.02, 0.02, 0.4, 0.02])
    labels = np.repeat([0, 1], 200)
    training = means[labels] + spread * rng.standard_normal((400, 4))
    model = Mahalanobis.fit(training, labels)
    assert np.allclose(model.class_means, means, atol=0.08)
    # A known track far out along the usual direction, and a new one a little off along the unusual one.
    tracks = np.array(["known", "new"])
    means_of_tracks = np.array([[1.0, 0, 0.6, 0], [1.0, 0, 0, 0.2]])
    _, distance = model.track_scores(means_of_tracks, tracks)
    assert distance[1] > 2 * distance[0]
    # The cosine score ranks them the other way round.
    _, cosine = cosine_scores(means_of_tracks, tracks, means)
    assert cosine[0] > cosine[1]


def test_mahalanobis_covariance_is_around_each_class_mean():
    from musicid.novelty import Mahalanobis

    rng = np.random.default_rng(2)
    labels = [0, 0, 0, 0, 2, 2, 2, 2]  # class 1 has no training clips; a plain list is fine
    embeddings = 0.01 * rng.standard_normal((8, 3)) + np.where(np.array(labels)[:, None] == 0, 5.0, -5.0)
    model = Mahalanobis.fit(embeddings, labels)
    assert np.allclose(model.class_means, [embeddings[:4].mean(0), embeddings[4:].mean(0)])
    assert not model.euclidean
    # Residuals around the class means are about 0.01, so a unit step is far, even along the
    # direction that separates the classes (around the global mean it would look near).
    step = np.ones((1, 3)) / np.sqrt(3)
    _, (distance,) = model.track_scores(model.class_means[:1] + step, np.array(["t"]))
    assert distance > 20


def test_mahalanobis_without_a_spread_falls_back_to_plain_distance():
    from musicid.novelty import Mahalanobis

    # One clip per class: no spread to estimate a covariance from.
    model = Mahalanobis.fit(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]))
    assert model.euclidean and np.array_equal(model.precision, np.eye(2))
    _, (distance,) = model.track_scores(np.array([[1.0, 3.0]]), np.array(["t"]))
    assert distance == pytest.approx(np.sqrt(1.0 + 4.0))  # to (0, 1)
    with pytest.raises(ValueError, match="needs training clips"):
        Mahalanobis.fit(np.zeros((0, 2)), np.zeros(0, int))


def test_open_set_metrics_exact():
    from musicid.metrics import open_set_metrics

    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    unknown = np.array([True, False, True, False, False])
    # Pairs (unknown, known) ranked right: 0.9 beats all 3; 0.7 beats 2 of 3 -> 5/6.
    result = open_set_metrics(scores, unknown)
    assert result["auroc"] == round(5 / 6, 6)
    # Flagging 95 % of the unknown tracks needs the threshold at 0.7: 1 of 3 known is above.
    assert result["fpr_at_95_tpr"] == round(1 / 3, 6)


def test_figures_are_written_and_deterministic(tmp_path):
    from musicid.figures import save_confusion_png, save_embedding_png

    save_confusion_png(tmp_path / "a.png", np.array([[3, 1], [0, 4]]), ["x", "y"], "test")
    save_confusion_png(tmp_path / "b.png", np.array([[3, 1], [0, 4]]), ["x", "y"], "test")
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    points = np.random.default_rng(0).standard_normal((20, 5))
    save_embedding_png(tmp_path / "e.png", points, ["p"] * 10 + ["q"] * 10, "map")
    assert (tmp_path / "e.png").stat().st_size > 1000
    save_embedding_png(tmp_path / "f.png", points, ["p"] * 10 + ["q"] * 10, "map")
    assert (tmp_path / "e.png").read_bytes() == (tmp_path / "f.png").read_bytes()


def test_long_labels_are_shortened_in_figures_without_layout_warnings(tmp_path):
    import warnings

    from musicid.figures import save_confusion_png, save_embedding_png, shown_names

    names = ["baroque_" + "a" * 200, "baroque_" + "b" * 200, "c"]
    shown = shown_names(names)
    assert shown["c"] == "c" and all(len(shown[name]) == 31 for name in names[:2])
    assert shown[names[0]].startswith("baroque_") and shown[names[0]].endswith("a" * 15)
    clash = ["x" * 20 + "A" + "x" * 20, "x" * 20 + "B" + "x" * 20]  # only their middles differ
    assert shown_names(clash) == {name: name for name in clash}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "Tight layout not applied" would fail the test
        save_confusion_png(tmp_path / "c.png", np.eye(3, dtype=int) * 3, names, "test")
        points = np.random.default_rng(0).standard_normal((30, 4))
        save_embedding_png(tmp_path / "e.png", points, [names[i % 3] for i in range(30)], "map")
    assert (tmp_path / "c.png").stat().st_size > 1000 and (tmp_path / "e.png").stat().st_size > 1000


def test_pca_2d_finds_the_plane_and_orders_its_axes_by_spread():
    from musicid.figures import pca_2d

    # Four points in a plane of 5-D space: spread 3 along its first axis, 1 along its second.
    plane = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    axes, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((5, 2)))  # orthonormal [5, 2]
    axes *= np.sign(axes[np.abs(axes).argmax(axis=0), [0, 1]])  # largest loading positive, as pca_2d fixes it
    points = plane @ axes.T + np.array([10.0, -2.0, 0.5, 7.0, 1.0])  # anywhere in space
    assert np.allclose(pca_2d(points), plane, atol=1e-9)
    # The axes' signs come from the axes, not from the points: mirrored points give a mirrored map.
    assert np.allclose(pca_2d(2 * points.mean(axis=0) - points), -plane, atol=1e-9)


def test_log_mean_pooling_multiplies_the_evidence_of_the_clips():
    # Track t: three clips mildly for class 0, one that all but rules it out.
    probabilities = np.array([[0.7, 0.3], [0.7, 0.3], [0.7, 0.3], [0.001, 0.999], [0.5, 0.5]])
    tracks = np.array(["t", "t", "t", "t", "u"])
    names, mean = pool(probabilities, tracks, "mean")
    assert names.tolist() == ["t", "u"] and mean[0].argmax() == 0  # (2.1 + 0.001) / 4 > 0.5
    _, log_mean = pool(probabilities, tracks, "log_mean")
    assert log_mean[0].argmax() == 1
    assert np.allclose(log_mean.sum(axis=1), 1.0) and np.allclose(log_mean[1], [0.5, 0.5])
    # A probability of exactly 0 is floored (1e-6): no NaN, and enough clips that agree outweigh it.
    _, floored = pool(np.array([[0.0, 1.0]] + [[0.9, 0.1]] * 7), np.array(["t"] * 8), "log_mean")
    assert np.isfinite(floored).all() and floored[0].argmax() == 0

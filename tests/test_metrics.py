import numpy as np

from musicid.metrics import confusion_matrix, confusion_records, summarise, track_probabilities


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


def test_confusion_records_and_matrix():
    records = confusion_records(np.array([0, 1]), np.array([1, 1]), ["a", "b"])
    assert records == [{"actual": "a", "predicted": "b"}, {"actual": "b", "predicted": "b"}]
    assert confusion_matrix(np.array([0, 1, 1]), np.array([1, 1, 0]), 2).tolist() == [[0, 1], [1, 1]]


def test_empty_split():
    headline, rows = summarise(np.zeros(0, int), np.zeros(0, int), ["a"])
    assert headline["n"] == 0 and rows == []

"""evaluate.clip_audio: a MIDI clip's own answer mixes the model's answer with its notes and from its audio alone;
a track's answer pools the answers with the notes, whatever the share."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import yaml

from musicid.h5 import read_strings
from musicid.metrics import clip_answers, macro_f1
from musicid.params import ParamsError
from musicid.training import (class_probabilities, load_checkpoint, normalise, read_symbolic_input, to_numpy)
from tests.conftest import section_params
from tests.test_symbolic_model import EVALUATE, params  # noqa: F401  (params: a fixture)
from tests.test_track_prior import train_small


def test_a_clip_with_notes_takes_the_share_of_its_audio_and_one_without_keeps_its_answer():
    with_notes = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    alone = np.array([[0.1, 0.9], [0.0, 1.0], [0.7, 0.3]])
    has_notes = np.array([True, True, False])
    mixed = clip_answers(with_notes, alone, has_notes, 0.5)
    np.testing.assert_allclose(mixed, [[0.5, 0.5], [0.3, 0.7], [0.2, 0.8]])
    assert mixed[1].argmax() == 1 and with_notes[1].argmax() == 0  # the audio's opinion turned the second clip
    np.testing.assert_allclose(clip_answers(with_notes, alone, has_notes, 1.0)[:2], alone[:2])
    for share, notes in ((0.0, has_notes), (0.5, np.zeros(3, bool))):
        unchanged = clip_answers(with_notes, alone, notes, share)
        assert unchanged.dtype == np.float64 and np.array_equal(unchanged, with_notes)


@pytest.mark.parametrize("value, message", [
    (1.5, r"evaluate\.clip_audio must be <= 1, got 1\.5"),
    (-0.25, r"evaluate\.clip_audio must be >= 0, got -0\.25"),
    ("half", r"evaluate\.clip_audio must be a number, got 'half'"),
])
def test_a_share_out_of_range_is_named(value, message):
    with pytest.raises(ParamsError, match=message):
        section_params("evaluate", clip_audio=value)


def read_test_clips(tmp_path, checkpoint) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normalised features, symbolic input, labels) of the tiny table's test clips, as evaluate reads them."""
    with h5py.File(tmp_path / "features.h5", "r") as table:
        rows = np.nonzero(read_strings(table["split"]) == "test")[0]
        features = normalise(table["features"][rows], to_numpy(checkpoint["band_mean"]),
                             to_numpy(checkpoint["band_std"]))
        symbolic = read_symbolic_input(table, rows, to_numpy(checkpoint["symbolic_mean"]),
                                       to_numpy(checkpoint["symbolic_std"]))
        return features, symbolic, table["label"][rows].astype(np.int64)


def test_evaluate_mixes_the_clips_answers_and_pools_the_tracks_with_their_notes(tmp_path, params, monkeypatch):
    """The tiny table's classes differ in their notes only (the audio is noise): with the notes the model names
    most test clips right, by the audio alone about half; the clip figures follow the share, the track figures
    and predictions.csv do not."""
    _, evaluate = train_small(tmp_path, params, monkeypatch)
    model, checkpoint = load_checkpoint(tmp_path / "model.pt")
    features, symbolic, labels = read_test_clips(tmp_path, checkpoint)
    centroids = to_numpy(checkpoint["centroids"])
    with_notes = class_probabilities(model, features, centroids, 4, torch_cpu(), symbolic)[0]
    alone = class_probabilities(model, features, centroids, 4, torch_cpu())[0]
    has_notes = symbolic[:, -1] > 0
    assert has_notes.sum() == len(labels) - 1  # the table's last clip has no notes

    written, tracks, predictions = {}, {}, {}
    for share in (0.0, 0.5, 1.0):
        document = yaml.safe_load(params.read_text())
        document["evaluate"]["clip_audio"] = share
        params.write_text(yaml.safe_dump(document))
        assert EVALUATE.main(evaluate) == 0
        metrics = json.loads((tmp_path / "metrics.json").read_text())
        written[share] = metrics["test"]["clip"]["macro_f1"]
        tracks[share] = metrics["test"]["track"]
        predictions[share] = (tmp_path / "predictions.csv").read_bytes()
        expected = macro_f1(labels, clip_answers(with_notes, alone, has_notes, share).argmax(1))
        assert written[share] == pytest.approx(expected, abs=1e-6)
        answers = json.loads((tmp_path / "per_class.json").read_text())["test"]["clip_answers"]
        assert answers == {"clip_audio": share,
                           "with_notes": pytest.approx(macro_f1(labels, with_notes.argmax(1)), abs=1e-6),
                           "audio_alone": pytest.approx(macro_f1(labels, alone.argmax(1)), abs=1e-6)}
    assert written[0.0] > written[1.0]  # the notes tell these classes apart, the noise does not
    assert tracks[0.0] == tracks[0.5] == tracks[1.0]
    assert predictions[0.0] == predictions[0.5] == predictions[1.0]


def test_a_triplet_models_clip_by_its_audio_alone_is_named_by_the_notes_less_centroids(tmp_path, params,
                                                                                       monkeypatch):
    """A model trained with the triplet loss alone names a class by the nearest centroid: a clip's audio alone by
    the centroids of the training clips embedded without their notes, as an audio file's clip. (On this table the
    other centroids happen to name the clips' audio the same way, so the test holds evaluate to the computation,
    not to the choice of centroids alone.)"""
    from musicid.training import AUDIO_ONLY

    _, evaluate = train_small(tmp_path, params, monkeypatch, loss="triplet", track_prior=0.0)
    model, checkpoint = load_checkpoint(tmp_path / "model.pt")
    assert not model.uses_classifier
    features, symbolic, labels = read_test_clips(tmp_path, checkpoint)
    has_notes = symbolic[:, -1] > 0
    own = to_numpy(checkpoint[f"{AUDIO_ONLY}centroids"])
    assert not np.array_equal(own, to_numpy(checkpoint["centroids"]))
    alone = class_probabilities(model, features, own, 4, torch_cpu())[0]
    document = yaml.safe_load(params.read_text())
    document["evaluate"]["clip_audio"] = 1.0
    params.write_text(yaml.safe_dump(document))
    assert EVALUATE.main(evaluate) == 0
    with_notes = class_probabilities(model, features, to_numpy(checkpoint["centroids"]), 4, torch_cpu(), symbolic)[0]
    written = json.loads((tmp_path / "metrics.json").read_text())["test"]["clip"]["macro_f1"]
    assert written == pytest.approx(macro_f1(labels, clip_answers(with_notes, alone, has_notes, 1.0).argmax(1)),
                                    abs=1e-6)
    assert written != pytest.approx(macro_f1(labels, with_notes.argmax(1)), abs=1e-6)  # the audio's answers, not these


def torch_cpu():
    import torch

    return torch.device("cpu")


@pytest.fixture
def symbolic_suite_folder(tmp_path, params, monkeypatch):  # noqa: F811
    """A task folder as composer_quality.py leaves it, of the tiny table with notes: fold 0 of `default`."""
    from tests.test_evaluate_stage import outputs
    from tests.test_track_pooling import symbolic_suite_run

    run, table = symbolic_suite_run(tmp_path, params, monkeypatch, test_clips=12)
    assert EVALUATE.main(outputs(run, run / "params.yaml", features=table)) == 0
    return tmp_path


def test_the_script_scores_a_suite_runs_clips_as_evaluate_did(symbolic_suite_folder, capsys):
    from tests.conftest import load_benchmark
    from tests.test_seed_ensemble import table_row

    script = load_benchmark("clip_answers")
    run = symbolic_suite_folder / "task" / "default" / "fold0" / "run0"
    metrics = json.loads((run / "metrics.json").read_text())
    answers = json.loads((run / "per_class.json").read_text())["test"]["clip_answers"]
    assert answers["clip_audio"] == 0.5 and answers["with_notes"] != answers["audio_alone"]
    arguments = ["--out", str(symbolic_suite_folder), "--tasks", "task", "--shares", "0.5", "1"]
    assert script.main(arguments) == 0  # exits if its clip or track figure differs from metrics.json
    rows = {table_row(line)[1]: table_row(line) for line in capsys.readouterr().out.splitlines()[2:]}  # no header
    assert set(rows) == {"0", "0.5", "1"}  # 0 is always scored
    assert rows["0"][2] == f"{answers['with_notes']:.3f} +- nan"  # one fold: no sd
    assert rows["0.5"][2] == f"{metrics['test']['clip']['macro_f1']:.3f} +- nan"
    assert rows["1"][2] == f"{answers['audio_alone']:.3f} +- nan"
    assert rows["0"][4] == f"{metrics['test']['track']['macro_f1']:.3f} +- nan"

    metrics["test"]["clip"]["macro_f1"] += 0.01  # a figure the scoring cannot reproduce: refused, not printed
    (run / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(SystemExit, match="clip macro-F1 .* in its metrics.json: the scoring does not match evaluate's"):
        script.main(arguments)

"""The clip and featurize stages on a tiny rendered collection made by the test."""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest
import yaml

from musicid.h5 import read_strings
from tests.conftest import PROJECT_ROOT, load_stage, sine, write_wav

CLIP = load_stage("clip")
FEATURIZE = load_stage("featurize")


@pytest.fixture
def audio(tmp_path, monkeypatch):
    """data/audio with 3 labels x 6 tracks of 5 s tones, plus a silent track, and report.json."""
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    root = tmp_path / "audio"
    files = []
    for label, base in (("a", 220.0), ("b", 330.0), ("c", 495.0)):
        for i in range(6):
            name = f"{label}/t{i}.wav"
            write_wav(root / name, sine(base * (1 + i / 12), 5.0, 8000, amplitude=0.3), 8000)
            files.append({"source": f"{label}/t{i}.mid", "label": label, "status": "rendered",
                          "reason": None, "duration_s": 5.0, "outputs": [name]})
    write_wav(root / "a/quiet.wav", np.zeros(5 * 8000, np.float32), 8000)
    files.append({"source": "a/quiet.mid", "label": "a", "status": "rendered", "reason": None,
                  "duration_s": 5.0, "outputs": ["a/quiet.wav"]})
    files.append({"source": "b/bad.mid", "label": "b", "status": "rejected", "reason": "no_notes",
                  "duration_s": None, "outputs": []})
    (root / "report.json").write_text(json.dumps({"files": sorted(files, key=lambda r: r["source"])}))
    return root


def write_params(tmp_path, clip=None, split=None, features=None):
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["clip"].update({"sample_rate": 8000, "clip_seconds": 1.0, "hop_seconds": 1.0, **(clip or {})})
    params["split"].update({"val": 0.2, "test": 0.2, **(split or {})})
    params["features"].update({"n_mels": 32, "n_fft": 512, "hop_length": 256, "fmax": 4000.0,
                               "batch_size": 7, **(features or {})})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path / "params.yaml"


def run_clip(tmp_path, audio, name="clips", **params):
    path = write_params(tmp_path, **params)
    code = CLIP.main(["--params", str(path), "--audio", str(audio), "--out", str(tmp_path / f"{name}.h5"),
                      "--report", str(tmp_path / f"{name}.json"), "--jobs", "2"])
    return code, tmp_path / f"{name}.h5"


def run_featurize(tmp_path, clips, name="features", **params):
    path = write_params(tmp_path, **params)
    code = FEATURIZE.main(["--params", str(path), "--clips", str(clips), "--out", str(tmp_path / f"{name}.h5")])
    return code, tmp_path / f"{name}.h5"


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_clips_table(tmp_path, audio):
    code, clips = run_clip(tmp_path, audio, split={"holdout_classes": ["c"]})
    assert code == 0
    with h5py.File(clips, "r") as table:
        assert list(table.attrs["label_names"]) == ["a", "b", "c"]
        assert table.attrs["n_known"] == 2 and list(table.attrs["holdout_classes"]) == ["c"]
        assert table["audio"].shape == (18 * 5, 8000)  # 18 tone tracks x 5 clips; the silent one gives none
        assert table["audio"].chunks[1] == 8000 and table["audio"].compression == "gzip"
        tracks, splits = read_strings(table["track"]), read_strings(table["split"])
        labels, known = table["label"][:], table["known"][:]
        assert table["offset_s"][:5].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    for track in set(tracks):
        assert len(set(splits[tracks == track])) == 1, track
    assert set(splits[labels == 2]) == {"test"} and not known[labels == 2].any()
    assert known[labels < 2].all()
    # 6 tracks per known class: 1 val, 1 test (round(0.2 * 6) = 1), 4 train; the silent track is a's.
    report = json.loads((tmp_path / "clips.json").read_text())
    assert report["counts"]["b"] == {"train": {"tracks": 4, "clips": 20}, "val": {"tracks": 1, "clips": 5},
                                     "test": {"tracks": 1, "clips": 5}}
    assert report["counts"]["c"]["test"] == {"tracks": 6, "clips": 30}
    assert report["silent_clips_skipped"] == 5 and report["clips"] == 90


def test_clip_stage_is_deterministic(tmp_path, audio):
    _, first = run_clip(tmp_path, audio, name="one")
    _, second = run_clip(tmp_path, audio, name="two")
    assert digest(first) == digest(second)
    assert (tmp_path / "one.json").read_bytes() == (tmp_path / "two.json").read_bytes()


def test_class_cap(tmp_path, audio):
    _, clips = run_clip(tmp_path, audio, clip={"max_clips_per_class": 12, "max_clips_per_track": 0})
    with h5py.File(clips, "r") as table:
        counts = np.bincount(table["label"][:])
    # a: 7 tracks -> 1 clip each (6 with sound); b and c: 6 tracks -> 2 clips each.
    assert counts.tolist() == [6, 12, 12]


def test_bad_holdout_is_named(tmp_path, audio, capsys):
    code, _ = run_clip(tmp_path, audio, split={"holdout_classes": ["zzz"]})
    assert code == 2 and "split.holdout_classes names classes with no rendered track: ['zzz']" in capsys.readouterr().err


def test_features_table_and_train_only_statistics(tmp_path, audio):
    _, clips = run_clip(tmp_path, audio)
    code, features = run_featurize(tmp_path, clips)
    assert code == 0
    with h5py.File(features, "r") as table, h5py.File(clips, "r") as source:
        values = table["features"][:]
        assert values.shape == (90, 32, 1 + 8000 // 256)
        splits = read_strings(table["split"])
        assert np.array_equal(splits, read_strings(source["split"]))
        assert np.array_equal(read_strings(table["track"]), read_strings(source["track"]))
        train = values[splits == "train"].astype(np.float64)
        assert np.allclose(table.attrs["band_mean"], train.mean(axis=(0, 2)), atol=1e-4)
        assert np.allclose(table.attrs["band_std"], train.std(axis=(0, 2)), atol=1e-4)
        everything = values.astype(np.float64).mean(axis=(0, 2))
        assert not np.allclose(table.attrs["band_mean"], everything, atol=1e-2)
        assert json.loads(table.attrs["params"])["features"]["n_mels"] == 32


def test_featurize_is_deterministic_and_does_mfcc(tmp_path, audio):
    _, clips = run_clip(tmp_path, audio)
    _, first = run_featurize(tmp_path, clips, name="one")
    _, second = run_featurize(tmp_path, clips, name="two")
    assert digest(first) == digest(second)
    _, coefficients = run_featurize(tmp_path, clips, name="mfcc", features={"kind": "mfcc", "n_mfcc": 13})
    with h5py.File(coefficients, "r") as table:
        assert table["features"].shape == (90, 13, 32)


def test_fmax_above_nyquist_is_refused(tmp_path, audio, capsys):
    _, clips = run_clip(tmp_path, audio)
    code, _ = run_featurize(tmp_path, clips, features={"fmax": 8000.0})
    assert code == 2 and "above the clips' Nyquist frequency" in capsys.readouterr().err

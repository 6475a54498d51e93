"""The train stage's refusals, on a tiny features table the test writes itself."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import yaml

from musicid.h5 import STRING, RowWriter
from tests.conftest import PROJECT_ROOT, load_stage

TRAIN = load_stage("train")


def write_features(path, splits: list[str]) -> None:
    rng = np.random.default_rng(0)
    n = len(splits)
    with RowWriter(path, {"features": (np.float32, (8, 16)), "label": (np.int16, ()), "known": (np.bool_, ()),
                          "track": (STRING, ()), "offset_s": (np.float64, ()), "split": (STRING, ())}) as writer:
        writer.append(features=rng.standard_normal((n, 8, 16)).astype(np.float32),
                      label=np.arange(n, dtype=np.int16) % 2, known=np.ones(n, bool),
                      track=np.array([f"t{i}" for i in range(n)], dtype=object),
                      offset_s=np.zeros(n), split=np.array(splits, dtype=object))
        writer.attrs["label_names"] = ["a", "b"]
        writer.attrs["n_known"] = 2
        writer.attrs["holdout_classes"] = []
        writer.attrs["sample_rate"] = 16000
        writer.attrs["band_mean"] = np.zeros(8, np.float32)
        writer.attrs["band_std"] = np.ones(8, np.float32)
        writer.attrs["params"] = json.dumps({})


@pytest.fixture
def params(tmp_path):
    values = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    values["train"].update({"epochs": 1, "channels": [4], "embedding_dim": 4, "batch_size": 4})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def arguments(tmp_path, params) -> list[str]:
    return ["--params", str(params), "--features", str(tmp_path / "features.h5"),
            "--model", str(tmp_path / "model.pt"), "--live", str(tmp_path / "live")]


def test_an_empty_training_split_is_refused(tmp_path, params, capsys):
    write_features(tmp_path / "features.h5", ["val", "test", "test", "val"])
    assert TRAIN.main(arguments(tmp_path, params)) == 1
    assert "the training split is empty" in capsys.readouterr().err
    assert not (tmp_path / "model.pt").exists()


def test_a_repository_without_commits_is_explained(tmp_path, params, capsys, monkeypatch):
    write_features(tmp_path / "features.h5", ["train"] * 8 + ["val"] * 4)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # dvclive reads the current commit
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    assert TRAIN.main(arguments(tmp_path, params)) == 1
    assert "commit the project" in capsys.readouterr().err
    assert not (tmp_path / "model.pt").exists()

import hashlib

import h5py
import numpy as np
import pytest

from musicid.h5 import STRING, RowWriter, read_strings


def write(path):
    with RowWriter(path, {"x": (np.float32, (3,)), "name": (STRING, ()), "n": (np.int16, ())}, chunk_rows=2) as w:
        w.append(x=np.ones((2, 3), np.float32), name=["a", "b"], n=[1, 2])
        w.append(x=np.zeros((0, 3), np.float32), name=[], n=[])
        w.append(x=np.full((3, 3), 2, np.float32), name=["c", "d", "é"], n=[3, 4, 5])
        w.attrs["label_names"] = ["a", "b"]
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rows_are_appended_in_order(tmp_path):
    write(tmp_path / "t.h5")
    with h5py.File(tmp_path / "t.h5", "r") as f:
        assert f["x"].shape == (5, 3)
        assert f["x"].compression == "gzip" and f["x"].chunks == (2, 3)
        assert read_strings(f["name"]).tolist() == ["a", "b", "c", "d", "é"]
        assert f["n"][:].tolist() == [1, 2, 3, 4, 5]
        assert list(f.attrs["label_names"]) == ["a", "b"]


def test_same_rows_give_identical_bytes(tmp_path):
    assert write(tmp_path / "1.h5") == write(tmp_path / "2.h5")


def test_columns_must_match(tmp_path):
    with RowWriter(tmp_path / "t.h5", {"n": (np.int16, ())}) as w:
        with pytest.raises(ValueError, match="every column"):
            w.append(n=[1], extra=[2])

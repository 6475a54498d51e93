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
        assert f["x"].compression is None and f["x"].chunks == (2, 3)  # arrays as they are, rows chunked
        assert f["name"].compression == f["n"].compression == "gzip"
        assert read_strings(f["name"]).tolist() == ["a", "b", "c", "d", "é"]
        assert f["n"][:].tolist() == [1, 2, 3, 4, 5]
        assert list(f.attrs["label_names"]) == ["a", "b"]


def test_same_rows_give_identical_bytes(tmp_path):
    assert write(tmp_path / "1.h5") == write(tmp_path / "2.h5")


def test_columns_must_match(tmp_path):
    with RowWriter(tmp_path / "t.h5", {"n": (np.int16, ())}) as w:
        with pytest.raises(ValueError, match="every column"):
            w.append(n=[1], extra=[2])


def test_table_columns_are_defined_once():
    from musicid.h5 import clip_columns, feature_columns

    assert list(clip_columns(8000)) == ["audio", "label", "known", "track", "source", "offset_s", "split"]
    assert clip_columns(8000)["audio"] == (np.float32, (8000,))
    assert list(feature_columns(64, 126)) == ["features", "label", "known", "track", "offset_s", "split"]
    assert feature_columns(64, 126)["features"] == (np.float32, (64, 126))
    assert feature_columns(64, 126)["label"] == (np.int16, ()) and feature_columns(1, 1)["split"] == (STRING, ())


# Writes rows under a file-size limit, as a full disk would refuse them (EFBIG instead of ENOSPC).
FULL_DISK = """
import resource, signal, sys
import numpy as np
from musicid.h5 import RowWriter, WriteError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    with RowWriter(sys.argv[1], {"x": (np.float32, (4000,))}) as writer:
        for _ in range(int(sys.argv[3])):
            writer.append(x=np.random.default_rng(0).standard_normal((16, 4000)).astype(np.float32))
except WriteError as error:
    print(error)
"""


@pytest.mark.parametrize("limit, batches", [(100_000, 50), (12_000, 1)])  # fails in append / only on close
def test_a_failed_write_is_one_error_not_a_crash(tmp_path, limit, batches):
    import subprocess
    import sys

    from tests.conftest import PROJECT_ROOT

    target = tmp_path / "t.h5"
    result = subprocess.run([sys.executable, "-c", FULL_DISK, str(target), str(limit), str(batches)],
                            capture_output=True, text=True,  # no .pyc written under the limit (run_limited)
                            env={"PYTHONPATH": str(PROJECT_ROOT), "PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 0, result.stderr  # -11 was HDF5 crashing at exit on the unwritable file
    assert result.stdout == f"cannot write {target}: File too large\n"
    assert result.stderr == ""

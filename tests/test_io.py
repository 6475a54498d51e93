import json

import pytest

from musicid.io import atomic_directory, atomic_path, dumps_json, safe_name, sha256_file, write_json_atomic


def test_atomic_path_moves_into_place(tmp_path):
    target = tmp_path / "out" / "file.txt"
    with atomic_path(target) as temporary:
        temporary.write_text("hello")
        assert not target.exists()
    assert target.read_text() == "hello"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_atomic_directory_keeps_old_tree_on_error(tmp_path):
    target = tmp_path / "raw"
    target.mkdir()
    (target / "a.txt").write_text("a")
    with pytest.raises(ValueError):
        with atomic_directory(target) as staging:
            (staging / "b.txt").write_text("b")
            raise ValueError("bad")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_atomic_directory_replaces_tree(tmp_path):
    target = tmp_path / "raw"
    target.mkdir()
    (target / "a.txt").write_text("a")
    with atomic_directory(target) as staging:
        (staging / "b.txt").write_text("b")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_json_is_canonical(tmp_path):
    assert dumps_json({"b": 1, "a": [2]}) == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
    write_json_atomic(tmp_path / "x.json", {"z": 0.5})
    assert json.loads((tmp_path / "x.json").read_text()) == {"z": 0.5}
    with pytest.raises(ValueError):
        dumps_json({"nan": float("nan")})


def test_sha256_and_safe_name(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert safe_name("Credo 22/d?.krn") == "Credo_22_d_.krn"
    assert safe_name("..") == "_"

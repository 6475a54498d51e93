import json
import os
from pathlib import Path

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


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask022", "umask077"])
def test_atomic_directory_gets_the_modes_of_an_ordinary_folder(tmp_path, umask):
    """mkdtemp's private mode (0700) must not reach the output folder: it follows the umask."""
    previous = os.umask(umask)
    try:
        with atomic_directory(tmp_path / "raw") as staging:
            (staging / "sub").mkdir()
        ordinary = tmp_path / "ordinary"
        ordinary.mkdir()
    finally:
        os.umask(previous)
    assert (tmp_path / "raw").stat().st_mode & 0o777 == ordinary.stat().st_mode & 0o777 == 0o777 & ~umask


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


def test_long_names_fit_the_file_system(tmp_path):
    # 250 bytes is a legal name; the staging name beside it must still fit in 255.
    target = tmp_path / ("x" * 250 + ".wav")
    with atomic_path(target) as temporary:
        assert len(temporary.name.encode()) <= 255
        temporary.write_bytes(b"ok")
    assert target.read_bytes() == b"ok"
    folder = tmp_path / ("é" * 120)  # 240 bytes
    with atomic_directory(folder) as staging:
        (staging / "a").write_text("a")
    assert (folder / "a").read_text() == "a"


def test_safe_name_shortens_long_names_with_a_hash():
    long_a, long_b = "a" * 300 + "one", "a" * 300 + "two"
    short_a, short_b = safe_name(long_a), safe_name(long_b)
    assert len(short_a.encode()) <= 200 and short_a != short_b
    assert short_a == safe_name(long_a)  # deterministic
    assert len(safe_name("ü" * 200).encode()) <= 200
    assert safe_name("short.mid") == "short.mid"


def test_stale_staging_of_a_dead_run_is_removed(tmp_path):
    import subprocess
    import sys

    target = tmp_path / "audio"
    # A run that was killed: its staging folder carries the pid of a process that is gone.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".audio.{dead}.abcd1234.tmp"
    stale.mkdir()
    (stale / "half.wav").write_bytes(b"half")
    stale_file = tmp_path / f".clips.h5.{dead}.zz1_abcd.tmp"
    stale_file.write_bytes(b"half")
    live = tmp_path / f".audio.{os.getpid()}.live.tmp"  # a run still going (this one)
    live.mkdir()
    with atomic_directory(target) as staging:
        (staging / "a").write_text("a")
    with atomic_path(tmp_path / "clips.h5") as temporary:
        temporary.write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["audio", "clips.h5", live.name])


def test_a_dead_runs_staging_of_another_output_goes_with_the_next_output_written_beside_it(tmp_path):
    """A killed clip left data/.clips.h5.<pid>.<x>.tmp; when DVC then restored clips.h5 from its cache, no run
    of clip came to remove it. Writing any output in that folder does."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    for output in ("clips.h5", "features.h5"):  # restored by DVC from its cache
        (tmp_path / output).write_bytes(b"whole")
    (tmp_path / "raw").mkdir()
    (tmp_path / f".clips.h5.{dead}.ytmdaiij.tmp").write_bytes(b"half")
    (tmp_path / f".raw.{dead}.x1_2abcd.tmp").mkdir()
    (tmp_path / f".features.h5.{os.getpid()}.livelive.tmp").write_bytes(b"going")  # a live run's: left alone
    # A user's files: no staging name, a "pid" no process can have (beside an output of that name too), no such
    # output beside it, not a digit a pid is written with. All left alone, by this write and by clips.h5's own.
    user = [".notes.tmp", ".notes.20240607120000.draft.tmp", f".backup.{dead}.old_copy.tmp",
            ".clips.h5.20240607120000.draft.tmp", f".clips.h5.{dead}.my_notes_about_it.tmp", ".clips.h5.\u00b2.x.tmp"]
    for name in user:
        (tmp_path / name).write_bytes(b"mine")
    with atomic_directory(tmp_path / "audio") as staging:
        (staging / "a").write_text("a")
    with atomic_path(tmp_path / "clips.h5") as temporary:
        temporary.write_bytes(b"whole again")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["audio", "clips.h5", "features.h5", "raw", f".features.h5.{os.getpid()}.livelive.tmp", *user])


def test_a_stop_between_the_two_renames_of_a_folder_swap_keeps_the_previous_folder(tmp_path, monkeypatch):
    """The swap moves the old folder aside, then the new one in: a signal between the two renames left no folder
    at all (the old one aside, removed by the next run)."""
    target = tmp_path / "audio"
    target.mkdir()
    (target / "previous.wav").write_text("previous")
    real = os.replace

    def stopped_after_the_first(source, destination):
        real(source, destination)
        if Path(destination).name == ".audio.old":
            raise KeyboardInterrupt  # the stage's SIGTERM handler raises a subclass of it

    monkeypatch.setattr(os, "replace", stopped_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target) as staging:
            (staging / "new.wav").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio"]
    assert (target / "previous.wav").read_text() == "previous"

    # Killed outright there (SIGKILL): the old folder is left aside; the next run puts it back first.
    monkeypatch.setattr(os, "replace", real)
    target.rename(tmp_path / ".audio.old")
    with pytest.raises(RuntimeError):
        with atomic_directory(target):
            assert (target / "previous.wav").read_text() == "previous"
            raise RuntimeError("the next run fails too")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio"]


def test_a_full_disk_while_writing_names_the_file_it_was_for(tmp_path, monkeypatch):
    """render's one line said 'No space left on device' and nothing of which file."""
    import errno

    from musicid.io import write_bytes_atomic
    from musicid.stage import describe_os_error

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write() that fails part-way: no file name

    monkeypatch.setattr(Path, "write_bytes", full)
    target = tmp_path / "audio" / "bach" / "x.wav"
    with pytest.raises(OSError) as caught:
        write_bytes_atomic(target, b"data")
    assert describe_os_error(caught.value) == (f"{target}: No space left on device (the disk or the file size "
                                               "limit is full)")
    assert list((tmp_path / "audio" / "bach").iterdir()) == []  # nothing half-written left

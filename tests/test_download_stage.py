"""The download stage on local folders, file:// URLs and archives from a local HTTP server."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import yaml

from tests.archives import midi_bytes, tar_bytes, wav_bytes, zip_bytes
from tests.conftest import PROJECT_ROOT, load_stage
from tests.http_server import ArchiveServer


STAGE = load_stage("download")


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    monkeypatch.setenv("MUSICID_CACHE", str(tmp_path / "cache"))
    (tmp_path / "project").mkdir()
    return tmp_path


def run_stage(workspace, **dataset) -> int:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["dataset"].update({"classes": [], "max_per_class": 0, **dataset})
    (workspace / "project" / "params.yaml").write_text(yaml.safe_dump(params))
    return STAGE.main(["--params", str(workspace / "project" / "params.yaml"),
                       "--out", str(workspace / "project" / "data" / "raw"), "--jobs", "1"])


def tree(root, files: dict[str, bytes]):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def raw_files(workspace):
    raw = workspace / "project" / "data" / "raw"
    return sorted(os.path.relpath(os.path.join(d, f), raw) for d, _, fs in os.walk(raw) for f in fs)


def manifest(workspace):
    return json.loads((workspace / "project" / "data" / "raw" / "manifest.json").read_text())


def nothing_outside_raw(workspace):
    """The project holds params.yaml and data/raw only: no temporaries, no escaped files."""
    project = workspace / "project"
    assert sorted(os.listdir(project)) == ["data", "params.yaml"]
    assert os.listdir(project / "data") in (["raw"], [])


CHALLENGE = {
    "musicians/bach/one.MID": midi_bytes(60),
    "musicians/bach/deeper/two.mid": midi_bytes(61),  # label: "bach" (the first-level folder)
    "musicians/bach/three.Midi": midi_bytes(62),
    "musicians/bach/one_copy.mid": midi_bytes(60),  # duplicate under the same label
    "musicians/haydn/a.mid": midi_bytes(70),
    "musicians/haydn/shared.mid": midi_bytes(99),  # same bytes under two labels
    "musicians/mozart/shared.mid": midi_bytes(99),
    "musicians/mozart/page.mid": b"<!DOCTYPE html><html>Not found</html>",
    "musicians/mozart/tone.WAV": wav_bytes(),
    "musicians/mozart/notes.txt": b"liner notes",
    "test/unknown1.mid": midi_bytes(80),
    "test/sub/unknown2.mid": midi_bytes(81),
    "stray.mid": midi_bytes(90),
}


def test_local_folder(workspace):
    tree(workspace / "src", CHALLENGE)
    # musicians/ is the only folder beside the unlabeled one: it wraps the label folders.
    assert run_stage(workspace, source="path", path="../src", unlabeled="test") == 0
    assert raw_files(workspace) == [
        "_unlabeled/sub__unknown2.mid", "_unlabeled/unknown1.mid",
        "bach/deeper__two.mid", "bach/one.mid", "bach/three.midi",
        "haydn/a.mid", "manifest.json", "mozart/tone.wav",
    ]
    result = manifest(workspace)
    assert [r["path"] for r in result["files"]] == ["bach/deeper__two.mid", "bach/one.mid", "bach/three.midi",
                                                    "haydn/a.mid", "mozart/tone.wav"]
    first = result["files"][1]
    assert first == {"path": "bach/one.mid", "label": "bach", "size": len(midi_bytes(60)),
                     "sha256": hashlib.sha256(midi_bytes(60)).hexdigest(),
                     "origin": "../src/musicians/bach/one.MID"}
    reasons = {r["origin"].removeprefix("../src/"): r["reason"] for r in result["skipped"]}
    assert reasons == {
        "musicians/bach/one_copy.mid": "duplicate: same content as musicians/bach/one.MID",
        "musicians/haydn/shared.mid": "ambiguous_label: the same content is under haydn, mozart",
        "musicians/mozart/shared.mid": "ambiguous_label: the same content is under haydn, mozart",
        "musicians/mozart/page.mid": "content_mismatch: named .mid but looks like an HTML page",
        "musicians/mozart/notes.txt": "unsupported_type: .txt",
        "stray.mid": "no_label: the file is not inside a label folder",
    }
    assert [r["path"] for r in result["unlabeled"]] == ["_unlabeled/sub__unknown2.mid", "_unlabeled/unknown1.mid"]
    assert all(r["label"] is None for r in result["unlabeled"])
    nothing_outside_raw(workspace)


def test_same_source_twice_gives_identical_bytes(workspace):
    tree(workspace / "src", CHALLENGE)
    run_stage(workspace, source="path", path="../src", unlabeled="test")
    raw = workspace / "project" / "data" / "raw"
    first = {name: (raw / name).read_bytes() for name in raw_files(workspace)}
    run_stage(workspace, source="path", path="../src", unlabeled="test")
    assert {name: (raw / name).read_bytes() for name in raw_files(workspace)} == first


def test_classes_filter_and_cap(workspace, capsys):
    tree(workspace / "src", {f"genres/{g}/{g}.{i:05d}.wav": wav_bytes(value=0.01 * (i + 1) + (g == "rock") * 0.3)
                             for g in ("blues", "rock", "jazz") for i in range(5)})
    tree(workspace / "src", {"genres/disco/fake.wav": b"<html>404</html>"})  # a label with no usable file
    assert run_stage(workspace, source="path", path="../src", classes=["blues", "rock", "disco"],
                     max_per_class=3, seed=1) == 0
    result = manifest(workspace)
    labels = [r["label"] for r in result["files"]]
    assert labels == ["blues"] * 3 + ["rock"] * 3
    reasons = [r["reason"] for r in result["skipped"]]
    assert reasons.count("not_in_classes") == 5
    assert reasons.count("over_max_per_class: 3") == 4
    assert reasons.count("no_such_class: no usable files with this label") == 1
    # A class that is not a label of the collection at all (misspelt) stops the stage, data/raw unchanged.
    capsys.readouterr()
    assert run_stage(workspace, source="path", path="../src", classes=["blues", "rokc"]) == 2
    assert capsys.readouterr().err == ("download: dataset.classes names 'rokc' (is it 'rock'?), not a label found in "
                                       "../src: blues, disco, jazz, rock (set dataset.classes to some of these, or "
                                       "to [] to keep every label)\n")
    # Written in another case: the label is named; nothing near it: no guess.
    assert run_stage(workspace, source="path", path="../src", classes=["blues", "Jazz", "techno", "dicso"]) == 2
    assert "names 'Jazz' (is it 'jazz'?), 'techno', 'dicso' (is it 'disco'?), not a label found in ../src: blues" \
        in capsys.readouterr().err
    assert manifest(workspace) == result


def test_a_path_under_the_home_folder_is_read_as_a_shell_reads_it(workspace, monkeypatch):
    """`path: ~/music` was joined to params.yaml's folder as a folder named '~'."""
    tree(workspace / "home" / "music", CHALLENGE)
    tree(workspace / "src", CHALLENGE)
    monkeypatch.setenv("HOME", str(workspace / "home"))
    assert run_stage(workspace, source="path", path="~/music", unlabeled="test") == 0
    from_home = manifest(workspace)["files"]
    assert run_stage(workspace, source="path", path="../src", unlabeled="test") == 0
    assert [(r["path"], r["sha256"]) for r in from_home] == \
        [(r["path"], r["sha256"]) for r in manifest(workspace)["files"]] and from_home


def test_missing_folder_is_an_error(workspace, capsys):
    assert run_stage(workspace, source="path", path="../nowhere") == 2
    err = capsys.readouterr().err
    assert "is not a folder" in err and "make it absolute" not in err
    assert not (workspace / "project" / "data" / "raw").exists()


def test_a_relative_path_in_dvcs_temporary_copy_is_named_as_the_cause(tmp_path, monkeypatch, capsys):
    """A queued experiment runs in <project>/.dvc/tmp/exps/<copy>/, where '../music' is another folder."""
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    copy = tmp_path / "project" / ".dvc" / "tmp" / "exps" / "tmpq1w2e3"
    copy.mkdir(parents=True)
    (tmp_path / "music" / "bach").mkdir(parents=True)  # beside the project, where the user meant
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["dataset"].update({"source": "path", "path": "../music", "classes": [], "max_per_class": 0})
    (copy / "params.yaml").write_text(yaml.safe_dump(params))
    assert STAGE.main(["--params", str(copy / "params.yaml"), "--out", str(copy / "data" / "raw"), "--jobs", "1"]) == 2
    assert capsys.readouterr().err == (
        f"download: dataset.path '../music' is not a folder ({copy.parent / 'music'}); a queued or --temp "
        "experiment runs in a copy of the project under .dvc/tmp/exps/, where a relative dataset.path points "
        "elsewhere: make it absolute\n")
    assert not (copy / "data" / "raw").exists()


@pytest.fixture
def server():
    with ArchiveServer() as running:
        yield running


def test_web_archive(workspace, server):
    data = tar_bytes({"genres/blues/b1.wav": wav_bytes(value=0.1), "genres/jazz/j1.wav": wav_bytes(value=0.2),
                      "genres/jazz/J2.WAV": wav_bytes(value=0.3)})
    server.routes["/genres.tar.gz"] = data
    sha = hashlib.sha256(data).hexdigest()
    assert run_stage(workspace, source="url", url=f"{server.base_url}/genres.tar.gz", sha256=sha) == 0
    assert raw_files(workspace) == ["blues/b1.wav", "jazz/J2.wav", "jazz/j1.wav", "manifest.json"]
    result = manifest(workspace)
    assert result["source"] == "url" and result["sha256"] == sha
    assert result["files"][0]["origin"] == f"{server.base_url}/genres.tar.gz#genres/blues/b1.wav"
    nothing_outside_raw(workspace)


def test_wrong_hash_leaves_no_raw_folder(workspace, server, capsys):
    server.routes["/a.zip"] = zip_bytes({"x/bach/a.mid": midi_bytes()})
    assert run_stage(workspace, source="url", url=f"{server.base_url}/a.zip", sha256="0" * 64) == 1
    error = capsys.readouterr().err
    assert "dataset.sha256 is " + "0" * 64 + ", the file's is " in error
    assert hashlib.sha256(server.routes["/a.zip"]).hexdigest() in error
    nothing_outside_raw(workspace)
    assert not (workspace / "project" / "data" / "raw").exists()


def test_failed_download_keeps_the_previous_raw_folder(workspace, server):
    tree(workspace / "src", {"set/bach/a.mid": midi_bytes()})
    assert run_stage(workspace, source="path", path="../src") == 0
    before = raw_files(workspace)
    assert run_stage(workspace, source="url", url=f"{server.base_url}/missing.zip", sha256="1" * 64) == 1
    assert raw_files(workspace) == before
    nothing_outside_raw(workspace)


def test_missing_hash_prints_it_and_refuses(workspace, server, capsys):
    data = zip_bytes({"x/bach/a.mid": midi_bytes()})
    server.routes["/a.zip"] = data
    assert run_stage(workspace, source="url", url=f"{server.base_url}/a.zip", sha256=None) == 1
    assert f"dataset.sha256: {hashlib.sha256(data).hexdigest()}" in capsys.readouterr().err
    assert not (workspace / "project" / "data" / "raw").exists()
    assert run_stage(workspace, source="url", url=f"{server.base_url}/a.zip", sha256=None,
                     allow_unverified=True) == 0
    assert raw_files(workspace) == ["bach/a.mid", "manifest.json"]
    # The manifest records which archive was used, pinned or not.
    assert manifest(workspace)["sha256"] == hashlib.sha256(data).hexdigest()


def test_pooch_draws_no_progress_bar_into_a_log(workspace, server, monkeypatch):
    asked = []
    real = STAGE.fetch_archive

    def fetch_archive(*arguments, progressbar, **keywords):
        asked.append(progressbar)
        return real(*arguments, progressbar=progressbar, **keywords)

    monkeypatch.setattr(STAGE, "fetch_archive", fetch_archive)
    monkeypatch.setenv("MUSICID_PROGRESS", "1")  # bars wanted, but stderr is pytest's capture, not a terminal
    data = zip_bytes({"x/bach/a.mid": midi_bytes()})
    server.routes["/a.zip"] = data
    assert run_stage(workspace, source="url", url=f"{server.base_url}/a.zip",
                     sha256=hashlib.sha256(data).hexdigest()) == 0
    assert asked == [False]


def test_hostile_archive_members_are_refused(workspace, server):
    data = tar_bytes({"set/bach/a.mid": midi_bytes(), "../../evil.mid": midi_bytes(61),
                      "/tmp/musicid-absolute.mid": midi_bytes(62)},
                     links={"set/bach/link.mid": ("sym", "/etc/passwd")})
    server.routes["/evil.tgz"] = data
    assert run_stage(workspace, source="url", url=f"{server.base_url}/evil.tgz",
                     sha256=hashlib.sha256(data).hexdigest()) == 0
    assert raw_files(workspace) == ["bach/a.mid", "manifest.json"]
    reasons = sorted(r["reason"] for r in manifest(workspace)["skipped"])
    assert reasons == ["unsafe_member: absolute_path", "unsafe_member: path_traversal",
                       "unsafe_member: symlink"]
    assert not (workspace / "evil.mid").exists() and not os.path.exists("/tmp/musicid-absolute.mid")
    nothing_outside_raw(workspace)


def test_oversized_archive_is_refused(workspace, server, capsys):
    data = zip_bytes({"set/bach/a.wav": b"RIFF" + bytes(3_000_000)})
    server.routes["/big.zip"] = data
    assert run_stage(workspace, source="url", url=f"{server.base_url}/big.zip",
                     sha256=hashlib.sha256(data).hexdigest(), max_bytes=1_000_000) == 1
    assert "more than 1000000 bytes (dataset.max_bytes)" in capsys.readouterr().err
    nothing_outside_raw(workspace)
    assert not (workspace / "project" / "data" / "raw").exists()


def test_file_url_source(workspace):
    archive = workspace / "set.zip"
    archive.write_bytes(zip_bytes({"true/a.wav": wav_bytes(value=0.1), "false/b.wav": wav_bytes(value=0.2)}))
    assert run_stage(workspace, source="url", url=archive.as_uri(),
                     sha256=hashlib.sha256(archive.read_bytes()).hexdigest()) == 0
    assert raw_files(workspace) == ["false/b.wav", "manifest.json", "true/a.wav"]


def test_bad_params_name_the_key(workspace, capsys):
    assert run_stage(workspace, source="url", url=None) == 2
    assert "dataset.url must be set" in capsys.readouterr().err
    assert run_stage(workspace, source="url", url="ftp://x/y.zip") == 2
    assert "dataset.url must start with" in capsys.readouterr().err


def test_label_folder_named_like_the_manifest_is_refused(workspace):
    tree(workspace / "src", {"manifest.json/a.mid": midi_bytes(60), "bach/b.mid": midi_bytes(61),
                             "haydn/c.mid": midi_bytes(62)})
    assert run_stage(workspace, source="path", path="../src") == 0
    assert raw_files(workspace) == ["bach/b.mid", "haydn/c.mid", "manifest.json"]
    assert [(r["origin"], r["reason"].split(":")[0]) for r in manifest(workspace)["skipped"]] == [
        ("../src/manifest.json/", "reserved_label")]


def test_fifo_named_mid_does_not_hang_the_stage(workspace):
    import subprocess
    import sys

    tree(workspace / "src", {"bach/a.mid": midi_bytes(60), "haydn/b.mid": midi_bytes(61)})
    os.mkfifo(workspace / "src" / "bach" / "pipe.mid")
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["dataset"].update({"source": "path", "path": "../src", "classes": [], "max_per_class": 0})
    (workspace / "project" / "params.yaml").write_text(yaml.safe_dump(params))
    # A subprocess with a deadline: a stage that blocks on the FIFO is killed and the test fails.
    completed = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "stages" / "download.py"), "--params",
         str(workspace / "project" / "params.yaml"), "--out", str(workspace / "project" / "data" / "raw"),
         "--jobs", "1"],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "MUSICID_PROGRESS": "0"},
        capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert raw_files(workspace) == ["bach/a.mid", "haydn/b.mid", "manifest.json"]
    assert [(r["origin"], r["reason"]) for r in manifest(workspace)["skipped"]] == [
        ("../src/bach/pipe.mid", "not_a_regular_file: a FIFO")]


def test_classes_naming_no_label_stop_and_keep_the_old_raw_folder(workspace, capsys):
    tree(workspace / "old", {"set/bach/a.mid": midi_bytes()})
    assert run_stage(workspace, source="path", path="../old") == 0
    before = {name: (workspace / "project" / "data" / "raw" / name).read_bytes() for name in raw_files(workspace)}
    capsys.readouterr()
    tree(workspace / "src", {"jazz/a.wav": wav_bytes(value=0.1), "rock/b.wav": wav_bytes(value=0.2)})
    assert run_stage(workspace, source="path", path="../src", classes=["bach", "monteverdi"]) == 2
    error = capsys.readouterr().err
    assert error == ("download: dataset.classes [bach, monteverdi] names none of the labels found in ../src: "
                     "jazz, rock (set dataset.classes to [] to keep every label, or to some of these)\n")
    assert {name: (workspace / "project" / "data" / "raw" / name).read_bytes()
            for name in raw_files(workspace)} == before
    nothing_outside_raw(workspace)


def test_no_labelled_file_stops_naming_the_source_param(workspace, capsys):
    tree(workspace / "src", {"stray.mid": midi_bytes(), "bach/page.mid": b"<html>Not found</html>",
                             "test/u.mid": midi_bytes(62)})
    assert run_stage(workspace, source="path", path="../src", unlabeled="test") == 1
    error = capsys.readouterr().err
    assert error == ("download: no labelled file kept from ../src (skipped: content_mismatch 1, no_label 1); "
                     "dataset.path must hold <label>/<files> folders of MIDI or audio files\n")
    assert not (workspace / "project" / "data" / "raw").exists()
    nothing_outside_raw(workspace)


def odd_tar(path, members: dict[str, bytes], special: dict[str, int]):
    """A tar of regular ``members`` and ``special`` ones: name -> tarfile type (DIRTYPE, FIFOTYPE, ...)."""
    import io
    import tarfile

    with tarfile.open(path, "w") as archive:
        for name, kind in special.items():
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "bach"
            archive.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_archive_with_odd_members(workspace):
    import tarfile

    archive = workspace / "odd.tar"
    odd_tar(archive, {"manifest.json": b'{"files": []}', "set/bach/a.mid": midi_bytes(60),
                      "set/haydn/b.mid": midi_bytes(61), "set/report.json/c.mid": midi_bytes(62),
                      "set/bach/x.mid/d.mid": midi_bytes(63)},
            {"set/bach/x.mid/": tarfile.DIRTYPE, "set/bach/pipe.mid": tarfile.FIFOTYPE,
             "set/haydn/dev.mid": tarfile.CHRTYPE, "set/mozart": tarfile.SYMTYPE})
    url = archive.as_uri()
    assert run_stage(workspace, source="url", url=url,
                     sha256=hashlib.sha256(archive.read_bytes()).hexdigest()) == 0
    assert raw_files(workspace) == ["bach/a.mid", "bach/x.mid__d.mid", "haydn/b.mid", "manifest.json"]
    result = manifest(workspace)
    assert json.loads((workspace / "project" / "data" / "raw" / "manifest.json").read_text()) == result
    assert [(r["origin"].removeprefix(url + "#"), r["reason"]) for r in result["skipped"]] == [
        ("manifest.json", "unsupported_type: .json"),
        ("set/bach/pipe.mid", "unsafe_member: special_file"),
        ("set/haydn/dev.mid", "unsafe_member: special_file"),
        ("set/mozart", "unsafe_member: symlink"),
        ("set/report.json/",
         "reserved_label: manifest.json, report.json and _unlabeled are written by the pipeline"),
    ]
    nothing_outside_raw(workspace)


def test_a_label_whose_every_file_is_skipped_is_named(workspace, capsys):
    """With every label kept (dataset.classes []), a folder of files none of which is usable (only .ape, or
    a page saved as .wav) is named in the manifest and in a warning, not only counted among the skipped."""
    tree(workspace / "src", {f"{label}/{i}.wav": wav_bytes(value=0.01 * (i + 1) + 0.3 * (label == "z"))
                             for label in ("y", "z") for i in range(2)})
    tree(workspace / "src", {"x/a.ape": b"MAC \x96\x0f", "x/b.shn": b"ajkg\x02\x00",
                             "w/page.wav": b"<html>404</html>"})
    (workspace / "src" / "v").mkdir()
    (workspace / "src" / "Y Z").mkdir()  # empty, but merged into the label y, which has files: no loss
    assert run_stage(workspace, source="path", path="../src", labels={"Y Z": "y"}) == 0
    result = manifest(workspace)
    assert sorted({r["label"] for r in result["files"]}) == ["y", "z"]
    lost = sorted((r["label"], r["origin"]) for r in result["skipped"] if r["reason"].startswith("no_such_class"))
    assert lost == [("w", "../src/"), ("x", "../src/")]  # the empty folder v has its empty_folder record
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "download: warning: no file of label v was kept (empty_folder 1): it is not a class of this run (see the "
        "manifest's skipped)",
        "download: warning: no file of label w was kept (content_mismatch 1): it is not a class of this run (see "
        "the manifest's skipped)",
        "download: warning: no file of label x was kept (unsupported_type 2): it is not a class of this run (see "
        "the manifest's skipped)"]


def test_music_under_another_kinds_extension_is_kept_under_its_own(workspace, tmp_path):
    """An MP3 named .wav, a WAV named .mp3, a MIDI file named .wav: each is kept under the extension of what it
    holds (render reads files by it), with why in the manifest; a page saved as .wav is still refused, and an
    MP3 named .wav beside the same piece's FLAC is the same work (the FLAC, lossless, kept)."""
    import io

    import numpy as np
    import soundfile

    def encoded(value: float, format: str) -> bytes:
        buffer = io.BytesIO()
        soundfile.write(buffer, value * np.sin(np.arange(22050) / 7), 22050, format=format)
        return buffer.getvalue()

    tree(workspace / "src", {"a/song.wav": encoded(0.3, "MP3"), "a/take.mp3": wav_bytes(value=0.2),
                             "a/piece.wav": midi_bytes(62), "a/page.wav": b"<html>404</html>",
                             "b/twin.wav": encoded(0.4, "MP3"), "b/twin.flac": encoded(0.4, "FLAC"),
                             "b/other.opus": encoded(0.1, "OGG")})
    assert run_stage(workspace, source="path", path="../src") == 0
    result = manifest(workspace)
    assert {r["path"]: r.get("renamed") for r in result["files"]} == {
        "a/piece.mid": "named .wav but looks like MIDI data: kept as .mid",
        "a/song.mp3": "named .wav but looks like MP3 audio: kept as .mp3",
        "a/take.wav": "named .mp3 but looks like WAV audio: kept as .wav",
        "b/other.opus": None, "b/twin.flac": None}
    raw = workspace / "project" / "data" / "raw"
    assert (raw / "a" / "song.mp3").read_bytes() == (workspace / "src" / "a" / "song.wav").read_bytes()
    assert {r["origin"].removeprefix("../src/"): r["reason"] for r in result["skipped"]} == {
        "a/page.wav": "content_mismatch: named .wav but looks like an HTML page",
        "b/twin.wav": "same_work: kept b/twin.flac"}


def test_a_collection_inside_the_project_that_git_does_not_ignore_is_warned_of(workspace, capsys):
    """`dvc exp run` / `dvc exp apply` keep untracked files of the work tree in git and write them back as
    plain files: a collection kept there loses its links and permissions. Ignored, or outside: no warning."""
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    project = workspace / "project"
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    songs = {f"{label}/{i}.wav": wav_bytes(value=0.01 * (i + 1) + 0.3 * (label == "z")) for label in ("y", "z")
             for i in range(2)}
    tree(project / "mycoll", songs)
    tree(workspace / "outside", songs)
    warning = ("download: warning: dataset.path 'mycoll' is inside the project and neither ignored nor tracked by "
               "git: `dvc exp run` and `dvc exp apply` keep such files in git and write them back as plain files (a "
               "link becomes a file, permissions change); list /mycoll/ in .gitignore, or keep the collection "
               "outside the project")
    assert run_stage(workspace, source="path", path="mycoll") == 0
    assert capsys.readouterr().err.splitlines() == [warning]
    (project / "mycoll" / ".gitignore").write_text("*\n")  # ignored from inside: nothing for DVC to stash
    assert run_stage(workspace, source="path", path="mycoll") == 0
    (project / "mycoll" / ".gitignore").unlink()
    (project / ".gitignore").write_text("/mycoll/\n")
    assert run_stage(workspace, source="path", path="mycoll") == 0
    assert run_stage(workspace, source="path", path="../outside") == 0
    assert capsys.readouterr().err == ""


def test_a_path_at_one_labels_folder_is_warned_of(workspace, capsys):
    """dataset.path pointing at a label's folder (bach/) by mistake: its sub-folder is taken for the one label and
    its files for unlabelled ones; the model needs two labels, so download says so, not clip after render."""
    tree(workspace / "src", {"bach/Chorales/one.mid": midi_bytes(60), "bach/Chorales/two.mid": midi_bytes(62),
                             "bach/three.mid": midi_bytes(64), "mozart/a.mid": midi_bytes(65)})
    assert run_stage(workspace, source="path", path="../src/bach") == 0
    assert capsys.readouterr().err.splitlines() == [
        "download: warning: every file kept is of one label, Chorales, and the model needs two or more (a "
        "collection holds a folder for each label, <label>/<file>: is dataset.path one label's folder rather than "
        "the folder holding them?)"]
    assert run_stage(workspace, source="path", path="../src") == 0  # two labels: no warning
    assert capsys.readouterr().err == ""


def test_one_label_left_by_dataset_classes_is_said_so(workspace, capsys):
    tree(workspace / "src", {"bach/one.mid": midi_bytes(60), "mozart/a.mid": midi_bytes(65)})
    assert run_stage(workspace, source="path", path="../src", classes=["bach"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "download: warning: every file kept is of one label, bach, and the model needs two or more "
        "(dataset.classes names one)"]


def test_one_label_left_when_the_other_classes_files_are_all_bad_is_said_so(workspace, capsys):
    """dataset.classes names two, but every file of one of them is skipped (here an HTML page saved as .mid):
    the warning for that label comes first, then the one-label warning points back at it."""
    tree(workspace / "src", {"bach/one.mid": midi_bytes(60), "mozart/page.mid": b"<!DOCTYPE html><html></html>"})
    assert run_stage(workspace, source="path", path="../src", classes=["bach", "mozart"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "download: warning: no file of label mozart was kept",
        "download: warning: every file kept is of one label, bach, and the model needs two or more"]
    assert lines[1].endswith("(the other classes' files were all left out: see the warnings above and the "
                             "manifest's skipped)")


def test_an_archive_of_one_label_is_warned_of(workspace, capsys):
    """An archive whose files all sit under one label folder: the warning says what a collection holds, without
    the question about dataset.path (which a url source does not have)."""
    archive = workspace / "set.zip"
    archive.write_bytes(zip_bytes({"true/a.wav": wav_bytes(value=0.1), "true/b.wav": wav_bytes(value=0.2)}))
    assert run_stage(workspace, source="url", url=archive.as_uri(),
                     sha256=hashlib.sha256(archive.read_bytes()).hexdigest()) == 0
    assert capsys.readouterr().err.splitlines() == [
        "download: warning: every file kept is of one label, true, and the model needs two or more (a collection "
        "holds a folder for each label, <label>/<file>)"]


def test_two_versions_of_one_work_in_a_collection_are_one_work_to_the_split(workspace, capsys):
    """The same pitches in other note values and another key under another name (an edition, a performance of
    the score): both stay, each a track, marked as one work; a third piece is no work's. Under two labels, the
    work goes as ambiguous."""
    from tests.archives import parts_midi, tune

    tree(workspace / "src", {"bach/BWV 1.mid": parts_midi([tune(1), tune(2)]),
                             "bach/bwv1 (old edition).mid": parts_midi([tune(1), tune(2)], beat=0.3, transpose=-3),
                             "bach/BWV 2.mid": parts_midi([tune(3), tune(4)]),
                             "mozart/K1.mid": parts_midi([tune(5), tune(6)])})
    assert run_stage(workspace, source="path", path="../src") == 0
    files = {record["origin"]: record for record in manifest(workspace)["files"]}
    first = files["../src/bach/BWV 1.mid"]["path"]
    assert {origin: record.get("work") for origin, record in files.items()} == {
        "../src/bach/BWV 1.mid": first, "../src/bach/bwv1 (old edition).mid": first, "../src/bach/BWV 2.mid": None,
        "../src/mozart/K1.mid": None}
    assert manifest(workspace)["skipped"] == []
    assert "download: 4 files kept (bach 3, mozart 1), 2 of them versions of 1 work, 0 skipped" in \
        capsys.readouterr().out

    (workspace / "src/mozart/K1.mid").write_bytes(parts_midi([tune(2), tune(1)], beat=0.7))  # Bach's, parts swapped
    assert run_stage(workspace, source="path", path="../src", classes=["bach", "mozart"]) == 0
    assert sorted((r["origin"], r["reason"].split(" (")[0]) for r in manifest(workspace)["skipped"]
                  if r["reason"].startswith("ambiguous_label")) == [
        # each named with the closest version under the other label (the first by name of equals)
        ("../src/bach/BWV 1.mid", "ambiguous_label: a version of mozart/K1.mid"),
        ("../src/bach/bwv1 (old edition).mid", "ambiguous_label: a version of mozart/K1.mid"),
        ("../src/mozart/K1.mid", "ambiguous_label: a version of bach/BWV 1.mid")]

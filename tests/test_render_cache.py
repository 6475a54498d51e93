"""The render stage's per-source cache: only changed sources render, and the output is that of a run from scratch."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from musicid import render_cache
from tests.conftest import write_midi
from tests.test_render_stage import manifest, raw, run  # noqa: F401 - raw is a fixture used by name


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("MUSICID_RENDER_CACHE", str(folder))
    monkeypatch.delenv("MUSICID_NO_CACHE", raising=False)
    return folder


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def from_scratch(tmp_path, raw, monkeypatch, name="scratch", **render):
    monkeypatch.setenv("MUSICID_NO_CACHE", "1")
    assert run(tmp_path, raw, out_name=name, **render) == 0
    monkeypatch.delenv("MUSICID_NO_CACHE")
    return files_of(tmp_path / name)


def sources(raw: Path) -> list[str]:
    return sorted(str(p.relative_to(raw)) for p in raw.rglob("*") if p.is_file() and p.name != "manifest.json")


def test_adding_a_file_renders_only_that_file_and_gives_the_output_of_a_run_from_scratch(
        tmp_path, raw, cache, monkeypatch, capsys):
    assert run(tmp_path, raw, out_name="first") == 0
    first = capsys.readouterr().out
    assert "; 0 of 5 from the render cache" in first and "x real time" in first
    # All from the cache: no rendering speed to speak of (it said "14000x real time").
    assert run(tmp_path, raw, out_name="again") == 0
    again = capsys.readouterr().out
    assert "; 5 of 5 from the render cache" in again and "real time" not in again
    write_midi(raw / "a" / "added.mid", [(72, 0.0, 1.0)])
    manifest(raw, sources(raw))
    assert run(tmp_path, raw, out_name="second") == 0
    second = capsys.readouterr().out
    assert "; 5 of 6 from the render cache" in second and "x real time for the 1 rendered now" in second
    assert files_of(tmp_path / "second") == from_scratch(tmp_path, raw, monkeypatch)
    assert "render cache off (MUSICID_NO_CACHE)" in capsys.readouterr().out


def test_a_changed_and_a_removed_source(tmp_path, raw, cache, monkeypatch, capsys):
    assert run(tmp_path, raw, out_name="first") == 0
    write_midi(raw / "a" / "one.mid", [(59, 0.0, 1.0)])  # new content, same name
    (raw / "a" / "two.mid").unlink()
    manifest(raw, sources(raw))
    capsys.readouterr()
    assert run(tmp_path, raw, out_name="second") == 0
    assert "; 3 of 4 from the render cache" in capsys.readouterr().out
    assert files_of(tmp_path / "second") == from_scratch(tmp_path, raw, monkeypatch)


def test_changing_a_render_param_renders_everything_again(tmp_path, raw, cache, monkeypatch, capsys):
    assert run(tmp_path, raw, out_name="first") == 0
    capsys.readouterr()
    assert run(tmp_path, raw, out_name="second", gain=0.4) == 0
    assert "; 0 of 5 from the render cache" in capsys.readouterr().out
    assert files_of(tmp_path / "second") == from_scratch(tmp_path, raw, monkeypatch, gain=0.4)
    assert files_of(tmp_path / "second") != files_of(tmp_path / "first")


def test_a_damaged_entry_is_a_miss_and_is_replaced(tmp_path, raw, cache, monkeypatch, capsys):
    assert run(tmp_path, raw, out_name="first") == 0
    entries = sorted(cache.glob("*/*.entry"))
    assert len(entries) == 5  # one per source, the rejected empty.mid too
    victim = max(entries, key=lambda p: p.stat().st_size)
    blob = bytearray(victim.read_bytes())
    blob[-100] ^= 0xFF  # a flipped bit in the WAV bytes
    victim.write_bytes(bytes(blob))
    capsys.readouterr()
    assert run(tmp_path, raw, out_name="second") == 0
    assert "; 4 of 5 from the render cache" in capsys.readouterr().out
    assert files_of(tmp_path / "second") == files_of(tmp_path / "first")
    assert victim.read_bytes() != bytes(blob)  # written again, whole


def test_no_cache_reads_and_writes_nothing(tmp_path, raw, cache, monkeypatch):
    assert run(tmp_path, raw, out_name="first") == 0
    before = files_of(cache)
    shutil.rmtree(tmp_path / "first")
    monkeypatch.setenv("MUSICID_NO_CACHE", "1")
    for entry in cache.glob("*/*.entry"):  # were it read, the output would be empty
        entry.write_bytes(b'{"record": {}, "names": [], "sizes": [], "sha256": "' + b"0" * 64 + b'"}\n')
    damaged = files_of(cache)
    assert run(tmp_path, raw, out_name="second") == 0
    assert files_of(cache) == damaged != before
    assert len(json.loads((tmp_path / "second" / "report.json").read_text())["files"]) == 5


def test_the_least_recently_used_entries_go_beyond_the_size_limit(tmp_path, raw, cache, monkeypatch, capsys):
    assert run(tmp_path, raw, out_name="first") == 0
    entries = sorted(cache.glob("*/*.entry"))
    for age, entry in enumerate(entries):
        os.utime(entry, (1e9 + age, 1e9 + age))
    keep = entries[-1].name[:-len(".entry")]
    limit = entries[-1].stat().st_size
    assert render_cache.prune(cache, limit) == 4
    assert [p.name for p in cache.glob("*/*.entry")] == [f"{keep}.entry"]
    # A run keeps every entry it used, whatever the bound.
    monkeypatch.setenv("MUSICID_RENDER_CACHE_GB", "0")
    capsys.readouterr()
    assert run(tmp_path, raw, out_name="second") == 0
    assert "; 1 of 5 from the render cache" in capsys.readouterr().out
    assert len(list(cache.glob("*/*.entry"))) == 5


def test_a_bad_size_limit_stops_the_stage_naming_the_variable(tmp_path, raw, cache, monkeypatch, capsys):
    monkeypatch.setenv("MUSICID_RENDER_CACHE_GB", "lots")
    assert run(tmp_path, raw) == 2
    assert "MUSICID_RENDER_CACHE_GB must be a number of gigabytes, got 'lots'" in capsys.readouterr().err


def test_the_code_version_follows_every_module_render_imports(tmp_path):
    package = tmp_path / "musicid"
    shutil.copytree(render_cache.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    names = [p.name for p in render_cache.code_modules(package=package)]
    assert {"render.py", "synth.py", "midi.py", "augment.py", "audio.py", "checks.py", "params.py"} <= set(names)
    assert "train.py" not in names and "render_cache.py" not in names
    before = render_cache.code_version(package)
    checks = package / "checks.py"  # imported by render, and by midi
    source = checks.read_text()
    checks.write_text(source + "\n# a comment\n")
    assert render_cache.code_version(package) == before  # no statement changed
    checks.write_text(source.replace('"""', '"""Edited. ', 1))  # the module's docstring
    assert render_cache.code_version(package) == before
    checks.write_text(source + "\nCHANGED = 1\n")
    assert render_cache.code_version(package) != before


def test_a_soundfont_change_changes_the_context(tmp_path, soundfont):
    from tests.conftest import section_params

    copy = tmp_path / "font.sf2"
    shutil.copy(soundfont, copy)
    params = section_params("render", soundfonts=[str(copy)])
    before = render_cache.render_context(params)
    with open(copy, "r+b") as handle:  # same size, same name, other content
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 1]))
    assert render_cache.render_context(params) != before


def test_the_cache_command_shows_and_clears_the_cache(tmp_path, raw, cache, capsys, monkeypatch):
    from musicid.__main__ import main

    assert run(tmp_path, raw) == 0
    size = sum(p.stat().st_size for p in cache.glob("*/*.entry"))
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"render cache {cache}: 5 entries, {size / 1e9:.2f} GB " \
                                                      "(limit 20 GB, $MUSICID_RENDER_CACHE_GB)"
    monkeypatch.setenv("MUSICID_RENDER_CACHE_GB", "abc")  # shown, and the command fails naming it
    assert main(["cache", "info"]) == 2
    shown = capsys.readouterr()
    assert "(limit unusable, $MUSICID_RENDER_CACHE_GB)" in shown.out
    assert shown.err == "cache: MUSICID_RENDER_CACHE_GB must be a number of gigabytes, got 'abc'\n"
    monkeypatch.delenv("MUSICID_RENDER_CACHE_GB")
    assert main(["cache", "clear"]) == 0
    assert "removed 5 entries" in capsys.readouterr().out
    assert list(cache.iterdir()) == []  # their folders too


def test_the_libraries_render_imports_are_in_the_context(monkeypatch):
    from tests.conftest import section_params

    versions = render_cache.library_versions()
    assert {"numpy", "soundfile", "libsndfile", "soxr", "mido", "pyfluidsynth"} <= set(versions)
    params = section_params("render")
    before = render_cache.render_context(params)
    monkeypatch.setattr(render_cache, "library_versions", lambda: {**versions, "numpy": "0.0.1"})
    assert render_cache.render_context(params) != before


def test_a_cache_that_cannot_be_written_does_not_stop_the_stage(tmp_path, raw, cache, monkeypatch, capsys):
    def disk_full(self, key, rendered):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(render_cache.RenderCache, "_put", disk_full)
    assert run(tmp_path, raw, out_name="first") == 0
    assert "; 0 of 5 from the render cache; 5 could not be stored (OSError: [Errno 28] No space left on device)" \
        in capsys.readouterr().out
    assert files_of(tmp_path / "first") == from_scratch(tmp_path, raw, monkeypatch)


def test_an_entry_evicted_by_another_run_while_it_is_read_is_still_used(tmp_path, raw, cache, monkeypatch, capsys):
    assert run(tmp_path, raw, out_name="first") == 0

    def evicted(path, *args, **kwargs):  # another run's prune removed it between our read and our touch
        Path(path).unlink()
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(render_cache.os, "utime", evicted)
    capsys.readouterr()
    assert run(tmp_path, raw, out_name="second") == 0
    assert "; 5 of 5 from the render cache" in capsys.readouterr().out
    assert files_of(tmp_path / "second") == files_of(tmp_path / "first")


def test_a_worker_that_would_render_other_audio_is_refused_naming_the_difference(tmp_path, soundfont, monkeypatch):
    from tests.conftest import section_params

    copy = tmp_path / "font.sf2"
    shutil.copy(soundfont, copy)
    params = section_params("render", soundfonts=[str(copy)])
    expected = render_cache.render_environment(params)
    render_cache.init_checked_worker(params, expected)  # the same machine: no complaint
    with open(copy, "ab") as handle:
        handle.write(b"\0")  # another file under the same path
    monkeypatch.setattr(render_cache, "fluidsynth_version", lambda: "1.0.0")
    with pytest.raises(render_cache.WorkerEnvironmentError) as refused:
        render_cache.init_checked_worker(params, expected)
    message = str(refused.value)
    assert "would render other audio than this machine" in message
    assert f"SoundFont {copy} (sha256 " in message
    assert f"FluidSynth 1.0.0 (the stage's machine has {expected['fluidsynth']})" in message


def test_a_cache_whose_files_cannot_be_removed_does_not_stop_the_stage(tmp_path, raw, cache, monkeypatch, capsys):
    """A read-only cache: a damaged entry is rendered again, pruning keeps what it cannot remove, clear says so."""
    from musicid.__main__ import main

    assert run(tmp_path, raw, out_name="first") == 0
    damaged = sorted(cache.glob("*/*.entry"))[0]
    damaged.write_bytes(damaged.read_bytes()[:100])
    real_unlink = Path.unlink

    def refused(self, missing_ok=False):
        if self.is_relative_to(cache):
            raise PermissionError(1, "Operation not permitted", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refused)
    monkeypatch.setenv("MUSICID_RENDER_CACHE_GB", "0")  # every entry over the bound, none removable
    capsys.readouterr()
    assert run(tmp_path, raw, out_name="second") == 0
    assert "; 4 of 5 from the render cache" in capsys.readouterr().out
    assert files_of(tmp_path / "second") == files_of(tmp_path / "first")
    assert main(["cache", "clear"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"render cache {cache}: removed 0 entries")
    assert err == f"cache: 5 entries could not be removed (no permission to write {cache}?)\n"


@pytest.mark.parametrize("value, limit", [("inf", sys.maxsize), ("1e400", sys.maxsize), ("0.5", 500_000_000)])
def test_an_infinite_size_limit_means_no_bound(monkeypatch, value, limit):
    monkeypatch.setenv("MUSICID_RENDER_CACHE_GB", value)
    assert render_cache.size_limit() == limit


@pytest.mark.parametrize("value, enabled", [("", True), ("0", True), ("false", True), ("No", True), ("off", True),
                                            ("1", False), ("true", False), ("yes", False)])
def test_no_cache_reads_the_usual_words(monkeypatch, value, enabled):
    monkeypatch.setenv("MUSICID_NO_CACHE", value)
    assert render_cache.enabled() is enabled


def test_a_relative_or_home_cache_folder(tmp_path, raw, monkeypatch, capsys):
    """A relative folder would be relative to wherever a stage runs, i.e. inside the project: refused."""
    from musicid.__main__ import main

    monkeypatch.setenv("MUSICID_RENDER_CACHE", "relcache")
    assert run(tmp_path, raw) == 2
    assert "MUSICID_RENDER_CACHE must be an absolute path, got 'relcache'" in capsys.readouterr().err
    assert main(["cache", "info"]) == 2
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MUSICID_RENDER_CACHE", "~/renders")
    assert render_cache.cache_dir() == tmp_path / "home" / "renders"
    # The folder both caches live in by default follows the same rule.
    monkeypatch.delenv("MUSICID_RENDER_CACHE")
    monkeypatch.setenv("MUSICID_CACHE", "relcache")
    with pytest.raises(ValueError, match="MUSICID_CACHE must be an absolute path, got 'relcache'"):
        render_cache.cache_dir()
    monkeypatch.setenv("MUSICID_CACHE", "~/cache")
    assert render_cache.cache_dir() == tmp_path / "home" / "cache" / "render"


def test_cache_info_says_when_there_is_no_bound(cache, monkeypatch, capsys):
    from musicid.__main__ import main

    monkeypatch.setenv("MUSICID_RENDER_CACHE_GB", "inf")
    assert main(["cache", "info"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == \
        f"render cache {cache}: 0 entries, 0.00 GB (limit none, $MUSICID_RENDER_CACHE_GB)"


def test_a_worker_without_fluidsynth_or_the_soundfont_is_named_in_one_line(tmp_path, soundfont, monkeypatch):
    from musicid.synth import FluidSynthUnavailable
    from tests.conftest import section_params

    copy = tmp_path / "font.sf2"
    shutil.copy(soundfont, copy)
    params = section_params("render", soundfonts=[str(copy)])
    expected = render_cache.render_environment(params)
    copy.unlink()  # the worker has no such file
    with pytest.raises(render_cache.WorkerEnvironmentError) as refused:
        render_cache.init_checked_worker(params, expected)
    assert f"SoundFont {copy} (missing (FileNotFoundError) here, sha256 {expected['soundfonts'][str(copy)][:12]}... " \
           "on the stage's machine)" in str(refused.value)

    def unavailable():
        raise FluidSynthUnavailable("cannot load the FluidSynth library")

    monkeypatch.setattr(render_cache, "fluidsynth_version", unavailable)
    with pytest.raises(render_cache.WorkerEnvironmentError, match="cannot load FluidSynth, which this machine "
                                                                  "renders with: cannot load the FluidSynth library"):
        render_cache.init_checked_worker(params, expected)

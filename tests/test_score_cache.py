"""Download's cache of converted scores: a score is converted once, and the output is a run's from scratch."""

from __future__ import annotations

import json

import pytest

import musicid.dataset
from musicid import score_cache
from musicid.dataset import CorpusPiece, collect_tree, export_music21, score_to_midi
from tests.archives import midi_bytes
from tests.test_scores import OTHER, TUNE, abc, kern, tree


@pytest.fixture
def cache_folder(tmp_path, monkeypatch):
    folder = tmp_path / "score-cache"
    monkeypatch.setenv("MUSICID_SCORE_CACHE", str(folder))
    monkeypatch.delenv("MUSICID_NO_CACHE", raising=False)
    return folder


def counting(monkeypatch, name: str) -> list:
    """Count the calls of musicid.dataset.<name> (run in this process: fewer than SPREAD_SCORES scores)."""
    calls = []
    real = getattr(musicid.dataset, name)

    def counted(item, *args, **kwargs):
        calls.append(item)
        return real(item, *args, **kwargs)

    monkeypatch.setattr(musicid.dataset, name, counted)
    return calls


def collect(tmp_path, name: str, timeout_s: float = 120.0) -> tuple[dict, dict]:
    out = tmp_path / name
    out.mkdir()
    cache = score_cache.open_cache(None, timeout_s)
    manifest = collect_tree(tmp_path / "src", "src/", out, classes=[], labels={}, unlabeled=None, max_per_class=0,
                            seed=0, timeout_s=timeout_s, score_cache=cache)
    return manifest, {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_a_collections_scores_are_converted_once_and_give_a_runs_bytes_from_scratch(tmp_path, cache_folder,
                                                                                     monkeypatch):
    tree(tmp_path / "src", {"bach/a.krn": kern(TUNE), "haydn/b.abc": abc(OTHER), "haydn/c.mid": midi_bytes(60),
                            "haydn/bad.krn": b"!!!COM x\n**kern\n4c\n*-\n"})  # unconvertible: kept too
    calls = counting(monkeypatch, "collection_score_to_midi")
    first, first_files = collect(tmp_path, "first")
    assert sorted(path.name for path in calls) == ["a.krn", "b.abc", "bad.krn"]
    calls.clear()
    second, second_files = collect(tmp_path, "second")
    assert calls == []  # neither a success nor music21's failure is converted again
    assert second == first and second_files == first_files
    assert [r["reason"].split(":")[0] for r in second["skipped"]] == ["unconvertible"]
    # Without the cache, the same bytes.
    monkeypatch.setenv("MUSICID_NO_CACHE", "1")
    assert score_cache.open_cache(None, 120.0) is None
    monkeypatch.delenv("MUSICID_NO_CACHE")
    calls.clear()
    out = tmp_path / "scratch"
    out.mkdir()
    assert collect_tree(tmp_path / "src", "src/", out, classes=[], labels={}, unlabeled=None, max_per_class=0,
                        seed=0, timeout_s=120.0) == first
    assert len(calls) == 3
    # Another limit is another key: a slow score must still be refused under a smaller one; a timeout is not
    # kept (it depends on the machine's load).
    for name in ("third", "fourth"):
        calls.clear()
        third, _ = collect(tmp_path, name, timeout_s=1e-9)
        assert {r["origin"] for r in third["skipped"] if r["reason"].startswith("timeout")} == {
            "src/bach/a.krn", "src/haydn/b.abc", "src/haydn/bad.krn"}
        assert len(calls) == 3
    # An edited score is another key too.
    (tmp_path / "src" / "bach" / "a.krn").write_bytes(kern(list(reversed(TUNE))))
    calls.clear()
    collect(tmp_path, "edited")
    assert sorted(path.name for path in calls) == ["a.krn"]


def test_a_damaged_entry_is_a_miss_and_is_removed(tmp_path, cache_folder, monkeypatch):
    tree(tmp_path / "src", {"bach/a.krn": kern(TUNE), "haydn/c.mid": midi_bytes(60)})
    first, first_files = collect(tmp_path, "first")
    entry, = cache_folder.glob("*/*.entry")
    blob = bytearray(entry.read_bytes())
    blob[-5] ^= 0xFF  # one byte of the MIDI file changed on disk
    entry.write_bytes(bytes(blob))
    calls = counting(monkeypatch, "collection_score_to_midi")
    second, second_files = collect(tmp_path, "second")
    assert [path.name for path in calls] == ["a.krn"] and second_files == first_files
    assert entry.read_bytes() != bytes(blob)  # written again, whole


def test_only_a_failure_of_the_score_s_own_is_kept():
    from musicid.dataset import repeatable_failure

    assert repeatable_failure("unconvertible: HumdrumException: no spine found")
    assert repeatable_failure("unconvertible: music21 wrote an empty MIDI file")
    assert repeatable_failure("no_notes: the file holds no note events")
    assert repeatable_failure("unconvertible: MeiValidityError: no <score>")
    assert repeatable_failure("unparseable: KeySignatureError: Could not decode key with 9 flats and mode 0")
    for reason in ("unconvertible: MemoryError: ", "unconvertible: PermissionError: [Errno 13] /tmp/music21",
                   "unconvertible: OSError: [Errno 28] No space left on device",
                   "unconvertible: UnsupportedOperation: not readable", "unconvertible: BadGzipFile: x",
                   "unconvertible: RecursionError: maximum recursion depth exceeded",
                   "unconvertible: music21 wrote a MIDI file mido cannot read (MemoryError)",
                   "unparseable: MemoryError: ", "unconvertible: Exception: anything",
                   "timeout: music21 took longer than dataset.timeout_s (120 s)",
                   "worker_crash: the worker processes converting this score died, one after another",
                   "unreadable: PermissionError", "too_large: 2 GB of score text (more than 100 MB, ...)",
                   "content_mismatch: named .krn but holds no Humdrum kern score"):
        assert not repeatable_failure(reason), reason


def test_a_failure_s_entry_is_checked_like_a_midi_file_s(tmp_path):
    cache = score_cache.ScoreCache(tmp_path, "context")
    cache.put("ab" * 32, "unconvertible: HumdrumException: x")
    assert cache.get("ab" * 32) == "unconvertible: HumdrumException: x" and (cache.hits, cache.failures) == (0, 1)
    entry = cache.path("ab" * 32)
    entry.write_bytes(entry.read_bytes() + b"MThd")  # a reason and bytes: not an entry this code writes
    assert cache.get("ab" * 32) is None and not entry.exists()


def test_the_corpus_is_converted_once_for_each_program(tmp_path, cache_folder, monkeypatch):
    pieces = [CorpusPiece("bach", "bach/bwv66.6.mxl"), CorpusPiece("bach", "bach/bwv86.6.mxl")]
    monkeypatch.setattr(musicid.dataset, "list_corpus_pieces", lambda label: pieces)
    converted = []

    def run(out: str, program: int | None) -> dict:
        def convert(function, items):
            converted.extend(piece.relative_path for piece in items)
            return map(function, items)

        (tmp_path / out).mkdir()
        return export_music21(["bach"], max_per_class=0, seed=0, out_dir=tmp_path / out, map_function=convert,
                              program=program, cache=score_cache.open_cache(program, 120.0))

    first = run("first", 0)
    assert converted == ["bach/bwv66.6.mxl", "bach/bwv86.6.mxl"]
    converted.clear()
    assert run("second", 0) == first and converted == []
    assert (tmp_path / "second" / "bach" / "bwv66.6.mid").read_bytes() == score_to_midi(pieces[0], program=0)[1]
    run("piano_free", None)
    assert len(converted) == 2  # another program, another key: converted again, to other bytes
    assert (tmp_path / "piano_free" / "bach" / "bwv66.6.mid").read_bytes() != \
        (tmp_path / "second" / "bach" / "bwv66.6.mid").read_bytes()


def collection_download(tmp_path, monkeypatch) -> list[str]:
    """A folder of two good scores and one music21 cannot convert, params.yaml reading it, and the download
    stage's arguments for it."""
    import yaml

    from tests.conftest import PROJECT_ROOT

    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    tree(tmp_path / "coll", {"bach/a.krn": kern(TUNE), "haydn/b.abc": abc(OTHER),
                             "haydn/bad.krn": b"!!!COM x\n**kern\n4c\n*-\n"})
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["dataset"].update({"source": "path", "path": str(tmp_path / "coll"), "classes": [], "max_per_class": 0})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return ["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "raw"), "--jobs", "1"]


def test_the_download_stage_says_what_the_cache_served(tmp_path, cache_folder, monkeypatch, capsys):
    from tests.conftest import load_stage

    stage = load_stage("download")
    arguments = collection_download(tmp_path, monkeypatch)
    assert stage.main(arguments) == 0
    assert "from the score cache" not in capsys.readouterr().out
    manifest = (tmp_path / "raw" / "manifest.json").read_bytes()
    assert stage.main(arguments) == 0
    assert "; 3 scores from the score cache (1 of them failures of an earlier run) -> " in capsys.readouterr().out
    assert (tmp_path / "raw" / "manifest.json").read_bytes() == manifest
    monkeypatch.setenv("MUSICID_SCORE_CACHE", "relative/scores")
    assert stage.main(arguments) == 1
    assert "MUSICID_SCORE_CACHE must be an absolute path, got 'relative/scores'" in capsys.readouterr().err
    assert json.loads((tmp_path / "raw" / "manifest.json").read_bytes()) == json.loads(manifest)  # left as it was


def test_the_cache_command_shows_and_clears_the_scores(tmp_path, cache_folder, monkeypatch, capsys):
    from musicid.__main__ import main

    monkeypatch.setenv("MUSICID_RENDER_CACHE", str(tmp_path / "render-cache"))
    tree(tmp_path / "src", {"bach/a.krn": kern(TUNE), "haydn/b.abc": abc(OTHER)})
    collect(tmp_path, "first")
    size = sum(p.stat().st_size for p in cache_folder.glob("*/*.entry"))
    assert main(["cache", "info"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == \
        f"score cache {cache_folder}: 2 entries, {size / 1e9:.2f} GB (limit 1 GB)"
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == f"score cache {cache_folder}: removed 2 entries"
    assert list(cache_folder.iterdir()) == []


def test_pruning_keeps_the_runs_own_entries(tmp_path, cache_folder, monkeypatch):
    tree(tmp_path / "src", {"bach/a.krn": kern(TUNE), "haydn/b.abc": abc(OTHER)})
    collect(tmp_path, "first")
    (tmp_path / "src" / "haydn" / "b.abc").unlink()
    tree(tmp_path / "src", {"haydn/c.abc": abc(list(reversed(OTHER)))})
    monkeypatch.setattr(score_cache, "MAX_BYTES", 0)
    cache = score_cache.open_cache(None, 120.0)
    (tmp_path / "second").mkdir()
    collect_tree(tmp_path / "src", "src/", tmp_path / "second", classes=[], labels={}, unlabeled=None,
                 max_per_class=0, seed=0, timeout_s=120.0, score_cache=cache)
    assert cache.prune() == 1  # b.abc's entry, not used by this run
    assert {p.stem for p in cache_folder.glob("*/*.entry")} == cache.used and len(cache.used) == 2


def test_an_interrupted_run_keeps_what_it_converted_and_an_edited_score_is_not_kept(tmp_path, cache_folder,
                                                                                   monkeypatch):
    tree(tmp_path / "src", {"bach/a.krn": kern(TUNE), "bach/b.abc": abc(OTHER), "haydn/c.krn": kern(OTHER[::-1])})
    real = musicid.dataset.collection_score_to_midi

    def stopped(path, *args, **kwargs):
        if path.name == "c.krn":
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    monkeypatch.setattr(musicid.dataset, "collection_score_to_midi", stopped)
    with pytest.raises(KeyboardInterrupt):
        collect(tmp_path, "stopped")
    assert len(list(cache_folder.glob("*/*.entry"))) == 2  # a.krn's and b.abc's, kept as they came
    assert not (tmp_path / "stopped" / ".scores").exists()

    def edited(path, *args, **kwargs):  # the score changes between its hashing and its conversion
        if path.name == "c.krn":
            path.write_bytes(kern(TUNE[::-1]))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(musicid.dataset, "collection_score_to_midi", edited)
    manifest, _ = collect(tmp_path, "edited")
    assert len(manifest["files"]) == 3
    assert len(list(cache_folder.glob("*/*.entry"))) == 2  # not kept under its old bytes' key


def test_the_key_follows_what_a_conversion_depends_on(tmp_path, cache_folder, monkeypatch):
    contexts = {score_cache.conversion_context(0, 120.0), score_cache.conversion_context(None, 120.0),
                score_cache.conversion_context(0, 60.0)}
    real_version = score_cache.importlib.metadata.version
    monkeypatch.setattr(score_cache.importlib.metadata, "version",
                        lambda name: "0.0" if name == "music21" else real_version(name))
    contexts.add(score_cache.conversion_context(0, 120.0))
    monkeypatch.setattr(score_cache.importlib.metadata, "version", real_version)
    monkeypatch.setattr(score_cache.sys, "version_info", (2, 7, 0))
    contexts.add(score_cache.conversion_context(0, 120.0))
    assert len(contexts) == 5
    cache = score_cache.ScoreCache(cache_folder, "context")
    assert len({cache.key("corpus", ".krn", "d"), cache.key("collection", ".krn", "d"),
                cache.key("collection", ".abc", "d"), cache.key("collection", ".KRN", "d"),
                cache.key("collection", ".krn", "e")}) == 4  # the extension's case aside
    # A used entry is the last to go: reading it makes it the most recent.
    cache.put("ab" * 32, b"MThd")
    entry = cache.path("ab" * 32)
    import os

    os.utime(entry, (1_000_000, 1_000_000))
    assert cache.get("ab" * 32) == b"MThd" and entry.stat().st_mtime > 1_000_000


def test_a_score_too_large_is_not_read_whole_for_its_key(tmp_path, cache_folder, monkeypatch):
    tree(tmp_path / "src", {"bach/a.krn": kern(TUNE), "haydn/big.abc": abc(OTHER) + b"% padding\n" * 400,
                            "haydn/c.mid": midi_bytes(60)})
    monkeypatch.setattr(musicid.dataset, "MAX_SCORE_BYTES", 3000)
    reads = []
    real = score_cache.ScoreCache.key
    monkeypatch.setattr(score_cache.ScoreCache, "key",
                        lambda self, kind, suffix, digest: reads.append(suffix) or real(self, kind, suffix, digest))
    manifest, _ = collect(tmp_path, "out")
    assert reads == [".krn"]
    assert [r["reason"].split(":")[0] for r in manifest["skipped"]] == ["too_large"]


def test_a_cache_that_cannot_be_written_is_named_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    from tests.conftest import load_stage

    (tmp_path / "not-a-folder").write_text("a file where the cache would be")
    monkeypatch.setenv("MUSICID_SCORE_CACHE", str(tmp_path / "not-a-folder"))
    monkeypatch.delenv("MUSICID_NO_CACHE", raising=False)
    assert load_stage("download").main(collection_download(tmp_path, monkeypatch)) == 0
    err = capsys.readouterr().err
    assert "download: warning: 3 scores' conversions could not be kept in the score cache" in err
    assert "(NotADirectoryError: " in err and "they are converted again next time" in err


def test_the_cache_command_shows_the_scores_whatever_the_render_cache_says(tmp_path, cache_folder, monkeypatch,
                                                                         capsys):
    from musicid.__main__ import main

    monkeypatch.setenv("MUSICID_RENDER_CACHE", "relative/render")
    assert main(["cache", "info"]) == 2
    shown = capsys.readouterr()
    assert "MUSICID_RENDER_CACHE must be an absolute path" in shown.err
    assert shown.out == f"score cache {cache_folder}: 0 entries, 0.00 GB (limit 1 GB)\n"
    assert main(["cache", "clear"]) == 2
    assert capsys.readouterr().out == f"score cache {cache_folder}: removed 0 entries\n"

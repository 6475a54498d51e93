"""Odd folder trees through ``collect_tree``: reserved names, links, special files, nesting."""

from __future__ import annotations

import hashlib
import os

import pytest

from musicid.dataset import CollectionError, collect_tree
from tests.archives import midi_bytes, wav_bytes

RESERVED_LABEL_REASON = "reserved_label: manifest.json, report.json and _unlabeled are written by the pipeline"
HIDDEN_LABEL_REASON = "reserved_label: hidden or system folder"
SYMLINK_REASON = "symlink: links are not followed"


def tree(root, files: dict[str, bytes]):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def collect(root, out, classes=(), labels=None, unlabeled=None):
    return collect_tree(root, "src/", out, classes=list(classes), labels=labels or {}, unlabeled=unlabeled,
                        max_per_class=0, seed=0)


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


# Heads of the compressed formats, enough for the content check (collect_tree decodes no audio without a cap).
FLAC_HEAD, OGG_HEAD, MP3_HEAD = b"fLaC" + bytes(60), b"OggS" + bytes(60), b"ID3\x04" + bytes(60)


def reasons(manifest):
    return {r["origin"].removeprefix("src/"): r["reason"] for r in manifest["skipped"]}


def test_reserved_and_hidden_label_folders_are_refused_and_the_rest_kept(tmp_path):
    tree(tmp_path / "src", {
        "manifest.json/a.mid": midi_bytes(60), "report.json/b.mid": midi_bytes(61),
        "_unlabeled/c.mid": midi_bytes(62), ".hidden/d.mid": midi_bytes(63), "__MACOSX/._e.mid": b"\x00\x05",
        "Rep/f.mid": midi_bytes(64),  # renamed to a reserved label through dataset.labels
        "Unl/g.mid": midi_bytes(67),  # renamed to _unlabeled, which safe_name would turn into "unlabeled"
        "bach/g.mid": midi_bytes(65), "haydn/h.mid": midi_bytes(66),
    })
    manifest = collect(tmp_path / "src", tmp_path / "out", labels={"Rep": "report.json", "Unl": "_unlabeled"})
    assert [r["path"] for r in manifest["files"]] == ["bach/g.mid", "haydn/h.mid"]
    assert reasons(manifest) == {
        ".hidden/": HIDDEN_LABEL_REASON, "__MACOSX/": HIDDEN_LABEL_REASON,
        "Rep/": RESERVED_LABEL_REASON, "Unl/": RESERVED_LABEL_REASON, "_unlabeled/": RESERVED_LABEL_REASON,
        "manifest.json/": RESERVED_LABEL_REASON, "report.json/": RESERVED_LABEL_REASON,
    }
    assert files_under(tmp_path / "out") == ["bach/g.mid", "haydn/h.mid"]


def test_nested_folders_belong_to_the_first_level_label(tmp_path):
    tree(tmp_path / "src", {
        "bach/top.mid": midi_bytes(60),
        "bach/foo.mid/inner.mid": midi_bytes(61),  # a folder named like a file is just a folder
        "bach/op1/no2/deep.mid": midi_bytes(62),
        "Haydn, J./h.mid": midi_bytes(63),
        "stray.mid": midi_bytes(64),
    })
    manifest = collect(tmp_path / "src", tmp_path / "out", labels={"Haydn, J.": "haydn"})
    assert [(r["path"], r["label"], r["origin"]) for r in manifest["files"]] == [
        ("bach/foo.mid__inner.mid", "bach", "src/bach/foo.mid/inner.mid"),
        ("bach/op1__no2__deep.mid", "bach", "src/bach/op1/no2/deep.mid"),
        ("bach/top.mid", "bach", "src/bach/top.mid"),
        ("haydn/h.mid", "haydn", "src/Haydn, J./h.mid"),
    ]
    assert reasons(manifest) == {"stray.mid": "no_label: the file is not inside a label folder"}
    # The first folder below the label folder is the file's folder (split.group folder); a file directly in its
    # label folder has none.
    assert [r.get("folder") for r in manifest["files"]] == ["foo.mid", "op1", None, None]
    # Two or more folders deep, the folders it sits in too (split.group parent); none for one folder or none.
    assert [r.get("parent") for r in manifest["files"]] == [None, "op1/no2", None, None]


def test_a_single_wrapping_folder_is_stepped_into(tmp_path):
    # genres/ holds folders and no music file; the files and the hidden folder beside it do not count.
    tree(tmp_path / "src", {
        "genres/blues/b.wav": wav_bytes(value=0.1), "genres/jazz/sub/j.wav": wav_bytes(value=0.2),
        "genres/notes.txt": b"liner notes", "README.txt": b"read me", ".cache/x.wav": wav_bytes(value=0.3),
        "loose.wav": wav_bytes(value=0.4),
    })
    manifest = collect(tmp_path / "src", tmp_path / "out")
    assert [(r["path"], r["label"]) for r in manifest["files"]] == [("blues/b.wav", "blues"),
                                                                    ("jazz/sub__j.wav", "jazz")]
    assert reasons(manifest) == {
        ".cache/": HIDDEN_LABEL_REASON,
        "README.txt": "unsupported_type: .txt",
        "genres/notes.txt": "unsupported_type: .txt",
        "loose.wav": "no_label: the file is not inside a label folder",
    }


def test_a_single_folder_holding_music_is_a_label_not_a_wrapper(tmp_path):
    tree(tmp_path / "src", {"bach/a.mid": midi_bytes(60), "bach/op1/b.mid": midi_bytes(61)})
    manifest = collect(tmp_path / "src", tmp_path / "out")
    assert [(r["path"], r["label"]) for r in manifest["files"]] == [("bach/a.mid", "bach"),
                                                                    ("bach/op1__b.mid", "bach")]


def test_wrapper_beside_the_unlabeled_folder(tmp_path):
    # The layout of composer-identification challenges: data/musicians/<composer>/, data/test/.
    tree(tmp_path / "src", {"musicians/bach/a.mid": midi_bytes(60), "musicians/haydn/b.mid": midi_bytes(61),
                            "test/sub/u.mid": midi_bytes(62)})
    manifest = collect(tmp_path / "src", tmp_path / "out", unlabeled="test")
    assert [r["path"] for r in manifest["files"]] == ["bach/a.mid", "haydn/b.mid"]
    assert [r["path"] for r in manifest["unlabeled"]] == ["_unlabeled/sub__u.mid"]
    assert manifest["skipped"] == []


def test_the_unlabeled_folder_is_compared_composed(tmp_path):
    """A folder copied from macOS is spelled with combining accents (NFD); params.yaml names it composed."""
    import unicodedata

    tree(tmp_path / "src", {"bach/a.mid": midi_bytes(60), "haydn/b.mid": midi_bytes(61),
                            unicodedata.normalize("NFD", "à trier") + "/sub/u.mid": midi_bytes(62)})
    manifest = collect(tmp_path / "src", tmp_path / "out", unlabeled="à trier")
    assert [r["path"] for r in manifest["files"]] == ["bach/a.mid", "haydn/b.mid"]
    assert [r["path"] for r in manifest["unlabeled"]] == ["_unlabeled/sub__u.mid"]
    assert manifest["skipped"] == []


def unlistable(monkeypatch, *folders):
    """os.scandir refuses ``folders`` as it refuses a user a folder without read permission (the tests run as
    root, whom chmod does not stop)."""
    real = os.scandir
    refused = {os.fspath(folder) for folder in folders}

    def scandir(path="."):
        if os.fspath(path) in refused:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_a_folder_that_cannot_be_listed_is_recorded_not_lost(tmp_path, monkeypatch):
    tree(tmp_path / "src", {"bach/a.mid": midi_bytes(60), "bach/locked_sub/c.mid": midi_bytes(62),
                            "haydn/b.mid": midi_bytes(61), "locked/d.mid": midi_bytes(63)})
    unlistable(monkeypatch, tmp_path / "src" / "locked", tmp_path / "src" / "bach" / "locked_sub")
    manifest = collect(tmp_path / "src", tmp_path / "out")
    assert [r["path"] for r in manifest["files"]] == ["bach/a.mid", "haydn/b.mid"]
    assert [(r["origin"], r["label"], r["reason"]) for r in manifest["skipped"]] == [
        ("src/", "locked", "no_such_class: no usable files with this label"),  # a class that did not come
        ("src/bach/locked_sub/", "bach", "unreadable: Permission denied"),
        ("src/locked/", "locked", "unreadable: Permission denied")]


def test_a_lone_folder_that_cannot_be_listed_is_not_stepped_into(tmp_path, monkeypatch):
    tree(tmp_path / "src", {"only/a.mid": midi_bytes(60)})
    unlistable(monkeypatch, tmp_path / "src" / "only")
    manifest = collect(tmp_path / "src", tmp_path / "out")
    assert manifest["files"] == []
    assert reasons(manifest) == {"only/": "unreadable: Permission denied",
                                 "": "no_such_class: no usable files with this label"}


def test_symlinked_folders_and_files_are_recorded(tmp_path):
    tree(tmp_path / "src", {"bach/a.mid": midi_bytes(60), "haydn/b.mid": midi_bytes(61)})
    tree(tmp_path / "elsewhere", {"c.mid": midi_bytes(62)})
    os.symlink(tmp_path / "elsewhere", tmp_path / "src" / "mozart")
    os.symlink(tmp_path / "elsewhere", tmp_path / "src" / "bach" / "more")
    os.symlink(tmp_path / "elsewhere" / "c.mid", tmp_path / "src" / "haydn" / "c.mid")
    os.symlink(tmp_path / "nowhere.mid", tmp_path / "src" / "haydn" / "broken.mid")
    manifest = collect(tmp_path / "src", tmp_path / "out")
    assert [r["path"] for r in manifest["files"]] == ["bach/a.mid", "haydn/b.mid"]
    assert reasons(manifest) == {"mozart/": SYMLINK_REASON, "bach/more/": SYMLINK_REASON,
                                 "haydn/c.mid": SYMLINK_REASON, "haydn/broken.mid": SYMLINK_REASON}


def test_special_files_are_skipped_without_being_opened(tmp_path):
    tree(tmp_path / "src", {"bach/a.mid": midi_bytes(60), "haydn/b.mid": midi_bytes(61)})
    os.mkfifo(tmp_path / "src" / "bach" / "pipe.mid")
    # Opening this FIFO for reading would block: collect_tree must not open it.  The
    # stage-level test runs the same case in a subprocess with a deadline.
    import threading

    result = {}
    worker = threading.Thread(target=lambda: result.update(collect(tmp_path / "src", tmp_path / "out")),
                              daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():
        # Release the blocked reader (a writer opening the FIFO ends its wait), then fail.
        for _ in range(4):
            try:
                os.close(os.open(tmp_path / "src" / "bach" / "pipe.mid", os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        pytest.fail("collect_tree blocked on a FIFO")
    assert [r["path"] for r in result["files"]] == ["bach/a.mid", "haydn/b.mid"]
    assert reasons(result) == {"bach/pipe.mid": "not_a_regular_file: a FIFO"}


def test_names_differing_only_in_case_each_keep_their_file(tmp_path):
    # On macOS or Windows "Tone.mid" and "tone.mid" in data/raw would be one file: the second copy would
    # overwrite the first and a good file would be lost.
    sources = {"bach/Tone.mid": midi_bytes(60), "bach/tone.mid": midi_bytes(61), "bach/Sub/x.mid": midi_bytes(62),
               "bach/sub/x.mid": midi_bytes(63)}
    tree(tmp_path / "src", sources)
    manifest = collect(tmp_path / "src", tmp_path / "out")
    names = {r["origin"].removeprefix("src/"): r["path"] for r in manifest["files"]}
    digest = hashlib.sha256(b"bach/tone.mid").hexdigest()[:8]
    assert names["bach/Tone.mid"] == "bach/Tone.mid" and names["bach/tone.mid"] == f"bach/tone-{digest}.mid"
    assert len({name.casefold() for name in names.values()}) == 4
    for source, output in names.items():
        assert (tmp_path / "out" / output).read_bytes() == sources[source]


def test_names_equal_once_made_safe_each_keep_their_file(tmp_path):
    sources = {"bach/x y.mid": midi_bytes(60), "bach/x,y.mid": midi_bytes(61), "bach/x_y.mid": midi_bytes(62)}
    tree(tmp_path / "src", sources)
    manifest = collect(tmp_path / "src", tmp_path / "out")

    def hashed(relative, extension):
        return f"bach/x_y-{hashlib.sha256(relative.encode()).hexdigest()[:8]}{extension}"

    # Sorted by source path, "x y.mid" comes first and takes the plain name.
    expected = {"bach/x y.mid": "bach/x_y.mid", "bach/x,y.mid": hashed("bach/x,y.mid", ".mid"),
                "bach/x_y.mid": hashed("bach/x_y.mid", ".mid")}
    assert {r["origin"].removeprefix("src/"): r["path"] for r in manifest["files"]} == expected
    for source, output in expected.items():
        assert (tmp_path / "out" / output).read_bytes() == sources[source]
    assert manifest["skipped"] == []
    again = collect(tmp_path / "src", tmp_path / "again")
    assert again == manifest


def test_files_of_one_work_keep_one_file(tmp_path):
    """A MIDI file beside its audio export, one recording in two formats: one piece, which as two tracks could
    sit on both sides of the split. One file is kept, MIDI first, then lossless audio; other folders and labels
    are other works."""
    sources = {"bach/x.mid": midi_bytes(60), "bach/x.midi": midi_bytes(61), "bach/x.MID": midi_bytes(62),
               "bach/x.wav": wav_bytes(value=0.1), "bach/x.WAV": wav_bytes(value=0.2),
               "bach/tone.mp3": MP3_HEAD, "bach/tone.flac": FLAC_HEAD, "bach/Tone.ogg": OGG_HEAD,
               "bach/sub/x.wav": wav_bytes(value=0.3), "haydn/x.wav": wav_bytes(value=0.4)}
    tree(tmp_path / "src", sources)
    manifest = collect(tmp_path / "src", tmp_path / "out")
    assert {r["origin"].removeprefix("src/"): r["path"] for r in manifest["files"]} == {
        "bach/x.MID": "bach/x.mid", "bach/tone.flac": "bach/tone.flac", "bach/Tone.ogg": "bach/Tone.ogg",
        "bach/sub/x.wav": "bach/sub__x.wav", "haydn/x.wav": "haydn/x.wav"}
    assert reasons(manifest) == {
        "bach/x.mid": "same_work: kept bach/x.MID", "bach/x.midi": "same_work: kept bach/x.MID",
        "bach/x.wav": "same_work: kept bach/x.MID", "bach/x.WAV": "same_work: kept bach/x.MID",
        "bach/tone.mp3": "same_work: kept bach/tone.flac"}
    # Names differing in more than the extension's case are two pieces, and so are files of two folders that
    # dataset.labels merges into one label.
    assert "bach/Tone.ogg" in {r["origin"].removeprefix("src/") for r in manifest["files"]}
    tree(tmp_path / "merged", {"JS Bach/01.mid": midi_bytes(60), "Bach/01.mid": midi_bytes(61),
                               "Bach/01.wav": wav_bytes(value=0.1), "haydn/01.mid": midi_bytes(62)})
    merged = collect(tmp_path / "merged", tmp_path / "out2", labels={"JS Bach": "Bach"})
    assert sorted(r["origin"].removeprefix("src/") for r in merged["files"]) == [
        "Bach/01.mid", "JS Bach/01.mid", "haydn/01.mid"]
    assert reasons(merged) == {"Bach/01.wav": "same_work: kept Bach/01.mid"}


def test_classes_matching_no_label_stop_before_any_file_is_read(tmp_path):
    from musicid.dataset import DatasetParamError

    tree(tmp_path / "src", {"jazz/a.wav": wav_bytes(value=0.1), "rock/b.wav": wav_bytes(value=0.2)})
    with pytest.raises(DatasetParamError) as error:
        collect(tmp_path / "src", tmp_path / "out", classes=["bach", "monteverdi"])
    message = str(error.value)
    assert "\n" not in message
    assert message == ("dataset.classes [bach, monteverdi] names none of the labels found in src: "
                       "jazz, rock (set dataset.classes to [] to keep every label, or to some of these)")
    assert not (tmp_path / "out").exists()


def test_an_unreadable_file_is_skipped_with_its_reason(tmp_path, monkeypatch):
    import musicid.dataset

    tree(tmp_path / "src", {"bach/a.mid": midi_bytes(60), "bach/locked.mid": midi_bytes(61),
                            "haydn/b.mid": midi_bytes(62)})
    real_check = musicid.dataset.check_file

    def check(path):
        # Tests run as root, where chmod 000 does not stop a read: simulate the refusal.
        if path.name == "locked.mid":
            raise PermissionError(13, "Permission denied")
        return real_check(path)

    monkeypatch.setattr(musicid.dataset, "check_file", check)
    manifest = collect(tmp_path / "src", tmp_path / "out")
    assert [r["path"] for r in manifest["files"]] == ["bach/a.mid", "haydn/b.mid"]
    assert reasons(manifest) == {"bach/locked.mid": "unreadable: Permission denied"}


def test_a_file_name_that_is_not_utf8_is_kept_and_shown_escaped(tmp_path):
    """A Latin-1 name (old archives, Windows shares) is a good file: kept, its name written \\xNN."""
    from musicid.io import dumps_json

    source = tmp_path / "src"
    tree(source, {"bach/a.mid": midi_bytes(60), "haydn/b.mid": midi_bytes(62)})
    (source / "bach" / os.fsdecode(b"caf\xe9.mid")).write_bytes(midi_bytes(61))
    manifest = collect(source, tmp_path / "out", classes=[])
    assert [(r["path"], r["origin"]) for r in manifest["files"]] == [
        ("bach/a.mid", "src/bach/a.mid"), ("bach/caf_xe9.mid", "src/bach/caf\\xe9.mid"),
        ("haydn/b.mid", "src/haydn/b.mid")]
    dumps_json(manifest).encode("utf-8")  # the manifest can be written
    assert (tmp_path / "out" / "bach" / "caf_xe9.mid").read_bytes() == midi_bytes(61)


def test_label_folders_are_compared_composed_and_classes_as_labels(tmp_path):
    """macOS writes "Dvořák" with combining accents (NFD): the label is still "Dvořák", and dataset.classes
    and dataset.labels name a folder as it reads, whichever way it is spelled."""
    import unicodedata

    tree(tmp_path / "src", {unicodedata.normalize("NFD", "Dvořák") + "/a.mid": midi_bytes(60),
                            "Bach, J.S./b.mid": midi_bytes(61), "haydn/c.mid": midi_bytes(62)})
    manifest = collect(tmp_path / "src", tmp_path / "out", classes=["Dvořák", "Bach, J.S."])
    assert [r["label"] for r in manifest["files"]] == ["Bach__J.S", "Dvořák"]
    renamed = collect(tmp_path / "src", tmp_path / "out2", labels={"Dvořák": "dvorak"})
    assert [r["label"] for r in renamed["files"]] == ["Bach__J.S", "dvorak", "haydn"]


def test_two_label_folders_that_would_become_one_label_stop_the_collection(tmp_path):
    tree(tmp_path / "src", {"A B/a.mid": midi_bytes(60), "A_B/b.mid": midi_bytes(61), "C/c.mid": midi_bytes(62)})
    with pytest.raises(CollectionError, match=r"the label folders 'A B' and 'A_B' in src would both become the "
                                              r"label 'A_B'.*dataset\.labels"):
        collect(tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # Said on purpose through dataset.labels, they are one class.
    merged = collect(tmp_path / "src", tmp_path / "out", labels={"A B": "ab", "A_B": "ab"})
    assert [(r["path"], r["label"]) for r in merged["files"]] == [("C/c.mid", "C"), ("ab/a.mid", "ab"),
                                                                 ("ab/b.mid", "ab")]


def test_three_label_folders_that_would_become_one_label_get_a_mapping_that_works(tmp_path):
    import re

    from musicid.params import parse_section
    from tests.conftest import section_params

    tree(tmp_path / "src", {" /a.mid": midi_bytes(60), "+++/b.mid": midi_bytes(61), "???/c.mid": midi_bytes(62),
                            "C/d.mid": midi_bytes(63)})
    with pytest.raises(CollectionError) as refused:
        collect(tmp_path / "src", tmp_path / "out")
    message = str(refused.value)
    assert message.startswith("the label folders ' ', '+++' and '???' in src would all become the label '_' ")
    suggested = re.search(r"e\.g\. \{(.*)\}$", message).group(1)
    assert suggested == "' ': class-1, '+++': class-2, '???': class-3"
    labels = {" ": "class-1", "+++": "class-2", "???": "class-3"}  # as suggested: valid labels, and they work
    parse_section(as_dict_with(section_params("dataset"), labels=labels), "dataset")
    merged = collect(tmp_path / "src", tmp_path / "out", labels=labels)
    assert sorted({r["label"] for r in merged["files"]}) == ["C", "class-1", "class-2", "class-3"]


def as_dict_with(params, **changes):
    from musicid.params import as_dict

    return {**as_dict(params), **changes}


def test_an_unlabeled_folder_that_is_not_there_stops_the_collection(tmp_path):
    """A misspelt dataset.unlabeled would make the unlabeled files a class of their own."""


    tree(tmp_path / "src", {"A/a.mid": midi_bytes(60), "B/b.mid": midi_bytes(61), "test/new.mid": midi_bytes(62)})
    with pytest.raises(CollectionError, match=r"dataset.unlabeled 'tset': no folder of that name in src"):
        collect(tmp_path / "src", tmp_path / "out", unlabeled="tset")
    manifest = collect(tmp_path / "src", tmp_path / "out", unlabeled="test")
    assert [r["path"] for r in manifest["unlabeled"]] == ["_unlabeled/new.mid"]


def test_the_cap_is_filled_with_files_that_can_be_used(tmp_path):
    """dataset.max_per_class takes files in a seeded order; one render would reject from reading it (cut short,
    no notes, an audio file libsndfile cannot open) is skipped with render's reason, and the next one is taken."""
    import hashlib

    import pretty_midi

    silent = pretty_midi.PrettyMIDI()
    silent.instruments.append(pretty_midi.Instrument(program=0))
    silent.write(str(tmp_path / "silent.mid"))
    bad = {"bach/cut.mid": midi_bytes(60)[:12],  # cut inside its header
           "bach/empty-notes.mid": (tmp_path / "silent.mid").read_bytes(),
           "bach/broken.wav": wav_bytes()[:12] + b"garbage" * 4}
    good = {f"bach/good{i}.mid": midi_bytes(61 + i) for i in range(4)}
    tree(tmp_path / "src", {**bad, **good, "haydn/h.mid": midi_bytes(70)})

    def order(seed):  # collect_tree's seeded order
        return sorted([*bad, *good], key=lambda name: hashlib.sha256(f"{seed}:{name}".encode()).hexdigest())

    # A seed that ranks every bad file among the first four: without the check they would take both places
    seed = next(seed for seed in range(1000) if set(order(seed)[:4]) >= set(bad) and order(seed)[0] in bad)
    manifest = collect_tree(tmp_path / "src", "src/", tmp_path / "out", classes=[], labels={}, unlabeled=None,
                            max_per_class=2, seed=seed)
    ranked = order(seed)
    expected = [name for name in ranked if name in good][:2]
    assert [r["origin"] for r in manifest["files"] if r["label"] == "bach"] == [f"src/{n}" for n in sorted(expected)]
    found = reasons(manifest)
    assert {name: found[name].split(":")[0] for name in bad} == {
        "bach/cut.mid": "unparseable", "bach/empty-notes.mid": "no_notes", "bach/broken.wav": "decode_error"}
    last = ranked.index(expected[-1])
    assert all(found[name] == "over_max_per_class: 2" for name in ranked[last + 1:])


def test_hidden_files_and_folders_inside_a_label_are_left_out(tmp_path):
    """What a file manager hides is no one's music: .DS_Store, ._x.mid beside x.mid, .cache/, __MACOSX/."""
    from musicid.dataset import HIDDEN_REASON

    tree(tmp_path / "src", {"bach/a.mid": midi_bytes(60), "bach/.b.mid": midi_bytes(61),
                            "bach/._a.mid": b"\x00\x05\x16\x07\x00\x02", "bach/.DS_Store": b"\x00\x00\x00\x01Bud1",
                            "bach/.cache/c.mid": midi_bytes(62), "bach/__MACOSX/d.mid": midi_bytes(63),
                            "haydn/h.mid": midi_bytes(64)})
    manifest = collect(tmp_path / "src", tmp_path / "out")
    assert [r["path"] for r in manifest["files"]] == ["bach/a.mid", "haydn/h.mid"]
    assert reasons(manifest) == {name: HIDDEN_REASON for name in
                                 ("bach/.b.mid", "bach/._a.mid", "bach/.DS_Store", "bach/.cache/", "bach/__MACOSX/")}


def test_a_clash_names_the_folders_and_counts_only_kept_classes(tmp_path):
    tree(tmp_path / "src", {"Bach, J.S./a.mid": midi_bytes(60), "Bach J.S/b.mid": midi_bytes(61),
                            "haydn/c.mid": midi_bytes(62), "mozart/d.mid": midi_bytes(63)})
    # "Bach, J.S." is mapped to Bach_J.S, which the folder "Bach J.S" also becomes: the folders are named.
    with pytest.raises(CollectionError, match=r"the label folders 'Bach J\.S' and 'Bach, J\.S\.' in src would both "
                                              r"become the label 'Bach_J\.S'"):
        collect(tmp_path / "src", tmp_path / "out", labels={"Bach, J.S.": "Bach_J.S"})
    # Left out by dataset.classes, the clash does not matter.
    manifest = collect(tmp_path / "src", tmp_path / "out", classes=["haydn", "mozart"],
                       labels={"Bach, J.S.": "Bach_J.S"})
    assert [r["label"] for r in manifest["files"]] == ["haydn", "mozart"]


def test_classes_may_name_a_folder_that_dataset_labels_renames(tmp_path):
    tree(tmp_path / "src", {"Bach, J.S./a.mid": midi_bytes(60), "haydn/c.mid": midi_bytes(62),
                            "mozart/d.mid": midi_bytes(63)})
    manifest = collect(tmp_path / "src", tmp_path / "out", classes=["Bach, J.S.", "haydn"],
                       labels={"Bach, J.S.": "bach"})
    assert [r["label"] for r in manifest["files"]] == ["bach", "haydn"]


    with pytest.raises(CollectionError, match=r"dataset.classes names 'Hadyn' \(is it 'haydn'\?\), not a label found in src: bach, "):
        collect(tmp_path / "src", tmp_path / "out2", classes=["Bach, J.S.", "Hadyn"], labels={"Bach, J.S.": "bach"})
    # A class whose folder is there but holds nothing usable is no misspelling: the message says so.
    (tmp_path / "src" / "schubert").mkdir()
    (tmp_path / "src" / "schubert" / "notes.txt").write_text("not music")
    with pytest.raises(CollectionError) as refused:
        collect(tmp_path / "src", tmp_path / "out3", classes=["haydn", "schubert"])
    assert str(refused.value).endswith("; 'schubert': a folder with no MIDI or audio file kept (see the manifest's "
                                       "skipped)")


def test_a_pick_too_slow_to_read_is_left_to_render(tmp_path, monkeypatch):
    """Reading a candidate for the cap has a time limit; one that runs out is not called unusable."""
    import time

    import musicid.dataset
    import musicid.midi

    def slow(path, program=None):
        time.sleep(5)

    monkeypatch.setattr(musicid.midi, "read_midi", slow)
    monkeypatch.setattr(musicid.dataset, "PICK_CHECK_SECONDS", 0.2)
    tree(tmp_path / "src", {"bach/a.mid": midi_bytes(60)})
    started = time.monotonic()
    assert musicid.dataset.unusable_reason(tmp_path / "src" / "bach" / "a.mid") is None
    assert time.monotonic() - started < 2


def test_an_audio_pick_is_decoded_for_what_no_render_param_would_accept(tmp_path):
    """Digital silence, a NaN, or no frame at all make an audio file unusable whatever render's params; a quiet
    file (render.min_rms decides) and one cut short (render keeps what it holds) are left to render."""
    import numpy as np
    import soundfile

    from musicid.dataset import unusable_reason

    rate = 8000
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * rate) / rate)).astype(np.float32)
    with_nan = tone.copy()
    with_nan[rate * 2] = np.nan  # one: render sets it to 0
    many_nan = tone.copy()
    many_nan[::100] = np.nan  # 1 %: a damaged file
    files = {"tone.wav": (tone, "PCM_16"), "zeros.wav": (np.zeros(3 * rate, np.float32), "PCM_16"),
             "offset.wav": (np.full(3 * rate, 0.25, np.float32), "FLOAT"), "nan.wav": (with_nan, "FLOAT"),
             "nans.wav": (many_nan, "FLOAT"), "silent_nan.wav": (np.where(np.arange(3 * rate) == 5, np.nan, 0.0)
                                                                  .astype(np.float32), "FLOAT"),
             "none.wav": (np.zeros(0, np.float32), "PCM_16"), "quiet.flac": (tone * 1e-4, "PCM_24")}
    for name, (samples, subtype) in files.items():
        soundfile.write(tmp_path / name, samples, rate, subtype=subtype)
    soundfile.write(tmp_path / "long.flac", np.tile(tone, 10), rate, subtype="PCM_16")  # 4 blocks
    long_flac = (tmp_path / "long.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(long_flac[:len(long_flac) // 2])  # stops with an error after a block
    unfinished = bytearray((tmp_path / "tone.wav").read_bytes())
    at = unfinished.index(b"data") + 4
    unfinished[at:at + 4] = bytes(4)  # a recorder's header never finished: render reads its samples
    (tmp_path / "unfinished.wav").write_bytes(bytes(unfinished))
    found = {name: unusable_reason(tmp_path / name) for name in [*files, "cut.flac", "unfinished.wav"]}
    assert {name: reason and reason.split(":")[0] for name, reason in found.items()} == {
        "tone.wav": None, "zeros.wav": "silent", "offset.wav": "silent", "nan.wav": None, "nans.wav": "non_finite",
        "silent_nan.wav": "silent",
        "none.wav": "empty_render", "quiet.flac": None, "cut.flac": None, "unfinished.wav": None}


def test_what_is_left_out_of_a_label_folder_carries_its_label(tmp_path):
    """A user reading the manifest sees which class lost which file; every skipped record said label null."""
    tree(tmp_path / "src", {
        "Bach, J.S./a.mid": midi_bytes(60), "Bach, J.S./song.txt": b"notes", "Bach, J.S./.DS_Store": b"x",
        "Bach, J.S./sub/.cache/b.mid": midi_bytes(61), "haydn/c.mid": midi_bytes(62),
        "loose.mid": midi_bytes(63), "inbox/d.txt": b"x",
    })
    os.symlink(tmp_path / "src/haydn/c.mid", tmp_path / "src/haydn/link.mid")
    manifest = collect(tmp_path / "src", tmp_path / "out", labels={"Bach, J.S.": "bach"}, unlabeled="inbox")
    labels = {r["origin"].removeprefix("src/"): r["label"] for r in manifest["skipped"]}
    assert labels == {"Bach, J.S./song.txt": "bach", "Bach, J.S./.DS_Store": "bach",
                      "Bach, J.S./sub/.cache/": "bach", "haydn/link.mid": "haydn",
                      "loose.mid": None, "inbox/d.txt": None}


def test_a_misspelt_key_of_dataset_labels_is_named(tmp_path):
    """dataset.labels {scalez: sc} kept the folder 'scales' as a class of its own without a word."""
    from musicid.dataset import DatasetParamError

    tree(tmp_path / "src", {"scales/a.mid": midi_bytes(60), "Bach, J.S./b.mid": midi_bytes(61),
                            "empty/notes.txt": b"x"})
    with pytest.raises(DatasetParamError, match=r"dataset\.labels maps 'scalez', not a label folder found in src: "
                                                r"'Bach, J\.S\.', 'scales' \(a key is a folder's name as it is on "
                                                r"disk\)"):
        collect(tmp_path / "src", tmp_path / "out", labels={"scalez": "sc", "Bach, J.S.": "bach"})
    # A folder that is there but kept nothing is no misspelling.
    manifest = collect(tmp_path / "src", tmp_path / "out", labels={"scales": "sc", "empty": "e"})
    assert [r["label"] for r in manifest["files"]] == ["Bach__J.S", "sc"]


def test_label_folders_differing_only_in_case_stop_before_any_file_is_read(tmp_path):
    tree(tmp_path / "src", {"Bach/a.mid": midi_bytes(60), "bach/b.mid": midi_bytes(61),
                            "haydn/c.mid": midi_bytes(62)})
    with pytest.raises(CollectionError) as raised:
        collect(tmp_path / "src", tmp_path / "out")
    assert str(raised.value) == (
        "the label folders 'Bach' and 'bach' in src differ only in case: they would be 2 classes, and folders of "
        "data/raw that a case-insensitive file system (macOS, Windows) cannot hold apart; rename one, or map them "
        "to one label with dataset.labels, e.g. {'Bach': bach, 'bach': bach}")
    assert not (tmp_path / "out").exists()
    # Mapped to one label, or one of them left out by dataset.classes: fine.
    manifest = collect(tmp_path / "src", tmp_path / "one", labels={"Bach": "bach"})
    assert sorted(r["path"] for r in manifest["files"]) == ["bach/a.mid", "bach/b.mid", "haydn/c.mid"]
    manifest = collect(tmp_path / "src", tmp_path / "two", classes=["bach", "haydn"])
    assert sorted(r["path"] for r in manifest["files"]) == ["bach/b.mid", "haydn/c.mid"]


def test_an_empty_label_folder_is_recorded(tmp_path):
    """A folder whose copy never finished gave a class fewer without a word; a folder whose files were all left
    out already has their records, and a folder of empty subfolders is empty too."""
    tree(tmp_path / "src", {"bach/a.mid": midi_bytes(60), "haydn/notes.txt": b"x", "haydn/.DS_Store": b"x",
                            "Satie/.hidden/b.mid": midi_bytes(61)})
    for folder in ("mozart", "chopin/disc 1", "unlabeled"):
        (tmp_path / "src" / folder).mkdir(parents=True)
    manifest = collect(tmp_path / "src", tmp_path / "out", labels={"Satie": "satie"}, unlabeled="unlabeled")
    assert [r["path"] for r in manifest["files"]] == ["bach/a.mid"]
    empty = "empty_folder: a label folder with no file in it (an unfinished copy?)"
    assert [(r["origin"], r["label"]) for r in manifest["skipped"] if r["reason"] == empty] == [
        ("src/chopin/", "chopin"), ("src/mozart/", "mozart")]
    assert reasons(manifest)["haydn/notes.txt"] == "unsupported_type: .txt"
    assert reasons(manifest)["Satie/.hidden/"].startswith("hidden")


def test_a_riff_wrapped_copy_of_a_midi_file_is_the_same_piece(tmp_path):
    """prelude.mid and its RMID copy riff.rmi were both kept, so one piece could land in train and in test."""
    import struct

    midi = midi_bytes(60)
    pad = b"\0" if len(midi) % 2 else b""
    body = b"RMID" + b"data" + struct.pack("<I", len(midi)) + midi + pad
    riff = b"RIFF" + struct.pack("<I", len(body)) + body
    tree(tmp_path / "src", {"bach/prelude.mid": midi, "bach/riff.rmi": riff,
                            "haydn/other.mid": midi_bytes(61), "haydn/shared.RMI": riff})
    manifest = collect(tmp_path / "src", tmp_path / "out")
    assert [r["path"] for r in manifest["files"]] == ["haydn/other.mid"]
    assert reasons(manifest) == {
        "bach/prelude.mid": "ambiguous_label: the same content is under bach, haydn",
        "bach/riff.rmi": "ambiguous_label: the same content is under bach, haydn",
        "haydn/shared.RMI": "ambiguous_label: the same content is under bach, haydn",
        "": "no_such_class: no usable files with this label",  # bach: every file of it went
    }
    # Under one label only, the first (by path) is kept and the copy named.
    (tmp_path / "src" / "haydn" / "shared.RMI").unlink()
    manifest = collect(tmp_path / "src", tmp_path / "out2")
    assert [r["path"] for r in manifest["files"]] == ["bach/prelude.mid", "haydn/other.mid"]
    assert reasons(manifest) == {"bach/riff.rmi": "duplicate: same content as bach/prelude.mid"}


def _played(notes, ticks_per_beat=480, tempo=500000, program=0, channel=0, lead_in=0, velocity=90, split=False,
            name=None):
    """A MIDI file playing ``notes`` ((beat, pitch) pairs, each half a beat long), written as a given program
    would: its resolution, tempo, instrument, velocities, lead-in (beats of silence first), a track name, and
    the notes in one track or split over two."""
    import io

    import mido

    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)])
    if name:
        conductor.append(mido.MetaMessage("track_name", name=name, time=0))
    midi.tracks.append(conductor)
    parts = [notes[0::2], notes[1::2]] if split else [notes]
    for part in parts:
        events = [(round((lead_in + beat) * ticks_per_beat), "note_on", pitch, velocity) for beat, pitch in part] + \
            [(round((lead_in + beat + 0.5) * ticks_per_beat), "note_off", pitch, 0) for beat, pitch in part]
        track = mido.MidiTrack([mido.Message("program_change", channel=channel, program=program, time=0)])
        now = 0
        for tick, kind, pitch, loud in sorted(events, key=lambda e: (e[0], e[1] == "note_on")):
            track.append(mido.Message(kind, channel=channel, note=pitch, velocity=loud, time=tick - now))
            now = tick
        midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


TUNE = [(0, 60), (0.5, 64), (1, 67), (1.5, 72), (2.25, 71), (3, 67), (4, 65), (4.5, 64), (5, 62), (6, 60),
        (7 + 1 / 48, 59)]  # the last one step of the grid late, as a player's note may be


def test_a_midi_file_saved_again_by_another_program_is_the_same_piece(tmp_path):
    """Collections gathered from the web hold one sequence saved by several programs: other bytes, the same
    notes. As two tracks, one piece could be trained on and scored on."""
    original = _played(TUNE)
    copies = {"bach/original.mid": original,
              "bach/resaved.mid": _played(TUNE, ticks_per_beat=96, tempo=600000, velocity=64, split=True,
                                          lead_in=2, name="Prelude (copy)"),
              "bach/other_tune.mid": _played(TUNE[:-1] + [(4, 66)]),
              "bach/on_a_violin.mid": _played(TUNE, program=40),
              "bach/drums.mid": _played(TUNE, channel=9),
              "haydn/a.mid": midi_bytes(61)}
    tree(tmp_path / "src", copies)
    manifest = collect(tmp_path / "src", tmp_path / "out")
    assert [r["path"] for r in manifest["files"]] == [
        "bach/drums.mid", "bach/on_a_violin.mid", "bach/original.mid", "bach/other_tune.mid", "haydn/a.mid"]
    assert reasons(manifest) == {"bach/resaved.mid": "duplicate: same notes as bach/original.mid"}
    # Under two labels, neither is believed.
    tree(tmp_path / "src", {"haydn/resaved.mid": copies.pop("bach/resaved.mid")})
    (tmp_path / "src" / "bach" / "resaved.mid").unlink()
    manifest = collect(tmp_path / "src", tmp_path / "out2")
    assert reasons(manifest) == {"bach/original.mid": "ambiguous_label: the same notes are under bach, haydn",
                                 "haydn/resaved.mid": "ambiguous_label: the same notes are under bach, haydn"}


def test_the_notes_digest_reads_the_music_not_the_bytes():
    from musicid.midi import notes_digest

    digest = notes_digest(_played(TUNE))
    assert digest == notes_digest(_played(TUNE, ticks_per_beat=960, tempo=400000, velocity=30, lead_in=1.5))
    assert digest != notes_digest(_played([(beat, pitch + 2) for beat, pitch in TUNE]))  # transposed
    assert digest != notes_digest(_played([(beat * 1.5, pitch) for beat, pitch in TUNE]))  # another rhythm
    # A lead-in of one tick, or of a performer's odd number of ticks, is no other piece.
    assert notes_digest(_played(TUNE, ticks_per_beat=96, lead_in=1 / 96)) == digest
    assert notes_digest(_played(TUNE, ticks_per_beat=480, lead_in=137 / 480)) == digest
    assert notes_digest(b"MThd garbage") is None
    assert notes_digest(_played([])) is None  # no note: render says so, the bytes stay its identity
    assert notes_digest(_played(TUNE[:7])) is None  # too few notes to tell two pieces apart
    assert notes_digest(_played(TUNE[:8])) is not None


def test_a_silenced_copy_is_not_the_piece_it_silences(tmp_path):
    """A copy whose part is muted by its channel volume renders as silence and is rejected: it must not take
    the place of the copy that sounds."""
    import io

    import mido

    from musicid.midi import notes_digest

    muted = mido.MidiFile(file=io.BytesIO(_played(TUNE)))
    muted.tracks[1].insert(1, mido.Message("control_change", channel=0, control=7, value=0, time=0))
    buffer = io.BytesIO()
    muted.save(file=buffer)
    assert notes_digest(buffer.getvalue()) is None  # no note heard
    tree(tmp_path / "src", {"bach/a_muted_copy.mid": buffer.getvalue(), "bach/prelude.mid": _played(TUNE),
                            "haydn/a.mid": midi_bytes(61)})
    manifest = collect(tmp_path / "src", tmp_path / "out")
    assert [r["path"] for r in manifest["files"]] == ["bach/a_muted_copy.mid", "bach/prelude.mid", "haydn/a.mid"]


def test_one_recording_in_two_lossless_formats_is_one_track(tmp_path):
    """take1.wav and its FLAC, AIFF or WavPack copy under other names decode to the same samples: as two
    tracks, one recording could be trained on and scored on. Recordings of equal length are compared by
    their samples, not taken for one."""
    import numpy as np
    import soundfile

    from tests.conftest import write_wavpack

    rng = np.random.default_rng(0)
    # 16-bit samples given as such: libsndfile's float-to-16-bit rounding differs between its WAV and FLAC writers.
    music = np.round((0.3 * np.sin(np.arange(16000) * 0.05) + 0.01 * rng.standard_normal(16000)) * 32768) \
        .astype(np.int16)
    other = np.roll(music, 100)  # the same length, other samples
    src = tmp_path / "src"
    for name, data, fmt in (("bach/take1.wav", music, "WAV"), ("bach/backup/take1 (copy).flac", music, "FLAC"),
                            ("bach/take2.wav", other, "WAV"), ("haydn/a.aiff", music[::2] * 0.5, "AIFF")):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(src / name), data, 16000, format=fmt, subtype="PCM_16")
    floats = music.astype(np.float32) / 32768  # write_wavpack takes floats on the 16-bit grid
    write_wavpack(src / "bach" / "old" / "take1.wv", np.stack([floats, floats]), 16000)  # stereo: another recording
    manifest = collect(src, tmp_path / "out")
    assert [r["path"] for r in manifest["files"]] == [
        "bach/backup__take1__copy.flac", "bach/old__take1.wv", "bach/take2.wav", "haydn/a.aiff"]
    assert reasons(manifest) == {"bach/take1.wav": "duplicate: same samples as bach/backup/take1 (copy).flac"}
    # The same recording under two labels is believed under neither.
    soundfile.write(str(src / "haydn" / "b.aiff"), music, 16000, format="AIFF", subtype="PCM_16")
    manifest = collect(src, tmp_path / "out2")
    assert reasons(manifest)["haydn/b.aiff"] == "ambiguous_label: the same samples are under bach, haydn"
    # The stereo WavPack file and a stereo WAV of its samples are one (FFmpeg decodes 16-bit WavPack exactly).
    soundfile.write(str(src / "bach" / "stereo.wav"), np.stack([music, music], axis=1), 16000, subtype="PCM_16")
    (src / "haydn" / "b.aiff").unlink()
    manifest = collect(src, tmp_path / "out3")
    assert reasons(manifest)["bach/stereo.wav"] == "duplicate: same samples as bach/old/take1.wv"
    # A 24-bit copy of 16-bit samples decodes to the same values.
    from musicid.dataset import samples_digest

    soundfile.write(str(tmp_path / "hi.flac"), music.astype(np.int32) << 16, 16000, subtype="PCM_24")
    assert samples_digest(tmp_path / "hi.flac", ".flac") == samples_digest(src / "bach" / "take1.wav", ".wav")


def test_recordings_that_start_alike_are_compared_whole(tmp_path):
    """Two takes that agree for their first block of samples and differ later are two recordings."""
    import numpy as np
    import soundfile

    from musicid.audio import DECODE_BLOCK_FRAMES

    rng = np.random.default_rng(1)
    take = rng.integers(-9000, 9000, DECODE_BLOCK_FRAMES + 5000).astype(np.int16)
    other = take.copy()
    other[-1] += 1  # one sample of the second block differs
    src = tmp_path / "src"
    (src / "bach").mkdir(parents=True)
    soundfile.write(str(src / "bach" / "a.wav"), take, 16000, subtype="PCM_16")
    soundfile.write(str(src / "bach" / "b.wav"), other, 16000, subtype="PCM_16")
    soundfile.write(str(src / "bach" / "c.flac"), other, 16000, subtype="PCM_16")
    tree(src, {"haydn/x.mid": midi_bytes(61)})
    manifest = collect(src, tmp_path / "out")
    assert [r["path"] for r in manifest["files"]] == ["bach/a.wav", "bach/b.wav", "haydn/x.mid"]
    assert reasons(manifest) == {"bach/c.flac": "duplicate: same samples as bach/b.wav"}


def test_excerpts_of_one_length_are_told_apart_without_decoding_them_whole(tmp_path, monkeypatch):
    """Excerpts cut to one length, each after a silent lead-in longer than a block: read up to their first
    block with sound, not decoded whole; a copy of the same bytes is decoded once."""
    import numpy as np
    import soundfile

    from musicid import dataset
    from musicid.audio import DECODE_BLOCK_FRAMES

    whole_reads = []
    real = dataset.samples_digest

    def counted(path, suffix, first_block=False):
        if not first_block:
            whole_reads.append(path.name)
        return real(path, suffix, first_block)

    monkeypatch.setattr(dataset, "samples_digest", counted)
    rng = np.random.default_rng(2)
    src = tmp_path / "src"
    (src / "bach").mkdir(parents=True)
    for name in ("e1", "e2", "e3"):
        excerpt = np.concatenate([np.zeros(DECODE_BLOCK_FRAMES + 100, np.int16),
                                  rng.integers(-9000, 9000, 20000).astype(np.int16)])
        soundfile.write(str(src / "bach" / f"{name}.wav"), excerpt, 16000, subtype="PCM_16")
    (src / "bach" / "e3 copy.wav").write_bytes((src / "bach" / "e3.wav").read_bytes())
    soundfile.write(str(src / "bach" / "e3 (lossless).flac"),
                    soundfile.read(str(src / "bach" / "e3.wav"), dtype="int16")[0], 16000, subtype="PCM_16")
    tree(src, {"haydn/x.mid": midi_bytes(61)})
    manifest = collect(src, tmp_path / "out")
    assert reasons(manifest) == {"bach/e3 copy.wav": "duplicate: same samples as bach/e3 (lossless).flac",
                                 "bach/e3.wav": "duplicate: same samples as bach/e3 (lossless).flac"}
    assert sorted(whole_reads) == ["e3 (lossless).flac", "e3 copy.wav"]  # e1 and e2: their first sound differs


LONG_TUNE = [(beat / 2, 48 + (beat * 7) % 24) for beat in range(120)]


def test_a_copy_cut_short_is_the_piece_it_was_cut_from(tmp_path):
    """An interrupted download of piece.mid (render reads the tracks it holds, the one it stops in as far as
    it goes) or an excerpt of it is that piece: as a track of its own it could be trained on while the piece
    is scored on."""
    whole = _played(LONG_TUNE, split=True)
    cut = whole[: len(whole) * 2 // 3]  # stops inside the second part's track: its first part whole
    excerpt = _played(LONG_TUNE[:80])
    variation = _played(LONG_TUNE[:60] + [(30 + beat / 2, 40 + beat % 5) for beat in range(60)])  # opens alike
    short = _played(LONG_TUNE[:40])  # too few notes to be taken for a part of anything
    tree(tmp_path / "src", {"bach/piece.mid": whole, "bach/piece (1).mid": cut, "bach/excerpt.mid": excerpt,
                            "bach/variation.mid": variation, "bach/short.mid": short, "haydn/a.mid": midi_bytes(61)})
    manifest = collect(tmp_path / "src", tmp_path / "out")
    assert [r["path"] for r in manifest["files"]] == [
        "bach/piece.mid", "bach/short.mid", "bach/variation.mid", "haydn/a.mid"]
    assert reasons(manifest) == {
        "bach/piece (1).mid": "duplicate: its notes are all in bach/piece.mid (a copy cut short, an excerpt or a "
                              "part of it)",
        "bach/excerpt.mid": "duplicate: its notes are all in bach/piece.mid (a copy cut short, an excerpt or a part "
                            "of it)"}
    # Under another label the part is not believed; the file that holds it, more of the music, stays.
    (tmp_path / "src" / "bach" / "excerpt.mid").rename(tmp_path / "src" / "haydn" / "excerpt.mid")
    manifest = collect(tmp_path / "src", tmp_path / "out2")
    assert "bach/piece.mid" in [r["path"] for r in manifest["files"]]
    assert reasons(manifest)["haydn/excerpt.mid"] == "ambiguous_label: its notes are all in bach/piece.mid, under bach"


def test_a_part_goes_with_its_work_and_only_for_a_file_that_stays(tmp_path):
    """Review cases: the audio export of a part must go with the part; a part held in a piece that is itself
    under two labels goes too; a part held in a file dropped for another part's sake still has a kept
    holder to be dropped for, or is kept."""
    whole = _played(LONG_TUNE)
    soprano = [(beat / 2, 60 + (beat * 3) % 12) for beat in range(100)]
    voices = [(beat / 2, 40 + (beat * 5) % 12) for beat in range(100)]
    chorale = _played(soprano + voices)
    tree(tmp_path / "src", {
        "bach/piece.mid": whole, "bach/excerpt.mid": _played(LONG_TUNE[:80]), "bach/excerpt.wav": wav_bytes(),
        "bach/other.mid": _played(LONG_TUNE[:90], program=40),  # other instruments: not held
        "mozart/chorale.mid": chorale, "haydn/soprano.mid": _played(soprano),
        "mozart/bass.mid": _played(voices)})
    manifest = collect(tmp_path / "src", tmp_path / "out")
    assert reasons(manifest) == {
        "bach/excerpt.wav": "same_work: kept bach/excerpt.mid",
        "bach/excerpt.mid": "duplicate: its notes are all in bach/piece.mid (a copy cut short, an excerpt or a "
                            "part of it)",
        "haydn/soprano.mid": "ambiguous_label: its notes are all in mozart/chorale.mid, under mozart",
        "mozart/bass.mid": "duplicate: its notes are all in mozart/chorale.mid (a copy cut short, an excerpt or a "
                           "part of it)",
        "": "no_such_class: no usable files with this label"}  # haydn: its one file went
    assert [r["path"] for r in manifest["files"]] == ["bach/other.mid", "bach/piece.mid", "mozart/chorale.mid"]
    # A piece under two labels (the same notes twice) is believed under neither, nor is its cut copy.
    tree(tmp_path / "src2", {"bach/piece.mid": whole, "haydn/piece_resaved.mid": _played(LONG_TUNE, velocity=50),
                             "bach/piece (1).mid": _played(LONG_TUNE[:70]), "bach/b.mid": midi_bytes(62),
                             "haydn/c.mid": midi_bytes(63)})
    manifest = collect(tmp_path / "src2", tmp_path / "out2")
    assert [r["path"] for r in manifest["files"]] == ["bach/b.mid", "haydn/c.mid"]
    assert reasons(manifest)["bach/piece (1).mid"] == (
        "ambiguous_label: its notes are all in haydn/piece_resaved.mid, under haydn")


def test_a_file_is_held_in_another_only_if_every_note_of_it_is():
    from musicid.midi import early_notes, heard_notes, holds_notes

    whole = heard_notes(_played(LONG_TUNE))
    assert holds_notes(whole, heard_notes(_played(LONG_TUNE[:90])))
    assert holds_notes(whole, heard_notes(_played(LONG_TUNE[0::2] + LONG_TUNE[1:70:2])))  # a part, and half another
    assert not holds_notes(whole, heard_notes(_played(LONG_TUNE[:50])))  # under 64 notes: never
    assert not holds_notes(whole, heard_notes(_played(LONG_TUNE[:89] + [(44.5, 90)])))  # one note not in it
    assert not holds_notes(whole, heard_notes(_played(LONG_TUNE[:80] + LONG_TUNE[79:80])))  # a note twice
    assert not holds_notes(whole, heard_notes(_played(LONG_TUNE[1:91])))  # counted from another first note
    assert early_notes(heard_notes(_played(LONG_TUNE[:90]))) <= early_notes(whole)
    assert early_notes(heard_notes(_played(LONG_TUNE[:50]))) == frozenset()


def test_a_part_under_two_labels_names_the_file_of_the_other_label(tmp_path):
    longer = _played(LONG_TUNE + [(61 + beat / 2, 50) for beat in range(20)])
    tree(tmp_path / "src", {"chopin/longer.mid": longer, "bach/piece.mid": _played(LONG_TUNE),
                            "chopin/part.mid": _played(LONG_TUNE[:80])})
    manifest = collect(tmp_path / "src", tmp_path / "out")
    assert reasons(manifest)["chopin/part.mid"] == "ambiguous_label: its notes are all in bach/piece.mid, under bach"


def test_files_read_on_workers_give_the_same_manifest(tmp_path, monkeypatch):
    """Download reads a large collection's files on worker processes (their notes cost about 1.2 ms a KB): the
    copies found, the misnamed and broken files and the picks of dataset.max_per_class are what reading them
    here finds."""
    import musicid.dataset

    whole = _played(LONG_TUNE, split=True)
    tree(tmp_path / "src", {
        "bach/piece.mid": whole, "bach/piece (1).mid": whole[: len(whole) * 2 // 3],
        "bach/resaved.mid": _played(LONG_TUNE, ticks_per_beat=96, lead_in=2),
        "bach/cut.mid": midi_bytes(60)[:12], "bach/sound.mid": wav_bytes(), "bach/text.mid": b"not music" * 8,
        **{f"bach/good{i}.mid": midi_bytes(61 + i) for i in range(5)},
        **{f"haydn/h{i}.mid": midi_bytes(70 + i) for i in range(3)}})
    used = []
    real_map = musicid.dataset.ordered_map

    def spy(function, items, jobs, **kwargs):
        used.append((function.__name__, jobs))
        return real_map(function, items, jobs=jobs, **kwargs)

    monkeypatch.setattr(musicid.dataset, "ordered_map", spy)
    manifests = {}
    for jobs in (1, 2):
        # Below the thresholds the files are read here whatever jobs says; at 0 bytes on workers.
        monkeypatch.setattr(musicid.dataset, "SPREAD_MIDI_BYTES", 0 if jobs == 2 else 1 << 20)
        manifests[jobs] = collect_tree(tmp_path / "src", "src/", tmp_path / f"out{jobs}", classes=[], labels={},
                                       unlabeled=None, max_per_class=4, seed=3, jobs=jobs)
    assert used == [("identify", 1), ("_pick_reason", 1), ("identify", 2), ("_pick_reason", 2)]  # bach's picks
    assert manifests[1] == manifests[2]
    found = reasons(manifests[2])
    assert found["bach/resaved.mid"] == "duplicate: same notes as bach/piece.mid"
    assert found["bach/piece (1).mid"].startswith("duplicate: its notes are all in bach/piece.mid")
    assert found["bach/cut.mid"].startswith("unparseable")  # a pick that cannot be read gives its place up
    assert found["bach/text.mid"] == "content_mismatch: named .mid but looks like plain text"
    assert sorted(r["origin"] for r in manifests[2]["files"] if r["label"] == "bach") == [
        "src/bach/good2.mid", "src/bach/good4.mid", "src/bach/piece.mid", "src/bach/sound.mid"]
    assert [r["renamed"] for r in manifests[2]["files"] if "renamed" in r] == [
        "named .mid but looks like WAV audio: kept as .wav"]
    assert sorted(name for name, reason in found.items() if reason == "over_max_per_class: 4") == [
        "bach/good0.mid", "bach/good1.mid", "bach/good3.mid"]


def test_reading_goes_to_workers_only_when_worth_their_start(tmp_path, monkeypatch):
    import musicid.dataset
    from musicid.dataset import read_jobs

    small, audio = tmp_path / "a.mid", tmp_path / "b.wav"
    small.write_bytes(bytes(600))
    audio.write_bytes(bytes(2000))
    monkeypatch.setattr(musicid.dataset, "SPREAD_MIDI_BYTES", 1000)
    monkeypatch.setattr(musicid.dataset, "SPREAD_BYTES", 4000)
    assert read_jobs(2, [small, audio]) == 1  # 600 bytes of MIDI, 2600 in all: read here
    assert read_jobs(2, [small, small]) == 2  # 1200 bytes of MIDI
    assert read_jobs(0, [audio, audio]) == 0  # 4000 in all: one worker per core
    assert read_jobs(1, [small, small]) == 1  # one job asked for
    assert read_jobs(2, [tmp_path / "gone.mid", small]) == 1  # a file gone is identify's to name

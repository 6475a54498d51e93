"""dataset.label_table: labels read from a CSV of the collection (as MAESTRO's) instead of folder names."""

from __future__ import annotations

import hashlib

import pytest

from musicid.label_table import LabelTableError, read_table, table_key
from musicid.params import ParamsError, parse_section
from tests.archives import midi_bytes, wav_bytes, zip_bytes
from tests.test_download_stage import manifest, raw_files, run_stage, tree, workspace  # noqa: F401 (fixture)

TABLE = dict(path_column="midi_filename", label_column="canonical_composer", group_column=None)
COLUMNS = dict(file="maestro.csv", path_column="midi_filename", label_column="canonical_composer",
               group_column="canonical_title", split_column=None)


def rows(text: str | bytes, **columns):
    data = text.encode() if isinstance(text, str) else text
    return [(row.line, row.path, row.label, row.group)
            for row in read_table(data, **{**TABLE, **columns}, shown="t.csv")]


def test_separators_quotes_and_a_byte_order_mark():
    expected = [(2, "2004/a.midi", "Bach, J.S.", ""), (3, "2004/b.midi", "Chopin", "")]
    comma = 'canonical_composer,midi_filename\n"Bach, J.S.",2004/a.midi\nChopin,2004/b.midi\n'
    assert rows(comma) == expected
    assert rows(b"\xef\xbb\xbf" + comma.encode()) == expected  # a spreadsheet's "CSV UTF-8"
    assert rows("canonical_composer;midi_filename\nBach, J.S.;2004/a.midi\nChopin;2004/b.midi\n") == expected
    assert rows("canonical_composer\tmidi_filename\r\nBach, J.S.\t2004/a.midi\r\nChopin\t2004/b.midi\r\n") == expected
    # Blank rows are left out, other columns ignored, a short row's missing cells are empty, cells stripped.
    assert rows('year,midi_filename , canonical_composer,title\n\n2004, x.mid ,  Liszt ,"A\nB"\n2005,y.mid\n',
                group_column="title") == [(4, "x.mid", "Liszt", "A\nB"), (5, "y.mid", "", "")]


@pytest.mark.parametrize("data, match", [
    (b"composer,file\nBach,a.mid\n", r"dataset.label_table.path_column 'midi_filename' is not a column of t.csv, "
                                     r"whose first row names 'composer', 'file'"),
    (b"midi_filename;composer\na.mid;Bach\n", r"label_column 'canonical_composer' is not a column of t.csv, whose "
                                              r"first row names 'midi_filename', 'composer'"),
    (b"midi_filename,canonical_composer\na.mid,Dvo\xf8r\xe1k\n", r"t.csv is not UTF-8 text \(line 2, byte 42\): save it as UTF-8"),
    (b"", r"t.csv is empty"),
    (b"midi_filename,canonical_composer\n\n", r"t.csv has no row below its first"),
    (b"MThd\x00\x00\x00\x06", r"not a text table"),
])
def test_a_table_that_cannot_be_used_names_the_key(data, match):
    with pytest.raises(LabelTableError, match=match):
        read_table(data, **TABLE, shown="t.csv")


def test_group_column_must_be_a_column():
    with pytest.raises(LabelTableError, match=r"group_column 'title' is not a column"):
        rows("midi_filename,canonical_composer\na.mid,Bach\n", group_column="title")


def test_paths_compare_with_either_separator_and_composed_accents():
    assert table_key(" ./2004\\a.midi ") == "2004/a.midi"
    assert table_key("Dvor\u030cák/x.mid") == table_key("Dvořák/x.mid")


def test_params_are_checked_naming_the_key():
    base = dict(source="path", classes=[], max_per_class=0, seed=0, url=None, sha256=None, allow_unverified=False,
                path="x", labels={}, unlabeled=None, max_bytes=1, max_files=1, timeout_s=1, program=None)
    table = dict(file="t.csv", path_column="path", label_column="label", group_column=None, split_column=None)
    assert parse_section({**base, "label_table": table}, "dataset").label_table.file == "t.csv"
    with pytest.raises(ParamsError, match=r"dataset\.label_table\.label_column must be another column"):
        parse_section({**base, "label_table": {**table, "label_column": "path"}}, "dataset")
    with pytest.raises(ParamsError, match=r"dataset\.label_table\.group_column must be another column"):
        parse_section({**base, "label_table": {**table, "group_column": "label"}}, "dataset")
    with pytest.raises(ParamsError, match=r"dataset\.label_table\.split_column must be another column"):
        parse_section({**base, "label_table": {**table, "split_column": "path"}}, "dataset")
    with pytest.raises(ParamsError, match=r"dataset\.label_table\.file must name the table"):
        parse_section({**base, "label_table": {**table, "file": " "}}, "dataset")
    with pytest.raises(ParamsError, match=r"dataset\.label_table\.file is for dataset\.source url or path"):
        parse_section({**base, "source": "music21", "classes": ["bach"], "label_table": table}, "dataset")
    with pytest.raises(ParamsError, match=r"dataset\.label_table\.path_column"):
        parse_section({**base, "label_table": {**table, "path_column": ""}}, "dataset")


MAESTRO_LIKE = (
    "canonical_composer,canonical_title,split,midi_filename\n"
    '"Bach, J.S.",Prelude in C,train,2004/a.midi\n'
    "Chopin,Ballade No. 1,train,2004\\b.midi\n"   # written on Windows
    "Chopin,Ballade No. 1,test,2006/c.midi\n"     # the same piece, another pianist: one work
    ",Untitled,train,2006/d.midi\n"               # no composer given
    "Liszt,Sonata,train,2006/gone.midi\n"         # a row whose file is not in the collection
    "Chopin,Waltz,train,2006/e.midi\n"
    "Liszt,Waltz,train,2006/e.midi\n"             # one file, two composers: neither is believed
    "Chopin,Mazurka,train,2006/deep/f.midi\n"
)


def labelled_by_table(workspace, table: dict | None = None, **dataset):
    return run_stage(workspace, source="path", path="../src", label_table={**COLUMNS, **(table or {})}, **dataset)


@pytest.fixture
def maestro_like(workspace):
    tree(workspace / "src", {"maestro.csv": MAESTRO_LIKE.encode(), "2004/a.midi": midi_bytes(60),
                             "2004/b.midi": midi_bytes(61), "2006/c.midi": midi_bytes(62),
                             "2006/d.midi": midi_bytes(63), "2006/e.midi": midi_bytes(64),
                             "2006/deep/f.midi": midi_bytes(65), "2006/unlisted.wav": wav_bytes(),
                             "README.txt": b"about"})
    return workspace


def test_a_folder_labelled_by_its_table(maestro_like):
    assert labelled_by_table(maestro_like) == 0
    assert raw_files(maestro_like) == ["Bach__J.S/2004__a.midi", "Chopin/2004__b.midi", "Chopin/2006__c.midi",
                                       "Chopin/2006__deep__f.midi", "manifest.json"]
    result = manifest(maestro_like)
    # The group column is what split.group: folder keeps together (the Ballade's two performances);
    # the folders a file sits in two deep are its parent, as in a label folder.
    assert [(r["path"], r["label"], r["origin"], r.get("folder"), r.get("parent")) for r in result["files"]] == [
        ("Bach__J.S/2004__a.midi", "Bach__J.S", "../src/2004/a.midi", "Prelude in C", None),
        ("Chopin/2004__b.midi", "Chopin", "../src/2004/b.midi", "Ballade No. 1", None),
        ("Chopin/2006__c.midi", "Chopin", "../src/2006/c.midi", "Ballade No. 1", None),
        ("Chopin/2006__deep__f.midi", "Chopin", "../src/2006/deep/f.midi", "Mazurka", "2006/deep")]
    # Each file and row left out says why; the table itself is not a file of the collection.
    assert [(r["origin"], r["label"], r["reason"]) for r in result["skipped"]] == [
        ("../src/", "Liszt", "no_such_class: no usable files with this label"),
        ("../src/2006/d.midi", None, "no_label: line 5 of the label table gives it none"),
        ("../src/2006/e.midi", None, "conflicting_labels: lines 7, 8 of the label table give 'Chopin', 'Liszt'"),
        ("../src/2006/unlisted.wav", None, "not_in_label_table: no row of dataset.label_table names this file"),
        ("../src/README.txt", None, "unsupported_type: .txt"),
        ("../src/maestro.csv:6", "Liszt", "no_such_file: 2006/gone.midi")]


def test_without_a_group_column_a_file_is_grouped_by_its_first_folder(maestro_like):
    assert labelled_by_table(maestro_like, {"group_column": None}) == 0
    assert [r.get("folder") for r in manifest(maestro_like)["files"]] == ["2004", "2004", "2006", "2006"]


def test_labels_and_classes_apply_to_the_tables_labels(maestro_like, capsys):
    assert labelled_by_table(maestro_like, labels={"Bach, J.S.": "bach", "Liszt": "liszt"},
                             classes=["bach", "Chopin"]) == 0
    assert raw_files(maestro_like) == ["Chopin/2004__b.midi", "Chopin/2006__c.midi", "Chopin/2006__deep__f.midi",
                                       "bach/2004__a.midi", "manifest.json"]
    # A key that is no label of the table (a misspelling) stops the stage, naming the labels it has.
    assert labelled_by_table(maestro_like, labels={"Bach": "bach"}) == 2
    assert ("dataset.labels maps 'Bach', not one of the labels of ../src/maestro.csv: 'Bach, J.S.', 'Chopin', "
            "'Liszt' (a key is a label as the table writes it)") in capsys.readouterr().err
    # A class the table names whose files are all missing is said to be so.
    assert labelled_by_table(maestro_like, classes=["Chopin", "Liszt"]) == 2
    assert "'Liszt': a label with no MIDI or audio file kept" in capsys.readouterr().err


def test_a_table_that_names_no_file_says_where_paths_are_read_from(maestro_like, capsys):
    (maestro_like / "src" / "maestro.csv").write_text("canonical_composer,canonical_title,midi_filename\n"
                                                      "Chopin,Ballade,maestro/2004/b.midi\n")
    assert labelled_by_table(maestro_like) == 2
    assert ("dataset.label_table.path_column 'midi_filename': no row of ../src/maestro.csv names a file of "
            "../src (line 2: 'maestro/2004/b.midi'); paths are read relative to the table's folder (the "
            "collection)") in capsys.readouterr().err
    assert not (maestro_like / "project" / "data" / "raw").exists()


def test_a_missing_table_or_column_stops_the_stage_naming_the_key(maestro_like, capsys):
    assert labelled_by_table(maestro_like, {"file": "labels.csv"}) == 2
    assert "dataset.label_table.file 'labels.csv': no such file in ../src" in capsys.readouterr().err
    assert labelled_by_table(maestro_like, {"label_column": "composer"}) == 2
    assert "dataset.label_table.label_column 'composer' is not a column of ../src/maestro.csv" in \
        capsys.readouterr().err


def test_a_table_kept_outside_the_collection_reads_paths_from_its_root(maestro_like):
    outside = maestro_like / "labels.tsv"
    outside.write_text("midi_filename\tcanonical_composer\n2004/a.midi\tBach\n2006/c.midi\tChopin\n")
    assert labelled_by_table(maestro_like, {"file": str(outside), "group_column": None}) == 0
    result = manifest(maestro_like)
    assert [r["path"] for r in result["files"]] == ["Bach/2004__a.midi", "Chopin/2006__c.midi"]
    # Inside the collection, the CSV that is not the table is a file like any other.
    assert ("../src/maestro.csv", "unsupported_type: .csv") in [(r["origin"], r["reason"]) for r in result["skipped"]]


def test_an_archive_wrapping_its_table_in_a_folder(workspace):
    archive = workspace / "maestro.zip"
    archive.write_bytes(zip_bytes({
        "maestro-v3/maestro-v3.csv": b"canonical_composer,midi_filename\nBach,2004/a.midi\nChopin,2004/b.midi\n",
        "maestro-v3/2004/a.midi": midi_bytes(60), "maestro-v3/2004/b.midi": midi_bytes(61)}))
    assert run_stage(workspace, source="url", url=archive.as_uri(),
                     sha256=hashlib.sha256(archive.read_bytes()).hexdigest(),
                     label_table={**COLUMNS, "file": "maestro-v3.csv", "group_column": None}) == 0
    assert raw_files(workspace) == ["Bach/2004__a.midi", "Chopin/2004__b.midi", "manifest.json"]
    assert manifest(workspace)["skipped"] == []


def test_unlabeled_folder_beside_a_table(maestro_like):
    tree(maestro_like / "src", {"new/x.mid": midi_bytes(70)})
    assert labelled_by_table(maestro_like, unlabeled="new") == 0
    assert [r["path"] for r in manifest(maestro_like)["unlabeled"]] == ["_unlabeled/x.mid"]


def test_the_collections_own_split_goes_into_the_manifest(maestro_like):
    table = maestro_like / "src" / "maestro.csv"
    table.write_text(MAESTRO_LIKE.replace(",train,2006/deep", ",Dev,2006/deep").replace(",test,", ",TEST,")
                     .replace("Prelude in C,train,", "Prelude in C,later,"))
    assert labelled_by_table(maestro_like, {"split_column": "split"}) == 0
    result = manifest(maestro_like)
    # train, validation and test in any case and spelling a collection uses (MAESTRO: validation).
    assert [(r["path"], r.get("split")) for r in result["files"]] == [
        ("Chopin/2004__b.midi", "train"), ("Chopin/2006__c.midi", "test"), ("Chopin/2006__deep__f.midi", "val")]
    assert ("../src/2004/a.midi", "Bach__J.S", "no_split: line 2 of the label table gives 'later' in its split "
            "column, not one of train, validation or test") in [(r["origin"], r["label"], r["reason"])
                                                          for r in result["skipped"]]
    assert labelled_by_table(maestro_like, {"split_column": "part"}) == 2


def test_rows_are_matched_by_their_normal_path_and_odd_rows_say_why(workspace):
    tree(workspace / "src", {
        "t.csv": ("midi_filename,canonical_composer,canonical_title\n"
                  "a/../a/x.mid,Bach,\n"        # the same file, written the long way
                  "a,Bach,\n"                   # a folder
                  "../y.mid,Bach,\n"            # outside the table's folder
                  "c/d.mid,Bach,\n"             # names c/d.mid only, not a file literally named c\d.mid
                  "a/z.mid,Bach,Sonata\n"
                  "a/z.mid,,Sonata\n"           # an empty label contradicts nothing
                  "b/w.mid,JS Bach,\n"
                  "b/w.mid,Bach,\n"             # two spellings dataset.labels makes one
                  "2006/v.mid,Haydn,\n"         # no group: its own, not the group named like its folder
                  "b/u.mid,Haydn,2006\n").encode(),
        "a/x.mid": midi_bytes(60), "a/z.mid": midi_bytes(61), "c\\d.mid": midi_bytes(62), "b/w.mid": midi_bytes(63),
        "2006/v.mid": midi_bytes(64), "b/u.mid": midi_bytes(65)})
    assert run_stage(workspace, source="path", path="../src", labels={"JS Bach": "Bach"},
                     label_table={**COLUMNS, "file": "t.csv"}) == 0
    result = manifest(workspace)
    assert [(r["path"], r["label"], r.get("folder")) for r in result["files"]] == [
        ("Bach/a__x.mid", "Bach", None), ("Bach/a__z.mid", "Bach", "Sonata"), ("Bach/b__w.mid", "Bach", None),
        ("Haydn/2006__v.mid", "Haydn", None), ("Haydn/b__u.mid", "Haydn", "2006")]
    assert {(r["origin"], r["reason"]) for r in result["skipped"]} == {
        ("../src/c\\d.mid", "not_in_label_table: no row of dataset.label_table names this file"),
        ("../src/t.csv:3", "not_a_file: a is a folder"), ("../src/t.csv:4", "outside: ../y.mid is not below the "
                                                                             "table's folder"),
        ("../src/t.csv:5", "no_such_file: c/d.mid")}


def test_where_the_table_is_decides_where_its_rows_are_read_from(maestro_like, capsys):
    assert labelled_by_table(maestro_like, {"file": "../maestro.csv"}) == 2
    assert "dataset.label_table.file '../maestro.csv' leads out of the collection" in capsys.readouterr().err
    # An absolute path into the collection is a table of it: its rows are read from its own folder.
    assert labelled_by_table(maestro_like, {"file": str(maestro_like / "src" / "maestro.csv")}) == 0
    assert [r["path"] for r in manifest(maestro_like)["files"]][0] == "Bach__J.S/2004__a.midi"


def test_a_file_too_large_to_be_a_table_is_refused(maestro_like, capsys, monkeypatch):
    from musicid import dataset

    monkeypatch.setattr(dataset, "MAX_TABLE_BYTES", 100)
    assert labelled_by_table(maestro_like) == 2
    assert (f"dataset.label_table.file ../src/maestro.csv is {len(MAESTRO_LIKE.encode())} bytes, more than a "
            "table of labels holds (at most "
            "100 bytes is read): is it the table?") in capsys.readouterr().err


def test_a_row_naming_nothing_or_the_table_itself_says_so(maestro_like):
    with open(maestro_like / "src" / "maestro.csv", "a") as table:
        table.write("Chopin,Nocturne,train,\n"          # a label and no path
                    "Chopin,Table,train,maestro.csv\n")  # the table itself
    assert labelled_by_table(maestro_like) == 0
    rows = {r["origin"]: r["reason"] for r in manifest(maestro_like)["skipped"]
            if r["origin"].startswith("../src/maestro")}
    assert rows == {"../src/maestro.csv:6": "no_such_file: 2006/gone.midi",
                    "../src/maestro.csv:10": "no_path: the row names no file",
                    "../src/maestro.csv:11": "not_a_file: maestro.csv is the label table"}

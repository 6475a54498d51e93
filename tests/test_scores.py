"""Score files (MusicXML, compressed MusicXML, Humdrum kern, ABC) in a collection: written out as MIDI by download."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from musicid.dataset import collect_tree
from musicid.filetypes import score_mismatch
from tests.archives import midi_bytes

ROOT = Path(__file__).resolve().parent.parent
TUNE = [60, 62, 64, 65, 67, 69, 71, 72, 74, 72, 70, 67]  # 12 quarter notes: enough for the notes' digest
OTHER = [67, 65, 64, 62, 60, 59, 57, 55, 57, 59, 60, 64]
STEPS = {0: ("C", 0), 1: ("C", 1), 2: ("D", 0), 3: ("E", -1), 4: ("E", 0), 5: ("F", 0), 6: ("F", 1), 7: ("G", 0),
         8: ("A", -1), 9: ("A", 0), 10: ("B", -1), 11: ("B", 0)}
KERN_NAMES = "c c# d e- e f f# g a- a b- b".split()


def musicxml(pitches: list[int]) -> bytes:
    """A partwise MusicXML score of one part playing ``pitches`` as quarter notes in 4/4."""
    notes = []
    for pitch in pitches:
        step, alter = STEPS[pitch % 12]
        notes.append(f"<note><pitch><step>{step}</step>{f'<alter>{alter}</alter>' if alter else ''}"
                     f"<octave>{pitch // 12 - 1}</octave></pitch><duration>1</duration><type>quarter</type></note>")
    measures = "".join(
        f'<measure number="{start // 4 + 1}">'
        + ("<attributes><divisions>1</divisions><time><beats>4</beats><beat-type>4</beat-type></time>"
           "<clef><sign>G</sign><line>2</line></clef></attributes>" if start == 0 else "")
        + "".join(notes[start:start + 4]) + "</measure>" for start in range(0, len(notes), 4))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<score-partwise version="3.1"><part-list><score-part id="P1">'
            f'<part-name>Music</part-name></score-part></part-list><part id="P1">{measures}</part>'
            "</score-partwise>\n").encode()


def mxl(pitches: list[int], path: Path) -> None:
    """:func:`musicxml` compressed: a zip archive whose container names the score."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("META-INF/container.xml", '<?xml version="1.0" encoding="UTF-8"?><container><rootfiles>'
                                                   '<rootfile full-path="score.xml"/></rootfiles></container>')
        archive.writestr("score.xml", musicxml(pitches))


def mei(pitches: list[int]) -> bytes:
    """An MEI score of one staff playing ``pitches`` as quarter notes in 4/4."""
    notes = []
    for pitch in pitches:
        name = KERN_NAMES[pitch % 12]
        accidental = {"#": ' accid.ges="s"', "-": ' accid.ges="f"'}.get(name[1:], "")
        notes.append(f'<note pname="{name[0]}" oct="{pitch // 12 - 1}" dur="4"{accidental}/>')
    measures = "".join(f'<measure n="{start // 4 + 1}"><staff n="1"><layer n="1">{"".join(notes[start:start + 4])}'
                       "</layer></staff></measure>" for start in range(0, len(notes), 4))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<mei xmlns="http://www.music-encoding.org/ns/mei" '
            'meiversion="4.0.0"><meiHead><fileDesc><titleStmt><title>t</title></titleStmt><pubStmt/></fileDesc>'
            '</meiHead><music><body><mdiv><score><scoreDef meter.count="4" meter.unit="4"><staffGrp>'
            '<staffDef n="1" lines="5" clef.shape="G" clef.line="2"/></staffGrp></scoreDef>'
            f"<section>{measures}</section></score></mdiv></body></music></mei>\n").encode()


def kern(pitches: list[int]) -> bytes:
    """A Humdrum **kern spine playing ``pitches`` as quarter notes in 4/4."""
    lines = ["!!!COM: Nobody", "**kern", "*M4/4"]
    for index, pitch in enumerate(pitches):
        name, octave = KERN_NAMES[pitch % 12], pitch // 12 - 1
        letter = name[0] * (octave - 3) if octave >= 4 else name[0].upper() * (4 - octave)
        lines += (["="] if index and index % 4 == 0 else []) + [f"4{letter}{name[1:]}"]
    return ("\n".join(lines + ["*-"]) + "\n").encode()


def abc(pitches: list[int]) -> bytes:
    """An ABC tune playing ``pitches`` as quarter notes in 4/4."""
    letters = []
    for pitch in pitches:
        name, octave = KERN_NAMES[pitch % 12], pitch // 12 - 1
        accidental = "^" if name.endswith("#") else "_" if name.endswith("-") else ""
        letters.append(accidental + (name[0].upper() + "," * (4 - octave) if octave <= 4
                                     else name[0] + "'" * (octave - 5)))
    return ("X:1\nT:Tune\nM:4/4\nL:1/4\nK:C\n" + " ".join(letters) + "|]\n").encode()


def tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def reasons(manifest: dict) -> dict[str, str]:
    return {r["origin"].removeprefix("src/"): r["reason"] for r in manifest["skipped"]}


def collect(root: Path, out: Path, **kwargs) -> dict:
    return collect_tree(root, "src/", out, classes=[], labels={}, unlabeled=None, max_per_class=0, seed=0, **kwargs)


def test_scores_are_written_as_midi_and_read_as_any_midi_file(tmp_path):
    """KernScores, MusicXML and ABC collections are what much of composer identification is studied on: each
    score becomes <label>/<name>.mid, the stages after see MIDI only; a score and its MIDI export are one
    work (the score kept, as for the corpus), the same music in two formats under two names one piece."""
    src = tmp_path / "src"
    tree(src, {"bach/prelude.krn": kern(TUNE), "bach/prelude.mid": midi_bytes(61),  # a work and its export
               "bach/toccata.abc": abc(TUNE),  # the prelude's notes again, under another name
               "bach/fugue.musicxml": musicxml(OTHER),
               "haydn/minuet.xml": musicxml([n + 2 for n in TUNE]), "haydn/trio.abc": abc([n - 3 for n in OTHER]),
               "haydn/notes.xml": b'<?xml version="1.0"?><plist><dict/></plist>\n',  # a sidecar, not a score
               "haydn/broken.krn": b"!!!COM x\n**kern\n4c\n*-\n", "haydn/binary.abc": b"X:1\x00\x01\x02"})
    mxl([n + 5 for n in TUNE], src / "haydn" / "rondo.mxl")
    tree(src, {"haydn/finale.mei": mei([n - 5 for n in TUNE]), "haydn/readme.mei": b"<?xml version='1.0'?><x/>"})
    out = tmp_path / "out"
    out.mkdir()
    manifest = collect(src, out)
    records = {r["origin"].removeprefix("src/"): r for r in manifest["files"]}
    assert {origin: (r["path"], r.get("converted")) for origin, r in records.items()} == {
        "bach/prelude.krn": ("bach/prelude.mid", "Humdrum kern score written as MIDI by music21"),
        "bach/fugue.musicxml": ("bach/fugue.mid", "MusicXML score written as MIDI by music21"),
        "haydn/minuet.xml": ("haydn/minuet.mid", "MusicXML score written as MIDI by music21"),
        "haydn/rondo.mxl": ("haydn/rondo.mid", "compressed MusicXML score written as MIDI by music21"),
        "haydn/trio.abc": ("haydn/trio.mid", "ABC score written as MIDI by music21"),
        "haydn/finale.mei": ("haydn/finale.mid", "MEI score written as MIDI by music21")}
    found = reasons(manifest)
    assert found["bach/prelude.mid"] == "same_work: kept bach/prelude.krn"
    assert found["bach/toccata.abc"] == "duplicate: same notes as bach/prelude.krn"
    assert found["haydn/notes.xml"] == "content_mismatch: named .xml but holds no MusicXML score"
    assert found["haydn/binary.abc"].startswith("content_mismatch: named .abc but looks like")
    assert found["haydn/broken.krn"].startswith("unconvertible: ")
    assert found["haydn/readme.mei"] == "content_mismatch: named .mei but holds no MEI score"
    assert len(found) == 6
    # What is kept is the MIDI file music21 writes (the record's sha256 is its own), and nothing else is left.
    import pretty_midi

    fugue = pretty_midi.PrettyMIDI(str(out / "bach" / "fugue.mid"))
    assert [note.pitch for note in fugue.instruments[0].notes] == OTHER
    finale = pretty_midi.PrettyMIDI(str(out / "haydn" / "finale.mid"))  # an MEI score's sharp (accid.ges) kept
    assert [note.pitch for note in finale.instruments[0].notes] == [n - 5 for n in TUNE]
    import hashlib

    assert records["bach/fugue.musicxml"]["sha256"] == hashlib.sha256((out / "bach/fugue.mid").read_bytes()).hexdigest()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "bach", "bach/fugue.mid", "bach/prelude.mid", "haydn", "haydn/finale.mid", "haydn/minuet.mid", "haydn/rondo.mid",
        "haydn/trio.mid"]
    # The same scores give the same bytes, read here or on workers.
    again = tmp_path / "again"
    again.mkdir()
    assert collect(src, again, jobs=2) == manifest
    assert all((again / r["path"]).read_bytes() == (out / r["path"]).read_bytes() for r in manifest["files"])


def test_a_score_slower_to_convert_than_the_limit_is_skipped(tmp_path):
    tree(tmp_path / "src", {"bach/a.krn": kern(TUNE), "bach/b.mid": midi_bytes(60), "haydn/c.mid": midi_bytes(62)})
    (tmp_path / "out").mkdir()
    manifest = collect(tmp_path / "src", tmp_path / "out", timeout_s=1e-9)
    assert reasons(manifest) == {"bach/a.krn": "timeout: music21 took longer than dataset.timeout_s (1e-09 s)"}
    assert [r["path"] for r in manifest["files"]] == ["bach/b.mid", "haydn/c.mid"]


def test_a_score_is_told_by_its_content_not_its_name(tmp_path):
    cases = {"a.mxl": musicxml(TUNE),  # not compressed
             "b.musicxml": musicxml(TUNE).decode().encode("utf-16"),  # UTF-16, as MusicXML may be written
             "c.xml": b'<?xml version="1.0"?>\n<score-timewise version="3.1"></score-timewise>\n',
             "d.krn": b"!!!COM: x\n**mens\n*-\n",  # Humdrum, but no kern spine
             "e.krn": b"**text\t**kern\n*\t*\n*-\t*-\n", "f.abc": b"%abc-2.1\nT:no header\n",
             "g.abc": b"%abc\nX:3\nK:G\nGAB|]\n", "h.krn": b"\x00\x01**kern"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert {name: score_mismatch(tmp_path / name) for name in cases} == {
        "a.mxl": "named .mxl but looks like XML or HTML text", "b.musicxml": None, "c.xml": None,
        "d.krn": "named .krn but holds no Humdrum kern score", "e.krn": None,
        "f.abc": "named .abc but holds no ABC score", "g.abc": None,
        "h.krn": "named .krn but looks like unknown data starting 00012a2a6b65726e"}


def test_a_score_saved_with_a_utf8_byte_order_mark_gives_the_same_midi_file(tmp_path):
    # A Windows editor's "UTF-8" puts EF BB BF first: music21 reads kern as Latin-1 and took those for part
    # of the first line (a kern spine there was not found; a comment there changed the MIDI bytes).
    from musicid.dataset import collection_score_to_midi

    scores = {"a.krn": kern(TUNE), "b.krn": kern(TUNE).split(b"\n", 1)[1], "c.abc": abc(TUNE),
              "d.xml": musicxml(TUNE), "e.mei": mei(TUNE)}
    for name, data in scores.items():
        (tmp_path / name).write_bytes(data)
        (tmp_path / f"bom_{name}").write_bytes(b"\xef\xbb\xbf" + data)
    for name in scores:
        plain, marked = collection_score_to_midi(tmp_path / name), collection_score_to_midi(tmp_path / f"bom_{name}")
        assert plain[1] is None and marked == plain, name
    assert score_mismatch(tmp_path / "bom_b.krn") is None  # its first line is the spine


def test_the_download_stage_writes_a_folder_of_scores(tmp_path, monkeypatch, capsys):
    """dataset.timeout_s holds for a collection's scores as for the corpus's."""
    import yaml

    from tests.conftest import load_stage

    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    tree(tmp_path / "coll", {"bach/a.krn": kern(TUNE), "haydn/b.abc": abc(OTHER), "haydn/c.mid": midi_bytes(60)})
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["dataset"].update({"source": "path", "path": str(tmp_path / "coll"), "classes": [], "max_per_class": 0})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stage = load_stage("download")
    assert stage.main(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "raw"), "--jobs", "1"]) == 0
    manifest = json.loads((tmp_path / "raw" / "manifest.json").read_text())
    assert [(r["path"], r["origin"].rsplit("/", 2)[-2:]) for r in manifest["files"]] == [
        ("bach/a.mid", ["bach", "a.krn"]), ("haydn/b.mid", ["haydn", "b.abc"]), ("haydn/c.mid", ["haydn", "c.mid"])]
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["bach", "haydn", "manifest.json"]
    assert capsys.readouterr().out.startswith("download: 3 files kept (bach 1, haydn 2) (2 written from scores), "
                                              "0 skipped")
    params["dataset"]["timeout_s"] = 1e-9
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert stage.main(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "raw"), "--jobs", "1"]) == 0
    manifest = json.loads((tmp_path / "raw" / "manifest.json").read_text())
    assert [r["path"] for r in manifest["files"]] == ["haydn/c.mid"]
    assert sorted(r["origin"].rsplit("/", 2)[-1] for r in manifest["skipped"]
                  if r["reason"] == "timeout: music21 took longer than dataset.timeout_s (1e-09 s)") == ["a.krn", "b.abc"]


def test_a_score_is_judged_by_its_head_alone(tmp_path):
    """score_mismatch reads SCORE_HEAD_BYTES: a kern spine after 64 KB of comments is not looked for."""
    from musicid.filetypes import SCORE_HEAD_BYTES

    (tmp_path / "late.krn").write_bytes(b"!! a comment\n" * (SCORE_HEAD_BYTES // 13 + 1) + kern(TUNE))
    (tmp_path / "early.krn").write_bytes(b"!! a comment\n" * (SCORE_HEAD_BYTES // 13 - 20) + kern(TUNE))
    assert score_mismatch(tmp_path / "late.krn") == "named .krn but holds no Humdrum kern score"
    assert score_mismatch(tmp_path / "early.krn") is None


def test_odd_scores_each_get_their_reason_and_never_take_a_good_files_place(tmp_path, monkeypatch):
    """A compressed score named in capitals (music21 unpacks .mxl only), a score of no note beside its MIDI
    export (the export stays), a score too large for memory, and names taken by scores last."""
    import musicid.dataset

    src = tmp_path / "src"
    tree(src, {"bach/empty.musicxml": musicxml([]), "bach/empty.mid": midi_bytes(60),
               "bach/big.abc": abc(TUNE) + b"% padding\n" * 300, "haydn/h.mid": midi_bytes(62),
               "unl/u.krn": kern(OTHER), "unl/u.mid": midi_bytes(64)})
    mxl(TUNE, src / "bach" / "UPPER.MXL")
    mxl(TUNE, tmp_path / "lower.mxl")
    monkeypatch.setattr(musicid.dataset, "MAX_SCORE_BYTES", 2500)
    (tmp_path / "out").mkdir()
    manifest = collect_tree(src, "src/", tmp_path / "out", classes=[], labels={}, unlabeled="unl", max_per_class=0,
                            seed=0)
    found = reasons(manifest)
    assert found["bach/empty.musicxml"].startswith("no_notes")
    assert found["bach/big.abc"] == ("too_large: 3.1 kB of score text (more than 2.5 kB, which music21 would hold "
                                     "in memory several times over)")
    assert [r["origin"] for r in manifest["files"]] == ["src/bach/UPPER.MXL", "src/bach/empty.mid", "src/haydn/h.mid"]
    from musicid.dataset import score_file_to_midi

    assert (tmp_path / "out" / "bach" / "UPPER.mid").read_bytes() == score_file_to_midi(tmp_path / "lower.mxl")[0]
    # The collection's own u.mid keeps its name; the score written as MIDI takes another.
    unlabeled = {r["origin"]: r["path"] for r in manifest["unlabeled"]}
    assert unlabeled["src/unl/u.mid"] == "_unlabeled/u.mid"
    assert unlabeled["src/unl/u.krn"].startswith("_unlabeled/u-") and unlabeled["src/unl/u.krn"].endswith(".mid")
    # A compressed score is measured unpacked: 12 notes of MusicXML are some 1.7 kB.
    monkeypatch.setattr(musicid.dataset, "MAX_SCORE_BYTES", 1000)
    from musicid.dataset import collection_score_to_midi

    assert collection_score_to_midi(tmp_path / "lower.mxl")[1].startswith("too_large: 1.")
    # predict names its own limit.
    assert collection_score_to_midi(src / "haydn" / "h.mid", 1e-9)[1].startswith("content_mismatch") and \
        collection_score_to_midi(src / "unl" / "u.krn", 1e-9, limit="render.timeout_s")[1] == \
        "timeout: music21 took longer than render.timeout_s (1e-09 s)"


def test_a_fifo_or_a_link_named_xml_is_not_opened_when_looking_for_the_labels(tmp_path):
    import os
    import threading

    src = tmp_path / "src"
    tree(src, {"collection/bach/a.krn": kern(TUNE), "collection/haydn/b.abc": abc(OTHER)})
    os.mkfifo(src / "collection" / "pipe.xml")
    (tmp_path / "score.xml").write_bytes(musicxml(TUNE))
    (src / "collection" / "link.xml").symlink_to(tmp_path / "score.xml")
    (tmp_path / "out").mkdir()
    result = {}
    thread = threading.Thread(target=lambda: result.update(collect(src, tmp_path / "out")), daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "collect_tree opened the FIFO"
    assert [r["path"] for r in result["files"]] == ["bach/a.mid", "haydn/b.mid"]  # the wrapper stepped into


def test_a_wrapping_folder_with_a_metadata_xml_is_still_stepped_into(tmp_path):
    """An archive's one top folder holding a catalogue beside the label folders: a .xml that is no score does
    not make the top folder a label; a MusicXML score directly in it does."""
    src = tmp_path / "src"
    tree(src, {"collection/catalogue.xml": b'<?xml version="1.0"?><catalogue/>\n',
               "collection/bach/a.krn": kern(TUNE), "collection/haydn/b.abc": abc(OTHER)})
    (tmp_path / "out").mkdir()
    manifest = collect(src, tmp_path / "out")
    assert [r["path"] for r in manifest["files"]] == ["bach/a.mid", "haydn/b.mid"]
    (src / "collection" / "catalogue.xml").write_bytes(musicxml([n + 1 for n in TUNE]))
    (tmp_path / "out2").mkdir()
    manifest = collect(src, tmp_path / "out2")
    assert [r["path"] for r in manifest["files"]] == [
        "collection/bach__a.mid", "collection/catalogue.mid", "collection/haydn__b.mid"]

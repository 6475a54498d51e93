"""predict --csv (a table for spreadsheets) and the SoundFont of each clip's render with several SoundFonts."""

import csv
import io
import json
import shutil

import pytest
import torch

from musicid.__main__ import main
from musicid.predict import csv_rows
from musicid.prepare import Prediction
from tests.conftest import SOUNDFONT
from tests.test_predict import _piece, write_checkpoint

HEADER = ["path", "clip_start_s", "soundfont", "predicted", "p_bach", "p_palestrina", "novelty", "flagged", "clips",
          "error", "symbolic", "notes_unread", "repaired"]


@pytest.fixture(autouse=True)
def _files_read_in_this_process(monkeypatch):
    monkeypatch.setenv("MUSICID_JOBS", "1")


@pytest.fixture
def folder(tmp_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    _piece(songs / "piece.mid")
    shutil.copy(_wav(tmp_path), songs / "a, \"quoted\" tune.wav")  # a comma and quotes: the CSV quotes them
    (tmp_path / "empty").mkdir()
    return tmp_path


def _wav(tmp_path):
    from tests.conftest import sine, write_wav

    path = tmp_path / "tune.wav"
    write_wav(path, sine(440.0, 9.0, 22050, 0.3), 22050)
    return path


def _run(capsys, *arguments) -> tuple[int, str, str]:
    code = main(["predict", *map(str, arguments)])
    out, err = capsys.readouterr()
    return code, out, err


def test_csv_has_a_row_per_file_with_every_class_as_the_json_gives_it(folder, capsys):
    model = write_checkpoint(folder / "model.pt", reference=1e9, reference_tracks=24)
    code, out, err = _run(capsys, folder / "songs", folder / "empty", "--model", model, "--csv")
    assert code == 1  # the empty folder
    assert err.startswith("novelty threshold 1000000000.000 (95th percentile of 24 validation tracks' scores)")
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == HEADER
    table = [dict(zip(HEADER, row)) for row in rows[1:]]
    assert [row["path"] for row in table] == [str(folder / "songs" / "a, \"quoted\" tune.wav"),
                                              str(folder / "songs" / "piece.mid"), str(folder / "empty")]
    code, out, _ = _run(capsys, folder / "songs", folder / "empty", "--model", model, "--json", "--top", "2")
    files = json.loads(out)["files"]
    for row, scored in zip(table[:2], files):
        probabilities = {label["label"]: label["probability"] for label in scored["labels"]}
        assert row["predicted"] == scored["labels"][0]["label"]
        assert {name: float(row[f"p_{name}"]) for name in ("bach", "palestrina")} == pytest.approx(
            probabilities, abs=1e-6)
        assert float(row["novelty"]) == pytest.approx(scored["novelty"], abs=1e-6)
        assert (row["flagged"], row["clips"], row["error"]) == ("false", str(scored["clips"]), "")
        assert (row["symbolic"], row["notes_unread"], row["repaired"]) == ("false", "", "")  # an audio-only model
        assert row["clip_start_s"] == row["soundfont"] == ""
    empty = table[2]
    assert empty["error"] == files[2]["error"] and empty["error"].startswith("no_files: ")
    assert all(empty[key] == "" for key in HEADER if key not in ("path", "error"))


def test_csv_with_clips_gives_each_clip_a_row_after_its_file(folder, capsys):
    model = write_checkpoint(folder / "model.pt", reference=1e9, reference_tracks=24)
    code, out, _ = _run(capsys, folder / "songs" / "piece.mid", "--model", model, "--csv", "--clips")
    assert code == 0
    file_row, *clip_rows = [dict(zip(HEADER, row)) for row in list(csv.reader(io.StringIO(out)))[1:]]
    _, out, _ = _run(capsys, folder / "songs" / "piece.mid", "--model", model, "--json", "--clips", "--top", "2")
    answers = json.loads(out)["files"][0]["clip_answers"]
    assert int(file_row["clips"]) == len(clip_rows) == len(answers) == 2
    for row, answer in zip(clip_rows, answers):
        assert row["path"] == file_row["path"] and float(row["clip_start_s"]) == pytest.approx(answer["start_s"])
        assert row["predicted"] == answer["labels"][0]["label"]
        assert {name: float(row[f"p_{name}"]) for name in ("bach", "palestrina")} == pytest.approx(
            {label["label"]: label["probability"] for label in answer["labels"]}, abs=1e-6)
        assert row["novelty"] == row["flagged"] == row["clips"] == row["soundfont"] == ""
    assert [row["clip_start_s"] for row in clip_rows] == ["0.000", "4.000"]


def test_a_file_that_cannot_be_scored_keeps_what_render_repaired_in_its_row():
    prediction = Prediction("cut.wav", error="too_short: shorter than one 4 s clip",
                            repaired=["cut short: x", "cut short: y"])
    assert csv_rows(prediction, ["bach", "palestrina"]) == [
        ["cut.wav", "", "", "", "", "", "", "", "", "too_short: shorter than one 4 s clip", "", "",
         "cut short: x | cut short: y"]]
    with pytest.raises(ValueError, match="every class's probability"):  # top-k labels are not a row
        csv_rows(Prediction("a.wav", labels=[("bach", 0.9)], novelty=0.1, flagged=False, clips=1),
                 ["bach", "palestrina"])


def test_a_scored_file_says_what_was_repaired_and_whether_its_notes_were_read():
    prediction = Prediction("a.mid", labels=[("bach", 0.75), ("palestrina", 0.25)], novelty=0.5, flagged=True,
                            clips=2, symbolic=True, notes_unread="no_notes: no note sounds in its clips",
                            repaired=["cut short: x"], clip_labels=[(0.0, None, [("palestrina", 0.6), ("bach", 0.4)])])
    file_row, clip_row = [dict(zip(HEADER, row)) for row in csv_rows(prediction, ["bach", "palestrina"])]
    assert file_row == {**dict.fromkeys(HEADER, ""), "path": "a.mid", "predicted": "bach", "p_bach": "0.750000",
                        "p_palestrina": "0.250000", "novelty": "0.500000", "flagged": "true", "clips": "2",
                        "symbolic": "true", "notes_unread": "no_notes: no note sounds in its clips",
                        "repaired": "cut short: x"}
    assert clip_row == {**dict.fromkeys(HEADER, ""), "path": "a.mid", "clip_start_s": "0.000",
                        "predicted": "palestrina", "p_bach": "0.400000", "p_palestrina": "0.600000"}


def test_a_file_cut_short_says_so_in_its_row(folder, capsys):
    model = write_checkpoint(folder / "model.pt", reference=1e9, reference_tracks=24)
    whole = (folder / "songs" / "a, \"quoted\" tune.wav").read_bytes()
    (folder / "cut.wav").write_bytes(whole[:len(whole) * 2 // 3])  # 6 of its 9 s: an interrupted copy
    (folder / "stub.wav").write_bytes(whole[:len(whole) // 9])  # 1 s: no clip left
    code, out, _ = _run(capsys, folder / "cut.wav", folder / "stub.wav", "--model", model, "--csv")
    assert code == 1
    cut, stub = [dict(zip(HEADER, row)) for row in list(csv.reader(io.StringIO(out)))[1:]]
    assert cut["error"] == "" and cut["clips"] == "1"
    assert cut["repaired"].startswith("cut short: truncated (its data chunk declares")
    assert stub["error"].startswith("too_short") and stub["repaired"].startswith("cut short: truncated")


@pytest.mark.parametrize("arguments, message", [
    (["--csv", "--top", "2"], "--top does not apply to --csv, which gives every class's probability"),
    (["--csv", "--json"], "argument --json: not allowed with argument --csv"),
])
def test_csv_with_top_or_json_is_a_usage_error(folder, capsys, arguments, message):
    model = write_checkpoint(folder / "model.pt", reference=1e9, reference_tracks=24)
    with pytest.raises(SystemExit) as stopped:
        main(["predict", str(folder / "songs"), "--model", str(model), *arguments])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_with_two_soundfonts_each_clip_names_the_soundfont_of_its_render(folder, capsys):
    """A MIDI file is rendered once per SoundFont, each render's clips from 0:00: each clip line names its
    SoundFont (an audio file's, one recording, none)."""
    model = write_checkpoint(folder / "model.pt", reference=1e9, reference_tracks=24)
    checkpoint = torch.load(model, weights_only=False)
    other = folder / "fonts" / "Other.sf2"
    other.parent.mkdir()
    shutil.copy(SOUNDFONT, other)
    checkpoint["params"]["render"]["soundfonts"] = [str(SOUNDFONT), str(other)]
    torch.save(checkpoint, model)
    code, out, _ = _run(capsys, folder / "songs", "--model", model, "--clips", "--top", "1")
    assert code == 0
    lines = out.splitlines()
    wav = lines.index(next(line for line in lines if line.startswith(str(folder / "songs" / "a, "))))
    midi = lines.index(next(line for line in lines if line.startswith(str(folder / "songs" / "piece.mid"))))
    assert lines[wav].endswith("(2 clips)") and lines[midi].endswith("(4 clips)")
    assert [line[:10] for line in lines[wav + 1:wav + 3]] == ["  0:00.0  ", "  0:04.0  "]
    assert not any(".sf2" in line for line in lines[wav + 1:wav + 3])
    starts = [line.split("  ")[1:3] for line in lines[midi + 1:midi + 5]]
    assert starts == [["0:00.0", SOUNDFONT.name], ["0:04.0", SOUNDFONT.name], ["0:00.0", "Other.sf2"],
                      ["0:04.0", "Other.sf2"]]
    _, out, _ = _run(capsys, folder / "songs", "--model", model, "--clips", "--json")
    wav_file, midi_file = json.loads(out)["files"]
    assert [answer["soundfont"] for answer in wav_file["clip_answers"]] == [None, None]
    assert [(answer["start_s"], answer["soundfont"]) for answer in midi_file["clip_answers"]] == [
        (0.0, SOUNDFONT.name), (4.0, SOUNDFONT.name), (0.0, "Other.sf2"), (4.0, "Other.sf2")]
    _, out, _ = _run(capsys, folder / "songs" / "piece.mid", "--model", model, "--clips", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(row["clip_start_s"], row["soundfont"]) for row in rows] == [
        ("", ""), ("0.000", SOUNDFONT.name), ("4.000", SOUNDFONT.name), ("0.000", "Other.sf2"),
        ("4.000", "Other.sf2")]


def test_with_one_soundfont_a_clip_names_none(folder, capsys):
    model = write_checkpoint(folder / "model.pt", reference=1e9, reference_tracks=24)
    _, out, _ = _run(capsys, folder / "songs" / "piece.mid", "--model", model, "--clips", "--json")
    assert [answer["soundfont"] for answer in json.loads(out)["files"][0]["clip_answers"]] == [None, None]


def test_two_soundfonts_of_one_file_name_are_named_by_their_paths(folder, capsys):
    model = write_checkpoint(folder / "model.pt", reference=1e9, reference_tracks=24)
    checkpoint = torch.load(model, weights_only=False)
    twin = folder / "fonts" / SOUNDFONT.name
    twin.parent.mkdir()
    shutil.copy(SOUNDFONT, twin)
    checkpoint["params"]["render"]["soundfonts"] = [str(SOUNDFONT), str(twin)]
    torch.save(checkpoint, model)
    _, out, _ = _run(capsys, folder / "songs" / "piece.mid", "--model", model, "--clips", "--json")
    assert [answer["soundfont"] for answer in json.loads(out)["files"][0]["clip_answers"]] == [
        str(SOUNDFONT), str(SOUNDFONT), str(twin), str(twin)]

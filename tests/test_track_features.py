"""benchmarks/track_features.py on a tiny suite folder: MIDI files, a features table, one run trained and evaluated
by the stages."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
import yaml

from musicid.h5 import read_strings
from tests.conftest import load_benchmark, write_midi
from tests.test_symbolic_model import EVALUATE, TRAIN, params, stage_arguments, write_symbolic_features  # noqa: F401

track_features = load_benchmark("track_features")


@pytest.fixture
def suite_folder(tmp_path, params, monkeypatch):  # noqa: F811
    """A task folder as composer_quality.py leaves it: its raw MIDI files, one features table, fold 0 of
    `default` (train.track_notes 0.1). Class b's pieces leap in minor thirds, class a's step."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    values = yaml.safe_load(params.read_text())
    values["train"]["track_notes"] = 0.1
    task = tmp_path / "tiny"
    table_dir = task / "features-0123456789"
    table_dir.mkdir(parents=True)
    (table_dir / "params.yaml").write_text(yaml.safe_dump(values))
    table = table_dir / "features.h5"
    write_symbolic_features(table, ["train"] * 16 + ["val"] * 8 + ["test"] * 12, without_notes=0)
    raw = task / "data-0123456789" / "raw"
    with h5py.File(table, "r+") as opened:
        names = [f"{name}.mid" for name in read_strings(opened["track"])]
        opened["track"][:] = names
        labels = opened["label"][:]
    for name, label in zip(names, labels):
        step = 3 if label else 2
        write_midi(raw / name, [(60 + step * (k % 4), 0.5 * k, 0.5 * k + 0.5) for k in range(8)])
    run = task / "default" / "fold0" / "run0"
    run.mkdir(parents=True)
    (run / "params.yaml").write_text(yaml.safe_dump(values))
    train, evaluate = stage_arguments(tmp_path, run / "params.yaml", features=table.relative_to(tmp_path),
                                      model=(run / "model.pt").relative_to(tmp_path))
    assert TRAIN.main(train) == 0
    evaluate[evaluate.index("--metrics") + 1] = str(run / "metrics.json")
    assert EVALUATE.main(evaluate) == 0
    return tmp_path


def rows(text: str) -> dict[str, list[str]]:
    found = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) > 2 and not cells[0].startswith(("task", "---", "set")):
            found[cells[1] if cells[0] == "tiny" else cells[0]] = cells
    return found


def test_suite_mode_scores_the_run_as_evaluate_did_and_reads_the_pieces(suite_folder, capsys):
    # It exits when its clips figure is not the one evaluate wrote.
    assert track_features.main(["--out", str(suite_folder), "--tasks", "tiny"]) == 0
    found = rows(capsys.readouterr().out)
    assert set(found) == {"clips", "both", "clips alone", "both alone"}
    # The pieces tell the classes apart: the regression on them names every test track.
    assert found["both alone"][3] == "1.000"


def test_cv_mode_compares_the_three_sets(suite_folder, capsys):
    assert track_features.main(["--out", str(suite_folder), "--tasks", "tiny", "--mode", "cv", "--repeats", "3",
                                "--folds", "3"]) == 0
    out = capsys.readouterr().out
    assert "tiny: 18 tracks (9, 9 a class), 3 x 3-fold, C 0.1" in out
    found = rows(out)
    assert set(found) == {"clips", "piece", "both"}
    assert found["piece"][1] == "1.000 +- 0.000"  # the pieces alone: every track, every split


def test_a_table_with_the_pieces_already_is_refused(suite_folder):
    table = suite_folder / "tiny" / "features-0123456789" / "features.h5"
    with h5py.File(table, "r+") as opened:
        opened.create_dataset("piece", data=np.zeros((1, 119)))
    with pytest.raises(SystemExit, match="holds the whole pieces already"):
        track_features.main(["--out", str(suite_folder), "--tasks", "tiny"])


def test_bad_arguments_are_named(tmp_path, capsys):
    for bad in (["--c", "0"], ["--folds", "1"], ["--repeats", "1"]):
        with pytest.raises(SystemExit):
            track_features.main(["--out", str(tmp_path), "--tasks", "tiny", *bad])
        assert "--c must be > 0, --folds and --repeats at least 2" in capsys.readouterr().err


def test_cost_mode_times_both_parses(suite_folder, capsys):
    assert track_features.main(["--out", str(suite_folder), "--tasks", "tiny", "--mode", "cost", "--repeats", "2"]) == 0
    row = [cell.strip() for cell in capsys.readouterr().out.strip().splitlines()[-1].strip("|").split("|")]
    assert row[:3] == ["tiny", "18", str(18 * 8)] and row[5].endswith("x")


def test_interval_grams_count_each_part_apart(tmp_path):
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for pitches, drum in (([60, 62, 64, 60, 79], False), ([48, 50, 52], False), ([36, 36, 38], True)):
        part = pretty_midi.Instrument(program=0, is_drum=drum)
        part.notes = [pretty_midi.Note(velocity=90, pitch=p, start=0.5 * k, end=0.5 * k + 0.4)
                      for k, p in enumerate(pitches)]
        midi.instruments.append(part)
    midi.write(str(tmp_path / "a.mid"))
    grams = track_features.interval_grams(tmp_path / "a.mid", (1, 2))
    # 60 62 64 60 79: +2 +2 -4 and a leap of 19 counted as an octave; 48 50 52 apart (no 64 -> 48 step); no drums.
    assert grams == {"1:2": 4, "1:-4": 1, "1:12": 1, "2:2,2": 2, "2:2,-4": 1, "2:-4,12": 1}


def test_grams_mode_reads_the_n_grams_beside_the_regression(suite_folder, capsys):
    assert track_features.main(["--out", str(suite_folder), "--tasks", "tiny", "--mode", "grams", "--repeats", "3",
                                "--folds", "3", "--grams", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "tiny: 18 tracks, 3 x 3-fold, C 0.1; n-grams of 1, 2 intervals, C 1, weight 0.5" in out
    found = rows(out)
    assert set(found) == {"clips + piece", "n-grams", "clips + piece, n-grams beside"}
    # Steps against leaps of a minor third: the n-grams alone name every track in every split.
    assert found["n-grams"][1] == "1.000 +- 0.000"
    assert re.fullmatch(r"[+-]\d\.\d{3} \+- \d\.\d{3} \(\d / \d\)", found["clips + piece, n-grams beside"][2])

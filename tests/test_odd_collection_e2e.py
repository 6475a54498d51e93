"""A real folder's odd and broken files, mixed with good ones, through `dvc repro` and predict.

Nothing may crash or hang, every good file must reach the model, and every
bad or odd one must be listed with its reason in the stage that met it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import sine, write_midi, write_wav
from tests.test_pipeline_e2e import TINY, changed_stages, commit_and_repro, copy_project, run_json, set_params
from tests.test_render import smf

NOTE_HALF_SECOND = "00903C64" "8360803C40" "00FF2F00"
LONG_NAME = "a" * 236 + ".mid"  # 240 bytes: legal on Linux
SR = 22050


def melody(path: Path, seed: int, program: int, seconds: float = 6.0) -> Path:
    """A seeded random melody of quarter-second notes: one distinct good piece."""
    rng = np.random.default_rng(seed)
    starts = np.arange(0.0, seconds, 0.25)
    notes = [(int(p), float(s), float(s) + 0.25) for p, s in zip(rng.integers(48, 84, len(starts)), starts)]
    return write_midi(path, notes, program=program)


def rmid(standard_midi_file: bytes) -> bytes:
    import struct

    pad = b"\0" * (len(standard_midi_file) & 1)
    body = b"RMID" + b"data" + struct.pack("<I", len(standard_midi_file)) + standard_midi_file + pad
    return b"RIFF" + struct.pack("<I", len(body)) + body


def build_collection(root: Path) -> None:
    """Two real classes of five good tracks or more, a one-track class, and every odd case next to them."""
    for index in range(4):
        melody(root / "alpha" / f"piece{index}.mid", seed=index, program=0)
        melody(root / "beta" / f"piece{index}.mid", seed=100 + index, program=40)
    melody(root / "alpha" / LONG_NAME, seed=10, program=0)
    melody(root / "alpha" / "x.mid", seed=11, program=0)  # x.mid and x.wav: one work, the MIDI file kept
    write_wav(root / "alpha" / "x.wav", np.concatenate([sine(262 * (1 + k % 3), 1.0, SR) for k in range(6)]), SR)
    melody(root / "alpha" / "foo.mid" / "inner.mid", seed=12, program=0)  # a folder named like a file
    os.mkfifo(root / "alpha" / "fifo.mid")
    melody(root / "manifest.json" / "reserved.mid", seed=13, program=0)
    melody(root / "loose.mid", seed=14, program=0)  # no label folder
    (root / "linked").symlink_to(root / "beta", target_is_directory=True)
    melody(root / "tiny" / "only.mid", seed=15, program=70)  # one track: too few for the split
    # Files other readers accept: recovered by the render stage.
    long_note = "00903C64" "8F00803C40" "00FF2F00"  # 1920 ticks = 2 s at 120 bpm
    (root / "beta" / "wrapped.mid").write_bytes(rmid(smf("00FF0301" "41" + long_note)))
    (root / "beta" / "key.mid").write_bytes(smf("00FF59020900" + long_note))
    (root / "beta" / "smpte.mid").write_bytes(smf("00903C64" "8F50803C40" "00FF2F00", division=0xE728))
    # Broken or not music: rejected with a reason.
    (root / "beta" / "cut.mid").write_bytes(smf(NOTE_HALF_SECOND)[:20])
    (root / "beta" / "page.mid").write_bytes(b"<!DOCTYPE html><html>404</html>")
    write_midi(root / "beta" / "empty.mid", [])
    write_wav(root / "beta" / "onehz.wav", sine(0.1, 10.0, 1), 1)
    write_wav(root / "beta" / "dc.wav", np.full(SR * 3, 0.5, np.float32), SR, "FLOAT")
    write_wav(root / "beta" / "loud.wav", 40.0 * sine(440, 3.0, SR, amplitude=1.0), SR, "FLOAT")
    (root / "beta" / "notes.txt").write_text("not music")


@pytest.fixture(scope="module")
def odd_project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("odd") / "project")
    build_collection(project / "collection")
    set_params(project, {**TINY, "dataset": {"source": "path", "path": "collection", "classes": [],
                                             "max_per_class": 0}})
    with open(project / ".gitignore", "a") as handle:
        handle.write("/collection\n")
    project.joinpath("repro.log").write_text(commit_and_repro(project))
    return project


def by_origin(records: list[dict]) -> dict[str, str]:
    return {record["origin"].split("/", 1)[1]: record["reason"] for record in records}


@pytest.mark.e2e
def test_download_keeps_every_good_file_and_names_every_odd_one(odd_project):
    manifest = json.loads((odd_project / "data/raw/manifest.json").read_text())
    kept = {record["origin"].split("/", 1)[1]: record["label"] for record in manifest["files"]}
    good = {f"alpha/piece{i}.mid" for i in range(4)} | {f"beta/piece{i}.mid" for i in range(4)} | {
        f"alpha/{LONG_NAME}", "alpha/x.mid", "alpha/foo.mid/inner.mid", "tiny/only.mid",
        "beta/wrapped.mid", "beta/key.mid", "beta/smpte.mid", "beta/cut.mid", "beta/empty.mid",
        "beta/onehz.wav", "beta/dc.wav", "beta/loud.wav"}
    assert good <= set(kept), sorted(good - set(kept))
    assert kept["alpha/foo.mid/inner.mid"] == "alpha"  # a folder inside a label is part of that label
    skipped = by_origin(manifest["skipped"])
    expected = {"alpha/fifo.mid": "not_a_regular_file", "manifest.json": "reserved_label",
                "loose.mid": "no_label", "linked": "symlink", "beta/page.mid": "content_mismatch",
                "beta/notes.txt": "unsupported_type", "alpha/x.wav": "same_work: kept alpha/x.mid"}
    for origin, reason in expected.items():
        matches = [r for o, r in skipped.items() if o == origin or o.startswith(origin + "/")]
        assert matches and all(r.startswith(reason) for r in matches), (origin, skipped)
    assert set(kept) | {o for o in skipped} >= good | {"alpha/x.wav"}


@pytest.mark.e2e
def test_render_recovers_what_it_can_and_gives_reasons(odd_project):
    report = json.loads((odd_project / "data/audio/report.json").read_text())
    manifest = json.loads((odd_project / "data/raw/manifest.json").read_text())
    origin = {record["path"]: record["origin"].split("/", 1)[1] for record in manifest["files"]}
    assert sorted(origin) == sorted(record["source"] for record in report["files"])  # every kept file met render
    outcome = {origin[record["source"]]: (record["status"], record["reason"]) for record in report["files"]}
    assert outcome["beta/wrapped.mid"] == ("recovered", None)
    assert outcome["beta/key.mid"] == ("recovered", None)
    assert outcome["beta/smpte.mid"] == ("recovered", None)
    assert outcome["beta/cut.mid"] == ("rejected", "unparseable")
    assert outcome["beta/empty.mid"] == ("rejected", "no_notes")
    assert outcome["beta/onehz.wav"] == ("rejected", "implausible_rate")
    assert outcome["beta/dc.wav"] == ("rejected", "silent")
    assert outcome["beta/loud.wav"] == ("rejected", "clipping")
    good = [f"{label}/piece{i}.mid" for label in ("alpha", "beta") for i in range(4)]
    for name in good + [f"alpha/{LONG_NAME}", "alpha/x.mid", "alpha/foo.mid/inner.mid"]:
        assert outcome[name] == ("rendered", None), name
    outputs = [o for record in report["files"] for o in record["outputs"]]
    assert len(outputs) == len(set(outputs))
    assert all(len(Path(o).name.encode()) <= 255 for o in outputs)


@pytest.mark.e2e
def test_the_tiny_class_is_kept_out_and_the_rest_trains(odd_project):
    clip_report = json.loads((odd_project / "data/clips_report.json").read_text())
    assert "tiny" in clip_report["excluded_classes"]
    assert sorted(clip_report["counts"]) == ["alpha", "beta"]
    metrics = json.loads((odd_project / "metrics/metrics.json").read_text())
    assert 0.0 <= metrics["test"]["track"]["macro_f1"] <= 1.0
    # Named beside the scores too, not only in clip's report.
    per_class = json.loads((odd_project / "metrics/per_class.json").read_text())
    assert per_class["excluded_classes"] == {"tiny": clip_report["excluded_classes"]["tiny"]}
    assert changed_stages(odd_project) == set()
    log = (odd_project / "repro.log").read_text()
    assert "Traceback" not in log


@pytest.mark.e2e
def test_predict_scores_the_good_and_names_the_bad(odd_project):
    collection = odd_project / "collection"
    empty = odd_project / "empty_folder"
    empty.mkdir(exist_ok=True)
    result = run_json([sys.executable, "-m", "musicid", "predict", "--json", str(collection / "alpha"),
                       str(collection / "beta"), str(empty)], odd_project, exit_code=1)
    files = {Path(entry["path"]).name: entry for entry in result["files"]}
    assert files["empty_folder"]["error"].startswith("no_files")  # reported, not skipped
    for name in ("piece0.mid", "x.wav", "inner.mid", "wrapped.mid", "smpte.mid"):
        assert files[name]["error"] is None and files[name]["labels"], name
    for name, reason in {"cut.mid": "unparseable", "empty.mid": "no_notes", "onehz.wav": "implausible_rate",
                         "dc.wav": "silent", "loud.wav": "clipping", "page.mid": "unparseable"}.items():
        assert files[name]["error"] and files[name]["error"].split(":")[0] in (reason, "content_mismatch"), \
            (name, files[name]["error"])

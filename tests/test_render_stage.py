"""The render stage as a whole: report, parallel workers, determinism, fatal set-up errors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import soundfile
import yaml

from musicid.augment import draw_augmentation
from tests.conftest import PROJECT_ROOT, SOUNDFONT, load_stage, section_params, sine, write_midi, write_wav


STAGE = load_stage("render")


@pytest.fixture
def raw(tmp_path, monkeypatch):
    """A tiny data/raw with good, recoverable and bad sources, and its manifest."""
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    root = tmp_path / "raw"
    write_midi(root / "a" / "one.mid", [(60, 0.0, 1.0), (64, 1.0, 2.0)])
    write_midi(root / "a" / "two.mid", [(67, 0.0, 0.5)], program=40)
    write_midi(root / "b" / "three.mid", [(48, 0.0, 1.5), (55, 0.0, 1.5)], program=19)
    write_midi(root / "b" / "empty.mid", [])
    write_wav(root / "b" / "tone.wav", sine(330, 1.0, 44100), 44100)
    files = [{"path": p, "label": p.split("/")[0]} for p in
             ("a/one.mid", "a/two.mid", "b/empty.mid", "b/three.mid", "b/tone.wav")]
    (root / "manifest.json").write_text(json.dumps({"files": files, "skipped": [], "unlabeled": []}))
    return root


def run(tmp_path, raw, out_name="audio", jobs=2, **render):
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["render"].update(render)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return STAGE.main(["--params", str(tmp_path / "params.yaml"), "--raw", str(raw),
                       "--out", str(tmp_path / out_name), "--jobs", str(jobs)])


def manifest(root, paths):
    files = [{"path": p, "label": p.split("/")[0]} for p in sorted(paths)]
    (root / "manifest.json").write_text(json.dumps({"files": files, "skipped": [], "unlabeled": []}))


def test_report_lists_every_source_sorted(tmp_path, raw, capsys):
    assert run(tmp_path, raw) == 0
    report = json.loads((tmp_path / "audio" / "report.json").read_text())
    assert [r["source"] for r in report["files"]] == ["a/one.mid", "a/two.mid", "b/empty.mid",
                                                      "b/three.mid", "b/tone.wav"]
    assert [(r["status"], r["reason"]) for r in report["files"]] == [
        ("rendered", None), ("rendered", None), ("rejected", "no_notes"), ("rendered", None), ("rendered", None)]
    assert report["files"][0]["outputs"] == ["a/one.wav"]
    assert set(report["files"][0]) >= {"source", "status", "reason", "duration_s", "outputs"}
    assert "render: 4 rendered, 0 recovered, 1 rejected (no_notes 1)" in capsys.readouterr().out


@pytest.mark.parametrize("render_program, recorded", [(None, 0), (40, 40)])
def test_a_collection_written_on_one_program_is_recorded_as_rendered_with_it(tmp_path, raw, render_program, recorded):
    # The music21 source writes every part on dataset.program; the report's params say so, so that the
    # checkpoint, and predict with it, put a new file's parts on that program too. render.program wins.
    listed = json.loads((raw / "manifest.json").read_text())
    (raw / "manifest.json").write_text(json.dumps({**listed, "program": 0}))
    assert run(tmp_path, raw, program=render_program) == 0
    assert json.loads((tmp_path / "audio" / "report.json").read_text())["params"]["program"] == recorded
    # Without a program in the manifest (a folder or an archive), the params are recorded as given.
    (raw / "manifest.json").write_text(json.dumps(listed))
    assert run(tmp_path, raw, out_name="plain", program=render_program) == 0
    assert json.loads((tmp_path / "plain" / "report.json").read_text())["params"]["program"] == render_program


def test_each_midi_file_s_programs_are_recorded_and_instruments_that_name_a_label_are_warned_of(tmp_path, raw,
                                                                                                  capsys):
    # a/one.mid plays the piano, a/two.mid a violin, b/three.mid an organ: neither of a's is heard in b, so the
    # instruments alone name label a (musicid.instruments); b has one such file, which names nothing.
    assert run(tmp_path, raw) == 0
    records = {r["source"]: r for r in json.loads((tmp_path / "audio" / "report.json").read_text())["files"]}
    assert {source: record.get("programs") for source, record in records.items()} == {
        "a/one.mid": [0], "a/two.mid": [40], "b/empty.mid": None, "b/three.mid": [19], "b/tone.wav": None}
    err = capsys.readouterr().err
    assert "render: warning: the instruments alone tell labels apart: 2 of the 2 MIDI files of 'a' play an " \
           "instrument at least 4 times as common in its files as in the other labels', or only instruments no " \
           "other label plays (most of them: Acoustic Grand Piano (0), in 1 of its 2 files against 0 of the other " \
           "labels' 1)." in err
    assert "`render.program: 0`" in err and "'b'" not in err
    # render.program puts every part on one program: the records say so, and nothing is named
    assert run(tmp_path, raw, out_name="piano", program=0) == 0
    records = json.loads((tmp_path / "piano" / "report.json").read_text())["files"]
    assert [r.get("programs") for r in records] == [[0], [0], None, [0], None]
    assert "warning" not in capsys.readouterr().err


def test_a_sources_folder_goes_from_the_manifest_into_its_record(tmp_path, raw):
    """split.group folder reads the sub-folder of its label folder each source came from in the render report."""
    listed = json.loads((raw / "manifest.json").read_text())
    for record in listed["files"]:
        if record["path"] in ("a/one.mid", "b/empty.mid"):
            record["folder"] = "opus 1"
        if record["path"] == "a/one.mid":  # split.group parent's: the folders it sits in, two or more deep
            record["parent"] = "opus 1/no 2"
        if record["path"] == "b/tone.wav":  # a label table's split column: the collection's own split
            record["split"] = "val"
    (raw / "manifest.json").write_text(json.dumps(listed))
    assert run(tmp_path, raw) == 0
    report = json.loads((tmp_path / "audio" / "report.json").read_text())
    assert {r["source"]: r.get("split") for r in report["files"]} == {
        "a/one.mid": None, "a/two.mid": None, "b/empty.mid": None, "b/three.mid": None, "b/tone.wav": "val"}
    assert {r["source"]: r.get("folder") for r in report["files"]} == {
        "a/one.mid": "opus 1", "a/two.mid": None, "b/empty.mid": "opus 1", "b/three.mid": None, "b/tone.wav": None}
    assert {r["source"]: r.get("parent") for r in report["files"]} == {
        "a/one.mid": "opus 1/no 2", "a/two.mid": None, "b/empty.mid": None, "b/three.mid": None, "b/tone.wav": None}


def test_two_runs_with_two_workers_give_identical_bytes(tmp_path, raw):
    assert run(tmp_path, raw, out_name="first") == 0
    assert run(tmp_path, raw, out_name="second") == 0
    first = sorted(p.relative_to(tmp_path / "first") for p in (tmp_path / "first").rglob("*") if p.is_file())
    second = sorted(p.relative_to(tmp_path / "second") for p in (tmp_path / "second").rglob("*") if p.is_file())
    assert first == second and len(first) == 5
    for name in first:
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes(), name


def test_several_soundfonts_share_the_track(tmp_path, raw, soundfont, second_soundfont):
    fonts = [str(soundfont), str(second_soundfont)]
    assert run(tmp_path, raw, soundfonts=fonts) == 0
    report = json.loads((tmp_path / "audio" / "report.json").read_text())
    assert report["files"][0]["outputs"] == ["a/one__FluidR3_GM.wav", "a/one__TimGM6mb.wav"]
    assert report["files"][4]["outputs"] == ["b/tone.wav"]  # audio is not rendered per SoundFont


def test_missing_soundfont_stops_the_stage(tmp_path, raw, capsys):
    assert run(tmp_path, raw, soundfonts=[str(tmp_path / "nope.sf2")]) == 2
    assert "fluid-soundfont-gm" in capsys.readouterr().err
    assert not (tmp_path / "audio").exists()


def test_broken_soundfont_is_named(tmp_path, raw, capsys):
    (tmp_path / "broken.sf2").write_bytes(b"RIFF not really")
    assert run(tmp_path, raw, soundfonts=[str(tmp_path / "broken.sf2")]) == 2
    assert (f"FluidSynth cannot load the SoundFont {tmp_path / 'broken.sf2'} (render.soundfonts): not a .sf2/.sf3 "
            "file it can read") in capsys.readouterr().err


def test_jobs_is_an_argument_not_a_param(tmp_path, raw, capsys):
    assert run(tmp_path, raw, jobs=1) == 0
    assert "1 local worker)" in capsys.readouterr().out
    assert "jobs" not in json.loads((tmp_path / "audio" / "report.json").read_text())["params"]
    assert run(tmp_path, raw, out_name="other", jobs=-1) == 2
    assert "--jobs must be >= 0" in capsys.readouterr().err


def test_a_240_byte_name_renders_with_several_soundfonts(tmp_path, monkeypatch, soundfont, second_soundfont):
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    root = tmp_path / "raw"
    long_stem = "Ä" * 60 + "x" * 122  # 242 bytes with ".mid"
    source = f"a/{long_stem}.mid"
    assert len(f"{long_stem}.mid".encode()) == 246
    write_midi(root / source, [(60, 0.0, 1.0)])
    write_wav(root / "a" / f"{long_stem}.wav", sine(330, 1.0, 22050), 22050)
    manifest(root, [source, f"a/{long_stem}.wav"])
    # A SoundFont with a long name too: its part of the output names is shortened.
    long_font = tmp_path / f"{'General_MIDI_' * 9}TimGM6mb.sf2"
    long_font.symlink_to(second_soundfont)
    fonts = [str(soundfont), str(long_font)]
    assert run(tmp_path, root, soundfonts=fonts, jobs=1) == 0
    report = json.loads((tmp_path / "audio" / "report.json").read_text())
    assert [(r["status"], len(r["outputs"])) for r in report["files"]] == [("rendered", 2), ("rendered", 1)]
    written = sorted(p.name for p in (tmp_path / "audio" / "a").iterdir())
    assert written == sorted(name.split("/", 1)[1] for r in report["files"] for name in r["outputs"])
    assert len(written) == 3 and max(len(name.encode()) for name in written) <= 255


def test_sources_that_share_a_stem_each_get_their_own_track(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    root = tmp_path / "raw"
    write_midi(root / "a" / "x.mid", [(60, 0.0, 1.0)])
    write_midi(root / "a" / "x.midi", [(72, 0.0, 2.0)], program=40)
    write_wav(root / "a" / "x.wav", sine(330, 1.5, 22050), 22050)
    write_wav(root / "a" / "y z.wav", sine(440, 1.0, 22050), 22050)
    write_wav(root / "a" / "y_z.wav", sine(550, 1.0, 22050), 22050)
    paths = ["a/x.mid", "a/x.midi", "a/x.wav", "a/y z.wav", "a/y_z.wav"]
    manifest(root, paths)
    assert run(tmp_path, root) == 0
    report = json.loads((tmp_path / "audio" / "report.json").read_text())
    outputs = {r["source"]: r["outputs"] for r in report["files"]}
    assert outputs == {
        "a/x.mid": ["a/x_mid.wav"], "a/x.midi": ["a/x_midi.wav"], "a/x.wav": ["a/x_wav.wav"],
        "a/y z.wav": [f"a/y_z_wav-{hashlib.sha256(b'y z.wav').hexdigest()[:12]}.wav"],
        "a/y_z.wav": [f"a/y_z_wav-{hashlib.sha256(b'y_z.wav').hexdigest()[:12]}.wav"]}
    # Each source's WAV holds its own audio: the lengths differ.
    seconds = {source: soundfile.info(str(tmp_path / "audio" / names[0])).duration
               for source, names in outputs.items()}
    assert seconds["a/x.wav"] == 1.5 and seconds["a/x.mid"] < seconds["a/x.midi"]


def test_a_killed_run_leaves_no_workers_and_the_next_run_clears_its_staging(tmp_path):
    """SIGKILL mid-run: workers exit with their stage, and the next run removes the dead run's staging."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    root = tmp_path / "raw"
    for index in range(6):  # twenty sparse minutes each: long enough to be killed mid-run
        write_midi(root / "a" / f"long{index}.mid", [(60 + index, t, t + 1.0) for t in range(0, 1200, 10)])
    manifest(root, [f"a/long{index}.mid" for index in range(6)])
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    command = [sys.executable, str(PROJECT_ROOT / "stages" / "render.py"), "--params", str(tmp_path / "params.yaml"),
               "--raw", str(root), "--out", str(tmp_path / "audio"), "--jobs", "2"]
    stage = subprocess.Popen(command, env={**os.environ, "MUSICID_PROGRESS": "0"})
    try:
        deadline = time.monotonic() + 60
        workers: list = []
        def command_line(child) -> str:
            try:
                return " ".join(child.cmdline())
            except (psutil.ZombieProcess, psutil.NoSuchProcess):  # a short-lived helper (ldconfig) just ending
                return ""

        while time.monotonic() < deadline and not (
                list(tmp_path.glob(".audio.*.tmp/a/*.wav")) and len(workers) == 2):
            workers = [child for child in psutil.Process(stage.pid).children()  # not the resource tracker
                       if "spawn_main" in command_line(child)]
            time.sleep(0.05)
        assert stage.poll() is None, "the stage finished before it could be killed"
        assert len(workers) == 2
        stage.send_signal(signal.SIGKILL)
        stage.wait()
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, "workers outlived their stage"
        assert list(tmp_path.glob(".audio.*.tmp"))  # the dead run's staging, half full
        assert not (tmp_path / "audio").exists()
    finally:
        stage.kill()
    result = subprocess.run(command, env={**os.environ, "MUSICID_PROGRESS": "0"}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.glob(".audio.*")), "stale staging left behind"
    report = json.loads((tmp_path / "audio" / "report.json").read_text())
    assert [r["status"] for r in report["files"]] == ["rendered"] * 6


# --- render.augment ---------------------------------------------------------------------------------------


def augment(**overrides):
    """The project's render.augment with ``overrides``."""
    return {**yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["render"]["augment"], **overrides}


def files_of(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.wav"))}


def test_copies_zero_writes_and_reports_only_the_plain_renders(tmp_path, raw):
    assert run(tmp_path, raw, augment=augment(copies=0, programs=[40], soundfonts=[str(tmp_path / "absent.sf2")])) == 0
    report = json.loads((tmp_path / "audio" / "report.json").read_text())
    for record in report["files"]:  # the records of a run without augmentation, key for key
        rendered_midi = record["source"].endswith(".mid") and record["status"] != "rejected"
        assert set(record) == {"source", "label", "status", "reason", "detail", "duration_s", "outputs"} | (
            {"programs"} if rendered_midi else set())
    assert sorted(files_of(tmp_path / "audio")) == ["a/one.wav", "a/two.wav", "b/three.wav", "b/tone.wav"]


def test_augmented_copies_are_written_reported_and_leave_the_plain_renders_alone(
        tmp_path, raw, capsys, soundfont, second_soundfont):
    assert run(tmp_path, raw, out_name="plain") == 0
    setting = augment(copies=2, programs=[40, 73], soundfonts=[str(soundfont), str(second_soundfont)], seed=5)
    assert run(tmp_path, raw, out_name="first", augment=setting) == 0
    assert "render: 4 rendered, 0 recovered, 1 rejected (no_notes 1); 6 augmented renders, 0 rejected;" in \
        capsys.readouterr().out
    assert run(tmp_path, raw, out_name="second", augment=setting) == 0
    first, second, plain = (files_of(tmp_path / name) for name in ("first", "second", "plain"))
    assert first == second  # deterministic
    assert {name: first[name] for name in plain} == plain  # the plain renders do not change with copies
    report = json.loads((tmp_path / "first" / "report.json").read_text())
    records = {r["source"]: r for r in report["files"]}
    assert [copy["output"] for copy in records["a/one.mid"]["augmented"]] == ["a/one__aug1.wav", "a/one__aug2.wav"]
    assert sorted(set(first) - set(plain)) == sorted(
        copy["output"] for r in report["files"] for copy in r.get("augmented", []))
    for source in ("a/one.mid", "a/two.mid", "b/three.mid"):
        for number, copy in enumerate(records[source]["augmented"], start=1):
            drawn = draw_augmentation(section_params("render", augment=setting).augment, [], source, number)
            assert copy == {"output": copy["output"], "transpose": drawn.transpose, "tempo": drawn.tempo,
                            "program": drawn.program, "soundfont": Path(drawn.soundfont).name}
            assert copy["program"] in (40, 73) and copy["soundfont"] in ("FluidR3_GM.sf2", "TimGM6mb.sf2")
    assert records["b/tone.wav"]["augmented"] == [] and records["b/empty.mid"]["augmented"] == []
    assert records["a/one.mid"]["augment_rejected"] == []


def test_a_file_s_copies_do_not_depend_on_the_other_files(tmp_path, raw):
    setting = augment(copies=2)
    assert run(tmp_path, raw, out_name="all", augment=setting) == 0
    manifest(raw, ["a/one.mid"])
    assert run(tmp_path, raw, out_name="alone", augment=setting) == 0
    alone = json.loads((tmp_path / "alone" / "report.json").read_text())["files"]
    together = json.loads((tmp_path / "all" / "report.json").read_text())["files"]
    assert alone[0]["augmented"] == together[0]["augmented"]
    assert files_of(tmp_path / "alone") == {name: data for name, data in files_of(tmp_path / "all").items()
                                           if name.startswith("a/one")}


def test_a_copy_that_fails_its_checks_loses_nothing_else(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    root = tmp_path / "raw"
    write_midi(root / "a" / "slow.mid", [(60, 0.0, 2.0)])  # a copy slower than 2 / 2.2 passes render.max_seconds
    manifest(root, ["a/slow.mid"])
    setting = augment(copies=6, tempo=0.3)
    drawn = [draw_augmentation(section_params("render", augment=setting).augment, [str(SOUNDFONT)], "a/slow.mid", k)
             for k in range(1, 7)]
    lost = [k for k, d in enumerate(drawn, start=1) if 2.0 / d.tempo > 2.2]
    assert 0 < len(lost) < 6  # the seed gives both kinds of copy
    assert run(tmp_path, root, augment=setting, max_seconds=2.2) == 0
    record = json.loads((tmp_path / "audio" / "report.json").read_text())["files"][0]
    assert record["status"] == "rendered" and record["outputs"] == ["a/slow.wav"]
    assert [copy["reason"] for copy in record["augment_rejected"]] == ["too_long"] * len(lost)
    assert [copy["copy"] for copy in record["augment_rejected"]] == lost
    kept = [f"a/slow__aug{k}.wav" for k in range(1, 7) if k not in lost]
    assert [copy["output"] for copy in record["augmented"]] == kept
    assert sorted(files_of(tmp_path / "audio")) == sorted(["a/slow.wav", *kept])  # nothing of a lost copy
    assert (f"1 rendered, 0 recovered, 0 rejected; {len(kept)} augmented renders, {len(lost)} rejected "
            f"(too_long {len(lost)});") in capsys.readouterr().out


def test_a_missing_augmentation_soundfont_stops_the_stage_naming_its_key(tmp_path, raw, capsys):
    assert run(tmp_path, raw, augment=augment(copies=1, soundfonts=[str(tmp_path / "nope.sf2")])) == 2
    error = capsys.readouterr().err
    assert f"SoundFont not found: {tmp_path / 'nope.sf2'}" in error and "set render.augment.soundfonts" in error
    assert not (tmp_path / "audio").exists()


def test_every_source_rejected_stops_the_stage_and_keeps_the_previous_audio(tmp_path, raw, capsys):
    assert run(tmp_path, raw) == 0
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "audio").rglob("*") if p.is_file()}
    capsys.readouterr()
    # A render.max_seconds below every file's length rejects them all: an empty data/audio would only be found
    # wanting by clip, the previous WAVs gone.
    assert run(tmp_path, raw, max_seconds=0.1) == 1
    err = capsys.readouterr().err
    assert err.startswith("render: every one of the 5 sources was rejected (no_notes 1, too_long 4), so there is "
                          f"nothing to clip; {tmp_path / 'audio'} is not replaced (`dvc repro` removes it before it "
                          "runs the stage: `dvc checkout` brings the previous one back). too_long: see "
                          "render.max_seconds 0.1. E.g. a/one.mid: too_long (the notes last")
    after = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "audio").rglob("*") if p.is_file()}
    assert after == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".audio")]


def test_soundfonts_that_are_folders_texts_or_one_file_twice_are_refused(tmp_path, raw, capfd):
    (tmp_path / "fonts").mkdir()
    assert run(tmp_path, raw, soundfonts=[str(tmp_path / "fonts")]) == 2
    assert f"render.soundfonts: {tmp_path / 'fonts'} is a folder, not a SoundFont file (.sf2/.sf3)" in \
        capfd.readouterr().err
    # Refused before FluidSynth reads it: its loader would print GLib's own warnings first.
    (tmp_path / "notes.sf2").write_text("not a SoundFont at all\n" * 10)
    assert run(tmp_path, raw, soundfonts=[str(tmp_path / "notes.sf2")]) == 2
    err = capfd.readouterr().err
    assert err == (f"render: FluidSynth cannot load the SoundFont {tmp_path / 'notes.sf2'} (render.soundfonts): not "
                   "a .sf2/.sf3 file it can read\n")
    # One file under two names renders every MIDI file twice alike.
    (tmp_path / "same.sf2").symlink_to(SOUNDFONT)
    assert run(tmp_path, raw, soundfonts=[str(SOUNDFONT), str(tmp_path / "same.sf2")]) == 2
    assert (f"render.soundfonts: {SOUNDFONT} and {tmp_path / 'same.sf2'} are the same file "
            f"({os.path.realpath(SOUNDFONT)}): each MIDI file would be rendered twice alike; list it once") in \
        capfd.readouterr().err
    assert not (tmp_path / "audio").exists()


def test_a_collection_of_recordings_alone_needs_no_soundfont_nor_fluidsynth(tmp_path, raw, capsys, monkeypatch):
    """No MIDI source: render loads neither FluidSynth nor a SoundFont, so a machine without them (here: a
    SoundFont that is not there, and a FluidSynth that cannot be loaded) renders a collection of recordings; the
    same params with a MIDI file beside them stop the stage at once, naming the SoundFont."""
    from musicid import synth

    manifest(raw, ["b/tone.wav"])
    absent = str(tmp_path / "nope.sf2")
    assert run(tmp_path, raw, "plain", jobs=1) == 0
    capsys.readouterr()

    def no_library():
        raise synth.FluidSynthUnavailable("cannot load the FluidSynth library (test)")

    monkeypatch.setattr(synth, "_load_fluidsynth", no_library)
    for jobs in (1, 2):
        assert run(tmp_path, raw, f"alone{jobs}", jobs=jobs, soundfonts=[absent]) == 0, capsys.readouterr().err
        assert (tmp_path / f"alone{jobs}" / "b" / "tone.wav").read_bytes() == \
            (tmp_path / "plain" / "b" / "tone.wav").read_bytes()
    manifest(raw, ["a/one.mid", "b/tone.wav"])
    assert run(tmp_path, raw, "mixed", jobs=1, soundfonts=[absent]) == 2
    assert "fluid-soundfont-gm" in capsys.readouterr().err and not (tmp_path / "mixed").exists()


def test_a_midi_file_of_drums_alone_is_warned_of(tmp_path, raw, capsys):
    """A drum track saved in a composer's folder renders (a drummer's collection is all such files), and is named."""
    write_midi(raw / "b" / "metronome.mid", [(37, 0.5 * k, 0.5 * k + 0.1) for k in range(8)], drum=True)
    manifest(raw, ["a/one.mid", "a/two.mid", "b/empty.mid", "b/metronome.mid", "b/three.mid", "b/tone.wav"])
    assert run(tmp_path, raw) == 0
    records = {r["source"]: r for r in json.loads((tmp_path / "audio" / "report.json").read_text())["files"]}
    assert records["b/metronome.mid"]["status"] == "rendered" and records["b/metronome.mid"]["programs"] == [-1]
    assert ("render: warning: 1 MIDI file plays drums alone (channel 10), first b/metronome.mid: no melody, "
            "harmony or pitch for the notes' features") in capsys.readouterr().err
    # Without it, no such warning.
    (raw / "b" / "metronome.mid").unlink()
    manifest(raw, ["a/one.mid", "a/two.mid", "b/empty.mid", "b/three.mid", "b/tone.wav"])
    assert run(tmp_path, raw, out_name="plain") == 0
    assert "drums alone" not in capsys.readouterr().err

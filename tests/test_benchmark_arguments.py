"""The benchmark scripts refuse bad arguments with a message, before any work (their runs are not tests)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_benchmark

budget = load_benchmark("collection_budget")
train_speed = load_benchmark("train_speed")


@pytest.fixture
def no_work(monkeypatch):
    def make_piece(*_):
        raise AssertionError("pieces were generated")

    monkeypatch.setattr(budget, "make_piece", make_piece)


@pytest.mark.parametrize("arguments, message", [
    (["--set", "train.epochz=3"], "collection_budget: no param train.epochz in params.yaml"),
    (["--set", "train.channels=[8"], "--set 'train.channels=[8': the value is not YAML"),
    (["--files", "8"], "--files must be a multiple of 4 of at least 12"),
])
def test_collection_budget_checks_its_arguments_first(no_work, capsys, arguments, message):
    with pytest.raises(SystemExit) as stopped:
        budget.main(arguments)
    assert message in f"{stopped.value.code} {capsys.readouterr().err}"


def test_a_failed_stage_keeps_the_folder_its_log_is_in(no_work, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MUSICID_NO_CACHE", "1")  # the script sets it for its stages: recorded, so undone after
    monkeypatch.setattr(budget.tempfile, "mkdtemp", lambda prefix: str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    monkeypatch.setattr(budget, "make_piece", lambda *_: None)

    def failing(name, arguments, folder, jobs):
        (folder / f"{name}.log").write_text("what went wrong")
        raise SystemExit(f"collection_budget: {name} failed (log: {folder / f'{name}.log'})")

    monkeypatch.setattr(budget, "run_stage", failing)
    with pytest.raises(SystemExit, match="download failed"):
        budget.main(["--files", "12"])
    assert (tmp_path / "run" / "download.log").read_text() == "what went wrong"
    assert f"the run's folder is kept: {tmp_path / 'run'}" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--clips", "--epochs", "--repeats"])
def test_the_training_benchmarks_want_positive_counts(flag, capsys):
    with pytest.raises(SystemExit):
        train_speed.training_parser("doc").parse_args([flag, "0"])
    assert f"argument {flag}: must be a whole number of at least 1, got '0'" in capsys.readouterr().err


def test_invariance_names_what_is_missing(capsys, tmp_path):
    invariance = load_benchmark("invariance")
    with pytest.raises(SystemExit):
        invariance.main(["--models", str(tmp_path / "nope.pt"), "--audio", str(tmp_path), "--clips",
                         str(tmp_path / "clips.h5")])
    assert f"missing: --clips {tmp_path / 'clips.h5'}, --models {tmp_path / 'nope.pt'}" in capsys.readouterr().err


def test_a_help_text_is_the_docstrings_first_paragraph_whole():
    roll_cost = load_benchmark("roll_cost")
    description = train_speed.training_parser(roll_cost.__doc__).description
    assert description == ("What the piano-roll branch costs in training: the same clips trained without the roll "
                           "and with each roll branch, in one run.")


@pytest.mark.parametrize("arguments", [["--tracks", "4"], ["--seconds", "2"]])
def test_stage_memory_wants_enough_tracks_for_a_split(arguments, monkeypatch, capsys):
    stage_memory = load_benchmark("stage_memory")
    monkeypatch.setattr(stage_memory.sys, "argv", ["stage_memory.py", *arguments])
    with pytest.raises(SystemExit):
        stage_memory.main()
    assert "--tracks must be at least 12 and --seconds at least 8" in capsys.readouterr().err


@pytest.mark.parametrize("script", ["render_incremental", "cluster_throughput"])
def test_the_render_benchmarks_take_param_changes_and_refuse_a_misspelt_one(script, monkeypatch, capsys):
    benchmark = load_benchmark(script)
    monkeypatch.setattr(benchmark.tempfile, "TemporaryDirectory", None)  # no work may start
    with pytest.raises(SystemExit) as stopped:
        benchmark.main(["--set", "render.sample_rat=22050"])
    assert stopped.value.code == f"{script}: no param render.sample_rat in params.yaml"
    with pytest.raises(SystemExit):
        benchmark.main(["--set", "render.sample_rate"])
    assert "--set 'render.sample_rate': expected section.key=value" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["--rounds", "0"], "argument --rounds: must be a whole number of at least 1, got '0'"),
    (["--jobs", "-2"], "argument --jobs: must be a whole number of at least 0, got '-2'"),
    (["--model", "nope.pt"], "nope.pt is missing: `dvc repro` makes it"),
    (["--jobs", "1"], "nothing to compare (pass --jobs 2)"),
])
def test_predict_jobs_checks_its_arguments_first(monkeypatch, capsys, tmp_path, arguments, message):
    predict_jobs = load_benchmark("predict_jobs")
    monkeypatch.setattr(predict_jobs, "midi_set", lambda *_: pytest.fail("MIDI files were made"))
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(SystemExit):
        predict_jobs.main(["--model", str(tmp_path / "model.pt"), "--out", str(tmp_path), *arguments])
    assert message in capsys.readouterr().err


def test_performed_copies_change_only_what_they_name(tmp_path):
    """benchmarks/performed_midi.py: each copy, written and read back as predict reads it, keeps the notes'
    pitches and what it does not name as they were; moved onsets never cut a repeated note to a blip."""
    import pretty_midi

    from tests.conftest import write_midi

    performed = load_benchmark("performed_midi")
    # legato notes, each pitch four times in a row: a moved onset often lands inside the note before it
    source = write_midi(tmp_path / "piece.mid", [(60 + (k // 4) % 12, 0.25 * k, 0.25 * k + 0.25) for k in range(64)])

    def notes(path):  # (pitch, start, end, velocity), in the order of pitch, then time
        return sorted((n.pitch, n.start, n.end, n.velocity) for n in pretty_midi.PrettyMIDI(str(path)).instruments[0].notes)

    def written(name, seed=7):
        path = tmp_path / f"{name}-{seed}.mid"
        performed.variant(source, name, seed=seed).write(str(path))
        return notes(path)

    tick = 0.003  # a tick at pretty_midi's resolution, 120 bpm, is 2.3 ms
    original = notes(source)
    copies = {name: written(name) for name in performed.VARIANTS}
    for name, copy in copies.items():
        assert [n[0] for n in copy] == [n[0] for n in original], name
    assert copies["rewritten"] == original
    for name, factor in (("tempo 0.9", 0.9), ("tempo 1.1", 1.1)):
        assert all(abs(c[1] - o[1] / factor) < tick and abs(c[2] - o[2] / factor) < tick and c[3] == o[3]
                   for c, o in zip(copies[name], original)), name
    velocity = copies["velocity"]
    assert [c[1:3] for c in velocity] == [o[1:3] for o in original]
    assert all(20 <= c[3] <= 127 for c in velocity) and len({c[3] for c in velocity}) > 5
    timing = copies["timing"]
    assert [c[3] for c in timing] == [o[3] for o in original]
    shifts = [c[1] - o[1] for c, o in zip(timing, original)]
    assert all(abs(s) <= 0.03 + tick for s in shifts) and len({round(s, 3) for s in shifts}) > 5
    next_onset = {(c[0], c[1]): n[1] for c, n in zip(timing, timing[1:]) if n[0] == c[0]}
    kept = [abs((c[2] - c[1]) - 0.25) < tick for c in timing]
    cut = [not k and abs(c[2] - next_onset.get((c[0], c[1]), -1.0)) < tick for k, c in zip(kept, timing)]
    assert all(k or c for k, c in zip(kept, cut)) and any(cut) and sum(kept) > len(timing) / 2
    assert min(c[2] - c[1] for c in timing) > 0.25 - 0.06 - tick  # shortened by at most the two notes' shifts
    played = copies["performed"]
    assert all(abs(c[1] - o[1] / 0.95) <= 0.03 + tick for c, o in zip(played, original))
    assert len({c[3] for c in played}) > 5 and min(c[2] - c[1] for c in played) > 0.25 / 0.95 - 0.06 - tick
    assert written("performed") == played and written("performed", seed=8) != played


def test_the_copies_without_a_tempo_map_keep_each_note_at_its_second(tmp_path):
    """performed_midi's ``no tempo map`` and ``recorded``: one tempo, 120 beats a minute, whatever the source's
    map, and every note where it sounded (``recorded``: its onset moved, its velocity drawn, as the others)."""
    import io

    import mido
    import pretty_midi

    from musicid.augment import scale_tempo
    from tests.conftest import write_midi

    performed = load_benchmark("performed_midi")
    written = write_midi(tmp_path / "written.mid", [(60 + k % 12, 0.5 * k, 0.5 * k + 0.4) for k in range(24)])
    midi = mido.MidiFile(str(written))
    scale_tempo(midi, 0.8)  # a tempo map of 96 beats a minute: every note 1.25 times later
    source = tmp_path / "piece.mid"
    midi.save(str(source))
    original = pretty_midi.PrettyMIDI(str(source))
    assert list(original.get_tempo_changes()[1]) == pytest.approx([96.0])

    def read_back(name):
        data = io.BytesIO()
        performed.variant(source, name, seed=3).write(data)
        data.seek(0)
        copy = pretty_midi.PrettyMIDI(data)
        return list(copy.get_tempo_changes()[1]), sorted((n.pitch, n.start, n.end, n.velocity)
                                                          for n in copy.instruments[0].notes)

    notes = sorted((n.pitch, n.start, n.end, n.velocity) for n in original.instruments[0].notes)
    tempi, flat = read_back("no tempo map")
    assert tempi == pytest.approx([120.0]) and len(flat) == len(notes)
    assert all(c[0] == o[0] and c[3] == o[3] and abs(c[1] - o[1]) < 1e-3 and abs(c[2] - o[2]) < 1e-3
               for c, o in zip(flat, notes))
    tempi, recorded = read_back("recorded")
    assert tempi == pytest.approx([120.0]) and [c[0] for c in recorded] == [o[0] for o in notes]
    assert all(abs(c[1] - o[1]) <= 0.03 + 1e-3 for c, o in zip(recorded, notes))
    assert len({c[3] for c in recorded}) > 5 and recorded != flat


def test_performed_midi_wants_midi_sources(capsys, tmp_path, monkeypatch):
    performed = load_benchmark("performed_midi")
    monkeypatch.setattr(performed, "choose_pieces", lambda clips, count: [("a/take.wav", "a/take.wav")])
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "take.wav").write_bytes(b"RIFF")
    for name in ("model.pt", "clips.h5"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(SystemExit):
        performed.main(["--models", str(tmp_path / "model.pt"), "--raw", str(tmp_path), "--clips",
                        str(tmp_path / "clips.h5")])
    assert "track a/take.wav is not a MIDI file under" in capsys.readouterr().err


def test_performed_midi_scores_the_audio_branch_alone_on_the_same_renders(tmp_path, monkeypatch):
    """The second table is the model's answer with the notes taken away (what a recording gets), counted on its
    own: here only the audio branch changes its mind, and only on the faster copy."""
    from musicid.prepare import Prediction, Prepared
    from tests.conftest import write_midi

    performed = load_benchmark("performed_midi")

    class Model:
        label_names, uses_symbolic = ["a", "b"], True

        def __init__(self, path):
            pass

        def prepare(self, path):
            return Prepared(Prediction(str(path)), features=np.zeros((1, 1, 1)), notes=np.zeros((1, 1)))

        def score(self, prepared, top):
            flips = prepared.notes is None and "tempo_1.1" in prepared.prediction.path
            return Prediction(prepared.prediction.path, labels=[("b", 0.6), ("a", 0.4)] if flips else
                              [("a", 0.9), ("b", 0.1)])

    monkeypatch.setattr(performed, "Predictor", Model)
    source = write_midi(tmp_path / "a" / "piece.mid", [(60 + k, 0.5 * k, 0.5 * k + 0.4) for k in range(8)])
    (tmp_path / "scratch").mkdir()
    result = performed.measure(tmp_path / "model.pt", [("a/piece.mid", source)], {"a/piece.mid": "a"},
                               tmp_path / "scratch")
    assert result["ways"] == ("notes", "audio")
    assert result["right"]["notes"] == dict.fromkeys(("original", *performed.VARIANTS), 1)
    assert result["right"]["audio"] == {**dict.fromkeys(("original", *performed.VARIANTS), 1), "tempo 1.1": 0}
    assert result["same"]["audio"]["tempo 1.1"] == 0
    assert sum(result["same"]["audio"].values()) == len(performed.VARIANTS) - 1
    assert result["largest_change"]["audio"]["tempo 1.1"] == pytest.approx(0.5)
    assert result["largest_change"]["notes"] == dict.fromkeys(performed.VARIANTS, 0.0)


def test_notes_digest_checks_its_arguments_first(capsys, tmp_path):
    notes = load_benchmark("notes_digest")
    with pytest.raises(SystemExit) as stopped:
        notes.main([str(tmp_path), "--repeat", "0"])
    assert stopped.value.code == 2 and "--repeat must be at least 1, got 0" in capsys.readouterr().err
    assert notes.main([str(tmp_path)]) == 1
    assert f"no MIDI file under {tmp_path}" in capsys.readouterr().err


def test_work_pairing_finds_the_pairs_of_the_product_it_replaced(capsys, monkeypatch):
    pairing = load_benchmark("work_pairing")
    assert pairing.main(["--files", "120", "--repeat", "1"]) == 0
    row = [cell.strip() for cell in capsys.readouterr().out.strip().splitlines()[-1].strip("|").split("|")]
    assert row[0] == "120" and int(row[4]) >= 4 and row[5].endswith("x")  # every 25th file's version at least
    # A pairing that misses a pair is caught.
    monkeypatch.setattr(pairing, "alike_pairs", lambda patterns: tuple(a[1:] for a in pairing.all_pairs(patterns)))
    with pytest.raises(SystemExit, match="the two found different pairs"):
        pairing.main(["--files", "120", "--repeat", "1"])
    with pytest.raises(SystemExit):
        pairing.main(["--files", "1"])
    assert "--files must be at least 2" in capsys.readouterr().err


def test_performed_versions_finds_one_track_recordings_of_the_scores(tmp_path, capsys):
    from tests.archives import parts_midi, tune

    for seed in range(3):
        (tmp_path / "a").mkdir(exist_ok=True)
        (tmp_path / "a" / f"piece{seed}.mid").write_bytes(parts_midi([tune(seed), tune(seed + 10, low=40)]))
    versions = load_benchmark("performed_versions")
    assert versions.main(["--raw", str(tmp_path)]) == 0
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in capsys.readouterr().out.splitlines()
            if line.startswith("| parts")}
    # Two parts in one track: part by part nothing like the score; its top line, the score's own.
    assert rows == {"parts and the top line": "3 of 3", "parts alone": "0 of 3"}
    with pytest.raises(SystemExit, match="no MIDI file of .* has patterns to compare"):
        versions.main(["--raw", str(tmp_path / "empty")])


def test_performed_midi_copies_a_long_fine_grained_export(tmp_path):
    """A music21 export of a long movement passes pretty_midi's 10 million ticks (10080 a beat): its copies are
    read as musicid.symbolic reads it, not refused as corrupt."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(resolution=10080, initial_tempo=120.0)
    part = pretty_midi.Instrument(program=0)
    part.notes = [pretty_midi.Note(velocity=80, pitch=60 + k % 12, start=k * 110.0, end=k * 110.0 + 1.0)
                  for k in range(11)]
    midi.instruments.append(part)
    midi.write(str(tmp_path / "long.mid"))
    performed = load_benchmark("performed_midi")
    copy = performed.variant(tmp_path / "long.mid", "recorded", 1)
    assert len(copy.instruments[0].notes) == 11 and copy.get_end_time() > 1000

"""`python -m musicid predict` with a small untrained checkpoint carrying the project's params."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from musicid.__main__ import main
from musicid.model import ModelConfig, SpectrogramCNN
from musicid.novelty import Mahalanobis
from musicid.params import as_dict
from musicid.predict import Predictor, minutes_seconds
from musicid.training import save_checkpoint
from tests.conftest import SOUNDFONT, running_in_group, section_params, sine, write_wav


def write_checkpoint(path, reference: float, reference_tracks: int | None, label_names=("bach", "palestrina"),
                     clip: dict | None = None):
    """A checkpoint as train writes it: the pipeline's params, an (untrained) model, novelty statistics."""
    params = {name: as_dict(section_params(name)) for name in ("render", "clip", "features")}
    params["clip"].update(clip or {})
    if not SOUNDFONT.is_file():
        pytest.fail(f"{SOUNDFONT} is missing: run `make setup`")
    params["render"]["soundfonts"] = [str(SOUNDFONT)]
    torch.manual_seed(0)
    config = ModelConfig(n_bands=params["features"]["n_mels"], n_classes=len(label_names), channels=[4],
                         embedding_dim=4, dropout=0.0)
    model = SpectrogramCNN(config)
    embeddings = np.random.default_rng(0).standard_normal((20, 4))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = np.arange(20) % len(label_names)
    extra = {"novelty_reference": reference}
    if reference_tracks is not None:
        extra["novelty_reference_tracks"] = reference_tracks
    save_checkpoint(path, model, list(label_names), np.zeros(config.n_bands, np.float32),
                    np.ones(config.n_bands, np.float32), params, novelty=Mahalanobis.fit(embeddings, labels),
                    extra=extra)
    return path


@pytest.fixture(autouse=True)
def _files_read_in_this_process(monkeypatch):
    """As with --jobs 1, so that monkeypatches reach the reading of files; the tests of worker processes pass
    --jobs themselves."""
    monkeypatch.setenv("MUSICID_JOBS", "1")


@pytest.fixture
def inputs(tmp_path):
    write_wav(tmp_path / "songs" / "tune.wav", sine(440.0, 9.0, 22050, 0.3), 22050)
    (tmp_path / "empty").mkdir()
    return tmp_path


def test_threshold_flag_and_an_empty_folder_reported(inputs, capsys):
    model = write_checkpoint(inputs / "model.pt", reference=0.0, reference_tracks=24)
    code = main(["predict", str(inputs / "songs"), str(inputs / "empty"), "--model", str(model)])
    out, err = capsys.readouterr()
    assert code == 1  # the empty folder could not be scored
    lines = out.splitlines()
    assert lines[0] == ("novelty threshold 0.000 (95th percentile of 24 validation tracks' scores): "
                        "a file above it is flagged as unlike every known class")
    assert lines[1].startswith(f"{inputs / 'songs' / 'tune.wav'}: ")
    assert lines[1].endswith("; flagged: unlike every known class (2 clips)")
    assert "composer" not in out
    assert lines[2] == (f"{inputs / 'empty'}: cannot score (no_files: no MIDI or audio file of a kind musicid reads "
                        "in this folder)")
    assert len(lines) == 3 and err == ""


def test_json_has_the_threshold_and_flags_and_warns_on_few_tracks(inputs, capsys):
    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=4)
    assert main(["predict", str(inputs / "songs"), "--model", str(model), "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ("predict: warning: the novelty threshold rests on 4 validation tracks (fewer than 20), "
                   "so the flag means little\n")
    document = json.loads(out)
    assert document["novelty_threshold"] == 1e9 and document["novelty_threshold_tracks"] == 4
    assert document["warning"].startswith("the novelty threshold rests on 4")
    (entry,) = document["files"]
    assert entry["flagged"] is False and entry["clips"] == 2 and entry["error"] is None
    assert entry["symbolic"] is False  # an audio-only model
    assert [label["label"] for label in entry["labels"]] == sorted(
        ["bach", "palestrina"], key=lambda name: -[l["probability"] for l in entry["labels"]
                                                     if l["label"] == name][0])


def test_a_checkpoint_without_the_track_count_is_warned_about(inputs, capsys):
    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=None)
    assert main(["predict", str(inputs / "empty"), "--model", str(model), "--json"]) == 1
    out, err = capsys.readouterr()
    assert "does not record how many validation tracks" in err
    assert json.loads(out)["files"] == [{"path": str(inputs / "empty"), "labels": [], "novelty": None,
                                         "flagged": None, "clips": 0, "symbolic": False, "notes_unread": None,
                                         "repaired": [], "error": "no_files: no MIDI or audio file of a kind "
                                                                  "musicid reads in this folder"}]


def test_no_model_says_how_to_get_one(inputs, capsys):
    assert main(["predict", str(inputs / "songs"), "--model", str(inputs / "none.pt")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"predict: {inputs / 'none.pt'}: no such model file; train one with `dvc repro train` "
                   "(or give another with --model)\n")
    # A folder (models/ for models/model.pt) is named as one, with the file it may have meant.
    write_checkpoint(inputs / "models" / "model.pt", reference=0.0, reference_tracks=24)
    assert main(["predict", str(inputs / "songs"), "--model", str(inputs / "models")]) == 2
    assert capsys.readouterr().err == (f"predict: {inputs / 'models'}: a folder, not a model file (did you mean "
                                       f"{inputs / 'models' / 'model.pt'}?)\n")


@pytest.mark.parametrize("content,cause", [
    (b"garbage that is not a zip archive", "not a readable PyTorch checkpoint (truncated or not one): "),
    (None, "not a readable PyTorch checkpoint (truncated or not one): "),  # a truncated real checkpoint
])
def test_a_garbage_or_truncated_model_is_one_line(inputs, capsys, content, cause):
    path = inputs / "bad.pt"
    if content is None:
        whole = write_checkpoint(inputs / "model.pt", 1.0, 24).read_bytes()
        content = whole[: len(whole) // 2]
    path.write_bytes(content)
    assert main(["predict", str(inputs / "songs"), "--model", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"predict: {path}: {cause}")
    assert err.count("\n") == 1 and "Traceback" not in err


class _Foreign:
    """A class a checkpoint could pickle; loading it would run code, so it is refused."""


@pytest.mark.parametrize("kind", ["midi", "objects"])
def test_a_model_file_that_is_not_one_gets_no_unsafe_advice(inputs, capsys, kind):
    """PyTorch's own message advises weights_only=False (running whatever the file holds): not passed on."""
    path = inputs / "foreign.pt"
    if kind == "midi":
        from tests.archives import midi_bytes

        path.write_bytes(midi_bytes(60))
    else:
        torch.save({"weights": _Foreign()}, path)
    assert main(["predict", str(inputs / "songs"), "--model", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"predict: {path}: not a readable PyTorch checkpoint (truncated or not one): ")
    assert "weights_only" not in err and err.count("\n") == 1
    assert err.endswith("not the zip archive torch.save writes\n" if kind == "midi" else
                        "it holds Python objects other than tensors and plain data, which are not loaded\n")


def test_a_pickle_that_is_not_a_musicid_checkpoint(inputs, capsys):
    torch.save({"weights": torch.zeros(2)}, inputs / "other.pt")
    assert main(["predict", str(inputs / "songs"), "--model", str(inputs / "other.pt")]) == 2
    assert capsys.readouterr().err == (f"predict: {inputs / 'other.pt'}: not a musicid checkpoint "
                                       "(no 'format: musicid-checkpoint-1')\n")


def _edited(path, edit):
    checkpoint = torch.load(path, weights_only=False)
    edit(checkpoint)
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("edit, cause", [
    (lambda c: c["params"]["features"].update(n_mels=32),
     "its parts do not fit together (the features params (logmel) give 32 bands, the model reads 64, the "
     "normalisation has 64)"),
    (lambda c: c.update(label_names=["bach", "palestrina", "monteverdi"]),
     "its parts do not fit together (3 label names, 2 class centroids, a model of 2 classes)"),
    (lambda c: c.update(centroids=c["centroids"][:1]),
     "its parts do not fit together (2 label names, 1 class centroids, a model of 2 classes)"),
    (lambda c: c["params"].pop("features"), "holds no features params"),
])
def test_a_checkpoint_whose_parts_disagree_is_refused_in_one_line(inputs, capsys, edit, cause):
    model = _edited(write_checkpoint(inputs / "model.pt", reference=0.0, reference_tracks=24), edit)
    assert main(["predict", str(inputs / "songs"), "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"predict: {model}") and cause in err and err.count("\n") == 1, err


def _chord(seconds: float, sample_rate: int) -> np.ndarray:
    """A swelling three-note chord with a quiet passage: float32 [n], peak about 0.5."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    chord = sum(np.sin(2 * np.pi * f * t) for f in (262.0, 330.0, 392.0)) / 3
    swell = 0.2 + 0.8 * (0.5 + 0.5 * np.sin(2 * np.pi * t / seconds))
    return (0.5 * chord * swell).astype(np.float32)


@pytest.mark.parametrize("normalize, invariant", [("track", True), ("none", False)])
def test_level_sample_rate_and_channels_do_not_change_the_answer(tmp_path, normalize, invariant):
    import soundfile
    import soxr

    from musicid.predict import Predictor

    model = write_checkpoint(tmp_path / "model.pt", reference=0.0, reference_tracks=24, clip={"normalize": normalize})
    audio = _chord(12.0, 22050)
    variants = {"own": write_wav(tmp_path / "own.wav", audio, 22050),
                "half": write_wav(tmp_path / "half.wav", audio * 0.5, 22050),
                "quarter": write_wav(tmp_path / "quarter.wav", audio * 0.25, 22050)}
    stereo = np.repeat(soxr.resample(audio, 22050, 44100)[:, None], 2, axis=1)
    soundfile.write(tmp_path / "copy.flac", stereo, 44100, subtype="PCM_16")
    variants["flac"] = tmp_path / "copy.flac"
    predictor = Predictor(model)
    clips = {name: predictor.clips_and_offsets(path)[0] for name, path in variants.items()}
    assert {name: len(c) for name, c in clips.items()} == {name: 3 for name in variants}
    # What the model sees: the same clips, up to 16-bit rounding and resampling, at every level and format.
    same = [np.allclose(clips[name], clips["own"], atol=2e-3) for name in ("half", "quarter", "flac")]
    assert same == ([True] * 3 if invariant else [False, False, True])
    if invariant:
        scores = {name: dict(predictor.predict(path, top=2).labels) for name, path in variants.items()}
        assert all(abs(scores[name][label] - scores["own"][label]) < 1e-3
                   for name in variants for label in scores["own"]), scores


def test_a_checkpoint_made_before_the_newer_params_still_predicts(inputs):
    from musicid.predict import Predictor

    model = write_checkpoint(inputs / "model.pt", reference=0.0, reference_tracks=24)
    checkpoint = torch.load(model, weights_only=False)
    for section, key in (("render", "augment"), ("features", "symbolic"), ("features", "symbolic_key"), ("features", "symbolic_texture"),
                         ("features", "bins_per_octave"), ("features", "n_bins")):
        del checkpoint["params"][section][key]
    torch.save(checkpoint, model)
    prediction = Predictor(model).predict(inputs / "songs" / "tune.wav")
    assert prediction.error is None and prediction.clips == 2


def test_rules_made_after_a_checkpoint_do_not_refuse_it(inputs):
    """features.hop_length > n_fft is refused in params.yaml since; an audio collection's table leaves
    features.symbolic out but kept symbolic_roll: both checkpoints were trained, and predict takes them."""
    from musicid.params import ParamsError, parse_section
    from musicid.predict import Predictor

    model = write_checkpoint(inputs / "model.pt", reference=0.0, reference_tracks=24)
    checkpoint = torch.load(model, weights_only=False)
    checkpoint["params"]["features"]["hop_length"] = 2 * checkpoint["params"]["features"]["n_fft"]
    del checkpoint["params"]["features"]["symbolic"]
    checkpoint["params"]["features"]["symbolic_roll"] = True
    torch.save(checkpoint, model)
    with pytest.raises(ParamsError, match="features.hop_length must be at most features.n_fft"):
        parse_section({**checkpoint["params"]["features"], "symbolic": True}, "features")  # params.yaml's rule
    prediction = Predictor(model).predict(inputs / "songs" / "tune.wav")
    assert prediction.error is None and not prediction.symbolic


def _piece(path, seconds: float = 9.0) -> None:
    """A MIDI file of ``seconds`` of a rising and falling piano line (two 4 s clips)."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    for step in range(int(seconds * 4)):
        start = step * 0.25
        piano.notes.append(pretty_midi.Note(velocity=90, pitch=60 + (step % 12), start=start, end=start + 0.25))
    midi.instruments.append(piano)
    midi.write(str(path))


def test_a_file_named_in_latin1_is_scored_and_shown_escaped(inputs, capsys):
    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    folder = inputs / "latin"
    folder.mkdir()
    _piece(folder / os.fsdecode(b"caf\xe9.mid"))
    # An audio file so named too: libsndfile takes the name as the file system's bytes, not as text.
    (folder / os.fsdecode(b"caf\xe9.wav")).write_bytes((inputs / "songs" / "tune.wav").read_bytes())
    assert main(["predict", str(folder), "--model", str(model), "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert [(f["path"], f["error"], f["clips"]) for f in files] == [(f"{folder}/caf\\xe9.mid", None, 2),
                                                                      (f"{folder}/caf\\xe9.wav", None, 2)]


def test_without_the_models_soundfont_audio_files_are_still_scored(inputs, capsys):
    """The SoundFont is part of the checkpoint's params: MIDI files say so, audio files need none."""
    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    checkpoint = torch.load(model, weights_only=False)
    gone = inputs / "other-machine" / "Piano.sf2"
    checkpoint["params"]["render"]["soundfonts"] = [str(gone)]
    torch.save(checkpoint, model)
    _piece(inputs / "songs" / "piece.mid")
    _piece(inputs / "songs" / "piece2.mid")
    assert main(["predict", str(inputs / "songs"), "--model", str(model)]) == 1
    lines = capsys.readouterr().out.splitlines()
    whole = (f"no_soundfont: the model renders MIDI with the SoundFont {gone}, which is not on this machine (it is "
             "part of the model's params, so params.yaml does not change it): install it at that path (for "
             "/usr/share/sounds/sf2/FluidR3_GM.sf2: apt-get install --no-install-recommends fluid-soundfont-gm) or "
             "retrain with one you have; audio files need none")
    assert lines[1] == f"{inputs / 'songs' / 'piece.mid'}: cannot score ({whole})"
    # The same long message for the next MIDI file is not printed again.
    assert lines[2] == f"{inputs / 'songs' / 'piece2.mid'}: cannot score (no_soundfont: as above)"
    assert lines[3].startswith(f"{inputs / 'songs' / 'tune.wav'}: ") and lines[3].endswith("(2 clips)")
    assert len(lines) == 4
    # For machines each file's error stays whole.
    assert main(["predict", str(inputs / "songs"), "--model", str(model), "--json"]) == 1
    files = json.loads(capsys.readouterr().out)["files"]
    assert [f["error"] for f in files] == [whole, whole, None]


def test_hidden_files_in_a_folder_are_left_out_and_an_empty_file_is_named(inputs, capsys):
    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    songs = inputs / "songs"
    (songs / "._tune.wav").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")  # AppleDouble
    for folder in (".cache", "__MACOSX"):
        write_wav(songs / folder / "x.wav", sine(220.0, 9.0, 22050, 0.3), 22050)
    (inputs / "zero.mid").write_bytes(b"")
    assert main(["predict", str(songs), str(inputs / "zero.mid"), "--model", str(model)]) == 1
    lines = capsys.readouterr().out.splitlines()[1:]
    assert lines[0].startswith(f"{songs / 'tune.wav'}: ") and lines[0].endswith("(2 clips)")
    assert lines[1:] == [f"{inputs / 'zero.mid'}: cannot score (content_mismatch: named .mid but looks like an "
                         "empty file)"]
    # Named on its own, a hidden file is what was asked for: it is tried (and this one is no audio).
    assert main(["predict", str(songs / "._tune.wav"), "--model", str(model)]) == 1
    assert capsys.readouterr().out.splitlines()[1] == (
        f"{songs / '._tune.wav'}: cannot score (content_mismatch: named .wav but looks like a macOS AppleDouble "
        "file)")


@pytest.mark.parametrize("top", ["0", "-1", "two"])
def test_top_must_be_a_whole_number_of_at_least_one(inputs, capsys, top):
    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    with pytest.raises(SystemExit) as stopped:
        main(["predict", str(inputs / "songs"), "--model", str(model), "--top", top])
    assert stopped.value.code == 2
    assert "argument --top: must be a whole number >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("share, message", [("1.5", "got 1.5"), ("-0.1", "got -0.1"), ("nan", "got nan"),
                                            ("half", "got 'half'")])
def test_the_share_of_a_clips_audio_must_be_from_0_to_1(inputs, capsys, share, message):
    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    with pytest.raises(SystemExit) as stopped:
        main(["predict", str(inputs / "songs"), "--model", str(model), "--clips", "--clip-audio", share])
    assert stopped.value.code == 2
    assert f"argument --clip-audio: must be a number from 0 to 1, {message}" in capsys.readouterr().err


def test_a_soundfont_fluidsynth_cannot_load_is_named_as_such(inputs, capsys):
    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    checkpoint = torch.load(model, weights_only=False)
    broken = inputs / "Broken.sf2"
    broken.write_bytes(b"RIFF not a SoundFont")
    checkpoint["params"]["render"]["soundfonts"] = [str(broken)]
    torch.save(checkpoint, model)
    _piece(inputs / "songs" / "piece.mid")
    (inputs / "songs" / "notes.txt").write_text("liner notes")
    assert main(["predict", str(inputs / "songs" / "piece.mid"), str(inputs / "songs" / "notes.txt"),
                 "--model", str(model)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (f"{inputs / 'songs' / 'piece.mid'}: cannot score (no_soundfont: FluidSynth cannot load the "
                        f"model's SoundFont {broken} (not a .sf2/.sf3 file it can read): put the one the model was "
                        "made with at that path; audio files need none)")
    # A file named directly whose extension is no music: the render step's own reason, as before.
    assert lines[2] == f"{inputs / 'songs' / 'notes.txt'}: cannot score (unsupported_format: unknown file type '.txt')"


def test_an_audio_file_gives_the_clips_the_stages_cut_from_it(tmp_path, monkeypatch):
    """predict cuts a file's clips from what render writes (a 16-bit WAV) as clip reads it back, so a file is
    scored as evaluate scored it; from the decoded floats the rounding noise would differ, and in bands where
    the file has nothing a log-mel spectrogram sees that by 10 dB and more."""
    import soundfile

    from musicid.clips import cut_clips, load_mono
    from musicid.predict import Predictor
    from tests.test_render_stage import STAGE, manifest

    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    raw = tmp_path / "raw"
    rng = np.random.default_rng(0)
    tone = sine(300.0, 9.0, 8000, 0.3) + rng.normal(0, 1e-5, 9 * 8000).astype(np.float32)  # below 16-bit steps
    (raw / "a").mkdir(parents=True)
    soundfile.write(raw / "a" / "take.wav", tone, 8000, subtype="FLOAT")
    manifest(raw, ["a/take.wav"])
    model = write_checkpoint(tmp_path / "model.pt", reference=0.0, reference_tracks=24)
    predictor = Predictor(model)
    render = as_dict(predictor.render_params)
    (tmp_path / "params.yaml").write_text(json.dumps({"render": render}))  # JSON is YAML
    assert STAGE.main(["--params", str(tmp_path / "params.yaml"), "--raw", str(raw), "--out",
                       str(tmp_path / "audio"), "--jobs", "1"]) == 0
    clip = predictor.clip
    staged, staged_offsets, _ = cut_clips(load_mono(tmp_path / "audio" / "a" / "take.wav", clip.sample_rate), clip,
                                          max_clips=0)
    clips, offsets, repaired = predictor.clips_and_offsets(raw / "a" / "take.wav")
    assert len(clips) == 2 and repaired == [] and np.array_equal(offsets, staged_offsets)
    assert np.array_equal(clips, staged)


def test_a_file_cut_short_is_scored_on_what_it_holds_and_says_so(inputs, capsys):
    model = write_checkpoint(inputs / "model.pt", reference=10.0, reference_tracks=24)
    whole = (inputs / "songs" / "tune.wav").read_bytes()
    (inputs / "cut.wav").write_bytes(whole[:len(whole) * 2 // 3])  # 6 of its 9 s: an interrupted copy
    assert main(["predict", str(inputs / "cut.wav"), str(inputs / "songs" / "tune.wav"), "--model", str(model)]) == 0
    lines = capsys.readouterr().out.splitlines()
    cut, = (line for line in lines if line.startswith(str(inputs / "cut.wav")))
    assert "; recovered: cut short: truncated (its data chunk declares" in cut and cut.endswith("(1 clip)")
    whole_line, = (line for line in lines if line.startswith(str(inputs / "songs")))
    assert "recovered" not in whole_line and whole_line.endswith("(2 clips)")
    assert main(["predict", str(inputs / "cut.wav"), "--model", str(model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["repaired"][0].startswith("cut short: truncated")
    # Cut so short that no clip is left: it cannot be scored, and the line still says it was cut short.
    (inputs / "stub.wav").write_bytes(whole[:len(whole) // 9])
    assert main(["predict", str(inputs / "stub.wav"), "--model", str(model)]) == 1
    stub = capsys.readouterr().out.splitlines()[-1]
    assert stub.startswith(f"{inputs / 'stub.wav'}: cannot score (too_short") and \
        "; recovered: cut short: truncated (its data chunk declares" in stub


def test_a_file_name_with_a_newline_stays_on_its_one_line(inputs, capsys):
    model = write_checkpoint(inputs / "model.pt", reference=10.0, reference_tracks=24)
    odd = inputs / "two\nlines.wav"
    odd.write_bytes((inputs / "songs" / "tune.wav").read_bytes())
    assert main(["predict", str(odd), "--model", str(model)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"{inputs}/two\\x0alines.wav: ")  # threshold, then the file
    assert main(["predict", str(odd), "--model", str(model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["path"] == str(odd)  # JSON keeps the name as it is


def test_output_piped_into_a_reader_that_stops_early_ends_quietly(inputs):
    import subprocess
    import sys

    from tests.conftest import PROJECT_ROOT

    model = write_checkpoint(inputs / "model.pt", reference=10.0, reference_tracks=24)
    command = [sys.executable, "-m", "musicid", "predict", str(inputs / "songs"), "--model", str(model)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=PROJECT_ROOT)
    process.stdout.close()  # `| head -0`: the reader is gone before the first line
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1 and b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


def test_a_missing_file_and_a_broken_link_are_told_apart(inputs, capsys):
    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    (inputs / "dangling.mid").symlink_to(inputs / "nowhere.mid")
    (inputs / "loop.mid").symlink_to(inputs / "loop.mid")
    assert main(["predict", f"{inputs / 'recordings'}/", str(inputs / "gone.mid"), str(inputs / "dangling.mid"),
                 str(inputs / "loop.mid"), "--model", str(model)]) == 1
    assert capsys.readouterr().out.splitlines()[1:] == [
        f"{inputs / 'recordings'}: cannot score (missing: no such folder)",  # named with a slash: a folder
        f"{inputs / 'gone.mid'}: cannot score (missing: no such file)",
        f"{inputs / 'dangling.mid'}: cannot score (broken_link: a link to no file)",
        f"{inputs / 'loop.mid'}: cannot score (broken_link: a link to no file)"]


def test_a_broken_link_inside_a_folder_is_named_not_dropped(inputs, capsys):
    """A folder's broken link named like a MIDI file was left out without a word; the good file beside it is
    still scored."""
    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    folder = inputs / "mixed"
    folder.mkdir()
    (folder / "a.wav").write_bytes((inputs / "songs" / "tune.wav").read_bytes())
    (folder / "b.mid").symlink_to(inputs / "nowhere.mid")
    (folder / "notes.txt").symlink_to(inputs / "nowhere.txt")  # not named like music: not asked about
    assert main(["predict", str(folder), "--model", str(model)]) == 1
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == 2 and lines[0].startswith(f"{folder / 'a.wav'}: ") and "cannot score" not in lines[0]
    assert lines[1] == f"{folder / 'b.mid'}: cannot score (broken_link: a link to no file)"


def test_a_fifo_and_a_folder_that_cannot_be_listed_are_named(inputs, capsys, monkeypatch):
    """A FIFO was "missing: no such file" (named) or left out (in a folder); a folder without read permission
    was left out without a word, or its parent said "no_files"."""
    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    folder = inputs / "mixed"
    (folder / "locked").mkdir(parents=True)
    (folder / "a.wav").write_bytes((inputs / "songs" / "tune.wav").read_bytes())
    (folder / "locked" / "b.wav").write_bytes((inputs / "songs" / "tune.wav").read_bytes())
    os.mkfifo(folder / "pipe.mid")
    os.mkfifo(inputs / "alone.mid")
    locked = (folder / "locked", inputs / "empty_locked")
    locked[1].mkdir()
    real = os.scandir

    def scandir(path="."):  # as os.scandir refuses a user a folder without read permission (tests run as root)
        if Path(path) in locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert main(["predict", str(folder), str(inputs / "alone.mid"), str(locked[1]), "--model", str(model)]) == 1
    lines = capsys.readouterr().out.splitlines()[1:]
    assert lines[0].startswith(f"{folder / 'a.wav'}: ") and "cannot score" not in lines[0]
    assert lines[1:] == [f"{folder / 'pipe.mid'}: cannot score (not_a_regular_file: a FIFO)",
                         f"{folder / 'locked'}: cannot score (unreadable: Permission denied)",
                         f"{inputs / 'alone.mid'}: cannot score (not_a_regular_file: a FIFO)",
                         f"{locked[1]}: cannot score (unreadable: Permission denied)"]


def test_linked_folders_are_searched_once_each_and_a_link_back_up_is_no_loop(inputs):
    """A folder of linked albums was reported as holding no files; a link to an ancestor must not loop."""
    from musicid.predict import collect_inputs

    library = inputs / "library"
    (library / "real" / ".hidden").mkdir(parents=True)
    (library / "real" / "x.wav").write_bytes((inputs / "songs" / "tune.wav").read_bytes())
    (library / "real" / ".hidden" / "y.wav").write_bytes(b"")
    shelf = inputs / "shelf"
    shelf.mkdir()
    (shelf / "album").symlink_to(library / "real", target_is_directory=True)
    (shelf / "same album").symlink_to(library / "real", target_is_directory=True)  # the same folder again
    (library / "real" / "up").symlink_to(library, target_is_directory=True)  # a link back up the tree
    assert collect_inputs([shelf]) == [(shelf / "album" / "x.wav", None)]
    assert collect_inputs([library]) == [(library / "real" / "x.wav", None)]


def test_a_file_that_does_not_fit_in_memory_does_not_stop_the_others(inputs, monkeypatch):
    from musicid import prepare as module

    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    predictor = Predictor(model)
    real = module.compute_features

    def features(clips, *args, **kwargs):
        if len(clips) > 2:  # the long file only
            raise MemoryError
        return real(clips, *args, **kwargs)

    monkeypatch.setattr(module, "compute_features", features)
    write_wav(inputs / "songs" / "long.wav", sine(440.0, 30.0, 22050, 0.3), 22050)
    long, short = (predictor.predict(inputs / "songs" / name) for name in ("long.wav", "tune.wav"))
    assert long.error.startswith("out_of_memory: ") and short.error is None and short.clips == 2


def test_worker_processes_give_the_answers_of_one_process(inputs, capsys):
    """Files rendered, clipped and featurized by two worker processes while this one runs the model: the same
    output, in the same order, errors included."""
    model = write_checkpoint(inputs / "model.pt", reference=0.5, reference_tracks=24)
    songs = inputs / "songs"
    _piece(songs / "a.mid")
    _piece(songs / "b.mid", seconds=13.0)
    (songs / "c.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00")  # cut inside its header
    (songs / "d.wav").write_bytes(b"")
    outputs = []
    for jobs in ("1", "2"):
        code = main(["predict", str(songs), str(inputs / "empty"), "--model", str(model), "--json", "--jobs", jobs])
        outputs.append((code, capsys.readouterr().out))
    assert outputs[1] == outputs[0]
    files = json.loads(outputs[1][1])["files"]
    assert [(Path(f["path"]).name, f["clips"], (f["error"] or "").split(":")[0]) for f in files] == [
        ("a.mid", 2, ""), ("b.mid", 3, ""), ("c.mid", 0, "unparseable"), ("d.wav", 0, "content_mismatch"),
        ("tune.wav", 2, ""), ("empty", 0, "no_files")]
    assert outputs[1][0] == 1


@pytest.mark.parametrize("argument, environment, message", [
    ("-1", None, "argument --jobs: must be a whole number >= 0 (0: one per core), got -1"),
    ("two", None, "argument --jobs: must be a whole number >= 0, got 'two'"),
    ("0", "two", "predict: MUSICID_JOBS must be a whole number of workers >= 1, got 'two'"),
])
def test_a_bad_number_of_workers_is_a_usage_error(inputs, capsys, monkeypatch, argument, environment, message):
    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    if environment:
        monkeypatch.setenv("MUSICID_JOBS", environment)
    try:
        code = main(["predict", str(inputs / "songs"), "--model", str(model), "--jobs", argument])
    except SystemExit as exit_:  # argparse's own usage error
        code = exit_.code
    assert code == 2 and message in capsys.readouterr().err


def test_the_workers_variable_is_read_only_for_jobs_0(inputs, capsys, monkeypatch):
    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    monkeypatch.setenv("MUSICID_JOBS", "two")
    assert main(["predict", str(inputs / "songs"), "--model", str(model)]) == 0  # --jobs 1, the default


def test_a_file_that_kills_its_worker_is_named_and_the_others_are_scored(inputs):
    from musicid.prepare import prepare_all
    from tests.crashing_reader import CrashingReader

    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    predictor = Predictor(model)
    songs = inputs / "songs"
    (songs / "crash.wav").write_bytes((songs / "tune.wav").read_bytes())
    _piece(songs / "a.mid")
    items = [(songs / "a.mid", None), (songs / "crash.wav", None), (songs / "tune.wav", None)]
    prepared = list(prepare_all(CrashingReader(*predictor.reader_args()[1]), items, jobs=2))
    assert [p.prediction.error for p in prepared] == [
        None, "worker_crash: the worker processes reading this file died, one after another", None]
    scored = [predictor.score(p) for p in prepared]
    assert [s.clips for s in scored] == [2, 0, 2] and scored[0].labels and scored[2].labels


@pytest.mark.parametrize("signum, code, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_ctrl_c_ends_predict_and_its_workers_in_one_line(inputs, signum, code, word):
    """Ctrl-C, or SIGTERM (`timeout`, `kill`) to the process group, twice: SIGTERM left a warning of leaked
    semaphores and its workers to notice their parent gone."""
    import signal
    import subprocess
    import sys
    import time

    signum = getattr(signal, signum)

    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    for index in range(8):
        _piece(inputs / "songs" / f"piece{index}.mid", seconds=40.0)
    child = subprocess.Popen([sys.executable, "-m", "musicid", "predict", str(inputs / "songs"), "--model",
                              str(model), "--jobs", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True, env={**os.environ, "MUSICID_JOBS": ""},
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    child.stdout.readline()  # the threshold line: the model is loaded, the workers start
    child.stdout.readline()  # the first file scored: the workers are at work
    os.killpg(child.pid, signum)
    time.sleep(0.3)
    os.killpg(child.pid, signum)  # a second one, while the first is handled: it hung predict for ever
    _, err = child.communicate(timeout=30)
    assert child.returncode == code and err.decode() == f"python -m musicid: {word}\n"
    assert running_in_group(child.pid) == []  # the workers too


def test_ctrl_c_while_a_file_is_scored_does_not_wait_for_the_workers(inputs, monkeypatch):
    """Landing outside the pool's wait (here while the model scores the second file), it closed the pool, which
    waited for the long files the workers held."""
    import multiprocessing
    import time

    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    songs = inputs / "songs"
    for index in range(4):
        _piece(songs / f"piece{index}.mid", seconds=8.0 if index < 2 else 3600.0)
    real, calls = Predictor.score, []

    def score(self, prepared, top=3, clip_audio=None):
        calls.append(time.monotonic())
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, prepared, top)

    monkeypatch.setattr(Predictor, "score", score)
    with pytest.raises(KeyboardInterrupt):
        main(["predict", str(songs), "--model", str(model), "--jobs", "2"])
    assert time.monotonic() - calls[-1] < 5  # a worker takes longer than that to render the rest of an hour
    assert not multiprocessing.active_children()


def test_a_file_in_a_folder_that_cannot_be_entered_is_named(inputs, capsys, monkeypatch):
    """A folder that can be listed but not entered (mode 444), or a path under one without any permission: the
    file's stat fails, which stopped predict with a traceback (and lost the others' JSON)."""
    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    shut = inputs / "shut"
    shut.mkdir()
    (shut / "a.wav").write_bytes((inputs / "songs" / "tune.wav").read_bytes())
    real = os.stat

    def stat(path, *args, **kwargs):  # as stat refuses a user an entry of a folder without x permission
        if Path(path).parent == shut:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    assert main(["predict", str(shut), str(shut / "b.mid"), str(inputs / "songs"), "--model", str(model),
                 "--json"]) == 1
    files = json.loads(capsys.readouterr().out)["files"]
    assert [(Path(f["path"]).name, f["error"]) for f in files] == [
        ("a.wav", "unreadable: Permission denied"), ("b.mid", "unreadable: Permission denied"),
        ("tune.wav", None)]


def test_a_file_of_hiss_is_silent_and_a_short_one_too_short(inputs, capsys):
    """Hiss at -70 dBFS passes render's check (RMS above render.min_rms) but is no music: track normalisation
    does not lift it, and predict says `silent`, as the clip stage does; a file shorter than a clip is
    `too_short`."""
    model = write_checkpoint(inputs / "model.pt", reference=10.0, reference_tracks=24)
    hiss = np.random.default_rng(0).normal(0, 10 ** (-70 / 20), 9 * 22050).astype(np.float32)
    write_wav(inputs / "hiss.wav", hiss, 22050, subtype="FLOAT")
    write_wav(inputs / "blip.wav", sine(440.0, 1.0, 22050, 0.3), 22050)
    assert main(["predict", str(inputs / "hiss.wav"), str(inputs / "blip.wav"), str(inputs / "songs" / "tune.wav"),
                 "--model", str(model), "--json"]) == 1  # 1: some path could not be scored
    errors = {Path(entry["path"]).name: entry["error"] for entry in json.loads(capsys.readouterr().out)["files"]}
    assert errors["hiss.wav"] == "silent: every 4 s clip is mostly silence"
    assert errors["blip.wav"] == "too_short: shorter than one 4 s clip" and errors["tune.wav"] is None


def test_a_file_under_another_kinds_extension_is_read_as_what_it_holds(inputs, capsys):
    """An MP3 named .wav is scored as the MP3 it is (as download keeps it), saying so; so is a WAV named .mp3,
    with the scores of the file under its own name. Opus, .oga, .wave and .aifc files are read, and a folder
    with no file musicid reads says what it holds."""
    import soundfile

    model = write_checkpoint(inputs / "model.pt", reference=10.0, reference_tracks=24)
    tone = sine(440.0, 9.0, 22050, 0.3)
    soundfile.write(inputs / "song.mp3", tone, 22050, format="MP3")
    (inputs / "song_named.wav").write_bytes((inputs / "song.mp3").read_bytes())
    (inputs / "tune_named.mp3").write_bytes((inputs / "songs" / "tune.wav").read_bytes())
    soundfile.write(inputs / "tone.opus", sine(440.0, 9.0, 48000, 0.3), 48000, format="OGG", subtype="OPUS")
    (inputs / "tone.oga").write_bytes((inputs / "tone.opus").read_bytes())
    (inputs / "tune.wave").write_bytes((inputs / "songs" / "tune.wav").read_bytes())
    soundfile.write(inputs / "tune.aifc", tone, 22050, format="AIFF")
    others = inputs / "others"
    others.mkdir()
    (others / "a.ape").write_bytes(b"MAC \x96\x0f")
    (others / "notes.txt").write_text("liner notes")  # cover art, cue sheets: other types a folder holds
    names = ["song.mp3", "song_named.wav", "tune_named.mp3", "songs/tune.wav", "tone.opus", "tone.oga",
             "tune.wave", "tune.aifc", "others"]
    assert main(["predict", *(str(inputs / name) for name in names), "--model", str(model), "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    files = {str(Path(entry["path"]).relative_to(inputs)): entry for entry in document["files"]}
    assert files["others"]["error"] == ("no_files: no MIDI or audio file of a kind musicid reads in this folder "
                                        "(2 of other types: .ape 1, .txt 1)")
    assert [name for name, entry in files.items() if entry["error"]] == ["others"]
    assert files["song_named.wav"]["repaired"] == ["named .wav but looks like MP3 audio: read as .mp3"]
    assert files["tune_named.mp3"]["repaired"] == ["named .mp3 but looks like WAV audio: read as .wav"]
    for named, own in (("song_named.wav", "song.mp3"), ("tune_named.mp3", "songs/tune.wav"),
                       ("tune.wave", "songs/tune.wav"), ("tone.oga", "tone.opus")):
        assert files[named]["labels"] == files[own]["labels"] and files[named]["clips"] == files[own]["clips"] == 2
    assert files["tune.aifc"]["clips"] == 2
    # Worker processes read each file as what it holds too: the same document.
    assert main(["predict", *(str(inputs / name) for name in names), "--model", str(model), "--json",
                 "--jobs", "2"]) == 1
    assert json.loads(capsys.readouterr().out) == document


def test_the_share_of_a_clips_audio_without_clips_is_a_usage_error(inputs, capsys):
    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    with pytest.raises(SystemExit) as stopped:
        main(["predict", str(inputs / "songs"), "--model", str(model), "--clip-audio", "0.2"])
    assert stopped.value.code == 2
    assert "--clip-audio applies to the clips' answers: give --clips too" in capsys.readouterr().err


def test_a_clips_start_is_shown_as_minutes_and_seconds_rounded_once():
    assert [minutes_seconds(s) for s in (0.0, 4.0, 59.96, 119.96, 61.25, 3600.0)] == \
        ["0:00.0", "0:04.0", "1:00.0", "2:00.0", "1:01.2", "60:00.0"]


def test_a_score_is_scored_as_the_midi_file_music21_writes_of_it(inputs, capsys):
    """Download writes a collection's scores as MIDI with music21; predict reads a score the same way."""
    from musicid.dataset import score_file_to_midi
    from tests.test_scores import TUNE, kern

    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    folder = inputs / "scores"
    folder.mkdir()
    (folder / "tune.krn").write_bytes(kern(TUNE * 2))  # 24 quarter notes at music21's 120 bpm: 12 s, 3 clips
    written, reason = score_file_to_midi(folder / "tune.krn")
    assert reason is None
    (folder / "tune_as_midi.mid").write_bytes(written)
    (folder / "Library.xml").write_bytes(b'<?xml version="1.0"?><plist/>\n')  # beside music, no score
    assert main(["predict", str(folder), "--model", str(model), "--json"]) == 0
    files = {Path(f["path"]).name: f for f in json.loads(capsys.readouterr().out)["files"]}
    assert sorted(files) == ["tune.krn", "tune_as_midi.mid"]
    assert files["tune.krn"]["error"] is None and files["tune.krn"]["clips"] == 3
    assert files["tune.krn"]["labels"] == files["tune_as_midi.mid"]["labels"]
    assert files["tune.krn"]["novelty"] == files["tune_as_midi.mid"]["novelty"]
    # Named itself, a .xml that is no score gets its reason.
    assert main(["predict", str(folder / "Library.xml"), "--model", str(model), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["files"][0]["error"] == \
        "content_mismatch: named .xml but holds no MusicXML score"


def test_a_file_named_twice_is_listed_once_and_an_empty_path_is_not_the_current_folder(inputs, monkeypatch):
    """`predict songs songs/tune.wav` scored tune.wav twice; `predict "$UNSET"` scored the current folder."""
    from musicid.predict import collect_inputs

    monkeypatch.chdir(inputs)
    songs = sorted((inputs / "songs").iterdir())
    listed = collect_inputs([inputs / "songs", inputs / "songs" / "tune.wav", "songs/tune.wav"])
    assert [path for path, _ in listed] == [path for path in songs if not path.name.startswith(".")]
    assert collect_inputs([""]) == [(Path(""), "missing: an empty path (an unset variable?)")]


def test_a_name_the_console_cannot_show_is_escaped_not_a_crash(inputs):
    """A console whose encoding has no ♪ (PYTHONIOENCODING=latin-1): the line is printed with the character
    escaped, and the file after it is scored."""
    import subprocess
    import sys

    model = write_checkpoint(inputs / "model.pt", reference=1e9, reference_tracks=24)
    result = subprocess.run([sys.executable, "-m", "musicid", "predict", "--model", str(model),
                             str(inputs / "Tëst ♪.wav"), str(inputs / "songs" / "tune.wav")], capture_output=True,
                            env={**os.environ, "PYTHONIOENCODING": "latin-1", "MUSICID_PROGRESS": "0"})
    assert b"Traceback" not in result.stderr, result.stderr
    lines = result.stdout.decode("latin-1").splitlines()
    assert lines[1] == f"{inputs}/Tëst \\u266a.wav: cannot score (missing: no such file)"
    assert lines[2].startswith(f"{inputs / 'songs' / 'tune.wav'}: ") and result.returncode == 1

import numpy as np
import pytest
import soundfile

from musicid import render
from musicid.render import (MidiRenderer, RenderError, RenderTask, SynthConfig, FluidSynthUnavailable,
                            midi_summary, trim_trailing_silence, validate_audio)
from tests.conftest import sine, write_midi, write_wav

SR = 22050


@pytest.fixture(scope="module")
def renderer():
    from tests.conftest import SOUNDFONT
    return MidiRenderer([str(SOUNDFONT)], SynthConfig(sample_rate=SR, gain=0.5, reverb=True, chorus=False))


@pytest.fixture
def worker(renderer, monkeypatch):
    monkeypatch.setattr(render, "_worker_renderer", renderer)
    return renderer


def task(tmp_path, source, label="a", names=("a/x.wav",), max_seconds=600.0):
    return RenderTask(source=source, label=label, input_path=str(tmp_path / source),
                      output_dir=str(tmp_path / "out"), output_names=names, min_rms=1e-4,
                      max_seconds=max_seconds)


def test_render_three_notes(renderer, three_note_midi):
    audio = renderer.render(three_note_midi)
    assert audio.dtype == np.float32 and audio.shape[0] == 2
    seconds = trim_trailing_silence(audio).shape[1] / SR
    assert 1.5 <= seconds <= 1.5 + render.TAIL_SECONDS
    assert np.sqrt(np.mean(audio ** 2)) > 1e-3


def test_render_does_not_depend_on_what_was_rendered_before(renderer, tmp_path, three_note_midi):
    other = write_midi(tmp_path / "other.mid", [(40, 0.0, 2.0), (80, 0.1, 1.0)], program=48)
    first = renderer.render(three_note_midi)
    renderer.render(other)
    again = renderer.render(three_note_midi)
    assert np.array_equal(first, again)


def test_render_one_writes_a_valid_wav(worker, tmp_path):
    write_midi(tmp_path / "a" / "x.mid", [(60, 0.0, 1.0), (62, 1.0, 2.0)])
    record = render.render_one(task(tmp_path, "a/x.mid"))
    assert record["status"] == "rendered" and record["reason"] is None
    assert record["outputs"] == ["a/x.wav"]
    info = soundfile.info(str(tmp_path / "out" / "a" / "x.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
    assert abs(info.frames / SR - record["duration_s"]) < 1e-3
    assert 2.0 <= record["duration_s"] <= 2.0 + render.TAIL_SECONDS
    assert [p.name for p in (tmp_path / "out" / "a").iterdir()] == ["x.wav"]  # no temporaries


def test_two_runs_give_identical_wav_bytes(worker, tmp_path):
    write_midi(tmp_path / "a" / "x.mid", [(60, 0.0, 1.0), (67, 0.5, 1.5)])
    render.render_one(task(tmp_path, "a/x.mid"))
    first = (tmp_path / "out" / "a" / "x.wav").read_bytes()
    render.render_one(task(tmp_path, "a/x.mid"))
    assert (tmp_path / "out" / "a" / "x.wav").read_bytes() == first


@pytest.mark.parametrize("name,make,reason", [
    ("truncated.mid", lambda p, m: p.write_bytes(m.read_bytes()[:30]), "unparseable"),
    ("garbage.mid", lambda p, m: p.write_text("<html>not a midi file</html>"), "unparseable"),
    ("empty.mid", lambda p, m: write_midi(p, []), "no_notes"),
    ("long.mid", lambda p, m: write_midi(p, [(60, 700.0, 701.0)]), "too_long"),
    ("zero.wav", lambda p, m: p.write_bytes(b""), "decode_error"),
    ("silence.wav", lambda p, m: write_wav(p, np.zeros(SR, np.float32), SR), "silent"),
    ("nan.wav", lambda p, m: write_wav(p, np.full(SR, np.nan, np.float32), SR, "FLOAT"), "non_finite"),
    ("notes.txt", lambda p, m: p.write_text("hello"), "unsupported_format"),
])
def test_bad_sources_are_rejected_with_their_reason(worker, tmp_path, three_note_midi, name, make, reason):
    path = tmp_path / "a" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    make(path, three_note_midi)
    record = render.render_one(task(tmp_path, f"a/{name}"))
    assert (record["status"], record["reason"]) == ("rejected", reason)
    assert record["outputs"] == []
    assert not (tmp_path / "out").exists()


def test_audio_source_is_resampled_and_kept(worker, tmp_path):
    write_wav(tmp_path / "a" / "tone.flac", sine(440, 2.0, 44100), 44100)
    record = render.render_one(task(tmp_path, "a/tone.flac"))
    assert record["status"] == "rendered"
    audio, rate = soundfile.read(str(tmp_path / "out" / "a" / "x.wav"))
    assert rate == SR and len(audio) == 2 * SR


def test_validate_duration_mismatch():
    audio = np.full((1, 10 * SR), 0.1, np.float32)
    validate_audio(audio, SR, 1e-4, expected_seconds=9.0)
    with pytest.raises(RenderError) as caught:
        validate_audio(audio, SR, 1e-4, expected_seconds=20.0)
    assert caught.value.reason == "duration_mismatch"


def test_midi_summary_end_time(three_note_midi):
    assert midi_summary(three_note_midi) == pytest.approx(1.5)


def test_trim_trailing_silence():
    audio = np.zeros((2, 100), np.float32)
    audio[1, 41] = 0.5
    assert trim_trailing_silence(audio).shape == (2, 42)
    assert trim_trailing_silence(np.zeros((2, 10), np.float32)).shape == (2, 0)


def test_missing_soundfont_says_what_to_install(tmp_path):
    with pytest.raises(FluidSynthUnavailable, match="apt-get install --no-install-recommends fluid-soundfont-gm"):
        MidiRenderer([str(tmp_path / "none.sf2")], SynthConfig(SR, 0.5, False, False))

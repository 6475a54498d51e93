"""Audio sources: header checks before decoding, block-wise decoding, and audio that is not music."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile

from musicid import audio, render
from musicid.audio import AudioTooLong, decode_audio, read_audio, resample, to_channels
from tests.conftest import sine, write_wav
from tests.test_render import SR, renderer, render_to, task, worker  # noqa: F401 - fixtures used by name


def silent_flac(path, seconds: int, rate: int = 8000, channels: int = 1):
    """A FLAC file of ``seconds`` of digital silence, written a second at a time (it compresses to little)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with soundfile.SoundFile(str(path), "w", rate, channels, format="FLAC") as handle:
        for _ in range(seconds):
            handle.write(np.zeros((rate, channels), np.int16))
    return path


@pytest.mark.parametrize("name,samples,rate,subtype,reason,detail", [
    ("one_hertz.wav", sine(0.1, 10.0, 1), 1, "PCM_16", "implausible_rate",
     "sample rate 1 Hz is outside 4000..768000 Hz"),
    ("offset.wav", np.full(SR, 0.5, np.float32), SR, "FLOAT", "silent",
     "a constant offset of 0.5 and no signal around it (RMS 0.00e+00 without it, below 1.00e-04)"),
    ("loud.wav", 40.0 * sine(440, 1.0, SR, amplitude=1.0), SR, "FLOAT", "clipping",
     "samples reach 40, far beyond full scale 1.0 (limit 4)"),
])
def test_audio_that_is_not_music_is_rejected(worker, tmp_path, name, samples, rate, subtype, reason, detail):
    write_wav(tmp_path / "a" / name, samples, rate, subtype)
    record = render_to(tmp_path, task(tmp_path, f"a/{name}"))
    assert (record["status"], record["reason"], record["detail"]) == ("rejected", reason, detail)
    assert not (tmp_path / "out").exists()


def test_a_little_over_full_scale_is_kept(worker, tmp_path):
    write_wav(tmp_path / "a" / "hot.wav", 1.5 * sine(440, 1.0, SR), SR, "FLOAT")
    assert render_to(tmp_path, task(tmp_path, "a/hot.wav"))["status"] == "rendered"


def test_too_long_is_known_from_the_header_without_decoding(worker, tmp_path, monkeypatch):
    path = silent_flac(tmp_path / "a" / "hour.flac", 3600)
    assert path.stat().st_size < 1_000_000  # an hour in under a megabyte

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before the length was checked")

    monkeypatch.setattr(render, "decode_audio", no_decoding)
    record = render_to(tmp_path, task(tmp_path, "a/hour.flac", max_seconds=600.0))
    assert (record["status"], record["reason"], record["detail"]) == (
        "rejected", "too_long", "the audio lasts 3600 s (render.max_seconds 600)")


def test_decoding_stops_at_max_seconds(tmp_path):
    path = write_wav(tmp_path / "t.wav", sine(440, 2.0, 8000), 8000)
    with pytest.raises(AudioTooLong):
        decode_audio(path, 8000, 1, max_seconds=1.5)
    assert decode_audio(path, 8000, 1, max_seconds=2.0).shape == (1, 16000)


@pytest.mark.parametrize("channels", [1, 2])
def test_block_decoding_gives_the_samples_of_decoding_at_once(tmp_path, monkeypatch, channels):
    left, right = sine(440, 3.0, 44100), sine(660, 3.0, 44100, amplitude=0.25)
    path = write_wav(tmp_path / "s.flac", np.stack([left, right], axis=1), 44100)
    monkeypatch.setattr(audio, "DECODE_BLOCK_FRAMES", 10000)  # many blocks, the last one partial
    data, rate = read_audio(path)
    whole = to_channels(np.ascontiguousarray(resample(data, rate, SR).T), channels)  # [n] or [n, 2]
    blocks = decode_audio(path, SR, channels)
    assert blocks.dtype == np.float32 and blocks.shape == (channels, len(whole))
    assert np.array_equal(blocks, whole[np.newaxis] if channels == 1 else whole.T)


def test_decoding_memory_stays_near_the_result(tmp_path):
    # Ten minutes of stereo silence at 8000 Hz, decoded to mono: the result is 4 bytes a frame;
    # decoding the whole file first would hold 8 bytes a frame (stereo) and more in copies.
    path = silent_flac(tmp_path / "long.flac", 600, channels=2)
    frames = 600 * 8000
    tracemalloc.start()
    try:
        decoded = decode_audio(path, 8000, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded.shape == (1, frames)
    assert peak < 2.2 * 4 * frames  # the blocks and their concatenation


@pytest.mark.parametrize("rate", [44100, 8000])
def test_a_constant_offset_at_another_rate_is_silent(worker, tmp_path, rate):
    # Resampling rings at the edges of a constant signal; that ringing is not music.
    write_wav(tmp_path / "a" / "offset.wav", np.full(rate * 3, 0.5, np.float32), rate, "FLOAT")
    record = render_to(tmp_path, task(tmp_path, "a/offset.wav"))
    assert (record["status"], record["reason"]) == ("rejected", "silent")
    assert record["detail"].startswith("a constant offset of 0.5 and no signal around it")


def test_level_over_blocks_matches_the_whole_signal():
    rng = np.random.default_rng(0)
    samples = (0.3 + 0.01 * rng.standard_normal((10_000, 2))).astype(np.float32)
    level = audio.Level()
    for start in range(0, len(samples), 777):
        level.add(samples[start:start + 777])
    rms, offset = level.rms_without_offset()
    centred = samples.astype(np.float64) - samples.mean(axis=0, dtype=np.float64)
    assert rms == pytest.approx(float(np.sqrt(np.mean(centred ** 2))), rel=1e-6)
    assert offset == pytest.approx(float(np.abs(samples.mean(axis=0, dtype=np.float64)).max()), rel=1e-9)
    assert audio.Level().rms_without_offset() == (0.0, 0.0)


def test_level_of_blocks_with_infinite_samples_warns_nothing():
    """The checks name NaN and infinite samples (non_finite); merging such blocks leaked a RuntimeWarning."""
    import warnings

    block = np.zeros((10, 2), np.float32)
    block[3, 1] = np.inf
    level = audio.Level()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        level.add(block)
        level.add(block)
    assert level.count == 20


def test_libsndfile_messages_name_a_file_as_text(tmp_path):
    """Paths go to libsndfile as bytes only when the name is not UTF-8, so its messages read as the name."""
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x02\x00\x00\x00\x01\x00data\x00\x00\x00\x00")
    with pytest.raises(soundfile.LibsndfileError) as caught:
        read_audio(broken)
    assert f"'{broken}'" in str(caught.value) and "b'" not in str(caught.value)

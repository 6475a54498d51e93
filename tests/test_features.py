import librosa
import numpy as np
import pytest

from musicid.features import RunningBandStats, logmel, n_frames
from tests.conftest import section_params

SAMPLE_RATE = 16000


def feature_params(**overrides):
    return section_params("features", **{"n_fft": 1024, "hop_length": 512, "n_mels": 64, "fmin": 30.0,
                                         "fmax": 8000.0, "floor_db": -100.0, "top_db": None, **overrides})


CONFIG = feature_params()


def test_logmel_matches_librosa():
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    clips = np.stack([
        0.3 * np.sin(2 * np.pi * 440 * t),
        0.1 * rng.standard_normal(len(t)),
        np.concatenate([np.zeros(len(t) // 2), 0.5 * np.sin(2 * np.pi * 3000 * t[: len(t) // 2])]),
    ]).astype(np.float32)
    ours = logmel(clips, CONFIG, SAMPLE_RATE)
    assert ours.shape == (3, 64, n_frames(len(t), 512)) and ours.dtype == np.float32
    for clip, values in zip(clips, ours):
        mel = librosa.feature.melspectrogram(y=clip, sr=16000, n_fft=1024, hop_length=512, n_mels=64,
                                             fmin=30.0, fmax=8000.0, power=2.0)
        reference = np.maximum(librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None), -100.0)
        assert reference.shape == values.shape
        assert np.max(np.abs(reference - values)) < 1e-3


def test_floor_applies():
    silent = np.zeros((1, 4096), np.float32)
    assert np.all(logmel(silent, CONFIG, SAMPLE_RATE) == -100.0)


def test_running_band_stats_match_numpy():
    rng = np.random.default_rng(1)
    batches = [rng.normal(3.0, 2.0, size=(n, 4, 7)).astype(np.float32) for n in (5, 0, 3)]
    stats = RunningBandStats(4)
    for batch in batches:
        stats.update(batch)
    mean, std = stats.result()
    everything = np.concatenate(batches)
    assert np.allclose(mean, everything.mean(axis=(0, 2)), atol=1e-5)
    assert np.allclose(std, everything.std(axis=(0, 2)), atol=1e-5)
    with pytest.raises(ValueError, match="no training rows"):
        RunningBandStats(4).result()


def test_mfcc_matches_librosa():
    from musicid.features import mfcc

    rng = np.random.default_rng(2)
    t = np.arange(16000) / 16000
    clips = np.stack([0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(len(t)),
                      0.2 * rng.standard_normal(len(t))]).astype(np.float32)
    # librosa.feature.mfcc takes power_to_db's default top_db=80 relative to each clip's maximum.
    config = feature_params(top_db=80.0, floor_db=-300.0, n_mfcc=20)
    ours = mfcc(clips, config, SAMPLE_RATE)
    assert ours.shape == (2, 20, n_frames(16000, 512))
    for clip, values in zip(clips, ours):
        reference = librosa.feature.mfcc(y=clip, sr=16000, n_mfcc=20, n_fft=1024, hop_length=512, n_mels=64,
                                         fmin=30.0, fmax=8000.0)
        assert np.max(np.abs(reference - values)) < 1e-3


def test_top_db_is_relative_to_each_clip():
    t = np.arange(8000) / 16000
    loud = 0.5 * np.sin(2 * np.pi * 440 * t)
    clips = np.stack([loud, loud * 1e-3]).astype(np.float32)
    values = logmel(clips, feature_params(top_db=40.0, floor_db=-300.0), SAMPLE_RATE)
    for clip in values:
        assert clip.max() - clip.min() == pytest.approx(40.0, abs=1e-3)
    assert values[0].max() - values[1].max() == pytest.approx(60.0, abs=0.01)


@pytest.mark.parametrize("kind", ["logmel", "mfcc"])
def test_numbers_do_not_depend_on_batch_or_threads(kind):
    from musicid.features import compute_features

    rng = np.random.default_rng(3)
    clips = (0.2 * rng.standard_normal((33, 8000))).astype(np.float32)  # an odd count: a short last chunk
    config = feature_params(kind=kind, n_mfcc=13)
    together = compute_features(clips, config, SAMPLE_RATE, threads=1)
    assert together.shape == (33, 13 if kind == "mfcc" else 64, n_frames(8000, 512))
    for _ in range(3):  # threads sharing buffers would show as differences here
        assert np.array_equal(compute_features(clips, config, SAMPLE_RATE, threads=4), together)
    alone = np.concatenate([compute_features(clips[i:i + 1], config, SAMPLE_RATE, threads=1) for i in range(33)])
    assert np.array_equal(alone, together)


C1 = 32.703  # Hz: the lowest bin of a note-aligned constant-Q transform (MIDI 24)


def test_cqt_is_librosas_in_decibels_and_a_440_hz_tone_peaks_in_the_a4_bin():
    from musicid.features import compute_features

    clips = np.stack([0.3 * np.sin(2 * np.pi * 440.0 * np.arange(32000) / 16000),
                      np.zeros(32000)]).astype(np.float32)
    for bins_per_octave, a4 in ((12, 45), (24, 90)):  # A4 is MIDI 69, 45 semitones above C1
        config = feature_params(kind="cqt", fmin=C1, bins_per_octave=bins_per_octave,
                                n_bins=7 * bins_per_octave)
        values = compute_features(clips, config, SAMPLE_RATE)
        assert values.shape == (2, 7 * bins_per_octave, n_frames(32000, 512)) and values.dtype == np.float32
        assert set(values[:, :, 10:-10].argmax(axis=1)[0]) == {a4}
        assert np.all(values[1] == -100.0)  # silence sits on the floor
        reference = librosa.amplitude_to_db(np.abs(librosa.cqt(clips[0], sr=SAMPLE_RATE, hop_length=512, fmin=C1,
                                                               n_bins=7 * bins_per_octave,
                                                               bins_per_octave=bins_per_octave)),
                                            ref=1.0, amin=1e-5, top_db=None)
        assert np.max(np.abs(np.maximum(reference, -100.0) - values[0])) < 1e-3


def test_chroma_is_librosas_and_a_440_hz_tone_is_pitch_class_a():
    from musicid.features import compute_features

    clips = np.stack([0.3 * np.sin(2 * np.pi * 440.0 * np.arange(32000) / 16000),
                      0.3 * np.sin(2 * np.pi * 261.63 * np.arange(32000) / 16000)]).astype(np.float32)
    config = feature_params(kind="chroma", fmin=C1, bins_per_octave=36, n_bins=252)
    values = compute_features(clips, config, SAMPLE_RATE)
    assert values.shape == (2, 12, n_frames(32000, 512)) and values.dtype == np.float32
    assert set(values[0, :, 10:-10].argmax(axis=0)) == {9} and set(values[1, :, 10:-10].argmax(axis=0)) == {0}
    assert values.max() == 1.0 and values.min() >= 0.0
    reference = librosa.feature.chroma_cqt(y=clips[0], sr=SAMPLE_RATE, hop_length=512, fmin=C1, n_octaves=7,
                                           bins_per_octave=36, tuning=0.0)
    assert np.max(np.abs(reference - values[0])) < 1e-5


@pytest.mark.parametrize("kind", ["cqt", "chroma"])
def test_pitch_features_do_not_depend_on_batch_or_threads(kind):
    from musicid.features import compute_features

    rng = np.random.default_rng(4)
    clips = (0.2 * rng.standard_normal((37, 8000))).astype(np.float32)  # 16 + 16 + 5: a short last chunk
    config = feature_params(kind=kind, fmin=C1, n_bins=84, bins_per_octave=12)
    together = compute_features(clips, config, SAMPLE_RATE, threads=1)
    assert together.shape == (37, 84 if kind == "cqt" else 12, n_frames(8000, 512))
    assert compute_features(clips, config, SAMPLE_RATE, threads=2).tobytes() == together.tobytes()
    alone = np.concatenate([compute_features(clips[i:i + 1], config, SAMPLE_RATE) for i in range(37)])
    assert alone.tobytes() == together.tobytes()


@pytest.mark.parametrize("overrides, message", [
    ({"bins_per_octave": 18}, r"features\.bins_per_octave must be a multiple of 12 \(12, 24, 36, \.\.\.\), got 18"),
    ({"bins_per_octave": 0}, r"features\.bins_per_octave must be > 0, got 0"),
    ({"kind": "cqt", "fmin": 0.0}, r"features\.fmin must be > 0 for features\.kind cqt \(the lowest constant-Q"),
    ({"kind": "chroma", "fmin": C1, "n_bins": 23, "bins_per_octave": 24},
     r"features\.n_bins must be at least one octave \(features\.bins_per_octave = 24\) for features\.kind "
     r"chroma, got 23"),
    ({"n_bins": 0}, r"features\.n_bins must be > 0, got 0"),
])
def test_bad_constant_q_params_are_named(overrides, message):
    from musicid.params import ParamsError

    with pytest.raises(ParamsError, match=message):
        feature_params(**overrides)


def test_constant_q_cutoff_is_librosas_nyquist_limit():
    from musicid.features import constant_q_cutoff

    config = feature_params(kind="cqt", fmin=C1, n_bins=84, bins_per_octave=12)
    cutoff = constant_q_cutoff(config)
    assert 3951.0 < cutoff < 4200.0  # B7's centre and half its bandwidth
    clip = np.zeros(8000, np.float32)
    librosa.cqt(clip, sr=int(2 * cutoff) + 2, hop_length=512, fmin=C1, n_bins=84)  # just above: allowed
    with pytest.raises(librosa.ParameterError, match="Nyquist"):
        librosa.cqt(clip, sr=int(2 * cutoff) - 2, hop_length=512, fmin=C1, n_bins=84)

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

import numpy as np
import pytest

from musicid.clips import (assign_splits, clip_starts, clip_track, cut_clips, evenly_spaced,
                           expected_clip_count, load_mono)
from tests.conftest import sine, write_wav


def test_splits_are_per_track_stratified_and_seeded():
    tracks = {f"{label}/{i:02d}": label for label in ("a", "b") for i in range(20)}
    tracks.update({f"c/{i}": "c" for i in range(3)})
    splits = assign_splits(tracks, val=0.15, test=0.2, seed=0)
    assert set(splits) == set(tracks)
    for label, n_test, n_val in (("a", 4, 3), ("b", 4, 3), ("c", 1, 1)):
        chosen = [splits[t] for t, l in tracks.items() if l == label]
        assert chosen.count("test") == n_test
        assert chosen.count("val") == n_val
        assert chosen.count("train") == len(chosen) - n_test - n_val
    assert splits == assign_splits(dict(reversed(list(tracks.items()))), 0.15, 0.2, 0)
    assert splits != assign_splits(tracks, 0.15, 0.2, 1)


def test_a_class_with_fewer_than_three_tracks_stays_in_train():
    assert assign_splits({"x/1": "x", "x/2": "x"}, 0.1, 0.1, 0) == {"x/1": "train", "x/2": "train"}


def test_clip_starts_exact():
    assert clip_starts(10, 4, 4).tolist() == [0, 4]
    assert clip_starts(12, 4, 4).tolist() == [0, 4, 8]
    assert clip_starts(12, 4, 2).tolist() == [0, 2, 4, 6, 8]
    assert clip_starts(3, 4, 4).tolist() == []
    assert expected_clip_count(10.5, 4.0, 2.0) == 4


def test_evenly_spaced():
    assert evenly_spaced(10, 0).tolist() == list(range(10))
    assert evenly_spaced(10, 3).tolist() == [0, 4, 9]
    assert evenly_spaced(2, 5).tolist() == [0, 1]


def test_cut_clips_counts_offsets_and_silence():
    sr = 100
    mono = np.concatenate([np.full(300, 0.5, np.float32), np.zeros(100, np.float32),
                           np.full(100, 0.5, np.float32)])  # 5.0 s
    clips, offsets, silent = cut_clips(mono, sr, clip_seconds=1.0, hop_seconds=1.0, max_clips=0, min_rms=0.1)
    # Clips start at 0..4 s; the one at 3 s is all zeros and is skipped.
    assert offsets.tolist() == [0.0, 1.0, 2.0, 4.0]
    assert silent == 1
    assert clips.shape == (4, 100) and clips.dtype == np.float32
    assert np.array_equal(clips[2], mono[200:300])
    clips, offsets, _ = cut_clips(mono, sr, 1.0, 0.5, max_clips=3, min_rms=0.0)
    assert offsets.tolist() == [0.0, 2.0, 4.0]


def test_wav_of_known_length_gives_exact_clips(tmp_path):
    path = write_wav(tmp_path / "t.wav", sine(220, 10.0, 16000), 16000)
    clips, offsets, index, silent = clip_track(([str(path)], 16000, 4.0, 3.0, 0, 0.001))
    assert clips.shape == (3, 64000)
    assert offsets.tolist() == [0.0, 3.0, 6.0]
    assert index.tolist() == [0, 0, 0] and silent == 0


def test_resampling_keeps_a_sine_frequency(tmp_path):
    path = write_wav(tmp_path / "t.wav", sine(1000.0, 2.0, 44100), 44100)
    mono = load_mono(path, 16000)
    assert len(mono) == 32000
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    peak_hz = np.argmax(spectrum) * 16000 / len(mono)
    assert peak_hz == pytest.approx(1000.0, abs=1.0)


def test_stereo_is_mixed_down(tmp_path):
    left, right = sine(440, 1.0, 8000), np.zeros(8000, np.float32)
    path = write_wav(tmp_path / "s.wav", np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    assert np.allclose(load_mono(path, 8000), left / 2, atol=1e-6)

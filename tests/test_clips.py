import numpy as np
import pytest

from musicid.clips import (ClipSpec, ClipTask, assign_splits, clip_starts, clip_track, cut_clips, evenly_spaced,
                           expected_clip_count, load_mono, normalize_loudness, per_track_cap, silent_fraction)
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


def test_holdout_classes_go_to_test_only():
    tracks = {f"{label}/{i:02d}": label for label in ("a", "b", "c") for i in range(10)}
    splits = assign_splits(tracks, 0.2, 0.2, 0, holdout_classes=["c"])
    assert {splits[t] for t in tracks if t.startswith("c/")} == {"test"}
    # The other classes are split exactly as without a holdout.
    plain = assign_splits(tracks, 0.2, 0.2, 0)
    assert all(splits[t] == plain[t] for t in tracks if not t.startswith("c/"))


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
    sr = 100  # 5 samples per 50 ms silence frame
    mono = np.concatenate([np.full(300, 0.5, np.float32), np.zeros(100, np.float32),
                           np.full(100, 0.5, np.float32)])  # 5.0 s
    spec = ClipSpec(sr, 1.0, 1.0, min_rms=0.1, max_silence=0.5)
    clips, offsets, silent = cut_clips(mono, spec, max_clips=0)
    # Clips start at 0..4 s; the one at 3 s is all zeros and is skipped.
    assert offsets.tolist() == [0.0, 1.0, 2.0, 4.0]
    assert silent == 1
    assert clips.shape == (4, 100) and clips.dtype == np.float32
    assert np.array_equal(clips[2], mono[200:300])
    # With a 0.5 s hop, the clip at 2.5 s is half silence (kept), the one at 3.0 s all (skipped).
    clips, offsets, silent = cut_clips(mono, ClipSpec(sr, 1.0, 0.5, min_rms=0.1, max_silence=0.5), 0)
    assert offsets.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.5, 4.0]
    assert silent == 1
    clips, offsets, _ = cut_clips(mono, ClipSpec(sr, 1.0, 0.5, min_rms=0.0, max_silence=1.0), max_clips=3)
    assert offsets.tolist() == [0.0, 2.0, 4.0]


def test_silent_fraction():
    clips = np.zeros((2, 10), np.float32)
    clips[1, :5] = 1.0
    assert silent_fraction(clips, 5, 0.5).tolist() == [1.0, 0.5]


def test_normalize_loudness():
    clips = np.array([[0.1, -0.2, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    peak = normalize_loudness(clips, "peak", -6.0)
    assert np.abs(peak[0]).max() == pytest.approx(10 ** (-6 / 20), rel=1e-6)
    assert np.array_equal(peak[1], clips[1])  # silence stays silence
    rms = normalize_loudness(clips, "rms", -20.0)
    assert np.sqrt(np.mean(rms[0].astype(np.float64) ** 2)) == pytest.approx(0.1, rel=1e-5)
    assert normalize_loudness(clips, "none", -20.0) is clips
    loud = normalize_loudness(np.array([[1.0, 0.0, 0.0, 0.0]], np.float32), "rms", 0.0)
    assert loud.max() == 1.0  # clipped to full scale


def test_per_track_cap():
    assert per_track_cap(16, 0, 10) == 16
    assert per_track_cap(0, 0, 10) == 0
    assert per_track_cap(16, 100, 10) == 10
    assert per_track_cap(5, 100, 10) == 5
    assert per_track_cap(0, 5, 10) == 1  # every track keeps at least one clip


def test_wav_of_known_length_gives_exact_clips(tmp_path):
    path = write_wav(tmp_path / "t.wav", sine(220, 10.0, 16000), 16000)
    clips, offsets, index, silent = clip_track(ClipTask((str(path),), ClipSpec(16000, 4.0, 3.0), 0))
    assert clips.shape == (3, 64000)
    assert offsets.tolist() == [0.0, 3.0, 6.0]
    assert index.tolist() == [0, 0, 0] and silent == 0


def test_renders_of_one_track_share_the_cap(tmp_path):
    one = write_wav(tmp_path / "one.wav", sine(220, 10.0, 8000), 8000)
    two = write_wav(tmp_path / "two.wav", sine(330, 10.0, 8000), 8000)
    clips, offsets, index, _ = clip_track(ClipTask((str(one), str(two)), ClipSpec(8000, 1.0, 1.0), 4))
    assert index.tolist() == [0, 0, 1, 1]
    assert offsets.tolist() == [0.0, 9.0, 0.0, 9.0]


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

import numpy as np
import pytest

from musicid.clips import (ClipTask, DamagedAudio, assign_folds, assign_splits, clip_starts, clip_track, cut_clips,
                           evenly_spaced, expected_clip_count, load_mono, normalize_loudness, normalize_track, track_caps,
                           silent_fraction, split_sizes, split_units, too_small_classes, track_level, tracks_needed,
                           wav_damage)
from tests.conftest import section_params, sine, write_wav


def clip_params(sample_rate, clip_seconds, hop_seconds, **overrides):
    return section_params("clip", sample_rate=sample_rate, clip_seconds=clip_seconds, hop_seconds=hop_seconds,
                          **{"normalize": "none", **overrides})


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


def test_a_stable_order_moves_few_tracks_when_a_collection_grows():
    """split.order stable: each track placed by its own hash, so a track added to a class moves at most one other
    across each of its boundaries (test | val | train: two at the default fractions), and no track of another
    class; the shuffle's one
    permutation of the class moves many (8.9 on average here, up to 24; stable 0.7). The sizes are the same either way."""
    def collection(count, added=False):  # class a's files every other number, one more between them; b stays
        a = [f"a/{i:03d}.mid" for i in range(0, 2 * count, 2)] + ([f"a/{count | 1:03d}.mid"] if added else [])
        return {**dict.fromkeys(a, "a"), **{f"b/{i:03d}.mid": "b" for i in range(25)}}

    def sizes(splits):
        return sorted((track[0], split) for track, split in splits.items())

    moved = {"stable": [], "shuffle": []}
    for count in range(20, 60):
        for order in moved:
            before = assign_splits(collection(count), 0.15, 0.2, 0, order=order)
            after = assign_splits(collection(count, added=True), 0.15, 0.2, 0, order=order)
            assert all(before[t] == after[t] for t in before if t.startswith("b/"))
            moved[order].append(sum(before[t] != after[t] for t in before))
            assert sizes(after) == sizes(assign_splits(collection(count, added=True), 0.15, 0.2, 0))
    assert max(moved["stable"]) <= 2 and sum(moved["shuffle"]) > 5 * sum(moved["stable"])
    stable = assign_splits(collection(30), 0.15, 0.2, 0, order="stable")
    assert stable == assign_splits(dict(reversed(list(collection(30).items()))), 0.15, 0.2, 0, order="stable")
    assert stable != assign_splits(collection(30), 0.15, 0.2, 1, order="stable")  # seeded
    assert stable != assign_splits(collection(30), 0.15, 0.2, 0)  # another order than the shuffle's
    folds = assign_folds(collection(30), 5, 0, order="stable")  # stratified as the shuffle's deal
    assert [np.bincount([f for t, f in folds.items() if t[0] == label]).tolist() for label in "ab"] == \
        [[6] * 5, [5] * 5]


def test_holdout_classes_go_to_test_only():
    tracks = {f"{label}/{i:02d}": label for label in ("a", "b", "c") for i in range(10)}
    splits = assign_splits(tracks, 0.2, 0.2, 0, holdout_classes=["c"])
    assert {splits[t] for t in tracks if t.startswith("c/")} == {"test"}
    # The other classes are split exactly as without a holdout.
    plain = assign_splits(tracks, 0.2, 0.2, 0)
    assert all(splits[t] == plain[t] for t in tracks if not t.startswith("c/"))


def test_a_class_with_fewer_tracks_than_the_split_needs_is_named_and_refused():
    tracks = {"x/1": "x", "x/2": "x", "y/1": "y", "h/1": "h", **{f"z/{i}": "z" for i in range(3)}}
    assert too_small_classes(tracks, 0.1, 0.1, holdout_classes=["h"]) == {
        "x": "2 rendered tracks; split.val 0.1 and split.test 0.1 need at least 3 (one for each split used)",
        "y": "1 rendered track; split.val 0.1 and split.test 0.1 need at least 3 (one for each split used)",
    }
    # Without a validation split, two tracks are enough.
    assert too_small_classes(tracks, 0.0, 0.1, holdout_classes=["h"]) == {
        "y": "1 rendered track; split.val 0 and split.test 0.1 need at least 2 (one for each split used)"}
    with pytest.raises(ValueError, match="2 tracks cannot be split"):
        assign_splits({"x/1": "x", "x/2": "x"}, 0.1, 0.1, 0)


def test_every_known_class_keeps_a_training_track():
    # 4 tracks at val = test = 0.4 round to 2 + 2: val gives one back.
    assert split_sizes(4, 0.4, 0.4) == (2, 1)
    assert split_sizes(3, 0.45, 0.45) == (1, 1)
    assert split_sizes(2, 0.0, 0.45) == (1, 0)
    assert split_sizes(20, 0.15, 0.2) == (4, 3)  # ordinary sizes are round(fraction * n)
    splits = assign_splits({f"x/{i}": "x" for i in range(4)}, 0.4, 0.4, 0)
    assert sorted(splits.values()) == ["test", "test", "train", "val"]


def test_the_split_by_fractions_is_the_one_it_always_was():
    # Pinned: folds 0 must give every existing project the very split it had before k-fold existed.
    tracks = {f"{label}/{i}": label for label in ("a", "b") for i in range(5)}
    tracks["h/0"] = "h"
    assert assign_splits(tracks, 0.2, 0.2, 7, ["h"]) == {
        "a/0": "train", "a/1": "test", "a/2": "val", "a/3": "train", "a/4": "train",
        "b/0": "val", "b/1": "train", "b/2": "train", "b/3": "train", "b/4": "test", "h/0": "test"}
    assert assign_splits(tracks, 0.2, 0.2, 7, ["h"], folds=0, fold=0) == assign_splits(tracks, 0.2, 0.2, 7, ["h"])


def _fold_tracks():
    """Known classes of 11, 7 and 5 tracks, and a held-out class of 3."""
    tracks = {f"a/{i:02d}": "a" for i in range(11)}
    tracks.update({f"b/{i}": "b" for i in range(7)})
    tracks.update({f"c/{i}": "c" for i in range(5)})
    tracks.update({f"h/{i}": "h" for i in range(3)})
    return tracks


def test_folds_are_stratified_and_every_track_is_tested_exactly_once():
    tracks = _fold_tracks()
    folds = assign_folds(tracks, 5, seed=0, holdout_classes=["h"])
    assert sorted(folds) == sorted(t for t, label in tracks.items() if label != "h")
    for label, sizes in (("a", [3, 2, 2, 2, 2]), ("b", [2, 2, 1, 1, 1]), ("c", [1, 1, 1, 1, 1])):
        per_fold = [sum(1 for t, f in folds.items() if f == k and tracks[t] == label) for k in range(5)]
        assert sorted(per_fold, reverse=True) == sizes, label
    # The deal goes on across the classes, so the folds are even overall: 23 tracks -> 5, 5, 5, 4, 4.
    assert sorted(np.bincount(list(folds.values())).tolist(), reverse=True) == [5, 5, 5, 4, 4]

    tested = {track: 0 for track in tracks}
    for fold in range(5):
        splits = assign_splits(tracks, 0.25, 0.2, 0, ["h"], folds=5, fold=fold)
        assert sorted(splits) == sorted(tracks)
        assert {t for t, s in splits.items() if s == "test" and tracks[t] != "h"} == \
            {t for t, f in folds.items() if f == fold}
        for track, split in splits.items():
            tested[track] += split == "test"
        for label in ("a", "b", "c"):
            chosen = [splits[t] for t in tracks if tracks[t] == label]
            rest = len(chosen) - chosen.count("test")
            # val is round(0.25 * the tracks outside the test fold), at least one; train keeps the rest.
            assert chosen.count("val") == max(round(0.25 * rest), 1), (label, fold)
            assert chosen.count("train") == rest - chosen.count("val") >= 1
    assert {t: n for t, n in tested.items() if tracks[t] != "h"} == {t: 1 for t in tracks if tracks[t] != "h"}
    assert all(tested[f"h/{i}"] == 5 for i in range(3))  # a held-out class is test in every fold


def test_folds_are_deterministic_and_seeded():
    tracks = _fold_tracks()
    reversed_tracks = dict(reversed(list(tracks.items())))
    for fold in range(3):
        splits = assign_splits(tracks, 0.2, 0.2, 0, folds=3, fold=fold)
        assert splits == assign_splits(reversed_tracks, 0.2, 0.2, 0, folds=3, fold=fold)
    assert assign_folds(tracks, 3, 0) == assign_folds(reversed_tracks, 3, 0)
    assert assign_folds(tracks, 3, 0) != assign_folds(tracks, 3, 1)
    # Without val, a track's split follows from its fold alone.
    folds = assign_folds(tracks, 4, 2, ["h"])
    splits = assign_splits(tracks, 0.0, 0.2, 2, ["h"], folds=4, fold=1)
    assert splits == {t: "test" if folds.get(t, 1) == 1 else "train" for t in sorted(tracks)}


def test_the_tracks_a_fold_split_needs():
    # A test track in every fold, and a train (and val) track beside the largest fold.
    assert tracks_needed(0.0, 0.2, 2) == 2
    assert tracks_needed(0.15, 0.2, 2) == 4  # 3 tracks: the fold of 2 leaves only one
    assert tracks_needed(0.15, 0.2, 3) == 3
    assert tracks_needed(0.15, 0.0, 5) == 5
    assert tracks_needed(0.15, 0.2, 0) == 3  # by fractions, as before
    tracks = {**{f"x/{i}": "x" for i in range(3)}, **{f"y/{i}": "y" for i in range(4)}, "h/0": "h"}
    assert too_small_classes(tracks, 0.15, 0.2, ["h"], folds=4) == {
        "x": "3 rendered tracks; split.folds 4 and split.val 0.15 need at least 4 (a test track in every fold, "
             "and a train and a val track beside the largest fold)"}
    assert too_small_classes(tracks, 0.0, 0.2, ["h"], folds=2) == {}
    assert too_small_classes(tracks, 0.1, 0.2, ["h"], folds=2) == {
        "x": "3 rendered tracks; split.folds 2 and split.val 0.1 need at least 4 (a test track in every fold, "
             "and a train and a val track beside the largest fold)"}
    with pytest.raises(ValueError, match="3 tracks of x cannot be split into 4 folds with val 0.15"):
        assign_splits(tracks, 0.15, 0.2, 0, ["h"], folds=4, fold=0)
    with pytest.raises(ValueError, match="at least 2 folds"):
        assign_folds(tracks, 1, 0)
    # The smallest class that passes: every fold has its test track, and train and val tracks beside it.
    small = {f"x/{i}": "x" for i in range(4)}
    for fold in range(2):
        assert sorted(assign_splits(small, 0.1, 0.2, 0, folds=2, fold=fold).values()) == \
            ["test", "test", "train", "val"]


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
    sr = 1000  # 50 samples per 50 ms silence frame
    mono = np.concatenate([np.full(3000, 0.5, np.float32), np.zeros(1000, np.float32),
                           np.full(1000, 0.5, np.float32)])  # 5.0 s
    clips, offsets, silent = cut_clips(mono, clip_params(sr, 1.0, 1.0, min_rms=0.1, max_silence=0.5), max_clips=0)
    # Clips start at 0..4 s; the one at 3 s is all zeros and is skipped.
    assert offsets.tolist() == [0.0, 1.0, 2.0, 4.0]
    assert silent == 1
    assert clips.shape == (4, 1000) and clips.dtype == np.float32
    assert np.array_equal(clips[2], mono[2000:3000])
    # With a 0.5 s hop, the clip at 2.5 s is half silence (kept), the one at 3.0 s all (skipped).
    clips, offsets, silent = cut_clips(mono, clip_params(sr, 1.0, 0.5, min_rms=0.1, max_silence=0.5), 0)
    assert offsets.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.5, 4.0]
    assert silent == 1
    clips, offsets, _ = cut_clips(mono, clip_params(sr, 1.0, 0.5, min_rms=0.0, max_silence=1.0), max_clips=3)
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


def caps(demands: dict[str, int], max_per_track: int, max_per_class: int, renders: int = 1) -> dict[str, int]:
    return track_caps(demands, {track: renders for track in demands}, max_per_track, max_per_class)


def clips_given(demands: dict[str, int], given: dict[str, int], renders: int = 1) -> int:
    """The clips the tracks give with these caps, each render cut as clip_track cuts it (cap // renders)."""
    return sum(renders * (want if not given[t] else min(want, max(1, given[t] // renders)))
               for t, want in demands.items())


def test_track_caps_share_the_class_cap_by_water_filling():
    assert caps({"a": 50, "b": 50}, 16, 0) == {"a": 16, "b": 16}
    assert caps({"a": 50, "b": 50}, 0, 0) == {"a": 0, "b": 0}
    assert caps({"a": 50, "b": 50}, 0, 200) == {"a": 0, "b": 0}  # the class cap is never reached
    assert caps({"a": 50, "b": 50}, 0, 40) == {"a": 20, "b": 20}
    assert caps({"a": 50, "b": 50}, 5, 40) == {"a": 5, "b": 5}
    assert caps({"a": 50, "b": 50}, 30, 40) == {"a": 20, "b": 20}
    assert caps({t: 9 for t in "abcdefghij"}, 0, 5) == {t: 1 for t in "abcdefghij"}  # at least one each
    # One 20-minute movement and three short pieces: the short ones give all they have, the long one the rest.
    shares = caps({"long": 300, "s1": 2, "s2": 3, "s3": 4}, 0, 20)
    assert shares == {track: 11 for track in shares}
    assert clips_given({"long": 300, "s1": 2, "s2": 3, "s3": 4}, shares) == 20
    # An equal level of 2 leaves 2 of 12 clips: they go to the first two tracks by name.
    assert caps({t: 5 for t in "edcba"}, 0, 12) == {"a": 3, "b": 3, "c": 2, "d": 2, "e": 2}
    # The track cap bounds the long one before the class cap is shared out.
    shares = caps({"long": 300, "s1": 2, "s2": 3, "s3": 4}, 8, 20)
    assert shares == {track: 8 for track in shares}


def test_track_caps_with_several_renders_a_track_spend_the_class_cap_exactly():
    """Two SoundFonts: each track's clips are shared by its two renders, so its cap is counted in pairs."""
    demands = {"a": 200, "b": 200, "c": 200}  # clips a render can give
    shares = caps(demands, 0, 10, renders=2)
    assert shares == {"a": 4, "b": 4, "c": 2} and clips_given(demands, shares, renders=2) == 10
    assert caps(demands, 0, 5, renders=2) == {"a": 2, "b": 2, "c": 2}  # one clip a render at the least
    shares = caps({"a": 200, "b": 3}, 0, 20, renders=2)  # b's renders give 3 each: 6 in all, a the other 14
    assert clips_given({"a": 200, "b": 3}, shares, renders=2) == 20 and shares["a"] == 14
    # A MIDI track rendered twice beside an audio track of one render.
    shares = track_caps({"midi": 100, "audio": 100}, {"midi": 2, "audio": 1}, 0, 12)
    assert 2 * min(100, shares["midi"] // 2) + min(100, shares["audio"]) == 12


def test_wav_of_known_length_gives_exact_clips(tmp_path):
    path = write_wav(tmp_path / "t.wav", sine(220, 10.0, 16000), 16000)
    clips, offsets, index, silent = clip_track(ClipTask.read((str(path),), clip_params(16000, 4.0, 3.0), 0))
    assert clips.shape == (3, 64000)
    assert offsets.tolist() == [0.0, 3.0, 6.0]
    assert index.tolist() == [0, 0, 0] and silent == 0


def test_renders_of_one_track_share_the_cap(tmp_path):
    one = write_wav(tmp_path / "one.wav", sine(220, 10.0, 8000), 8000)
    two = write_wav(tmp_path / "two.wav", sine(330, 10.0, 8000), 8000)
    clips, offsets, index, _ = clip_track(ClipTask.read((str(one), str(two)), clip_params(8000, 1.0, 1.0), 4))
    assert index.tolist() == [0, 0, 1, 1]
    assert offsets.tolist() == [0.0, 9.0, 0.0, 9.0]
    # A local worker reads the WAVs itself (ClipTask.at): the same clips; a missing one is named as before.
    by_path = clip_track(ClipTask.at((str(one), str(two)), clip_params(8000, 1.0, 1.0), 4))
    assert all(np.array_equal(a, b) for a, b in zip(by_path, (clips, offsets, index)))
    with pytest.raises(DamagedAudio) as caught:
        clip_track(ClipTask.at((str(tmp_path / "gone.wav"),), clip_params(8000, 1.0, 1.0), 0))
    assert (caught.value.path, caught.value.reason) == (str(tmp_path / "gone.wav"), "missing")


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


def test_a_damaged_wav_is_named_with_its_reason(tmp_path):
    whole = write_wav(tmp_path / "whole.wav", sine(220, 1.0, 8000), 8000)
    assert wav_damage(whole) is None
    assert wav_damage(tmp_path / "gone.wav") == "missing"
    (tmp_path / "cut.wav").write_bytes(whole.read_bytes()[:5000])
    assert wav_damage(tmp_path / "cut.wav") == "truncated (its data chunk declares 16000 bytes, 4956 are present)"
    (tmp_path / "noise.wav").write_bytes(b"not audio at all" * 10)
    assert wav_damage(tmp_path / "noise.wav") == "not a WAV file (no RIFF/WAVE header)"
    (tmp_path / "header.wav").write_bytes(whole.read_bytes()[:36])
    assert wav_damage(tmp_path / "header.wav") == "truncated (no data chunk)"
    with pytest.raises(DamagedAudio) as caught:
        clip_track(ClipTask.read((str(whole), str(tmp_path / "cut.wav")), clip_params(8000, 0.5, 0.5), 0))
    assert caught.value.path == str(tmp_path / "cut.wav") and caught.value.reason.startswith("truncated")


def test_a_wav_libsndfile_cannot_decode_is_damaged(tmp_path):
    whole = write_wav(tmp_path / "whole.wav", sine(220, 1.0, 8000), 8000).read_bytes()
    # A whole data chunk behind a format chunk that names no format libsndfile knows.
    (tmp_path / "format.wav").write_bytes(whole[:20] + b"\x99\x99" + whole[22:])
    assert wav_damage(tmp_path / "format.wav") is None
    with pytest.raises(DamagedAudio) as caught:
        clip_track(ClipTask.read((str(tmp_path / "format.wav"),), clip_params(8000, 0.5, 0.5), 0))
    assert caught.value.reason.startswith("unreadable (")


def test_track_normalisation_makes_the_clips_independent_of_the_level():
    rng = np.random.default_rng(0)
    sample_rate = 8000
    # 3 s of noise at varied loudness, then 1 s of silence, then 2 s of a quiet tone.
    t = np.arange(2 * sample_rate) / sample_rate
    mono = np.concatenate([rng.normal(0, 0.2, 3 * sample_rate) * np.linspace(0.2, 1, 3 * sample_rate),
                           np.zeros(sample_rate), 0.01 * np.sin(2 * np.pi * 440 * t)]).astype(np.float32)
    params = clip_params(sample_rate=sample_rate, clip_seconds=1.0, hop_seconds=1.0, normalize="track",
                         target_db=-20.0, min_rms=0.001, max_silence=0.5, max_clips_per_track=0)
    reference, offsets, silent = cut_clips(mono, params, max_clips=0)
    assert offsets.tolist() == [0.0, 1.0, 2.0, 4.0, 5.0] and silent == 1
    for gain in (0.5, 0.25, 0.1, 4.0):
        clips, scaled_offsets, _ = cut_clips(mono * np.float32(gain), params, max_clips=0)
        assert np.array_equal(scaled_offsets, offsets)  # the same clips are silent at every level
        assert np.allclose(clips, reference, rtol=1e-5, atol=1e-7)
    frame = int(0.05 * sample_rate)
    assert track_level(normalize_track(mono, frame, -20.0), frame) == pytest.approx(0.1, rel=1e-6)
    assert track_level(np.zeros(100, np.float32), frame) == 0.0
    # Frames more than 40 dB below the loudest (silence, tails) do not pull the level down.
    loud_and_tail = np.concatenate([np.full(frame * 4, 0.5), np.full(frame * 40, 0.001)]).astype(np.float32)
    assert track_level(loud_and_tail, frame) == pytest.approx(0.5)
    # Without it, a tenth of the level turns the quiet tone into silence.
    quiet = cut_clips(mono * np.float32(0.1), clip_params(sample_rate=sample_rate, clip_seconds=1.0,
                      hop_seconds=1.0, normalize="none", min_rms=0.001, max_clips_per_track=0), max_clips=0)
    assert quiet[1].tolist() == [0.0, 1.0, 2.0]


def test_a_track_quieter_than_a_silent_frame_is_not_scaled_up_into_music():
    """Hiss at -70 dBFS (or what resampling leaves of ultrasonic content) is silence, not a track to lift
    by 50 dB; a quiet recording (its sounding part at -50 dBFS) is still scaled to target_db."""
    rng = np.random.default_rng(0)
    sample_rate = 8000
    params = clip_params(sample_rate=sample_rate, clip_seconds=1.0, hop_seconds=1.0, normalize="track",
                         target_db=-20.0, min_rms=0.001, max_silence=0.5, max_clips_per_track=0)
    hiss = rng.normal(0, 10 ** (-70 / 20), 4 * sample_rate).astype(np.float32)
    clips, offsets, silent = cut_clips(hiss, params, max_clips=0)
    assert len(clips) == 0 and silent == 4
    t = np.arange(4 * sample_rate) / sample_rate
    quiet = (10 ** (-50 / 20) * np.sqrt(2) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    clips, offsets, silent = cut_clips(quiet, params, max_clips=0)
    assert offsets.tolist() == [0.0, 1.0, 2.0, 3.0] and silent == 0
    assert np.sqrt(np.mean(np.square(clips, dtype=np.float64))) == pytest.approx(0.1, rel=1e-3)
    # Just below: no clip at all, not one louder clip kept at its own level, 40 dB under every other clip.
    uneven = np.concatenate([np.full(sample_rate, 0.0015), np.full(3 * sample_rate, 0.0005)]).astype(np.float32)
    uneven *= np.where(np.arange(len(uneven)) % 2, 1, -1).astype(np.float32)
    assert track_level(uneven, int(0.05 * sample_rate)) < 0.001
    clips, offsets, silent = cut_clips(uneven, params, max_clips=0)
    assert len(clips) == 0 and silent == 4


def test_level_measures_in_blocks_equal_one_pass(monkeypatch):
    """frame_rms and silent_fraction square a long track a block at a time: the values are the same."""
    from musicid import clips as module

    rng = np.random.default_rng(0)
    mono = (rng.standard_normal(8000 * 30) * 0.1).astype(np.float32)
    mono[8000 * 5: 8000 * 9] = 0.0  # a silent stretch
    windows = np.lib.stride_tricks.sliding_window_view(mono, 8000 * 4)[::8000 * 2]
    monkeypatch.setattr(module, "BLOCK_SAMPLES", 1 << 40)  # one pass
    whole = module.frame_rms(mono, 400), module.silent_fraction(windows, 400, 0.01)
    monkeypatch.setattr(module, "BLOCK_SAMPLES", 1000)  # a few frames, one clip a block
    blocked = module.frame_rms(mono, 400), module.silent_fraction(windows, 400, 0.01)
    assert np.array_equal(whole[0], blocked[0]) and np.array_equal(whole[1], blocked[1])
    assert whole[1].max() > 0.5  # the silent stretch is measured


def test_the_versions_of_a_work_are_one_unit_whatever_split_group():
    """Tracks whose records name one work (download's versions_of_works) are dealt as one, with their folders'
    units when split.group deals folders; the unit is named by the first name among them."""
    tracks = {"a/x.wav": {"label": "a", "work": "a/x.mid"}, "a/y.wav": {"label": "a"},
              "a/z_old.wav": {"label": "a", "work": "a/x.mid", "folder": "old"},
              "a/w.wav": {"label": "a", "folder": "old"}, "b/x.wav": {"label": "b", "work": "b/x.mid"},
              "b/v.wav": {"label": "b", "work": "b/x.mid"}}
    assert split_units(tracks, "track") == {"a/x.wav": "a/x.wav", "a/y.wav": "a/y.wav", "a/z_old.wav": "a/x.wav",
                                            "a/w.wav": "a/w.wav", "b/x.wav": "b/v.wav", "b/v.wav": "b/v.wav"}
    # By folder, the work joins old/'s unit: x, z_old and w are one.
    assert split_units(tracks, "folder") == {"a/x.wav": "a/old/", "a/y.wav": "a/y.wav", "a/z_old.wav": "a/old/",
                                             "a/w.wav": "a/old/", "b/x.wav": "b/v.wav", "b/v.wav": "b/v.wav"}
    without = {track: {k: v for k, v in record.items() if k != "work"} for track, record in tracks.items()}
    assert split_units(without, "track") == {track: track for track in tracks}

"""The clip and featurize stages on a tiny rendered collection made by the test."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter

import h5py
import numpy as np
import pytest
import yaml

from musicid.h5 import RowWriter, clip_columns, read_strings
from musicid.stage import AFTER_STOP
from tests.conftest import PROJECT_ROOT, load_stage, sine, write_midi, write_wav

CLIP = load_stage("clip")
FEATURIZE = load_stage("featurize")


@pytest.fixture
def audio(tmp_path, monkeypatch):
    """data/audio with 3 labels x 6 tracks of 5 s tones, plus a silent track, and report.json."""
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    root = tmp_path / "audio"
    files = []
    for label, base in (("a", 220.0), ("b", 330.0), ("c", 495.0)):
        for i in range(6):
            name = f"{label}/t{i}.wav"
            write_wav(root / name, sine(base * (1 + i / 12), 5.0, 8000, amplitude=0.3), 8000)
            files.append({"source": f"{label}/t{i}.mid", "label": label, "status": "rendered",
                          "reason": None, "duration_s": 5.0, "outputs": [name]})
    write_wav(root / "a/quiet.wav", np.zeros(5 * 8000, np.float32), 8000)
    files.append({"source": "a/quiet.mid", "label": "a", "status": "rendered", "reason": None,
                  "duration_s": 5.0, "outputs": ["a/quiet.wav"]})
    files.append({"source": "b/bad.mid", "label": "b", "status": "rejected", "reason": "no_notes",
                  "duration_s": None, "outputs": []})
    (root / "report.json").write_text(json.dumps({"files": sorted(files, key=lambda r: r["source"])}))
    return root


def write_params(tmp_path, clip=None, split=None, features=None):
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["clip"].update({"sample_rate": 8000, "clip_seconds": 1.0, "hop_seconds": 1.0, **(clip or {})})
    params["split"].update({"val": 0.2, "test": 0.2, **(split or {})})
    # The tone tracks have no MIDI sources to read notes from: symbolic features only where a test asks.
    params["features"].update({"n_mels": 32, "n_fft": 512, "hop_length": 256, "fmax": 4000.0,
                               "batch_size": 7, "symbolic": False, **(features or {})})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path / "params.yaml"


def run_clip(tmp_path, audio, name="clips", **params):
    path = write_params(tmp_path, **params)
    code = CLIP.main(["--params", str(path), "--audio", str(audio), "--out", str(tmp_path / f"{name}.h5"),
                      "--report", str(tmp_path / f"{name}.json"), "--jobs", "2"])
    return code, tmp_path / f"{name}.h5"


def run_featurize(tmp_path, clips, name="features", **params):
    path = write_params(tmp_path, **params)
    code = FEATURIZE.main(["--params", str(path), "--clips", str(clips), "--out", str(tmp_path / f"{name}.h5")])
    return code, tmp_path / f"{name}.h5"


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_clips_table(tmp_path, audio):
    code, clips = run_clip(tmp_path, audio, split={"holdout_classes": ["c"]})
    assert code == 0
    with h5py.File(clips, "r") as table:
        assert list(table.attrs["label_names"]) == ["a", "b", "c"]
        assert table.attrs["n_known"] == 2 and list(table.attrs["holdout_classes"]) == ["c"]
        assert table["audio"].shape == (18 * 5, 8000)  # 18 tone tracks x 5 clips; the silent one gives none
        assert table["audio"].chunks[1] == 8000 and table["audio"].compression is None  # see RowWriter
        assert table["track"].compression == "gzip"
        tracks, splits = read_strings(table["track"]), read_strings(table["split"])
        labels, known = table["label"][:], table["known"][:]
        assert table["offset_s"][:5].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    for track in set(tracks):
        assert len(set(splits[tracks == track])) == 1, track
    assert set(splits[labels == 2]) == {"test"} and not known[labels == 2].any()
    assert known[labels < 2].all()
    # 6 tracks per known class: 1 val, 1 test (round(0.2 * 6) = 1), 4 train; the silent track is a's.
    report = json.loads((tmp_path / "clips.json").read_text())
    assert report["counts"]["b"] == {"train": {"tracks": 4, "clips": 20}, "val": {"tracks": 1, "clips": 5},
                                     "test": {"tracks": 1, "clips": 5}}
    assert report["counts"]["c"]["test"] == {"tracks": 6, "clips": 30}
    assert report["silent_clips_skipped"] == 5 and report["clips"] == 90
    assert report["dropped_tracks"] == {"a/quiet.mid": "silent"} and report["excluded_classes"] == {}
    # The counts are of tracks that gave clips: a's 6 tone tracks, not its silent one.
    assert sum(cell["tracks"] for cell in report["counts"]["a"].values()) == 6


def test_a_class_left_without_val_or_test_clips_is_warned_about(tmp_path, audio, capsys):
    """With 7 tracks, a has one test track, and it is the silent one: nothing of a is left to score there."""
    code, _ = run_clip(tmp_path, audio)
    assert code == 0
    report = json.loads((tmp_path / "clips.json").read_text())
    assert report["counts"]["a"]["test"] == {"tracks": 0, "clips": 0}
    assert capsys.readouterr().err == ("clip: warning: a has no test clip: its 1 test track gave none (silent); "
                                       "the test scores leave a out\n")


def test_clip_stage_is_deterministic(tmp_path, audio):
    _, first = run_clip(tmp_path, audio, name="one")
    _, second = run_clip(tmp_path, audio, name="two")
    assert digest(first) == digest(second)
    assert (tmp_path / "one.json").read_bytes() == (tmp_path / "two.json").read_bytes()


def test_the_stage_deals_tracks_in_the_order_split_order_names(tmp_path, audio):
    """split.order reaches the deal: the table's splits are assign_splits' with that order, and the stable
    order's differ from the shuffle's on these tracks."""
    from musicid.clips import assign_splits

    report = json.loads((audio / "report.json").read_text())
    tracks = {r["source"]: r["label"] for r in report["files"] if r["status"] == "rendered"}
    written = {}
    for order in ("shuffle", "stable"):
        code, clips = run_clip(tmp_path, audio, name=order, split={"order": order})
        assert code == 0
        with h5py.File(clips, "r") as table:
            written[order] = dict(zip(read_strings(table["track"]), read_strings(table["split"])))
        expected = assign_splits(tracks, 0.2, 0.2, 0, order=order)
        assert written[order] == {track: expected[track] for track in written[order]}
    assert written["shuffle"] != written["stable"]


def test_class_cap(tmp_path, audio):
    _, clips = run_clip(tmp_path, audio, clip={"max_clips_per_class": 12, "max_clips_per_track": 0})
    with h5py.File(clips, "r") as table:
        labels, splits = table["label"][:], read_strings(table["split"])
        tracks = read_strings(table["track"])
    train = splits == "train"
    # The cap is shared by the training tracks of a class: a has 5 of them, 2 clips each and the 2 left
    # over to its first two tracks; b and c have 4, so 3 each.
    assert np.bincount(labels[train]).tolist() == [12, 12, 12]
    per_track = Counter(tracks[train & (labels == 0)].tolist())
    assert sorted(per_track.values()) == [2, 2, 2, 3, 3]
    # Val and test tracks give every clip (5 s tones, 1 s clips).
    assert all(np.sum(tracks == track) == 5 for track in set(tracks[~train]))
    assert np.sum(~train) == 5 * 5  # a's silent track is one of the six val and test tracks


def test_clips_at_a_rate_above_the_render_are_warned_about(tmp_path, audio, capsys):
    report = json.loads((audio / "report.json").read_text())
    (audio / "report.json").write_text(json.dumps({**report, "params": {"sample_rate": 8000}}))
    assert run_clip(tmp_path, audio)[0] == 0
    assert "clip: warning: render.sample_rate" not in capsys.readouterr().err  # equal: nothing to say
    assert run_clip(tmp_path, audio, name="up", clip={"sample_rate": 16000})[0] == 0
    assert capsys.readouterr().err.endswith(
        "clip: warning: render.sample_rate 8000 Hz is below clip.sample_rate 16000 Hz: the clips are resampled up "
        "and hold nothing above 4000 Hz, which features would read as silence (set the two equal)\n")


def test_a_hop_longer_than_a_clip_is_warned_about(tmp_path, audio, capsys):
    """Allowed (sparser clips), but `-S clip.clip_seconds=3` alone, with a hop of 4, leaves 1 s of every 4 out."""
    assert run_clip(tmp_path, audio, clip={"clip_seconds": 1.0, "hop_seconds": 1.0})[0] == 0
    assert "clip.hop_seconds" not in capsys.readouterr().err
    assert run_clip(tmp_path, audio, name="gaps", clip={"clip_seconds": 0.75, "hop_seconds": 1.0})[0] == 0
    assert ("clip: warning: clip.hop_seconds 1 is longer than clip.clip_seconds 0.75: 0.25 s of every 1 s of "
            "audio is in no clip\n") in capsys.readouterr().err


def test_bad_holdout_is_named(tmp_path, audio, capsys):
    code, _ = run_clip(tmp_path, audio, split={"holdout_classes": ["zzz"]})
    assert code == 2 and ("split.holdout_classes names classes with no rendered track: ['zzz'] (the classes "
                          "rendered: a, b, c)") in capsys.readouterr().err


def test_features_table_and_train_only_statistics(tmp_path, audio):
    _, clips = run_clip(tmp_path, audio)
    code, features = run_featurize(tmp_path, clips)
    assert code == 0
    with h5py.File(features, "r") as table, h5py.File(clips, "r") as source:
        values = table["features"][:]
        assert values.shape == (90, 32, 1 + 8000 // 256)
        splits = read_strings(table["split"])
        assert np.array_equal(splits, read_strings(source["split"]))
        assert np.array_equal(read_strings(table["track"]), read_strings(source["track"]))
        train = values[splits == "train"].astype(np.float64)
        assert np.allclose(table.attrs["band_mean"], train.mean(axis=(0, 2)), atol=1e-4)
        assert np.allclose(table.attrs["band_std"], train.std(axis=(0, 2)), atol=1e-4)
        everything = values.astype(np.float64).mean(axis=(0, 2))
        assert not np.allclose(table.attrs["band_mean"], everything, atol=1e-2)
        assert json.loads(table.attrs["params"])["features"]["n_mels"] == 32


def test_featurize_is_deterministic_and_does_mfcc(tmp_path, audio):
    _, clips = run_clip(tmp_path, audio)
    _, first = run_featurize(tmp_path, clips, name="one")
    _, second = run_featurize(tmp_path, clips, name="two")
    assert digest(first) == digest(second)
    _, coefficients = run_featurize(tmp_path, clips, name="mfcc", features={"kind": "mfcc", "n_mfcc": 13})
    with h5py.File(coefficients, "r") as table:
        assert table["features"].shape == (90, 13, 32)


def test_fmax_above_nyquist_is_refused(tmp_path, audio, capsys):
    _, clips = run_clip(tmp_path, audio)
    code, _ = run_featurize(tmp_path, clips, features={"fmax": 8000.0})
    assert code == 2 and "above the clips' Nyquist frequency" in capsys.readouterr().err


def test_mel_bands_left_empty_are_refused(tmp_path, audio, capsys):
    _, clips = run_clip(tmp_path, audio)
    # 16 bands between 3800 and 4000 Hz, where a 128-point FFT at 8 kHz has 4 bins: most bands fall between
    # bins and would hold the floor alone (librosa only warns). n_mels is within n_fft's bins, so only this
    # check, which needs the clips' sample rate, can find it.
    code, out = run_featurize(tmp_path, clips, features={"n_fft": 128, "hop_length": 64, "n_mels": 16,
                                                         "fmin": 3800.0})
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert ("features.n_mels 16 bands from features.fmin 3800 to fmax 4000 Hz leave 10 bands empty (no frequency "
            "bin of features.n_fft 128 at 8000 Hz falls in them") in err
    assert run_featurize(tmp_path, clips, features={"n_fft": 128, "hop_length": 64, "n_mels": 16})[0] == 0


def test_a_table_the_disk_cannot_hold_is_found_before_any_work(tmp_path, audio, capsys, monkeypatch):
    _, clips = run_clip(tmp_path, audio)
    capsys.readouterr()
    usage = FEATURIZE.shutil.disk_usage(tmp_path)
    # 90 clips x 32 bands x 32 frames x 4 bytes = 368640 bytes: a disk with 300 kB free cannot hold them.
    monkeypatch.setattr(FEATURIZE.shutil, "disk_usage", lambda path: usage._replace(free=300_000))
    code, out = run_featurize(tmp_path, clips)
    assert code == 1 and not out.exists()
    assert capsys.readouterr().err == (
        f"featurize: {out} would take 368.6 kB (90 clips x 32 bands x 32 frames, float32) and its disk has 300.0 kB "
        "free: free space, or make the clips smaller (features.hop_length 256, features.n_mels or n_bins)\n")
    monkeypatch.setattr(FEATURIZE.shutil, "disk_usage", lambda path: usage._replace(free=400_000))
    assert run_featurize(tmp_path, clips)[0] == 0


def test_a_collections_own_split_is_used_as_it_is(tmp_path, audio, capsys):
    """A label table's split column (MAESTRO's train/validation/test) is the split, whatever split.* say."""
    report_path = audio / "report.json"
    report = json.loads(report_path.read_text())
    given = {}
    for record in report["files"]:
        if record["status"] == "rendered":
            number = int(record["source"][-5]) if record["source"][-5].isdigit() else 0
            given[record["source"]] = record["split"] = ["train", "train", "train", "val", "test", "test"][number]
    report_path.write_text(json.dumps(report))
    code, clips = run_clip(tmp_path, audio, split={"seed": 7, "val": 0.5, "group": "folder", "order": "stable"})
    assert code == 0
    assert "clip: the collection's own split, from its label table" in capsys.readouterr().err
    with h5py.File(clips, "r") as table:
        tracks, splits = read_strings(table["track"]), read_strings(table["split"])
    assert dict(zip(tracks, splits)) == {track: split for track, split in given.items() if track != "a/quiet.mid"}
    # A held-out class goes to test whole, as always.
    code, clips = run_clip(tmp_path, audio, name="held", split={"holdout_classes": ["c"]})
    with h5py.File(clips, "r") as table:
        labels, splits = table["label"][:], read_strings(table["split"])
    assert code == 0 and set(splits[labels == 2]) == {"test"} and "train" in set(splits[labels < 2])
    # No folds to deal; and a report with a split for some tracks only is older than the manifest.
    assert run_clip(tmp_path, audio, name="folds", split={"folds": 3})[0] == 2
    assert ("split.folds must be 0 when the collection gives its own split (dataset.label_table.split_column), "
            "got 3") in capsys.readouterr().err
    # A class the split puts no track of in train is left out; val and test must keep some track.
    for record in report["files"]:
        if record["label"] == "c" and record["status"] == "rendered":
            record["split"] = "train"
        elif record["status"] == "rendered" and record["split"] == "test":
            record["split"] = "val"
    report_path.write_text(json.dumps(report))
    assert run_clip(tmp_path, audio, name="no_test")[0] == 1
    assert ("the collection's own split (dataset.label_table.split_column) puts no track of the classes kept in "
            "test: each needs some") in capsys.readouterr().err
    own = {"a": ["val", "test"], "b": ["test", "test"], "c": ["test"] * 6}
    for record in report["files"]:
        if record["status"] == "rendered":
            number = int(record["source"][-5]) if record["source"][-5].isdigit() else 5
            record["split"] = (own[record["label"]] + ["train"] * 6)[number]
    report_path.write_text(json.dumps(report))
    assert run_clip(tmp_path, audio, name="c_in_test")[0] == 0
    captured = capsys.readouterr()
    assert "c                    left out: no track in the train split (the collection's own split" in captured.out
    assert "b has no val track in the collection's own split" in captured.err
    del report["files"][0]["split"]
    report_path.write_text(json.dumps(report))
    assert run_clip(tmp_path, audio, name="mixed")[0] == 1
    assert "1 of the 19 rendered tracks have no split of the collection's own" in capsys.readouterr().err


def test_a_clips_table_the_disk_may_not_hold_is_warned_of_before_any_work(tmp_path, audio, capsys, monkeypatch):
    """A table of 200 hours of music is 46 GB of float32 clips: a full disk at the end of an hour's work is
    said at its start, from the renders' lengths (the silent track's 5 clips counted: an upper bound)."""
    usage = CLIP.shutil.disk_usage(tmp_path)

    def disk(free):
        monkeypatch.setattr(CLIP.shutil, "disk_usage", lambda path: usage._replace(free=free))

    disk(2_900_000)
    code, clips = run_clip(tmp_path, audio)
    err = capsys.readouterr().err
    # 19 tracks x 5 clips x 8000 samples x 4 bytes = 3.04 MB; 90 clips (2.88 MB) are written: a warning, no stop.
    assert code == 0 and clips.exists()
    assert (f"clip: warning: {clips} may take up to 3.0 MB (95 clips of 1 s at 8000 Hz, float32, fewer once "
            "silence is skipped) and its disk has 2.9 MB free: free space, or cap the training clips "
            "(clip.max_clips_per_track, clip.max_clips_per_class), raise clip.hop_seconds or lower "
            "clip.sample_rate\n") in err
    disk(3_100_000)
    assert run_clip(tmp_path, audio, name="roomy")[0] == 0
    assert "may take up to" not in capsys.readouterr().err
    # Capped training tracks count at their cap: 2 for each of the 13 training tracks, 5 for each of the other 6.
    disk(1_000_000)
    assert run_clip(tmp_path, audio, name="capped", clip={"max_clips_per_track": 2})[0] == 0
    assert "(56 clips of 1 s" in capsys.readouterr().err
    # Two augmented copies of each training track at x0.5 and x1.25: the slower one counted at twice the
    # length (10 clips), the faster one at the plain render's (5): 95 + 13 x 15 clips.
    add_augmented(audio)
    report = json.loads((audio / "report.json").read_text())
    for record in report["files"]:
        for copy, tempo in zip(record.get("augmented", []), (0.5, 1.25)):
            copy["tempo"] = tempo
    (audio / "report.json").write_text(json.dumps(report))
    assert run_clip(tmp_path, audio, name="augmented")[0] == 0
    assert f"({95 + 13 * 15} clips of 1 s" in capsys.readouterr().err
    # Capped at 6 a track: the slow copy gives 6 of its 10, so 13 x (5 + 6 + 5) + 6 x 5.
    assert run_clip(tmp_path, audio, name="augmented-capped", clip={"max_clips_per_track": 6})[0] == 0
    assert f"({13 * 16 + 6 * 5} clips of 1 s" in capsys.readouterr().err


def add_tracks(root, label, count, seconds, frequency=600.0, rejected=(), prefix="n", amplitude=0.3):
    """Add ``count`` rendered tracks of ``label`` (tones of ``seconds``) and rejected sources to report.json."""
    report = json.loads((root / "report.json").read_text())
    for i in range(count):
        name = f"{label}/{prefix}{i}.wav"
        write_wav(root / name, sine(frequency + 10 * i, seconds, 8000, amplitude=amplitude), 8000)
        report["files"].append({"source": f"{label}/{prefix}{i}.mid", "label": label, "status": "rendered",
                                "reason": None, "duration_s": seconds, "outputs": [name]})
    for source, reason in rejected:
        report["files"].append({"source": source, "label": label, "status": "rejected", "reason": reason,
                                "duration_s": None, "outputs": []})
    report["files"].sort(key=lambda r: r["source"])
    (root / "report.json").write_text(json.dumps(report))


def assert_nothing_written(tmp_path, name="clips"):
    assert not (tmp_path / f"{name}.h5").exists() and not (tmp_path / f"{name}.json").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_clips_longer_than_every_track_stop_the_stage(tmp_path, audio, capsys):
    code, _ = run_clip(tmp_path, audio, clip={"clip_seconds": 6.0, "hop_seconds": 6.0})
    assert code == 1
    assert capsys.readouterr().err == ("clip: no clip cut from the 19 tracks: 19 shorter than clip.clip_seconds "
                                       "(6 s), the longest lasting 5 s; lower clip.clip_seconds\n")
    assert_nothing_written(tmp_path)


def test_all_silence_names_the_silence_params(tmp_path, audio, capsys):
    code, _ = run_clip(tmp_path, audio, clip={"min_rms": 0.9, "normalize": "none"})
    assert code == 1
    assert capsys.readouterr().err == (
        "clip: no clip cut from the 19 tracks: 19 all silence (more than clip.max_silence 0.5 of their 50 ms "
        "frames under clip.min_rms 0.9); lower clip.min_rms or raise clip.max_silence\n")
    assert_nothing_written(tmp_path)


def test_a_class_without_a_training_clip_is_left_out_and_the_split_stays(tmp_path, audio, capsys):
    """A class whose train track gives no clip (all silence here) cannot be trained on: it stopped every class.
    It is left out, and every other track keeps the split it had (the split never depends on what cutting finds)."""
    assert run_clip(tmp_path, audio, name="before")[0] == 0
    add_tracks(audio, "d", 3, 3.0, amplitude=0.0)  # 3 tracks: one per split, every clip silence
    capsys.readouterr()
    code, clips = run_clip(tmp_path, audio)
    assert code == 0
    report = json.loads((tmp_path / "clips.json").read_text())
    reason = ("no clip in the train split: of its 1 train track, 1 all silence (more than clip.max_silence 0.5 of "
              "their 50 ms frames under clip.min_rms 0.001); lower clip.min_rms or raise clip.max_silence")
    assert report["excluded_classes"] == {"d": reason}
    assert f"clip: class d is left out: {reason}; the other classes are cut again\n" in capsys.readouterr().out
    with h5py.File(clips, "r") as table, h5py.File(tmp_path / "before.h5", "r") as before:
        assert list(table.attrs["label_names"]) == ["a", "b", "c"]
        assert json.loads(table.attrs["excluded_classes"]) == {"d": reason}
        for column in ("audio", "label", "track", "split", "offset_s"):
            assert np.array_equal(table[column][:], before[column][:]), column
    assert (tmp_path / "clips.json").read_bytes() != (tmp_path / "before.json").read_bytes()

def test_a_class_whose_train_tracks_are_shorter_than_a_clip_is_left_out(tmp_path, audio, capsys):
    add_tracks(audio, "d", 3, 0.5)  # 3 tracks: one per split, none long enough for a 1 s clip
    add_tracks(audio, "e", 3, 3.0)
    code, clips = run_clip(tmp_path, audio)
    assert code == 0
    report = json.loads((tmp_path / "clips.json").read_text())
    assert report["excluded_classes"] == {
        "d": "no clip in the train split: of its 1 train track, 1 shorter than clip.clip_seconds (1 s), the longest "
             "lasting 0.5 s; lower clip.clip_seconds"}
    with h5py.File(clips, "r") as table:
        assert list(table.attrs["label_names"]) == ["a", "b", "c", "e"]
        assert not any(t.startswith("d/") for t in read_strings(table["track"]))
    assert "  d                    left out: no clip in the train split" in capsys.readouterr().out

def test_dropped_tracks_are_named_with_their_reason(tmp_path, audio, capsys):
    add_tracks(audio, "a", 1, 0.5)  # a/n0.mid: shorter than one clip
    code, _ = run_clip(tmp_path, audio)
    assert code == 0
    report = json.loads((tmp_path / "clips.json").read_text())
    assert report["dropped_tracks"] == {"a/n0.mid": "too_short", "a/quiet.mid": "silent"}
    assert "5 silent clips skipped; tracks dropped: 1 all silence, 1 too short; 2 local workers)" in \
        capsys.readouterr().out


def test_a_class_too_small_for_the_split_is_left_out(tmp_path, audio, capsys):
    add_tracks(audio, "d", 2, 3.0)
    code, clips = run_clip(tmp_path, audio)
    assert code == 0
    reason = "2 rendered tracks; split.val 0.2 and split.test 0.2 need at least 3 (one for each split used)"
    report = json.loads((tmp_path / "clips.json").read_text())
    assert report["excluded_classes"] == {"d": reason} and sorted(report["counts"]) == ["a", "b", "c"]
    with h5py.File(clips, "r") as table:
        assert list(table.attrs["label_names"]) == ["a", "b", "c"]
        assert "d/n0.mid" not in set(read_strings(table["track"]))
    assert f"  d                    left out: {reason}\n" in capsys.readouterr().out


def test_a_class_whose_every_file_was_rejected_is_named(tmp_path, audio, capsys):
    """A label folder of note-less files: render rejected them all, and the class vanished from clip's summary
    and report without a word."""
    report = json.loads((audio / "report.json").read_text())
    report["files"] += [{"source": f"e/e{k}.mid", "label": "e", "status": "rejected", "outputs": [],
                         "reason": "no_notes", "detail": "no note to play", "duration_s": None} for k in range(3)]
    report["files"].append({"source": "e/e3.mid", "label": "e", "status": "rejected", "outputs": [],
                            "reason": "unparseable", "detail": "cut short", "duration_s": None})
    (audio / "report.json").write_text(json.dumps(report))
    code, clips = run_clip(tmp_path, audio)
    assert code == 0
    reason = "0 rendered tracks: its 4 files were rejected (no_notes 3, unparseable 1)"
    assert json.loads((tmp_path / "clips.json").read_text())["excluded_classes"] == {"e": reason}
    assert f"  e                    left out: {reason}\n" in capsys.readouterr().out
    with h5py.File(clips, "r") as table:
        assert list(table.attrs["label_names"]) == ["a", "b", "c"]


@pytest.mark.parametrize("tracks, message", [
    ({"a": 4, "b": 2}, "clip: 1 class left to train on ['a'], at least two are needed; left out: b: "
                       "2 rendered tracks; split.val 0.2 and split.test 0.2 need at least 3 (one for each split "
                       "used)\n"),
    # One class in all: the collection's fault, not split.holdout_classes' (which is not set).
    ({"bach": 4}, "clip: every rendered track is of one class (bach): at least two are needed (dataset.classes, or "
                  "a <label>/ folder each in a collection; {report} lists what was rendered)\n"),
])
def test_fewer_than_two_classes_stop_the_stage(tmp_path, capsys, monkeypatch, tracks, message):
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    root = tmp_path / "audio"
    root.mkdir()
    (root / "report.json").write_text(json.dumps({"files": []}))
    for label, count in tracks.items():
        add_tracks(root, label, count, 2.0)
    code, _ = run_clip(tmp_path, root)
    assert code == 1
    assert capsys.readouterr().err == message.format(report=root / "report.json")
    assert_nothing_written(tmp_path)


def test_every_known_class_keeps_a_training_track(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    root = tmp_path / "audio"
    root.mkdir()
    (root / "report.json").write_text(json.dumps({"files": []}))
    add_tracks(root, "a", 4, 2.0)
    add_tracks(root, "b", 4, 2.0, frequency=900.0)
    code, _ = run_clip(tmp_path, root, split={"val": 0.4, "test": 0.4})  # rounds to 2 + 2 of 4
    assert code == 0
    counts = json.loads((tmp_path / "clips.json").read_text())["counts"]
    for label in ("a", "b"):
        assert {split: counts[label][split]["tracks"] for split in ("train", "val", "test")} == \
            {"train": 1, "val": 1, "test": 2}


def test_no_rendered_track_names_the_real_cause(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    root = tmp_path / "audio"
    root.mkdir()
    (root / "report.json").write_text(json.dumps({"files": []}))
    add_tracks(root, "a", 0, 1.0, rejected=[("a/x.mid", "no_notes"), ("a/y.mid", "silent"), ("a/z.mid", "silent")])
    code, _ = run_clip(tmp_path, root)
    assert code == 1
    assert capsys.readouterr().err == (f"clip: no rendered track: all 3 sources were rejected (no_notes 1, silent 2)"
                                       f"; see {root / 'report.json'}\n")
    (root / "report.json").write_text(json.dumps({"files": []}))
    assert run_clip(tmp_path, root)[0] == 1
    assert capsys.readouterr().err == (f"clip: no rendered track: {root / 'report.json'} lists no source "
                                       "(the download stage kept no file)\n")
    assert_nothing_written(tmp_path)


def test_a_missing_render_report_is_named(tmp_path, audio, capsys):
    (audio / "report.json").unlink()
    code, _ = run_clip(tmp_path, audio)
    assert code == 1
    assert capsys.readouterr().err == (f"clip: {audio / 'report.json'} is missing: the render stage writes it "
                                       "(dvc repro render)\n")
    (audio / "report.json").write_text("{not json")
    assert run_clip(tmp_path, audio)[0] == 1
    assert capsys.readouterr().err.startswith(f"clip: {audio / 'report.json'} is not valid JSON (")
    assert_nothing_written(tmp_path)


DAMAGED_TAIL = (": the render stage's output was damaged after it was written; restore it (dvc checkout) or "
                "rerun render (dvc repro --force render)\n")


@pytest.mark.parametrize("damage, reason", [
    ("missing", "missing"),
    ("truncated", "truncated (its data chunk declares 80000 bytes, 956 are present)"),
])
def test_a_rendered_wav_gone_bad_stops_the_stage(tmp_path, audio, capsys, damage, reason):
    # A WAV that render validated and listed is a DVC output: damage to it is restored, not skipped.
    wav = audio / "b/t3.wav"
    if damage == "missing":
        wav.unlink()
    else:
        wav.write_bytes(wav.read_bytes()[:1000])
    code, _ = run_clip(tmp_path, audio)
    assert code == 1
    assert capsys.readouterr().err == f"clip: {wav}, rendered according to {audio / 'report.json'}, is {reason}" \
        + DAMAGED_TAIL
    assert_nothing_written(tmp_path)


def test_a_rendered_wav_libsndfile_cannot_read_stops_the_stage(tmp_path, audio, capsys):
    wav = audio / "c/t0.wav"
    data = wav.read_bytes()
    wav.write_bytes(data[:20] + b"\x99\x99" + data[22:])  # an unknown sample format
    code, _ = run_clip(tmp_path, audio)
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"clip: {wav}, rendered according to {audio / 'report.json'}, is unreadable (")
    assert err.endswith(DAMAGED_TAIL) and err.count("\n") == 1
    assert_nothing_written(tmp_path)


def test_featurize_with_no_clip_or_no_training_clip_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    for name, splits in (("empty", []), ("no_train", ["val", "test"])):
        with RowWriter(tmp_path / f"{name}.h5", clip_columns(8000)) as writer:
            n = len(splits)
            writer.append(audio=np.zeros((n, 8000), np.float32), label=np.zeros(n, np.int16),
                          known=np.ones(n, bool), track=["t"] * n, source=["t.wav"] * n, offset_s=np.zeros(n),
                          split=splits)
            writer.attrs["sample_rate"] = 8000
        code, out = run_featurize(tmp_path, tmp_path / f"{name}.h5", name=f"{name}_features")
        assert code == 1 and not out.exists()
        where = "no clip" if name == "empty" else "no clip in the train split (normalisation statistics need one)"
        assert capsys.readouterr().err == (
            f"featurize: {tmp_path / name}.h5 holds {where}: rerun the clip stage, which stops with the param to "
            "change (clip.clip_seconds, clip.min_rms, clip.max_silence, split.val, split.test)\n")
    code, _ = run_featurize(tmp_path, tmp_path / "absent.h5")
    assert code == 1
    assert capsys.readouterr().err == (f"featurize: {tmp_path / 'absent.h5'} is missing: the clip stage writes it "
                                       "(dvc repro clip)\n")
    (tmp_path / "garbage.h5").write_bytes(b"not an HDF5 file" * 64)
    code, out = run_featurize(tmp_path, tmp_path / "garbage.h5", name="garbage_features")
    assert code == 1 and not out.exists()
    assert capsys.readouterr().err == (
        f"featurize: cannot read {tmp_path / 'garbage.h5'} (Unable to synchronously open file (file signature not "
        "found)): rerun the clip stage (dvc repro --force clip)\n")


# Runs a stage with a file-size limit, as a full disk refuses writes (EFBIG instead of ENOSPC).
LIMITED = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_limited(limit: int, script: str, *arguments) -> subprocess.CompletedProcess:
    """No byte code is written under the limit: Python does not check that a .pyc was written whole, and a
    module compiled there (its source newer than its .pyc) would be left truncated for every later import."""
    return subprocess.run([sys.executable, "-c", LIMITED, str(limit), str(PROJECT_ROOT / "stages" / script),
                           *map(str, arguments)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(PROJECT_ROOT), "MUSICID_PROGRESS": "0",
                               "PYTHONDONTWRITEBYTECODE": "1"})


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, audio):
    params = write_params(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    clip = run_limited(100_000, "clip.py", "--params", params, "--audio", audio, "--out", out / "clips.h5",
                       "--report", out / "clips.json", "--jobs", "1")
    assert (clip.returncode, clip.stdout, clip.stderr) == (1, "", f"clip: cannot write {out / 'clips.h5'}: "
                                                                   "File too large\n")
    assert list(out.iterdir()) == []
    code, clips = run_clip(tmp_path, audio)
    featurize = run_limited(50_000, "featurize.py", "--params", params, "--clips", clips,
                            "--out", out / "features.h5")
    assert (featurize.returncode, featurize.stdout, featurize.stderr) == (
        1, "", f"featurize: cannot write {out / 'features.h5'}: File too large\n")
    assert list(out.iterdir()) == []


def symbolic_sources(tmp_path, audio):
    """data/raw for the ``audio`` fixture: a MIDI file per source (a one-pitch melody per class), one source
    turned into an audio file, and one MIDI file that cannot be read."""
    raw = tmp_path / "raw"
    report = json.loads((audio / "report.json").read_text())
    for record in report["files"]:
        if record["source"] == "c/t0.mid":
            record["source"] = "c/t0.wav"  # an audio source: no notes to read
            write_wav(raw / "c/t0.wav", sine(440.0, 5.0, 8000, 0.3), 8000)
            continue
        pitch = {"a": 60, "b": 62, "c": 64}[record["label"]]
        write_midi(raw / record["source"], [(pitch, 0.5 * k, 0.5 * k + 0.5) for k in range(10)])
    (raw / "b/t1.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01")  # cut short
    report["files"].sort(key=lambda r: r["source"])
    (audio / "report.json").write_text(json.dumps(report))
    return raw


def run_symbolic_featurize(tmp_path, clips, audio, raw, name="symbolic", **features):
    path = write_params(tmp_path, features={"symbolic": True, "symbolic_roll": False, **features})  # roll: its own test
    code = FEATURIZE.main(["--params", str(path), "--clips", str(clips), "--out", str(tmp_path / f"{name}.h5"),
                           "--render-report", str(audio / "report.json"), "--raw", str(raw), "--jobs", "1"])
    return code, tmp_path / f"{name}.h5"


def test_a_midi_file_with_no_note_sounding_is_named_and_read_as_audio(tmp_path, audio, capsys):
    raw = symbolic_sources(tmp_path, audio)
    write_midi(raw / "a/t1.mid", [(38, 0.5 * k, 0.5 * k + 0.25) for k in range(10)], drum=True)
    _, clips = run_clip(tmp_path, audio)
    capsys.readouterr()
    code, table_path = run_symbolic_featurize(tmp_path, clips, audio, raw)
    out, err = capsys.readouterr()
    assert code == 0
    assert "featurize: a/t1.mid: no symbolic features (no_notes: no note sounds in its clips; drums only, or " \
           "notes that are never released): its audio alone is read\n" in err
    assert "(1 audio source, 1 unreadable MIDI file, 1 MIDI file with no note sounding)" in out
    with h5py.File(table_path, "r") as table:
        tracks = read_strings(table["track"])
        assert not table["has_symbolic"][tracks == "a/t1.mid"].any()
        assert table["has_symbolic"][tracks == "a/t0.mid"].all()


def test_symbolic_features_beside_the_audio_features(tmp_path, audio, capsys):
    raw = symbolic_sources(tmp_path, audio)
    _, clips = run_clip(tmp_path, audio)
    capsys.readouterr()
    code, table_path = run_symbolic_featurize(tmp_path, clips, audio, raw)
    out, err = capsys.readouterr()
    assert code == 0
    assert err.startswith("featurize: b/t1.mid: no symbolic features (unparseable: ")
    assert out == (f"featurize: 90 clips -> logmel [32 x 32]; symbolic [44] for 80 of 90 clips "
                   f"(1 audio source, 1 unreadable MIDI file); 1 local worker -> {table_path}\n")
    with h5py.File(table_path, "r") as table:
        tracks = read_strings(table["track"])
        present = table["has_symbolic"][:]
        symbolic = table["symbolic"][:]
        assert symbolic.shape == (90, 44) and symbolic.dtype == np.float32
        assert np.array_equal(present, ~np.isin(tracks, ["c/t0.wav", "b/t1.mid"]))
        assert not symbolic[~present].any()
        # A clip of class b at 1 s: D sounding all through the window (pitch class 2).
        row = np.flatnonzero((tracks == "b/t0.mid") & (table["offset_s"][:] == 1.0))[0]
        assert symbolic[row, 2] == pytest.approx(1.0) and symbolic[row, :12].sum() == pytest.approx(1.0)
        train = present & (read_strings(table["split"]) == "train")
        assert np.allclose(table.attrs["symbolic_mean"], symbolic[train].mean(axis=0), atol=1e-6)
        assert json.loads(table.attrs["params"])["features"]["symbolic"] is True
        assert "augmented" not in table  # plain renders only
    code, again = run_symbolic_featurize(tmp_path, clips, audio, raw, name="again")
    assert digest(again) == digest(table_path)


def test_the_clips_of_augmented_renders_are_marked(tmp_path, audio):
    """train.track_notes' regression reads a track's notes from its plain renders' clips only."""
    raw = symbolic_sources(tmp_path, audio)
    add_augmented(audio, copies=1)
    _, clips = run_clip(tmp_path, audio)
    code, table_path = run_symbolic_featurize(tmp_path, clips, audio, raw)
    assert code == 0
    with h5py.File(clips, "r") as clip_table, h5py.File(table_path, "r") as table:
        copies = np.char.find(read_strings(clip_table["source"]).astype(str), "__aug") >= 0
        assert copies.any() and not copies.all()
        assert np.array_equal(table["augmented"][:], copies)


def test_key_relative_symbolic_features(tmp_path, audio, capsys):
    raw = symbolic_sources(tmp_path, audio)
    _, clips = run_clip(tmp_path, audio)
    _, absolute_path = run_symbolic_featurize(tmp_path, clips, audio, raw)
    code, relative_path = run_symbolic_featurize(tmp_path, clips, audio, raw, name="relative",
                                                 symbolic_key="relative")
    assert code == 0
    with h5py.File(absolute_path, "r") as absolute, h5py.File(relative_path, "r") as relative:
        # Each melody repeats one pitch (C, D or E by class), its own tonic: it sounds on index 0.
        sounding = absolute["symbolic"][:, :12].sum(axis=1) > 0
        assert sounding.sum() > 40
        tonic = absolute["symbolic"][sounding, :12].argmax(axis=1)
        assert set(tonic.tolist()) == {0, 2, 4}
        np.testing.assert_array_equal(relative["symbolic"][sounding, 0], absolute["symbolic"][sounding, :12].max(1))
        np.testing.assert_array_equal(relative["symbolic"][:, 24:], absolute["symbolic"][:, 24:])
        assert json.loads(relative.attrs["params"])["features"]["symbolic_key"] == "relative"
        # absolute, what every table meant before the key existed, is left out: those tables keep their bytes
        assert "symbolic_key" not in json.loads(absolute.attrs["params"])["features"]
    code, _ = run_symbolic_featurize(tmp_path, clips, audio, raw, name="bad", symbolic_key="tonic")
    assert code == 2 and "features.symbolic_key" in capsys.readouterr().err


def test_texture_symbolic_features(tmp_path, audio, capsys):
    raw = symbolic_sources(tmp_path, audio)
    _, clips = run_clip(tmp_path, audio)
    _, plain_path = run_symbolic_featurize(tmp_path, clips, audio, raw)
    capsys.readouterr()
    code, texture_path = run_symbolic_featurize(tmp_path, clips, audio, raw, name="texture", symbolic_texture=True)
    assert code == 0 and "; symbolic [69] for 80 of 90 clips" in capsys.readouterr().out
    with h5py.File(plain_path, "r") as plain, h5py.File(texture_path, "r") as texture:
        assert plain["symbolic"].shape == (90, 44) and texture["symbolic"].shape == (90, 69)
        np.testing.assert_array_equal(texture["symbolic"][:, :44], plain["symbolic"][:])
        assert texture["symbolic"][:, 44:].any() and texture.attrs["symbolic_mean"].shape == (69,)
        assert json.loads(texture.attrs["params"])["features"]["symbolic_texture"] is True
        # false, what every table meant before the key existed, is left out: those tables keep their bytes
        assert "symbolic_texture" not in json.loads(plain.attrs["params"])["features"]
    code, _ = run_symbolic_featurize(tmp_path, clips, audio, raw, name="bad", symbolic_texture="lots")
    assert code == 2 and "features.symbolic_texture" in capsys.readouterr().err


def test_piano_roll_symbolic_features(tmp_path, audio, capsys):
    raw = symbolic_sources(tmp_path, audio)
    _, clips = run_clip(tmp_path, audio)
    _, plain_path = run_symbolic_featurize(tmp_path, clips, audio, raw)
    capsys.readouterr()
    code, roll_path = run_symbolic_featurize(tmp_path, clips, audio, raw, name="roll", symbolic_roll=True)
    assert code == 0 and "; symbolic [2860] for 80 of 90 clips" in capsys.readouterr().out
    with h5py.File(plain_path, "r") as plain, h5py.File(roll_path, "r") as roll:
        assert roll["symbolic"].shape == (90, 44 + 88 * 32)
        np.testing.assert_array_equal(roll["symbolic"][:, :44], plain["symbolic"][:])
        np.testing.assert_array_equal(roll.attrs["symbolic_mean"][:44], plain.attrs["symbolic_mean"])
        np.testing.assert_array_equal(roll.attrs["symbolic_std"][:44], plain.attrs["symbolic_std"])
        # The roll (0..1 already) is left on its own scale: mean 0, sd 1 for the model's convolution.
        assert not roll.attrs["symbolic_mean"][44:].any() and (roll.attrs["symbolic_std"][44:] == 1).all()
        assert roll.attrs["symbolic_roll_shape"].tolist() == [88, 32]
        # A clip of class b at 1 s: D4 (MIDI 62) sounds through the whole window, nothing else does.
        tracks = read_strings(roll["track"])
        row = np.flatnonzero((tracks == "b/t0.mid") & (roll["offset_s"][:] == 1.0))[0]
        window = roll["symbolic"][row, 44:].reshape(88, 32)
        assert (window[62 - 21] == 1).all() and window.sum() == 32
        assert json.loads(roll.attrs["params"])["features"]["symbolic_roll"] is True
        assert "symbolic_roll" not in json.loads(plain.attrs["params"])["features"]
        assert "symbolic_roll_shape" not in plain.attrs
    code, again = run_symbolic_featurize(tmp_path, clips, audio, raw, name="again", symbolic_roll=True)
    assert code == 0 and digest(again) == digest(roll_path)
    capsys.readouterr()
    code, _ = run_symbolic_featurize(tmp_path, clips, audio, raw, name="bad", symbolic_roll="wide")
    assert code == 2 and "features.symbolic_roll" in capsys.readouterr().err
    # The roll is one of the symbolic features: with them off (the roll on, as by default) there is neither,
    # and the table says so, as one made with both off does.
    code, off = run_featurize(tmp_path, clips, name="off", features={"symbolic": False, "symbolic_roll": True})
    _, both_off = run_featurize(tmp_path, clips, name="both_off", features={"symbolic": False, "symbolic_roll": False})
    assert code == 0 and "; symbolic [" not in capsys.readouterr().out
    with h5py.File(off, "r") as table:
        assert "symbolic" not in table and "symbolic_roll_shape" not in table.attrs
        assert "symbolic_roll" not in json.loads(table.attrs["params"])["features"]
    assert digest(off) == digest(both_off)


def test_whole_piece_statistics_beside_the_clips(tmp_path, audio, capsys):
    from musicid.piece import PIECE_DIM
    from musicid.symbolic import read_midi_notes

    raw = symbolic_sources(tmp_path, audio)
    _, clips = run_clip(tmp_path, audio)
    _, plain_path = run_symbolic_featurize(tmp_path, clips, audio, raw, symbolic_piece=False)
    code, piece_path = run_symbolic_featurize(tmp_path, clips, audio, raw, name="piece", symbolic_piece=True)
    assert code == 0
    with h5py.File(plain_path, "r") as plain, h5py.File(piece_path, "r") as piece:
        # One row per MIDI source with notes (not the audio source, not the unreadable file), sorted.
        names = read_strings(piece["piece_track"])
        assert names.tolist() == sorted(set(read_strings(plain["track"])) - {"c/t0.wav", "b/t1.mid"})
        assert piece["piece"].shape == (len(names), PIECE_DIM) and piece["piece"].dtype == np.float64
        for name, row in zip(names, piece["piece"][:]):
            np.testing.assert_array_equal(row, read_midi_notes(raw / name)[1])
        # The clips' columns are those of a table without them.
        for column in ("symbolic", "has_symbolic", "features"):
            np.testing.assert_array_equal(piece[column][:], plain[column][:])
        assert json.loads(piece.attrs["params"])["features"]["symbolic_piece"] is True
        # false, what every table meant before the key existed, is left out: those tables keep their bytes
        assert "symbolic_piece" not in json.loads(plain.attrs["params"])["features"] and "piece" not in plain
    code, again = run_symbolic_featurize(tmp_path, clips, audio, raw, name="again", symbolic_piece=True)
    assert code == 0 and digest(again) == digest(piece_path)
    capsys.readouterr()
    code, _ = run_symbolic_featurize(tmp_path, clips, audio, raw, name="bad", symbolic_piece="yes please")
    assert code == 2 and "features.symbolic_piece" in capsys.readouterr().err


def test_symbolic_off_writes_the_table_as_before(tmp_path, audio):
    _, clips = run_clip(tmp_path, audio)
    _, table_path = run_featurize(tmp_path, clips)
    with h5py.File(table_path, "r") as table:
        assert sorted(table) == ["features", "known", "label", "offset_s", "split", "track"]
        assert "symbolic_mean" not in table.attrs
        assert "symbolic" not in json.loads(table.attrs["params"])["features"]


def test_symbolic_without_the_render_report_is_one_line(tmp_path, audio, capsys):
    _, clips = run_clip(tmp_path, audio)
    capsys.readouterr()
    code, table_path = run_featurize(tmp_path, clips, features={"symbolic": True})
    assert code == 1 and not table_path.exists()
    assert capsys.readouterr().err == ("featurize: features.symbolic is true: give the render report and the raw "
                                       "sources (--render-report data/audio/report.json --raw data/raw)\n")


def test_a_bad_symbolic_param_is_named(tmp_path, audio, capsys):
    _, clips = run_clip(tmp_path, audio)
    capsys.readouterr()
    code, _ = run_featurize(tmp_path, clips, features={"symbolic": "yes"})
    assert code == 2 and "features.symbolic must be true or false, got 'yes'" in capsys.readouterr().err


def test_table_features_follow_augmented_renders(tmp_path):
    from musicid.symbolic import table_features

    raw = tmp_path / "raw"
    write_midi(raw / "a/x.mid", [(60, 0.0, 2.0)])
    record = {"source": "a/x.mid", "label": "a", "status": "rendered", "outputs": ["a/x.wav"],
              "augmented": [{"output": "a/x__up.wav", "transpose": 3, "tempo": 2.0}]}
    result = table_features(np.array(["a/x.mid"] * 3, dtype=object),
                            np.array(["a/x.wav", "a/x__up.wav", "a/x__up.wav"], dtype=object),
                            np.array([0.0, 0.0, 1.0]), 1.0, [record], raw)
    assert result.unreadable == {} and result.noteless == []
    assert result.features[0, 0] == 1.0 and result.features[1, 3] == 1.0  # C, and E-flat 3 semitones up
    assert not result.features[2].any()  # WAV 1 s of the faster render is MIDI 2 s: the note has ended
    assert result.present.tolist() == [True, True, False]  # so that clip has no notes, as an audio clip
    assert result.augmented.tolist() == [False, True, True]  # cut from the copy: the notes' regression skips them
    # render.augment on, every copy rejected: no clip is marked, but the marks are written, so that train knows
    # that no copy blends into the tracks' statistics (without them it would refuse the regression).
    record = {**record, "augmented": [], "augment_rejected": [{"copy": 1, "reason": "silent"}]}
    none = table_features(np.array(["a/x.mid"], dtype=object), np.array(["a/x.wav"], dtype=object),
                          np.array([0.0]), 1.0, [record], raw)
    assert none.augmented is not None and none.augmented.tolist() == [False]


def test_clips_in_which_no_note_sounds_have_no_symbolic_features(tmp_path):
    """A drums-only file, and a file whose notes are never released (which the notes' reader drops while
    FluidSynth plays them), had every clip marked as having notes, all zeros: the model and the notes'
    regression read them as music of their own."""
    import mido

    from musicid.symbolic import table_features

    raw = tmp_path / "raw"
    write_midi(raw / "a/drums.mid", [(36 + k % 3, 0.5 * k, 0.5 * k + 0.25) for k in range(8)], drum=True)
    write_midi(raw / "a/late.mid", [(60, 1.5, 1.9)])  # silent first clip, then a note
    hanging = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack([mido.Message("note_on", note=64, velocity=90, time=480 * k) for k in range(4)])
    hanging.tracks.append(track)
    hanging.save(raw / "a/hanging.mid")
    records = [{"source": f"a/{name}.mid", "label": "a", "status": "rendered", "outputs": [f"a/{name}.wav"]}
               for name in ("drums", "late", "hanging")]
    names = ["a/drums.mid"] * 2 + ["a/late.mid"] * 2 + ["a/hanging.mid"] * 2
    result = table_features(np.array(names, dtype=object), np.array([n[:-4] + ".wav" for n in names], dtype=object),
                            np.array([0.0, 1.0] * 3), 1.0, records, raw)
    assert result.present.tolist() == [False, False, False, True, False, False]
    assert result.noteless == ["a/drums.mid", "a/hanging.mid"] and result.unreadable == {}
    assert result.quiet_clips == 1  # late.mid's first clip
    assert result.augmented is None  # plain renders only: the table gets no augmented column


def add_augmented(audio, copies=2):
    """Give every tone track ``copies`` augmented renders (5 s tones) in report.json, as render.augment does."""
    report = json.loads((audio / "report.json").read_text())
    for record in report["files"]:
        if record["status"] == "rejected":
            continue
        record["augmented"] = []
        for copy in range(1, copies + 1):
            name = record["outputs"][0].replace(".wav", f"__aug{copy}.wav")
            write_wav(audio / name, sine(600.0 + 50 * copy, 5.0, 8000, amplitude=0.3), 8000)
            record["augmented"].append({"output": name, "transpose": copy, "tempo": 1.0, "program": None,
                                        "soundfont": "FluidR3_GM.sf2"})
    (audio / "report.json").write_text(json.dumps(report))


def test_augmented_renders_are_cut_for_train_tracks_only_and_leave_the_split_alone(tmp_path, audio):
    code, plain = run_clip(tmp_path, audio, name="plain")
    assert code == 0
    add_augmented(audio)
    code, clips = run_clip(tmp_path, audio, name="augmented", clip={"max_clips_per_track": 3})
    assert code == 0
    with h5py.File(plain, "r") as table:
        plain_split = dict(zip(read_strings(table["track"]), read_strings(table["split"])))
    with h5py.File(clips, "r") as table:
        tracks, splits = read_strings(table["track"]), read_strings(table["split"])
        sources = read_strings(table["source"])
    assert dict(zip(tracks, splits)) == plain_split  # the same tracks in the same splits
    by_track = {}
    for track, source in zip(tracks, sources):
        by_track.setdefault(track, []).append(source)
    for track, split in plain_split.items():
        stem = track.replace(".mid", "")
        if split == "train":  # the cap of 3 for each plain render, and as many for each augmented one
            assert by_track[track] == [f"{stem}.wav"] * 3 + [f"{stem}__aug1.wav"] * 3 + [f"{stem}__aug2.wav"] * 3
        else:  # every clip of a val or test track: the cap bounds training only
            assert by_track[track] == [f"{stem}.wav"] * 5
    report = json.loads((tmp_path / "augmented.json").read_text())
    train_tracks = {label: sum(1 for t, s in plain_split.items() if s == "train" and t.startswith(label))
                    for label in "abc"}
    assert report["augmented_clips"] == {label: 6 * train_tracks[label] for label in "abc"}
    assert report["counts"]["a"]["train"]["clips"] == 9 * train_tracks["a"]
    assert json.loads((tmp_path / "plain.json").read_text())["augmented_clips"] == {"a": 0, "b": 0, "c": 0}


def test_augmented_renders_of_held_out_tracks_are_ignored(tmp_path, audio):
    add_augmented(audio, copies=1)
    code, clips = run_clip(tmp_path, audio, split={"holdout_classes": ["c"]})
    assert code == 0
    with h5py.File(clips, "r") as table:
        rows = list(zip(read_strings(table["track"]), read_strings(table["split"]), read_strings(table["source"])))
    assert not [row for row in rows if row[1] != "train" and "__aug" in row[2]]
    assert {row[2] for row in rows if row[0].startswith("c/")} == {f"c/t{i}.wav" for i in range(6)}
    assert any("__aug1" in row[2] for row in rows)


def test_a_damaged_augmented_render_of_a_train_track_stops_the_stage(tmp_path, audio, capsys):
    code, plain = run_clip(tmp_path, audio, name="plain")
    with h5py.File(plain, "r") as table:
        splits = dict(zip(read_strings(table["track"]), read_strings(table["split"])))
    add_augmented(audio, copies=1)
    train = sorted(track for track, split in splits.items() if split == "train")[0]
    held = sorted(track for track, split in splits.items() if split == "test")[0]
    (audio / held.replace(".mid", "__aug1.wav")).unlink()  # unused: a test track is scored on plain renders
    assert run_clip(tmp_path, audio, name="fine")[0] == 0
    wav = audio / train.replace(".mid", "__aug1.wav")
    wav.unlink()
    capsys.readouterr()
    assert run_clip(tmp_path, audio, name="broken")[0] == 1
    assert capsys.readouterr().err.startswith(f"clip: {wav}, rendered according to {audio / 'report.json'}, "
                                              f"is missing: ")


def test_featurize_writes_cqt_and_chroma_deterministically(tmp_path, audio):
    _, clips = run_clip(tmp_path, audio)
    pitch = {"kind": "cqt", "fmin": 32.703, "n_bins": 72, "bins_per_octave": 12}  # C1..B6, below 4 kHz
    _, first = run_featurize(tmp_path, clips, name="one", features=pitch)
    _, second = run_featurize(tmp_path, clips, name="two", features=pitch)
    assert digest(first) == digest(second)
    with h5py.File(first, "r") as table:
        assert table["features"].shape == (90, 72, 1 + 8000 // 256)
        assert table.attrs["band_mean"].shape == (72,)
        assert json.loads(table.attrs["params"])["features"]["kind"] == "cqt"
    _, chroma = run_featurize(tmp_path, clips, name="chroma", features={**pitch, "kind": "chroma"})
    with h5py.File(chroma, "r") as table:
        assert table["features"].shape == (90, 12, 1 + 8000 // 256)


@pytest.mark.parametrize("features, message", [
    ({"n_fft": 16384}, "features.n_fft must be at most 8000 samples (a clip of 8000 samples at 8000 Hz: "
                       "clip.clip_seconds x clip.sample_rate), got 16384"),
    ({"hop_length": 6000, "n_fft": 8000}, "features.hop_length must be at most 4000 samples (half a clip of 8000 "
                                          "samples at 8000 Hz: clip.clip_seconds x clip.sample_rate), got 6000"),
])
def test_a_window_or_hop_longer_than_the_clip_names_the_key(tmp_path, audio, capsys, features, message):
    """Found against the clips' length, before any work: an n_fft of 16384 took 40 s to give a flat table."""
    _, clips = run_clip(tmp_path, audio)
    capsys.readouterr()
    code, out = run_featurize(tmp_path, clips, features=features)
    assert code == 2 and not out.exists()
    assert capsys.readouterr().err == f"featurize: {tmp_path / 'params.yaml'}: {message}\n"


def test_a_constant_q_top_above_nyquist_names_n_bins(tmp_path, audio, capsys):
    _, clips = run_clip(tmp_path, audio)
    capsys.readouterr()
    code, out = run_featurize(tmp_path, clips, features={"kind": "cqt", "fmin": 32.703, "n_bins": 84,
                                                         "bins_per_octave": 12})
    assert code == 2 and not out.exists()
    assert capsys.readouterr().err == (
        f"featurize: {tmp_path / 'params.yaml'}: features.n_bins 84 from features.fmin 32.703 Hz reach 4122 Hz "
        "(the top filter's edge), above the clips' Nyquist frequency 4000 Hz\n")


def test_symbolic_features_asked_of_audio_sources_only_give_an_audio_table(tmp_path, audio, capsys):
    """With no note behind any training clip, a symbolic branch would learn nothing and then read a MIDI file's
    notes in predict: the table is an audio-only one, as with features.symbolic false, and featurize says so."""
    raw = tmp_path / "raw"
    report = json.loads((audio / "report.json").read_text())
    for record in report["files"]:
        record["source"] = record["source"].replace(".mid", ".wav")
        write_wav(raw / record["source"], sine(440.0, 5.0, 8000, 0.3), 8000)
    report["files"].sort(key=lambda r: r["source"])
    (audio / "report.json").write_text(json.dumps(report))
    _, clips = run_clip(tmp_path, audio)
    code, plain = run_featurize(tmp_path, clips)
    capsys.readouterr()
    code, table_path = run_symbolic_featurize(tmp_path, clips, audio, raw)
    out, err = capsys.readouterr()
    assert code == 0
    # 18 of the 19: the silent one is cut into no clip.
    assert err == ("featurize: features.symbolic is true, but no training clip has notes (18 audio sources): "
                   "audio features only\n")
    assert out.startswith("featurize: 90 clips -> logmel [32 x 32]; 1 local worker -> ")  # no "symbolic [44]"
    with h5py.File(table_path, "r") as table, h5py.File(plain, "r") as reference:
        assert "symbolic" not in table and "has_symbolic" not in table and "symbolic_mean" not in table.attrs
        assert np.array_equal(table["features"][:], reference["features"][:])
        assert json.loads(table.attrs["params"]) == json.loads(reference.attrs["params"])


# Runs a stage that receives SIGTERM (as from `timeout` or a CI runner) while it writes its first rows.
TERMINATED = """
import os, runpy, signal, sys
import musicid.h5
append = musicid.h5.RowWriter.append
def append_then_terminate(self, **columns):
    append(self, **columns)
    os.kill(os.getpid(), signal.SIGTERM)
musicid.h5.RowWriter.append = append_then_terminate
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_sigterm_leaves_the_previous_outputs_and_no_temporary_file(tmp_path, audio):
    params = write_params(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "clips.h5").write_bytes(b"the previous table")
    clip = subprocess.run([sys.executable, "-c", TERMINATED, str(PROJECT_ROOT / "stages" / "clip.py"),
                           "--params", str(params), "--audio", str(audio), "--out", str(out / "clips.h5"),
                           "--report", str(out / "clips.json"), "--jobs", "2"], capture_output=True, text=True,
                          env={"PYTHONPATH": str(PROJECT_ROOT), "MUSICID_PROGRESS": "0"}, timeout=120)
    assert (clip.returncode, clip.stdout, clip.stderr) == (
        143, "", "clip: terminated; " + AFTER_STOP + "\n")
    assert sorted(p.name for p in out.iterdir()) == ["clips.h5"]
    assert (out / "clips.h5").read_bytes() == b"the previous table"


def test_an_audio_only_table_from_unreadable_midi_files_names_them(tmp_path, audio, capsys):
    raw = tmp_path / "raw"
    for record in json.loads((audio / "report.json").read_text())["files"]:
        (raw / record["source"]).parent.mkdir(parents=True, exist_ok=True)
        (raw / record["source"]).write_bytes(b"MThd\x00\x00\x00\x06\x00\x01")  # every MIDI file cut short
    _, clips = run_clip(tmp_path, audio)
    capsys.readouterr()
    code, table_path = run_symbolic_featurize(tmp_path, clips, audio, raw)
    err = capsys.readouterr().err.splitlines()
    assert code == 0
    assert err[0].startswith("featurize: a/t0.mid: no symbolic features (unparseable: ")
    assert err[-1] == ("featurize: features.symbolic is true, but no training clip has notes (18 unreadable MIDI "
                       "files): audio features only")
    with h5py.File(table_path, "r") as table:
        assert "symbolic" not in table



def test_symbolic_numbers_that_barely_vary_in_training_are_not_blown_up():
    """A pitch class no training clip held was scaled by a spread of 1e-6: one such note in a file to predict
    sent its input to about 1e5 and flipped the answer."""
    values = np.zeros((100, 4), np.float32)
    values[:, 0] = np.linspace(0.0, 1.0, 100)  # an ordinary spread: kept
    values[0, 1] = 0.001  # one clip in a hundred, a trace: its own scale
    values[:, 2] = 0.25  # never varies: its own scale
    values[::2, 3] = 0.021  # the smallest spread of the default run's tables (0.0105 here): kept
    mean, std = FEATURIZE.symbolic_stats(values)
    assert std[0] == pytest.approx(values[:, 0].std(), rel=1e-5) and std[3] == pytest.approx(0.0105, rel=1e-4)
    assert std[1] == 1.0 and std[2] == 1.0
    unseen = np.array([0.5, 0.3, 0.75, 0.0], np.float32)  # the two quiet numbers where training never had them
    assert np.abs((unseen - mean) / std)[1:3].max() < 1


def test_the_summary_says_why_every_clip_without_notes_has_none():
    from musicid.symbolic import TableSymbolic

    symbolic = TableSymbolic(np.zeros((9, 44), np.float32), np.array([True] * 3 + [False] * 6), 1, {"b.mid": "x"},
                             ["d.mid"], 2)
    assert FEATURIZE.symbolic_summary(symbolic) == (
        "; symbolic [44] for 3 of 9 clips (1 audio source, 1 unreadable MIDI file, 1 MIDI file with no note "
        "sounding, 2 clips of other MIDI files with no note sounding)")


def test_a_stop_during_the_notes_pool_shutdown_is_not_swallowed(tmp_path, monkeypatch):
    """zip left the map of the notes' readers suspended; its pool was shut down when the garbage collector took
    it, which printed and dropped a Ctrl-C or SIGTERM arriving then: featurize ran on and exited 0."""
    from concurrent.futures import process

    from musicid.symbolic import table_features

    raw = tmp_path / "raw"
    names = [f"a/t{k}.mid" for k in range(3)]
    for k, name in enumerate(names):
        write_midi(raw / name, [(60 + k, 0.0, 1.0)])
    records = [{"source": name, "label": "a", "status": "rendered", "outputs": [name[:-4] + ".wav"]}
               for name in names]
    real = process.ProcessPoolExecutor.shutdown

    def shutdown(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise KeyboardInterrupt  # the stage's SIGTERM handler raises a subclass of it

    monkeypatch.setattr(process.ProcessPoolExecutor, "shutdown", shutdown)
    with pytest.raises(KeyboardInterrupt):
        table_features(np.array(names, dtype=object), np.array([n[:-4] + ".wav" for n in names], dtype=object),
                       np.zeros(3), 1.0, records, raw, jobs=2)


def test_one_recording_that_gives_most_of_a_class_is_warned_about():
    """An hour-long recording among 3-minute pieces gave 69 % of its class's training clips without a word."""
    dominant_tracks = load_stage("clip").dominant_tracks
    tracks = {name: {"label": label} for name, label in
              (("a/long", "a"), ("a/s1", "a"), ("a/s2", "a"), ("a/t1", "a"), ("a/t2", "a"), ("a/t3", "a"),
               ("b/x", "b"), ("b/y", "b"), ("b/z", "b"))}
    splits = {"a/long": "train", "a/s1": "train", "a/s2": "train", "a/t1": "test", "a/t2": "test", "a/t3": "test",
              "b/x": "train", "b/y": "train", "b/z": "train"}
    clips = Counter({"a/long": 900, "a/s1": 45, "a/s2": 50, "a/t1": 40, "a/t2": 45, "a/t3": 50,
                     "b/x": 50, "b/y": 60, "b/z": 100})  # b/z: 100 of 210, not most
    assert dominant_tracks(clips, tracks, splits, ["a", "b"], 0) == [
        "a/long gives 900 of a's 995 train clips (3 tracks): most of what the model learns of a is that one "
        "track; set clip.max_clips_per_track or clip.max_clips_per_class to bound it, or "
        "train.track_balance to weigh it less"]
    clips["a/t3"] = 600  # the long one in test: its clip-level scores, not its track-level ones
    assert dominant_tracks(clips, tracks, splits, ["a"], 16)[1] == (
        "a/t3 gives 600 of a's 685 test clips (3 tracks): a's clip-level test scores are mostly that one "
        "track (its track-level ones count it once)")
    # With two tracks in a split one of them always gives most: nothing to say.
    assert dominant_tracks(clips, tracks, {**splits, "a/s2": "val"}, ["a"], 0) == [dominant_tracks(
        clips, tracks, splits, ["a"], 0)[1]]


def in_folders(root, folders: dict[str, str]) -> None:
    """Give the report's records of the sources ``folders`` names the sub-folders of their label folder they
    came from (``"work/part"``: two deep), as render copies them from download's manifest: the first as
    ``folder``, all of them as ``parent`` when two or more."""
    report = json.loads((root / "report.json").read_text())
    for record in report["files"]:
        if record["source"] in folders:
            record["folder"] = folders[record["source"]].split("/")[0]
            if "/" in folders[record["source"]]:
                record["parent"] = folders[record["source"]]
    (root / "report.json").write_text(json.dumps(report))


def table_splits(clips) -> dict[str, str]:
    with h5py.File(clips, "r") as table:
        return dict(zip(read_strings(table["track"]), read_strings(table["split"])))


def test_split_group_folder_keeps_a_folders_tracks_on_one_side(tmp_path, audio, capsys):
    """Three works of three movements each in class a, two of b and c: with split.group folder no work is on
    two sides of the split, in any fold; by track (the default) the movements of a work are dealt apart, and
    the stage says that folders exist and what split.group folder would do."""
    for label in "abc":
        add_tracks(audio, label, 9, 2.0, prefix="work", frequency={"a": 250.0, "b": 370.0, "c": 560.0}[label])
    works = {f"{label}/work{i}.mid": f"opus{i // 3}" for label in "abc" for i in range(9)}
    in_folders(audio, works)
    code, clips = run_clip(tmp_path, audio, name="by_track")
    assert code == 0
    by_track = table_splits(clips)
    assert any(len({by_track[t] for t in works if works[t] == work and t.startswith(label)}) > 1
               for label in "abc" for work in ("opus0", "opus1", "opus2"))
    assert "clip: note: 27 of the 46 tracks sit in sub-folders of their label folder" in capsys.readouterr().err
    for fold in range(3):
        code, clips = run_clip(tmp_path, audio, name=f"fold{fold}", split={"group": "folder", "folds": 3,
                                                                           "fold": fold, "val": 0.2})
        assert code == 0
        splits = table_splits(clips)
        for label in "abc":
            for work in ("opus0", "opus1", "opus2"):
                sides = {splits[t] for t in works if works[t] == work and t.startswith(f"{label}/")}
                assert len(sides) == 1, (fold, label, work, sides)
        assert {splits[t] for t in works if t.startswith("a/")} >= {"test"}  # each class tested in each fold
        assert "clip: split.group folder: 28 groups of 46 tracks (27 with a folder: a sub-folder" in capsys.readouterr().err
    # Every work is tested in exactly one fold.
    tested = [{t for t, split in table_splits(tmp_path / f"fold{fold}.h5").items() if split == "test"}
              for fold in range(3)]
    assert sorted(works) == sorted(t for fold in tested for t in fold if t in works)


def test_a_class_of_too_few_folders_is_left_out_naming_the_groups(tmp_path, audio, capsys):
    add_tracks(audio, "d", 6, 3.0)
    in_folders(audio, {f"d/n{i}.mid": "one_album" if i < 4 else "other_album" for i in range(6)})
    code, clips = run_clip(tmp_path, audio, split={"group": "folder"})
    assert code == 0
    reason = ("2 groups of rendered tracks (split.group folder); split.val 0.2 and split.test 0.2 need at least 3 "
              "(one for each split used)")
    assert json.loads((tmp_path / "clips.json").read_text())["excluded_classes"] == {"d": reason}
    code, clips = run_clip(tmp_path, audio, name="by_track")  # by track, its 6 tracks are enough
    assert code == 0 and "d" in json.loads((tmp_path / "by_track.json").read_text())["counts"]


def test_split_group_parent_deals_each_folder_a_track_sits_in_as_one(tmp_path, audio, capsys):
    """A collection two folders deep (``a/Sonatas/op1/*.mid``): by its first folder each class is one group,
    too few, and left out; split.group parent deals each work's folder as one, apart from the others."""
    for label in "def":
        add_tracks(audio, label, 9, 2.0, prefix="work", frequency={"d": 250.0, "e": 370.0, "f": 560.0}[label])
    works = {f"{label}/work{i}.mid": f"Sonatas/op{i // 3}" for label in "def" for i in range(9)}
    in_folders(audio, works)
    code, clips = run_clip(tmp_path, audio, name="by_folder", split={"group": "folder"})
    # The classes of one first folder each are left out; a, b and c, without folders, are scored.
    assert code == 0
    excluded = json.loads((tmp_path / "by_folder.json").read_text())["excluded_classes"]
    assert sorted(excluded) == ["d", "e", "f"] and excluded["d"].startswith("1 group of rendered tracks")
    assert ("clip: note: 27 rendered tracks sit two or more folders below their label folder (Sonatas/op2/1.mid): "
            "split.group folder deals the whole first folder as one group, split.group parent each folder a track "
            "sits in") in capsys.readouterr().err
    code, clips = run_clip(tmp_path, audio, name="by_parent", split={"group": "parent"})
    assert code == 0
    assert json.loads((tmp_path / "by_parent.json").read_text()).get("excluded_classes", {}) == {}
    splits = table_splits(clips)
    for label in "def":
        sides = [{splits[t] for t in works if works[t] == f"Sonatas/op{i}" and t.startswith(f"{label}/")}
                 for i in range(3)]
        assert all(len(side) == 1 for side in sides), (label, sides)  # a work's tracks on one side
        assert set().union(*sides) == {"train", "val", "test"}  # its three works dealt apart
    err = capsys.readouterr().err
    assert "clip: split.group parent: 28 groups of 46 tracks (27 with a folder: a sub-folder" in err
    assert "clip: note:" not in err


def test_split_group_folder_on_a_collection_without_folders_is_warned_about(tmp_path, audio, capsys):
    code, clips = run_clip(tmp_path, audio, split={"group": "folder"})
    assert code == 0
    assert "clip: warning: split.group folder: no track sits in a sub-folder" in capsys.readouterr().err
    code, by_track = run_clip(tmp_path, audio, name="by_track")
    assert table_splits(clips) == table_splits(by_track)  # each track alone: the split by track


def test_the_versions_of_a_work_are_on_one_side_of_every_fold(tmp_path, audio, capsys):
    """Two versions of each of three works of class a (download's manifest names each one's work, render copies
    it): by track, whatever the fold, a work's versions are tested, validated or trained on together."""
    add_tracks(audio, "a", 6, 2.0, prefix="version", frequency=250.0)
    report = json.loads((audio / "report.json").read_text())
    works = {f"a/version{i}.mid": f"a/version{i - i % 2}.mid" for i in range(6)}
    for record in report["files"]:
        if record["source"] in works:
            record["work"] = works[record["source"]]
    assert sum("work" in record for record in report["files"]) == 6
    (audio / "report.json").write_text(json.dumps(report))
    for fold in range(3):
        code, clips = run_clip(tmp_path, audio, name=f"fold{fold}", split={"folds": 3, "fold": fold, "val": 0.2})
        assert code == 0
        splits = table_splits(clips)
        for work in set(works.values()):
            assert len({splits[t] for t in works if works[t] == work}) == 1, (fold, work, splits)
        assert "clip: 6 tracks are versions of 3 works (download found them by their notes" in \
            capsys.readouterr().err
    tested = [{t for t, split in table_splits(tmp_path / f"fold{fold}.h5").items() if split == "test"}
              for fold in range(3)]
    assert sorted(works) == sorted(t for fold in tested for t in fold if t in works)


def test_versions_on_two_sides_of_a_collections_own_split_are_warned_of(tmp_path, audio, capsys):
    """A collection's own split is used as it is, but versions of one work on two sides of it are named; a version
    whose other versions were not rendered is no work held twice."""
    add_tracks(audio, "a", 5, 2.0, prefix="version", frequency=250.0)
    report = json.loads((audio / "report.json").read_text())
    works = {"a/version0.mid": "a/version0.mid", "a/version1.mid": "a/version0.mid",  # train and test
             "a/version2.mid": "a/version2.mid", "a/version3.mid": "a/version2.mid",  # both train
             "a/version4.mid": "a/lost.mid"}  # its other version rejected by render
    own = {"a/version1.mid": "test"}
    for record in report["files"]:
        if record["status"] == "rendered":
            number = int(record["source"][-5]) if record["source"][-5].isdigit() else 0
            record["split"] = own.get(record["source"], ["train", "train", "train", "val", "test", "test"][number]
                                      if "version" not in record["source"] else "train")
            if record["source"] in works:
                record["work"] = works[record["source"]]
    (audio / "report.json").write_text(json.dumps(report))
    code, clips = run_clip(tmp_path, audio)
    assert code == 0
    err = capsys.readouterr().err
    assert ("clip: warning: 1 of 2 works held in two versions or more has versions on two sides of the "
            "collection's own split (dataset.label_table.split_column), first a/version0.mid") in err
    assert table_splits(clips)["a/version1.mid"] == "test"  # the split as given
    # Dealt by the pipeline instead, the two works are counted (the lone version is not) and no warning is given.
    for record in report["files"]:
        record.pop("split", None)
    (audio / "report.json").write_text(json.dumps(report))
    assert run_clip(tmp_path, audio, name="dealt")[0] == 0
    err = capsys.readouterr().err
    assert "clip: 4 tracks are versions of 2 works" in err and "warning: 1 of 2 works" not in err


def test_a_class_too_small_counts_the_versions_of_a_work_as_one(tmp_path, audio, capsys):
    """With split.group track, a class of three tracks two of which are versions of one work has two units: too
    few for val and test and train, and the reason says it counts units."""
    add_tracks(audio, "d", 3, 2.0, prefix="piece", frequency=700.0)
    report = json.loads((audio / "report.json").read_text())
    for record in report["files"]:
        if record["source"] in ("d/piece0.mid", "d/piece1.mid"):
            record["work"] = "d/piece0.mid"
    (audio / "report.json").write_text(json.dumps(report))
    code, _ = run_clip(tmp_path, audio, split={"val": 0.2, "test": 0.2})
    assert code == 0
    captured = capsys.readouterr()
    assert "2 units of rendered tracks (the versions of one work are one)" in captured.out + captured.err

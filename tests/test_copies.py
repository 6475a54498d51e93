"""Recordings saved twice (a lossy copy, another level, a longer lead-in): found in the clip stage, one kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from musicid.copies import copy_groups, fingerprint, similarity
from tests.conftest import PROJECT_ROOT, load_stage, write_wav

RATE = 16000
CLIP = load_stage("clip")


def music(seed: int, seconds: float) -> np.ndarray:
    """A tune of seeded random notes (a tone and two overtones, a decay each), as a recording would vary."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * RATE), np.float32)
    start = 0
    while start < len(out):
        length = int(rng.uniform(0.15, 0.6) * RATE)
        t = np.arange(min(length, len(out) - start)) / RATE
        pitch = 110 * 2 ** (rng.integers(0, 36) / 12)
        tone = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in (1, 2, 3)) * np.exp(-3 * t)
        out[start:start + len(t)] += (0.2 * rng.uniform(0.3, 1.0) * tone).astype(np.float32)
        start += length
    return out


def save(path, audio, fmt="WAV", subtype=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    # In blocks: libsndfile's Vorbis encoder can crash when handed a long signal in one write.
    with soundfile.SoundFile(path, "w", RATE, 1, format=fmt, subtype=subtype) as out:
        for start in range(0, len(audio), 4096):
            out.write(audio[start:start + 4096])
    return path


@pytest.mark.parametrize("seconds", [8.0, 30.0])  # compared whole, and first by its first 20 s
def test_a_lossy_copy_another_level_and_a_lead_in_are_copies_and_other_music_is_not(tmp_path, seconds):
    tune = music(1, seconds)
    paths = {"original": save(tmp_path / "o.wav", tune),
             "vorbis": save(tmp_path / "v.ogg", tune, "OGG", "VORBIS"),
             "half": save(tmp_path / "h.wav", 0.5 * tune),
             "lead_in": save(tmp_path / "l.wav", np.concatenate([np.zeros(RATE // 2, np.float32), tune])),
             "other": save(tmp_path / "x.wav", music(2, seconds)),
             "same_length_noise": save(tmp_path / "n.wav", np.random.default_rng(3).normal(
                 0, 0.1, int(seconds * RATE)).astype(np.float32))}
    prints = {name: fingerprint(path) for name, path in paths.items()}
    for name in ("vorbis", "half", "lead_in"):
        assert similarity(prints["original"], prints[name]) >= 0.99, name
    assert similarity(prints["original"], prints["other"]) < 0.5
    assert copy_groups(prints) == [["half", "lead_in", "original", "vorbis"]]


def test_a_steady_tone_or_a_short_sound_is_no_copy_of_another(tmp_path):
    # Two files of one steady tone: nothing varies in time to tell them apart or alike (download finds files of
    # the same samples; clip would compare numerical noise).
    tone = np.sin(2 * np.pi * 440 * np.arange(10 * RATE) / RATE).astype(np.float32)
    short = music(4, 3.0)  # shorter than 5 s: too little to tell
    prints = {"a": fingerprint(save(tmp_path / "a.wav", tone)), "b": fingerprint(save(tmp_path / "b.wav", tone)),
              "c": fingerprint(save(tmp_path / "c.wav", short)), "d": fingerprint(save(tmp_path / "d.wav", short))}
    assert copy_groups(prints) == []


def test_copies_of_copies_join_one_group_and_lengths_far_apart_are_not_compared():
    rng = np.random.default_rng(0)

    def smooth(frames):  # varying over seconds, as music's spectrum does, not from one frame to the next
        walk = np.cumsum(rng.normal(size=(frames, 32)), axis=0)
        return (walk - walk.mean(axis=0)).astype(np.float32)

    base = smooth(400)
    prints = {"a": base, "b": base[3:] + 0.01, "c": base[:-5], "d": smooth(400),
              "e": np.concatenate([base, base])}  # twice as long: not compared, whatever it holds
    assert copy_groups(prints) == [["a", "b", "c"]]


def test_a_copy_cut_short_at_its_start_by_part_of_a_second_or_more_is_found(tmp_path):
    # Framed from its onset, a copy whose first 0.5 s or 1.05 s were cut starts elsewhere in the music: the lag
    # search (coarse, then by whole frames and by quarter frames) must still line it up.
    from musicid.copies import HOP, PHASES

    tune = music(5, 30.0)
    paths = {"original": save(tmp_path / "o.wav", tune),
             "cut_half": save(tmp_path / "a.ogg", tune[RATE // 2:], "OGG", "VORBIS"),
             "cut_more": save(tmp_path / "b.wav", tune[int(1.05 * RATE):]),
             "other": save(tmp_path / "x.wav", music(6, 30.0))}
    prints = {name: fingerprint(path) for name, path in paths.items()}
    assert copy_groups(prints, lambda name, k: fingerprint(paths[name], k * HOP // PHASES)) == [
        ["cut_half", "cut_more", "original"]]


def test_two_pieces_silent_at_the_same_moments_are_not_copies(tmp_path):
    # Notes of 4 s between 8 s of digital silence: where both fall silent must not make them alike.
    gap = np.zeros(8 * RATE, np.float32)
    prints = {seed: fingerprint(save(tmp_path / f"{seed}.wav", np.concatenate(
        [part for index in range(5) for part in (music(100 * seed + index, 4.0), gap)])))
        for seed in range(4)}
    assert copy_groups(prints) == []
    # The silent frames inside are 0: they weigh nothing either way (on the default dataset's renders cut into
    # 4 s pieces between 8 s of silence, different pieces measured up to 0.987 before, 0.81 after).
    silent = prints[0][np.abs(prints[0]).sum(axis=1) == 0]
    assert len(silent) >= 4 * 70  # 4 gaps of 8 s, less the frames that reach into the notes around them


def test_only_pairs_alike_at_first_are_compared_whole(monkeypatch):
    # 600 excerpts of one length (10 s, the short first comparison): 179,700 pairs, compared coarsely all at
    # once; the whole comparison only for the few alike at first (here the one copy).
    import musicid.copies as copies

    rng = np.random.default_rng(1)

    def smooth(frames):
        walk = np.cumsum(rng.normal(size=(frames, 32)), axis=0)
        return (walk - walk.mean(axis=0)).astype(np.float32)

    prints = {f"x{index:03d}": smooth(100) for index in range(600)}
    prints["x000 copy"] = prints["x000"][2:] + 0.01
    whole = []
    real = copies.similarity
    monkeypatch.setattr(copies, "similarity", lambda a, b: whole.append(1) or real(a, b))
    assert copies.copy_groups(prints) == [["x000", "x000 copy"]]
    assert len(whole) < 600


def collection(root, tracks):
    """data/audio of recordings (track id -> (label, samples)) and its report."""
    files = []
    for source, (label, audio) in tracks.items():
        name = source.rsplit(".", 1)[0] + ".wav"
        write_wav(root / name, audio, RATE)
        files.append({"source": source, "label": label, "status": "rendered", "reason": None,
                      "duration_s": round(len(audio) / RATE, 3), "outputs": [name]})
    (root / "report.json").write_text(json.dumps({"files": sorted(files, key=lambda r: r["source"])}))


def test_the_clip_stage_keeps_one_recording_of_copies_and_none_of_copies_under_two_labels(tmp_path, monkeypatch,
                                                                                          capsys):
    import yaml

    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    tracks = {f"{label}/t{index}.flac": (label, music(10 * index + ord(label), 8.0))
              for label in "abc" for index in range(5)}
    tracks["a/t0 (mp3).mp3"] = ("a", 0.5 * tracks["a/t0.flac"][1])  # the same recording, at half the level
    tracks["a/t0 again.ogg"] = ("a", np.concatenate([np.zeros(RATE // 4, np.float32), tracks["a/t0.flac"][1]]))
    tracks["c/t1 copy.wav"] = ("c", tracks["b/t1.flac"][1])  # one recording under two labels
    tracks["a/score.mid"] = ("a", tracks["b/t2.flac"][1])  # a MIDI file's render is not compared here
    tracks["d/x.wav"] = ("d", tracks["c/t3.flac"][1])  # a class of copies only: named as left out, not lost
    collection(tmp_path / "audio", tracks)
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["clip"].update({"sample_rate": RATE, "clip_seconds": 2.0, "hop_seconds": 2.0})
    params["split"].update({"val": 0.2, "test": 0.2})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    arguments = ["--params", str(tmp_path / "params.yaml"), "--audio", str(tmp_path / "audio"),
                 "--out", str(tmp_path / "clips.h5"), "--report", str(tmp_path / "report.json"), "--jobs", "2"]
    assert CLIP.main(arguments) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["copies_left_out"] == {
        "a/t0 (mp3).mp3": "copy: the same recording as a/t0.flac",  # the lossless one is kept
        "a/t0 again.ogg": "copy: the same recording as a/t0.flac",
        "b/t1.flac": "ambiguous_label: the same recording as c/t1 copy.wav, under b, c",
        "c/t1 copy.wav": "ambiguous_label: the same recording as b/t1.flac, under b, c",
        "c/t3.flac": "ambiguous_label: the same recording as d/x.wav, under c, d",
        "d/x.wav": "ambiguous_label: the same recording as c/t3.flac, under c, d"}
    assert sum(cell["tracks"] for label in report["counts"].values() for cell in label.values()) == len(tracks) - 6
    assert report["excluded_classes"] == {"d": "every track left out as the same recording as another file's (6 "
                                                f"such tracks are listed under copies_left_out in {tmp_path}/report.json)"}
    err = capsys.readouterr().err
    assert "clip: warning: 6 recordings left out, the same audio as another file" in err and "copies_left_out" in err
    params["split"]["holdout_classes"] = ["d"]  # held out, but every track of it went as a copy: said so
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert CLIP.main(arguments) != 0
    assert "split.holdout_classes names d: every track left out as the same recording" in capsys.readouterr().err
    params["split"]["holdout_classes"] = []
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    first = (tmp_path / "clips.h5").read_bytes()
    assert CLIP.main(arguments) == 0 and (tmp_path / "clips.h5").read_bytes() == first  # the same bytes again
    # Turned off, every source is a track of its own, copies and all.
    params["clip"]["find_copies"] = False
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    capsys.readouterr()
    assert CLIP.main(arguments) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert "copies_left_out" not in report
    assert list(report["excluded_classes"]) == ["d"] and report["excluded_classes"]["d"].startswith("1 rendered track;")
    assert sum(cell["tracks"] for label in report["counts"].values() for cell in label.values()) == len(tracks) - 1
    assert "recordings left out" not in capsys.readouterr().err
    params["clip"]["find_copies"] = True
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    # Without copies the report is as it always was: no copies_left_out.
    for source in ("a/t0 (mp3).mp3", "a/t0 again.ogg", "c/t1 copy.wav", "d/x.wav"):
        del tracks[source]
    collection(tmp_path / "plain", tracks)
    arguments[3] = str(tmp_path / "plain")
    assert CLIP.main(arguments) == 0
    assert "copies_left_out" not in json.loads((tmp_path / "report.json").read_text())

"""Track-level splits and fixed-length clips.

Splits are assigned to whole tracks before any clip is cut, stratified by
label and seeded, so no track ever has clips on both sides of a split; all
renders of one source (one per SoundFont, and its augmented renders, which
only training tracks use) are one track.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from musicid.audio import read_audio, resample, wav_bytes_damage, wav_damage  # noqa: F401 (the clip stage's)

if TYPE_CHECKING:
    from musicid.params import ClipParams

SILENCE_FRAME_SECONDS = 0.05
# A track's level is measured over its frames within this many dB of its loudest one:
# silence, fades and reverberant tails do not pull it down.
TRACK_LEVEL_RANGE_DB = 40.0


def tracks_needed(val: float, test: float, folds: int = 0) -> int:
    """Tracks a class needs to be split.

    By fractions (``folds`` 0): one for train, plus one for val and one for
    test when they are used.  In ``folds`` >= 2 folds (``test`` unused): one
    test track in every fold, and beside the fold holding the most of them
    (``ceil(n / folds)``) one train track left, and one val track when ``val``
    is positive; that is ``folds`` tracks, but 4 for 2 folds with val.
    """
    if folds == 0:
        return 1 + (val > 0) + (test > 0)
    left = 1 + (val > 0)
    needed = folds
    while needed - math.ceil(needed / folds) < left:
        needed += 1
    return needed


def split_units(tracks: dict[str, dict], group: str) -> dict[str, str]:
    """track id -> the unit the split deals (``split.group``), from render-report records (track id -> record).

    ``track``: each track is its own unit.  ``folder``: the tracks whose sources
    sat in one sub-folder of their label folder (the record's ``folder``: a
    work's movements, an album's tracks) are one unit, ``<label>/<folder>/``;
    a track directly in its label folder is its own unit, as with ``track``.
    ``parent``: the tracks whose sources sat in one folder are one unit, however
    deep below the label folder (the record's ``parent`` when two or more deep,
    else its ``folder``): ``<label>/<folders>/``.

    Whatever ``group``, the versions of one work (the record's ``work``: MIDI files whose melodic patterns are
    mostly the same, musicid.dataset.versions_of_works) are in one unit, with the units of the other versions:
    named by the first of those units' names.
    """
    units = {}
    for track, record in tracks.items():
        folder = (record.get("parent") if group == "parent" else None) or record.get("folder")
        units[track] = f"{record['label']}/{folder}/" if folder and group != "track" else track
    parent = {unit: unit for unit in units.values()}

    def root(unit: str) -> str:
        while parent[unit] != unit:
            unit = parent[unit]
        return unit

    first_of_work: dict[tuple[str, str], str] = {}
    for track in sorted(tracks):
        work = tracks[track].get("work")
        if work:
            other = first_of_work.setdefault((tracks[track]["label"], work), units[track])
            low, high = sorted((root(units[track]), root(other)))
            parent[high] = low
    return {track: root(unit) for track, unit in units.items()}


def versions_held(tracks: dict[str, dict]) -> dict[str, tuple[str, str]]:
    """track id -> (label, work) for the tracks of each work (the record's ``work``) held in two versions or more
    among ``tracks`` (render-report records): a version whose others were not rendered is a track as any other."""
    from collections import Counter

    held = Counter((record["label"], record["work"]) for record in tracks.values() if record.get("work"))
    return {track: (record["label"], record["work"]) for track, record in tracks.items()
            if record.get("work") and held[record["label"], record["work"]] > 1}


def deal_units(tracks: dict[str, dict], units: dict[str, str], val: float, test: float, seed: int,
               holdout_classes: list[str] = (), folds: int = 0, fold: int = 0, order: str = "shuffle",
               ) -> dict[str, str]:
    """track id -> split: :func:`assign_splits` of the units (:func:`split_units`), each track in its unit's."""
    unit_labels = {units[track]: record["label"] for track, record in tracks.items()}
    dealt = assign_splits(unit_labels, val, test, seed, holdout_classes, folds, fold, order)
    return {track: dealt[units[track]] for track in sorted(tracks)}


def too_small_classes(tracks: dict[str, str], val: float, test: float,
                      holdout_classes: list[str] = (), folds: int = 0,
                      units: tuple[str, str] = ("rendered track", "rendered tracks")) -> dict[str, str]:
    """Known classes with fewer tracks than the split needs, each with the reason (label -> reason).

    tracks: track id -> label (or, with ``split.group: folder``, unit -> label, and ``units`` the words for
    them, singular and plural).  Such a class cannot have a track in every
    split (in every fold's test split, with ``folds`` >= 2); trained on with
    all its tracks in train, it is scored on nothing and can take over the
    predictions, so it is left out.  Held-out classes go to test whole and
    need no split.  The answer does not depend on which fold is test, so
    every fold of a cross-validation leaves out the same classes.
    """
    needed = tracks_needed(val, test, folds)
    if folds:
        wanted = f"split.folds {folds} and split.val {val:g} need at least {needed} (a test track in every fold, " \
                 f"and a train{' and a val' if val > 0 else ''} track beside the largest fold)"
    else:
        wanted = f"split.val {val:g} and split.test {test:g} need at least {needed} (one for each split used)"
    counts: dict[str, int] = {}
    for label in tracks.values():
        counts[label] = counts.get(label, 0) + 1
    return {label: f"{count} {units[count != 1]}; {wanted}"
            for label, count in sorted(counts.items()) if count < needed and label not in holdout_classes}


def split_sizes(n: int, val: float, test: float) -> tuple[int, int]:
    """(n_test, n_val) of a known class of ``n >= tracks_needed(val, test)`` tracks.

    ``round(test * n)`` and ``round(val * n)``, at least one each when the
    fraction is positive, and at least one track left for train: when the
    rounding takes every track, val and test give one back in turn (the
    larger first, val on a tie).
    """
    if n < tracks_needed(val, test):
        raise ValueError(f"{n} tracks cannot be split with val {val} and test {test}")
    n_test = max(round(test * n), 1) if test > 0 else 0
    n_val = max(round(val * n), 1) if val > 0 else 0
    while n_test + n_val >= n:
        if n_val >= n_test and n_val > (val > 0):
            n_val -= 1
        else:
            n_test -= 1
    return n_test, n_val


def _order(members: list[str], *key: object, order: str = "shuffle") -> list[str]:
    """``members`` (sorted track ids) in an order seeded with ``key`` (e.g. seed, label): ``shuffle``, one
    permutation of them all drawn by a generator (a track added anywhere reorders every one); ``stable``, each
    track's place by a hash of ``key`` and its own id, so that the others keep their order whatever is added or
    taken away (split.order)."""
    if order == "stable":
        return sorted(members, key=lambda member: hashlib.sha256(":".join(map(str, (*key, member))).encode()).digest())
    key_seed = int.from_bytes(hashlib.sha256(":".join(map(str, key)).encode()).digest()[:8], "little")
    return [members[i] for i in np.random.default_rng(key_seed).permutation(len(members))]


def _by_label(tracks: dict[str, str]) -> dict[str, list[str]]:
    """label -> its sorted track ids, labels sorted."""
    by_label: dict[str, list[str]] = {}
    for track, label in tracks.items():
        by_label.setdefault(label, []).append(track)
    return {label: sorted(by_label[label]) for label in sorted(by_label)}


def assign_folds(tracks: dict[str, str], folds: int, seed: int, holdout_classes: list[str] = (),
                 order: str = "shuffle") -> dict[str, int]:
    """Deal the tracks of the known classes into ``folds`` folds: track id -> fold (0 .. folds - 1).

    tracks: track id -> label.  Stratified and grouped: each class's tracks,
    in an order seeded by ``seed`` and the label (``order``, see :func:`_order`), are dealt round-robin, so
    the fold sizes of one class differ by at most one and a track (with all
    its renders) is in one fold.  The deal goes on across the classes (in
    label order) where the previous class stopped, so that the fold sizes
    overall differ by at most one too.  Held-out classes are in no fold.
    """
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    assignment: dict[str, int] = {}
    dealt = 0
    for label, members in _by_label(tracks).items():
        if label in holdout_classes:
            continue
        for track in _order(members, seed, label, order=order):
            assignment[track] = dealt % folds
            dealt += 1
    return assignment


def assign_splits(tracks: dict[str, str], val: float, test: float, seed: int,
                  holdout_classes: list[str] = (), folds: int = 0, fold: int = 0,
                  order: str = "shuffle") -> dict[str, str]:
    """Map each track id to "train", "val" or "test".

    tracks: track id -> label.  Every track of a class in ``holdout_classes``
    goes to test.  For every other label:

    - ``folds`` 0: its tracks are put in an order seeded by ``seed`` and the
      label (``order``: :func:`_order`), then :func:`split_sizes` tracks go to
      test and val, the rest (at least one) to train; with ``stable``, a track
      added to a class moves at most one other across each of its boundaries,
      or two across the val | train one when rounding gives test and val a
      track more each at once;
    - ``folds`` >= 2: the tracks of fold ``fold`` of :func:`assign_folds` go
      to test (``test`` is unused); of the others, ``round(val * n)`` (at
      least one when ``val`` > 0, see :func:`split_sizes`), drawn with a
      generator seeded by ``seed``, the label and ``fold``, go to val and the
      rest (at least one) to train.

    A known class with fewer tracks than the split needs
    (:func:`too_small_classes`) is a ValueError: the caller leaves it out first.
    """
    by_label = _by_label(tracks)
    folded = assign_folds(tracks, folds, seed, holdout_classes, order) if folds else {}
    splits: dict[str, str] = {}
    for label, members in by_label.items():
        if label in holdout_classes:
            splits.update({track: "test" for track in members})
            continue
        if not folds:
            n_test, n_val = split_sizes(len(members), val, test)
            for rank, track in enumerate(_order(members, seed, label, order=order)):
                splits[track] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            continue
        if len(members) < tracks_needed(val, test, folds):
            raise ValueError(f"{len(members)} tracks of {label} cannot be split into {folds} folds with val {val}")
        splits.update({track: "test" for track in members if folded[track] == fold})
        rest = [track for track in members if folded[track] != fold]
        _, n_val = split_sizes(len(rest), val, 0.0)
        for rank, track in enumerate(_order(rest, seed, label, fold, order=order)):
            splits[track] = "val" if rank < n_val else "train"
    return {track: splits[track] for track in sorted(splits)}


def clip_starts(n_samples: int, clip_samples: int, hop_samples: int) -> np.ndarray:
    """Start samples of every whole clip: 0, hop, 2*hop, ... while the clip fits.

    int64 [n_clips]; empty when the audio is shorter than one clip.
    """
    if n_samples < clip_samples:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_samples - clip_samples + 1, hop_samples, dtype=np.int64)


def evenly_spaced(count: int, cap: int) -> np.ndarray:
    """Indices of at most ``cap`` items spread evenly over ``count`` (all when cap is 0)."""
    if cap == 0 or count <= cap:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, cap)).astype(np.int64))


def load_mono(source: str | Path | bytes, sample_rate: int) -> np.ndarray:
    """Read an audio file (a path, or the file's bytes) as float32 [n] mono at ``sample_rate`` Hz (soxr)."""
    if isinstance(source, bytes):
        import soundfile

        audio, file_rate = soundfile.read(io.BytesIO(source), dtype="float32", always_2d=True)
    else:
        audio, file_rate = read_audio(source)
    return resample(audio.mean(axis=1, dtype=np.float32), file_rate, sample_rate)


# Samples squared (as float64) at a time by the level measures: 8 MB, whatever the track's length.
BLOCK_SAMPLES = 1 << 20


def silent_fraction(clips: np.ndarray, frame_samples: int, min_rms: float) -> np.ndarray:
    """Fraction of ``frame_samples``-long frames quieter than ``min_rms``, per clip.

    clips: float32 [k, clip_samples] -> float64 [k]; a partial last frame is ignored.
    """
    n_frames = clips.shape[1] // frame_samples
    if n_frames == 0:
        return np.zeros(len(clips))
    fractions = np.empty(len(clips))
    step = max(1, BLOCK_SAMPLES // clips.shape[1])  # clips at a time: a long track's float64 squares stay small
    for start in range(0, len(clips), step):
        block = clips[start:start + step, : n_frames * frame_samples]
        frames = block.reshape(len(block), n_frames, frame_samples)
        rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=2))
        fractions[start:start + step] = np.mean(rms < min_rms, axis=1)
    return fractions


def frame_rms(mono: np.ndarray, frame_samples: int) -> np.ndarray:
    """RMS of each whole ``frame_samples``-long frame of ``mono`` (float [n]) -> float64 [n // frame_samples]."""
    n_frames = len(mono) // frame_samples
    frames = mono[: n_frames * frame_samples].reshape(n_frames, frame_samples)
    rms = np.empty(n_frames)
    step = max(1, BLOCK_SAMPLES // frame_samples)  # frames at a time (each frame's mean is its own: same values)
    for start in range(0, n_frames, step):
        rms[start:start + step] = np.sqrt(np.mean(np.square(frames[start:start + step], dtype=np.float64), axis=1))
    return rms


def track_level(mono: np.ndarray, frame_samples: int) -> float:
    """Linear RMS of the sounding part of a track: its frames within TRACK_LEVEL_RANGE_DB of the loudest.

    mono float [n]; 0.0 for digital silence or audio shorter than one frame.
    Scaling the track by g scales this by g exactly (the frames chosen are the same).
    """
    rms = frame_rms(mono, frame_samples)
    if rms.size == 0 or rms.max() == 0:
        return 0.0
    sounding = rms[rms >= rms.max() * 10.0 ** (-TRACK_LEVEL_RANGE_DB / 20.0)]
    return float(np.sqrt(np.mean(np.square(sounding))))


def normalize_track(mono: np.ndarray, frame_samples: int, target_db: float) -> np.ndarray:
    """Scale ``mono`` (float32 [n]) so that its :func:`track_level` is ``target_db`` dBFS.

    The same music at any level (or converted to another sample rate or channel
    layout, which leaves its level as it was) gives the same clips, and the
    silence test that follows sees the same frames as silent.  Peaks may end up
    above 1.0: clips are float32 and never written as audio, so nothing is clipped.
    Digital silence is returned as it is.
    """
    level = track_level(mono, frame_samples)
    if level == 0.0:
        return mono
    return (mono * np.float32(10.0 ** (target_db / 20.0) / level)).astype(np.float32, copy=False)


def normalize_loudness(clips: np.ndarray, mode: str, target_db: float) -> np.ndarray:
    """Scale each clip so its peak ("peak") or RMS ("rms") is ``target_db`` dBFS.

    clips float32 [k, n]; silent clips are left as they are; after RMS scaling
    samples beyond full scale are clipped to [-1, 1].  Modes "none" and
    "track" (done on the whole track before cutting, :func:`normalize_track`)
    leave the clips as they are.
    """
    if mode in ("none", "track") or len(clips) == 0:
        return clips
    target = 10.0 ** (target_db / 20.0)
    if mode == "peak":
        level = np.abs(clips).max(axis=1)
    else:
        level = np.sqrt(np.mean(np.square(clips, dtype=np.float64), axis=1))
    gain = np.where(level > 0, target / np.maximum(level, 1e-12), 1.0).astype(np.float32)
    return np.clip(clips * gain[:, None], -1.0, 1.0)


def cut_clips(mono: np.ndarray, clip: ClipParams, max_clips: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Cut ``mono`` (float32 [n] at clip.sample_rate Hz) into clips, as the ``clip`` params section says.

    Returns ``(clips float32 [k, clip_samples], offsets_s float64 [k], n_silent)``:
    the clips kept after skipping those with more than ``clip.max_silence`` of
    their 50 ms frames under ``clip.min_rms`` (with ``clip.normalize`` track,
    after the track is scaled to ``clip.target_db``; a track whose sounding part
    is quieter than ``clip.min_rms`` to begin with gives no clip, every one
    counted as silence) and capping the rest to
    ``max_clips`` evenly spaced ones (0: no cap), normalised; their start times
    in seconds; and how many were skipped as silence.
    """
    sample_rate = clip.sample_rate
    clip_samples = int(round(clip.clip_seconds * sample_rate))
    hop_samples = max(1, int(round(clip.hop_seconds * sample_rate)))
    starts = clip_starts(len(mono), clip_samples, hop_samples)
    if starts.size == 0:
        return np.zeros((0, clip_samples), np.float32), np.zeros(0), 0
    frame_samples = max(1, int(round(SILENCE_FRAME_SECONDS * sample_rate)))
    if clip.normalize == "track":
        if track_level(mono, frame_samples) < clip.min_rms:
            # A track whose sounding part is itself quieter than a silent frame (hiss at -70 dBFS, what is left
            # of ultrasonic content once resampled) is silence throughout: scaled up to target_db it would pass
            # for music, and a clip of it kept at its own level would be the one clip not at target_db.
            return np.zeros((0, clip_samples), np.float32), np.zeros(0), len(starts)
        mono = normalize_track(mono, frame_samples, clip.target_db)
    windows = np.lib.stride_tricks.sliding_window_view(mono, clip_samples)[starts]
    loud = silent_fraction(windows, frame_samples, clip.min_rms) <= clip.max_silence
    n_silent = int((~loud).sum())
    starts = starts[loud]
    starts = starts[evenly_spaced(len(starts), max_clips)]
    clips = np.stack([mono[s:s + clip_samples] for s in starts]) if len(starts) else \
        np.zeros((0, clip_samples), np.float32)
    clips = normalize_loudness(clips.astype(np.float32, copy=False), clip.normalize, clip.target_db)
    return clips, starts / sample_rate, n_silent


class DamagedAudio(Exception):
    """A WAV that the render stage wrote and validated is missing or cannot be read.

    data/audio is a pipeline output: such a file was damaged after it was
    written (a disk fault, a hand edit, an interrupted copy), which no
    rerun of clip can repair.
    """

    def __init__(self, path: str, reason: str):
        super().__init__(path, reason)  # both in args, so the exception survives pickling from a worker
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class ClipTask:
    """Everything the clips of one track need, its WAVs' bytes included: a worker reads no file."""

    paths: tuple[str, ...]  # the track's WAVs (named in messages): one per SoundFont, then its augmented renders
    wavs: tuple[bytes, ...]  # the bytes of each of ``paths``; () when the worker reads them (ClipTask.at)
    clip: ClipParams
    max_clips: int  # for the whole track (0: no cap), shared out over its plain WAVs
    augmented: int = 0  # how many of ``paths``, at the end, are augmented renders

    @classmethod
    def read(cls, paths: tuple[str, ...], clip: ClipParams, max_clips: int, augmented: int = 0) -> ClipTask:
        """The task of the WAV files at ``paths``, read now (for a worker on another machine);
        :class:`DamagedAudio` for one that cannot be."""
        return cls(tuple(paths), tuple(_read_wav(path) for path in paths), clip, max_clips, augmented)

    @classmethod
    def at(cls, paths: tuple[str, ...], clip: ClipParams, max_clips: int, augmented: int = 0) -> ClipTask:
        """The task of the WAV files at ``paths``, which the (local) worker reads: the stage then holds no
        track's audio, however long."""
        return cls(tuple(paths), (), clip, max_clips, augmented)


def _read_wav(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise DamagedAudio(path, "missing" if isinstance(error, FileNotFoundError)
                           else f"unreadable ({error.strerror})") from None


def clip_track(task: ClipTask) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Worker: decode every WAV of one track (from ``task.wavs``) and cut its clips.

    Returns (clips [k, clip_samples], offsets_s [k], output index [k], n_silent),
    where "output index" tells which of the track's WAVs a clip came from.
    Raises :class:`DamagedAudio` for a WAV that is not whole or cannot be decoded.

    The cap is shared out over the plain renders only, and each augmented
    render may give as many clips as one plain render: augmentation is there
    to add varied training clips, and sharing the cap with the copies would
    instead swap most of a track's clips of the music as written for
    transposed and re-timed ones, so that the training clips would drift away
    from the val and test clips, which are always plain.
    """
    import soundfile

    all_clips, all_offsets, all_index, silent = [], [], [], 0
    per_output = 0
    if task.max_clips:
        per_output = max(1, task.max_clips // (len(task.paths) - task.augmented))
    for index, path in enumerate(task.paths):
        data = task.wavs[index] if task.wavs else _read_wav(path)  # one WAV in memory at a time
        damage = wav_bytes_damage(data)
        if damage:
            raise DamagedAudio(path, damage)
        try:
            mono = load_mono(data, task.clip.sample_rate)
        except soundfile.LibsndfileError as error:
            raise DamagedAudio(path, f"unreadable ({error.error_string})") from None
        clips, offsets, n_silent = cut_clips(mono, task.clip, per_output)
        all_clips.append(clips)
        all_offsets.append(offsets)
        all_index.append(np.full(len(clips), index, dtype=np.int64))
        silent += n_silent
    return (np.concatenate(all_clips), np.concatenate(all_offsets), np.concatenate(all_index), silent)


def crashed_track(task: ClipTask) -> None:
    """The result of a track that killed worker after worker (local or Dask): None, dropped as ``worker_crash``."""
    return None


def track_caps(demands: dict[str, int], renders: dict[str, int], max_per_track: int,
               max_per_class: int) -> dict[str, int]:
    """Clips each training track of one class may give (0: no cap), from how many each of its plain renders can
    give (``demands``) and how many plain renders it has (``renders``: one per SoundFont for a MIDI file).

    The track cap bounds every track (shared out over its renders, as :func:`clip_track` does); the class cap
    is shared out by water-filling: a track that can give fewer clips than an equal share gives them all, and
    what it leaves goes to the others, so a class of one 20-minute movement and three short pieces trains on
    its whole budget, not on four equal shares of which three go unused. A track's renders give equal numbers
    of clips, so its cap is a multiple of its renders; what an equal level leaves over goes a clip a render
    to the first tracks by name that can give more. Every render keeps at least one clip. ``demands`` come
    from the render's durations (before silence is skipped), so a track with silent stretches may give fewer
    clips than its cap.
    """
    if not max_per_class:
        return {track: max_per_track for track in demands}
    count = {track: max(1, renders.get(track, 1)) for track in demands}
    wants = {track: min(want, max(1, max_per_track // count[track])) if max_per_track else want
             for track, want in demands.items()}  # clips a render
    if max_per_class < sum(count.values()):
        return {track: count[track] for track in wants}  # one clip a render

    def used(level: int) -> int:
        return sum(count[track] * min(want, level) for track, want in wants.items())

    low, high = 1, max(max(wants.values(), default=1), 1)
    if used(high) <= max_per_class:
        return {track: max_per_track for track in wants}  # the class cap is never reached
    while low < high:  # the highest level whose clips fit the class cap
        middle = (low + high + 1) // 2
        low, high = (middle, high) if used(middle) <= max_per_class else (low, middle - 1)
    spare = max_per_class - used(low)
    levels = dict.fromkeys(wants, low)
    for track in sorted(track for track, want in wants.items() if want > low):
        if count[track] <= spare:
            levels[track] += 1
            spare -= count[track]
    return {track: count[track] * level for track, level in levels.items()}


def expected_clip_count(seconds: float, clip_seconds: float, hop_seconds: float) -> int:
    """How many whole clips fit in ``seconds`` of audio (before silence and caps)."""
    if seconds < clip_seconds:
        return 0
    return int(math.floor((seconds - clip_seconds) / hop_seconds + 1e-9)) + 1

"""Recordings saved twice: the same audio in two files of a collection.

A collection gathered over years holds copies: a FLAC and the MP3 made of it, a
track ripped twice, an album's track again on a compilation.  Download finds a
copy whose decoded samples are the same (``musicid.dataset``); a lossy copy,
another level or a copy with a longer lead-in has other samples, becomes a
track of its own, and may land on the other side of the split, where the model
is tested on music it was trained on (GTZAN's repeats inflated a decade of
published scores).  The clip stage therefore compares the rendered audio of
every two audio sources of about the same length and deals copies as one unit.

Fingerprint: the rendered WAV at FINGERPRINT_RATE Hz, a log-mel spectrogram of
BANDS bands every 0.1 s, its quiet lead-in and tail (QUIET_DB below its loudest
frame) cut off, each band's mean over time removed (a copy at another level is
the same).  Two fingerprints whose lengths differ by at most
max(MAX_LAG_FRAMES, 2 %) are compared at every lag up to MAX_LAG_FRAMES (a
codec's delay, a lead-in that is not quite silent): their Pearson correlation
at the best lag.  Copies measure 0.99 and more (MP3 and Ogg Vorbis copies, half
the level, 0.3 s of silence before); two renders of different pieces of the
same length at most 0.82 on the default dataset, one pair of variants of one
Kyrie 0.96 (MIDI renders, which this module is not used on).  SIMILARITY is
the line.  Floating point: another CPU may compute a correlation a little
differently; nothing measured lies near the line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FINGERPRINT_RATE = 8000
HOP = 800  # samples: 0.1 s
N_FFT = 1024
BANDS = 32
QUIET_DB = 60.0
FLOOR_DB = 60.0
ONSET_DB = 40.0
MIN_VARIATION = 0.1  # log10 units (1 dB): how much a fingerprint must vary over time to be compared
MAX_LAG_FRAMES = 20  # 2 s
SIMILARITY = 0.95
MIN_FRAMES = 50  # 5 s: shorter sounds are too alike to call copies
# Of copies under one label, a lossless one is kept before these.
LOSSY_EXTENSIONS = frozenset({".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma"})


def fingerprint(path: str | Path) -> np.ndarray:
    """float32 [frames, BANDS] of the WAV file at ``path`` (see the module's docstring); [0, BANDS] (never
    compared) when it holds less than one frame above its quiet floor, or a sound that varies by less than
    MIN_VARIATION over time (a steady tone)."""
    import librosa

    from musicid.clips import load_mono

    mono = load_mono(str(path), FINGERPRINT_RATE)
    # Frames start at the first sample within ONSET_DB of the peak, so that a copy with a lead-in of any length
    # (a codec's delay, added silence) is framed at the same point of the music, to the sample.
    peak = float(np.max(np.abs(mono))) if len(mono) else 0.0
    if peak > 0:
        mono = mono[int(np.argmax(np.abs(mono) >= peak * 10 ** (-ONSET_DB / 20))):]
    if len(mono) < N_FFT:
        return np.zeros((0, BANDS), dtype=np.float32)
    mel = librosa.feature.melspectrogram(y=mono, sr=FINGERPRINT_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=BANDS,
                                         power=2.0, center=False)
    energy = mel.sum(axis=0)
    loud = np.flatnonzero(energy >= energy.max() * 10 ** (-QUIET_DB / 10)) if energy.max() > 0 else []
    if len(loud) == 0:
        return np.zeros((0, BANDS), dtype=np.float32)
    # Bands more than FLOOR_DB below the loudest are floored: there a codec's noise, not the music, would vary.
    log = np.log10(np.maximum(mel[:, loud[0]:loud[-1] + 1], mel.max() * 10 ** (-FLOOR_DB / 10))).T
    varying = log - log.mean(axis=0)
    if varying.std() < MIN_VARIATION:  # a steady sound: nothing in time to tell one recording from another
        return np.zeros((0, BANDS), dtype=np.float32)
    return varying.astype(np.float32)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The Pearson correlation of two fingerprints at their best lag (at most MAX_LAG_FRAMES); -1 when they
    overlap by fewer than MIN_FRAMES frames."""
    best = -1.0
    for lag in range(-MAX_LAG_FRAMES, MAX_LAG_FRAMES + 1):
        x, y = a[max(lag, 0):], b[max(-lag, 0):]
        n = min(len(x), len(y))
        if n < MIN_FRAMES:
            continue
        x = x[:n].ravel().astype(np.float64)
        y = y[:n].ravel().astype(np.float64)
        x -= x.mean()
        y -= y.mean()
        norm = np.linalg.norm(x) * np.linalg.norm(y)
        if norm > 0:
            best = max(best, float(x @ y / norm))
    return best


def comparable(a: int, b: int) -> bool:
    """Whether fingerprints of ``a`` and ``b`` frames are long enough and close enough in length to compare."""
    return min(a, b) >= MIN_FRAMES and abs(a - b) <= max(MAX_LAG_FRAMES, 0.02 * max(a, b))


POOL = 10  # frames averaged into one for the first, coarse comparison (1 s)
HEAD = 20  # coarse frames: the first 20 s of two fingerprints are compared first
COARSE_SIMILARITY = 0.8  # what the coarse comparison must reach for the whole one to be made


def _heads(prints: list[np.ndarray]) -> np.ndarray:
    """float64 [n, HEAD, BANDS]: the first HEAD seconds of each fingerprint, averaged over 1 s frames."""
    return np.stack([print_[:HEAD * POOL].reshape(HEAD, POOL, BANDS).mean(axis=1, dtype=np.float64)
                     for print_ in prints])


def _standardized(heads: np.ndarray, start: int, stop: int) -> np.ndarray:
    """float64 [n, (stop - start) * BANDS]: frames start..stop of each head, flattened, mean removed, unit norm
    (a silent one all 0)."""
    flat = heads[:, start:stop].reshape(len(heads), -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return np.divide(flat, norms, out=np.zeros_like(flat), where=norms > 0)


def _head_similarities(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """[len(rows), len(columns)]: the correlation of each head of ``rows`` with each of ``columns`` (each
    [n, HEAD, BANDS]) at their best lag (whole seconds, up to MAX_LAG_FRAMES), a block at a time."""
    best = np.full((len(rows), len(columns)), -1.0)
    for lag in range(-(MAX_LAG_FRAMES // POOL), MAX_LAG_FRAMES // POOL + 1):
        x = _standardized(rows, max(lag, 0), HEAD + min(lag, 0))
        y = _standardized(columns, max(-lag, 0), HEAD - max(lag, 0))
        np.maximum(best, x @ y.T, out=best)
    return best


BLOCK = 256  # tracks whose heads are compared with their peers' at once


def copy_groups(prints: dict[str, np.ndarray]) -> list[list[str]]:
    """The groups of two or more tracks (track id -> fingerprint) that are copies of one another, each sorted,
    sorted by their first track: every two of about the same length are compared (their first 20 s at 1 s
    frames first, a track against all its peers at once: a collection of thousands of 30-second excerpts has
    millions of such pairs; then whole), and a copy of a copy joins the group."""
    parent = {track: track for track in prints}

    def root(track: str) -> str:
        while parent[track] != track:
            parent[track] = parent[parent[track]]
            track = parent[track]
        return track

    by_length = [track for track in sorted(prints, key=lambda track: (len(prints[track]), track))
                 if len(prints[track]) >= MIN_FRAMES]
    lengths = [len(prints[track]) for track in by_length]
    headed = [length >= HEAD * POOL for length in lengths]
    heads = _heads([prints[track] for track, has in zip(by_length, headed) if has]) if any(headed) else None
    head_index = np.cumsum(headed) - 1  # each headed track's row in heads
    ends = []  # for each track, the end of the run of tracks after it that are comparable with it
    for index in range(len(by_length)):
        end = max(ends[-1] if ends else 0, index + 1)
        while end < len(by_length) and comparable(lengths[index], lengths[end]):
            end += 1
        ends.append(end)
    candidates = []
    for start in range(0, len(by_length), BLOCK):
        stop = min(start + BLOCK, len(by_length))
        last = ends[stop - 1]
        headed_rows = [i for i in range(start, stop) if headed[i]]
        scores = None
        if headed_rows and last > headed_rows[0] + 1:
            # a headed track is followed by headed tracks only (sorted by length)
            columns = range(headed_rows[0] + 1, last)
            scores = _head_similarities(heads[head_index[headed_rows[0]]:head_index[headed_rows[-1]] + 1],
                                        heads[head_index[columns[0]]:head_index[columns[-1]] + 1])
        for index in range(start, stop):
            for other in range(index + 1, ends[index]):
                if headed[index]:
                    score = scores[index - headed_rows[0], other - headed_rows[0] - 1]
                    if score < COARSE_SIMILARITY:
                        continue
                candidates.append((index, other))  # shorter than HEAD: compared whole straight away
    for index, other in candidates:
        first, second = by_length[index], by_length[other]
        if root(first) != root(second) and similarity(prints[first], prints[second]) >= SIMILARITY:
            low, high = sorted((root(first), root(second)))
            parent[high] = low
    groups: dict[str, list[str]] = {}
    for track in sorted(prints):
        groups.setdefault(root(track), []).append(track)
    return sorted((members for members in groups.values() if len(members) > 1), key=lambda members: members[0])


def _fingerprint_or_none(path: str) -> np.ndarray | None:
    """:func:`fingerprint`, or None for a WAV that cannot be read (the clip stage names it when it cuts)."""
    try:
        return fingerprint(path)
    except Exception:  # noqa: BLE001 - damaged audio is reported where the track is cut
        return None


def recording_copies(tracks: dict[str, dict], audio_dir: Path) -> dict[str, str]:
    """track id -> why it is left out, for the audio sources among ``tracks`` (track id -> render-report record)
    that are copies of another (:func:`copy_groups`): of copies under one label the first by name is kept and
    the others are ``copy: the same recording as <track>``; copies under two labels all go, ``ambiguous_label``
    (which label is right, only the user can say), as the download stage does with files of the same samples.
    MIDI files are left alone (the download stage compares their notes)."""
    from musicid.filetypes import MIDI_EXTENSIONS
    from musicid.progress import progress

    recordings = sorted(track for track in tracks if Path(track).suffix.lower() not in MIDI_EXTENSIONS)
    if len(recordings) < 2:
        return {}
    paths = [str(Path(audio_dir) / tracks[track]["outputs"][0]) for track in recordings]
    # In the stage's process: on 2 workers it took longer, 0.68x (benchmarks/copies_speed.py, 24 hours).
    results = map(_fingerprint_or_none, paths)
    prints = {track: print_ for track, print_ in zip(recordings, progress(results, total=len(paths), desc="copies"))
              if print_ is not None}
    left_out = {}
    for group in copy_groups(prints):
        labels = sorted({tracks[track]["label"] for track in group})
        if len(labels) > 1:
            for track in group:
                others = ", ".join(other for other in group if other != track)
                left_out[track] = f"ambiguous_label: the same recording as {others}, under {', '.join(labels)}"
        else:
            kept, *others = sorted(group, key=lambda track: (Path(track).suffix.lower() in LOSSY_EXTENSIONS, track))
            for track in others:
                left_out[track] = f"copy: the same recording as {kept}"
    return dict(sorted(left_out.items()))

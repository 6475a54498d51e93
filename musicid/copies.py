"""Recordings saved twice: the same audio in two files of a collection.

A collection gathered over years holds copies: a FLAC and the MP3 made of it, a
track ripped twice, an album's track again on a compilation.  Download finds a
copy whose decoded samples are the same (``musicid.dataset``); a lossy copy,
another level or a copy with a longer lead-in has other samples, becomes a
track of its own, and may land on the other side of the split, where the model
is tested on music it was trained on (GTZAN's repeats inflated a decade of
published scores).  The clip stage therefore compares the rendered audio of
every two audio sources of about the same length and deals copies as one unit.

Fingerprint (:func:`fingerprint`): the rendered WAV at FINGERPRINT_RATE Hz,
framed from its first sample within ONSET_DB of its peak (a lead-in of any
length, a codec's delay), a log-mel spectrogram of BANDS bands every 0.1 s,
floored FLOOR_DB below its loudest (a codec's noise), its quiet head and tail
cut, each band's mean over the sounding frames removed (the level), the quiet
frames inside set to 0 (where two pieces fall silent must not make them
alike).  Recordings whose lengths differ by at most max(MAX_LAG_FRAMES, 2 %)
are compared (:func:`copy_groups`): first coarsely, all of a block against all
their peers at once; then, for those alike at first, whole, at every lag up to
MAX_LAG_FRAMES, and framed again a quarter frame later where the whole frames
fall short.  A cosine similarity of SIMILARITY makes copies.  Measured on the
default dataset's renders: Ogg Vorbis and MP3 copies 0.99 and more, half the
level and a lead-in 1.0; different pieces of one length at most 0.81, two
variants of one Kyrie 0.97 (MIDI renders, which this module is not used on).
Floating point: another CPU may compute a similarity a little differently,
which matters only for a pair within a hair of the line.
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


def fingerprint(path: str | Path, offset: int = 0) -> np.ndarray:
    """float32 [frames, BANDS] of the WAV file at ``path`` (see the module's docstring), framed ``offset``
    samples (at FINGERPRINT_RATE) after its onset; [0, BANDS] (never compared) when it holds less than one frame
    above its quiet floor, or a sound that varies by less than MIN_VARIATION over time (a steady tone)."""
    import librosa

    from musicid.clips import load_mono

    mono = load_mono(str(path), FINGERPRINT_RATE)
    # Frames start at the first sample within ONSET_DB of the peak, so that a copy with a lead-in of any length
    # (a codec's delay, added silence) is framed at the same point of the music, to the sample.
    peak = float(np.max(np.abs(mono))) if len(mono) else 0.0
    if peak > 0:
        mono = mono[int(np.argmax(np.abs(mono) >= peak * 10 ** (-ONSET_DB / 20))) + offset:]
    if len(mono) < N_FFT:
        return np.zeros((0, BANDS), dtype=np.float32)
    mel = librosa.feature.melspectrogram(y=mono, sr=FINGERPRINT_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=BANDS,
                                         power=2.0, center=False)
    energy = mel.sum(axis=0)
    loud = energy >= energy.max() * 10 ** (-QUIET_DB / 10) if energy.max() > 0 else np.zeros(len(energy), bool)
    if not loud.any():
        return np.zeros((0, BANDS), dtype=np.float32)
    first, last = np.flatnonzero(loud)[[0, -1]]
    loud = loud[first:last + 1]
    # Bands more than FLOOR_DB below the loudest are floored: there a codec's noise, not the music, would vary.
    log = np.log10(np.maximum(mel[:, first:last + 1], mel.max() * 10 ** (-FLOOR_DB / 10))).T
    # Each band's mean over the sounding frames removed (the level); a quiet frame inside is 0, so that where
    # two pieces fall silent (the same digital silence in both) makes them no more alike.
    varying = np.where(loud[:, None], log - log[loud].mean(axis=0), 0.0)
    if varying[loud].std() < MIN_VARIATION:  # a steady sound: nothing in time to tell one recording from another
        return np.zeros((0, BANDS), dtype=np.float32)
    return varying.astype(np.float32)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The cosine similarity of two fingerprints (each band's mean already removed) at their best lag (whole
    frames, at most MAX_LAG_FRAMES); -1 when they overlap by fewer than MIN_FRAMES frames."""
    best = -1.0
    for lag in range(-MAX_LAG_FRAMES, MAX_LAG_FRAMES + 1):
        x, y = a[max(lag, 0):], b[max(-lag, 0):]
        n = min(len(x), len(y))
        if n < MIN_FRAMES:
            continue
        x = x[:n].ravel().astype(np.float64)
        y = y[:n].ravel().astype(np.float64)
        norm = np.linalg.norm(x) * np.linalg.norm(y)
        if norm > 0:
            best = max(best, float(x @ y / norm))
    return best


def comparable(a: int, b: int) -> bool:
    """Whether fingerprints of ``a`` and ``b`` frames are long enough and close enough in length to compare."""
    return min(a, b) >= MIN_FRAMES and abs(a - b) <= max(MAX_LAG_FRAMES, 0.02 * max(a, b))


# The first, coarse comparison: each fingerprint's first seconds, smoothed over 1 s, taken every STEP frames
# (0.2 s) in BANDS // SQUEEZE bands, all of a block of tracks against all their peers at once, at every lag of
# STEP frames up to MAX_LAG_FRAMES (a lag between two steps is off by at most 0.1 s of 1 s smoothing).
SMOOTH = 10  # frames: 1 s
STEP = 2
SQUEEZE = 4
LONG_HEAD = 100  # frames (10 s) compared first when both are as long
SHORT_HEAD = MIN_FRAMES  # and the first 5 s of shorter ones
COARSE_SIMILARITY = 0.7  # what the coarse comparison must reach for the whole one to be made
PHASES = 4  # a copy cut or shifted by part of a frame is framed again at HOP / PHASES steps before it is judged
BLOCK = 256  # tracks whose heads are compared with their peers' at once


def _head(print_: np.ndarray, frames: int) -> np.ndarray:
    """float32 [steps, BANDS // SQUEEZE]: the first ``frames`` frames smoothed over SMOOTH, every STEP."""
    part = print_[:frames].reshape(frames, BANDS // SQUEEZE, SQUEEZE).mean(axis=2)
    kernel = np.ones(SMOOTH) / SMOOTH
    smooth = np.stack([np.convolve(part[:, band], kernel, mode="valid") for band in range(part.shape[1])], axis=1)
    return smooth[::STEP].astype(np.float32)


def _standardized(heads: np.ndarray, start: int, stop: int) -> np.ndarray:
    """float64 [n, (stop - start) * bands]: steps start..stop of each head, flattened, unit norm (0 stays 0)."""
    flat = heads[:, start:stop].reshape(len(heads), -1).astype(np.float64)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return np.divide(flat, norms, out=np.zeros_like(flat), where=norms > 0)


def _head_similarities(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """[len(rows), len(columns)]: the cosine similarity of each head of ``rows`` with each of ``columns`` at
    their best lag (STEP frames at a time, up to MAX_LAG_FRAMES)."""
    steps = rows.shape[1]
    best = np.full((len(rows), len(columns)), -1.0)
    for lag in range(-(MAX_LAG_FRAMES // STEP), MAX_LAG_FRAMES // STEP + 1):
        x = _standardized(rows, max(lag, 0), steps + min(lag, 0))
        y = _standardized(columns, max(-lag, 0), steps - max(lag, 0))
        np.maximum(best, x @ y.T, out=best)
    return best


def copy_groups(prints: dict[str, np.ndarray], phases=None) -> list[list[str]]:
    """The groups of two or more tracks (track id -> fingerprint) that are copies of one another, each sorted,
    sorted by their first track: every two of about the same length are compared, first coarsely (their first
    10 s, or 5 s, a block of tracks against all their peers at once: a collection of thousands of excerpts of
    one length has millions of such pairs), then whole; a copy of a copy joins the group. ``phases(track, k)``:
    the track's fingerprint framed k * HOP / PHASES samples later (k = 1 .. PHASES - 1), to judge a pair off by
    part of a frame; None: whole frames only."""
    parent = {track: track for track in prints}

    def root(track: str) -> str:
        while parent[track] != track:
            parent[track] = parent[parent[track]]
            track = parent[track]
        return track

    phased: dict[tuple[str, int], np.ndarray] = {}

    def copies(first: str, second: str) -> bool:
        if similarity(prints[first], prints[second]) >= SIMILARITY:
            return True
        for k in range(1, PHASES if phases else 1):
            if (second, k) not in phased:
                phased[second, k] = phases(second, k)
            if similarity(prints[first], phased[second, k]) >= SIMILARITY:
                return True
        return False

    by_length = [track for track in sorted(prints, key=lambda track: (len(prints[track]), track))
                 if len(prints[track]) >= MIN_FRAMES]
    lengths = [len(prints[track]) for track in by_length]
    shorts = np.stack([_head(prints[track], SHORT_HEAD) for track in by_length]) if by_length else None
    longs = {index: _head(prints[track], LONG_HEAD) for index, track in enumerate(by_length)
             if lengths[index] >= LONG_HEAD}
    ends = []  # for each track, the end of the run of tracks after it that are comparable with it
    for index in range(len(by_length)):
        end = max(ends[-1] if ends else 0, index + 1)
        while end < len(by_length) and comparable(lengths[index], lengths[end]):
            end += 1
        ends.append(end)
    for start in range(0, len(by_length), BLOCK):
        stop = min(start + BLOCK, len(by_length))
        for rows in ([i for i in range(start, stop) if i not in longs], [i for i in range(start, stop) if i in longs]):
            if not rows or ends[rows[-1]] <= rows[0] + 1:
                continue
            columns = range(rows[0] + 1, ends[rows[-1]])  # sorted by length: a long row's columns are long too
            if rows[0] in longs:
                scores = _head_similarities(np.stack([longs[i] for i in rows]), np.stack([longs[j] for j in columns]))
            else:
                scores = _head_similarities(shorts[rows[0]:rows[-1] + 1], shorts[columns[0]:columns[-1] + 1])
            for row, index in enumerate(rows):
                for other in range(index + 1, ends[index]):
                    first, second = by_length[index], by_length[other]
                    if scores[row, other - columns[0]] >= COARSE_SIMILARITY and root(first) != root(second) and \
                            copies(first, second):
                        low, high = sorted((root(first), root(second)))
                        parent[high] = low
    groups: dict[str, list[str]] = {}
    for track in sorted(prints):
        groups.setdefault(root(track), []).append(track)
    return sorted((members for members in groups.values() if len(members) > 1), key=lambda members: members[0])


def _fingerprint_or_none(path: str, offset: int = 0) -> np.ndarray | None:
    """:func:`fingerprint`, or None for a WAV that cannot be decoded (the clip stage names it when it cuts)."""
    import soundfile

    try:
        return fingerprint(path, offset)
    except (OSError, ValueError, RuntimeError, soundfile.LibsndfileError):
        return None


def recording_copies(tracks: dict[str, dict], audio_dir: Path) -> dict[str, str]:
    """track id -> why it is left out, for the audio sources among ``tracks`` (track id -> render-report record)
    that are copies of another (:func:`copy_groups`): of copies under one label the first by name is kept (a
    lossless one before a lossy one, LOSSY_EXTENSIONS, by extension) and the others are ``copy: the same
    recording as <track>``; copies under two labels all go, ``ambiguous_label`` (which label is right, only
    the user can say), as the download stage does with files of the same samples. MIDI files are left alone
    (the download stage compares their notes)."""
    from musicid.filetypes import MIDI_EXTENSIONS
    from musicid.progress import progress

    recordings = sorted(track for track in tracks if Path(track).suffix.lower() not in MIDI_EXTENSIONS)
    if len(recordings) < 2:
        return {}
    paths = {track: str(Path(audio_dir) / tracks[track]["outputs"][0]) for track in recordings}
    # In the stage's process, whose BLAS already uses the cores (benchmarks/copies_speed.py).
    results = (_fingerprint_or_none(paths[track]) for track in recordings)
    prints = {track: print_ for track, print_ in zip(recordings, progress(results, total=len(paths), desc="copies"))
              if print_ is not None}

    def phase(track: str, k: int) -> np.ndarray:
        framed = _fingerprint_or_none(paths[track], k * HOP // PHASES)
        return framed if framed is not None else prints[track]

    left_out = {}
    for group in copy_groups(prints, phase):
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

"""Statistics of a whole MIDI piece, read part by part: what the track-level regression on the notes reads.

A clip's symbolic features (``musicid.symbolic``) mix every part's notes in a 4-second window and measure time in
seconds. These are of the whole piece, each part's melody apart, and in quarter notes of the file's tempo map: a
composer's melodic steps and leaps, the contour of successive intervals, rhythm, the content of his chords, the
keys he writes in. ``train.track_notes``' regression reads them beside the mean and spread of the clips' features
(``features.symbolic_piece``).

Layout of the vector, float64 [PIECE_DIM] = [119]; blocks that are histograms sum to 1 (or are all zeros when
there is nothing to count):

====== ==== =================================================================
index  size block
====== ==== =================================================================
0-11   12   pitch-class histogram weighted by sounding time, rotated so that
            index 0 is the tonic of the piece's Krumhansl-Kessler key
12     1    1 when that key is minor, else 0
13-37  25   each part's melodic intervals, signed, -12..12 semitones (larger
            ones in the end bins); a part's melody is its highest note at
            each of its onsets (onsets to the millisecond)
38-86  49   bigrams of successive melodic intervals' contour classes (large
            leap down, leap down, step down, repeat, step up, leap up, large
            leap up: edges -7.5, -2.5, -0.5, 0.5, 2.5, 7.5), 7 x 7 row-major
87-94  8    note durations in quarter notes, bins of log2 with edges -3.5 ..
            2.5: shorter than 1/11 of a quarter, a 32nd, a 16th, an eighth,
            a quarter, a half, a whole note, longer than 5.7 quarters
95-102 8    intervals between the piece's distinct onsets, quarter notes, the
            same bins
103-114 12  at each distinct onset, the pitch classes above the lowest
            sounding note of every note sounding (the chord's content; the
            bass and its octaves, class 0, are left out)
115    1    number of parts (pretty_midi's instruments with notes)
116    1    log(1 + onsets per quarter note over the piece)
117    1    share of sounding time on the seven degrees of the key's scale
            (natural minor plus the leading tone for minor keys: eight)
118    1    mean over parts of a part's range (highest - lowest) in octaves
====== ==== =================================================================

Quarter notes come from the file's tempo map (pretty_midi's tempo changes): a
file without one is read at 120 beats a minute, as MIDI defines, so a
performance recorded without a tempo map is measured in half-seconds.
"""

from __future__ import annotations

import numpy as np

MAX_STEP = 12  # signed melodic intervals kept in their own bins; larger ones fall in the end bins
CONTOUR_EDGES = np.array([-7.5, -2.5, -0.5, 0.5, 2.5, 7.5])
BEAT_EDGES = np.arange(-3.5, 2.6, 1.0)  # log2 of quarter notes
KEY_BLOCK, MINOR = slice(0, 12), 12
STEP_BLOCK, CONTOUR_BLOCK = slice(13, 38), slice(38, 87)
DURATION_BLOCK, ONSET_BLOCK, CHORD_BLOCK = slice(87, 95), slice(95, 103), slice(103, 115)
PARTS, ONSET_RATE, IN_SCALE, PART_RANGE = range(115, 119)
PIECE_DIM = 119
# Krumhansl & Kessler's (1982) probe-tone ratings of the 12 pitch classes above a tonic (music21's
# analysis.discrete.KrumhanslKessler weights, which a test checks these against).
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR_SCALE = np.array([0, 2, 3, 5, 7, 8, 10, 11])


def share(counts: np.ndarray) -> np.ndarray:
    """``counts`` divided by their sum, float64; zeros when there are none."""
    total = counts.sum()
    return counts / total if total else np.zeros(len(counts))


def estimate_key(pitch_classes: np.ndarray) -> tuple[int, bool]:
    """(tonic, minor) of the 24 Krumhansl-Kessler key profiles the histogram ``pitch_classes`` [12] correlates
    with best (Pearson; the first of ties, majors before minors; C major for a flat histogram)."""
    if np.ptp(pitch_classes) == 0:  # no notes, or every pitch class as long as the others
        return 0, False
    # Row 12 * mode + tonic: the profile rotated so that its tonic lies on that pitch class.
    profiles = np.stack([np.roll(profile, tonic) for profile in (KK_MAJOR, KK_MINOR) for tonic in range(12)])
    best = int(np.argmax([np.corrcoef(pitch_classes, profile)[0, 1] for profile in profiles]))
    return best % 12, best >= 12


def quarter_notes(times: np.ndarray, change_times: np.ndarray, tempi: np.ndarray) -> np.ndarray:
    """Quarter notes from the file's start to each of ``times`` (seconds) under tempo ``tempi[k]`` (quarter notes
    a minute) from ``change_times[k]`` on; 120 before the first change and without any."""
    if len(change_times) == 0 or change_times[0] > 0:
        change_times = np.concatenate([[0.0], change_times])
        tempi = np.concatenate([[120.0], tempi])
    at_change = np.concatenate([[0.0], np.cumsum(np.diff(change_times) * tempi[:-1] / 60.0)])
    segment = np.maximum(np.searchsorted(change_times, times, side="right") - 1, 0)
    return at_change[segment] + (times - change_times[segment]) * tempi[segment] / 60.0


def _log2_bins(quarters: np.ndarray) -> np.ndarray:
    return share(np.bincount(np.searchsorted(BEAT_EDGES, np.log2(np.maximum(quarters, 1e-3))),
                              minlength=len(BEAT_EDGES) + 1).astype(np.float64))


def _melodies(onset: np.ndarray, pitch: np.ndarray, part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(signed-interval counts [25], contour-bigram counts [7, 7]) of every part's melody."""
    steps, contours = np.zeros(2 * MAX_STEP + 1), np.zeros((7, 7))
    order = np.lexsort((pitch, onset, part))
    part, onset, pitch = part[order], onset[order], pitch[order]
    # The last note of each (part, onset) group is its highest.
    last = np.ones(len(part), bool)
    last[:-1] = (part[1:] != part[:-1]) | (onset[1:] != onset[:-1])
    part, pitch = part[last], pitch[last]
    # Each part's melody is a run of the part-sorted rows: split once (a loop of masks would cost parts x notes).
    for melody in np.split(pitch, np.flatnonzero(np.diff(part)) + 1):
        if len(melody) < 2:
            continue
        intervals = np.diff(melody)
        steps += np.bincount(np.clip(intervals, -MAX_STEP, MAX_STEP) + MAX_STEP, minlength=2 * MAX_STEP + 1)
        classes = np.searchsorted(CONTOUR_EDGES, intervals)
        np.add.at(contours, (classes[:-1], classes[1:]), 1)
    return steps, contours


def _chords(onset: np.ndarray, start: np.ndarray, end: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Counts [12] of the pitch classes above the bass of the notes sounding at each distinct onset."""
    counts = np.zeros(12)
    sounding = np.zeros(128, np.int64)  # notes sounding, per MIDI pitch
    added = np.zeros(len(onset), bool)
    by_end = np.argsort(end, kind="stable")
    times, first = np.unique(onset, return_index=True)  # onset is sorted (notes in (start, pitch) order)
    bounds = np.append(first, len(onset))
    ended = 0
    for index, time in enumerate(times):
        moment = time + 5e-4  # onsets are to the millisecond: what sounds just after this one
        while ended < len(by_end) and end[by_end[ended]] <= moment:
            if added[by_end[ended]]:
                sounding[pitch[by_end[ended]]] -= 1
            ended += 1
        starting = np.arange(bounds[index], bounds[index + 1])
        starting = starting[end[starting] > moment]
        added[starting] = True
        np.add.at(sounding, pitch[starting], 1)
        present = np.flatnonzero(sounding)
        if len(present) > 1:
            counts += np.bincount((present - present[0]) % 12, weights=sounding[present], minlength=12)
    counts[0] = 0.0
    return counts


def piece_features(start: np.ndarray, end: np.ndarray, pitch: np.ndarray, part: np.ndarray,
                   change_times: np.ndarray, tempi: np.ndarray) -> np.ndarray | None:
    """The whole-piece statistics float64 [PIECE_DIM] (module docstring) of the notes ``start``, ``end`` (seconds,
    end > start), ``pitch``, ``part`` (an index per part), sorted by (start, pitch), under the tempo map
    (``change_times`` seconds, ``tempi`` quarter notes a minute); None without notes."""
    if len(start) == 0:
        return None
    out = np.zeros(PIECE_DIM)
    weights = np.bincount(pitch % 12, weights=end - start, minlength=12)
    tonic, minor = estimate_key(weights)
    relative = share(np.roll(weights, -tonic))
    out[KEY_BLOCK], out[MINOR] = relative, float(minor)
    out[IN_SCALE] = relative[MINOR_SCALE if minor else MAJOR_SCALE].sum()
    onset = np.round(start, 3)
    steps, contours = _melodies(onset, pitch, part)
    out[STEP_BLOCK], out[CONTOUR_BLOCK] = share(steps), share(contours.ravel())
    begin_q, end_q = quarter_notes(start, change_times, tempi), quarter_notes(end, change_times, tempi)
    out[DURATION_BLOCK] = _log2_bins(end_q - begin_q)
    onset_q = np.unique(quarter_notes(np.unique(onset), change_times, tempi))
    out[ONSET_BLOCK] = _log2_bins(np.diff(onset_q))
    out[CHORD_BLOCK] = share(_chords(onset, start, end, pitch))
    out[PARTS] = len(np.unique(part))
    out[ONSET_RATE] = np.log1p(len(onset_q) / max(onset_q[-1] - onset_q[0], 1.0))
    by_part = np.argsort(part, kind="stable")
    bounds = np.flatnonzero(np.diff(part[by_part])) + 1
    starts = np.concatenate([[0], bounds])
    ranges = np.maximum.reduceat(pitch[by_part], starts) - np.minimum.reduceat(pitch[by_part], starts)
    out[PART_RANGE] = float(np.mean(ranges / 12))
    return out

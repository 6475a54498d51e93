"""Is a performance recorded in one track found as a version of its score?

A keyboard player's MIDI file holds both hands in one track, its onsets a few milliseconds off the score's, its
chords spread. For every MIDI file of a run's collection (``--raw``, default ``data/raw``: the default run's 160
pieces) this writes ``benchmarks/performed_midi.py``'s ``recorded`` copy (velocities and onsets drawn around
their own, sd 15 ms clipped to 30 ms, no tempo map; seeded per file as there) with every part's notes merged into
one track, and compares it with the files by their melodic patterns as download does
(:func:`musicid.dataset.pattern_share`, :func:`musicid.midi.melodic_patterns`):

- the share of the copy with its own score, read both ways (the parts' patterns or the top line's, the larger)
  and part by part alone (each part's top line: the one track's against the score's parts);
- the largest share of the copy with any other file of the collection that is not a version of its score
  (download's :func:`musicid.dataset.same_work_groups`): a false join from SAME_WORK_SHARE.

Prints how many copies reach SAME_WORK_SHARE with their score and their shares' spread, both ways.

    python benchmarks/performed_versions.py [--raw data/raw] [--limit 0]

Deterministic given the files.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import pretty_midi

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "benchmarks"))

from performed_midi import VARIANTS, variant  # noqa: E402

from musicid.augment import copy_seed  # noqa: E402
from musicid.dataset import SAME_WORK_SHARE, pattern_share, same_work_groups  # noqa: E402
from musicid.filetypes import MIDI_EXTENSIONS  # noqa: E402
from musicid.midi import WHOLE_FILE, heard_notes_and_patterns  # noqa: E402


def one_track_recording(source: Path, seed: int) -> bytes:
    """``recorded`` copy of ``source`` with every part's notes in one piano track."""
    played = variant(source, "recorded", seed)
    merged = pretty_midi.Instrument(program=0)
    merged.notes = sorted((note for part in played.instruments if not part.is_drum for note in part.notes),
                          key=lambda note: (note.start, note.pitch))
    played.instruments = [merged]
    data = io.BytesIO()
    played.write(data)
    return data.getvalue()


def parts_only(patterns: np.ndarray) -> np.ndarray:
    return patterns[patterns < WHOLE_FILE]


def spread(values: list[float]) -> str:
    return f"min {min(values):.2f}, median {float(np.median(values)):.2f}, max {max(values):.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=PROJECT / "data" / "raw")
    parser.add_argument("--limit", type=int, default=0, help="the first N files only (0: all)")
    args = parser.parse_args(argv)
    if args.limit < 0:
        parser.error("--limit must be >= 0")
    files = sorted(path for path in args.raw.rglob("*") if path.suffix.lower() in MIDI_EXTENSIONS)
    scores = {path: heard_notes_and_patterns(path.read_bytes())[1] for path in files}
    scores = {path: found for path, found in scores.items() if found is not None}
    if not scores:
        sys.exit(f"performed_versions: no MIDI file of {args.raw} has patterns to compare")
    paths = sorted(scores)
    work = {path: path for path in paths}
    for group in same_work_groups([scores[path] for path in paths]):
        for index in group:
            work[paths[index]] = paths[group[0]]
    chosen = paths[:args.limit or None]
    both, parts, others = [], [], []
    for path in chosen:
        seed = copy_seed(0, str(path.relative_to(args.raw)), VARIANTS.index("recorded") + 1)
        copy = heard_notes_and_patterns(one_track_recording(path, seed))[1]
        if copy is None:
            continue
        both.append(pattern_share(scores[path], copy))
        parts.append(pattern_share(parts_only(scores[path]), parts_only(copy)) if len(parts_only(copy)) else 0.0)
        others.append(max(pattern_share(found, copy) for other, found in scores.items() if work[other] != work[path]))
    print(f"{len(both)} recorded copies in one track, each against its score and against the other files of "
          f"{args.raw} ({len(scores)} with patterns; a version of its score is not another file)")
    print("| read | copies found (share >= {:g}) | share with its score | largest share with another file |"
          .format(SAME_WORK_SHARE))
    print("|---|---|---|---|")
    print(f"| parts and the top line | {sum(s >= SAME_WORK_SHARE for s in both)} of {len(both)} | {spread(both)} | "
          f"{spread(others)} |")
    print(f"| parts alone | {sum(s >= SAME_WORK_SHARE for s in parts)} of {len(parts)} | {spread(parts)} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What download's comparison of MIDI files by their notes costs, beside the byte digest it already made.

    python benchmarks/notes_digest.py [FOLDER ...] [--repeat 3]

Reads every MIDI file under the folders (default: data/raw, the default run's
collection), then times, in one run and on the same bytes, the sha256 of each
file and :func:`musicid.midi.notes_digest` (the file read as render reads it,
its notes put on one timeline and hashed), the best of ``--repeat`` passes:
milliseconds a file, milliseconds per KB, and the ratio. It also counts the
files that play the same notes as another (what download would keep once),
and those whose notes are all in another file's (a copy cut short, an
excerpt), timing that pairing as download makes it.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from musicid.filetypes import MIDI_EXTENSIONS  # noqa: E402
from musicid.midi import (MIN_CONTAINED_NOTES, early_notes, heard_notes, holds_notes, notes_digest,  # noqa: E402
                          pitch_counts)


def best_seconds(function, items, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            function(item)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, default=[Path("data/raw")])
    parser.add_argument("--repeat", type=int, default=3, help="passes; the fastest is shown (default 3)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    paths = sorted(path for folder in args.folders for path in folder.rglob("*")
                   if path.is_file() and path.suffix.lower() in MIDI_EXTENSIONS)
    if not paths:
        print(f"no MIDI file under {', '.join(map(str, args.folders))}", file=sys.stderr)
        return 1
    data = [path.read_bytes() for path in paths]
    kilobytes = sum(map(len, data)) / 1024
    hashed = best_seconds(lambda item: hashlib.sha256(item).hexdigest(), data, args.repeat)
    noted = best_seconds(notes_digest, data, args.repeat)
    groups = collections.Counter(digest for digest in map(notes_digest, data) if digest)
    unread = sum(1 for item in data if notes_digest(item) is None)
    # Files held in another (a copy cut short, an excerpt), paired much as download pairs them (here the first
    # holder found ends a file's search, and no file is dropped on the way): the notes of their
    # first beats (kept from the first reading) through an index, then their pitches' counts, then, for the
    # pairs that pass, the two files read again and compared note by note. Timed from the early notes on.
    early = [early_notes(heard_notes(item)) for item in data]
    counts = [len(heard_notes(item) or ()) for item in data]
    pitches = [pitch_counts(heard_notes(item)) for item in data]
    started = time.perf_counter()
    ranked = sorted((index for index in range(len(data)) if early[index]), key=lambda index: -counts[index])
    holding = collections.defaultdict(set)
    for index in ranked:
        for note in early[index]:
            holding[note].add(index)
    again: dict[int, list] = {}

    def read_again(index):
        if index not in again:
            again[index] = heard_notes(data[index])
        return again[index]

    held = passed = 0
    for part in ranked:
        postings = sorted((holding[note] for note in early[part]), key=len)
        possible = set(postings[0]).intersection(*postings[1:]) - {part}
        for whole in sorted(possible):
            if counts[whole] >= counts[part] and all(a <= b for a, b in zip(pitches[part], pitches[whole])):
                passed += 1
                if holds_notes(read_again(whole), read_again(part)):
                    held += 1
                    break
    pairing = time.perf_counter() - started
    print(f"{len(data)} MIDI files, {kilobytes / len(data):.1f} KB on average (largest {max(map(len, data)) / 1024:.1f} KB)")
    print("| digest | ms a file | ms per KB |")
    print("|---|---|---|")
    for name, seconds in (("sha256 of the bytes", hashed), ("notes (musicid.midi.notes_digest)", noted)):
        print(f"| {name} | {1000 * seconds / len(data):.2f} | {1000 * seconds / kilobytes:.3f} |")
    print(f"notes / bytes: {noted / hashed:.0f}x; files playing the same notes as another: "
          f"{sum(count - 1 for count in groups.values())}; notes not read (left to render): {unread}")
    print(f"files whose notes are all in another's: {held}; pairing {len(ranked)} files of at least "
          f"{MIN_CONTAINED_NOTES} notes: {passed} pairs compared note by note, {len(again)} files read again, "
          f"{pairing:.2f} s ({1000 * pairing / len(data):.1f} ms a file)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
from musicid.midi import MIN_CONTAINED_NOTES, early_notes, heard_notes, holds_notes, notes_digest  # noqa: E402


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
    # Files held in another (a copy cut short, an excerpt): every pair by the notes of its first beats, then
    # note by note for the pairs that pass, as download does.
    notes = [heard_notes(item) for item in data]
    early = [early_notes(item) for item in notes]
    ranked = sorted((index for index in range(len(data)) if early[index]), key=lambda index: -len(notes[index]))
    started = time.perf_counter()
    held = passed = 0
    for position, part in enumerate(ranked):
        for whole in ranked[:position]:
            if early[part] <= early[whole]:
                passed += 1
                if holds_notes(notes[whole], notes[part]):
                    held += 1
                    break
    pairing = time.perf_counter() - started
    pairs = len(ranked) * (len(ranked) - 1) // 2
    print(f"{len(data)} MIDI files, {kilobytes / len(data):.1f} KB on average (largest {max(map(len, data)) / 1024:.1f} KB)")
    print("| digest | ms a file | ms per KB |")
    print("|---|---|---|")
    for name, seconds in (("sha256 of the bytes", hashed), ("notes (musicid.midi.notes_digest)", noted)):
        print(f"| {name} | {1000 * seconds / len(data):.2f} | {1000 * seconds / kilobytes:.3f} |")
    print(f"notes / bytes: {noted / hashed:.0f}x; files playing the same notes as another: "
          f"{sum(count - 1 for count in groups.values())}; notes not read (left to render): {unread}")
    print(f"files whose notes are all in another's: {held}; pairing {len(ranked)} files of at least "
          f"{MIN_CONTAINED_NOTES} notes ({pairs} pairs, {passed} compared note by note): {pairing:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

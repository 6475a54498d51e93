"""What download's comparison of MIDI files by their notes costs, beside the byte digest it already made.

    python benchmarks/notes_digest.py [FOLDER ...] [--repeat 3]

Reads every MIDI file under the folders (default: data/raw, the default run's
collection), then times, in one run and on the same bytes, the sha256 of each
file and :func:`musicid.midi.notes_digest` (the file read as render reads it,
its notes put on one timeline and hashed), the best of ``--repeat`` passes:
milliseconds a file, milliseconds per KB, and the ratio. It also counts the
groups of files that play the same notes (what download would keep once).
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
from musicid.midi import notes_digest  # noqa: E402


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
    print(f"{len(data)} MIDI files, {kilobytes / len(data):.1f} KB on average (largest {max(map(len, data)) / 1024:.1f} KB)")
    print("| digest | ms a file | ms per KB |")
    print("|---|---|---|")
    for name, seconds in (("sha256 of the bytes", hashed), ("notes (musicid.midi.notes_digest)", noted)):
        print(f"| {name} | {1000 * seconds / len(data):.2f} | {1000 * seconds / kilobytes:.3f} |")
    print(f"notes / bytes: {noted / hashed:.0f}x; files playing the same notes as another: "
          f"{sum(count - 1 for count in groups.values())}; notes not read (left to render): {unread}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

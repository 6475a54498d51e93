"""What spreading download's reading of a collection's files over worker processes saves, measured side by side.

    python benchmarks/download_reads.py [FOLDER] [--files 160] [--notes 4000] [--jobs 2] [--repeat 3]
                                        [--max-per-class N]

Download reads every file of a folder or archive collection before it keeps
it: its first bytes against its extension, its bytes' sha256 and, for a MIDI
file, its notes (:func:`musicid.midi.notes_digest`, about 1.2 ms a KB), which
find copies of one piece; with ``dataset.max_per_class``, the picked files are
read as render reads them as well. This script times
:func:`musicid.dataset.collect_tree` on one collection read in this process
(``jobs`` 1) and on ``--jobs`` workers, in alternating order, ``--repeat``
pairs, and prints each pair, the best of each and their ratio. It also checks
that both give the same manifest.

FOLDER: a collection of ``<label>/<files>`` (default: one written here, of
``--files`` MIDI files of ``--notes`` piano notes each, with sustain pedal
and velocities as a performance has them, in four label folders, seeded).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from musicid.dataset import collect_tree  # noqa: E402
from musicid.parallel import resolve_jobs  # noqa: E402


def write_collection(root: Path, files: int, notes: int, seed: int = 0) -> None:
    """``files`` MIDI files of ``notes`` piano notes each (onsets and velocities drawn, pedal every two
    seconds or so), dealt into four label folders."""
    import pretty_midi

    rng = random.Random(seed)
    for index in range(files):
        midi = pretty_midi.PrettyMIDI(initial_tempo=rng.uniform(60, 160))
        piano = pretty_midi.Instrument(program=0)
        onset = 0.0
        for _ in range(notes):
            onset += rng.expovariate(8.0)
            piano.notes.append(pretty_midi.Note(velocity=rng.randint(20, 110), pitch=rng.randint(28, 100),
                                                start=onset, end=onset + rng.uniform(0.05, 1.5)))
        pedal = 0.0
        while pedal < onset:
            piano.control_changes.append(pretty_midi.ControlChange(64, 127, pedal))
            piano.control_changes.append(pretty_midi.ControlChange(64, 0, pedal + rng.uniform(0.5, 2.5)))
            pedal += rng.uniform(1.0, 3.0)
        midi.instruments.append(piano)
        folder = root / f"composer{index % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        midi.write(str(folder / f"piece{index:04d}.mid"))


def timed(root: Path, jobs: int, max_per_class: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory(prefix="download-reads-") as out:
        start = time.perf_counter()
        manifest = collect_tree(root, "bench/", Path(out), [], {}, None, max_per_class, 0, jobs=jobs)
        return time.perf_counter() - start, manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=None)
    parser.add_argument("--files", type=int, default=160, help="MIDI files written (no FOLDER; default 160)")
    parser.add_argument("--notes", type=int, default=4000, help="notes in each (no FOLDER; default 4000)")
    parser.add_argument("--jobs", type=int, default=0, help="workers to compare with one (0: one per core)")
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs; the fastest of each is shown")
    parser.add_argument("--max-per-class", type=int, default=0, help="dataset.max_per_class (default 0: all)")
    args = parser.parse_args(argv)
    for name in ("files", "notes", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.jobs < 0 or args.max_per_class < 0:
        parser.error("--jobs and --max-per-class must be >= 0")
    jobs = resolve_jobs(args.jobs)
    if jobs < 2:
        parser.error("one worker is the same as reading here: give --jobs 2 or more (or run on two cores)")

    scratch = None
    root = args.folder
    if root is None:
        scratch = Path(tempfile.mkdtemp(prefix="download-reads-collection-"))
        root = scratch / "collection"
        write_collection(root, args.files, args.notes)
    try:
        files = [path for path in root.rglob("*") if path.is_file()]
        size = sum(path.stat().st_size for path in files)
        print(f"{len(files)} files, {size / 2**20:.1f} MB, in {root if args.folder else 'a written collection'}"
              f"{f'; max_per_class {args.max_per_class}' if args.max_per_class else ''}")
        here, spread = [], []
        for index in range(args.repeat):
            order = (1, jobs) if index % 2 == 0 else (jobs, 1)
            results = {}
            for count in order:
                results[count] = timed(root, count, args.max_per_class)
            if json.dumps(results[1][1], sort_keys=True) != json.dumps(results[jobs][1], sort_keys=True):
                print("the manifests differ between 1 and", jobs, "workers", file=sys.stderr)
                return 1
            here.append(results[1][0])
            spread.append(results[jobs][0])
            print(f"pair {index + 1}: here {here[-1]:.2f} s, {jobs} workers {spread[-1]:.2f} s, "
                  f"ratio {here[-1] / spread[-1]:.2f}")
        kept = len(results[1][1]["files"])
        print(f"best: here {min(here):.2f} s, {jobs} workers {min(spread):.2f} s, ratio {min(here) / min(spread):.2f} "
              f"({kept} files kept, the same manifest each time)")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m musicid predict` on a folder of MIDI files, with its files read in this process and by workers.

``--jobs 1`` renders, clips and featurizes every file in predict's own
process, one after the other, as predict did before it had workers; ``--jobs
N`` (default 0: one per core) has N worker processes do that while predict's
process runs the model on the files they have finished.  Both are run as a
user runs them (a fresh ``python -m musicid predict ... --json`` process,
start-up and model loading included), interleaved round after round, so a
load that comes and goes on the machine touches both alike.  Each round gives
the ratio of the two wall-clock times; their minimum, median and maximum over
rounds are printed, with each way's median time.  The two JSON outputs must
be the same, byte for byte, or the benchmark stops.

The files are the 16 corpus pieces of ``benchmarks/render_speed.py`` (string
quartet movements and piano pieces, 69 minutes in all), exported once and
kept under ``--out``/midi, and their folder is given ``--passes`` times on
the command line (3: 48 files, 207 minutes), so that a start-up of a few
seconds weighs as it does on a folder of a user's; the model is the default
run's (``dvc repro`` makes ``models/model.pt``).

    python benchmarks/predict_jobs.py [--rounds 3] [--passes 3] [--jobs 0] [--model models/model.pt] [--out benchmarks/runs/predict_jobs]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from render_speed import midi_set  # noqa: E402

from musicid.parallel import resolve_jobs  # noqa: E402

PROJECT = Path(__file__).resolve().parent.parent


def whole(least: int):
    """argparse type: a whole number >= ``least``."""
    def parse(text: str) -> int:
        if not text.strip().isdigit() or int(text) < least:
            raise argparse.ArgumentTypeError(f"must be a whole number of at least {least}, got {text!r}")
        return int(text)
    return parse


def predict(folder: Path, passes: int, model: Path, jobs: int) -> tuple[float, bytes]:
    """(wall-clock seconds, stdout) of one predict process over ``folder``, named ``passes`` times."""
    environment = {**os.environ, "MUSICID_PROGRESS": "0"}
    environment.pop("MUSICID_JOBS", None)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "musicid", "predict", *[str(folder)] * passes, "--model", str(model),
                             "--json", "--jobs", str(jobs)], capture_output=True, env=environment, cwd=PROJECT)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"predict --jobs {jobs} exited {result.returncode}: {result.stderr.decode()[-2000:]}")
    return seconds, result.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=whole(1), default=3)
    parser.add_argument("--passes", type=whole(1), default=3, help="times the folder is named (3: 48 files)")
    parser.add_argument("--jobs", type=whole(0), default=0, help="workers of the parallel way (0: one per core)")
    parser.add_argument("--model", type=Path, default=PROJECT / "models" / "model.pt")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "runs" / "predict_jobs")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"{args.model} is missing: `dvc repro` makes it")
    jobs = resolve_jobs(args.jobs)
    if jobs < 2:
        parser.error("this machine gives one worker: nothing to compare (pass --jobs 2)")
    midi = midi_set(args.out / "midi", jobs)
    folder = args.out / "midi"
    print(f"{len(midi) * args.passes} MIDI files ({len(midi)} named {args.passes} times), predict --jobs 1 against --jobs {jobs}, {args.rounds} rounds, interleaved",
          flush=True)
    one, many, ratios = [], [], []
    for round_ in range(1, args.rounds + 1):
        one_s, one_out = predict(folder, args.passes, args.model, 1)
        many_s, many_out = predict(folder, args.passes, args.model, jobs)
        if one_out != many_out:
            raise SystemExit("the two ways printed different predictions")
        one.append(one_s)
        many.append(many_s)
        ratios.append(one_s / many_s)
        print(f"round {round_}: --jobs 1 {one_s:.1f} s, --jobs {jobs} {many_s:.1f} s: {one_s / many_s:.2f}x",
              flush=True)
    print(f"median --jobs 1 {statistics.median(one):.1f} s, --jobs {jobs} {statistics.median(many):.1f} s; "
          f"speed-up min {min(ratios):.2f}x, median {statistics.median(ratios):.2f}x, max {max(ratios):.2f}x; "
          "predictions the same byte for byte")
    return 0


if __name__ == "__main__":
    sys.exit(main())

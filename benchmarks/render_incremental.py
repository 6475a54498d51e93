"""Incremental rendering, measured in one run: a collection, one file added, one param changed.

On a seeded collection of generated piano pieces (pretty_midi), through the
render stage script itself, with a render cache of its own:

1. render N files from scratch (cache empty);
2. render them again with nothing changed: all N from the cache.  Its time is
   the fixed overhead of an incremental run (hashing every source, reading
   the entries, writing the output, starting the workers);
3. render the one extra file alone, cache off (its cost on its own);
4. add that file to the collection and render again (N from the cache, 1 new);
5. change one render param (``render.gain``) and render again: nothing may
   come from the cache.

Prints each time and whether run 4 took at most twice the one file's render
(3) plus the fixed overhead (2).  The output of 4 is compared byte for byte
with a run from scratch (``MUSICID_NO_CACHE=1``) on the same N + 1 files.

    python benchmarks/render_incremental.py                  # 200 files of 30 s, 2 workers
    python benchmarks/render_incremental.py --files 50 --seconds 20
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from musicid.params import read_params

sys.path.insert(0, str(Path(__file__).resolve().parent))
import composer_quality  # noqa: E402
from collection_budget import parse_set  # noqa: E402
from composer_quality import apply  # noqa: E402

PROJECT = Path(__file__).resolve().parent.parent


def make_piece(path: Path, seconds: float, seed: int) -> None:
    import pretty_midi

    rng = np.random.default_rng(seed)
    midi = pretty_midi.PrettyMIDI(initial_tempo=100.0)
    piano = pretty_midi.Instrument(program=0)
    t = 0.0
    while t < seconds:
        length = float(rng.choice([0.25, 0.5, 1.0]))
        for pitch in rng.choice(np.arange(48, 84), size=int(rng.integers(1, 4)), replace=False):
            piano.notes.append(pretty_midi.Note(velocity=int(rng.integers(50, 110)), pitch=int(pitch),
                                                start=t, end=min(t + length, seconds)))
        t += length
    midi.instruments.append(piano)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))


def write_manifest(raw: Path) -> None:
    paths = sorted(str(p.relative_to(raw)) for p in raw.rglob("*.mid"))
    files = [{"path": p, "label": p.split("/")[0]} for p in paths]
    (raw / "manifest.json").write_text(json.dumps({"files": files, "skipped": [], "unlabeled": []}))


def render(stage, params: Path, raw: Path, out: Path, jobs: int) -> tuple[float, str]:
    captured = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(captured):
        code = stage.main(["--params", str(params), "--raw", str(raw), "--out", str(out), "--jobs", str(jobs)])
    elapsed = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"render exited {code}: {captured.getvalue()}")
    return elapsed, captured.getvalue().strip()


def from_cache(summary: str) -> str:
    match = re.search(r"(\d+) of (\d+) from the render cache", summary)
    return f"{match.group(1)} of {match.group(2)}" if match else "-"


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main(argv: list[str] | None = None) -> None:
    import importlib.util

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each generated piece")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", type=parse_set, action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a param changed from params.yaml (repeatable), e.g. render.sample_rate=22050")
    args = parser.parse_args(argv)
    os.environ["MUSICID_PROGRESS"] = "0"
    spec = importlib.util.spec_from_file_location("render_stage", PROJECT / "stages" / "render.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)

    composer_quality.PROGRAM = "render_incremental"
    params = apply(read_params(PROJECT / "params.yaml"), dict(args.set))  # a misspelt key stops here

    with tempfile.TemporaryDirectory(prefix="musicid-incremental-") as scratch:
        scratch = Path(scratch)
        os.environ["MUSICID_RENDER_CACHE"] = str(scratch / "cache")
        raw, alone = scratch / "raw", scratch / "alone"
        for index in range(args.files):
            make_piece(raw / f"c{index % 4}" / f"piece{index:04d}.mid", args.seconds, index)
        make_piece(alone / "c0" / "added.mid", args.seconds, 10 ** 6)
        write_manifest(raw)
        write_manifest(alone)
        (scratch / "params.yaml").write_text(yaml.safe_dump(params))
        params["render"]["gain"] = params["render"]["gain"] * 0.9
        (scratch / "params-gain.yaml").write_text(yaml.safe_dump(params))

        rows = []
        seconds, summary = render(stage, scratch / "params.yaml", raw, scratch / "out-full", args.jobs)
        rows.append((f"{args.files} files from scratch", seconds, from_cache(summary)))
        overhead, summary = render(stage, scratch / "params.yaml", raw, scratch / "out-again", args.jobs)
        rows.append((f"{args.files} files again, nothing changed", overhead, from_cache(summary)))
        os.environ["MUSICID_NO_CACHE"] = "1"
        one, summary = render(stage, scratch / "params.yaml", alone, scratch / "out-alone", args.jobs)
        del os.environ["MUSICID_NO_CACHE"]
        rows.append(("the added file alone, cache off", one, "off"))
        (raw / "c0" / "added.mid").write_bytes((alone / "c0" / "added.mid").read_bytes())
        write_manifest(raw)
        rerun, summary = render(stage, scratch / "params.yaml", raw, scratch / "out-incremental", args.jobs)
        rows.append((f"{args.files} + 1 files, incremental", rerun, from_cache(summary)))
        changed, summary = render(stage, scratch / "params-gain.yaml", raw, scratch / "out-gain", args.jobs)
        rows.append(("render.gain changed", changed, from_cache(summary)))
        os.environ["MUSICID_NO_CACHE"] = "1"
        scratch_run, _ = render(stage, scratch / "params.yaml", raw, scratch / "out-scratch", args.jobs)
        del os.environ["MUSICID_NO_CACHE"]
        rows.append((f"{args.files} + 1 files, MUSICID_NO_CACHE=1", scratch_run, "off"))
        identical = files_of(scratch / "out-incremental") == files_of(scratch / "out-scratch")

    print(f"{args.files} generated piano pieces of {args.seconds:g} s, {args.jobs} workers")
    print(f"{'run':<36} {'seconds':>8}  from the cache")
    for name, value, cached in rows:
        print(f"{name:<36} {value:8.2f}  {cached}")
    bound = 2 * one + overhead
    print(f"fixed overhead (all {args.files} from the cache): {overhead:.2f} s, "
          f"{overhead / args.files * 1000:.1f} ms per cached file")
    print(f"incremental rerun {rerun:.2f} s <= 2 x {one:.2f} s (the one file) + {overhead:.2f} s (overhead) "
          f"= {bound:.2f} s: {rerun <= bound}; rerun / from scratch = {rerun / rows[0][1]:.3f}")
    print(f"incremental output identical to a run from scratch: {identical}")


if __name__ == "__main__":
    main()

"""Peak memory of the clip and featurize stages on 1x and 10x synthetic inputs.

Writes a synthetic data/audio (N tracks of 30 s, 22050 Hz mono, as the render
stage would) for N = 30 and N = 300, runs the real stage scripts on each in
a child process, and prints the peak resident memory of the stage process
and of its largest worker, side by side. Flat memory means the 10x row is not
ten times the 1x row.

    python benchmarks/stage_memory.py [--tracks 30] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import yaml

from musicid.params import read_params

PROJECT = Path(__file__).resolve().parent.parent

# Runs a stage as __main__ in this child and reports peak RSS of itself and its workers.
PROBE = """
import resource, runpy, sys
script = sys.argv[1]
sys.argv = sys.argv[1:]
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as exit_code:
    if exit_code.code:
        raise
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"PEAK {own} {workers}", file=sys.stderr)
"""


def write_audio(root: Path, tracks: int, seconds: float, sample_rate: int = 22050) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    files = []
    for index in range(tracks):
        label = f"class{index % 4}"
        name = f"{label}/track{index:04d}.wav"
        tone = 0.2 * np.sin(2 * np.pi * (110 + 7 * index) * t) + 0.02 * rng.standard_normal(len(t))
        (root / label).mkdir(parents=True, exist_ok=True)
        soundfile.write(str(root / name), tone.astype(np.float32), sample_rate, subtype="PCM_16")
        files.append({"source": name.replace(".wav", ".mid"), "label": label, "status": "rendered",
                      "reason": None, "duration_s": seconds, "outputs": [name]})
    (root / "report.json").write_text(json.dumps({"files": files}))


def run(script: str, arguments: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """(seconds, peak MiB of the stage process, peak MiB of its largest worker); ``env``: more variables."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PROBE, str(PROJECT / "stages" / script), *arguments],
                            capture_output=True, text=True, env={"MUSICID_PROGRESS": "0",
                                                                  "PATH": "/usr/bin:/bin", **(env or {})})
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    peak = next(line for line in result.stderr.splitlines() if line.startswith("PEAK"))
    own, workers = (int(value) / 1024 for value in peak.split()[1:])
    return time.perf_counter() - started, own, workers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=30, help="tracks at 1x (10x has ten times as many)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each track")
    args = parser.parse_args()
    if args.tracks < 12 or args.seconds < 8:  # 4 classes; clip needs 3 tracks a class (train, val, test)
        parser.error("--tracks must be at least 12 and --seconds at least 8")
    params = read_params(PROJECT / "params.yaml")
    params["clip"]["max_clips_per_track"] = 0  # every clip, so 10x tracks make 10x clips
    params["features"]["symbolic"] = False  # synthetic audio tracks: no MIDI source to read notes from
    rows = []
    with tempfile.TemporaryDirectory(prefix="musicid-memory-") as scratch:
        scratch = Path(scratch)
        (scratch / "params.yaml").write_text(yaml.safe_dump(params))
        for scale in (1, 10):
            folder = scratch / f"x{scale}"
            write_audio(folder / "audio", args.tracks * scale, args.seconds)
            clip = run("clip.py", ["--params", str(scratch / "params.yaml"), "--audio", str(folder / "audio"),
                                   "--out", str(folder / "clips.h5"), "--report", str(folder / "report.json")])
            clips = json.loads((folder / "report.json").read_text())["clips"]
            featurize = run("featurize.py", ["--params", str(scratch / "params.yaml"),
                                             "--clips", str(folder / "clips.h5"), "--out", str(folder / "features.h5")])
            rows.append((scale, args.tracks * scale, clips, clip, featurize))
    print(f"synthetic tracks of {args.seconds:g} s; peak resident memory in MiB (stage process / largest worker)")
    print(f"{'input':>6s} {'tracks':>7s} {'clips':>7s}   {'clip stage':>24s}   {'featurize stage':>24s}")
    for scale, tracks, clips, clip, featurize in rows:
        print(f"{scale:>5d}x {tracks:7d} {clips:7d}   {clip[1]:7.0f} / {clip[2]:5.0f} in {clip[0]:5.1f} s"
              f"   {featurize[1]:7.0f} / {featurize[2]:5.0f} in {featurize[0]:5.1f} s")
    (_, _, _, clip1, feat1), (_, _, _, clip10, feat10) = rows
    print(f"10x / 1x peak: clip {max(clip10[1:]) / max(clip1[1:]):.2f}, "
          f"featurize {max(feat10[1:]) / max(feat1[1:]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

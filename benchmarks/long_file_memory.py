"""Peak memory of the render and clip stages on a few long recordings.

Writes N WAV sources of S seconds, 44.1 kHz stereo (a collection of long
recordings), as the download stage leaves them, then runs the render stage
(render cache off) and the clip stage on them, 2 workers, and prints the
peak resident memory of each stage's own process and of its largest worker.
Local workers read their files themselves, so the stage processes stay near
their libraries' size whatever the files' length; a worker holds its own
file whole.

    python benchmarks/long_file_memory.py [--files 6] [--seconds 1800]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import yaml

from musicid.io import sha256_file
from musicid.params import read_params
from stage_memory import PROJECT, run


def write_sources(raw: Path, files: int, seconds: float, sample_rate: int = 44100) -> None:
    """Written 10 s at a time: Linux keeps a process's peak memory across exec, so this process must stay
    small for the stages it starts to measure their own."""
    records = []
    block = 10 * sample_rate
    for index in range(files):
        label = f"class{index % 2}"
        name = f"{label}/long{index:02d}.wav"
        (raw / label).mkdir(parents=True, exist_ok=True)
        with soundfile.SoundFile(str(raw / name), "w", sample_rate, 2, subtype="PCM_16") as handle:
            for start in range(0, int(seconds * sample_rate), block):
                t = np.arange(start, min(start + block, int(seconds * sample_rate))) / sample_rate
                tone = 0.2 * np.sin(2 * np.pi * (110 + 30 * index) * t) * (1 + 0.3 * np.sin(2 * np.pi * t / 5))
                handle.write(np.repeat(tone.astype(np.float32)[:, None], 2, axis=1))
        records.append({"path": name, "label": label, "sha256": sha256_file(raw / name),
                        "size": (raw / name).stat().st_size, "origin": f"bench/{name}"})
    (raw / "manifest.json").write_text(json.dumps({"source": "path", "files": records, "skipped": [],
                                                   "unlabeled": []}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6, help="long recordings (two classes; clip needs 3 each)")
    parser.add_argument("--seconds", type=float, default=1800.0, help="length of each recording")
    args = parser.parse_args()
    if args.files < 6 or args.seconds < 8:
        parser.error("--files must be at least 6 and --seconds at least 8")
    params = read_params(PROJECT / "params.yaml")
    params["features"]["symbolic"] = False  # audio sources: no notes
    with tempfile.TemporaryDirectory(prefix="musicid-long-") as scratch:
        scratch = Path(scratch)
        (scratch / "params.yaml").write_text(yaml.safe_dump(params))
        write_sources(scratch / "raw", args.files, args.seconds)
        size = sum(p.stat().st_size for p in (scratch / "raw").rglob("*.wav")) / 2 ** 20
        render = run("render.py", ["--params", str(scratch / "params.yaml"), "--raw", str(scratch / "raw"),
                                   "--out", str(scratch / "audio"), "--jobs", "2"], env={"MUSICID_NO_CACHE": "1"})
        clip = run("clip.py", ["--params", str(scratch / "params.yaml"), "--audio", str(scratch / "audio"),
                               "--out", str(scratch / "clips.h5"), "--report", str(scratch / "report.json"),
                               "--jobs", "2"])
    print(f"{args.files} WAV files of {args.seconds:g} s, 44.1 kHz stereo ({size:.0f} MiB, "
          f"{size / args.files:.0f} MiB a file); 2 workers; peak resident memory in MiB")
    for name, (seconds, own, worker) in (("render", render), ("clip", clip)):
        print(f"  {name:7s} stage process {own:6.0f}, largest worker {worker:6.0f}  ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

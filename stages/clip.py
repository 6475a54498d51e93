"""Stage `clip`: assign splits per track, then cut fixed-length clips into HDF5.

    python stages/clip.py --params params.yaml --audio data/audio --out data/clips.h5
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from musicid.clips import assign_splits, clip_track
from musicid.h5 import STRING, RowWriter
from musicid.io import atomic_path, dumps_json
from musicid.parallel import ordered_map
from musicid.params import ParamsError, as_dict, load_section
from musicid.progress import progress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, type=Path)
    parser.add_argument("--audio", required=True, type=Path, help="input: data/audio (with report.json)")
    parser.add_argument("--out", required=True, type=Path, help="output: data/clips.h5")
    parser.add_argument("--jobs", type=int, default=0, help="worker processes (0: one per core)")
    args = parser.parse_args(argv)
    try:
        clip_params = load_section(args.params, "clip")
        split_params = load_section(args.params, "split")
    except ParamsError as error:
        print(f"clip: {error}", file=sys.stderr)
        return 2

    report = json.loads((args.audio / "report.json").read_text())
    tracks = {r["source"]: r for r in report["files"] if r["status"] != "rejected"}
    if not tracks:
        print(f"clip: no usable audio in {args.audio}/report.json", file=sys.stderr)
        return 1
    label_names = sorted({r["label"] for r in tracks.values()})
    label_index = {name: i for i, name in enumerate(label_names)}
    splits = assign_splits({t: r["label"] for t, r in tracks.items()},
                           split_params.val, split_params.test, split_params.seed)

    order = sorted(tracks)
    tasks = [([str(args.audio / name) for name in tracks[t]["outputs"]], clip_params.sample_rate,
              clip_params.clip_seconds, clip_params.hop_seconds, clip_params.max_clips_per_track,
              clip_params.min_rms) for t in order]
    clip_samples = int(round(clip_params.clip_seconds * clip_params.sample_rate))
    clips_per = Counter()
    tracks_per = Counter()
    silent_total = 0
    with atomic_path(args.out) as temporary:
        with RowWriter(temporary, {
            "audio": (np.float32, (clip_samples,)),
            "label": (np.int16, ()),
            "track": (STRING, ()),
            "source": (STRING, ()),
            "offset_s": (np.float64, ()),
            "split": (STRING, ()),
        }) as writer:
            results = ordered_map(clip_track, tasks, jobs=args.jobs)
            for track, (clips, offsets, output_index, n_silent) in progress(
                    zip(order, results), total=len(order), desc="clip"):
                record = tracks[track]
                split = splits[track]
                count = len(clips)
                writer.append(
                    audio=clips,
                    label=np.full(count, label_index[record["label"]], dtype=np.int16),
                    track=[track] * count,
                    source=[record["outputs"][i] for i in output_index],
                    offset_s=offsets,
                    split=[split] * count,
                )
                clips_per[(record["label"], split)] += count
                tracks_per[(record["label"], split)] += 1
                silent_total += n_silent
            writer.attrs["label_names"] = label_names
            writer.attrs["sample_rate"] = clip_params.sample_rate
            writer.attrs["params"] = dumps_json({"clip": as_dict(clip_params), "split": as_dict(split_params)})
            writer.attrs["counts"] = dumps_json({
                f"{label}/{split}": {"tracks": tracks_per[(label, split)], "clips": clips_per[(label, split)]}
                for label in label_names for split in ("train", "val", "test")
            })
            total = writer.rows

    per_split = {s: sum(v for (_, sp), v in clips_per.items() if sp == s) for s in ("train", "val", "test")}
    print(f"clip: {total} clips of {clip_params.clip_seconds:g} s from {len(order)} tracks "
          f"(train {per_split['train']}, val {per_split['val']}, test {per_split['test']}; "
          f"{silent_total} silent skipped) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

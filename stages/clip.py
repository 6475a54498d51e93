"""Stage `clip`: assign splits per track, then cut fixed-length clips into HDF5.

    python stages/clip.py --params params.yaml --audio data/audio \
        --out data/clips.h5 --report data/clips_report.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from musicid.clips import ClipSpec, ClipTask, assign_splits, clip_track, per_track_cap
from musicid.h5 import SPLITS, STRING, RowWriter
from musicid.io import atomic_path, dumps_json, write_json_atomic
from musicid.parallel import ordered_map
from musicid.params import ParamsError, as_dict, load_section
from musicid.progress import progress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, type=Path)
    parser.add_argument("--audio", required=True, type=Path, help="input: data/audio (with report.json)")
    parser.add_argument("--out", required=True, type=Path, help="output: data/clips.h5")
    parser.add_argument("--report", required=True, type=Path, help="output: counts per label and split (JSON)")
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
    labels_found = sorted({r["label"] for r in tracks.values()})
    holdout = sorted(set(split_params.holdout_classes))
    missing = [label for label in holdout if label not in labels_found]
    if missing or len(holdout) >= len(labels_found):
        reason = (f"names classes with no rendered track: {missing}" if missing
                  else "must leave at least one class to train on")
        print(f"clip: {args.params}: split.holdout_classes {reason}", file=sys.stderr)
        return 2
    if not tracks:
        print(f"clip: no usable audio in {args.audio}/report.json", file=sys.stderr)
        return 1
    # Known classes first, so that the classifier's outputs are 0 .. n_known - 1.
    label_names = [label for label in labels_found if label not in holdout] + holdout
    label_index = {name: i for i, name in enumerate(label_names)}
    splits = assign_splits({t: r["label"] for t, r in tracks.items()}, split_params.val,
                           split_params.test, split_params.seed, holdout)

    spec = ClipSpec.from_params(clip_params)
    tracks_in_class = Counter(r["label"] for r in tracks.values())
    order = sorted(tracks)
    tasks = [ClipTask(tuple(str(args.audio / name) for name in tracks[t]["outputs"]), spec,
                      per_track_cap(clip_params.max_clips_per_track, clip_params.max_clips_per_class,
                                    tracks_in_class[tracks[t]["label"]])) for t in order]
    clip_samples = int(round(clip_params.clip_seconds * clip_params.sample_rate))
    clips_per, tracks_per = Counter(), Counter()
    silent_total, without_clips = 0, 0
    with atomic_path(args.out) as temporary:
        with RowWriter(temporary, {
            "audio": (np.float32, (clip_samples,)),
            "label": (np.int16, ()),
            "known": (np.bool_, ()),
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
                    known=np.full(count, record["label"] not in holdout),
                    track=[track] * count,
                    source=[record["outputs"][i] for i in output_index],
                    offset_s=offsets,
                    split=[split] * count,
                )
                clips_per[(record["label"], split)] += count
                tracks_per[(record["label"], split)] += 1
                silent_total += n_silent
                without_clips += count == 0
            counts = {label: {split: {"tracks": tracks_per[(label, split)], "clips": clips_per[(label, split)]}
                              for split in SPLITS} for label in label_names}
            writer.attrs["label_names"] = label_names
            writer.attrs["n_known"] = len(label_names) - len(holdout)
            writer.attrs["holdout_classes"] = holdout
            writer.attrs["sample_rate"] = clip_params.sample_rate
            writer.attrs["params"] = dumps_json({"render": report.get("params"), "clip": as_dict(clip_params),
                                                 "split": as_dict(split_params)})
            writer.attrs["counts"] = dumps_json(counts)
            total = writer.rows
    write_json_atomic(args.report, {
        "counts": counts, "clips": total, "silent_clips_skipped": silent_total,
        "tracks_without_clips": without_clips, "holdout_classes": holdout,
    })

    per_split = {s: sum(v for (_, sp), v in clips_per.items() if sp == s) for s in SPLITS}
    print(f"clip: {total} clips of {clip_params.clip_seconds:g} s from {len(order)} tracks "
          f"(train {per_split['train']}, val {per_split['val']}, test {per_split['test']}; "
          f"{silent_total} silent skipped, {without_clips} tracks too short) -> {args.out}")
    for label in label_names:
        cells = ", ".join(f"{s} {counts[label][s]['tracks']}/{counts[label][s]['clips']}" for s in SPLITS)
        print(f"  {label:20s} tracks/clips: {cells}{'  (held out: unknown)' if label in holdout else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

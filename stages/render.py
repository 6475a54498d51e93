"""Stage `render`: MIDI (and audio) sources to validated WAV files plus a report.

    python stages/render.py --params params.yaml --raw data/raw --out data/audio
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from musicid.filetypes import MIDI_EXTENSIONS
from musicid.io import atomic_directory, safe_name, write_json_atomic
from musicid.parallel import ordered_map, resolve_jobs
from musicid.params import ParamsError, as_dict, load_section
from musicid.progress import progress
from musicid.render import (FluidSynthUnavailable, MidiRenderer, RenderPolicy, RenderTask, SynthConfig, init_worker,
                            render_one)


def make_tasks(manifest: dict, raw_dir: Path, staging: Path, soundfonts: list[str],
               policy: RenderPolicy) -> list[RenderTask]:
    """One task per labelled manifest file, sorted by source path.

    A MIDI file gets one WAV per SoundFont (``<id>__<soundfont>.wav`` when there
    are several); an audio file gets one.  All share the source's track id.
    """
    tasks = []
    for record in sorted(manifest["files"], key=lambda r: r["path"]):
        source, label = record["path"], record["label"]
        inner = source.split("/", 1)[1] if "/" in source else source
        track_id = safe_name(inner.rsplit(".", 1)[0].replace("/", "__"))
        is_midi = Path(source).suffix.lower() in MIDI_EXTENSIONS
        if len(soundfonts) == 1 or not is_midi:
            names = (f"{label}/{track_id}.wav",)
        else:
            names = tuple(f"{label}/{track_id}__{safe_name(Path(sf).stem)}.wav" for sf in soundfonts)
        tasks.append(RenderTask(source, label, str((raw_dir / source).resolve()), str(staging),
                                names, policy))
    return tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, type=Path)
    parser.add_argument("--raw", required=True, type=Path, help="input: data/raw (with manifest.json)")
    parser.add_argument("--out", required=True, type=Path, help="output directory: data/audio")
    args = parser.parse_args(argv)
    try:
        params = load_section(args.params, "render")
        config = SynthConfig.from_params(params)
        # Load FluidSynth and every SoundFont once here, so that a missing or broken
        # one stops the stage with its name rather than inside a worker process.
        MidiRenderer(params.soundfonts, config)
    except (ParamsError, FluidSynthUnavailable) as error:
        print(f"render: {error}", file=sys.stderr)
        return 2
    manifest = json.loads((args.raw / "manifest.json").read_text())
    policy = RenderPolicy.from_params(params)

    started = time.monotonic()
    with atomic_directory(args.out) as staging:
        tasks = make_tasks(manifest, args.raw, staging, params.soundfonts, policy)
        records = list(progress(
            ordered_map(render_one, tasks, jobs=params.jobs, initializer=init_worker,
                        initargs=(params.soundfonts, config)),
            total=len(tasks), desc="render"))
        # The params travel on with the data (clips.h5, features.h5, the checkpoint),
        # so that prediction can render new files exactly as the training data was.
        write_json_atomic(staging / "report.json", {"files": records, "params": as_dict(params)})
    elapsed = time.monotonic() - started

    status = Counter(record["status"] for record in records)
    reasons = Counter(record["reason"] for record in records if record["status"] == "rejected")
    seconds = sum(record["duration_s"] or 0 for record in records)
    detail = f" ({', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))})" if reasons else ""
    print(f"render: {status['rendered']} rendered, {status['recovered']} recovered, "
          f"{status['rejected']} rejected{detail}; {seconds / 60:.1f} min of audio in {elapsed:.0f} s "
          f"({seconds / max(elapsed, 1e-9):.0f}x real time, {resolve_jobs(params.jobs)} workers) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

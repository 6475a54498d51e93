"""Stage `render`: MIDI (and audio) sources to validated WAV files plus a report.

    python stages/render.py --params params.yaml --raw data/raw --out data/audio
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from musicid.io import atomic_directory, safe_name, write_json_atomic
from musicid.parallel import ordered_map, resolve_jobs
from musicid.params import ParamsError, load_section
from musicid.progress import progress
from musicid.render import FluidSynthUnavailable, RenderTask, SynthConfig, check_soundfonts, init_worker, render_one


def make_tasks(manifest: dict, raw_dir: Path, staging: Path, soundfonts: list[str],
               min_rms: float, max_seconds: float) -> list[RenderTask]:
    """One task per manifest file, sorted by source path."""
    tasks = []
    for record in sorted(manifest["files"], key=lambda r: r["path"]):
        source = record["path"]
        label = record["label"]
        inner = source.split("/", 1)[1] if "/" in source else source
        track_id = safe_name(inner.rsplit(".", 1)[0].replace("/", "__"))
        if len(soundfonts) == 1:
            names = (f"{label}/{track_id}.wav",)
        else:
            names = tuple(f"{label}/{track_id}__{safe_name(Path(sf).stem)}.wav" for sf in soundfonts)
        tasks.append(RenderTask(source, label, str((raw_dir / source).resolve()), str(staging),
                                names, min_rms, max_seconds))
    return tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, type=Path)
    parser.add_argument("--raw", required=True, type=Path, help="input: data/raw (with manifest.json)")
    parser.add_argument("--out", required=True, type=Path, help="output directory: data/audio")
    args = parser.parse_args(argv)
    try:
        params = load_section(args.params, "render")
        check_soundfonts(params.soundfonts)
    except (ParamsError, FluidSynthUnavailable) as error:
        print(f"render: {error}", file=sys.stderr)
        return 2
    manifest = json.loads((args.raw / "manifest.json").read_text())
    config = SynthConfig(params.sample_rate, params.gain, params.reverb, params.chorus)

    with atomic_directory(args.out) as staging:
        tasks = make_tasks(manifest, args.raw, staging, params.soundfonts, params.min_rms, params.max_seconds)
        try:
            records = list(progress(
                ordered_map(render_one, tasks, jobs=params.jobs, initializer=init_worker,
                            initargs=(params.soundfonts, config)),
                total=len(tasks), desc="render"))
        except FluidSynthUnavailable as error:
            print(f"render: {error}", file=sys.stderr)
            return 2
        write_json_atomic(staging / "report.json", {"files": records})

    status = Counter(record["status"] for record in records)
    reasons = Counter(record["reason"] for record in records if record["reason"])
    seconds = sum(record["duration_s"] or 0 for record in records)
    detail = f" ({', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))})" if reasons else ""
    print(f"render: {status['rendered']} rendered, {status['rejected']} rejected{detail}; "
          f"{seconds / 60:.1f} min of audio with {resolve_jobs(params.jobs)} workers -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

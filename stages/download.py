"""Stage `download`: write the source collection into data/raw/<label>/ with a manifest.

    python stages/download.py --params params.yaml --out data/raw
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from functools import partial
from pathlib import Path

from musicid.dataset import export_music21
from musicid.io import atomic_directory, write_json_atomic
from musicid.parallel import ordered_map
from musicid.params import ParamsError, load_section
from musicid.progress import progress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, type=Path, help="params.yaml")
    parser.add_argument("--out", required=True, type=Path, help="output directory (data/raw)")
    parser.add_argument("--jobs", type=int, default=0, help="worker processes (0: one per core)")
    args = parser.parse_args(argv)
    try:
        params = load_section(args.params, "dataset")
    except ParamsError as error:
        print(f"download: {error}", file=sys.stderr)
        return 2

    def run_all(function, items):
        return progress(ordered_map(function, items, jobs=args.jobs), total=len(items), desc="download")

    with atomic_directory(args.out) as staging:
        manifest = export_music21(
            classes=params.classes,
            max_per_class=params.max_per_class,
            seed=params.seed,
            out_dir=staging,
            map_function=run_all,
        )
        write_json_atomic(staging / "manifest.json", manifest)

    counts = Counter(record["label"] for record in manifest["files"])
    per_label = ", ".join(f"{label} {counts[label]}" for label in params.classes)
    print(
        f"download: {len(manifest['files'])} files kept ({per_label}), "
        f"{len(manifest['skipped'])} skipped -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

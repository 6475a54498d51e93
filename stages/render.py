"""Stage `render`: MIDI (and audio) sources to validated WAV files plus a report.

    python stages/render.py --params params.yaml --raw data/raw --out data/audio [--jobs N] [--scheduler ADDRESS]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from collections import Counter
from pathlib import Path

# This project's musicid before any installed one: a queued `dvc exp run` runs the stages in a copy of the
# project (.dvc/tmp/exps/...), whose code is the experiment's, while an editable install points elsewhere.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from musicid.instruments import DRUMS, instrument_warning
from musicid.io import atomic_directory, write_json_atomic
from musicid.parallel import check_jobs, ordered_map, resolve_scheduler, where
from musicid.params import RenderParams, as_dict, load_section
from musicid.progress import progress
from musicid.render import (RenderTask, Rendered, assign_all_outputs, crashed, init_worker, render_one,
                            write_rendered)
from musicid.render_cache import RenderCache, init_checked_worker, open_cache, render_environment, size_limit
from musicid.synth import FluidSynthUnavailable, MidiRenderer
from musicid.cache_files import enabled as cache_enabled
from musicid.filetypes import MIDI_EXTENSIONS
from musicid.stage import StageError, run_stage

# Results that depend on the machine's load or luck, never reused from the render cache.
UNREPEATABLE = {"timeout", "worker_crash"}


def recorded_params(params: RenderParams, manifest: dict) -> dict:
    """The render params the report records: as given, except that a collection the download stage wrote
    with every melodic part on one program (``dataset.program``, the manifest's ``program``) sounds as if
    rendered with that ``program``, and is recorded so, so that ``predict`` puts a new MIDI file's parts
    on it too, as its training data was."""
    recorded = as_dict(params)
    if recorded["program"] is None and manifest.get("program") is not None:
        recorded["program"] = manifest["program"]
    return recorded


def plan_tasks(manifest: dict, raw_dir: Path, render: RenderParams) -> list[tuple[Path, RenderTask]]:
    """(source file, its task without the bytes) per labelled manifest file, sorted by source path.

    A MIDI file gets one WAV per SoundFont (``<id>__<soundfont>.wav`` when there
    are several) and, with ``render.augment.copies`` > 0, that many augmented
    ones (``<id>__aug<k>.wav``); an audio file gets one.  No two sources share
    an output (``musicid.render.assign_all_outputs``).  A local worker reads
    its source itself (:func:`with_file`); for a Dask worker :func:`with_data`
    reads it when its task is about to be sent, so memory holds the files in
    flight, not the collection.
    """
    records = sorted(manifest["files"], key=lambda r: r["path"])
    inner = {r["path"]: r["path"].split("/", 1)[1] if "/" in r["path"] else r["path"] for r in records}
    names = {}
    for label in sorted({r["label"] for r in records}):
        sources = [r["path"] for r in records if r["label"] == label]
        by_inner = assign_all_outputs(label, [inner[source] for source in sources], render.soundfonts,
                                      render.augment.copies)
        names.update({source: by_inner[inner[source]] for source in sources})
    return [(raw_dir / r["path"], RenderTask(r["path"], r["label"], b"", names[r["path"]][0], render,
                                             augmented_names=names[r["path"]][1])) for r in records]


def with_data(path: Path, task: RenderTask) -> RenderTask:
    return dataclasses.replace(task, data=path.read_bytes())


def with_file(path: Path, task: RenderTask) -> RenderTask:
    """The task a local worker reads the source of: the stage then holds no file's bytes, however long."""
    return dataclasses.replace(task, file=str(path.resolve()))


def cache_key(cache: RenderCache, path: Path, task: RenderTask) -> str:
    return cache.key(task.source, task.label, task.output_names, task.augmented_names, path.read_bytes())


def cacheable(rendered: Rendered) -> bool:
    """Whether a result may be reused: not one that depends on the machine's load or luck."""
    record = rendered.record
    reasons = {record["reason"]} | {copy["reason"] for copy in record.get("augment_rejected", [])}
    return not reasons & UNREPEATABLE


def run(args: argparse.Namespace) -> int:
    """The work of the stage; failures a user can fix end in one line (musicid.stage)."""
    params = load_section(args.params, "render")
    manifest = json.loads((args.raw / "manifest.json").read_text())
    # A collection of recordings alone needs neither FluidSynth nor a SoundFont.
    midi = any(Path(record["path"]).suffix.lower() in MIDI_EXTENSIONS for record in manifest["files"])
    if midi:
        try:
            # Load FluidSynth and every SoundFont once here, so that a missing or broken
            # one stops the stage with its name rather than inside a worker process.
            MidiRenderer(params, augment=True)
        except FluidSynthUnavailable as error:
            print(f"render: {error}", file=sys.stderr)
            return 2
    check_jobs(args.jobs)
    scheduler = resolve_scheduler(args.scheduler)
    workers = where(args.jobs, scheduler)  # also stops at once when a named scheduler cannot be reached

    # Dask workers first check that they would render what this machine would (init_checked_worker); the
    # render cache's entries are this environment's.
    environment = render_environment(params, midi) if scheduler or cache_enabled() else None
    try:
        cache = open_cache(params, environment)
        cache_limit = size_limit() if cache else 0
    except ValueError as error:
        print(f"render: {error}", file=sys.stderr)
        return 2

    started = time.monotonic()
    with atomic_directory(args.out) as staging:
        planned = plan_tasks(manifest, args.raw, params)
        folders = {record["path"]: {key: record[key] for key in ("folder", "parent", "split", "work")
                                    if record.get(key)}
                   for record in manifest["files"]}
        # Every source is read and hashed before the first render: its own bar (gigabytes of audio take a while).
        keys = [cache_key(cache, path, task) for path, task in progress(planned, total=len(planned), desc="hash")] \
            if cache else [None] * len(planned)
        found = [key is not None and cache.path(key).is_file() for key in keys]
        # A Dask worker may be on another machine: it gets the bytes. A local one reads the file.
        ship = with_data if scheduler else with_file
        misses = (ship(path, task) for (path, task), hit in zip(planned, found) if not hit)
        rendered_misses = ordered_map(render_one, misses, jobs=args.jobs,
                                      initializer=init_checked_worker if scheduler else init_worker,
                                      initargs=(params, environment) if scheduler else (params, midi),
                                      scheduler=scheduler, on_crash=crashed, isolate=True)
        records, from_cache, cached_seconds = [], 0, 0.0
        # Closed at the loop's end, not when collected (the last next() leaves it suspended): the shutdown of
        # its pool in a garbage collector's hands would swallow a Ctrl-C or SIGTERM arriving then.
        with contextlib.closing(rendered_misses):
            for (path, task), key, hit in progress(zip(planned, keys, found), total=len(planned), desc="render"):
                rendered = cache.get(key) if hit else None
                if rendered is not None:
                    from_cache += 1
                    cached_seconds += rendered.record["duration_s"] or 0
                else:
                    if hit:  # the entry went bad or away since it was found: render the source here
                        init_worker(params, midi)
                        rendered = render_one(with_data(path, task))
                    else:
                        rendered = next(rendered_misses)
                    if cache and cacheable(rendered):
                        cache.put(key, rendered)
                record = dict(write_rendered(rendered, staging))
                # split.group folder and parent: the sub-folders of its label it came from (and the collection's
                # own split, from its label table; and the work it is a version of, which the split deals whole)
                record.update(folders.get(task.source, {}))
                records.append(record)
        if records and all(record["status"] == "rejected" for record in records):
            raise StageError(nothing_rendered(records, params, args.out))
        # The params travel on with the data (clips.h5, features.h5, the checkpoint),
        # so that prediction can render new files exactly as the training data was.
        write_json_atomic(staging / "report.json", {"files": records, "params": recorded_params(params, manifest)})
    elapsed = time.monotonic() - started

    status = Counter(record["status"] for record in records)
    reasons = Counter(record["reason"] for record in records if record["status"] == "rejected")
    seconds = sum(record["duration_s"] or 0 for record in records)
    detail = f" ({', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))})" if reasons else ""
    augmented = ""
    if params.augment.copies:
        copies = sum(len(record["augmented"]) for record in records)
        lost = Counter(copy["reason"] for record in records for copy in record["augment_rejected"])
        lost_detail = f" ({', '.join(f'{k} {v}' for k, v in sorted(lost.items()))})" if lost else ""
        augmented = f"; {copies} augmented renders, {sum(lost.values())} rejected{lost_detail}"
    if cache:
        evicted = cache.prune(cache_limit)
        cached = f"; {from_cache} of {len(records)} from the render cache" + (
            f" ({evicted} old entries evicted)" if evicted else "") + (
            f"; {cache.failed_writes} could not be stored ({cache.write_error})" if cache.failed_writes else "")
    else:
        cached = "; render cache off (MUSICID_NO_CACHE)"
    # A speed only means something for what was rendered here, not for what came from the cache.
    fresh = len(records) - from_cache
    speed = "" if not fresh else f"{(seconds - cached_seconds) / max(elapsed, 1e-9):.0f}x real time" + (
        f" for the {fresh} rendered now, " if from_cache else ", ")
    print(f"render: {status['rendered']} rendered, {status['recovered']} recovered, "
          f"{status['rejected']} rejected{detail}{augmented}; {seconds / 60:.1f} min of audio in {elapsed:.0f} s "
          f"({speed}{workers}){cached} -> {args.out}")
    warning = instrument_warning(records)
    if warning:
        print(f"render: warning: {warning}", file=sys.stderr)
    drums = sorted(record["source"] for record in records if record["status"] != "rejected"
                   and record.get("programs") == [DRUMS])
    if drums:
        print(f"render: warning: {len(drums)} MIDI file{'s play' if len(drums) != 1 else ' plays'} drums alone "
              f"(channel 10), first {drums[0]}: no melody, harmony or pitch for the notes' features; a "
              "collection of composers rarely means to hold such a file (a drummer's collection does)",
              file=sys.stderr)
    return 0


def nothing_rendered(records: list[dict], params: RenderParams, out: Path) -> str:
    """Why render stops when it rejected every source: the counts by reason, the params behind them, and the
    first file of the commonest reason with its detail."""
    reasons = Counter(str(record["reason"]) for record in records)
    counted = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
    commonest = reasons.most_common(1)[0][0]
    example = next(record for record in records if str(record["reason"]) == commonest)
    detail = f" ({example['detail']})" if example.get("detail") else ""
    settings = {"silent": f"render.gain {params.gain:g}, render.min_rms {params.min_rms:g}",
                "too_long": f"render.max_seconds {params.max_seconds:g}",
                "timeout": f"render.timeout_s {params.timeout_s:g}"}
    hint = "; ".join(f"{reason}: see {settings[reason]}" for reason in sorted(reasons) if reason in settings)
    return (f"every one of the {len(records)} sources was rejected ({counted}), so there is nothing to clip; "
            f"{out} is not replaced (`dvc repro` removes it before it runs the stage: `dvc checkout` brings the "
            f"previous one back). {hint + '. ' if hint else ''}E.g. {example['source']}: "
            f"{commonest}{detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, type=Path)
    parser.add_argument("--raw", required=True, type=Path, help="input: data/raw (with manifest.json)")
    parser.add_argument("--out", required=True, type=Path, help="output directory: data/audio")
    parser.add_argument("--jobs", type=int, default=0, help="worker processes (0: $MUSICID_JOBS, else one per core)")
    parser.add_argument("--scheduler", default=None,
                        help="a Dask scheduler's address (default: $MUSICID_SCHEDULER; unset: local workers)")
    args = parser.parse_args(argv)
    return run_stage("render", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())

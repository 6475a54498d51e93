"""Stage `download`: bring the source collection into data/raw/<label>/ with a manifest.

    python stages/download.py --params params.yaml --out data/raw [--jobs N] [--scheduler ADDRESS]

Sources (params `dataset.source`): the offline music21 corpus, an archive at a
URL (verified by its SHA-256), or a local folder.  The music21 conversions run
on ``--jobs`` local processes or on a Dask cluster (``--scheduler``), and so do
a collection's score conversions (each score sent with its bytes).  The other
files of a collection are read (hashed, a MIDI file's notes read to find
copies) on ``--jobs`` local processes once they hold enough to be worth them
(:func:`musicid.dataset.read_jobs`), never on a cluster: they are on this
machine's disk.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

# This project's musicid before any installed one: a queued `dvc exp run` runs the stages in a copy of the
# project (.dvc/tmp/exps/...), whose code is the experiment's, while an editable install points elsewhere.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from musicid.archive import ArchiveError, extract_archive
from musicid.dataset import (EMPTY_FOLDER_REASON, NO_SUCH_CLASS_REASON, CollectionError, DatasetParamError,
                             EmptyCollectionError, collect_tree, crashed_score, export_music21)
from musicid.fetch import FetchError, default_cache_dir, fetch_archive
from musicid.io import atomic_directory, write_json_atomic
from musicid.parallel import check_jobs, ordered_map, resolve_scheduler, where
from musicid.params import load_section
from musicid.progress import progress, progress_enabled
from musicid.score_cache import open_cache
from musicid.stage import run_stage


def in_dvc_temporary_copy(folder: Path) -> bool:
    """Whether ``folder`` lies in the copy of a project that `dvc exp run --queue` or `--temp` runs in."""
    parts = folder.resolve().parts
    return any(parts[i:i + 3] == (".dvc", "tmp", "exps") for i in range(len(parts)))


def download(params, params_dir: Path, staging: Path, jobs: int, scheduler: str | None = None,
             score_cache=None) -> dict:
    """Fill ``staging`` from the configured source; return the manifest.

    ``scheduler``: a Dask scheduler's address for the conversions of scores (None: ``jobs`` local processes).
    ``score_cache``: a :class:`musicid.score_cache.ScoreCache` of converted scores (None: none).
    """
    if params.source == "music21":
        def run_all(function, items):
            return progress(ordered_map(function, items, jobs=jobs, scheduler=scheduler, on_crash=crashed_score),
                            total=len(items), desc="music21")

        return export_music21(classes=params.classes, max_per_class=params.max_per_class,
                              seed=params.seed, out_dir=staging, map_function=run_all,
                              timeout_s=params.timeout_s, program=params.program, cache=score_cache)

    common = dict(out_dir=staging, classes=params.classes, labels=params.labels,
                  unlabeled=params.unlabeled, max_per_class=params.max_per_class, seed=params.seed,
                  progress=progress, label_table=params.label_table, jobs=jobs, timeout_s=params.timeout_s,
                  score_cache=score_cache, scheduler=scheduler)
    if params.source == "path":
        given = Path(params.path).expanduser()  # ~/music is the user's folder, as in a shell
        root = (params_dir / given).resolve()
        if not root.is_dir():
            hint = ""
            if not given.is_absolute() and in_dvc_temporary_copy(params_dir):
                hint = ("; a queued or --temp experiment runs in a copy of the project under .dvc/tmp/exps/, "
                        "where a relative dataset.path points elsewhere: make it absolute")
            raise DatasetParamError(f"dataset.path {params.path!r} is not a folder ({root}){hint}")
        exposed = untracked_in_project(root, params_dir)
        if exposed:
            print(f"download: warning: dataset.path {params.path!r} is inside the project and neither ignored "
                  f"nor tracked by git: `dvc exp run` and `dvc exp apply` keep such files in git and write them "
                  f"back as plain files (a link becomes a file, permissions change); list {exposed} in "
                  f".gitignore, or keep the collection outside the project", file=sys.stderr)
        manifest = collect_tree(root, f"{params.path.rstrip('/')}/", **common)
        return {"source": "path", **manifest}

    try:
        cache = default_cache_dir()
    except ValueError as error:  # a relative MUSICID_CACHE
        raise FetchError(str(error)) from None
    # pooch's bar draws with carriage returns: on a terminal only, as musicid.progress's bars.
    archive, sha256 = fetch_archive(params.url, params.sha256, cache, params.allow_unverified,
                                    progressbar=progress_enabled() and sys.stderr.isatty())
    # Extract inside the staging folder, so that nothing from the archive is ever
    # written outside data/raw; the extraction folder is removed before the swap.
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=staging) as scratch:
        refused = extract_archive(archive, scratch, params.max_bytes, params.max_files)
        refused_records = [{"origin": f"{params.url}#{name}", "label": None,
                            "reason": f"unsafe_member: {reason}"} for name, reason in refused]
        manifest = collect_tree(Path(scratch), f"{params.url}#", extra_skipped=refused_records, **common)
    return {"source": "url", "sha256": sha256, **manifest}  # the archive's, pinned or not


def reason_counts(skipped: list[dict]) -> str:
    """``"content_mismatch 3, no_label 1"``: how many records of each reason (the part before ':')."""
    reasons = Counter(record["reason"].split(":")[0] for record in skipped)
    return ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))


def untracked_in_project(root: Path, project: Path) -> str | None:
    """The collection folder ``root`` as .gitignore would name it (``/mycoll/``) when it lies inside the git
    work tree of ``project`` and holds files git neither ignores nor tracks; None otherwise (outside the
    project, ignored, committed, or no git here)."""
    import subprocess

    try:
        top = subprocess.run(["git", "-C", str(project), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=30)
        if top.returncode != 0:  # not a git work tree (or one git refuses to read): nothing to warn of
            return None
        work_tree = Path(top.stdout.strip()).resolve()
        if not root.is_relative_to(work_tree) or root == work_tree:
            return None
        relative = root.relative_to(work_tree).as_posix()
        # "?? path": untracked and not ignored, which is what DVC's experiments stash.
        status = subprocess.run(["git", "--literal-pathspecs", "-C", str(work_tree), "status", "--porcelain",
                                 "--untracked-files=normal", "--", relative], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):  # no git on this machine, or a very slow one
        return None
    if status.returncode != 0 or not any(line.startswith(b"?? ") for line in status.stdout.splitlines()):
        return None
    return f"/{relative}/"


def skipped_files(manifest: dict) -> list[dict]:
    """The manifest's skipped records of files and folders (not those naming a label that did not come)."""
    return [record for record in manifest["skipped"] if record["reason"] != NO_SUCH_CLASS_REASON]


def lost_classes(manifest: dict) -> list[str]:
    """A line for each label of the collection of which no file was kept, with why its files were skipped: a
    class that did not come is named, not only counted (an empty folder that dataset.labels merges into a
    label with files is no loss)."""
    skipped, kept = manifest["skipped"], {record["label"] for record in manifest["files"]}
    lost = sorted({record["label"] for record in skipped if record["reason"] in (EMPTY_FOLDER_REASON,
                                                                                NO_SUCH_CLASS_REASON)} - kept)
    lines = []
    for label in lost:
        why = reason_counts([record for record in skipped if record["label"] == label
                             and record["reason"] != NO_SUCH_CLASS_REASON])
        lines.append(f"no file of label {label} was kept ({why}): it is not a class of this run (see the "
                     "manifest's skipped)")
    return lines


def one_label(params, manifest: dict) -> list[str]:
    """A line when every kept file is of one label: nothing can be told apart (clip stops, stages later), and on
    a collection the usual cause is a dataset.path that points at one label's folder."""
    labels = sorted({record["label"] for record in manifest["files"]})
    if len(labels) != 1:
        return []
    cause = ("dataset.classes names one" if len(params.classes) == 1 else
             "the other classes' files were all left out: see the warnings above and the manifest's skipped"
             if params.classes else
             "a collection holds a folder for each label, <label>/<file>: is dataset.path one label's folder "
             "rather than the folder holding them?" if params.source == "path" else
             "a collection holds a folder for each label, <label>/<file>")
    return [f"every file kept is of one label, {labels[0]}, and the model needs two or more ({cause})"]


def require_labelled_files(params, manifest: dict) -> None:
    """Stop with a message naming the param to change when no labelled file was kept."""
    if manifest["files"]:
        return
    files = skipped_files(manifest)
    skipped = f" (skipped: {reason_counts(files)})" if files else ""
    if params.source == "music21":
        raise EmptyCollectionError(f"no piece of dataset.classes [{', '.join(params.classes)}] could be "
                                   f"written as MIDI{skipped}")
    where = params.path if params.source == "path" else params.url
    if params.label_table.file is not None:
        raise EmptyCollectionError(f"no labelled file kept from {where}{skipped}; the rows of "
                                   f"dataset.label_table.file {params.label_table.file!r} must name MIDI or audio "
                                   f"files of the collection and give each a label")
    must = "hold" if params.source == "path" else "be an archive of"
    raise EmptyCollectionError(f"no labelled file kept from {where}{skipped}; dataset.{params.source} must "
                               f"{must} <label>/<files> folders of MIDI or audio files")


def run(args: argparse.Namespace) -> int:
    """The work of the stage; failures a user can fix end in one line (musicid.stage)."""
    params = load_section(args.params, "dataset")
    check_jobs(args.jobs)
    scheduler = resolve_scheduler(args.scheduler)
    workers = f"; {where(args.jobs, scheduler)}" if params.source == "music21" else ""

    # Scores music21 converted in an earlier run are not converted again (musicid.score_cache).
    score_cache = open_cache(params.program if params.source == "music21" else None, params.timeout_s)
    try:
        # The new tree replaces data/raw only once complete: a failed download
        # leaves no partial data/raw behind.
        with atomic_directory(args.out) as staging:
            manifest = download(params, args.params.resolve().parent, staging, args.jobs, scheduler, score_cache)
            # Raised inside the staging block, so the previous data/raw stays as it was.
            require_labelled_files(params, manifest)
            write_json_atomic(staging / "manifest.json", manifest)
    except DatasetParamError as error:  # a bad param, which only the collection shows
        print(f"download: {error}", file=sys.stderr)
        return 2
    except (FetchError, ArchiveError, CollectionError) as error:
        print(f"download: {error}", file=sys.stderr)
        return 1

    for line in lost_classes(manifest) + one_label(params, manifest):
        print(f"download: warning: {line}", file=sys.stderr)
    counts = Counter(record["label"] for record in manifest["files"])
    per_label = ", ".join(f"{label} {counts[label]}" for label in sorted(counts))
    skipped = skipped_files(manifest)
    detail = f" ({reason_counts(skipped)})" if skipped else ""
    unlabeled = f", {len(manifest['unlabeled'])} unlabeled" if manifest["unlabeled"] else ""
    scores = sum(1 for record in manifest["files"] + manifest["unlabeled"] if record.get("converted"))
    written = f" ({scores} written from scores)" if scores else ""
    if scheduler and params.source != "music21" and scores > (score_cache.hits if score_cache else 0):
        workers = f"; scores converted on the {where(args.jobs, scheduler)}"
    if score_cache is not None:
        score_cache.prune()
        if score_cache.hits or score_cache.failures:
            failures = f" ({score_cache.failures} of them failures of an earlier run)" if score_cache.failures else ""
            workers += f"; {score_cache.hits + score_cache.failures} scores from the score cache{failures}"
        if score_cache.failed_writes:
            print(f"download: warning: {score_cache.failed_writes} scores' conversions could not be kept in the "
                  f"score cache {score_cache.root} ({score_cache.write_error}): they are converted again next time",
                  file=sys.stderr)
    versions = [record for record in manifest["files"] if record.get("work")]
    works = len({(record["label"], record["work"]) for record in versions})
    versions_said = f", {len(versions)} of them versions of {works} work{'s' if works != 1 else ''}" if versions else ""
    print(f"download: {len(manifest['files'])} files kept ({per_label}){versions_said}{unlabeled}{written}, "
          f"{len(skipped)} skipped{detail}{workers} -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, type=Path, help="params.yaml")
    parser.add_argument("--out", required=True, type=Path, help="output directory (data/raw)")
    parser.add_argument("--jobs", type=int, default=0, help="worker processes (0: $MUSICID_JOBS, else one per core)")
    parser.add_argument("--scheduler", default=None,
                        help="a Dask scheduler's address for the conversions of scores (default: $MUSICID_SCHEDULER; "
                             "unset: local workers)")
    args = parser.parse_args(argv)
    return run_stage("download", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())

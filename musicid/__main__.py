"""Command line: ``python -m musicid predict PATH...``, ``cv [EXPERIMENT...]`` and ``cache info|clear``."""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys
import threading
from pathlib import Path


# Exit codes: every path scored; some path (a file, or a folder with no MIDI or
# audio file; a MIDI file where FluidSynth or the model's SoundFont is missing)
# could not be scored, each said why; no model to score with (missing,
# unreadable, foreign or incomplete checkpoint) or a usage error (argparse's own code).
EXIT_SCORED, EXIT_UNSCORED, EXIT_MODEL = 0, 1, 2


def whole_number(least: int, meaning: str = ""):
    """argparse type: an integer >= ``least`` (``meaning``: what the least value means, for the message)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {least}, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {least}{meaning}, got {value}")
        return value
    return parse


def share(text: str) -> float:
    """argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text}")
    return value


def _signal_once(signum, frame) -> None:
    """SIGINT's and SIGTERM's handler in predict: KeyboardInterrupt for a Ctrl-C, :class:`musicid.stage.Terminated`
    (exit 143, as in the stages) for a SIGTERM (``timeout``, ``kill``), the first time; nothing after, so that a
    second signal does not cut short the ending of the worker processes (it left a pool half shut down, waited
    for ever). Without it a SIGTERM left the workers to notice their parent gone, and a leaked-semaphore warning."""
    from musicid.stage import Terminated

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musicid", description="Ask a trained musicid model.")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict", help="who wrote or plays these MIDI or audio files, and how new they look",
        epilog="exit status: 0 every path scored, 1 some path could not be scored (each line says why), "
               "2 no usable model, a usage error (a bad --jobs or MUSICID_JOBS too) or a Dask scheduler that "
               "cannot be reached or is lost, 130 Ctrl-C, 143 SIGTERM",
        description="Render, clip and featurize each file as the pipeline did (with the params stored in "
                    "the checkpoint), then print the most likely labels and a novelty score: how far the "
                    "file's mean embedding lies from the nearest known class, mixed for a MIDI file with how "
                    "unlike its notes are (train.novelty_notes; higher: less like any of them).")
    predict.add_argument("paths", nargs="+", help="files, or folders searched for MIDI and audio files")
    predict.add_argument("--model", default="models/model.pt",
                         help="checkpoint (default: models/model.pt, made by `dvc repro train`)")
    predict.add_argument("--top", type=whole_number(1), default=None, help="labels to show per file (default: 3)")
    output = predict.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON document for machines")
    output.add_argument("--csv", action="store_true",
                        help="print a CSV table for spreadsheets: a row per file (with --clips, then one per clip), "
                             "every class's probability as metrics/predictions.csv gives them (--top does not "
                             "apply); the novelty threshold goes to stderr")
    predict.add_argument("--jobs", type=whole_number(0, " (0: one per core)"), default=1,
                         help="worker processes that render, clip and featurize files while the model scores "
                              "them (default 1: all in this process, the quickest for a few files; 0: "
                              "$MUSICID_JOBS, else one per core)")
    predict.add_argument("--scheduler", default=None, metavar="ADDRESS",
                         help="render, clip and featurize the files on this Dask cluster's workers instead "
                              "(default: $MUSICID_SCHEDULER, else this machine): each file is sent with its "
                              "bytes; the workers need musicid and the model's SoundFonts at the same paths")
    predict.add_argument("--clips", action="store_true",
                         help="also each clip's own answer (where it starts in the file, its --top labels): "
                              "which composer each few seconds sound like")
    predict.add_argument("--clip-audio", type=share, default=None, metavar="SHARE",
                         help="with --clips: a MIDI clip's answer takes this share from its audio alone and the "
                              "rest from the model with its notes, as evaluate.clip_audio does (default 0.5, "
                              "evaluate.clip_audio's default)")
    cv = commands.add_parser(
        "cv", help="per-fold and mean +- sd test scores of k-fold cross-validation experiments",
        epilog="exit status: 0 scores printed, 1 no scored cross-validation experiment, a name that matched "
               "none or a group with a fold missing, 2 `dvc exp show` failed",
        description="Read `dvc exp show --json` in the current folder, group the experiments whose params "
                    "differ only in split.fold and that read the same collection (data/raw; folds run on "
                    "different code are warned of) (run with split.folds >= 2, e.g. `dvc exp run --queue -S "
                    "split.folds=5 -S 'split.fold=range(5)'` and `dvc queue start`), and print for each group "
                    "the test track and clip macro-F1 and balanced accuracy of every fold, their mean and "
                    "sample standard deviation, and which folds are missing or were run twice.")
    cv.add_argument("experiments", nargs="*", metavar="EXPERIMENT_OR_REV",
                    help="experiment names or revisions (4+ hex digits) to include (default: every experiment "
                         "of the current commit)")
    cv.add_argument("-A", "--all-commits", action="store_true",
                    help="read the experiments of every commit (`dvc exp show -A`), not only the current one's")
    cv.add_argument("--json", action="store_true", help="print one JSON document for machines")
    cache = commands.add_parser(
        "cache", help="the render stage's per-source cache and download's converted scores: their size, or empty "
                      "them",
        description="The render stage keeps each source's result in a cache of its own "
                    "($MUSICID_RENDER_CACHE, else render/ in the user's cache folder), so that adding a file "
                    "renders only that file, and download the MIDI files music21 wrote of scores "
                    "($MUSICID_SCORE_CACHE, else scores/ there). `info` prints where they are and how big; `clear` "
                    "removes every entry.")
    cache.add_argument("action", choices=["info", "clear"])
    args = parser.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # a file's name a console's encoding cannot show: escaped, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    if args.command == "cv":
        return cross_validation(args.experiments, args.json, args.all_commits)
    if args.command == "cache":
        return render_cache_command(args.action)
    if args.clip_audio is not None and not args.clips:  # it would change nothing: say so rather than ignore it
        predict.error("--clip-audio applies to the clips' answers: give --clips too")
    if args.top is not None and args.csv:
        predict.error("--top does not apply to --csv, which gives every class's probability")

    if threading.current_thread() is not threading.main_thread():  # signal handlers are the main thread's
        return predict_command(args)
    previous = {signum: signal.signal(signum, _signal_once) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        return predict_command(args)
    finally:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is _signal_once:  # no signal came (after one, predict is ending)
                signal.signal(signum, handler)


def predict_command(args: argparse.Namespace) -> int:
    from musicid.parallel import jobs_problem, resolve_scheduler, where
    from musicid.stage import StageError
    from musicid.params import ParamsError
    from musicid.predict import Predictor, collect_inputs, csv_header, csv_rows, format_prediction, format_threshold
    from musicid.training import CheckpointError

    problem = jobs_problem(args.jobs) if args.jobs == 0 else None  # $MUSICID_JOBS, read for --jobs 0
    if problem:
        print(f"predict: {problem}", file=sys.stderr)
        return EXIT_MODEL
    try:
        predictor = Predictor(args.model)
    except (CheckpointError, ParamsError) as error:
        print(f"predict: {error}", file=sys.stderr)
        return EXIT_MODEL
    except ValueError as error:  # a checkpoint without render params or novelty statistics
        print(f"predict: {args.model}: {error}", file=sys.stderr)
        return EXIT_MODEL
    scheduler = resolve_scheduler(args.scheduler)
    if scheduler:
        try:  # stops at once when the scheduler cannot be reached
            print(f"predict: files are prepared on {where(0, scheduler)}", file=sys.stderr, flush=True)
        except StageError as error:
            print(f"predict: {error}", file=sys.stderr)
            return EXIT_MODEL
    warning = predictor.threshold_warning()
    if warning:
        print(f"predict: warning: {warning}", file=sys.stderr)
    threshold = format_threshold(predictor.novelty_reference, predictor.novelty_reference_tracks)
    if args.csv:  # stdout holds the table alone
        print(threshold, file=sys.stderr, flush=True)
        table = csv.writer(sys.stdout, lineterminator="\n")
        table.writerow(csv_header(predictor.label_names))
        sys.stdout.flush()
    elif not args.json:
        print(threshold, flush=True)
    results, shown = [], set()
    clip_audio = (0.5 if args.clip_audio is None else args.clip_audio) if args.clips else None
    top = len(predictor.label_names) if args.csv else 3 if args.top is None else args.top
    predictions = predictor.predict_all(collect_inputs(args.paths), top=top, jobs=args.jobs,
                                        clip_audio=clip_audio, scheduler=scheduler)  # see below
    try:
        for prediction in predictions:
            results.append(prediction)
            if args.csv:
                table.writerows(csv_rows(prediction, predictor.label_names))
                sys.stdout.flush()
            elif not args.json:
                print(format_prediction(prediction, shown), flush=True)
    except (KeyboardInterrupt, BrokenPipeError):  # while a line is printed (`| head`): the workers end at once
        predictions.close()
        raise
    except StageError as error:  # the cluster's scheduler lost, or its workers all gone: what was scored is out
        print(f"predict: {error}", file=sys.stderr)
        if args.json:  # the files scored before it, which text and CSV have printed already
            print_json(args.model, predictor, warning, results, str(error))
        return EXIT_MODEL
    if args.json:
        print_json(args.model, predictor, warning, results)
    return EXIT_UNSCORED if any(r.error for r in results) else EXIT_SCORED


def print_json(model: str, predictor, warning: str | None, results: list, stopped: str | None = None) -> None:
    """predict --json's document: the model, its novelty threshold and each file's answer; ``stopped``, why
    the run ended before its last file (then an ``error`` key says so: the files are those scored before)."""
    reference = predictor.novelty_reference
    print(json.dumps({"model": model,
                      "novelty_threshold": round(reference, 6) if reference == reference else None,
                      "novelty_threshold_tracks": predictor.novelty_reference_tracks,
                      "warning": warning,
                      **({"error": stopped} if stopped else {}),
                      "files": [r.to_dict() for r in results]}, indent=2))


def render_cache_command(action: str) -> int:
    """``cache info|clear``: the render cache's line, then the score cache's (:func:`_score_cache_command`)."""
    return max(_render_cache_command(action), _score_cache_command(action))  # both, whatever the first says


def _listed(cache_dir) -> tuple[Path, list] | None:
    """(the cache's folder, its entries: :func:`musicid.cache_files.entries`), or None once the variable that
    names the folder is said to be unusable."""
    from musicid.cache_files import entries

    try:
        root = cache_dir()
    except ValueError as error:
        print(f"cache: {error}", file=sys.stderr)
        return None
    return root, (entries(root) if root.is_dir() else [])


def _clear(kind: str, root: Path, found: list, show_size: bool) -> int:
    """Remove the entries ``found`` under ``root`` and the folders they leave empty; say so for the ``kind``
    cache (with the bytes removed when ``show_size``); 1 when some could not be removed."""
    from musicid.cache_files import remove_file

    kept = [(size, path) for _, size, path in found if not remove_file(path)]
    gone = sum(size for _, size, _ in found) - sum(kept_size for kept_size, _ in kept)
    for folder in sorted({path.parent for _, _, path in found}):  # the entries' folders, now empty
        try:
            folder.rmdir()
        except OSError:  # something else is in it (a live run's file), or it cannot be removed
            pass
    print(f"{kind} cache {root}: removed {len(found) - len(kept)} entries"
          + (f" ({gone / 1e9:.2f} GB)" if show_size else ""))
    if kept:
        print(f"cache: {len(kept)} entries could not be removed (no permission to write {root}?)", file=sys.stderr)
        return 1
    return 0


def _score_cache_command(action: str) -> int:
    from musicid import score_cache

    listed = _listed(score_cache.cache_dir)
    if listed is None:
        return 2
    root, found = listed
    if action == "clear":
        return _clear("score", root, found, show_size=False)
    size = sum(size for _, size, _ in found)
    print(f"score cache {root}: {len(found)} entries, {size / 1e9:.2f} GB (limit {score_cache.MAX_BYTES / 1e9:g} GB)")
    return 0


def _render_cache_command(action: str) -> int:
    from musicid import render_cache

    listed = _listed(render_cache.cache_dir)
    if listed is None:
        return 2
    root, found = listed
    if action == "clear":
        return _clear("render", root, found, show_size=True)
    size = sum(size for _, size, _ in found)
    try:
        bound = render_cache.size_limit()
        limit, problem = ("none" if bound == sys.maxsize else f"{bound / 1e9:g} GB"), None
    except ValueError as error:  # shown, and the command fails: every stage that renders would stop on it
        limit, problem = "unusable", error
    print(f"render cache {root}: {len(found)} entries, {size / 1e9:.2f} GB (limit {limit}, "
          f"${render_cache.SIZE_ENV})")
    if problem:
        print(f"cache: {problem}", file=sys.stderr)
        return 2
    return 0


def _experiments(all_commits: bool):
    """(the runs of `dvc exp show --json` [-A], None) or (None, why not, in one line)."""
    import subprocess

    from musicid.crossval import runs_from_exp_show

    command = ["dvc", "exp", "show", "--json", *(["-A"] if all_commits else [])]
    try:
        shown = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError:
        return None, "dvc is not installed (or not on PATH)"
    if shown.returncode != 0:
        lines = (shown.stderr or shown.stdout).strip().splitlines()
        return None, f"`{' '.join(command[:4])}` exited {shown.returncode}: {lines[-1] if lines else 'no message'}"
    try:
        return runs_from_exp_show(json.loads(shown.stdout)), None
    except (json.JSONDecodeError, ValueError) as error:
        return None, f"cannot read the output of `{' '.join(command[:4])}`: {error}"


def _experiments_elsewhere(here: set[str]) -> int:
    """How many experiments `dvc exp list -A --name-only` names that are not among ``here`` (the names of
    the current commit's); 0 when it fails."""
    import subprocess

    try:
        listed = subprocess.run(["dvc", "exp", "list", "-A", "--name-only"], capture_output=True, text=True)
    except FileNotFoundError:
        return 0
    if listed.returncode != 0:
        return 0
    return len({line.strip() for line in listed.stdout.splitlines() if line.strip()} - here)


def cross_validation(wanted: list[str], as_json: bool, all_commits: bool = False) -> int:
    """``python -m musicid cv``: summarize the cross-validation experiments that dvc knows of."""
    from musicid.crossval import (differing_inputs, differing_params, format_summaries, group_runs, select_runs,
                                  summarize, unscored_folds)

    runs, problem = _experiments(all_commits)
    if problem:
        print(f"cv: {problem}", file=sys.stderr)
        return EXIT_MODEL
    every = runs
    runs, unmatched = select_runs(runs, wanted)
    groups, _ = group_runs(runs)
    summaries = [summarize(group) for group in groups]
    waiting = [{"experiment": run.name, "rev": run.rev, "fold": run.params.get("split.fold"),
                "state": run.state or "no scores"} for run in unscored_folds(runs)]
    if as_json:
        print(json.dumps({"groups": summaries, "unscored": waiting, "unmatched": unmatched}, indent=2))
    else:
        if summaries:
            print(format_summaries(summaries, differing_params(groups), differing_inputs(groups)))
        for run in waiting:
            print(f"cv: not scored: {run['experiment']} (split.fold {run['fold']}): {run['state']}", file=sys.stderr)
    for name in unmatched:
        print(f"cv: {name} names no experiment or revision of `dvc exp show`", file=sys.stderr)
    if not summaries and any(run["state"] != "no scores" for run in waiting):  # in the queue: not to queue twice
        print("cv: no fold has scores yet; see `dvc queue status` (start the queue with `dvc queue start`, read "
              "why a fold failed with `dvc queue logs <experiment>`)", file=sys.stderr)
    elif not summaries:
        print("cv: no scored experiment with split.folds >= 2; run the folds with `dvc exp run --queue "
              "-S split.folds=5 -S 'split.fold=range(5)'` and `dvc queue start`", file=sys.stderr)
    if (unmatched or not summaries) and not all_commits:
        # Experiments hang from the commit they were run on: after a commit, cv (as `dvc exp show`) no
        # longer lists them, which must not read as "run the whole cross-validation again". `dvc exp list
        # -A` names them at a fraction of the cost of `dvc exp show -A` in a long history.
        others = _experiments_elsewhere({run.name for run in every})
        if others:
            print(f"cv: {others} experiment{'s' if others > 1 else ''} on other commits (`dvc exp list -A`): "
                  f"`python -m musicid cv -A` reads every commit's", file=sys.stderr)
    # A group missing a fold (queued, running or failed) is a mean over fewer folds than asked for: a script
    # reading the figures must be able to tell.
    incomplete = any(summary["missing_folds"] for summary in summaries)
    return EXIT_UNSCORED if unmatched or not summaries or incomplete else EXIT_SCORED


def run_command() -> int:
    """main, for the command line: output piped into a reader that stops early (`| head`) ends it quietly."""
    try:
        code = main()
        sys.stdout.flush()
        return code
    except KeyboardInterrupt as error:  # Ctrl-C or SIGTERM: one line, not a traceback
        from musicid.stage import Terminated

        terminated = isinstance(error, Terminated)
        print(f"python -m musicid: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    except BrokenPipeError:
        # Python would report the pipe again when it flushes stdout at exit: point stdout at nothing first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(run_command())

"""Command line: ``python -m musicid predict PATH...``."""

from __future__ import annotations

import argparse
import json
import sys


# Exit codes: every path scored; some path (a file, or a folder with no MIDI or
# audio file) could not be scored, each said why; no model to score with (missing,
# unreadable, foreign or incomplete checkpoint; FluidSynth missing) or a usage
# error (argparse's own code).
EXIT_SCORED, EXIT_UNSCORED, EXIT_MODEL = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musicid", description="Ask a trained musicid model.")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict", help="who wrote or plays these MIDI or audio files, and how new they look",
        epilog="exit status: 0 every path scored, 1 some path could not be scored (each line says why), "
               "2 no usable model or a usage error",
        description="Render, clip and featurize each file as the pipeline did (with the params stored in "
                    "the checkpoint), then print the most likely labels and a novelty score: the distance "
                    "of the file's mean embedding to the nearest known class (higher: less like any of them).")
    predict.add_argument("paths", nargs="+", help="files, or folders searched for MIDI and audio files")
    predict.add_argument("--model", default="models/model.pt",
                         help="checkpoint (default: models/model.pt, made by `dvc repro train`)")
    predict.add_argument("--top", type=int, default=3, help="labels to show per file (default: 3)")
    predict.add_argument("--json", action="store_true", help="print one JSON document for machines")
    args = parser.parse_args(argv)

    from musicid.params import ParamsError
    from musicid.predict import Prediction, Predictor, collect_inputs, format_prediction, format_threshold
    from musicid.synth import FluidSynthUnavailable
    from musicid.training import CheckpointError

    try:
        predictor = Predictor(args.model)
    except (CheckpointError, ParamsError, FluidSynthUnavailable) as error:
        print(f"predict: {error}", file=sys.stderr)
        return EXIT_MODEL
    except ValueError as error:  # a checkpoint without render params or novelty statistics
        print(f"predict: {args.model}: {error}", file=sys.stderr)
        return EXIT_MODEL
    warning = predictor.threshold_warning()
    if warning:
        print(f"predict: warning: {warning}", file=sys.stderr)
    threshold = format_threshold(predictor.novelty_reference, predictor.novelty_reference_tracks)
    if not args.json:
        print(threshold, flush=True)
    results = []
    for path, reason in collect_inputs(args.paths):
        prediction = Prediction(str(path), error=reason) if reason else predictor.predict(path, top=args.top)
        results.append(prediction)
        if not args.json:
            print(format_prediction(prediction), flush=True)
    if args.json:
        reference = predictor.novelty_reference
        print(json.dumps({"model": args.model,
                          "novelty_threshold": round(reference, 6) if reference == reference else None,
                          "novelty_threshold_tracks": predictor.novelty_reference_tracks,
                          "warning": warning,
                          "files": [r.to_dict() for r in results]}, indent=2))
    return EXIT_UNSCORED if any(r.error for r in results) else EXIT_SCORED

if __name__ == "__main__":
    sys.exit(main())

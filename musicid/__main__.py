"""Command line: ``python -m musicid predict PATH...``."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musicid", description="Ask a trained musicid model.")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict", help="who wrote or plays these MIDI or audio files, and how new they look",
        description="Render, clip and featurize each file as the pipeline did (with the params stored in "
                    "the checkpoint), then print the most likely labels and a novelty score: the distance "
                    "of the file's mean embedding to the nearest known class (higher: less like any of them).")
    predict.add_argument("paths", nargs="+", help="files, or folders searched for MIDI and audio files")
    predict.add_argument("--model", default="models/model.pt", help="checkpoint (default: models/model.pt)")
    predict.add_argument("--top", type=int, default=3, help="labels to show per file (default: 3)")
    predict.add_argument("--json", action="store_true", help="print one JSON document for machines")
    args = parser.parse_args(argv)

    from musicid.predict import Predictor, collect_inputs, format_prediction
    from musicid.synth import FluidSynthUnavailable

    inputs = collect_inputs(args.paths)
    if not inputs:
        print("predict: no MIDI or audio files found in " + ", ".join(args.paths), file=sys.stderr)
        return 2
    try:
        predictor = Predictor(args.model)
    except (FileNotFoundError, ValueError, FluidSynthUnavailable) as error:
        print(f"predict: {error}", file=sys.stderr)
        return 2
    results = []
    for path in inputs:
        prediction = predictor.predict(path, top=args.top)
        results.append(prediction)
        if not args.json:
            print(format_prediction(prediction, predictor.novelty_reference), flush=True)
    if args.json:
        print(json.dumps({"model": args.model, "novelty_reference": round(predictor.novelty_reference, 6),
                          "files": [r.to_dict() for r in results]}, indent=2))
    return 1 if all(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage `featurize`: log-mel, MFCC, constant-Q or chroma features of every clip into HDF5.

    python stages/featurize.py --params params.yaml --clips data/clips.h5 --out data/features.h5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import h5py

from musicid.features import PITCH_KINDS, RunningBandStats, compute_features, constant_q_cutoff, n_bands, n_frames
from musicid.h5 import (SHARED_ATTRS, RowWriter, WriteError, error_cause, feature_columns, read_strings,
                        staged_table)
from musicid.io import dumps_json
from musicid.parallel import resolve_jobs
from musicid.params import as_dict, load_section
from musicid.progress import progress
from musicid.stage import run_stage


def run(args: argparse.Namespace) -> int:
    """The work of the stage; failures a user can fix end in one line (musicid.stage)."""
    params = load_section(args.params, "features")

    if not args.clips.is_file():
        print(f"featurize: {args.clips} is missing: the clip stage writes it (dvc repro clip)", file=sys.stderr)
        return 1
    try:
        return featurize(args.clips, args.out, params, args.params, resolve_jobs(args.jobs))
    except WriteError as error:
        print(f"featurize: cannot write {args.out}: {error.cause}", file=sys.stderr)
        return 1
    except OSError as error:  # writes fail as WriteError, so this is h5py failing to read the clips
        print(f"featurize: cannot read {args.clips} ({error_cause(error)}): rerun the clip stage "
              "(dvc repro --force clip)", file=sys.stderr)
        return 1


def featurize(clips_path: Path, out: Path, params, params_path: Path, threads: int) -> int:
    """Compute the features of every clip of ``clips_path`` into ``out``; the stage's exit code."""
    with h5py.File(clips_path, "r") as clips:
        sample_rate = int(clips.attrs["sample_rate"])
        if params.kind in PITCH_KINDS and constant_q_cutoff(params) > sample_rate / 2:
            # fmax is not read by the constant-Q kinds: their top is fmin and n_bins.
            print(f"featurize: {params_path}: features.n_bins {params.n_bins} from features.fmin {params.fmin:g} Hz "
                  f"reach {constant_q_cutoff(params):.0f} Hz (the top filter's edge), above the clips' Nyquist "
                  f"frequency {sample_rate / 2:g} Hz", file=sys.stderr)
            return 2
        if params.kind not in PITCH_KINDS and params.fmax > sample_rate / 2:
            print(f"featurize: {params_path}: features.fmax {params.fmax:g} Hz is above the clips' "
                  f"Nyquist frequency {sample_rate / 2:g} Hz", file=sys.stderr)
            return 2
        total, clip_samples = clips["audio"].shape
        splits = read_strings(clips["split"])
        if total == 0 or not (splits == "train").any():
            where = "no clip" if total == 0 else "no clip in the train split (normalisation statistics need one)"
            print(f"featurize: {clips_path} holds {where}: rerun the clip stage, which stops with the param "
                  "to change (clip.clip_seconds, clip.min_rms, clip.max_silence, split.val, split.test)",
                  file=sys.stderr)
            return 1
        frames = n_frames(clip_samples, params.hop_length)
        bands = n_bands(params)
        stats = RunningBandStats(bands)
        with staged_table(out) as temporary:
            with RowWriter(temporary, feature_columns(bands, frames)) as writer:
                audio = clips["audio"]
                for start in progress(range(0, total, params.batch_size),
                                      total=-(-total // params.batch_size), desc="featurize"):
                    stop = min(start + params.batch_size, total)
                    features = compute_features(audio[start:stop], params, sample_rate, threads)
                    writer.append(
                        features=features,
                        label=clips["label"][start:stop],
                        known=clips["known"][start:stop],
                        track=clips["track"].asstr()[start:stop],
                        offset_s=clips["offset_s"][start:stop],
                        split=splits[start:stop],
                    )
                    # Normalisation statistics see the training split only.
                    stats.update(features[splits[start:stop] == "train"])
                mean, std = stats.result()
                for key in SHARED_ATTRS:
                    writer.attrs[key] = clips.attrs[key]
                writer.attrs["band_mean"] = mean
                writer.attrs["band_std"] = std
                writer.attrs["params"] = dumps_json({
                    "features": as_dict(params),
                    **json.loads(clips.attrs["params"]),
                })
    print(f"featurize: {total} clips -> {params.kind} [{bands} x {frames}] -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, type=Path)
    parser.add_argument("--clips", required=True, type=Path, help="input: data/clips.h5")
    parser.add_argument("--out", required=True, type=Path, help="output: data/features.h5")
    parser.add_argument("--jobs", type=int, default=0, help="threads for the FFTs (0: one per core)")
    args = parser.parse_args(argv)
    return run_stage("featurize", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())

"""Stage `featurize`: log-mel spectrograms or MFCCs of every clip into HDF5.

    python stages/featurize.py --params params.yaml --clips data/clips.h5 --out data/features.h5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import h5py
import numpy as np

from musicid.features import LogMelConfig, RunningBandStats, compute_features, n_frames
from musicid.h5 import STRING, RowWriter, read_strings
from musicid.io import atomic_path, dumps_json
from musicid.parallel import resolve_jobs
from musicid.params import ParamsError, as_dict, load_section
from musicid.progress import progress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, type=Path)
    parser.add_argument("--clips", required=True, type=Path, help="input: data/clips.h5")
    parser.add_argument("--out", required=True, type=Path, help="output: data/features.h5")
    parser.add_argument("--jobs", type=int, default=0, help="threads for the FFTs (0: one per core)")
    args = parser.parse_args(argv)
    try:
        params = load_section(args.params, "features")
    except ParamsError as error:
        print(f"featurize: {error}", file=sys.stderr)
        return 2

    with h5py.File(args.clips, "r") as clips:
        sample_rate = int(clips.attrs["sample_rate"])
        if params.fmax > sample_rate / 2:
            print(f"featurize: {args.params}: features.fmax {params.fmax:g} Hz is above the clips' "
                  f"Nyquist frequency {sample_rate / 2:g} Hz", file=sys.stderr)
            return 2
        config = LogMelConfig.from_params(params, sample_rate)
        total, clip_samples = clips["audio"].shape
        frames = n_frames(clip_samples, params.hop_length)
        n_bands = params.n_mfcc if params.kind == "mfcc" else params.n_mels
        splits = read_strings(clips["split"])
        stats = RunningBandStats(n_bands)
        with atomic_path(args.out) as temporary:
            with RowWriter(temporary, {
                "features": (np.float32, (n_bands, frames)),
                "label": (np.int16, ()),
                "known": (np.bool_, ()),
                "track": (STRING, ()),
                "offset_s": (np.float64, ()),
                "split": (STRING, ()),
            }) as writer:
                threads = resolve_jobs(args.jobs)
                audio = clips["audio"]
                for start in progress(range(0, total, params.batch_size),
                                      total=-(-total // params.batch_size), desc="featurize"):
                    stop = min(start + params.batch_size, total)
                    features = compute_features(audio[start:stop], config, params.kind, params.n_mfcc, threads)
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
                for key in ("label_names", "n_known", "holdout_classes", "sample_rate"):
                    writer.attrs[key] = clips.attrs[key]
                writer.attrs["band_mean"] = mean
                writer.attrs["band_std"] = std
                writer.attrs["params"] = dumps_json({
                    "features": as_dict(params),
                    **json.loads(clips.attrs["params"]),
                })
    print(f"featurize: {total} clips -> {params.kind} [{n_bands} x {frames}] -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

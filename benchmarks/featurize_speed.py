"""Featurize throughput against a per-clip librosa loop, on the same clips, in one run.

Three ways compute log-mel spectrograms with the project's default params (or
MFCCs with --mfcc) for the same clips: the featurize stage's code on one
thread, the same on one thread per core as the stage runs it, and a plain
loop calling librosa once per clip. The script checks that the numbers
agree (to 1e-3 dB / 1e-3) and prints throughput in multiples of real time and
the ratios. Clips come from data/clips.h5 when it exists, else from synthetic
tones and noise written to a temporary table.

    python benchmarks/featurize_speed.py [--clips data/clips.h5] [--n 1024] [--mfcc] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import h5py
import librosa
import numpy as np

from musicid.features import compute_features, mel_filterbank
from musicid.parallel import resolve_jobs
from musicid.params import as_dict, load_section, parse_section

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import positive  # noqa: E402  (argparse type: a whole number of at least 1)

PROJECT = Path(__file__).resolve().parent.parent


def synthetic_clips(n: int, seconds: float, sample_rate: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    frequencies = rng.uniform(80, 2000, size=(n, 1))
    tones = 0.3 * np.sin(2 * np.pi * frequencies * t) + 0.05 * rng.standard_normal((n, len(t)))
    return tones.astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=PROJECT / "data" / "clips.h5")
    parser.add_argument("--n", type=positive, default=1024, help="clips to featurize")
    parser.add_argument("--mfcc", action="store_true", help="MFCCs instead of log-mel spectrograms")
    parser.add_argument("--repeats", type=positive, default=3, help="runs of each method; the median is shown")
    args = parser.parse_args()
    features = load_section(PROJECT / "params.yaml", "features")
    clip_params = load_section(PROJECT / "params.yaml", "clip")
    if args.clips.is_file():
        with h5py.File(args.clips, "r") as table:
            clips = table["audio"][: args.n]
            sample_rate = int(table.attrs["sample_rate"])
        origin = f"{len(clips)} clips from {args.clips}"
    else:
        sample_rate = clip_params.sample_rate
        clips = synthetic_clips(args.n, clip_params.clip_seconds, sample_rate)
        origin = f"{len(clips)} synthetic clips"
    jobs = resolve_jobs(0)
    kind = "mfcc" if args.mfcc else "logmel"
    overrides = {"kind": kind}
    if args.mfcc:  # librosa.feature.mfcc's power_to_db: top_db 80, no floor of ours
        overrides.update(top_db=80.0, floor_db=-300.0)
    config = parse_section({**as_dict(features), **overrides}, "features")
    seconds = clips.shape[0] * clips.shape[1] / sample_rate
    kwargs = dict(sr=sample_rate, n_fft=config.n_fft, hop_length=config.hop_length, n_mels=config.n_mels,
                  fmin=config.fmin, fmax=config.fmax)

    batch = features.batch_size

    def ours(threads: int):
        def run() -> np.ndarray:
            return np.concatenate([compute_features(clips[i:i + batch], config, sample_rate, threads)
                                   for i in range(0, len(clips), batch)])
        return run

    def per_clip_librosa() -> np.ndarray:
        out = []
        for clip in clips:
            if args.mfcc:
                out.append(librosa.feature.mfcc(y=clip, n_mfcc=features.n_mfcc, **kwargs))
            else:
                power = librosa.feature.melspectrogram(y=clip, **kwargs)
                out.append(np.maximum(librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=config.top_db), config.floor_db))
        return np.stack(out)

    # Warm both up (imports, filterbank) on one clip, outside the timing.
    mel_filterbank(sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    compute_features(clips[:1], config, sample_rate)
    librosa.feature.melspectrogram(y=clips[0], **kwargs)
    methods = (("musicid, 1 thread", ours(1)), (f"musicid stage, {jobs} threads", ours(jobs)),
               ("librosa, one call per clip", per_clip_librosa))
    elapsed: dict[str, list[float]] = {name: [] for name, _ in methods}
    results = {}
    for _ in range(args.repeats):  # interleaved, so that a slow moment of the machine hits every method
        for name, function in methods:
            started = time.perf_counter()
            results[name] = function()
            elapsed[name].append(time.perf_counter() - started)
    timings = {name: (float(np.median(elapsed[name])), results[name]) for name, _ in methods}
    reference = timings["librosa, one call per clip"][1]
    difference = max(float(np.max(np.abs(timings[name][1] - reference))) for name, _ in methods[:2])
    described = f"MFCC ({features.n_mfcc})" if args.mfcc else f"log-mel ({config.n_mels} bands)"
    print(f"{origin}, {seconds / 60:.1f} min of audio at {sample_rate} Hz, {described}, "
          f"n_fft {config.n_fft}, hop {config.hop_length}")
    for name, (elapsed, _) in timings.items():
        print(f"  {name:28s} {elapsed:7.2f} s = {seconds / elapsed:8.0f}x real time (median of {args.repeats})")
    baseline = timings["librosa, one call per clip"][0]
    for name, _ in methods[:2]:
        print(f"ratio {name} / librosa loop: {baseline / timings[name][0]:.2f}x")
    print(f"largest difference from librosa: {difference:.2e} ({'within' if difference < 1e-3 else 'BEYOND'} 1e-3)")

    return 0 if difference < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())

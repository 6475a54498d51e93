"""Does the answer depend on the recording's level, sample rate or channel layout?

Takes pieces of a finished run (its rendered WAVs, the test tracks first, then
val, taken in turn from each class), writes four copies of each: at half and
a quarter of the gain (16-bit WAV, as rendered), as a 44.1 kHz stereo
16-bit FLAC (resampled with soxr, the mono render in both channels), and the
same as AAC at 128 kbit/s in an .m4a (FFmpeg's encoder, through PyAV).  Each
model given predicts every original and every copy with ``musicid.predict``;
the table says, per model, in how many copies the top label is the one of the
original, and the largest change of any class probability.

    python benchmarks/invariance.py [--models models/model.pt [other.pt ...]] [--audio data/audio]
        [--clips data/clips.h5] [--pieces 12]

Deterministic given the models and the run's files.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import soundfile
import soxr

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from musicid.h5 import read_strings  # noqa: E402
from musicid.predict import Predictor  # noqa: E402

VARIANTS = ("gain 0.5", "gain 0.25", "44.1 kHz stereo FLAC", "AAC 128 kbit/s .m4a")


def choose_pieces(clips: Path, count: int) -> list[tuple[str, str]]:
    """(track, first WAV name) of ``count`` tracks: test before val, classes in turn, sorted within."""
    with h5py.File(clips, "r") as table:
        tracks, sources, splits = (read_strings(table[name]) for name in ("track", "source", "split"))
        labels = table["label"][:]
    first_source = {}
    for track, source in zip(tracks, sources):
        first_source.setdefault(track, source)
    chosen = []
    for split in ("test", "val"):
        by_label: dict[int, list[str]] = {}
        for track, label, where in sorted(set(zip(tracks, labels.tolist(), splits))):
            if where == split:
                by_label.setdefault(label, []).append(track)
        queues = [by_label[label] for label in sorted(by_label)]
        while any(queues) and len(chosen) < count:
            for queue in queues:
                if queue and len(chosen) < count:
                    chosen.append(queue.pop(0))
    return [(track, first_source[track]) for track in chosen]


def write_variants(wav: Path, folder: Path) -> dict[str, Path]:
    """The four copies of ``wav`` (see the module docstring), written under ``folder``."""
    audio, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    paths = {}
    for name, gain in (("gain 0.5", 0.5), ("gain 0.25", 0.25)):
        paths[name] = folder / f"{name.replace(' ', '_')}.wav"
        soundfile.write(paths[name], audio * gain, rate, subtype="PCM_16")
    resampled = soxr.resample(mono, rate, 44100, quality="HQ")
    paths["44.1 kHz stereo FLAC"] = folder / "copy.flac"
    soundfile.write(paths["44.1 kHz stereo FLAC"], np.stack([resampled, resampled], axis=1), 44100,
                    subtype="PCM_16")
    paths["AAC 128 kbit/s .m4a"] = write_aac(folder / "copy.m4a", resampled, 44100)
    return paths


def write_aac(path: Path, mono: np.ndarray, rate: int, bit_rate: int = 128_000) -> Path:
    """``mono`` float32 [n] in both channels of an AAC stream in an .m4a, as a shop sells a track."""
    import av

    with av.open(str(path), "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout, stream.bit_rate = "stereo", bit_rate
        planes = np.ascontiguousarray(np.stack([mono, mono]), dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout="stereo")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


def measure(model: Path, pieces: list[tuple[str, str]], audio: Path, scratch: Path) -> dict:
    predictor = Predictor(model)
    same = {name: 0 for name in VARIANTS}
    largest_change = 0.0
    lines = []
    for index, (track, source) in enumerate(pieces):
        folder = scratch / f"{index:03d}"
        folder.mkdir(exist_ok=True)
        variants = write_variants(audio / source, folder)
        original = predictor.predict(audio / source, top=len(predictor.label_names))
        if original.error:
            raise SystemExit(f"invariance: {source}: {original.error}")
        reference = dict(original.labels)
        row = [f"{track}: {original.labels[0][0]} {original.labels[0][1]:.2f}"]
        for name in VARIANTS:
            copy = predictor.predict(variants[name], top=len(predictor.label_names))
            if copy.error:
                raise SystemExit(f"invariance: {name} copy of {source}: {copy.error}")
            same[name] += copy.labels[0][0] == original.labels[0][0]
            largest_change = max(largest_change, max(abs(p - reference[label]) for label, p in copy.labels))
            row.append(f"{name} -> {copy.labels[0][0]} {copy.labels[0][1]:.2f}")
        lines.append("; ".join(row))
    return {"same": same, "largest_change": largest_change, "lines": lines}


def run_arguments(description: str, argv: list[str] | None,
                  folder: str) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """(parser, arguments) of a benchmark on a finished run's pieces: --models, --<folder> (the run's ``data/``
    folder of that name), --clips, --pieces and --verbose; a missing path or a count below 1 stops it here."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--models", nargs="+", type=Path, default=[PROJECT / "models/model.pt"])
    parser.add_argument(f"--{folder}", type=Path, default=PROJECT / "data" / folder)
    parser.add_argument("--clips", type=Path, default=PROJECT / "data/clips.h5")
    parser.add_argument("--pieces", type=int, default=12)
    parser.add_argument("--verbose", action="store_true", help="one line per piece and model")
    args = parser.parse_args(argv)
    if args.pieces < 1:
        parser.error("--pieces must be at least 1")
    given = (("--clips", [args.clips]), (f"--{folder}", [getattr(args, folder)]), ("--models", args.models))
    missing = [f"{flag} {path}" for flag, paths in given for path in paths if not path.exists()]
    if missing:
        parser.error(f"missing: {', '.join(missing)} (the defaults are the default run's: `dvc repro` makes them)")
    return parser, args


def main(argv: list[str] | None = None) -> int:
    _, args = run_arguments(__doc__.splitlines()[0], argv, "audio")
    pieces = choose_pieces(args.clips, args.pieces)
    total = len(pieces) * len(VARIANTS)
    print(f"{len(pieces)} pieces x {len(VARIANTS)} copies ({', '.join(VARIANTS)}) = {total}")
    print(f"{'model':<40} {'top label unchanged':>20} " + " ".join(f"{name:>21}" for name in VARIANTS)
          + f" {'largest change of p':>20}")
    with tempfile.TemporaryDirectory(prefix="musicid-invariance-") as scratch:
        for model in args.models:
            result = measure(model, pieces, args.audio, Path(scratch))
            unchanged = sum(result["same"].values())
            print(f"{str(model):<40} {f'{unchanged} of {total}':>20} "
                  + " ".join(f"{result['same'][name]:>21}" for name in VARIANTS)
                  + f" {result['largest_change']:>20.3f}")
            if args.verbose:
                print("\n".join(f"  {line}" for line in result["lines"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage `featurize`: log-mel, MFCC, constant-Q or chroma features of every clip into HDF5.

    python stages/featurize.py --params params.yaml --clips data/clips.h5 --out data/features.h5 \
        --render-report data/audio/report.json --raw data/raw [--jobs N] [--scheduler ADDRESS]

With ``features.symbolic`` true, each clip also gets the symbolic features of
the notes its MIDI source plays in the clip's window (musicid.symbolic), read
from the source in ``--raw`` named by the render report; the table then has the
columns ``symbolic`` and ``has_symbolic`` and the attributes ``symbolic_mean``
and ``symbolic_std`` (over the training clips that have them), and, with
render.augment on, the column ``augmented`` that marks the training clips cut
from its copies (train.track_notes' regression reads the plain renders' notes).
With ``features.symbolic_piece`` also the whole-piece statistics of each MIDI
source with notes (musicid.piece), one row per source: ``piece`` float64
[M, PIECE_DIM] and ``piece_track`` (the sources, sorted), which train's
regression on the notes reads beside its clips' (``train.track_notes``).

With a Dask scheduler (``--scheduler`` or ``$MUSICID_SCHEDULER``) the features of
each block of ``features.batch_size`` clips, and the notes of each MIDI source,
are computed on the cluster from the arrays and bytes this process sends; this
process alone writes the table, in row order, so it holds the same bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

# This project's musicid before any installed one: a queued `dvc exp run` runs the stages in a copy of the
# project (.dvc/tmp/exps/...), whose code is the experiment's, while an editable install points elsewhere.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from musicid.features import (PITCH_KINDS, FeatureBlock, RunningBandStats, block_features, compute_features,
                              constant_q_cutoff, mel_filterbank, n_bands, n_frames)
from musicid.h5 import (SHARED_ATTRS, STRING, RowWriter, WriteError, error_cause, feature_columns, read_strings,
                        staged_table)
from musicid.io import dumps_json, size_words
from musicid.parallel import check_jobs, ordered_map, resolve_jobs, resolve_scheduler, where
from musicid.params import as_dict, load_section
from musicid.piece import PIECE_DIM
from musicid.progress import progress
from musicid.stage import StageError, run_stage
from musicid.symbolic import ROLL_DIM, TableSymbolic, roll_planes, roll_shape, symbolic_dim, table_features


def run(args: argparse.Namespace) -> int:
    """The work of the stage; failures a user can fix end in one line (musicid.stage)."""
    params = load_section(args.params, "features")
    check_jobs(args.jobs)

    if not args.clips.is_file():
        print(f"featurize: {args.clips} is missing: the clip stage writes it (dvc repro clip)", file=sys.stderr)
        return 1
    scheduler = resolve_scheduler(args.scheduler)
    try:
        return featurize(args.clips, args.out, params, args.params, resolve_jobs(args.jobs),
                         render_report=args.render_report, raw=args.raw, scheduler=scheduler)
    except WriteError as error:
        print(f"featurize: cannot write {args.out}: {error.cause}", file=sys.stderr)
        return 1
    except OSError as error:  # writes fail as WriteError, so this is h5py failing to read the clips
        print(f"featurize: cannot read {args.clips} ({error_cause(error)}): rerun the clip stage "
              "(dvc repro --force clip)", file=sys.stderr)
        return 1


def read_render_records(path: Path) -> list[dict]:
    """The ``files`` records of the render stage's report; StageError naming the file if unusable."""
    if not path.is_file():
        raise StageError(f"{path} is missing: the render stage writes it (dvc repro render)")
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StageError(f"{path} is not valid JSON ({error}): rerun the render stage") from None
    if not isinstance(report, dict) or not isinstance(report.get("files"), list):
        raise StageError(f"{path} has no 'files' list: rerun the render stage")
    return report["files"]


def symbolic_of(clips, render_report: Path | None, raw: Path | None, jobs: int,
                scheduler: str | None = None, relative: bool = False, texture: bool = False,
                roll: bool = False, piece: bool = False, onsets: bool = False) -> TableSymbolic:
    """Symbolic features of every row of the open clips table (see musicid.symbolic.table_features)."""
    if render_report is None or raw is None:
        raise StageError("features.symbolic is true: give the render report and the raw sources "
                         "(--render-report data/audio/report.json --raw data/raw)")
    records = read_render_records(render_report)
    clip_seconds = clips["audio"].shape[1] / float(clips.attrs["sample_rate"])
    return table_features(read_strings(clips["track"]), read_strings(clips["source"]), clips["offset_s"][:],
                          clip_seconds, records, raw, jobs, scheduler, relative, texture, roll, piece, onsets)


# A symbolic number is a share (0..1) or a log of a count or a length (a few units): one whose training values
# vary by less than this (a pitch class no training piece held, or held by a trace) keeps its own scale (std 1,
# as scikit-learn's StandardScaler does for a constant), so a file to predict that has it reads as at most a few
# units. Scaled by its spread instead (floored at 1e-6 before), one such note sent the input to 1e5.
MIN_SYMBOLIC_STD = 0.01


def symbolic_stats(values: np.ndarray, planes: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 [D] of rows float32 [n, D]; std 1 for a column that varies by less than
    MIN_SYMBOLIC_STD, and (0, 1) when there is no row (no training clip has notes). The last ``planes`` x
    ROLL_DIM columns (the piano roll and its onset plane, 0..1 already) get (0, 1): a convolution reads them
    on one scale."""
    dim = values.shape[1]
    mean, std = np.zeros(dim, np.float32), np.ones(dim, np.float32)
    if len(values) == 0:
        return mean, std
    plain = dim - planes * ROLL_DIM
    values = values[:, :plain].astype(np.float64)
    mean[:plain] = values.mean(axis=0)
    spread = values.std(axis=0)
    std[:plain] = np.where(spread < MIN_SYMBOLIC_STD, 1.0, spread)
    return mean, std


def block_crashed(block: FeatureBlock) -> None:
    """A block of clips killed worker after worker: the table has one row per clip, none may be left out."""
    raise StageError(f"the clips in rows {block.start} to {block.start + len(block.clips) - 1} of the clips table "
                     "killed one worker process after another (worker_crash); the feature table keeps every clip, "
                     "so the stage stops: run it with --jobs 1 (in one process) to see the error")


def feature_batches(audio, ranges: list[tuple[int, int]], params, sample_rate: int, threads: int,
                    scheduler: str | None) -> Iterator[np.ndarray]:
    """The features float32 [stop - start, n_bands, n_frames] of each (start, stop) range of rows of ``audio``.

    Here on ``threads`` threads, or on the Dask cluster at ``scheduler``, one
    block per range, sent as it is read (at most two per worker thread in flight).
    """
    if not scheduler:
        return (compute_features(audio[start:stop], params, sample_rate, threads) for start, stop in ranges)
    blocks = (FeatureBlock(start, audio[start:stop], params, sample_rate) for start, stop in ranges)
    return ordered_map(block_features, blocks, jobs=threads, scheduler=scheduler, on_crash=block_crashed)


def empty_mel_bands(sample_rate: int, params) -> int:
    """How many bands of the mel filterbank the features params give at ``sample_rate`` have no weight."""
    import warnings

    with warnings.catch_warnings():  # librosa's "Empty filters detected": counted and named here instead
        warnings.simplefilter("ignore", UserWarning)
        bank = mel_filterbank(sample_rate, params.n_fft, params.n_mels, params.fmin, params.fmax)
    return int((bank.max(axis=1) == 0).sum())


def featurize(clips_path: Path, out: Path, params, params_path: Path, threads: int,
              render_report: Path | None = None, raw: Path | None = None, scheduler: str | None = None) -> int:
    """Compute the features of every clip of ``clips_path`` into ``out``; the stage's exit code.

    ``scheduler``: a Dask scheduler's address (None: ``threads`` threads here, and as many processes for
    the symbolic features).
    """
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
        if params.kind not in PITCH_KINDS:
            empty = empty_mel_bands(sample_rate, params)
            if empty:
                print(f"featurize: {params_path}: features.n_mels {params.n_mels} bands from features.fmin "
                      f"{params.fmin:g} to fmax {params.fmax:g} Hz leave {empty} bands empty (no frequency bin of "
                      f"features.n_fft {params.n_fft} at {sample_rate} Hz falls in them; they would hold the floor "
                      f"alone): lower features.n_mels, raise features.n_fft or widen fmin .. fmax", file=sys.stderr)
                return 2
        total, clip_samples = clips["audio"].shape
        # A window longer than the clip, or one frame a clip: nothing a model can read. (The constant-Q
        # kinds do not read n_fft.)
        for key, value, limit, part in (("n_fft", params.n_fft if params.kind not in PITCH_KINDS else 0,
                                         clip_samples, ""),
                                        ("hop_length", params.hop_length, clip_samples // 2, "half ")):
            if value > limit:
                print(f"featurize: {params_path}: features.{key} must be at most {limit} samples ({part}a clip of "
                      f"{clip_samples} samples at {sample_rate} Hz: clip.clip_seconds x clip.sample_rate), got "
                      f"{value}", file=sys.stderr)
                return 2
        splits = read_strings(clips["split"])
        if total == 0 or not (splits == "train").any():
            held = "no clip" if total == 0 else "no clip in the train split (normalisation statistics need one)"
            print(f"featurize: {clips_path} holds {held}: rerun the clip stage, which stops with the param "
                  "to change (clip.clip_seconds, clip.min_rms, clip.max_silence, split.val, split.test)",
                  file=sys.stderr)
            return 1
        frames = n_frames(clip_samples, params.hop_length)
        bands = n_bands(params)
        # The features array is written uncompressed (float32): a table the disk cannot hold is found now, not
        # after minutes of work (a small features.hop_length multiplies the frames of every clip).
        needed = total * bands * frames * 4
        folder = next(parent for parent in out.resolve().parents if parent.exists())
        free = shutil.disk_usage(folder).free
        if needed > free:
            print(f"featurize: {out} would take {size_words(needed)} ({total} clips x {bands} bands x {frames} "
                  f"frames, float32) and its disk has {size_words(free)} free: free space, or make the clips "
                  f"smaller (features.hop_length {params.hop_length}, features.n_mels or n_bins)", file=sys.stderr)
            return 1
        stats = RunningBandStats(bands)
        workers = where(threads, scheduler)  # also stops at once when a named scheduler cannot be reached
        symbolic = symbolic_of(clips, render_report, raw, threads, scheduler, params.symbolic_key == "relative",
                               params.symbolic_texture, params.symbolic_roll, params.symbolic_piece,
                               params.symbolic_onsets) \
            if params.symbolic else None
        for source, reason in (symbolic.unreadable.items() if symbolic else ()):
            print(f"featurize: {source}: no symbolic features ({reason})", file=sys.stderr)
        for source in (symbolic.noteless if symbolic else ()):
            print(f"featurize: {source}: no symbolic features (no_notes: no note sounds in its clips; drums "
                  "only, or notes that are never released): its audio alone is read", file=sys.stderr)
        if symbolic is not None and not (symbolic.present & (splits == "train")).any():
            # A branch trained on no notes would read a MIDI file's notes in predict with weights that never
            # saw one: the table is an audio-only one, as with features.symbolic false.
            print(f"featurize: features.symbolic is true, but no training clip has notes "
                  f"({without_notes(symbolic) or 'their notes lie outside the clips'}): audio features only",
                  file=sys.stderr)
            symbolic = None
        width = symbolic_dim(params.symbolic_texture, params.symbolic_roll, params.symbolic_onsets) \
            if symbolic is not None else 0
        # Which clips come from render.augment's copies: train.track_notes' regression reads the plain renders'.
        augmented = symbolic.augmented if symbolic is not None else None
        with staged_table(out) as temporary:
            with RowWriter(temporary, feature_columns(bands, frames, width, augmented is not None)) as writer:
                ranges = [(start, min(start + params.batch_size, total))
                          for start in range(0, total, params.batch_size)]
                # Closed at the loop's end, not when collected (zip leaves it suspended): see symbolic.table_features.
                with contextlib.closing(feature_batches(clips["audio"], ranges, params, sample_rate, threads,
                                                        scheduler)) as batches:
                    for (start, stop), features in progress(zip(ranges, batches), total=len(ranges), desc="featurize"):
                        extra = {} if symbolic is None else {"symbolic": symbolic.features[start:stop],
                                                             "has_symbolic": symbolic.present[start:stop]}
                        if augmented is not None:
                            extra["augmented"] = augmented[start:stop]
                        writer.append(
                            features=features,
                            label=clips["label"][start:stop],
                            known=clips["known"][start:stop],
                            track=clips["track"].asstr()[start:stop],
                            offset_s=clips["offset_s"][start:stop],
                            split=splits[start:stop],
                            **extra,
                        )
                        # Normalisation statistics see the training split only.
                        stats.update(features[splits[start:stop] == "train"])
                mean, std = stats.result()
                for key in SHARED_ATTRS:
                    writer.attrs[key] = clips.attrs[key]
                if "excluded_classes" in clips.attrs:  # written only when clip left a class out
                    writer.attrs["excluded_classes"] = clips.attrs["excluded_classes"]
                writer.attrs["band_mean"] = mean
                writer.attrs["band_std"] = std
                feature_params = as_dict(params)
                # Keys left at what the table meant before they existed keep its bytes as they were
                # (predict's ABSENT_KEYS puts them back).
                if feature_params["symbolic_key"] == "absolute":
                    del feature_params["symbolic_key"]
                for key in ("symbolic_texture", "symbolic_roll", "symbolic_piece", "symbolic_onsets"):
                    if not feature_params[key] or symbolic is None:  # (without symbolic features, neither is written)
                        del feature_params[key]
                if symbolic is None:
                    del feature_params["symbolic"]
                else:
                    used = symbolic.present & (splits == "train")
                    writer.attrs["symbolic_mean"], writer.attrs["symbolic_std"] = \
                        symbolic_stats(symbolic.features[used], roll_planes(params.symbolic_roll,
                                                                            params.symbolic_onsets))
                    if params.symbolic_roll:  # what train builds the model's roll branch for
                        writer.attrs["symbolic_roll_shape"] = np.array(
                            roll_shape(params.symbolic_roll, params.symbolic_onsets), np.int64)
                    if params.symbolic_piece:  # each MIDI source's whole-piece statistics (musicid.piece)
                        names = sorted(symbolic.piece)
                        writer.write_dataset("piece_track", np.array(names, dtype=STRING))
                        writer.write_dataset("piece", np.stack([symbolic.piece[name] for name in names])
                                             if names else np.zeros((0, PIECE_DIM)))
                writer.attrs["params"] = dumps_json({
                    "features": feature_params,
                    **json.loads(clips.attrs["params"]),
                })
    print(f"featurize: {total} clips -> {params.kind} [{bands} x {frames}]"
          f"{symbolic_summary(symbolic) if symbolic else ''}; {workers} -> {out}")
    return 0


def without_notes(symbolic: TableSymbolic) -> str:
    """``1 audio source, 1 unreadable MIDI file``: why clips have no symbolic features."""
    absent = []
    if symbolic.audio_sources:
        absent.append(f"{symbolic.audio_sources} audio source{'s' * (symbolic.audio_sources != 1)}")
    if symbolic.unreadable:
        count = len(symbolic.unreadable)
        absent.append(f"{count} unreadable MIDI file{'s' * (count != 1)}")
    if symbolic.noteless:
        count = len(symbolic.noteless)
        absent.append(f"{count} MIDI file{'s' * (count != 1)} with no note sounding")
    if symbolic.quiet_clips:
        count = symbolic.quiet_clips
        absent.append(f"{count} clip{'s' * (count != 1)} of other MIDI files with no note sounding")
    return ", ".join(absent)


def symbolic_summary(symbolic: TableSymbolic) -> str:
    """``; symbolic [44] for 80 of 90 clips (1 audio source, 1 unreadable MIDI file)``."""
    absent = without_notes(symbolic)
    why = f" ({absent})" if absent else ""
    count = f"{int(symbolic.present.sum())} of {len(symbolic.present)} clips"
    return f"; symbolic [{symbolic.features.shape[1]}] for {count}{why}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, type=Path)
    parser.add_argument("--clips", required=True, type=Path, help="input: data/clips.h5")
    parser.add_argument("--out", required=True, type=Path, help="output: data/features.h5")
    parser.add_argument("--render-report", type=Path,
                        help="input with features.symbolic: data/audio/report.json (which WAV is which source)")
    parser.add_argument("--raw", type=Path, help="input with features.symbolic: data/raw (the MIDI sources)")
    parser.add_argument("--jobs", type=int, default=0,
                        help="threads for the FFTs, processes reading MIDI files (0: $MUSICID_JOBS, else one per core)")
    parser.add_argument("--scheduler", default=None,
                        help="a Dask scheduler's address (default: $MUSICID_SCHEDULER; unset: local workers)")
    args = parser.parse_args(argv)
    return run_stage("featurize", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())

"""Stage `clip`: assign splits per track, then cut fixed-length clips into HDF5.

    python stages/clip.py --params params.yaml --audio data/audio \
        --out data/clips.h5 --report data/clips_report.json [--jobs N] [--scheduler ADDRESS]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np

# This project's musicid before any installed one: a queued `dvc exp run` runs the stages in a copy of the
# project (.dvc/tmp/exps/...), whose code is the experiment's, while an editable install points elsewhere.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from musicid.clips import (ClipTask, DamagedAudio, clip_track, crashed_track, deal_units, expected_clip_count,
                           split_units, too_small_classes, track_caps, versions_held, wav_damage)
from musicid.copies import recording_copies
from musicid.h5 import SPLITS, RowWriter, WriteError, clip_columns, error_cause, staged_table
from musicid.io import dumps_json, size_words
from musicid.parallel import check_jobs, ordered_map, resolve_jobs, resolve_scheduler, where
from musicid.params import ParamsError, as_dict, load_section
from musicid.progress import progress
from musicid.stage import StageError, output_set, run_stage


def unrendered_classes(records: list[dict], rendered: list[str]) -> dict[str, str]:
    """label -> reason for the labels of the render report none of whose files was rendered:
    ``"0 rendered tracks: its 3 files were rejected (no_notes 3)"``."""
    reasons: dict[str, Counter] = {}
    for record in records:
        if record["status"] == "rejected" and record.get("label") is not None and record["label"] not in rendered:
            reasons.setdefault(record["label"], Counter())[str(record.get("reason") or "rejected")] += 1
    def reason(counts: Counter) -> str:
        total = sum(counts.values())
        files = f"{total} file{'s were' if total != 1 else ' was'}"
        return f"0 rendered tracks: its {files} rejected ({', '.join(f'{r} {n}' for r, n in sorted(counts.items()))})"

    return {label: reason(counts) for label, counts in sorted(reasons.items())}


def projected_clips(seconds: float, renders: int, tempos: list[float], cap: int, clip_params) -> int:
    """Clips a track gives at most (no clip silent): each of its ``renders`` plain renders of ``seconds`` and
    an augmented copy (render.augment) for each of ``tempos``, its tempo factor, each at most its share of
    ``cap`` (0: no cap), as :func:`musicid.clips.clip_track` shares it. A copy at x0.9 is counted at
    ``seconds / 0.9`` and one at x1.1 at ``seconds``: the notes' time scales, the release after them does not,
    so these bound the copies' lengths from above."""
    share = max(1, cap // max(1, renders)) if cap else None

    def count(length: float) -> int:
        clips = expected_clip_count(length, clip_params.clip_seconds, clip_params.hop_seconds)
        return min(clips, share) if share else clips

    return count(seconds) * renders + sum(count(seconds / min(tempo, 1.0) if tempo > 0 else seconds)
                                          for tempo in tempos)


def run(args: argparse.Namespace) -> int:
    """The work of the stage; failures a user can fix end in one line (musicid.stage)."""
    clip_params = load_section(args.params, "clip")
    split_params = load_section(args.params, "split")
    check_jobs(args.jobs)

    report_path = args.audio / "report.json"
    report = read_render_report(report_path)
    if isinstance(report, str):
        raise StageError(report)
    tracks = {r["source"]: r for r in report["files"] if r["status"] != "rejected"}
    if not tracks:
        raise StageError(no_track_message(report["files"], report_path))
    # A recording saved twice (a lossy copy, another level) is one track, never on both sides of the split.
    copies = recording_copies(tracks, args.audio) if clip_params.find_copies else {}
    vanished = {r["label"]: f"every track left out as the same recording as another file's ({len(copies)} such "
                            f"tracks are listed under copies_left_out in {args.report})"
                for t, r in tracks.items() if t in copies}
    tracks = {t: r for t, r in tracks.items() if t not in copies}
    for record in tracks.values():
        vanished.pop(record["label"], None)
    if not tracks:
        raise StageError(f"no track left: every rendered recording is a copy of another under another label "
                         f"({next(iter(copies.values()))}, and {len(copies) - 1} more)")
    labels_found = sorted({r["label"] for r in tracks.values()})
    if len(labels_found) < 2:  # nothing to tell apart, whatever the params
        raise StageError(f"every rendered track is of one class ({labels_found[0]}): at least two are needed "
                         f"(dataset.classes, or a <label>/ folder each in a collection; {report_path} lists "
                         "what was rendered)")
    holdout = sorted(set(split_params.holdout_classes))
    if any(label in vanished for label in holdout):
        raise ParamsError(f"{args.params}: split.holdout_classes names "
                          f"{', '.join(label for label in holdout if label in vanished)}: "
                          f"{vanished[next(label for label in holdout if label in vanished)]}")
    missing = [label for label in holdout if label not in labels_found]
    if missing or len(labels_found) - len(holdout) < 2:
        reason = (f"names classes with no rendered track: {missing} (the classes rendered: "
                  f"{', '.join(labels_found)})" if missing
                  else f"must leave at least two of the classes {labels_found} to train on")
        raise ParamsError(f"{args.params}: split.holdout_classes {reason}")
    # A collection that gives its own split (dataset.label_table.split_column) is scored on it, as published
    # results on it are: every track then has one, and there are no folds to deal.
    given = {t: r["split"] for t, r in tracks.items() if r.get("split")}
    if given and len(given) < len(tracks):
        raise StageError(f"{len(tracks) - len(given)} of the {len(tracks)} rendered tracks have no split of the "
                         f"collection's own (dataset.label_table.split_column) and the others have one: "
                         f"{report_path} is older than data/raw/manifest.json; render again (`dvc repro render`)")
    if given and split_params.folds:
        raise ParamsError(f"{args.params}: split.folds must be 0 when the collection gives its own split "
                          f"(dataset.label_table.split_column), got {split_params.folds}")
    # A class too small for the split is left out whole, never trained on; one whose every file was rejected
    # has no track at all, and is named too (it would vanish from every output without a word).
    # split.group folder: the tracks of one sub-folder of a label folder (a work, an album) are dealt as one.
    units = split_units(tracks, split_params.group)
    joined = bool(versions_held(tracks))  # the versions of a work rendered twice or more: one unit
    words = ("rendered track", "rendered tracks") if split_params.group == "track" and not joined else \
        ("unit of rendered tracks (the versions of one work are one)",
         "units of rendered tracks (the versions of one work are one)") if split_params.group == "track" else \
        (f"group of rendered tracks (split.group {split_params.group})",
         f"groups of rendered tracks (split.group {split_params.group})")
    excluded = {**unrendered_classes(report["files"], labels_found), **vanished,
                **({} if given else too_small_classes({units[t]: r["label"] for t, r in tracks.items()},
                                                      split_params.val, split_params.test, holdout,
                                                      split_params.folds, words))}
    # Sub-folders of label folders, counted on every rendered track (a class of one folder may be left out).
    in_folders, rendered = sum(1 for record in tracks.values() if record.get("folder")), len(tracks)
    deeper = sum(1 for record in tracks.values() if record.get("parent"))
    tracks = {t: r for t, r in tracks.items() if r["label"] not in excluded}
    # The split depends on the tracks' names (and folders; copies of one recording left out above), split.seed
    # and split.folds alone, not on what cutting finds: it is made once, and a class left out below (no
    # training clip) leaves every other track where it was.
    all_splits = {t: "test" if tracks[t]["label"] in holdout else given[t] for t in sorted(tracks)} if given else \
        deal_units(tracks, units, split_params.val, split_params.test, split_params.seed, holdout,
                   split_params.folds, split_params.fold, split_params.order)
    splittable = tracks
    # A known class whose every train track gives no clip (too short, or all silence) cannot be trained on: a
    # first pass finds it, and the others are cut again without it (the default dataset has none).
    no_train_clip: dict[str, str] = {}
    scheduler = resolve_scheduler(args.scheduler)
    clip_samples = int(round(clip_params.clip_seconds * clip_params.sample_rate))
    while True:
        excluded = dict(sorted({**excluded, **no_train_clip}.items()))
        tracks = {t: r for t, r in splittable.items() if r["label"] not in no_train_clip}
        known = [label for label in labels_found if label not in holdout and label not in excluded]
        if len(known) < 2:
            left_out = "; ".join(f"{label}: {reason}" for label, reason in excluded.items())
            raise StageError(f"{len(known)} class{'es' if len(known) != 1 else ''} left to train on {known}, at "
                             f"least two are needed; left out: {left_out}")
        # Known classes first, so that the classifier's outputs are 0 .. n_known - 1.
        label_names = known + holdout
        label_index = {name: i for i, name in enumerate(label_names)}
        splits = {t: all_splits[t] for t in tracks}
        empty = [split for split in ("val", "test") if given and split not in splits.values()]
        if empty:  # train reads val to keep an epoch and stops without one; evaluate scores test
            raise StageError(f"the collection's own split (dataset.label_table.split_column) puts no track of the "
                             f"classes kept in {' or '.join(empty)}: each needs some (or set the split column to "
                             f"null, and split.val and split.test deal the tracks)")
        # A train track's augmented renders (render.augment) are cut too; val, test and held-out tracks are
        # scored on plain renders only, as prediction renders a file.
        outputs = {t: list(r["outputs"]) for t, r in tracks.items()}
        augmented = {t: [copy["output"] for copy in r.get("augmented", [])] if splits[t] == "train" else []
                     for t, r in tracks.items()}
        damaged = {str(args.audio / name): wav_damage(args.audio / name)
                   for track in tracks for name in outputs[track] + augmented[track]}
        damaged = {path: reason for path, reason in sorted(damaged.items()) if reason}
        if damaged:
            raise StageError(damaged_message(damaged, report_path))

        # The clip caps bound the cost of training; val and test tracks give every clip, so
        # that each track's decision rests on the whole piece.
        caps = {}
        for label in known:
            members = [t for t, r in tracks.items() if r["label"] == label and splits[t] == "train"]
            demands = {t: expected_clip_count(tracks[t].get("duration_s") or 0, clip_params.clip_seconds,
                                              clip_params.hop_seconds) for t in members}
            caps.update(track_caps(demands, {t: len(outputs[t]) for t in members}, clip_params.max_clips_per_track,
                                   clip_params.max_clips_per_class))
        order = sorted(tracks)
        # The table is float32 audio, written as the tracks are cut: one the disk cannot hold would stop the
        # stage at the end of its work. Its size is known only then (silent clips are skipped); every clip
        # the renders' lengths allow is an upper bound, said now.
        tempos = {t: [copy.get("tempo") or 1.0 for copy in tracks[t].get("augmented", [])] if augmented[t] else []
                  for t in order}
        projected = sum(projected_clips(tracks[t].get("duration_s") or 0, len(outputs[t]), tempos[t],
                                        caps.get(t, 0), clip_params) for t in order)
        needed = projected * clip_samples * 4
        folder = next(parent for parent in args.out.resolve().parents if parent.exists())
        free = shutil.disk_usage(folder).free
        if needed > free:
            print(f"clip: warning: {args.out} may take up to {size_words(needed)} ({projected} clips of "
                  f"{clip_params.clip_seconds:g} s at {clip_params.sample_rate} Hz, float32, fewer once silence is "
                  f"skipped) and its disk has {size_words(free)} free: free space, or cap the training clips "
                  f"(clip.max_clips_per_track, clip.max_clips_per_class), raise clip.hop_seconds or lower "
                  f"clip.sample_rate", file=sys.stderr)

        def tasks() -> Iterator[ClipTask]:
            # A local worker reads a track's WAVs itself (the stage holds none); a Dask worker, which may be
            # on another machine, gets their bytes, read only when its task is sent, so memory holds the
            # tracks in flight, not the collection.
            for t in order:
                task = ClipTask.read if scheduler else ClipTask.at
                yield task(tuple(str(args.audio / name) for name in outputs[t] + augmented[t]), clip_params,
                           caps.get(t, 0), augmented=len(augmented[t]))

        jobs = min(resolve_jobs(args.jobs), len(order))  # (a generator has no length for ordered_map to cap by)
        workers = where(jobs, scheduler)  # also stops at once when a named scheduler cannot be reached
        clips_per, tracks_per, augmented_per, track_clips = Counter(), Counter(), Counter(), Counter()
        silent_total, dropped = 0, {}
        try:
            # The table and its report are written to temporaries and move into place together.
            with output_set() as written:
                temporary = written.staged(staged_table(args.out))
                with RowWriter(temporary, clip_columns(clip_samples)) as writer:
                    # Closed at the loop's end, not when collected (zip leaves it suspended): see table_features.
                    with contextlib.closing(ordered_map(clip_track, tasks(), jobs=jobs, scheduler=scheduler,
                                                        on_crash=crashed_track)) as results:
                        for track, result in progress(zip(order, results), total=len(order), desc="clip"):
                            if result is None:  # it killed worker after worker: the other tracks go on
                                dropped[track] = "worker_crash"
                                continue
                            clips, offsets, output_index, n_silent = result
                            record = tracks[track]
                            split = splits[track]
                            count = len(clips)
                            names = outputs[track] + augmented[track]
                            writer.append(
                                audio=clips,
                                label=np.full(count, label_index[record["label"]], dtype=np.int16),
                                known=np.full(count, record["label"] not in holdout),
                                track=[track] * count,
                                source=[names[i] for i in output_index],
                                offset_s=offsets,
                                split=[split] * count,
                            )
                            clips_per[(record["label"], split)] += count
                            track_clips[track] = count
                            augmented_per[record["label"]] += int(np.sum(output_index >= len(outputs[track])))
                            tracks_per[(record["label"], split)] += count > 0  # tracks that gave clips
                            silent_total += n_silent
                            if count == 0:
                                # Clips that fit but were all silence, or not one whole clip.
                                dropped[track] = "silent" if n_silent else "too_short"
                    empty = empty_result_message(clips_per, dropped, tracks, clip_params)
                    if empty:
                        raise EmptyResult(empty)
                    lacking = classes_without_train_clip(clips_per, dropped, known, tracks, splits, clip_params)
                    if lacking:
                        raise Recut(lacking)
                    counts = {label: {split: {"tracks": tracks_per[(label, split)],
                                              "clips": clips_per[(label, split)]}
                                      for split in SPLITS} for label in label_names}
                    writer.attrs["label_names"] = label_names
                    writer.attrs["n_known"] = len(label_names) - len(holdout)
                    writer.attrs["holdout_classes"] = holdout
                    writer.attrs["sample_rate"] = clip_params.sample_rate
                    writer.attrs["params"] = dumps_json({"render": report.get("params"),
                                                         "clip": as_dict(clip_params),
                                                         "split": as_dict(split_params)})
                    writer.attrs["counts"] = dumps_json(counts)
                    if excluded:  # read on by featurize and evaluate, which name them beside the scores
                        writer.attrs["excluded_classes"] = dumps_json(excluded)
                    total = writer.rows
                # A report that cannot be written leaves neither file new.
                try:
                    written.file(args.report).write_bytes(dumps_json({
                        "counts": counts, "clips": total, "silent_clips_skipped": silent_total,
                        # Of the train clips in "counts", those cut from augmented renders, by label.
                        "augmented_clips": {label: augmented_per[label] for label in label_names},
                        "dropped_tracks": dropped, "excluded_classes": excluded, "holdout_classes": holdout,
                        **({"copies_left_out": copies} if copies else {}),
                    }).encode("utf-8"))
                except OSError as error:
                    raise WriteError(args.report, error_cause(error)) from None
        except Recut as error:
            for label, reason in error.classes.items():
                print(f"clip: class {label} is left out: {reason}; the other classes are cut again")
            no_train_clip.update(error.classes)
            continue
        except EmptyResult as error:
            raise StageError(str(error)) from None
        except DamagedAudio as error:
            raise StageError(damaged_message({error.path: error.reason}, report_path)) from None
        except WriteError as error:  # RowWriter names its staging file: name the output instead
            raise StageError(f"cannot write {args.report if error.path == args.report else args.out}: "
                             f"{error.cause}") from None
        break

    per_split = {s: sum(v for (_, sp), v in clips_per.items() if sp == s) for s in SPLITS}
    reasons = Counter(dropped.values())
    n_augmented = sum(augmented_per.values())
    of_them = f", of them {n_augmented} from augmented renders" if n_augmented else ""
    crashes = f", {reasons['worker_crash']} killed the workers cutting them" if reasons["worker_crash"] else ""
    print(f"clip: {total} clips of {clip_params.clip_seconds:g} s from {len(order)} tracks "
          f"(train {per_split['train']}{of_them}, val {per_split['val']}, test {per_split['test']}; "
          f"{silent_total} silent clips skipped; tracks dropped: {reasons['silent']} all silence, "
          f"{reasons['too_short']} too short{crashes}; {workers}) -> {args.out}")
    for label in label_names:
        cells = ", ".join(f"{s} {counts[label][s]['tracks']}/{counts[label][s]['clips']}" for s in SPLITS)
        print(f"  {label:20s} tracks/clips: {cells}{'  (held out: unknown)' if label in holdout else ''}")
    for label, reason in excluded.items():
        print(f"  {label:20s} left out: {reason}")
    if copies:
        shown = "; ".join(f"{track}: {reason}" for track, reason in list(copies.items())[:3])
        print(f"clip: warning: {len(copies)} recording{'s' if len(copies) != 1 else ''} left out, the same audio "
              f"as another file (a lossy copy, another level; listed in {args.report} under copies_left_out): "
              f"{shown}{'; ...' if len(copies) > 3 else ''}", file=sys.stderr)
    for warning in scoreless_splits(tracks, splits, dropped, known) + dominant_tracks(
            track_clips, tracks, splits, known, clip_params.max_clips_per_track):
        print(f"clip: warning: {warning}", file=sys.stderr)
    if given:
        print("clip: the collection's own split, from its label table (dataset.label_table.split_column): "
              "split.val, split.test, split.seed, split.group and split.order are not used", file=sys.stderr)
    elif split_params.group == "track" and in_folders:
        print(f"clip: note: {in_folders} of the {rendered} tracks sit in sub-folders of their label folder (works, "
              "albums) or have a dataset.label_table group: split.group folder keeps each sub-folder or group on "
              "one side of the split, so that no work or album is both trained and scored on", file=sys.stderr)
    elif split_params.group != "track" and not in_folders:
        print(f"clip: warning: split.group {split_params.group}: no track sits in a sub-folder of its label folder "
              "(a collection rendered before download recorded folders is rendered again by `dvc repro`), so each "
              "track is a group of its own, as with split.group track", file=sys.stderr)
    elif split_params.group != "track":
        print(f"clip: split.group {split_params.group}: {len(set(units[t] for t in tracks))} groups of "
              f"{len(tracks)} tracks ({sum(1 for record in tracks.values() if record.get('folder'))} with a folder: "
              "a sub-folder of their label folder, or their dataset.label_table group; each other track is a group "
              "of its own)", file=sys.stderr)
    versions = versions_held(tracks)
    works = len(set(versions.values()))
    if versions and not given:
        print(f"clip: {len(versions)} tracks are versions of {works} work{'s' if works != 1 else ''} (download found "
              "them by their notes: another edition, a transposition, another performance; `work` in "
              "data/raw/manifest.json): each work's versions are dealt to one side of the split", file=sys.stderr)
    elif versions:
        sides: dict[tuple[str, str], set[str]] = {}
        for track, work in versions.items():
            sides.setdefault(work, set()).add(all_splits[track])
        apart = sorted(work for work, found in sides.items() if len(found) > 1)
        if apart:
            print(f"clip: warning: {len(apart)} of {works} work{'s' if works != 1 else ''} held in two versions or "
                  f"more {'have' if len(apart) != 1 else 'has'} versions on two sides of the collection's own split "
                  f"(dataset.label_table.split_column), first {apart[0][1]}: its versions on the val or test side are "
                  "scored as unseen music although another version was trained on (download found them by their "
                  "notes; `work` in data/raw/manifest.json)",
                  file=sys.stderr)
    if split_params.group == "folder" and deeper and not given:
        print(f"clip: note: {deeper} rendered tracks sit two or more folders below their label folder "
              "(Sonatas/op2/1.mid): split.group folder deals the whole first folder as one group, split.group "
              "parent each folder a track sits in", file=sys.stderr)
    if clip_params.hop_seconds > clip_params.clip_seconds:  # allowed (sparser clips), but easy to leave by mistake
        print(f"clip: warning: clip.hop_seconds {clip_params.hop_seconds:g} is longer than clip.clip_seconds "
              f"{clip_params.clip_seconds:g}: {clip_params.hop_seconds - clip_params.clip_seconds:g} s of every "
              f"{clip_params.hop_seconds:g} s of audio is in no clip", file=sys.stderr)
    rendered_rate = (report.get("params") or {}).get("sample_rate")
    if isinstance(rendered_rate, int) and rendered_rate < clip_params.sample_rate:
        print(f"clip: warning: render.sample_rate {rendered_rate} Hz is below clip.sample_rate "
              f"{clip_params.sample_rate} Hz: the clips are resampled up and hold nothing above "
              f"{rendered_rate / 2:g} Hz, which features would read as silence (set the two equal)", file=sys.stderr)
    return 0


def scoreless_splits(tracks: dict[str, dict], splits: dict[str, str], dropped: dict[str, str],
                     known: list[str]) -> list[str]:
    """A line for each known class whose every val or test track was dropped (too short, silent): the
    split had tracks of it but has nothing of it to score, so its scores leave the class out; and for each
    that a collection's own split puts no track of in val or test (the pipeline's split always does)."""
    found = []
    for label in known:
        for split in ("val", "test"):
            members = [t for t in tracks if tracks[t]["label"] == label and splits[t] == split]
            if not members and any(record.get("split") for record in tracks.values()):
                found.append(f"{label} has no {split} track in the collection's own split "
                             f"(dataset.label_table.split_column): the {split} scores leave {label} out")
            elif members and all(t in dropped for t in members):
                reasons = ", ".join(sorted({dropped[t] for t in members}))
                found.append(f"{label} has no {split} clip: its {len(members)} {split} "
                             f"track{'s' if len(members) > 1 else ''} gave none ({reasons}); the {split} "
                             f"scores leave {label} out")
    return found


def dominant_tracks(track_clips: Counter, tracks: dict[str, dict], splits: dict[str, str], known: list[str],
                    max_per_track: int) -> list[str]:
    """A line for each known class and split in which one track gives most of the class's clips while the
    class has three tracks or more there (an hour-long recording among short pieces): in train, most of what
    the model learns of the class is that recording; in val and test, the class's clip-level scores are."""
    found = []
    for label in known:
        for split in SPLITS:
            given = {t: track_clips[t] for t in tracks
                     if tracks[t]["label"] == label and splits[t] == split and track_clips[t]}
            total = sum(given.values())
            if len(given) < 3:
                continue
            track = max(sorted(given), key=given.__getitem__)
            if 2 * given[track] <= total:
                continue
            share = f"{track} gives {given[track]} of {label}'s {total} {split} clips ({len(given)} tracks)"
            if split == "train":
                now = f" (now {max_per_track})" if max_per_track else ""
                found.append(f"{share}: most of what the model learns of {label} is that one track; set "
                             f"clip.max_clips_per_track{now} or clip.max_clips_per_class to bound it, or train.track_balance "
                             f"to weigh it less")
            else:
                found.append(f"{share}: {label}'s clip-level {split} scores are mostly that one track (its "
                             f"track-level ones count it once)")
    return found


class Recut(Exception):
    """Known classes got no training clip: cut again without them (``classes``: label -> why)."""

    def __init__(self, classes: dict[str, str]):
        super().__init__(", ".join(classes))
        self.classes = classes


class EmptyResult(Exception):
    """The clips would train nothing; the message names the params to change."""


def read_render_report(path: Path) -> dict | str:
    """The render stage's report, or why it cannot be used (one line)."""
    if not path.is_file():
        return f"{path} is missing: the render stage writes it (dvc repro render)"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"{path} is not valid JSON ({error}): rerun the render stage (dvc repro --force render)"
    if not isinstance(report, dict) or not isinstance(report.get("files"), list):
        return f"{path} has no list of files: rerun the render stage (dvc repro --force render)"
    return report


def no_track_message(records: list[dict], report_path: Path) -> str:
    """Why there is no audio to clip: no source at all, or every one rejected (counts by reason)."""
    if not records:
        return f"no rendered track: {report_path} lists no source (the download stage kept no file)"
    reasons = Counter(str(r.get("reason")) for r in records)
    counted = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
    return f"no rendered track: all {len(records)} sources were rejected ({counted}); see {report_path}"


def damaged_message(damaged: dict[str, str], report_path: Path) -> str:
    """A rendered WAV gone bad: data/audio is a pipeline output, so it is restored, not skipped."""
    path, reason = next(iter(damaged.items()))
    more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
    return (f"{path}, rendered according to {report_path}, is {reason}{more}: the render stage's output was "
            f"damaged after it was written; restore it (dvc checkout) or rerun render (dvc repro --force render)")


def no_clip_words(track_ids: list[str], dropped: dict[str, str], tracks: dict[str, dict], clip_params) -> str:
    """Why these tracks gave no clip, and the params to change: ``2 shorter than clip.clip_seconds (4 s), the
    longest lasting 3 s; lower clip.clip_seconds``."""
    length = f"clip.clip_seconds ({clip_params.clip_seconds:g} s)"
    silence = (f"silence (more than clip.max_silence {clip_params.max_silence:g} of their 50 ms frames under "
               f"clip.min_rms {clip_params.min_rms:g})")
    reasons = Counter(dropped[t] for t in track_ids)
    parts, change = [], []
    if reasons["too_short"]:
        longest = max((tracks[t].get("duration_s") or 0 for t in track_ids if dropped[t] == "too_short"))
        parts.append(f"{reasons['too_short']} shorter than {length}, the longest lasting {longest:g} s")
        change.append("lower clip.clip_seconds")
    if reasons["silent"]:
        parts.append(f"{reasons['silent']} all {silence}")
        change.append("lower clip.min_rms or raise clip.max_silence")
    if reasons["worker_crash"]:
        parts.append(f"{reasons['worker_crash']} killed worker after worker (worker_crash)")
        change.append("see why those WAVs crash the workers")
    return f"{' and '.join(parts)}; {' or '.join(change)}"


def empty_result_message(clips_per: Counter, dropped: dict[str, str], tracks: dict[str, dict],
                         clip_params) -> str | None:
    """Why no clip at all was cut, naming the params to change; None when some were."""
    if sum(clips_per.values()) == 0:
        why = no_clip_words(sorted(dropped), dropped, tracks, clip_params)
        return f"no clip cut from the {len(dropped)} tracks: {why}"
    return None


def classes_without_train_clip(clips_per: Counter, dropped: dict[str, str], known: list[str],
                               tracks: dict[str, dict], splits: dict[str, str], clip_params) -> dict[str, str]:
    """label -> why, for the known classes that got no training clip (their every train track too short or
    silent): nothing to train them on, so they are left out."""
    lacking = {}
    for label in known:
        if clips_per[(label, "train")] == 0:
            train_tracks = sorted(t for t in tracks if tracks[t]["label"] == label and splits[t] == "train")
            lacking[label] = (f"no clip in the train split: of its {len(train_tracks)} train "
                              f"track{'s' if len(train_tracks) != 1 else ''}, "
                              f"{no_clip_words(train_tracks, dropped, tracks, clip_params)}") if train_tracks else \
                "no track in the train split (the collection's own split, dataset.label_table.split_column, " \
                "puts none there)"
    return lacking


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, type=Path)
    parser.add_argument("--audio", required=True, type=Path, help="input: data/audio (with report.json)")
    parser.add_argument("--out", required=True, type=Path, help="output: data/clips.h5")
    parser.add_argument("--report", required=True, type=Path, help="output: counts per label and split (JSON)")
    parser.add_argument("--jobs", type=int, default=0, help="worker processes (0: $MUSICID_JOBS, else one per core)")
    parser.add_argument("--scheduler", default=None,
                        help="a Dask scheduler's address (default: $MUSICID_SCHEDULER; unset: local workers)")
    args = parser.parse_args(argv)
    return run_stage("clip", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())

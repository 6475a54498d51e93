"""Composer-identification quality: k-fold cross-validation on a suite of offline tasks.

Each task is a collection built from the music21 corpus and run through the
pipeline's own stage scripts (download, render, clip, featurize, train,
evaluate), with one params.yaml per task, configuration and fold, written from
the project's params.yaml plus overrides.  Cross-validation is the pipeline's
own: ``split.folds`` = k and ``split.fold`` = 0 .. k-1 (track-grouped,
stratified by label; val comes from the tracks outside the test fold).

Tasks (``--tasks``):

* ``default-piano``: the default classes (bach, monteverdi, palestrina,
  trecento, ``dataset.max_per_class`` each) rendered with ``render.program: 0``,
  so every part is a piano and the instrumentation music21 writes (voice oohs
  for Palestrina, ...) cannot give the answer away.
* ``quartets``: the string-quartet movements of Haydn, Mozart and Beethoven in
  the corpus (Mozart's piano sonata K. 545 left out, and Beethoven's op. 18
  no. 4 and op. 74, whose conversion outlasts ``dataset.timeout_s`` on a
  2-core machine and may not on a faster one), every work once, all parts
  forced to one violin (``render.program: 40``: a clear attack, so fast passages
  stay distinct; part names differ between the scores).
* ``lopsided``: bach 48 vs monteverdi 8 (6x), as piano.  Both are four- and
  five-part vocal polyphony, so the task is hard as well as lopsided; 8
  Monteverdi madrigals still leave one per test fold and some for val at k = 5
  (trecento 6 would not, once a score or two fails to convert).
* ``renaissance``: palestrina 48 vs monteverdi 8 (6x), as piano: lopsided as
  ``lopsided`` is, with the pair the default model confuses most (the default
  run's test clips); on ``lopsided`` today's default names every track right.

Configurations (``--configs``): named param overrides.  ``default`` is
params.yaml as it is; others are built in (see ``CONFIGS``) or given as
``name:section.key=value,section.key=value`` (values read as YAML, e.g.
``wide:train.channels=[32,64,128,256]``).

Each task is downloaded and rendered once per distinct dataset/render params
and reused by every configuration and fold; clip and featurize run once per
fold and distinct clip/split/features params; train and evaluate once per
configuration and fold.  Every step is kept under ``--out`` in a folder named
by a hash of the params it depends on, so an interrupted suite resumes where it
stopped and a configuration that only changes ``train`` reuses the features;
one that only changes ``evaluate`` (``evaluate.clip_audio``) reuses the model
of a finished run of the same fold, from any configuration, and runs evaluate
alone.

Prints one table, task x configuration: mean +- sample sd over folds of test
track macro-F1 and test clip macro-F1, and the minutes the configuration costs
alone (its download and render, plus every fold's clip to evaluate, measured
when each step ran).  With two configurations or more, each is also compared
with the task's first one fold by fold (the folds hold the same tracks): mean
+- sd of the difference and the folds it is better and worse in.  ``--seeds 0 1
2`` trains every fold once per ``train.seed`` and takes the mean, so that a
fold's figure is not one training run's luck (on a task of a few dozen tracks a
run's kept epoch moves a fold by tenths); the table then also gives the sd
between the seeds.  The same tables, with per-fold and per-seed figures, are
written to ``<out>/composer_quality.json``.  Scores are deterministic given the
args on one machine (the stages are); minutes are measured.

    python benchmarks/composer_quality.py [--tasks default-piano quartets lopsided renaissance] [--configs default]
        [--folds 5] [--seeds 0] [--max-per-class 0] [--epochs 0] [--out benchmarks/runs/composer_quality]
        [--jobs 0]

A small run: ``--tasks default-piano --folds 3 --max-per-class 6 --epochs 2``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from musicid.params import ParamsError, ParamsLoader, read_params

PROGRAM = "composer_quality"  # names the script in messages; a script that imports these helpers sets its own
PROJECT = Path(__file__).resolve().parent.parent
STAGES = PROJECT / "stages"


@dataclass(frozen=True)
class ClassSpec:
    composer: str  # music21 corpus composer, also the label
    cap: int | None  # at most this many works (None: the base params' dataset.max_per_class; 0: all)
    exclude: tuple[str, ...] = ()  # corpus paths (as in the manifest's origin, without "music21:") left out


@dataclass(frozen=True)
class Task:
    name: str
    classes: tuple[ClassSpec, ...]
    render: dict  # overrides of the render section

    def describe(self) -> str:
        return ", ".join(spec.composer for spec in self.classes)


TASKS = {
    "default-piano": Task("default-piano", tuple(ClassSpec(c, None) for c in
                                                 ("bach", "monteverdi", "palestrina", "trecento")),
                          {"program": 0}),
    # Two Beethoven quartets, each whole in one score, take music21 longer than dataset.timeout_s (120 s) to
    # convert on a 2-core AMD EPYC, and may not on a faster machine: left out by name, so that the task holds
    # the same tracks (and folds) on every machine.
    "quartets": Task("quartets", (ClassSpec("haydn", 0),
                                  ClassSpec("mozart", 0, ("mozart/k545/movement1_exposition.mxl",)),
                                  ClassSpec("beethoven", 0, ("beethoven/opus18no4.mxl", "beethoven/opus74.mxl"))),
                     {"program": 40}),
    "lopsided": Task("lopsided", (ClassSpec("bach", 48), ClassSpec("monteverdi", 8)), {"program": 0}),
    # The pair the default model confuses most (the default run's test clips), lopsided as above.
    "renaissance": Task("renaissance", (ClassSpec("palestrina", 48), ClassSpec("monteverdi", 8)), {"program": 0}),
}

# Named configurations: dotted param keys -> values, applied over params.yaml.
CONFIGS = {
    "default": {},
    "overlap": {"clip.hop_seconds": 2.0},  # twice the clips per track
    "mfcc": {"features.kind": "mfcc"},
    "balanced": {"train.sampler": "balanced"},
    "symbolic": {"features.symbolic": True},  # the notes of each clip's MIDI source, fused with the audio
    "noroll": {"features.symbolic_roll": False},  # no piano roll (the default before 2026-12-05)
    # and a piano roll of each clip, read by a conv branch: the full one (three blocks of 16, 32, 64 on every frame)
    "roll": {"features.symbolic_roll": True, "train.roll_pool": 1, "train.roll_channels": [16, 32, 64]},
    # the roll read by a cheaper branch, frames merged in pairs, half the conv widths (the default since 2026-12-05)
    "rolllite": {"features.symbolic_roll": True, "train.roll_pool": 2, "train.roll_channels": [8, 16, 32]},
    # the roll's second plane: where each note starts (a note struck again, repeated notes)
    "onsets": {"features.symbolic_onsets": True},
    # the onset plane read by the full branch, whose frames are not merged in pairs (onsets keep their frame)
    "roll-onsets": {"features.symbolic_onsets": True, "train.roll_pool": 1, "train.roll_channels": [16, 32, 64]},
    # two narrow blocks, full frames
    "roll2": {"features.symbolic_roll": True, "train.roll_pool": 1, "train.roll_channels": [8, 16]},
    # the notes behind each training clip's symbolic features transposed by -3..3 semitones (the audio is not)
    "transpose": {"train.symbolic_transpose": 3},
    "rolllite-transpose": {"features.symbolic_roll": True, "train.roll_pool": 2, "train.roll_channels": [8, 16, 32],
                           "train.symbolic_transpose": 3},
    "augment": {"render.augment.copies": 2},  # two transposed, tempo-scaled renders of each training track
    "cqt": {"features.kind": "cqt", "features.fmin": 32.703, "train.pitch_shift": 2},
    "smooth": {"train.label_smoothing": 0.1},
    # a batch-hard triplet loss on the embedding beside the cross-entropy (clip level up on two tasks, open set down)
    "cetrip": {"train.loss": "ce+triplet"},
    "mixup": {"train.mixup": 0.2, "train.loss": "ce"},  # mixup takes the cross-entropy alone
    "nocap": {"clip.max_clips_per_track": 0},  # every clip of every training track (the default now)
    "cap16": {"clip.max_clips_per_track": 16},  # at most 16 clips per training track (the default before)
    # every training track the same weight in the loss within its class
    "tbal": {"train.track_balance": 1.0},
    # a track's answer the clips' mean as it is, not divided by the training clips' class shares (before track_prior)
    "noprior": {"train.track_prior": 0.0},
    # a clip named by the model with its notes alone, not mixed with its audio alone's answer (before clip_audio)
    "nomix": {"evaluate.clip_audio": 0.0},
    # the regression on the notes also reads each source's whole-piece statistics (musicid.piece)
    "piece": {"features.symbolic_piece": True},
    "nopiece": {"features.symbolic_piece": False},
    "instruments": {"render.program": None},  # the instruments music21 writes, instead of the task's one program
}


# Train params added since runs were first cached, at the value that leaves training as it was.
NEUTRAL_TRAIN = {"ema": 0.0, "keep": "best", "roll_channels": [16, 32, 64], "roll_pool": 1, "track_notes": 0.0,
                 "symbolic_transpose": 0, "track_balance": 0.0, "track_prior": 0.0}
NEUTRAL_EVALUATE = {"clip_audio": 0.0}
NEUTRAL_SPLIT = {"group": "track", "order": "shuffle"}
NEUTRAL_FEATURES = {"symbolic_key": "absolute", "symbolic_texture": False, "symbolic_roll": False,
                    "symbolic_piece": False, "symbolic_onsets": False}


def without_neutral(section: dict, neutral: dict) -> dict:
    """``section`` without the params at their "off" value (``neutral``): the same runs as before they existed."""
    return {key: value for key, value in section.items() if key not in neutral or value != neutral[key]}


def digest(*parts) -> str:
    """A short stable hash of JSON-able ``parts``: names a folder by the params it depends on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:10]


def parse_config(text: str) -> tuple[str, dict]:
    """``name`` (built in) or ``name:a.b=v,c.d=w`` -> (name, {dotted key: value})."""
    if ":" not in text:
        if text not in CONFIGS:
            raise SystemExit(f"composer_quality: unknown configuration {text!r}; built in: "
                             f"{', '.join(CONFIGS)}, or give name:section.key=value,...")
        return text, CONFIGS[text]
    name, _, body = text.partition(":")
    overrides = {}
    for item in _top_level_items(body):
        key, equals, value = item.partition("=")
        if not equals or key.count(".") < 1:
            raise SystemExit(f"composer_quality: configuration {name!r}: {item!r} is not section.key=value")
        try:
            overrides[key.strip()] = yaml.load(value, Loader=ParamsLoader)  # 1e-3 a number, as DVC reads it
        except yaml.YAMLError as error:
            problem = str(getattr(error, "problem", None) or error).splitlines()[0]
            raise SystemExit(f"composer_quality: configuration {name!r}: the value of {key.strip()} is not "
                             f"YAML ({value!r}: {problem})") from None
    return name, overrides


def _top_level_items(body: str) -> list[str]:
    """``a=1,b=[2, 3]`` -> ``["a=1", "b=[2, 3]"]``: commas inside brackets belong to a value."""
    items, depth, start = [], 0, 0
    for index, character in enumerate(body):
        depth += character in "[{"
        depth -= character in "]}"
        if character == "," and depth == 0:
            items.append(body[start:index])
            start = index + 1
    return items + [body[start:]]


def apply(params: dict, overrides: dict) -> dict:
    """A copy of ``params`` with ``{"section.key": value}`` overrides set."""
    result = json.loads(json.dumps(params))
    for dotted, value in overrides.items():
        *path, key = dotted.split(".")
        place = result
        for part in path:
            place = place.get(part) if isinstance(place, dict) else None
        if not isinstance(place, dict) or key not in place:
            raise SystemExit(f"{PROGRAM}: no param {dotted} in params.yaml")
        place[key] = value
    return result


def run_stage(name: str, arguments: list, folder: Path, jobs: int | None = None) -> float:
    """Run ``stages/<name>.py`` from the project root (train needs its git repository); return seconds.

    Its output goes to ``folder/<name>.log``; a failure stops the suite with the
    stage's last line, as a mean over fewer folds would not be comparable.
    """
    command = [sys.executable, str(STAGES / f"{name}.py"), *map(str, arguments)]
    if jobs is not None:
        command += ["--jobs", str(jobs)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "MUSICID_PROGRESS": "0"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    log = folder / f"{name}.log"
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise SystemExit(f"{PROGRAM}: {name} failed in {folder}: {last} (log: {log})")
    return seconds


def write_params(folder: Path, params: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=True))
    return path


def cached(folder: Path, work) -> float:
    """Seconds ``work()`` took, now or when it last completed in ``folder`` (its ``seconds.json``)."""
    marker = folder / "seconds.json"
    if marker.is_file():
        return json.loads(marker.read_text())["seconds"]
    seconds = work()
    marker.write_text(json.dumps({"seconds": round(seconds, 1)}))
    return seconds


def task_params(task: Task, base: dict, overrides: dict) -> dict:
    """The params of one configuration on one task: ``base``, the task's render settings, then the
    configuration's ``overrides`` (which win, so that a configuration can change a task's render)."""
    params = json.loads(json.dumps(base))
    params["render"].update(task.render)
    return apply(params, overrides)


def prepare_data(task: Task, base: dict, max_per_class: int, out: Path, jobs: int,
                 works: bool = False) -> tuple[Path, float]:
    """Download and render ``task`` once; return (its audio folder, seconds it took).

    Each class is exported from the music21 corpus by the download stage with its
    own cap (the music21 source has one cap for all classes), with the
    instruments music21 writes (``dataset.program`` null: the task's render
    params say what the parts play); the kept MIDI files minus the task's
    exclusions form a ``<label>/<file>.mid`` folder that the download stage
    reads as a ``path`` source, so the task's manifest and audio come from the
    stages as a user would run them.  ``base``: the params with the task's render settings.

    With ``works``, a score the corpus keeps in a work's folder (``beethoven/opus18no1/movement1.mxl``) sits in
    that folder of the collection (``beethoven/opus18no1/movement1.mid``): the tracks are named as without it
    (download writes ``beethoven/opus18no1__movement1.mid``), and their records name the work's folder, for
    ``split.group: folder`` (``benchmarks/split_by_work.py``).  Such data is kept in a folder of its own.
    """
    render = base["render"]
    datasets = {}  # the download params of each class's conversion
    for spec in task.classes:
        cap = base["dataset"]["max_per_class"] if spec.cap is None else spec.cap
        if max_per_class:
            cap = min(cap, max_per_class) if cap else max_per_class
        datasets[spec.composer] = {**base["dataset"], "source": "music21", "classes": [spec.composer],
                                   "max_per_class": cap, "program": None}
    # Every dataset param a conversion reads (its timeout, say) is in the key, so that no configuration
    # is given another's data.
    key = digest([(s.composer, digest(datasets[s.composer]), s.exclude) for s in task.classes], render,
                 *(("works",) if works else ()))
    folder = out / task.name / f"data-{key}"

    def work() -> float:
        if folder.exists():  # a run stopped half-way: start this step again
            shutil.rmtree(folder)
        collection = folder / "collection"
        seconds = 0.0
        for spec in task.classes:
            dataset = datasets[spec.composer]
            # The scores' conversion depends on the dataset params alone: shared by every render setting.
            corpus = out / task.name / f"corpus-{spec.composer}-{digest(dataset)}"

            def convert(corpus=corpus, dataset=dataset) -> float:
                if corpus.exists():
                    shutil.rmtree(corpus)
                params = write_params(corpus, {**base, "dataset": dataset})
                return run_stage("download", ["--params", params, "--out", corpus / "raw"], corpus, jobs)

            seconds += cached(corpus, convert)
            manifest = json.loads((corpus / "raw" / "manifest.json").read_text())
            for record in manifest["files"]:
                if record["origin"].removeprefix("music21:") in spec.exclude:
                    continue
                target = collection / record["path"]
                folders = record["origin"].removeprefix("music21:").split("/")[1:-1]
                if works and folders:  # beethoven/opus18no1__movement1.mid -> beethoven/opus18no1/movement1.mid
                    target = target.parent / Path(*folders) / target.name.removeprefix(
                        "__".join(folders) + "__")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(corpus / "raw" / record["path"], target)
        dataset = {**base["dataset"], "source": "path", "path": str(collection), "classes": [],
                   "max_per_class": 0}
        params = write_params(folder, {**base, "dataset": dataset, "render": render})
        seconds += run_stage("download", ["--params", params, "--out", folder / "raw"], folder, jobs)
        seconds += run_stage("render", ["--params", params, "--raw", folder / "raw", "--out", folder / "audio"],
                             folder, jobs)
        return seconds

    return folder / "audio", cached(folder, work)


def prepare_features(task: Task, audio: Path, params: dict, fold: int, out: Path, jobs: int) -> tuple[Path, float]:
    """Clip and featurize one fold (once per distinct clip/split/features params); (features.h5, seconds)."""
    key = digest(str(audio), params["clip"], without_neutral(params["split"], NEUTRAL_SPLIT),
                 without_neutral(params["features"], NEUTRAL_FEATURES))
    folder = out / task.name / f"features-{key}"

    def work() -> float:
        path = write_params(folder, params)
        clips = folder / "clips.h5"
        seconds = run_stage("clip", ["--params", path, "--audio", audio, "--out", clips,
                                     "--report", folder / "clips_report.json"], folder, jobs)
        seconds += run_stage("featurize", ["--params", path, "--clips", clips, "--out", folder / "features.h5",
                                           "--render-report", audio / "report.json", "--raw", audio.parent / "raw"],
                             folder, jobs)
        clips.unlink()  # the waveforms are the largest file and nothing reads them again
        return seconds

    return folder / "features.h5", cached(folder, work)


# Training code that rounds differently from the runs before it: a new value trains every run again rather
# than pair a cached run of the old code with a new one (2: the weight gradient in parts, 2026-12-05).
TRAINING_CODE = 2


def run_key(features: Path, params: dict, code: int = TRAINING_CODE) -> str:
    """The cache key of one training run: its features, its train and evaluate params and the training
    code's ``TRAINING_CODE`` (1, the runs before it existed, adds nothing: their keys stay as they were).

    A train or evaluate param at its "off" value (``NEUTRAL_TRAIN``, ``NEUTRAL_EVALUATE``) is left out: runs
    made before it existed are the same runs.
    """
    return digest(str(features), without_neutral(params["train"], NEUTRAL_TRAIN),
                  without_neutral(params["evaluate"], NEUTRAL_EVALUATE),
                  *((code,) if code > 1 else ()))


def train_key(features: Path, params: dict) -> str:
    """The cache key of the model a run trains: ``run_key`` with every evaluate param at its "off" value.

    The model depends on the features and the train params alone; a run whose evaluate params are off is
    kept under this very key, so a run made before an evaluate param existed is found by it too.
    """
    neutral = {**params, "evaluate": {**params["evaluate"], **NEUTRAL_EVALUATE}}
    return run_key(features, neutral)


def trained_model(features: Path, params: dict, fold_folder: Path) -> tuple[Path, float] | None:
    """A model trained already on ``features`` with ``params``' train params, by any configuration of this
    task and fold (a run that differs only in evaluate params), and the seconds its training took; None when
    no finished run has one.

    A run records its training's key and seconds in ``train.json``; a run made before that file existed is
    found by its folder's name (``train_key``: its evaluate params were all off) and counts its
    ``seconds.json``, its training and its evaluation together, as the training's seconds.
    """
    key = train_key(features, params)
    task_folder = fold_folder.parent.parent
    for folder in sorted(task_folder.glob(f"*/{fold_folder.name}/*/")):
        if not ((folder / "model.pt").is_file() and (folder / "seconds.json").is_file()):
            continue  # unfinished, or no run
        record = folder / "train.json"
        if record.is_file():
            trained = json.loads(record.read_text())
            if trained["train_key"] == key:
                return folder / "model.pt", trained["seconds"]
        elif folder.name == key:
            return folder / "model.pt", json.loads((folder / "seconds.json").read_text())["seconds"]
    return None


def train_and_evaluate(features: Path, params: dict, folder: Path) -> tuple[dict, float]:
    """Train and evaluate one fold in ``folder``; (the evaluate stage's metrics, seconds).

    A configuration that differs from a finished run of this task and fold only in evaluate params takes
    that run's model (``trained_model``, hard-linked, or copied across file systems) and runs evaluate alone;
    its seconds are the model's training seconds plus its own evaluation's, the time it costs from scratch.
    """
    fold_folder, folder = folder, folder / run_key(features, params)

    def work() -> float:
        path = write_params(folder, params)
        model = folder / "model.pt"
        found = trained_model(features, params, fold_folder)
        if found is not None and found[0] != model:
            model.unlink(missing_ok=True)  # an interrupted run's
            try:
                os.link(found[0], model)
            except OSError:
                shutil.copyfile(found[0], model)
            train_seconds = found[1]
        else:
            train_seconds = run_stage("train", ["--params", path, "--features", features, "--model", model,
                                                "--live", folder / "live"], folder)
        (folder / "train.json").write_text(json.dumps({"train_key": train_key(features, params),
                                                       "seconds": round(train_seconds, 1)}))
        seconds = train_seconds + run_stage("evaluate", [
            "--params", path, "--model", model, "--features", features, "--metrics", folder / "metrics.json",
            "--per-class", folder / "per_class.json", "--confusion", folder / "confusion", "--novelty",
            folder / "novelty.csv", "--predictions", folder / "predictions.csv", "--figures", folder / "figures"],
            folder)
        return seconds

    seconds = cached(folder, work)
    metrics = json.loads((folder / "metrics.json").read_text())
    # Track macro-F1 under each pooling of the clips (evaluate's per_class.json), where recorded.
    pooling = json.loads((folder / "per_class.json").read_text())["test"].get("track_pooling", {})
    # (notes: null when no test track had notes; such a fold has no figure for it. "used" and "notes_tracks"
    # are words, not figures.)
    return {**metrics, "track_pooling": {way: f1 for way, f1 in pooling.items()
                                         if isinstance(f1, (int, float)) and not isinstance(f1, bool)}}, seconds


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); sd is NaN for one value."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def mean_sd_text(values: list[float], sign: str = "") -> str:
    """``mean +- sd`` of ``values`` to three decimals (``sign`` "+": the mean with its sign), as the scripts that
    re-score the suite's runs print their table cells."""
    mean, sd = mean_sd(values)
    return f"{mean:{sign}.3f} +- {sd:.3f}"


FOLD_METRICS = ("track_macro_f1", "clip_macro_f1", "track_balanced_accuracy", "clip_balanced_accuracy")


def fold_figures(runs: list[dict]) -> dict:
    """One fold's figures from its training runs (one per seed): each metric's mean over the runs.

    Averaging the seeds before the folds are compared takes the training's own
    noise (the seed, and a CPU's last bits) out of a fold's figure, so that two
    configurations compare pair by pair on the same tracks.
    """
    figures = {}
    for metric in sorted({key for run in runs for key in run if key in FOLD_METRICS or key.endswith("_pooling")}):
        if all(metric in run for run in runs):
            figures[metric] = round(statistics.fmean(run[metric] for run in runs), 6)
    return figures


def run_cell(task: Task, name: str, overrides: dict, args, base: dict) -> dict:
    """Cross-validate one configuration on one task; the row of the table with its folds.

    With several ``args.seeds`` each fold is trained once per ``train.seed`` and
    its figures are the mean over them (the runs are listed under ``seeds``).
    """
    params = task_params(task, base, overrides)
    if args.epochs:
        params["train"]["epochs"] = args.epochs
    seeds = args.seeds or [params["train"]["seed"]]
    audio, data_seconds = prepare_data(task, params, args.max_per_class, args.out, args.jobs)
    folds = []
    for fold in range(args.folds):
        fold_params = json.loads(json.dumps(params))
        fold_params["split"].update(folds=args.folds, fold=fold)
        features, feature_seconds = prepare_features(task, audio, fold_params, fold, args.out, args.jobs)
        runs, minutes = [], feature_seconds / 60
        for seed in seeds:
            fold_params["train"]["seed"] = seed
            metrics, model_seconds = train_and_evaluate(features, fold_params,
                                                        args.out / task.name / name / f"fold{fold}")
            test = metrics["test"]
            runs.append({"seed": seed, "track_macro_f1": test["track"]["macro_f1"],
                         "clip_macro_f1": test["clip"]["macro_f1"],
                         "track_balanced_accuracy": test["track"]["balanced_accuracy"],
                         "clip_balanced_accuracy": test["clip"]["balanced_accuracy"],
                         **{f"track_macro_f1_{way}_pooling": f1 for way, f1 in metrics["track_pooling"].items()}})
            minutes += model_seconds / 60
            print(f"{task.name} {name} fold {fold} seed {seed}: track macro-F1 {runs[-1]['track_macro_f1']:.3f}, "
                  f"clip macro-F1 {runs[-1]['clip_macro_f1']:.3f}", file=sys.stderr)
        folds.append({"fold": fold, **fold_figures(runs), "seeds": runs, "minutes": round(minutes, 2)})
    row = {"task": task.name, "config": name, "overrides": overrides, "seeds": seeds, "folds": folds,
           "data_minutes": round(data_seconds / 60, 2)}
    pooled = sorted({key for f in folds for key in f if key.endswith("_pooling")})
    for metric in (*FOLD_METRICS, *pooled):
        if not all(metric in f for f in folds):
            continue
        mean, sd = mean_sd([f[metric] for f in folds])
        row[metric] = {"mean": round(mean, 6), "sd": None if math.isnan(sd) else round(sd, 6)}
    if len(seeds) > 1:  # the training's own noise: sd over the seeds within a fold, averaged over the folds
        row["clip_macro_f1_seed_sd"] = round(statistics.fmean(
            statistics.stdev(run["clip_macro_f1"] for run in f["seeds"]) for f in folds), 6)
    row["minutes"] = round(row["data_minutes"] + sum(f["minutes"] for f in folds), 2)
    return row


def paired(rows: list[dict]) -> list[dict]:
    """Each row against the first row of its task, fold by fold (the folds hold the same tracks).

    For track and clip macro-F1: the mean +- sample sd over folds of the
    difference, and in how many folds it is above and below zero.
    """
    first, comparisons = {}, []
    for row in rows:
        reference = first.setdefault(row["task"], row)
        if reference is row:
            continue
        comparison = {"task": row["task"], "config": row["config"], "against": reference["config"]}
        for metric in ("track_macro_f1", "clip_macro_f1"):
            differences = [mine[metric] - theirs[metric] for mine, theirs in zip(row["folds"], reference["folds"])]
            mean, sd = mean_sd(differences)
            comparison[metric] = {"mean": round(mean, 6), "sd": None if math.isnan(sd) else round(sd, 6),
                                  "better": sum(d > 0 for d in differences),
                                  "worse": sum(d < 0 for d in differences)}
        comparisons.append(comparison)
    return comparisons


def format_table(rows: list[dict], folds: int, comparisons: list[dict]) -> str:
    """The printed table of ``rows``, then the seed noise and ``comparisons`` (:func:`paired`) if any."""
    def cell(value: dict, sign: str = "") -> str:
        sd = "-" if value["sd"] is None else f"{value['sd']:.3f}"
        return f"{value['mean']:{sign}.3f} +- {sd}"

    seeds = max(len(row["seeds"]) for row in rows)
    header = (f"{'task':<14} {'config':<12} {'track macro-F1':>16} {'clip macro-F1':>16} "
              f"{'track, log-mean pooling':>24} {'minutes':>8}")
    each = f"; each fold the mean of {seeds} training seeds" if seeds > 1 else ""
    lines = [f"{folds}-fold cross-validation by track; mean +- sample sd over folds{each}; minutes: download, "
             f"render and every fold", header, "-" * len(header)]
    for row in rows:
        log_mean = row.get("track_macro_f1_log_mean_pooling")
        lines.append(f"{row['task']:<14} {row['config']:<12} {cell(row['track_macro_f1']):>16} "
                     f"{cell(row['clip_macro_f1']):>16} {cell(log_mean) if log_mean else '-':>24} "
                     f"{row['minutes']:>8.1f}")
    noise = [row for row in rows if "clip_macro_f1_seed_sd" in row]
    if noise:
        lines += ["", "clip macro-F1 sd between the seeds of one fold (the training's own noise), mean over folds:"]
        lines += [f"{row['task']:<14} {row['config']:<12} {row['clip_macro_f1_seed_sd']:.3f}" for row in noise]
    if comparisons:
        lines += ["", "fold by fold against the task's first configuration: mean +- sd of the difference "
                      "(folds better / worse)"]
        for comparison in comparisons:
            parts = [f"{level} {cell(comparison[f'{level}_macro_f1'], '+')} "
                     f"({comparison[f'{level}_macro_f1']['better']}/{comparison[f'{level}_macro_f1']['worse']})"
                     for level in ("track", "clip")]
            lines.append(f"{comparison['task']:<14} {comparison['config']:<12} vs {comparison['against']:<12} "
                         + ", ".join(parts))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--configs", nargs="+", default=["default"],
                        help="built-in names or name:section.key=value,...")
    parser.add_argument("--folds", type=int, default=5, help="k of the k-fold cross-validation (>= 2)")
    parser.add_argument("--max-per-class", type=int, default=0,
                        help="cap every class of every task at this many works (0: the task's own counts)")
    parser.add_argument("--epochs", type=int, default=0, help="train.epochs for every run (0: as configured)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[],
                        help="train each fold once per train.seed given; a fold's figure is their mean "
                             "(default: the params' train.seed, once)")
    parser.add_argument("--params", type=Path, default=PROJECT / "params.yaml", help="the base params")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "runs" / "composer_quality")
    parser.add_argument("--jobs", type=int, default=0, help="worker processes of the stages (0: one per core)")
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    if args.max_per_class < 0 or args.epochs < 0:
        parser.error("--max-per-class and --epochs must be >= 0")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error("--seeds: a seed is given twice")
    configs = [parse_config(text) for text in args.configs]
    if len({name for name, _ in configs}) != len(configs):
        parser.error("--configs: two configurations have the same name")
    args.out = args.out.resolve()
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file, not a folder")
    try:
        base = read_params(args.params)
    except ParamsError as error:
        parser.error(f"--params: {error}")
    for task in args.tasks:  # a misspelt key stops the run now, not after the configurations before it
        for name, overrides in configs:
            group = task_params(TASKS[task], base, overrides)["split"]["group"]
            if group != "track":
                parser.error(f"--configs {name}: split.group {group}: the suite lays each task out one file a "
                             "track, with no folders, so every track would be a group of its own; "
                             "benchmarks/split_by_work.py measures the split by work on the string quartets")
    args.out.mkdir(parents=True, exist_ok=True)

    try:
        rows = [run_cell(TASKS[task], name, overrides, args, base)
                for task in args.tasks for name, overrides in configs]
    except KeyboardInterrupt:
        print("composer_quality: interrupted; the same command resumes, keeping every step that finished",
              file=sys.stderr)
        return 130
    comparisons = paired(rows)
    table = format_table(rows, args.folds, comparisons)
    print(table)
    summary = {"args": {"tasks": args.tasks, "configs": args.configs, "folds": args.folds,
                        "max_per_class": args.max_per_class, "epochs": args.epochs, "seeds": args.seeds},
               "rows": rows, "paired": comparisons}
    (args.out / "composer_quality.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(f"composer_quality: {len(rows)} rows -> {args.out / 'composer_quality.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cross-validation over DVC experiments: one experiment per test fold, summed up per set of params.

Each fold of a k-fold cross-validation is an ordinary experiment
(``dvc exp run --queue -S split.folds=5 -S 'split.fold=range(5)'``).  This
module reads what ``dvc exp show --json`` prints into :class:`Run` records
(:func:`runs_from_exp_show`), groups the runs that differ only in
``split.fold`` (:func:`group_runs`) and gives per fold, and as mean and
sample standard deviation over the folds, the test scores a user compares
configurations by (:func:`summarize`, :func:`format_summaries`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

from musicid.io import safe_name

# Test scores of metrics/metrics.json (the evaluate stage), as "split.level.score".
SCORES = ("test.track.macro_f1", "test.clip.macro_f1", "test.track.balanced_accuracy",
          "test.clip.balanced_accuracy")
METRICS_FILE = "metrics/metrics.json"
PARAMS_FILE = "params.yaml"
RAW_DATA = "data/raw"  # the download stage's output: the collection as the stages after it read it
FOLD, FOLDS = "split.fold", "split.folds"
LABEL_PARAMS = ("split.holdout_classes",)  # class names that musicid.params.SplitParams reads as labels


@dataclass
class Run:
    """One experiment (or commit): its name, flattened params and flattened metrics.

    params: "section.key" -> value (keys of other params files are prefixed
    with "<file>:"); metrics: "split.level.score" -> float, empty when the
    experiment has no scores (queued, running or failed).
    """

    name: str
    rev: str
    timestamp: str | None
    params: dict
    metrics: dict
    state: str | None = None  # the queue's word for an experiment without scores ("queued", "failed", ...)
    inputs: dict | None = None  # what it ran on besides its params (see :func:`run_inputs`); None: unknown


def _flatten(mapping: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and scalars are leaves."""
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _run(entry: dict, state: str | None = None) -> Run:
    """A Run from one revision of ``dvc exp show --json`` ({"rev", "name", "data": {...}, "error"})."""
    data = entry.get("data") or {}
    params = {}
    for path, content in sorted((data.get("params") or {}).items()):
        prefix = "" if path == PARAMS_FILE else f"{path}:"
        params.update(_flatten((content or {}).get("data") or {}, prefix))
    metrics_data = ((data.get("metrics") or {}).get(METRICS_FILE) or {}).get("data") or {}
    metrics = {key: value for key, value in _flatten(metrics_data).items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}
    if entry.get("error") and state is None:
        state = "failed"
    rev = entry.get("rev") or ""
    return Run(name=entry.get("name") or rev[:7], rev=rev, timestamp=data.get("timestamp"), params=params,
               metrics=metrics, state=state, inputs=run_inputs(data.get("deps")))


def run_inputs(deps: dict | None) -> dict | None:
    """What a run read besides its params, from its ``deps`` in ``dvc exp show --json``: the collection
    (``data/raw``'s hash) and the code (one digest of the hashes of every ``.py`` file the stages depend on).
    Folds of one cross-validation share both, whatever their fold; runs before and after a file was added to
    the collection do not, and must not be averaged together (:func:`group_runs`); other code is only warned
    of (:func:`summarize`), since a comment edited changes its hashes too. None when ``deps`` says nothing of
    them (an older DVC)."""
    if not isinstance(deps, dict):
        return None
    hashes = {path: (entry or {}).get("hash") for path, entry in deps.items() if isinstance(entry, dict)}
    code = sorted((path, value) for path, value in hashes.items() if path.endswith(".py"))
    inputs = {}
    if hashes.get(RAW_DATA):
        inputs[RAW_DATA] = hashes[RAW_DATA]
    if code:
        inputs["code"] = hashlib.sha256(json.dumps(code).encode()).hexdigest()[:12]
    return inputs or None


def runs_from_exp_show(document: list) -> list[Run]:
    """Every commit and experiment in the output of ``dvc exp show --json``, newest experiment first.

    The workspace entry is left out: ``dvc exp run`` saves every run as an
    experiment, so the workspace only repeats one of them (or holds an
    unsaved run).
    """
    if not isinstance(document, list):
        raise ValueError(f"dvc exp show --json printed {type(document).__name__}, not a list of revisions")
    runs = []
    for baseline in document:
        if not isinstance(baseline, dict) or "rev" not in baseline:
            raise ValueError(f"dvc exp show --json printed an entry without a rev: {str(baseline)[:80]}")
        if baseline["rev"] != "workspace":
            runs.append(_run(baseline))
        for experiment in baseline.get("experiments") or []:
            executor = experiment.get("executor") or {}
            state = executor.get("state")
            for revision in experiment.get("revs") or []:
                runs.append(_run(revision, None if state in (None, "success") else state))
    return runs


@dataclass
class Group:
    """Runs with the same params but for ``split.fold``: the folds of one cross-validation."""

    params: dict  # every param but split.fold
    folds: int  # k of split.folds
    by_fold: dict[int, list[Run]]  # fold -> its scored runs, newest first
    inputs: dict | None = None  # the collection and code its runs read (:func:`run_inputs`)


def canonical(value):
    """A param's value with whole floats written as ints: `-S clip.clip_seconds=4` and params.yaml's 4.0 are
    the same configuration (the stages read both as the same number)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [canonical(item) for item in value]
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items()}
    return value


def canonical_param(key: str, value):
    """:func:`canonical`, and for a param naming classes as split reads them the labels download gives them
    (``split.holdout_classes: ['Élan Drones']`` and ``['Élan_Drones']`` hold out the same class)."""
    if key in LABEL_PARAMS and isinstance(value, list) and all(isinstance(name, str) for name in value):
        return [safe_name(name) for name in value]
    return canonical(value)


def group_runs(runs: list[Run]) -> tuple[list[Group], list[Run]]:
    """(groups of the scored cross-validation runs, runs left out).

    A group's runs have the same params but for ``split.fold`` and read the same collection (``data/raw``
    of :func:`run_inputs`); folds run on different code are one group, which :func:`summarize` warns of (a
    comment edited between two folds changes the code's hashes, not what they compute).

    Left out: runs without ``split.folds >= 2`` (not a fold of a
    cross-validation), runs without every score of :data:`SCORES`, and runs
    the queue did not finish (queued, running, failed: ``dvc exp show``
    gives a failed one the scores the workspace had when it was queued).
    Groups are in the order of their newest run; folds within a group by
    number, each fold's runs newest first.
    """
    groups: dict[str, Group] = {}
    left_out = []
    for run in runs:
        folds = run.params.get(FOLDS)
        if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2 or FOLD not in run.params \
                or not _scored(run):
            left_out.append(run)
            continue
        params = {key: canonical_param(key, value) for key, value in sorted(run.params.items()) if key != FOLD}
        collection = {RAW_DATA: run.inputs[RAW_DATA]} if run.inputs and RAW_DATA in run.inputs else None
        key = json.dumps([params, collection], sort_keys=True)
        group = groups.setdefault(key, Group(params=params, folds=folds, by_fold={}, inputs=collection))
        group.by_fold.setdefault(run.params[FOLD], []).append(run)
    for group in groups.values():
        group.by_fold = {fold: sorted(group.by_fold[fold], key=lambda r: r.timestamp or "", reverse=True)
                         for fold in sorted(group.by_fold)}
    return list(groups.values()), left_out


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1; None for one value)."""
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarize(group: Group) -> dict:
    """Per fold, mean and sd of :data:`SCORES` for one group, and what is missing or repeated.

    A fold run more than once is scored by its newest run (the pipeline is
    deterministic, so a rerun with the same params and code gives the same
    scores) and named under "duplicates".
    """
    used = {fold: runs[0] for fold, runs in group.by_fold.items()}
    warnings = []
    missing = [fold for fold in range(group.folds) if fold not in used]
    if missing:
        warnings.append(f"folds {missing} of {group.folds} have no scored run: the mean is over "
                        f"{len(used)} fold{'s' if len(used) != 1 else ''}")
    duplicates = {fold: [run.name for run in runs] for fold, runs in group.by_fold.items() if len(runs) > 1}
    for fold, names in duplicates.items():
        warnings.append(f"fold {fold} was run {len(names)} times ({', '.join(names)}): the newest, "
                        f"{names[0]}, is used")
    codes = {fold: (run.inputs or {}).get("code") for fold, run in used.items()}
    if len(set(codes.values())) > 1:
        by_code: dict = {}
        for fold, code in codes.items():
            by_code.setdefault(code, []).append(fold)
        parts = "; ".join(f"folds {folds} with code {str(code)[:8]}" for code, folds in by_code.items())
        warnings.append(f"the folds ran on different code ({parts}): if it changed what they compute, run the "
                        f"folds again")
    stats = {score: mean_sd([used[fold].metrics[score] for fold in used]) for score in SCORES}
    return {
        "params": group.params,
        "inputs": group.inputs,
        "folds": group.folds,
        "folds_present": sorted(used),
        "missing_folds": missing,
        "duplicates": {str(fold): names for fold, names in duplicates.items()},
        "per_fold": [{"fold": fold, "experiment": run.name, "rev": run.rev,
                      **{score: run.metrics[score] for score in SCORES}} for fold, run in used.items()],
        "mean": {score: stats[score][0] for score in SCORES},
        "sd": {score: stats[score][1] for score in SCORES},
        "warnings": warnings,
    }


def differing_params(groups: list[Group]) -> list[str]:
    """The params whose value is not the same in every group (what tells the groups apart), sorted."""
    keys = sorted({key for group in groups for key in group.params} - {FOLDS})  # split.folds is always shown
    return [key for key in keys
            if len({json.dumps(group.params.get(key), sort_keys=True) for group in groups}) > 1]


def differing_inputs(groups: list[Group]) -> list[str]:
    """``["data/raw"]`` when the groups read different collections, else []."""
    return [RAW_DATA] if len({(group.inputs or {}).get(RAW_DATA) for group in groups}) > 1 else []


def format_summaries(summaries: list[dict], shown_params: list[str], shown_inputs: list[str] = ()) -> str:
    """The table a person reads: per group its params (and the inputs that tell groups apart), one line per
    fold, mean +- sd, warnings."""
    header = f"{'':24s}" + "".join(f"{score.removeprefix('test.'):>26s}" for score in SCORES)
    lines = []
    for summary in summaries:
        params = summary["params"]
        described = ", ".join(f"{key}={json.dumps(params.get(key))}" for key in [FOLDS, *shown_params])
        inputs = summary.get("inputs") or {}
        described += "".join(f", {key} {str(inputs.get(key) or 'unknown')[:8]}" for key in shown_inputs)
        lines.append(f"{described}: {len(summary['folds_present'])} of {summary['folds']} folds")
        lines.append(header)
        for row in summary["per_fold"]:
            label = f"  fold {row['fold']} {row['experiment']}"
            lines.append(f"{label[:24]:24s}" + "".join(f"{row[score]:>26.4f}" for score in SCORES))
        cells = []
        for score in SCORES:
            sd = summary["sd"][score]
            cells.append(f"{summary['mean'][score]:.4f} +- {sd:.4f}" if sd is not None
                         else f"{summary['mean'][score]:.4f} (one fold)")
        lines.append(f"{'  mean +- sd':24s}" + "".join(f"{cell:>26s}" for cell in cells))
        lines.extend(f"  warning: {warning}" for warning in summary["warnings"])
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def select_runs(runs: list[Run], wanted: list[str]) -> tuple[list[Run], list[str]]:
    """(the runs named in ``wanted`` by experiment name or rev prefix, the names that matched none).

    Empty ``wanted``: every run.
    """
    if not wanted:
        return runs, []
    chosen = [run for run in runs if any(run.name == w or (len(w) >= 4 and run.rev.startswith(w))
                                         for w in wanted)]
    unmatched = [w for w in wanted if not any(run.name == w or (len(w) >= 4 and run.rev.startswith(w))
                                              for run in runs)]
    return chosen, unmatched


def unscored_folds(runs: list[Run]) -> list[Run]:
    """Runs of a cross-validation (``split.folds >= 2``) that have no scores of their own: queued, running or
    failed (a failed run shows the scores the workspace had when it was queued, which are not its own)."""
    return [run for run in runs if isinstance(run.params.get(FOLDS), int) and run.params[FOLDS] >= 2
            and not _scored(run)]


def _scored(run: Run) -> bool:
    """Whether ``run`` has scores of its own: finished (no queue state) with every score of :data:`SCORES`."""
    return run.state is None and all(key in run.metrics for key in SCORES)

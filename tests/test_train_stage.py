"""The train stage on tiny features tables the tests write themselves: refusals, determinism, interrupts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from musicid.h5 import RowWriter, feature_columns
from tests.conftest import PROJECT_ROOT, load_stage

TRAIN = load_stage("train")


def write_features(path, splits: list[str], bands: int = 8, frames: int = 16, drop: str | None = None) -> None:
    """A features table as featurize writes it: one row per clip, two classes (the class's bands lit up).

    ``drop`` leaves out one column, to test the refusal of an incomplete table.
    """
    rng = np.random.default_rng(0)
    n = len(splits)
    labels = (np.arange(n, dtype=np.int16) // 2) % 2  # two clips per track, one class per track
    features = rng.standard_normal((n, bands, frames)).astype(np.float32)
    features[labels == 1, :2] += 3.0
    columns = feature_columns(bands, frames)
    values = dict(features=features, label=labels, known=np.ones(n, bool),
                  track=np.array([f"t{i // 2:03d}" for i in range(n)], dtype=object),
                  offset_s=np.zeros(n), split=np.array(splits, dtype=object))
    if drop:
        del columns[drop], values[drop]
    with RowWriter(path, columns) as writer:
        writer.append(**values)
        write_table_attrs(writer, bands)
        writer.attrs["params"] = json.dumps({})


def write_table_attrs(writer, bands: int) -> None:
    """The attributes featurize writes for two known classes "a" and "b" (features normalised already)."""
    writer.attrs["label_names"] = ["a", "b"]
    writer.attrs["n_known"] = 2
    writer.attrs["holdout_classes"] = []
    writer.attrs["sample_rate"] = 16000
    writer.attrs["band_mean"] = np.zeros(bands, np.float32)
    writer.attrs["band_std"] = np.ones(bands, np.float32)


def splits_of(train: int, val: int) -> list[str]:
    """Two clips per track; the tracks of each split alternate between the two classes."""
    return ["train"] * (2 * train) + ["val"] * (2 * val)


@pytest.fixture
def params(tmp_path):
    values = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    values["train"].update({"epochs": 2, "channels": [4], "embedding_dim": 4, "batch_size": 4,
                            "freq_mask": 2, "time_mask": 2, "masks": 1})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def arguments(tmp_path, params) -> list[str]:
    return ["--params", str(params), "--features", str(tmp_path / "features.h5"),
            "--model", str(tmp_path / "model.pt"), "--live", str(tmp_path / "live")]


def test_an_empty_training_split_is_refused(tmp_path, params, capsys):
    write_features(tmp_path / "features.h5", ["val", "test", "test", "val"])
    assert TRAIN.main(arguments(tmp_path, params)) == 1
    assert "the training split is empty" in capsys.readouterr().err
    assert not (tmp_path / "model.pt").exists()


def test_an_empty_validation_split_is_refused_naming_split_val(tmp_path, params, capsys):
    write_features(tmp_path / "features.h5", ["train"] * 8 + ["test"] * 4)
    assert TRAIN.main(arguments(tmp_path, params)) == 1
    err = capsys.readouterr().err
    assert err == (f"train: {tmp_path / 'features.h5'}: the validation split is empty, so no epoch can be "
                   "chosen on it: set split.val > 0 in params.yaml (each class needs a validation track)\n")
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "live").exists()


def test_a_missing_features_table_is_explained(tmp_path, params, capsys):
    assert TRAIN.main(arguments(tmp_path, params)) == 1
    assert capsys.readouterr().err == (f"train: {tmp_path / 'features.h5'}: no such features table; "
                                       "make it with `dvc repro featurize`\n")


def test_a_features_table_without_a_column_is_explained(tmp_path, params, capsys):
    write_features(tmp_path / "features.h5", splits_of(4, 2), drop="split")
    assert TRAIN.main(arguments(tmp_path, params)) == 1
    assert capsys.readouterr().err == (f"train: {tmp_path / 'features.h5'}: lacks column 'split'; "
                                       "make it with `dvc repro featurize`\n")


def test_a_file_that_is_not_hdf5_is_explained(tmp_path, params, capsys):
    (tmp_path / "features.h5").write_bytes(b"not hdf5 at all")
    assert TRAIN.main(arguments(tmp_path, params)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"train: {tmp_path / 'features.h5'}: not a readable HDF5 file (")
    assert err.endswith("; make it with `dvc repro featurize`\n") and err.count("\n") == 1


def test_a_repository_without_commits_is_explained(tmp_path, params, capsys, monkeypatch):
    write_features(tmp_path / "features.h5", splits_of(4, 2))
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # dvclive reads the current commit
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    assert TRAIN.main(arguments(tmp_path, params)) == 1
    assert "commit the project" in capsys.readouterr().err
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "live").exists()


@pytest.mark.parametrize("keep", ["best", "last"])
def test_one_line_per_epoch_and_curves_counted_like_the_log(tmp_path, params, capsys, monkeypatch, keep):
    values = yaml.safe_load(params.read_text())
    values["train"]["keep"] = keep
    params.write_text(yaml.safe_dump(values))
    write_features(tmp_path / "features.h5", splits_of(8, 4))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    assert TRAIN.main(arguments(tmp_path, params)) == 0
    captured = capsys.readouterr()
    epoch_lines = [line for line in captured.err.splitlines() if line.startswith("train: epoch ")]
    assert [line.split(":")[1] for line in epoch_lines] == [" epoch 1/2", " epoch 2/2"]
    assert all(", val macro-F1 " in line for line in epoch_lines)
    live = tmp_path / "live"
    assert (live / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (live / "plots" / "metrics" / "val_macro_f1.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["step", "val_macro_f1"]
    assert [row.split("\t")[0] for row in rows[1:]] == ["1", "2"]
    kept = int(captured.out.split(f"{keep} epoch ")[1].split()[0])
    f1 = {int(row.split("\t")[0]): float(row.split("\t")[1]) for row in rows[1:]}
    if keep == "best":
        assert f1[kept] == max(f1.values())
    else:
        assert kept == 2
    import torch
    assert torch.load(tmp_path / "model.pt", weights_only=True)["kept_epoch"] == kept


def test_an_interrupt_leaves_the_previous_model_and_curves(tmp_path, params, monkeypatch):
    write_features(tmp_path / "features.h5", splits_of(8, 4))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "live" / "plots").mkdir(parents=True)
    (tmp_path / "live" / "metrics.json").write_text('{"old": 1}\n')
    (tmp_path / "live" / "plots" / "old.tsv").write_text("step\told\n1\t0.5\n")
    (tmp_path / "model.pt").write_bytes(b"the previous model")

    def interrupt_at_epoch_2(epochs):
        def on_epoch(entry):
            if entry.epoch == 2:  # dvclive has written epoch 1's and 2's values by now
                raise KeyboardInterrupt
        return on_epoch

    monkeypatch.setattr(TRAIN, "epoch_printer", interrupt_at_epoch_2)
    assert TRAIN.main(arguments(tmp_path, params)) == 130  # Ctrl-C: one line, exit 130
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "features.h5", "live", "live/metrics.json", "live/plots", "live/plots/old.tsv", "model.pt",
        "params.yaml"]
    assert (tmp_path / "live" / "metrics.json").read_text() == '{"old": 1}\n'
    assert (tmp_path / "model.pt").read_bytes() == b"the previous model"


@pytest.mark.parametrize("roll", [False, True])
def test_training_reads_no_memory_that_no_operation_wrote(tmp_path, params, monkeypatch, roll):
    """Training turns off deterministic mode's NaN filling of new tensors, for speed, and keeps the
    deterministic kernels. Were any step to read memory nothing wrote, the NaNs the filling leaves there
    would change the weights: the checkpoint must be the same bytes with the filling on."""
    import torch
    import torch.utils.deterministic

    from musicid import training
    from tests.test_symbolic_model import write_symbolic_features  # here: that module imports this one
    training.seed_everything(0)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory is False
    values = yaml.safe_load(params.read_text())
    values["train"].update({"channels": [8, 16], "embedding_dim": 8, "batch_size": 8,
                            "roll_channels": [4, 8], "roll_pool": 2})
    params.write_text(yaml.safe_dump(values))
    write_symbolic_features(tmp_path / "features.h5", splits_of(16, 4), bands=32, frames=64, roll=roll)
    seed_everything = training.seed_everything
    checkpoints = []
    for fill in (False, True):
        def seeded(seed: int, fill: bool = fill) -> None:
            seed_everything(seed)
            torch.utils.deterministic.fill_uninitialized_memory = fill

        monkeypatch.setattr(training, "seed_everything", seeded)
        model = tmp_path / f"model-{fill}.pt"
        assert TRAIN.main(["--params", str(params), "--features", str(tmp_path / "features.h5"),
                           "--model", str(model), "--live", str(tmp_path / f"live-{fill}")]) == 0
        checkpoints.append(model.read_bytes())
    torch.utils.deterministic.fill_uninitialized_memory = False
    assert checkpoints[0] == checkpoints[1]


def test_the_checkpoint_is_the_same_bytes_with_one_or_two_threads(tmp_path, params):
    """Convolutions, the symbolic branch's layer norms, their gradients and the novelty statistics must
    not depend on the thread count (an audio-and-symbolic model with the piano roll, the default, has every
    layer an audio-only one has; batches of 8 rows give each of the weight gradient's 4 parts 2 rows)."""
    from tests.test_symbolic_model import write_symbolic_features  # here: that module imports this one
    values = yaml.safe_load(params.read_text())
    values["train"].update({"channels": [8, 16], "embedding_dim": 8, "batch_size": 8})
    params.write_text(yaml.safe_dump(values))
    write_symbolic_features(tmp_path / "features.h5", splits_of(16, 4), bands=32, frames=64, roll=True)
    checkpoints = []
    for threads in ("1", "2"):
        model = tmp_path / f"model{threads}.pt"
        environment = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "MUSICID_PROGRESS": "0",
                       "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                       "OPENBLAS_NUM_THREADS": threads}
        script = ("import sys, torch; sys.argv[0] = 'train';"
                  f" assert torch.get_num_threads() == {threads};"
                  " from tests.conftest import load_stage;"
                  " sys.exit(load_stage('train').main(sys.argv[1:]))")
        subprocess.run([sys.executable, "-c", script, "--params", str(params),
                        "--features", str(tmp_path / "features.h5"), "--model", str(model),
                        "--live", str(tmp_path / f"live{threads}")],
                       cwd=tmp_path, env=environment, check=True, capture_output=True)
        checkpoints.append(model.read_bytes())
    assert checkpoints[0] == checkpoints[1]
    assert (tmp_path / "live1" / "plots" / "metrics" / "train_loss.tsv").read_text() == \
        (tmp_path / "live2" / "plots" / "metrics" / "train_loss.tsv").read_text()


def test_each_epochs_line_shows_on_a_terminal_too(monkeypatch, capsys):
    """On a terminal the bar alone showed, with neither loss nor validation score: the line now goes above it."""
    import sys

    from musicid.training import EpochLog

    monkeypatch.setenv("MUSICID_PROGRESS", "1")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    TRAIN.epoch_printer(12)(EpochLog(3, 0.5123, 0.8, 0.75, 0.7012, 1e-3))
    assert capsys.readouterr().err == "train: epoch 3/12: loss 0.5123, val accuracy 0.750, val macro-F1 0.701\n"

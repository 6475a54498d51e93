"""Per-file work on a real Dask cluster (LocalCluster, 2 worker processes on 127.0.0.1) against the local pool."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import mido
import pytest
import yaml

from tests import cluster_faults
from tests.conftest import PROJECT_ROOT, load_stage, sine, write_midi, write_wav

distributed = pytest.importorskip("distributed")

RENDER = load_stage("render")
FAULTS = str(Path(cluster_faults.__file__).resolve())


def start_cluster(**kwargs):
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=None, **kwargs)


@pytest.fixture(scope="module")
def cluster():
    with start_cluster() as running:
        yield running


@pytest.fixture
def faulty_cluster(tmp_path, monkeypatch):
    """A cluster whose workers die on the test's marked files (tests/cluster_faults.py)."""
    monkeypatch.setenv(cluster_faults.MARKER_ENV, str(tmp_path / "crashed-once"))
    with start_cluster(preload=[FAULTS]) as running:
        yield running


def marked_midi(path: Path, marker: bytes, pitch: int = 62) -> Path:
    """A playable MIDI file whose bytes hold ``marker`` (in a text event)."""
    write_midi(path, [(pitch, 0.0, 1.0), (pitch + 4, 1.0, 2.0)])
    midi = mido.MidiFile(str(path))
    midi.tracks[0].insert(0, mido.MetaMessage("text", text=marker.decode()))
    midi.save(str(path))
    return path


@pytest.fixture
def raw(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    monkeypatch.delenv("MUSICID_SCHEDULER", raising=False)
    root = tmp_path / "raw"
    write_midi(root / "a" / "one.mid", [(60, 0.0, 1.0), (64, 1.0, 2.0)])
    write_midi(root / "a" / "two.mid", [(67, 0.0, 0.5)], program=40)
    write_midi(root / "b" / "three.mid", [(48, 0.0, 1.5), (55, 0.0, 1.5)], program=19)
    write_midi(root / "b" / "empty.mid", [])
    write_wav(root / "b" / "tone.wav", sine(330, 1.0, 44100), 44100)
    return root


def write_manifest(root: Path) -> None:
    paths = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")
    files = [{"path": p, "label": p.split("/")[0]} for p in paths]
    (root / "manifest.json").write_text(json.dumps({"files": files, "skipped": [], "unlabeled": []}))


def render(tmp_path, raw, out_name, *extra):
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return RENDER.main(["--params", str(tmp_path / "params.yaml"), "--raw", str(raw),
                        "--out", str(tmp_path / out_name), *extra])


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_render_on_a_cluster_gives_the_bytes_of_the_local_pool(tmp_path, raw, cluster, capsys):
    write_manifest(raw)
    assert render(tmp_path, raw, "local", "--jobs", "2") == 0
    assert render(tmp_path, raw, "cluster", "--scheduler", cluster.scheduler_address) == 0
    local, remote = files_of(tmp_path / "local"), files_of(tmp_path / "cluster")
    assert len(local) == 5 and local.keys() == remote.keys()  # 4 WAVs and the report
    assert [name for name in local if local[name] != remote[name]] == []
    out = capsys.readouterr().out
    assert "2 local workers" in out
    assert f"Dask cluster {cluster.scheduler_address}, 2 worker threads" in out


def test_the_scheduler_can_come_from_the_environment(tmp_path, raw, cluster, monkeypatch, capsys):
    write_manifest(raw)
    monkeypatch.setenv("MUSICID_SCHEDULER", cluster.scheduler_address)
    assert render(tmp_path, raw, "audio") == 0
    assert f"Dask cluster {cluster.scheduler_address}" in capsys.readouterr().out


def test_a_file_that_kills_every_worker_is_rejected_and_the_run_goes_on(tmp_path, raw, faulty_cluster, capsys):
    marked_midi(raw / "a" / "poison.mid", cluster_faults.POISON)
    write_manifest(raw)
    assert render(tmp_path, raw, "audio", "--scheduler", faulty_cluster.scheduler_address) == 0
    report = json.loads((tmp_path / "audio" / "report.json").read_text())
    status = {r["source"]: (r["status"], r["reason"]) for r in report["files"]}
    assert status == {"a/one.mid": ("rendered", None), "a/poison.mid": ("rejected", "worker_crash"),
                      "a/two.mid": ("rendered", None), "b/empty.mid": ("rejected", "no_notes"),
                      "b/three.mid": ("rendered", None), "b/tone.wav": ("rendered", None)}
    assert not (tmp_path / "audio" / "a" / "poison.wav").exists()
    assert "rejected (no_notes 1, worker_crash 1)" in capsys.readouterr().out


def test_a_worker_lost_in_the_middle_of_a_file_costs_a_retry(tmp_path, raw, faulty_cluster, capsys):
    marked_midi(raw / "a" / "unlucky.mid", cluster_faults.CRASH_ONCE)
    write_manifest(raw)
    assert render(tmp_path, raw, "cluster", "--scheduler", faulty_cluster.scheduler_address) == 0
    assert (tmp_path / "crashed-once").exists()  # a worker did die on it
    assert render(tmp_path, raw, "local", "--jobs", "2") == 0  # (the local pool has no fault preload)
    local, remote = files_of(tmp_path / "local"), files_of(tmp_path / "cluster")
    assert "a/unlucky.wav" in local
    assert local.keys() == remote.keys() and [name for name in local if local[name] != remote[name]] == []


def test_a_lost_scheduler_stops_the_stage_with_nothing_written(tmp_path, raw, faulty_cluster, capsys):
    marked_midi(raw / "a" / "slow.mid", cluster_faults.SLOW)
    write_manifest(raw)
    timer = threading.Timer(4.0, faulty_cluster.close)
    timer.start()
    try:
        code = render(tmp_path, raw, "audio", "--scheduler", faulty_cluster.scheduler_address)
    finally:
        timer.cancel()
    assert code == 1
    err = capsys.readouterr().err
    assert f"lost the Dask scheduler at {faulty_cluster.scheduler_address}" in err
    assert "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".audio", "audio"))] == []


def test_an_unreachable_scheduler_stops_the_stage_at_once(tmp_path, raw, capsys):
    write_manifest(raw)
    assert render(tmp_path, raw, "audio", "--scheduler", "tcp://127.0.0.1:9") == 1
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err
    assert not (tmp_path / "audio").exists()

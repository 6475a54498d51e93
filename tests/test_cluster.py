"""Per-file work on a real Dask cluster (LocalCluster, 2 worker processes on 127.0.0.1) against the local pool."""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from pathlib import Path

import mido
import pytest
import yaml

from musicid import cluster as cluster_module
from tests import cluster_faults
from tests.conftest import PROJECT_ROOT, load_stage, sine, write_midi, write_wav
from tests.test_render_stage import raw  # noqa: F401 - a fixture used by name: good, empty and audio sources

distributed = pytest.importorskip("distributed")
import dask  # noqa: E402 - after the skip: installed with distributed

RENDER = load_stage("render")
FAULTS = str(Path(cluster_faults.__file__).resolve())


def start_cluster(**kwargs):
    # A worker holds a task queued behind the running one, and a worker's death counts against both
    # (musicid.cluster.ROUNDS keeps the innocent one).
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=None, **kwargs)


@pytest.fixture(scope="module")
def cluster():
    with start_cluster() as running:
        yield running


@pytest.fixture
def faulty_cluster(tmp_path_factory):
    """A cluster of its own whose workers die on the tests' marked files and score (tests/cluster_faults.py).

    Its workers read the environment they start with, so it is set first.  A
    task is declared killed after 2 worker deaths instead of Dask's 4: fewer
    restarts per test, and still an innocent task can die with a poisoned one.
    A cluster per test: after many deaths a nanny can fail to restart its
    worker (distributed 2026.8), which would leave the next test no workers.
    """
    settings = {cluster_faults.MARKER_ENV: str(tmp_path_factory.mktemp("crashed-once")),
                cluster_faults.POISON_SCORE_ENV: "bach/bwv424.mxl"}
    previous = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
                start_cluster(preload=[FAULTS]) as running:
            yield running
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def doomed_cluster():
    """A cluster of its own, for a test that takes its scheduler away."""
    with start_cluster(preload=[FAULTS]) as running:
        yield running


def marked_midi(path: Path, marker: bytes, pitch: int = 62) -> Path:
    """A playable MIDI file whose bytes hold ``marker`` (in a text event)."""
    write_midi(path, [(pitch, 0.0, 1.0), (pitch + 4, 1.0, 2.0)])
    midi = mido.MidiFile(str(path))
    midi.tracks[0].insert(0, mido.MetaMessage("text", text=marker.decode()))
    midi.save(str(path))
    return path


@pytest.fixture(autouse=True)
def no_scheduler_from_the_environment(monkeypatch):
    monkeypatch.delenv("MUSICID_SCHEDULER", raising=False)


@pytest.fixture(autouse=True)
def no_render_cache(monkeypatch):
    """Every render here runs on its workers: none is served from the render cache of an earlier run."""
    monkeypatch.setenv("MUSICID_NO_CACHE", "1")


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


@pytest.fixture
def faulty_local_workers(tmp_path_factory, monkeypatch):
    """The local pool's worker processes die on the marked files as the faulty cluster's do.

    Spawned workers are fresh interpreters: a ``sitecustomize`` on their
    PYTHONPATH puts the same hooks (tests/cluster_faults.py) into each.
    """
    hooks = tmp_path_factory.mktemp("local-faults")
    (hooks / "sitecustomize.py").write_text(
        f"import sys\nsys.path.insert(0, {str(PROJECT_ROOT)!r})\n"
        "from tests import cluster_faults\ncluster_faults.dask_setup(None)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv(cluster_faults.MARKER_ENV, str(tmp_path_factory.mktemp("crashed-once-locally")))


def test_on_the_local_pool_a_dead_worker_costs_a_retry_and_a_poison_file_is_rejected(
        tmp_path, raw, faulty_local_workers, capsys):
    marked_midi(raw / "a" / "poison.mid", cluster_faults.POISON)
    unlucky = marked_midi(raw / "a" / "unlucky.mid", cluster_faults.CRASH_ONCE, pitch=65)
    write_manifest(raw)
    assert render(tmp_path, raw, "audio", "--jobs", "2") == 0
    assert cluster_faults.crash_marker(unlucky.read_bytes()).exists()  # a worker did die on it
    report = json.loads((tmp_path / "audio" / "report.json").read_text())
    status = {r["source"]: (r["status"], r["reason"]) for r in report["files"]}
    assert status == {"a/one.mid": ("rendered", None), "a/poison.mid": ("rejected", "worker_crash"),
                      "a/two.mid": ("rendered", None), "a/unlucky.mid": ("rendered", None),
                      "b/empty.mid": ("rejected", "no_notes"), "b/three.mid": ("rendered", None),
                      "b/tone.wav": ("rendered", None)}
    assert "rejected (no_notes 1, worker_crash 1)" in capsys.readouterr().out
    # The good files are the bytes of a run without the two marked files.
    (raw / "a" / "poison.mid").unlink()
    unlucky.unlink()
    write_manifest(raw)
    assert render(tmp_path, raw, "clean", "--jobs", "2") == 0
    crashed, clean = files_of(tmp_path / "audio"), files_of(tmp_path / "clean")
    assert [name for name in clean if name != "report.json" and crashed[name] != clean[name]] == []


def test_a_worker_lost_in_the_middle_of_a_file_costs_a_retry(tmp_path, raw, faulty_cluster, capsys):
    unlucky = marked_midi(raw / "a" / "unlucky.mid", cluster_faults.CRASH_ONCE)
    write_manifest(raw)
    assert render(tmp_path, raw, "cluster", "--scheduler", faulty_cluster.scheduler_address) == 0
    assert cluster_faults.crash_marker(unlucky.read_bytes()).exists()  # a worker did die on it
    assert render(tmp_path, raw, "local", "--jobs", "2") == 0  # (the local pool has no fault preload)
    local, remote = files_of(tmp_path / "local"), files_of(tmp_path / "cluster")
    assert "a/unlucky.wav" in local
    assert local.keys() == remote.keys() and [name for name in local if local[name] != remote[name]] == []


@pytest.mark.parametrize("loss", ["scheduler", "workers"])
def test_a_lost_scheduler_or_all_workers_stop_the_stage_with_nothing_written(tmp_path, raw, doomed_cluster, capsys,
                                                                           monkeypatch, loss):
    marked_midi(raw / "a" / "slow.mid", cluster_faults.SLOW)
    write_manifest(raw)
    address = doomed_cluster.scheduler_address
    if loss == "scheduler":
        action, message = doomed_cluster.close, f"lost the Dask scheduler at {address}"
    else:  # the workers go, the scheduler stays
        monkeypatch.setattr(cluster_module, "NO_WORKERS_S", 3.0)
        action = functools.partial(doomed_cluster.scale, 0)
        message = f"the Dask scheduler at {address} has had no workers for 3 s"
    # Taken away once the stage's work runs on the cluster (the slow file sleeps 30 s there), not after a fixed
    # time: on a loaded machine the stage may take longer than that to start.
    started, cancelled = threading.Event(), threading.Event()

    def take_away():
        deadline = time.monotonic() + 60
        while not cancelled.is_set() and time.monotonic() < deadline:
            if any(task.state == "processing" for task in list(doomed_cluster.scheduler.tasks.values())):
                started.set()
                time.sleep(0.5)
                action()
                return
            time.sleep(0.1)

    taker = threading.Thread(target=take_away, daemon=True)
    taker.start()
    try:
        code = render(tmp_path, raw, "audio", "--scheduler", address)
    finally:
        cancelled.set()
        taker.join(timeout=30)
    assert started.is_set()
    assert code == 1
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".audio", "audio"))] == []


def test_a_worker_that_would_render_other_audio_stops_the_stage(tmp_path, raw, capsys, monkeypatch):
    # Read by the workers as they start (maybe after LocalCluster returns); the stage process ignores it.
    monkeypatch.setenv(cluster_faults.FLUIDSYNTH_ENV, "1.0.0")
    with start_cluster(preload=[FAULTS]) as foreign:
        write_manifest(raw)
        assert render(tmp_path, raw, "audio", "--scheduler", foreign.scheduler_address) == 1
    err = capsys.readouterr().err
    assert "would render other audio than this machine; it has FluidSynth 1.0.0 (the stage's machine has " in err
    assert "Traceback" not in err
    assert not (tmp_path / "audio").exists()


def test_a_worker_sets_up_again_whenever_the_args_change(monkeypatch):
    monkeypatch.setattr(cluster_module, "_initialized", [None])
    calls = []
    for args in [("a",), ("a",), ("b",), ("a",)]:  # a run with params a, one with b, a again
        assert cluster_module.run_on_worker(str.upper, calls.append, args, "x") == "X"
    assert calls == ["a", "b", "a"]


def test_an_unreachable_scheduler_stops_the_stage_at_once(tmp_path, raw, capsys, monkeypatch):
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT", "2s")  # the stage waits that long for it
    write_manifest(raw)
    monkeypatch.setattr(cluster_module, "PROBE_TIMEOUT_S", 2.0)  # a scheduler may be starting: retried this long
    assert render(tmp_path, raw, "audio", "--scheduler", "tcp://127.0.0.1:9") == 1
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9 (ConnectionRefusedError: " in err
    assert not (tmp_path / "audio").exists()
    started = time.monotonic()
    assert render(tmp_path, raw, "audio", "--scheduler", "tcp://no-such-host.invalid:8786") == 1
    assert "cannot reach the Dask scheduler at tcp://no-such-host.invalid:8786 (unknown host: " in \
        capsys.readouterr().err
    assert time.monotonic() - started < 1.5  # known at once


@pytest.mark.parametrize("address, cause", [
    ("tpc://127.0.0.1:8786", "unknown address scheme 'tpc'"),
    ("tcp://127.0.0.1:8786x", "invalid literal for int() with base 10: '8786x'"),
    ("tcp://127.0.0.1:99999", "port 99999 is outside 1..65535"),
    ("tcp//127.0.0.1:8786", "'tcp//127.0.0.1' is no host name"),  # a ':' missing
])
def test_a_mistyped_scheduler_address_stops_the_stage_at_once(tmp_path, raw, capsys, address, cause):
    """Refused before a client is made: a client that fails to start would wait out its timeout again later."""
    write_manifest(raw)
    started = time.monotonic()
    assert render(tmp_path, raw, "audio", "--scheduler", address) == 1
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert f"cannot reach the Dask scheduler at {address} (not a scheduler address: {cause}" in err
    assert "Traceback" not in err and not (tmp_path / "audio").exists()


def test_distributed_is_quiet_while_a_stage_uses_it_and_as_it_was_after(cluster):
    """A scheduler killed mid-run made distributed log 30-odd lines of tracebacks before the stage's own line
    (measured by hand: 36 lines of stderr before, 1 after), and every item over 10 MB a 'Sending large graph'
    warning; dask's config gives some loggers levels of their own. Outside a stage's run, nothing changes."""
    import logging
    import warnings

    import dask

    names = ("distributed", "distributed.client", "distributed.core")
    before = {name: logging.getLogger(name).getEffectiveLevel() for name in names}
    big = b"x" * 12_000_000  # over distributed's 10 MB threshold
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for length in cluster_module.cluster_map(len, [big, big], cluster.scheduler_address):
            assert length == len(big)
            assert all(logging.getLogger(name).getEffectiveLevel() == logging.CRITICAL for name in names)
    assert not [w for w in caught if "large graph" in str(w.message)]
    assert {name: logging.getLogger(name).getEffectiveLevel() for name in names} == before
    assert dask.config.get("distributed.admin.large-graph-warning-threshold") == "10MB"


LOST_SCHEDULER = """
import os, signal, subprocess, sys, threading, time
from musicid import cluster
port = sys.argv[1]
dask = os.path.join(os.path.dirname(sys.executable), "dask")
quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"], **quiet)
worker = subprocess.Popen([dask, "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--no-dashboard"], **quiet)
try:
    threading.Timer(8, lambda: os.kill(scheduler.pid, signal.SIGKILL)).start()
    for _ in cluster.cluster_map(time.sleep, [1.0] * 60, f"tcp://127.0.0.1:{port}"):
        pass
except cluster.ClusterError as error:
    print(f"stage: {error}", file=sys.stderr)
finally:
    worker.kill(); scheduler.kill(); worker.wait(); scheduler.wait()
"""


def test_a_scheduler_killed_mid_run_gives_one_line(tmp_path):
    """In a fresh process, where distributed is imported by the stage itself and sets its loggers' levels:
    distributed's own logging printed some 35 lines of tracebacks before the stage's line."""
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run([sys.executable, "-c", LOST_SCHEDULER, str(port)], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=240)
    [line] = done.stderr.splitlines() or [""]  # one line, whatever the moment of the loss (a task, a wait)
    assert line.startswith(f"stage: lost the Dask scheduler at tcp://127.0.0.1:{port} ("), done.stderr[-2000:]


# --- download (music21), clip and featurize -------------------------------------------------------------------

DOWNLOAD = load_stage("download")
CLIP = load_stage("clip")
FEATURIZE = load_stage("featurize")
# Four corpus scores that music21 converts in well under a second each: two Bach chorales, one by
# Corelli, one by Ciconia.
SCORES = {"classes": ["bach", "ciconia", "corelli"], "max_per_class": 2, "seed": 0}


def download(tmp_path, out_name, *extra, **dataset):
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["dataset"].update({"source": "music21", **SCORES, **dataset})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return DOWNLOAD.main(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / out_name), *extra])


def test_download_on_a_cluster_gives_the_bytes_of_the_local_pool(tmp_path, cluster, monkeypatch, capsys):
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    monkeypatch.delenv("MUSICID_SCHEDULER", raising=False)
    assert download(tmp_path, "local", "--jobs", "2") == 0
    assert download(tmp_path, "cluster", "--scheduler", cluster.scheduler_address) == 0
    local, remote = files_of(tmp_path / "local"), files_of(tmp_path / "cluster")
    assert sorted(local) == ["bach/bwv389.mid", "bach/bwv424.mid", "ciconia/quod_jactatur.mid",
                             "corelli/opus3no1__1grave.mid", "manifest.json"]
    assert local.keys() == remote.keys() and [name for name in local if local[name] != remote[name]] == []
    out = capsys.readouterr().out
    assert "3 skipped (same_work 3); 2 local workers -> " in out
    assert f"3 skipped (same_work 3); Dask cluster {cluster.scheduler_address}, 2 worker threads -> " in out


def test_a_score_that_kills_every_worker_is_skipped_as_worker_crash(tmp_path, faulty_cluster, monkeypatch, capsys):
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    assert download(tmp_path, "raw", "--scheduler", faulty_cluster.scheduler_address) == 0
    manifest = json.loads((tmp_path / "raw" / "manifest.json").read_text())
    assert [r["path"] for r in manifest["files"]] == ["bach/bwv389.mid", "ciconia/quod_jactatur.mid",
                                                      "corelli/opus3no1__1grave.mid"]
    assert [r for r in manifest["skipped"] if r["origin"] == "music21:bach/bwv424.mxl"] == [
        {"origin": "music21:bach/bwv424.mxl", "label": "bach",
         "reason": "worker_crash: the worker processes converting this score died, one after another"}]
    assert "worker_crash 1" in capsys.readouterr().out


def marked_wav(path: Path, audio, sample_rate: int, marker: bytes) -> Path:
    """A WAV file whose bytes hold ``marker``, in a chunk of its own before the format chunk (players skip it)."""
    write_wav(path, audio, sample_rate)
    data = path.read_bytes()
    chunk = marker + b"\0" * (len(marker) & 1)
    body = data[12:]
    extra = b"mark" + len(marker).to_bytes(4, "little") + chunk
    path.write_bytes(b"RIFF" + (4 + len(extra) + len(body)).to_bytes(4, "little") + b"WAVE" + extra + body)
    return path


@pytest.fixture
def audio(tmp_path, monkeypatch):
    """data/audio: 2 labels x 4 tracks of 3 s tones at 8000 Hz and report.json; data/raw: their MIDI sources."""
    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    monkeypatch.delenv("MUSICID_SCHEDULER", raising=False)
    root, raw = tmp_path / "audio", tmp_path / "raw"
    for label, base in (("a", 220.0), ("b", 330.0)):
        for i in range(4):
            write_wav(root / f"{label}/t{i}.wav", sine(base * (1 + i / 12), 3.0, 8000, amplitude=0.3), 8000)
            write_midi(raw / f"{label}/t{i}.mid", [(57 + i + 5 * (label == "b"), 0.5 * k, 0.5 * k + 0.5)
                                                   for k in range(6)])
    write_report(root)
    return root


def write_report(root: Path) -> None:
    files = [{"source": str(p.relative_to(root).with_suffix(".mid")), "label": p.parent.name, "status": "rendered",
              "reason": None, "duration_s": 3.0, "outputs": [str(p.relative_to(root))]}
             for p in sorted(root.rglob("*.wav"))]
    (root / "report.json").write_text(json.dumps({"files": files}))


def clip_params(tmp_path) -> Path:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["clip"].update({"sample_rate": 8000, "clip_seconds": 1.0, "hop_seconds": 1.0})
    params["split"].update({"val": 0.25, "test": 0.25})
    params["features"].update({"n_mels": 32, "n_fft": 512, "hop_length": 256, "fmax": 4000.0, "batch_size": 7,
                               "symbolic": True})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path / "params.yaml"


def clip(tmp_path, audio, name, *extra):
    return CLIP.main(["--params", str(clip_params(tmp_path)), "--audio", str(audio),
                      "--out", str(tmp_path / f"{name}.h5"), "--report", str(tmp_path / f"{name}.json"), *extra])


def featurize(tmp_path, clips, name, *extra):
    return FEATURIZE.main(["--params", str(clip_params(tmp_path)), "--clips", str(clips),
                           "--out", str(tmp_path / f"{name}.h5"), "--render-report",
                           str(tmp_path / "audio" / "report.json"), "--raw", str(tmp_path / "raw"), *extra])


def same_bytes(*paths: Path) -> bool:
    return len({path.read_bytes() for path in paths}) == 1


def test_clip_and_featurize_on_a_cluster_give_the_bytes_of_the_local_pool(tmp_path, audio, cluster, capsys):
    assert clip(tmp_path, audio, "local", "--jobs", "2") == 0
    assert clip(tmp_path, audio, "cluster", "--scheduler", cluster.scheduler_address) == 0
    assert same_bytes(tmp_path / "local.h5", tmp_path / "cluster.h5")
    assert same_bytes(tmp_path / "local.json", tmp_path / "cluster.json")
    out = capsys.readouterr().out
    assert "too short; 2 local workers) -> " in out
    assert f"too short; Dask cluster {cluster.scheduler_address}, 2 worker threads) -> " in out

    assert featurize(tmp_path, tmp_path / "local.h5", "features_local", "--jobs", "2") == 0
    assert featurize(tmp_path, tmp_path / "local.h5", "features_cluster", "--scheduler",
                     cluster.scheduler_address) == 0
    assert same_bytes(tmp_path / "features_local.h5", tmp_path / "features_cluster.h5")
    out = capsys.readouterr().out
    assert "symbolic [2860] for 24 of 24 clips; 2 local workers -> " in out
    assert f"symbolic [2860] for 24 of 24 clips; Dask cluster {cluster.scheduler_address}, 2 worker threads -> " in out


def test_a_track_that_kills_every_worker_is_dropped_as_worker_crash(tmp_path, audio, faulty_cluster, capsys):
    marked_wav(audio / "a" / "poison.wav", sine(500.0, 3.0, 8000, amplitude=0.3), 8000, cluster_faults.POISON)
    write_report(audio)
    assert clip(tmp_path, audio, "clips", "--scheduler", faulty_cluster.scheduler_address) == 0
    report = json.loads((tmp_path / "clips.json").read_text())
    assert report["dropped_tracks"] == {"a/poison.mid": "worker_crash"}
    assert report["clips"] == 8 * 3
    assert "tracks dropped: 0 all silence, 0 too short, 1 killed the workers cutting them; " in capsys.readouterr().out


def test_a_worker_lost_in_the_middle_of_a_track_costs_a_retry(tmp_path, audio, faulty_cluster):
    unlucky = marked_wav(audio / "a" / "unlucky.wav", sine(500.0, 3.0, 8000, amplitude=0.3), 8000,
                         cluster_faults.CRASH_ONCE)
    write_report(audio)
    assert clip(tmp_path, audio, "cluster", "--scheduler", faulty_cluster.scheduler_address) == 0
    assert cluster_faults.crash_marker(unlucky.read_bytes()).exists()  # a worker did die on it
    assert clip(tmp_path, audio, "local", "--jobs", "2") == 0
    assert json.loads((tmp_path / "local.json").read_text())["clips"] == 9 * 3
    assert same_bytes(tmp_path / "local.h5", tmp_path / "cluster.h5")
    assert same_bytes(tmp_path / "local.json", tmp_path / "cluster.json")


def test_a_worker_with_other_library_versions_stops_the_stage(tmp_path, audio, capsys, monkeypatch, recwarn):
    """distributed's own check printed a table of 9 lines as a warning before the stage's refusal: now one line."""
    import numpy

    monkeypatch.setenv(cluster_faults.NUMPY_ENV, "0.0.1")  # read by the workers as they start
    with start_cluster(preload=[FAULTS]) as foreign:
        assert clip(tmp_path, audio, "clips", "--scheduler", foreign.scheduler_address) == 1
    err = capsys.readouterr().err
    assert f"Dask cluster {foreign.scheduler_address}: other versions on the client, scheduler, workers: " \
           f"numpy {numpy.__version__} / {numpy.__version__} / 0.0.1\n" in err
    assert not [w for w in recwarn if "Mismatched versions" in str(w.message)]
    assert "would not give the bytes of a local run; it has numpy 0.0.1 (the stage's machine has " in err
    assert "Traceback" not in err
    assert not (tmp_path / "clips.h5").exists() and not (tmp_path / "clips.json").exists()


def test_workers_that_cannot_import_musicid_stop_the_stage_at_once(tmp_path, audio, cluster, capsys, monkeypatch):
    from musicid import cluster as cluster_module

    # The workers' own import fails, as on a machine where the project was not installed.
    monkeypatch.setattr(cluster_module, "WORKER_IMPORT", "import musicid_not_installed_here")
    started = time.monotonic()
    assert clip(tmp_path, audio, "clips", "--scheduler", cluster.scheduler_address) == 1
    assert time.monotonic() - started < cluster_module.NO_WORKERS_S / 2  # not the wait for workers that died
    err = capsys.readouterr().err
    assert "2 of 2 Dask workers cannot import musicid (the worker at tcp://127.0.0.1:" in err
    assert "ModuleNotFoundError: No module named 'musicid_not_installed_here'); install the project on each " \
           "worker" in err
    assert "Traceback" not in err
    assert not (tmp_path / "clips.h5").exists() and not (tmp_path / "clips.json").exists()


def test_a_worker_with_other_code_names_the_modules(monkeypatch):
    """Any byte of any module used to stop every Dask stage, with one digest for all the code: the statements
    of each module are compared now (a comment or docstring edit is no difference), and the message names the
    modules that differ."""
    from musicid import cluster
    from musicid.render_cache import statements

    expected = dict(cluster.environment_fingerprint())
    assert "musicid code clips.py" in expected and "musicid code cluster.py" in expected
    source = (Path(cluster.__file__).parent / "clips.py").read_text()
    assert statements(source) == statements(source + "\n# a user's comment\n")
    assert statements(source) != statements(source + "\nEXTRA = 1\n")
    expected["musicid code clips.py"] = "0" * 12
    with pytest.raises(cluster.WorkerMismatch) as caught:
        cluster._check_environment(expected)
    message = str(caught.value)
    assert "it has other statements in musicid/clips.py than the stage's machine (another checkout, or one " \
           "edited since)" in message and "musicid/cluster.py" not in message
    cluster._check_environment(dict(cluster.environment_fingerprint()))  # the same code: no refusal


def predict_folder(tmp_path) -> tuple[Path, Path]:
    """A model and a folder to predict: a MIDI piece, a WAV, a WAV cut short, a web page named .mid."""
    from tests.test_predict import _piece, write_checkpoint

    songs = tmp_path / "songs"
    songs.mkdir()
    _piece(songs / "piece.mid")
    whole = write_wav(songs / "tune.wav", sine(440.0, 9.0, 22050, 0.3), 22050).read_bytes()
    (songs / "cut.wav").write_bytes(whole[:len(whole) * 2 // 3])
    (songs / "page.mid").write_text("<html>404</html>")
    return write_checkpoint(tmp_path / "model.pt", reference=1e9, reference_tracks=24), songs


def predict(*arguments) -> int:
    from musicid.__main__ import main

    return main(["predict", *map(str, arguments)])


def test_predict_on_a_cluster_gives_the_answers_of_this_machine(tmp_path, cluster, capsys):
    model, songs = predict_folder(tmp_path)
    missing = tmp_path / "gone.wav"
    assert predict(songs, missing, "--model", model, "--json", "--clips", "--jobs", "1") == 1
    local = json.loads(capsys.readouterr().out)
    assert predict(songs, missing, "--model", model, "--json", "--clips", "--scheduler",
                   cluster.scheduler_address) == 1
    out, err = capsys.readouterr()
    assert f"predict: files are prepared on Dask cluster {cluster.scheduler_address}, 2 worker threads" in err
    remote = json.loads(out)
    assert remote == local
    by_name = {Path(f["path"]).name: f for f in remote["files"]}
    assert sorted(by_name) == ["cut.wav", "gone.wav", "page.mid", "piece.mid", "tune.wav"]
    assert by_name["piece.mid"]["clips"] == 2 and by_name["piece.mid"]["error"] is None
    assert by_name["cut.wav"]["repaired"][0].startswith("cut short: truncated")  # its own bytes went, not a path
    assert by_name["page.mid"]["error"].startswith("content_mismatch: named .mid but looks like an HTML page")
    assert by_name["gone.wav"]["error"] == "missing: no such file"


def test_predict_takes_the_scheduler_from_the_environment(tmp_path, cluster, monkeypatch, capsys):
    model, songs = predict_folder(tmp_path)
    monkeypatch.setenv("MUSICID_SCHEDULER", cluster.scheduler_address)
    assert predict(songs / "tune.wav", "--model", model) == 0
    out, err = capsys.readouterr()
    assert f"Dask cluster {cluster.scheduler_address}" in err and "tune.wav: " in out


def test_predict_with_an_unreachable_scheduler_stops_at_once_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT", "2s")
    monkeypatch.setattr(cluster_module, "PROBE_TIMEOUT_S", 2.0)
    model, songs = predict_folder(tmp_path)
    assert predict(songs, "--model", model, "--scheduler", "tcp://127.0.0.1:9") == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.startswith("predict: cannot reach the Dask scheduler at tcp://127.0.0.1:9 (ConnectionRefusedError: ")


def test_predict_on_a_cluster_gives_a_file_that_kills_every_worker_its_line(tmp_path, faulty_cluster, capsys):
    model, songs = predict_folder(tmp_path)
    marked_midi(songs / "poison.mid", cluster_faults.POISON)
    assert predict(songs / "poison.mid", songs / "piece.mid", "--model", model, "--scheduler",
                   faulty_cluster.scheduler_address) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"{songs / 'poison.mid'}: cannot score (worker_crash: the worker processes reading this " \
                       "file died, one after another)"
    assert lines[2].startswith(f"{songs / 'piece.mid'}: ") and lines[2].endswith("(2 clips)")


def test_predict_losing_its_cluster_still_gives_what_it_scored(tmp_path, monkeypatch, capsys):
    """The files scored before the scheduler was lost are out, in text as each is scored and with --json as
    the document of them; the exit status says the run did not finish."""
    from musicid.predict import Predictor
    from musicid.prepare import Prediction

    model, songs = predict_folder(tmp_path)

    def predict_all(self, inputs, **options):
        yield Prediction(str(inputs[0][0]), labels=[("bach", 0.75), ("palestrina", 0.25)], novelty=0.5,
                         flagged=False, clips=2)
        raise cluster_module.ClusterError("lost the Dask scheduler at tcp://127.0.0.1:9 (CommClosedError: x)")

    monkeypatch.setattr(Predictor, "predict_all", predict_all)
    assert predict(songs / "piece.mid", songs / "tune.wav", "--model", model, "--json") == 2
    out, err = capsys.readouterr()
    assert err.endswith("predict: lost the Dask scheduler at tcp://127.0.0.1:9 (CommClosedError: x)\n")
    document = json.loads(out)
    assert [f["path"] for f in document["files"]] == [str(songs / "piece.mid")]
    assert document["error"] == "lost the Dask scheduler at tcp://127.0.0.1:9 (CommClosedError: x)"
    assert predict(songs / "piece.mid", songs / "tune.wav", "--model", model) == 2
    assert capsys.readouterr().out.splitlines()[1].startswith(f"{songs / 'piece.mid'}: bach 0.75")


def test_a_file_too_large_to_send_to_the_cluster_is_its_own_line(tmp_path, monkeypatch):
    """Predict reads each file whole to send it: one that does not fit in memory is that file's out_of_memory,
    the others are sent; an unreadable one is its unreadable reason."""
    from musicid import prepare

    big, fine, locked = (tmp_path / name for name in ("big.wav", "fine.wav", "locked.wav"))
    for path in (big, fine, locked):
        path.write_bytes(b"RIFF")
    read = Path.read_bytes

    def read_bytes(self):
        if self.name == "big.wav":
            raise MemoryError
        if self.name == "locked.wav":
            raise PermissionError(13, "Permission denied")
        return read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert list(prepare._with_bytes([(big, None), (fine, None), (locked, None), (tmp_path, "no_files: x")])) == [
        (big, prepare.OUT_OF_MEMORY, None), (fine, None, b"RIFF"), (locked, "unreadable: Permission denied", None),
        (tmp_path, "no_files: x", None)]


def test_a_collections_scores_are_converted_on_a_cluster_as_on_the_local_pool(tmp_path, cluster, monkeypatch,
                                                                            capsys):
    """The workers need not see the collection: each score is sent with its bytes."""
    from tests.test_scores import OTHER, TUNE, abc, kern, mxl, musicxml

    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    collection = tmp_path / "coll"
    for name, data in {"bach/a.krn": kern(TUNE), "bach/b.abc": abc(OTHER), "haydn/c.musicxml": musicxml(TUNE[::-1]),
                       "haydn/notes.xml": b'<?xml version="1.0"?><plist/>\n', "haydn/d.krn": b"**kern\n*-\n"}.items():
        (collection / name).parent.mkdir(parents=True, exist_ok=True)
        (collection / name).write_bytes(data)
    mxl(OTHER[::-1], collection / "haydn" / "E.MXL")
    dataset = {"source": "path", "path": str(collection), "classes": [], "max_per_class": 0}
    assert download(tmp_path, "local", "--jobs", "2", **dataset) == 0
    assert download(tmp_path, "cluster", "--scheduler", cluster.scheduler_address, **dataset) == 0
    local, remote = files_of(tmp_path / "local"), files_of(tmp_path / "cluster")
    assert sorted(local) == ["bach/a.mid", "bach/b.mid", "haydn/E.mid", "haydn/c.mid", "manifest.json"]
    assert local.keys() == remote.keys() and [name for name in local if local[name] != remote[name]] == []
    out = capsys.readouterr().out
    assert f"(4 written from scores), 2 skipped (content_mismatch 1, no_notes 1); scores converted on the Dask " \
           f"cluster {cluster.scheduler_address}, 2 worker threads -> " in out

"""Per-file throughput of render, clip and featurize: the local pool against a Dask LocalCluster, in one run.

For each stage's per-file work (the library functions the stage scripts call,
with the project's params), on the same seeded collection of generated MIDI
files, four ways side by side: the local process pool with 1 and 2 jobs, and a
``distributed.LocalCluster`` of 1 and 2 worker processes (one thread each) on
127.0.0.1, the stage process being the cluster's client as in the stages.
The runs are interleaved (local 1, cluster 1, local 2, cluster 2) so that a
change in the machine's load falls on all of them.

Per file it measures: worker compute (time inside the per-file function),
bytes sent to the worker and returned (pickled sizes, what travels), and the
stage process's own work (reading the input, writing the output: the part one
stage process does for the whole collection).  It also measures the
scheduler's per-task cost (empty tasks through ``musicid.cluster.cluster_map``,
which keeps two items per worker thread in flight).  From these it estimates
the wall time of 100,000 files on 10 and 100 workers and which part limits it.

    python benchmarks/cluster_throughput.py                 # 32 files of 60 s
    python benchmarks/cluster_throughput.py --files 16 --seconds 30
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from musicid.clips import ClipTask, clip_track
from musicid.features import FeatureBlock, block_features
from musicid.h5 import RowWriter, clip_columns, feature_columns
from musicid.parallel import ordered_map
from musicid.params import parse_section, read_params
from musicid.render import RenderTask, init_worker, render_one, write_rendered

sys.path.insert(0, str(Path(__file__).resolve().parent))
import composer_quality  # noqa: E402
from collection_budget import parse_set  # noqa: E402
from composer_quality import apply  # noqa: E402

PROJECT = Path(__file__).resolve().parent.parent
NETWORK_BYTES_PER_S = 1e9 / 8  # assumed: 1 Gbit/s at the stage process's link, all bytes passing through it
TARGET_FILES = 100_000


def make_midi(folder: Path, files: int, seconds: float, seed: int) -> list[Path]:
    """``files`` piano pieces of ``seconds`` s: seeded random melodies over chords, 2-4 notes at a time."""
    import pretty_midi

    rng = np.random.default_rng(seed)
    paths = []
    for index in range(files):
        midi = pretty_midi.PrettyMIDI(initial_tempo=120)
        piano = pretty_midi.Instrument(program=0)
        time_s = 0.0
        while time_s < seconds:
            step = float(rng.choice([0.125, 0.25, 0.5]))
            root = int(rng.integers(48, 72))
            for pitch in {root, root + int(rng.choice([3, 4])), root + 7, int(rng.integers(60, 84))}:
                piano.notes.append(pretty_midi.Note(int(rng.integers(50, 100)), pitch, time_s,
                                                    min(time_s + step * 2, seconds)))
            time_s += step
        midi.instruments.append(piano)
        path = folder / f"piece{index:03d}.mid"
        midi.write(str(path))
        paths.append(path)
    return paths


def timed(function, item):
    """Worker: (function(item), seconds it took)."""
    started = time.perf_counter()
    result = function(item)
    return result, time.perf_counter() - started


class Timed:
    """A picklable ``timed(function, .)``: for the local pool and the cluster alike."""

    def __init__(self, function):
        self.function = function

    def __call__(self, item):
        return timed(self.function, item)


def run_one(function, make_items, write, jobs: int, scheduler: str | None, initializer=None, initargs=()):
    """Run the per-file work once; totals of wall time, worker compute, bytes and the stage process's work."""
    sent = returned = 0
    stage_s = 0.0  # reading inputs (generator time) and writing outputs, in this process
    compute_s = 0.0
    items = make_items()

    def counted():
        nonlocal sent, stage_s
        while True:
            started = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            sent += len(pickle.dumps(item, protocol=5))
            stage_s += time.perf_counter() - started
            yield item

    started = time.perf_counter()
    count = 0
    for result, seconds in ordered_map(Timed(function), counted(), jobs=jobs, initializer=initializer,
                                       initargs=initargs, scheduler=scheduler):
        began = time.perf_counter()
        returned += len(pickle.dumps(result, protocol=5))
        write(result)
        stage_s += time.perf_counter() - began
        compute_s += seconds
        count += 1
    return {"wall": time.perf_counter() - started, "count": count, "compute": compute_s, "sent": sent,
            "returned": returned, "stage": stage_s}


def noop(item):
    return item


def scheduler_tasks_per_s(address: str, count: int = 2000) -> float:
    from musicid.cluster import cluster_map

    started = time.perf_counter()
    for _ in cluster_map(noop, range(count), address):
        pass
    return count / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each generated piece")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", type=parse_set, action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a param changed from params.yaml (repeatable), e.g. render.sample_rate=22050")
    args = parser.parse_args(argv)

    import distributed

    composer_quality.PROGRAM = "cluster_throughput"
    params = apply(read_params(PROJECT / "params.yaml"), dict(args.set))  # a misspelt key stops
    render = parse_section(params["render"], "render")
    clip = parse_section(params["clip"], "clip")
    features = parse_section(params["features"], "features")

    with tempfile.TemporaryDirectory(prefix="musicid-cluster-bench-") as scratch:
        scratch = Path(scratch)
        (scratch / "raw").mkdir()
        midi = make_midi(scratch / "raw", args.files, args.seconds, args.seed)
        clusters = {n: distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                host="127.0.0.1", dashboard_address=None) for n in (1, 2)}
        try:
            ways = [("local pool", 1, None), ("Dask cluster", 1, clusters[1].scheduler_address),
                    ("local pool", 2, None), ("Dask cluster", 2, clusters[2].scheduler_address)]
            # Warm the cluster workers (imports, the SoundFont) as a long run would have them.
            for _, _, address in ways:
                if address:
                    list(ordered_map(render_one, iter([RenderTask(midi[0].name, "x", midi[0].read_bytes(),
                                                                  ("x/w.wav",), render)]),
                                     jobs=1, initializer=init_worker, initargs=(render,), scheduler=address))
            rows = []
            audio_s = None
            for stage in ("render", "clip", "featurize"):
                for name, workers, address in ways:
                    out = scratch / f"{stage}-{name.replace(' ', '')}-{workers}"
                    out.mkdir()
                    if stage == "render":
                        def make_items():
                            return (RenderTask(p.name, "x", p.read_bytes(), (f"x/{p.stem}.wav",), render)
                                    for p in midi)

                        result = run_one(render_one, make_items, lambda r, out=out: write_rendered(r, out),
                                         workers, address, init_worker, (render,))
                        wav_dir = out / "x"
                    elif stage == "clip":
                        wav_dir = scratch / "render-localpool-1" / "x"
                        wavs = sorted(wav_dir.glob("*.wav"))
                        writer = RowWriter(out / "clips.h5", clip_columns(int(clip.clip_seconds * clip.sample_rate)))

                        def make_items():
                            return (ClipTask.read((str(w),), clip, 0) for w in wavs)

                        def write(r, writer=writer):
                            n = len(r[0])
                            writer.append(audio=r[0], label=np.zeros(n, np.int16), known=np.ones(n, bool),
                                          track=["t"] * n, source=["s"] * n, offset_s=r[1], split=["train"] * n)

                        with writer:
                            result = run_one(clip_track, make_items, write, workers, address)
                    else:
                        import h5py

                        from musicid.features import n_bands, n_frames
                        clips = h5py.File(scratch / "clip-localpool-1" / "clips.h5", "r")
                        audio = clips["audio"]
                        total = len(audio)
                        writer = RowWriter(out / "features.h5", feature_columns(
                            n_bands(features), n_frames(audio.shape[1], features.hop_length)))

                        def make_items():
                            return (FeatureBlock(s, audio[s:s + features.batch_size], features, clip.sample_rate)
                                    for s in range(0, total, features.batch_size))

                        def write(r, writer=writer):
                            n = len(r)
                            writer.append(features=r, label=np.zeros(n, np.int16), known=np.ones(n, bool),
                                          track=["t"] * n, offset_s=np.zeros(n), split=["train"] * n)

                        with writer:
                            result = run_one(block_features, make_items, write, workers, address)
                        clips.close()
                    if stage == "render" and audio_s is None:
                        import soundfile
                        audio_s = sum(soundfile.info(str(p)).duration for p in sorted(wav_dir.glob("*.wav")))
                    rows.append((stage, name, workers, result))
            tasks_per_s = {n: scheduler_tasks_per_s(clusters[n].scheduler_address) for n in (1, 2)}
        finally:
            for cluster in clusters.values():
                cluster.close()

    files = len(midi)
    print(f"{files} generated MIDI files of {args.seconds:g} s ({audio_s / 60:.1f} min rendered); "
          f"per-file costs in ms, per file of the collection")
    print(f"{'stage':10s} {'where':14s} {'n':>2s} {'files/s':>8s} {'audio x':>8s} {'vs local1':>9s} "
          f"{'compute':>8s} {'sent kB':>8s} {'back kB':>8s} {'stage ms':>8s}")
    base = {}
    for stage, name, workers, r in rows:
        rate = files / r["wall"]
        base.setdefault(stage, rate)
        print(f"{stage:10s} {name:14s} {workers:2d} {rate:8.2f} {audio_s / r['wall']:8.0f} {rate / base[stage]:9.2f} "
              f"{1000 * r['compute'] / files:8.1f} {r['sent'] / files / 1e3:8.0f} {r['returned'] / files / 1e3:8.0f} "
              f"{1000 * r['stage'] / files:8.1f}")
    print(f"scheduler: {tasks_per_s[1]:.0f} empty tasks/s with 1 worker, {tasks_per_s[2]:.0f} with 2 "
          "(through cluster_map: 2 in flight per worker thread)")
    print(f"\nEstimate for {TARGET_FILES:,} files (from the 2-worker cluster's per-file costs; network "
          f"assumed 1 Gbit/s at the stage process, every byte passing through it; the scheduler's rate "
          f"taken at the 2-worker figure, a pessimistic one: with 4 tasks in flight it measures the round "
          f"trip, and more workers keep more in flight):")
    for stage, name, workers, r in rows:
        if name != "Dask cluster" or workers != 2:
            continue
        parts = {"compute": r["compute"] / files, "stage process (read + write)": r["stage"] / files,
                 "network": (r["sent"] + r["returned"]) / files / NETWORK_BYTES_PER_S,
                 "scheduler": 1 / tasks_per_s[2]}
        for n in (10, 100):
            times = {"compute": parts["compute"] * TARGET_FILES / n,
                     **{k: v * TARGET_FILES for k, v in parts.items() if k != "compute"}}
            limit = max(times, key=times.get)
            detail = ", ".join(f"{k} {v / 3600:.2f} h" for k, v in times.items())
            print(f"  {stage:9s} {n:3d} workers: ~{times[limit] / 3600:.2f} h, limited by {limit} ({detail})")


if __name__ == "__main__":
    main()

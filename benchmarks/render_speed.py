"""Render the same long MIDI files with the render stage's code and with the `fluidsynth` command line, at equal settings.

All render with FluidR3_GM, gain 0.5, reverb and chorus off, the instruments
each file names (``render.program: null``), in two settings each:

* ``cli-22k``: ``fluidsynth -ni -q -R 0 -C 0 -g 0.5 -r 22050 -F out.wav SF2 file.mid``,
  one process per file (each loads the SoundFont), ``--jobs`` at a time: the
  usual way to render for a model that then resamples to 16000 Hz, with
  FluidSynth's default 4th-order interpolation;
* ``stage-22k``: :func:`musicid.render.render_one` through
  :func:`musicid.parallel.ordered_map` with ``--jobs`` workers (one SoundFont
  load per worker, the stage's checks, trimming and WAV writing included), at
  22050 Hz with ``render.interpolation: 4th``: the same settings as ``cli-22k``;
* ``cli-16k`` and ``stage-16k``: the same two at the stage's defaults, 16000
  Hz (``render.sample_rate`` = ``clip.sample_rate``: nothing to resample) and
  linear interpolation (``render.interpolation: linear``; the command line is
  given it as the shell command ``interp 1`` with ``-f``).

The 16 files are string-quartet movements of Haydn, Mozart and Beethoven
and piano pieces from the music21 corpus, 69 minutes in all (25 s to 11
minutes each, 12 over 100 s), exported once and kept under ``--out``/midi.
The methods run interleaved, round after round (cli-22k, stage-22k, cli-16k,
stage-16k, cli-22k, ...), so a load that comes and goes on the machine
touches all of them alike; each round gives the ratios of the stage to the
command line at the same settings, and of the stage at its defaults to the
command line as usually run (``cli-22k``), of which the minimum, median and
maximum over rounds are printed.  Throughput is seconds of audio written per
second of wall time ("x real time"), and per second of CPU time of this
process and its children (the command line's processes, the stage's
workers): on a machine shared with other work the CPU figure moves much less
from round to round than the wall-clock one.

    python benchmarks/render_speed.py [--rounds 5] [--jobs 0] [--out benchmarks/runs/render_speed]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import soundfile

from musicid.dataset import CorpusPiece, score_to_midi
from musicid.parallel import ordered_map, resolve_jobs
from musicid.params import RenderParams, parse_section, read_params
from musicid.render import RenderTask, init_worker, render_one, write_rendered
from musicid.synth import INTERPOLATION

PROJECT = Path(__file__).resolve().parent.parent
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
SAMPLE_RATE = 22050  # the command line's usual rate, before a resampling to the model's
CLIP_RATE = 16000  # params.yaml clip.sample_rate and render.sample_rate
DEFAULT_INTERPOLATION = "linear"  # params.yaml render.interpolation
GAIN = 0.5
CONVERT_TIMEOUT_S = 600  # music21 takes minutes over some quartet movements; done once, then cached
# Corpus scores (label, path in the music21 corpus): 12 string-quartet movements, 4 piano pieces.  Only
# scores whose MIDI export FluidSynth's player finishes by itself: for many of the others (haydn
# opus1no1/movement3, mozart k80/movement1, k156/movement1, ...) FluidSynth 2.3's player never reaches
# its end, so the command line writes audio until its disk is full, where the stage stops at the last
# note plus the release tail.
PIECES = (
    ("beethoven", "beethoven/opus18no1/movement3.mxl"), ("cpebach", "cpebach/h186.mxl"),
    ("haydn", "haydn/opus1no1/movement1.mxl"), ("haydn", "haydn/opus1no1/movement2.mxl"),
    ("haydn", "haydn/opus1no1/movement4.mxl"), ("haydn", "haydn/opus1no1/movement5.mxl"),
    ("haydn", "haydn/opus74no1/movement1.mxl"), ("haydn", "haydn/opus74no1/movement2.mxl"),
    ("joplin", "joplin/maple_leaf_rag.mxl"), ("mozart", "mozart/k155/movement1.mxl"),
    ("mozart", "mozart/k155/movement3.mxl"), ("mozart", "mozart/k156/movement3.mxl"),
    ("mozart", "mozart/k156/movement4.mxl"), ("mozart", "mozart/k458/movement4.mxl"),
    ("mozart", "mozart/k545/movement1_exposition.mxl"), ("mozart", "mozart/k80/movement4.mxl"),
)


def _convert(piece: CorpusPiece) -> tuple[CorpusPiece, bytes | None, str | None]:
    return score_to_midi(piece, timeout_s=CONVERT_TIMEOUT_S)


def midi_set(folder: Path, jobs: int) -> list[Path]:
    """The benchmark's MIDI files under ``folder/<label>/``, converted from the corpus the first time."""
    pieces = [CorpusPiece(label, path) for label, path in PIECES]
    missing = [piece for piece in pieces if not (folder / piece.output_name).is_file()]
    if missing:
        print(f"converting {len(missing)} corpus scores to MIDI (once, kept in {folder}) ...", flush=True)
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for piece, data, reason in pool.map(_convert, missing):
                if data is None:
                    raise SystemExit(f"cannot convert {piece.relative_path}: {reason}")
                target = folder / piece.output_name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
    return [folder / piece.output_name for piece in pieces]


def audio_seconds(paths: list[Path]) -> float:
    return sum(soundfile.info(str(path)).duration for path in paths)


def stage_params(sample_rate: int, interpolation: str) -> RenderParams:
    """The project's render params with the settings the command line is given."""
    project = read_params(PROJECT / "params.yaml")["render"]
    return parse_section({**project, "soundfonts": [SOUNDFONT], "sample_rate": sample_rate, "gain": GAIN,
                          "reverb": False, "chorus": False, "program": None, "timeout_s": 600,
                          "interpolation": interpolation}, "render")


def run_stage(midi: list[Path], out: Path, jobs: int, sample_rate: int, interpolation: str) -> list[Path]:
    render = stage_params(sample_rate, interpolation)
    # As the stage: each source's bytes go to a worker, its WAV bytes come back and are written here.
    tasks = (RenderTask(source=f"{p.parent.name}/{p.name}", label=p.parent.name, data=p.read_bytes(),
                        output_names=(f"{p.parent.name}/{p.stem}.wav",), render=render) for p in midi)
    records = [write_rendered(rendered, out) for rendered in
               ordered_map(render_one, tasks, jobs=jobs, initializer=init_worker, initargs=(render,))]
    failed = [record for record in records if record["status"] != "rendered"]
    if failed:
        raise SystemExit(f"the stage did not render {failed[0]['source']}: {failed[0]['reason']}")
    return [out / name for record in records for name in record["outputs"]]


def _cli_one(arguments: tuple[Path, Path, int, Path]) -> Path:
    midi, wav, sample_rate, commands = arguments
    wav.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", str(GAIN), "-r", str(sample_rate),
                    "-f", str(commands), "-F", str(wav), SOUNDFONT, str(midi)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wav


def run_command_line(midi: list[Path], out: Path, jobs: int, sample_rate: int, interpolation: str) -> list[Path]:
    commands = out / "interp.txt"  # the fluidsynth shell command that sets every channel's interpolation
    commands.parent.mkdir(parents=True, exist_ok=True)
    # The fluidsynth shell's `interp` takes FluidSynth's fluid_interp numbers, as the stage's synth does.
    commands.write_text(f"interp {INTERPOLATION[interpolation]}\n")
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # threads only wait on the processes
        return list(pool.map(_cli_one, [(p, out / p.parent.name / f"{p.stem}.wav", sample_rate, commands)
                                        for p in midi]))


SETTINGS = {"22k": (SAMPLE_RATE, "4th"), "16k": (CLIP_RATE, DEFAULT_INTERPOLATION)}
METHODS = {f"{kind}-{name}": (run, *settings) for name, settings in SETTINGS.items()
           for kind, run in (("cli", run_command_line), ("stage", run_stage))}
# (ours, the command line's) pairs whose per-round ratios are printed, with what each compares.
RATIOS = (
    ("stage-22k", "cli-22k", f"equal settings ({SAMPLE_RATE} Hz, 4th-order), ratio stage-22k/cli-22k"),
    ("stage-16k", "cli-16k", f"equal settings ({CLIP_RATE} Hz, {DEFAULT_INTERPOLATION}), ratio stage-16k/cli-16k"),
    ("stage-16k", "cli-22k", f"the stage at its defaults ({CLIP_RATE} Hz, {DEFAULT_INTERPOLATION}) against the "
                             f"command line as usually run ({SAMPLE_RATE} Hz, 4th-order), ratio stage-16k/cli-22k"),
)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its children that have ended."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def spread(values: list[float]) -> str:
    return f"min {min(values):.2f}  median {statistics.median(values):.2f}  max {max(values):.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of every method")
    parser.add_argument("--jobs", type=int, default=0, help="files at a time for every method (0: one per core)")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "runs" / "render_speed")
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=list(METHODS))
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if shutil.which("fluidsynth") is None:
        print("the fluidsynth command line is missing: apt-get install --no-install-recommends fluidsynth",
              file=sys.stderr)
        return 2
    jobs = resolve_jobs(args.jobs)
    midi = midi_set(args.out / "midi", jobs)
    print(f"{len(midi)} MIDI files from the music21 corpus, {jobs} at a time, {Path(SOUNDFONT).name}, "
          f"gain {GAIN}, reverb and chorus off; -22k at {SAMPLE_RATE} Hz with 4th-order interpolation, "
          f"-16k at {CLIP_RATE} Hz with {DEFAULT_INTERPOLATION}",
          flush=True)
    project = read_params(PROJECT / "params.yaml")
    print(f"params.yaml renders at {project['render']['sample_rate']} Hz with "
          f"{project['render']['interpolation']} interpolation and clips at "
          f"{project['clip']['sample_rate']} Hz", flush=True)
    throughput: dict[str, list[float]] = {name: [] for name in args.methods}
    per_cpu: dict[str, list[float]] = {name: [] for name in args.methods}
    for round_index in range(args.rounds):
        line = []
        for name in args.methods:
            out = args.out / "wav" / name
            shutil.rmtree(out, ignore_errors=True)
            started, started_cpu = time.perf_counter(), cpu_seconds()
            run, sample_rate, interpolation = METHODS[name]
            outputs = run(midi, out, jobs, sample_rate, interpolation)
            elapsed, cpu = time.perf_counter() - started, cpu_seconds() - started_cpu
            seconds = audio_seconds(outputs)
            throughput[name].append(seconds / elapsed)
            per_cpu[name].append(seconds / cpu)
            line.append(f"{name} {seconds / 60:.1f} min in {elapsed:.1f} s = {seconds / elapsed:.0f}x "
                        f"({cpu:.1f} CPU s)")
        print(f"round {round_index + 1}: " + ";  ".join(line), flush=True)
    for unit, figures in (("wall", throughput), ("CPU", per_cpu)):
        print(f"throughput, audio seconds per {unit} second:")
        for name, values in figures.items():
            print(f"  {name:10s} {spread(values)}")
    for unit, figures in (("wall", throughput), ("CPU", per_cpu)):
        for ours, theirs, label in RATIOS:
            if ours in figures and theirs in figures:
                ratios = [a / b for a, b in zip(figures[ours], figures[theirs])]
                print(f"{label} ({unit} time): {spread(ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

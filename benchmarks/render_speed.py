"""Render the same MIDI files three ways on this machine, in one run, and compare.

1. this project's render stage code (pyfluidsynth in process, one SoundFont
   load per worker, validation and WAV writing included);
2. the `fluidsynth -F` command line, one process per file, the way most
   projects call it, with as many processes at a time as there are workers;
3. pretty_midi's ``PrettyMIDI.fluidsynth()``, in as many worker processes:
   once as it is usually called (FluidSynth's default effects, reverb and
   chorus, on), and once with a synthesizer per instrument set up with the
   same effects as the other two, so that all do the same work.

All use the same SoundFont, sample rate and gain; effects follow the project's
default params (``render.reverb``, ``render.chorus``) unless --reverb is given.

Throughput is seconds of audio rendered per second of wall time ("x real
time"); the ratios are what to compare, since absolute figures depend on the
machine and its load.

    python benchmarks/render_speed.py                  # 4 classes x 4 corpus pieces, all cores
    python benchmarks/render_speed.py --per-class 8 --jobs 2
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import soundfile
import yaml

from musicid.dataset import export_music21
from musicid.parallel import ordered_map, resolve_jobs
from musicid.params import parse_section
from musicid.render import RenderTask, init_worker, render_one

PROJECT = Path(__file__).resolve().parent.parent
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
SAMPLE_RATE = 22050
GAIN = 0.5
EFFECTS = {"reverb": False, "chorus": False}  # set from the command line in main()


def make_midi_set(folder: Path, per_class: int) -> list[Path]:
    manifest = export_music21(["bach", "monteverdi", "palestrina", "trecento"], per_class, 0, folder,
                              map_function=lambda function, items: map(function, items))
    return [folder / record["path"] for record in manifest["files"]]


def audio_seconds(paths: list[Path]) -> float:
    return sum(soundfile.info(str(path)).duration for path in paths)


def run_stage_code(midi: list[Path], out: Path, jobs: int) -> list[Path]:
    # The project's render params, with the settings all three methods share.
    project = yaml.safe_load((PROJECT / "params.yaml").read_text())["render"]
    render = parse_section({**project, "soundfonts": [SOUNDFONT], "sample_rate": SAMPLE_RATE, "gain": GAIN,
                            "reverb": EFFECTS["reverb"], "chorus": EFFECTS["chorus"], "program": None,
                            "channels": 1, "timeout_s": 600}, "render")
    tasks = [RenderTask(source=f"{p.parent.name}/{p.name}", label=p.parent.name, input_path=str(p),
                        output_dir=str(out), output_names=(f"{p.parent.name}/{p.stem}.wav",), render=render)
             for p in midi]
    records = list(ordered_map(render_one, tasks, jobs=jobs, initializer=init_worker, initargs=(render,)))
    return [out / name for record in records for name in record["outputs"]]


def _cli_one(arguments: tuple[Path, Path]) -> Path:
    midi, wav = arguments
    wav.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["fluidsynth", "-ni", "-q", "-R", str(int(EFFECTS["reverb"])), "-C", str(int(EFFECTS["chorus"])),
                    "-g", str(GAIN), "-r", str(SAMPLE_RATE),
                    "-F", str(wav), SOUNDFONT, str(midi)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return wav


def run_command_line(midi: list[Path], out: Path, jobs: int) -> list[Path]:
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # threads only wait on the processes
        return list(pool.map(_cli_one, [(p, out / p.parent.name / f"{p.stem}.wav") for p in midi]))


def _pretty_midi_one(arguments: tuple[Path, Path, dict | None]) -> Path:
    import warnings

    import numpy as np
    import pretty_midi

    midi, wav, effects = arguments
    score = pretty_midi.PrettyMIDI(str(midi))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sf2_path is deprecated but is how most code calls it
        if effects is None:
            audio = score.fluidsynth(fs=SAMPLE_RATE, sf2_path=SOUNDFONT)
        else:
            import fluidsynth

            parts = []
            for instrument in score.instruments:  # what PrettyMIDI.fluidsynth() does, per instrument
                synth = fluidsynth.Synth(samplerate=SAMPLE_RATE, **{
                    "synth.reverb.active": int(effects["reverb"]), "synth.chorus.active": int(effects["chorus"])})
                sfid = synth.sfload(SOUNDFONT)
                parts.append(instrument.fluidsynth(fs=SAMPLE_RATE, synthesizer=synth, sfid=sfid))
                synth.delete()
            audio = np.zeros(max(len(part) for part in parts))
            for part in parts:
                audio[: len(part)] += part
            audio /= max(np.abs(audio).max(), 1e-9)
    wav.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(wav), audio, SAMPLE_RATE, subtype="PCM_16")
    return wav


def run_pretty_midi(midi: list[Path], out: Path, jobs: int, effects: dict | None = None) -> list[Path]:
    import pretty_midi

    readable = []
    for path in midi:  # pretty_midi refuses some files the other two render
        try:
            pretty_midi.PrettyMIDI(str(path))
            readable.append(path)
        except Exception:  # noqa: BLE001 - only to leave such files out of its run
            pass
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_pretty_midi_one,
                             [(p, out / p.parent.name / f"{p.stem}.wav", effects) for p in readable]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=4, help="corpus pieces per class (4 classes)")
    parser.add_argument("--jobs", type=int, default=0, help="workers for every method (0: one per core)")
    parser.add_argument("--reverb", action="store_true", help="render with FluidSynth's reverb on")
    args = parser.parse_args()
    EFFECTS["reverb"] = args.reverb
    if shutil.which("fluidsynth") is None:
        print("the fluidsynth command line is missing: apt-get install --no-install-recommends fluidsynth",
              file=sys.stderr)
        return 2
    jobs = resolve_jobs(args.jobs)
    with tempfile.TemporaryDirectory(prefix="musicid-bench-") as scratch:
        scratch = Path(scratch)
        midi = make_midi_set(scratch / "midi", args.per_class)
        effects = ", ".join(f"{k} {'on' if v else 'off'}" for k, v in EFFECTS.items())
        print(f"{len(midi)} MIDI files from the music21 corpus, {jobs} workers per method, "
              f"{SAMPLE_RATE} Hz, {Path(SOUNDFONT).name}, {effects}")
        results = {}
        methods = (
            ("musicid render stage", run_stage_code),
            ("fluidsynth -F, one process per file", run_command_line),
            ("pretty_midi .fluidsynth(), same effects", lambda m, o, j: run_pretty_midi(m, o, j, dict(EFFECTS))),
            ("pretty_midi .fluidsynth(), as usually called", run_pretty_midi),
        )
        for index, (name, method) in enumerate(methods):
            started = time.perf_counter()
            outputs = method(midi, scratch / f"method{index}", jobs)
            elapsed = time.perf_counter() - started
            seconds = audio_seconds(outputs)
            results[name] = seconds / elapsed
            print(f"  {name:46s} {len(outputs):3d} files  {seconds / 60:6.1f} min of audio in "
                  f"{elapsed:6.1f} s  = {results[name]:7.1f}x real time")
        ours = results["musicid render stage"]
        print(f"ratio musicid / fluidsynth -F:                  {ours / results['fluidsynth -F, one process per file']:.2f}x")
        print(f"ratio musicid / pretty_midi, same effects:      "
              f"{ours / results['pretty_midi .fluidsynth(), same effects']:.2f}x")
        print(f"ratio musicid / pretty_midi, as usually called: "
              f"{ours / results['pretty_midi .fluidsynth(), as usually called']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

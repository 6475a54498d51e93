"""How much the render settings move the features a model sees: interpolation and sample rate.

Renders the 16 corpus pieces of ``render_speed.py`` (string quartets and
piano, 69 minutes) with the project's render params (``params.yaml``: piano,
gain, no effects) in three ways, cuts each into the clip stage's 4 s clips
and computes the default log-mel features of each:

* the reference: 16000 Hz (``clip.sample_rate``), FluidSynth's 4th-order interpolation;
* ``render.interpolation: linear`` at 16000 Hz (the default);
* 22050 Hz, 4th-order, resampled to 16000 Hz with soxr as the clip stage does.

It prints, per piece and over all clips, the mean absolute difference of
the log-mel values (dB) from the reference, beside two yardsticks: the
change a 0.1 dB gain change makes, and the standard deviation of the
features themselves.

    python benchmarks/render_settings.py [--out benchmarks/runs/render_speed]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from render_speed import midi_set  # noqa: E402

from musicid.audio import resample, to_channels  # noqa: E402
from musicid.features import compute_features  # noqa: E402
from musicid.params import parse_section, read_params  # noqa: E402
from musicid.synth import MidiRenderer  # noqa: E402

PROJECT = Path(__file__).resolve().parent.parent
RATE = 16000
SETTINGS = {"reference (16000 Hz, 4th)": (RATE, "4th"), "linear (16000 Hz)": (RATE, "linear"),
            "22050 Hz + soxr": (22050, "4th")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "runs" / "render_speed")
    args = parser.parse_args()
    project = read_params(PROJECT / "params.yaml")
    features = parse_section(project["features"], "features")
    clip = parse_section(project["clip"], "clip")
    if clip.sample_rate != RATE:
        raise SystemExit(f"params.yaml clip.sample_rate is {clip.sample_rate}, this benchmark compares at {RATE} Hz")
    clip_samples = int(round(clip.clip_seconds * RATE))
    renderers = {name: MidiRenderer(parse_section({**project["render"], "sample_rate": rate,
                                                   "interpolation": interpolation}, "render"))
                 for name, (rate, interpolation) in SETTINGS.items()}
    names = list(SETTINGS)
    differences: dict[str, list[np.ndarray]] = {name: [] for name in names[1:] + ["gain -0.1 dB"]}
    reference_values = []
    for path in midi_set(args.out / "midi", 1):
        mono = {}
        for name, renderer in renderers.items():
            audio = to_channels(renderer.render(path), 1)
            mono[name] = resample(audio, renderer.sample_rate, RATE) if renderer.sample_rate != RATE else audio
        length = min(len(audio) for audio in mono.values()) // clip_samples * clip_samples
        if length == 0:
            continue
        clips = {name: audio[:length].reshape(-1, clip_samples) for name, audio in mono.items()}
        clips["gain -0.1 dB"] = clips[names[0]] * np.float32(10 ** (-0.1 / 20))
        values = {name: compute_features(batch, features, RATE) for name, batch in clips.items()}
        reference = values[names[0]]
        reference_values.append(reference)
        line = []
        for name in differences:
            difference = np.abs(values[name] - reference)
            differences[name].append(difference)
            line.append(f"{name} {difference.mean():.3f}")
        print(f"{path.parent.name}/{path.name} ({len(reference)} clips): " + ", ".join(line) + " dB", flush=True)
    every = np.concatenate(reference_values)
    print(f"\n{len(every)} clips, log-mel ({features.n_mels} bands) of params.yaml; features' sd {every.std():.1f} dB")
    print("mean |difference| from the reference (16000 Hz, 4th-order interpolation), dB: mean / median")
    for name, parts in differences.items():
        joined = np.concatenate([part.ravel() for part in parts])
        print(f"  {name:22s} {joined.mean():.3f} / {np.median(joined):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Tiny fixtures the tests make themselves: MIDI files written with pretty_midi, WAVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


# The test files that take longest, slowest first (seconds on a 2-core machine in brackets). `make test` runs the
# files in this order (pytest-xdist with --no-loadscope-reorder hands each worker the next file as it frees up),
# so that no long file starts last and leaves the other worker idle while it runs; the others follow in their
# usual order.
SLOW_FILES = (
    "test_pipeline_e2e.py",  # (240) one `dvc repro` shared by its tests, then experiments on it
    "test_cluster.py",  # (120) Dask clusters started and stopped
    "test_clip_featurize_stages.py",  # (50)
    "test_predict.py",  # (45)
    "test_render_cache.py",  # (45)
    "test_render_stage.py",  # (40)
    "test_odd_collection_e2e.py",  # (35) a `dvc repro` of an odd folder
    "test_track_model.py",  # (30) trains and evaluates small models
    "test_train_stage.py",  # (25)
    "test_track_features.py",  # (20) a small run trained for each of its tests
)


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return SLOW_FILES.index(name) if name in SLOW_FILES else len(SLOW_FILES)

    items.sort(key=rank)  # stable: each file's tests keep their order


@pytest.fixture(scope="session", autouse=True)
def private_caches(tmp_path_factory):
    """Every render in the tests (stage scripts, `dvc repro` in subprocesses) uses a render cache of the test
    run's own, never the user's, and so does every score conversion (musicid.score_cache); tests of the caches
    point them at their own folders."""
    import os

    variables = ("MUSICID_RENDER_CACHE", "MUSICID_SCORE_CACHE")
    previous = {name: os.environ.get(name) for name in variables}
    for name in variables:
        os.environ[name] = str(tmp_path_factory.mktemp(name.lower().replace("_", "-")))
    yield
    for name, value in previous.items():
        if value is None:
            del os.environ[name]
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def own_score_cache(tmp_path_factory, monkeypatch):
    """Each test its own score cache (a module's shared fixtures use the session's): a download's summary line
    never depends on which tests ran before it in the same process."""
    monkeypatch.setenv("MUSICID_SCORE_CACHE", str(tmp_path_factory.mktemp("score-cache")))


def section_params(section: str, **overrides):
    """The validated ``section`` of the project's params.yaml, with ``overrides`` applied.

    Tests build their configs through this, so that a default lives only in params.yaml.
    """
    import yaml

    from musicid.params import parse_section

    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())[section]
    return parse_section({**raw, **overrides}, section)


def load_stage(name: str):
    """Import ``stages/<name>.py`` (a script, not a package module) to call its ``main``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"stage_{name}", PROJECT_ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` (a script) with its folder on ``sys.path``, as running it has, for the
    sibling scripts it imports; registered in ``sys.modules`` under ``name`` (dataclasses look it up there)."""
    import importlib.util
    import sys

    folder = str(PROJECT_ROOT / "benchmarks")
    spec = importlib.util.spec_from_file_location(name, Path(folder) / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def write_midi(path: Path, notes: list[tuple[int, float, float]], program: int = 0, drum: bool = False) -> Path:
    """Write a one-instrument MIDI file; notes are (pitch, start_s, end_s) at 120 bpm. ``drum``: on the
    percussion channel (10)."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    instrument = pretty_midi.Instrument(program=program, is_drum=drum)
    for pitch, start, end in notes:
        instrument.notes.append(pretty_midi.Note(velocity=100, pitch=pitch, start=start, end=end))
    midi.instruments.append(instrument)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))
    return path


def write_wav(path: Path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), audio, sample_rate, subtype=subtype)
    return path


def write_m4a(path: Path, audio: np.ndarray, sample_rate: int, codec: str = "aac", sample_format: str = "fltp",
              faststart: bool = True) -> Path:
    """An MPEG-4 audio file (.m4a) of ``audio`` float32 [channels, n], encoded by FFmpeg through PyAV: ``aac``
    (lossy; ``fltp``), or ``alac`` (lossless; ``s16p``: 16-bit samples, ``s32p``: 24-bit ones, ALAC's depth).
    ``faststart``: its index (moov) before the samples, as iTunes writes it; else after them, where a file cut
    short loses it."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    layout = "mono" if len(audio) == 1 else "stereo"
    if sample_format == "fltp":
        planes = np.ascontiguousarray(audio, dtype=np.float32)
    else:
        bits = 16 if sample_format == "s16p" else 24
        steps = np.round(np.clip(audio, -1.0, 1.0 - 2.0 ** (1 - bits)) * 2.0 ** (bits - 1))
        planes = steps.astype(np.int16) if bits == 16 else steps.astype(np.int32) * 256
    with av.open(str(path), "w", format="ipod", options={"movflags": "+faststart"} if faststart else {}) as out:
        stream = out.add_stream(codec, rate=sample_rate)
        stream.layout = layout
        if codec == "alac":
            stream.format = sample_format
        frame = av.AudioFrame.from_ndarray(planes, format=sample_format, layout=layout)
        frame.sample_rate = sample_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


def write_wma(path: Path, audio: np.ndarray, sample_rate: int, codec: str = "wmav2") -> Path:
    """A Windows Media audio file (.wma, ASF) of ``audio`` float32 [2, n] at 128 kbit/s, encoded by FFmpeg (PyAV):
    ``wmav2`` or ``wmav1``."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="asf") as out:
        stream = out.add_stream(codec, rate=sample_rate)
        stream.layout, stream.bit_rate = "stereo", 128_000
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio, dtype=np.float32), format="fltp",
                                           layout="stereo")
        frame.sample_rate = sample_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


def write_wavpack(path: Path, audio: np.ndarray, sample_rate: int) -> Path:
    """A WavPack file (.wv, lossless) of ``audio`` float32 [2, n] as 16-bit samples, encoded by FFmpeg (PyAV)."""
    steps = np.round(np.clip(audio, -1.0, 1.0 - 2.0 ** -15) * 2.0 ** 15).astype(np.int16)
    return _write_ffmpeg(path, steps, sample_rate, "wv", "wavpack", "s16p")


def write_adts(path: Path, audio: np.ndarray, sample_rate: int) -> Path:
    """A raw AAC stream (.aac: ADTS frames, no container) of ``audio`` float32 [2, n], encoded by FFmpeg (PyAV)."""
    return _write_ffmpeg(path, np.ascontiguousarray(audio, dtype=np.float32), sample_rate, "adts", "aac", "fltp")


def _write_ffmpeg(path: Path, planes: np.ndarray, sample_rate: int, container: str, codec: str,
                  sample_format: str) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=sample_rate)
        stream.layout, stream.format = "stereo", sample_format
        frame = av.AudioFrame.from_ndarray(planes, format=sample_format, layout="stereo")
        frame.sample_rate = sample_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


def sine(frequency: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    """float32 [round(seconds * sample_rate)] sine wave."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@pytest.fixture
def three_note_midi(tmp_path: Path) -> Path:
    """C4, E4, G4, half a second each: ends at 1.5 s."""
    return write_midi(tmp_path / "three.mid", [(60, 0.0, 0.5), (64, 0.5, 1.0), (67, 1.0, 1.5)])


@pytest.fixture
def soundfont() -> Path:
    if not SOUNDFONT.is_file():
        pytest.fail(f"{SOUNDFONT} is missing: run `make setup` (installs fluid-soundfont-gm)")
    return SOUNDFONT


def pretty_midi_soundfont() -> Path:
    """TimGM6mb.sf2, the small General MIDI SoundFont shipped inside the pretty_midi package.

    Every install of the project has it, so tests that need a second SoundFont
    use it instead of a system package.
    """
    import pretty_midi

    return Path(pretty_midi.__file__).resolve().parent / "TimGM6mb.sf2"


@pytest.fixture
def second_soundfont() -> Path:
    """A second SoundFont, different from :data:`SOUNDFONT`: the one inside pretty_midi."""
    path = pretty_midi_soundfont()
    if not path.is_file():
        pytest.fail(f"{path} is missing: reinstall pretty_midi (`make setup`)")
    return path


def running_in_group(group: int, grace_s: float = 10.0) -> list[str]:
    """The processes of process group ``group`` still running (zombies, ended but not yet reaped, do not count)
    after up to ``grace_s`` seconds: a process killed a moment ago, or one that ends once its parent has (such as
    multiprocessing's resource tracker), may still be on its way out."""
    import subprocess
    import time

    def running(pid: str) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False

    deadline = time.monotonic() + grace_s
    while True:
        alive = [pid for pid in subprocess.run(["pgrep", "-g", str(group)], capture_output=True,
                                                text=True).stdout.split() if running(pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.2)

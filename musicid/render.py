"""Render MIDI to audio with FluidSynth in process, and validate every result.

One worker process loads each SoundFont once.  Each file is then rendered by a
fresh, cheap synthesizer (a couple of milliseconds to create) to which the
loaded SoundFont is handed: a reused synthesizer carries voice and effect state
from one file into the next, which would make a file's audio depend on which
file its worker rendered before it.  FluidSynth's MIDI player is driven by the
sample clock ("fast render"), so rendering runs as fast as the CPU allows.

Every source ends as ``rendered`` or ``rejected`` with a machine-readable reason:
``unparseable``, ``no_notes``, ``too_long``, ``empty_render``, ``non_finite``,
``silent``, ``duration_mismatch``, ``decode_error``.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIDI_SUFFIXES = (".mid", ".midi")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
BLOCK_FRAMES = 8192  # frames per FluidSynth write call; a multiple of its 64-frame block
TAIL_SECONDS = 3.0  # at most this much release/reverb tail after the last MIDI event
DURATION_TOLERANCE_S = 2.0  # allowed |rendered - expected| length, or 5 % when larger


class RenderError(Exception):
    """A source cannot be rendered; ``reason`` is the machine-readable cause."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class FluidSynthUnavailable(RuntimeError):
    """The FluidSynth library or a SoundFont is missing; the message says what to install."""


def _load_fluidsynth():
    try:
        import fluidsynth
    except ImportError as error:  # pyfluidsynth raises ImportError when libfluidsynth is absent
        raise FluidSynthUnavailable(
            f"cannot load the FluidSynth library ({error}). Install it with "
            "'apt-get install --no-install-recommends libfluidsynth3' (Debian/Ubuntu) "
            "or 'brew install fluid-synth' (macOS), then 'pip install pyfluidsynth'."
        ) from None
    library = fluidsynth._fl
    write_float = library.fluid_synth_write_float
    write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                            ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    write_float.restype = ctypes.c_int
    for name in ("fluid_synth_add_sfont", "fluid_synth_remove_sfont"):
        function = getattr(library, name)
        function.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        function.restype = ctypes.c_int
    get_sfont = library.fluid_synth_get_sfont_by_id
    get_sfont.argtypes = [ctypes.c_void_p, ctypes.c_int]
    get_sfont.restype = ctypes.c_void_p
    set_log = library.fluid_set_log_function
    set_log.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    set_log.restype = ctypes.c_void_p
    # FluidSynth logs to stderr by default, one line per problem and channel;
    # every problem that matters is reported by this module with a reason instead.
    for level in range(5):  # FLUID_PANIC .. FLUID_DBG
        set_log(level, None, None)
    return fluidsynth


def check_soundfonts(paths: list[str]) -> None:
    """Raise :class:`FluidSynthUnavailable` when a SoundFont file is missing."""
    for path in paths:
        if not Path(path).is_file():
            raise FluidSynthUnavailable(
                f"SoundFont not found: {path}. Install a General MIDI SoundFont, e.g. "
                "'apt-get install --no-install-recommends fluid-soundfont-gm' "
                "(gives /usr/share/sounds/sf2/FluidR3_GM.sf2), or set render.soundfonts "
                "in params.yaml to a .sf2/.sf3 file you have."
            )


@dataclass(frozen=True)
class SynthConfig:
    sample_rate: int
    gain: float
    reverb: bool
    chorus: bool


class MidiRenderer:
    """Renders MIDI files with SoundFonts loaded once; not shared between processes."""

    def __init__(self, soundfonts: list[str], config: SynthConfig):
        check_soundfonts(soundfonts)
        self.fluidsynth = _load_fluidsynth()
        self.library = self.fluidsynth._fl
        self.config = config
        # A holder synth loads each SoundFont; the SoundFont is then taken off it
        # so that it can be lent to the per-file synths (FluidSynth ref-counts it).
        self._holder = self._new_synth()
        self._sfonts = []
        for path in soundfonts:
            sfont_id = self._holder.sfload(str(path))
            if sfont_id < 0:
                raise FluidSynthUnavailable(f"FluidSynth cannot load the SoundFont {path}")
            sfont = self.library.fluid_synth_get_sfont_by_id(self._holder.synth, sfont_id)
            self.library.fluid_synth_remove_sfont(self._holder.synth, sfont)
            self._sfonts.append(sfont)

    def _new_synth(self):
        return self.fluidsynth.Synth(
            gain=self.config.gain,
            samplerate=self.config.sample_rate,
            channels=16,
            **{
                "player.timing-source": "sample",  # follow the rendered samples, not the wall clock
                "synth.lock-memory": 0,
                "synth.reverb.active": int(self.config.reverb),
                "synth.chorus.active": int(self.config.chorus),
                "synth.cpu-cores": 1,  # parallelism comes from worker processes
            },
        )

    def render(self, midi_path: str | Path, soundfont_index: int = 0,
               max_seconds: float = math.inf) -> np.ndarray:
        """Render one MIDI file.

        Returns float32 [2, n_frames] at ``config.sample_rate`` Hz.  Raises
        :class:`RenderError` ``too_long`` when the render passes ``max_seconds``.
        """
        fs = self.fluidsynth
        lib = self.library
        synth = self._new_synth()
        sfont = self._sfonts[soundfont_index]
        lib.fluid_synth_add_sfont(synth.synth, sfont)
        player = fs.new_fluid_player(synth.synth)
        blocks: list[np.ndarray] = []

        def write_block() -> None:
            block = np.zeros((2, BLOCK_FRAMES), dtype=np.float32)
            lib.fluid_synth_write_float(synth.synth, BLOCK_FRAMES, block[0].ctypes.data, 0, 1,
                                        block[1].ctypes.data, 0, 1)
            blocks.append(block)

        try:
            if fs.fluid_player_add(player, str(midi_path).encode()) != fs.FLUID_OK:
                raise RenderError("unparseable", "FluidSynth's player cannot open the file")
            fs.fluid_player_play(player)
            max_frames = max_seconds * self.config.sample_rate
            while fs.fluid_player_get_status(player) == fs.FLUID_PLAYER_PLAYING:
                if len(blocks) * BLOCK_FRAMES >= max_frames:
                    raise RenderError("too_long", f"still playing after {max_seconds:g} s")
                write_block()
            played = len(blocks)
            tail_blocks = math.ceil(TAIL_SECONDS * self.config.sample_rate / BLOCK_FRAMES)
            while (len(blocks) - played < tail_blocks
                   and fs.fluid_synth_get_active_voice_count(synth.synth) > 0):
                write_block()
        finally:
            fs.fluid_player_stop(player)
            fs.delete_fluid_player(player)
            # Take the SoundFont back before the synth is deleted, or it would go with it.
            lib.fluid_synth_remove_sfont(synth.synth, sfont)
            synth.delete()
        if not blocks:
            return np.zeros((2, 0), dtype=np.float32)
        return np.concatenate(blocks, axis=1)


def midi_summary(path: str | Path) -> float:
    """Parse a MIDI file and return its end time in seconds (last note off).

    Raises :class:`RenderError` ``unparseable`` or ``no_notes``.
    """
    import pretty_midi

    try:
        midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as error:  # noqa: BLE001 - mido/pretty_midi raise many types on bad files
        raise RenderError("unparseable", f"{type(error).__name__}: {error}"[:200]) from None
    notes = [note for instrument in midi.instruments for note in instrument.notes]
    if not notes:
        raise RenderError("no_notes", "the file holds no note events")
    return float(max(note.end for note in notes))


def trim_trailing_silence(audio: np.ndarray, threshold: float = 1e-4) -> np.ndarray:
    """Drop the frames after the last one whose peak exceeds ``threshold``.

    audio: float32 [channels, n_frames]; returns a view of the same dtype.
    """
    if audio.shape[1] == 0:
        return audio
    loud = np.nonzero(np.abs(audio).max(axis=0) > threshold)[0]
    end = int(loud[-1]) + 1 if loud.size else 0
    return audio[:, :end]


def validate_audio(audio: np.ndarray, sample_rate: int, min_rms: float,
                   expected_seconds: float | None = None) -> None:
    """Raise :class:`RenderError` when ``audio`` (float32 [channels, n]) is unusable."""
    if audio.size == 0 or audio.shape[-1] == 0:
        raise RenderError("empty_render", "no audio frames")
    if not np.isfinite(audio).all():
        raise RenderError("non_finite", "audio holds NaN or infinite samples")
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    if rms < min_rms:
        raise RenderError("silent", f"RMS {rms:.2e} below {min_rms:.2e}")
    if expected_seconds is not None:
        seconds = audio.shape[-1] / sample_rate
        tolerance = max(DURATION_TOLERANCE_S, 0.05 * expected_seconds)
        if abs(seconds - expected_seconds) > tolerance:
            raise RenderError(
                "duration_mismatch",
                f"rendered {seconds:.1f} s, the MIDI file ends at {expected_seconds:.1f} s",
            )


def to_mono(audio: np.ndarray) -> np.ndarray:
    """float32 [channels, n] -> float32 [n], the mean of the channels."""
    return audio.mean(axis=0, dtype=np.float32) if audio.ndim == 2 else audio.astype(np.float32)


def decode_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read an audio file with libsndfile; return float32 [channels, n] at ``sample_rate``.

    Raises :class:`RenderError` ``decode_error`` when the file cannot be read.
    """
    import soundfile
    import soxr

    try:
        data, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # noqa: BLE001 - libsndfile errors come as several types
        raise RenderError("decode_error", f"{type(error).__name__}: {error}"[:200]) from None
    if data.shape[0] and file_rate != sample_rate:
        data = soxr.resample(data, file_rate, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(data.T)


def write_wav(path: Path, mono: np.ndarray, sample_rate: int) -> None:
    """Write float32 [n] as 16-bit PCM WAV, through a temporary name."""
    import soundfile

    from musicid.io import atomic_path

    with atomic_path(path) as temporary:
        soundfile.write(str(temporary), np.clip(mono, -1.0, 1.0), sample_rate,
                        subtype="PCM_16", format="WAV")


# --- per-file work for the render stage --------------------------------------

_worker_renderer: MidiRenderer | None = None


def init_worker(soundfonts: list[str], config: SynthConfig) -> None:
    """Load the SoundFonts once in this process (a pool initializer)."""
    global _worker_renderer
    _worker_renderer = MidiRenderer(soundfonts, config)


@dataclass(frozen=True)
class RenderTask:
    source: str  # path relative to the raw data directory, e.g. "bach/bwv1.6.mid"
    label: str
    input_path: str  # absolute path of the source file
    output_dir: str  # where the WAVs go (the stage's staging directory)
    output_names: tuple[str, ...]  # one relative WAV path per SoundFont
    min_rms: float
    max_seconds: float


def render_one(task: RenderTask) -> dict:
    """Render or decode one source, validate it, write its WAVs; return its report record."""
    record = {"source": task.source, "label": task.label, "status": "rejected",
              "reason": None, "detail": None, "duration_s": None, "outputs": []}
    renderer = _worker_renderer
    sample_rate = renderer.config.sample_rate
    suffix = Path(task.source).suffix.lower()
    try:
        if suffix in MIDI_SUFFIXES:
            expected = midi_summary(task.input_path)
            if expected > task.max_seconds:
                raise RenderError("too_long", f"the MIDI file lasts {expected:.0f} s")
            renders = []
            for index in range(len(task.output_names)):
                audio = renderer.render(task.input_path, index, max_seconds=task.max_seconds + 60)
                audio = trim_trailing_silence(audio)
                validate_audio(audio, sample_rate, task.min_rms, expected_seconds=expected)
                renders.append(to_mono(audio))
        elif suffix in AUDIO_SUFFIXES:
            audio = decode_audio(task.input_path, sample_rate)
            validate_audio(audio, sample_rate, task.min_rms)
            if audio.shape[1] / sample_rate > task.max_seconds:
                raise RenderError("too_long", f"the audio lasts {audio.shape[1] / sample_rate:.0f} s")
            # An audio source is the same for every SoundFont: one output.
            renders = [to_mono(audio)]
        else:
            raise RenderError("unsupported_format", f"unknown file type {suffix!r}")
    except RenderError as error:
        record["reason"] = error.reason
        record["detail"] = error.detail or None
        return record
    for name, mono in zip(task.output_names, renders):
        write_wav(Path(task.output_dir) / name, mono, sample_rate)
        record["outputs"].append(name)
    record["status"] = "rendered"
    record["duration_s"] = round(len(renders[0]) / sample_rate, 3)
    return record

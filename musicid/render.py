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

import contextlib
import ctypes
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicid.audio import read_audio, resample
from musicid.filetypes import AUDIO_EXTENSIONS, MIDI_EXTENSIONS

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
        # pyfluidsynth prints where it found the library to stdout when the CI
        # variable is set; stdout belongs to the commands (predict --json).
        with contextlib.redirect_stdout(sys.stderr):
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


def check_fluidsynth() -> None:
    """Raise :class:`FluidSynthUnavailable` when the FluidSynth library cannot be loaded."""
    _load_fluidsynth()


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

    @classmethod
    def from_params(cls, render) -> SynthConfig:
        """From the ``render`` params section."""
        return cls(render.sample_rate, render.gain, render.reverb, render.chorus)


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
               stop_after_s: float = math.inf, timeout_s: float = math.inf) -> np.ndarray:
        """Render one MIDI file until FluidSynth's player stops, plus the release tail.

        Returns float32 [2, n_frames] at ``config.sample_rate`` Hz (empty when the
        player refuses the file).  Rendering ends early after ``stop_after_s``
        seconds of audio (a player can run on long after the last note, up to
        a stray event hours later); it raises :class:`RenderError` ``timeout``
        past ``timeout_s`` seconds of wall time.
        """
        fs = self.fluidsynth
        lib = self.library
        synth = self._new_synth()
        sfont = self._sfonts[soundfont_index]
        lib.fluid_synth_add_sfont(synth.synth, sfont)
        player = fs.new_fluid_player(synth.synth)
        blocks: list[np.ndarray] = []
        started = time.monotonic()

        def write_block() -> None:
            block = np.empty((2, BLOCK_FRAMES), dtype=np.float32)  # FluidSynth fills every frame
            lib.fluid_synth_write_float(synth.synth, BLOCK_FRAMES, block[0].ctypes.data, 0, 1,
                                        block[1].ctypes.data, 0, 1)
            blocks.append(block)
            if time.monotonic() - started > timeout_s:
                raise RenderError("timeout", f"rendering took more than {timeout_s:g} s")

        try:
            if fs.fluid_player_add(player, str(midi_path).encode()) != fs.FLUID_OK:
                raise RenderError("unparseable", "FluidSynth's player cannot open the file")
            fs.fluid_player_play(player)
            max_frames = stop_after_s * self.config.sample_rate
            stopped_early = False
            while fs.fluid_player_get_status(player) == fs.FLUID_PLAYER_PLAYING:
                if len(blocks) * BLOCK_FRAMES >= max_frames:
                    stopped_early = True
                    break
                write_block()
            if not stopped_early:
                # The release of the last notes (and the reverb) after the player stops.
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


DRUM_CHANNEL = 9  # General MIDI channel 10


def midi_end_time(path: str | Path) -> float:
    """Parse a MIDI file with mido; return the time of its last note event in seconds.

    mido reads files that stricter readers refuse (pretty_midi rejects files
    whose largest tick passes a sanity limit), and follows tempo changes in
    every track, as FluidSynth's player does.  Raises :class:`RenderError`
    ``unparseable`` or ``no_notes``.
    """
    import mido

    try:
        midi = mido.MidiFile(str(path), clip=True)
        now, last_note, notes = 0.0, 0.0, 0
        for message in midi:  # merged tracks, delta times in seconds
            now += message.time
            if message.type in ("note_on", "note_off"):
                last_note = now
                notes += message.type == "note_on" and message.velocity > 0
    except EOFError:  # mido's message for a file that stops mid-structure is empty
        raise RenderError("unparseable", "the file ends in the middle of a MIDI chunk (cut short?)") from None
    except Exception as error:  # noqa: BLE001 - mido raises many types on bad files
        raise RenderError("unparseable", f"{type(error).__name__}: {error}"[:200]) from None
    if notes == 0:
        raise RenderError("no_notes", "the file holds no note events")
    return float(last_note)


def reserialize_midi(path: str | Path, target: str | Path, program: int | None = None) -> None:
    """Write ``path`` again through mido, optionally forcing one General MIDI program.

    mido writes well-formed events whatever it read (e.g. meta events of the
    length the standard gives), which FluidSynth's stricter player then
    accepts.  With ``program``, every program change on a melodic channel is
    set to it and each melodic channel starts with it; drums stay drums.
    """
    import mido

    midi = mido.MidiFile(str(path), clip=True)
    if program is not None:
        for track in midi.tracks:
            for index, message in enumerate(track):
                if message.type == "program_change" and message.channel != DRUM_CHANNEL:
                    track[index] = message.copy(program=program)
        if midi.type != 2 and midi.tracks:
            first = [mido.Message("program_change", channel=c, program=program, time=0)
                     for c in range(16) if c != DRUM_CHANNEL]
            midi.tracks[0][0:0] = first
    midi.save(str(target))


def finish_render(audio: np.ndarray, sample_rate: int, end_seconds: float, trim_db: float) -> np.ndarray:
    """Cut a render to the MIDI's end plus the release tail, then trim trailing silence.

    Notes left without a note-off ring (and the player can run on after the
    last note); nothing past ``end_seconds + TAIL_SECONDS`` belongs to the
    piece.  Silence is judged against the render's peak: frames after the last
    one within ``trim_db`` dB of it are dropped.  audio: float32 [channels, n].
    """
    limit = int(round((end_seconds + TAIL_SECONDS) * sample_rate))
    audio = audio[:, :limit]
    if audio.shape[1] == 0:
        return audio
    frame_peaks = _frame_peaks(audio)
    peak = float(frame_peaks.max())
    if peak == 0 or not np.isfinite(peak):
        return audio
    return _cut_after_last_loud(audio, frame_peaks, peak * 10 ** (trim_db / 20))


def _frame_peaks(audio: np.ndarray) -> np.ndarray:
    """float32 [channels, n] -> the largest |sample| of each frame, [n]."""
    frame_peaks = np.abs(audio[0])
    for channel in audio[1:]:  # row by row: much faster than a reduction over axis 0
        np.maximum(frame_peaks, np.abs(channel), out=frame_peaks)
    return frame_peaks


def _cut_after_last_loud(audio: np.ndarray, frame_peaks: np.ndarray, threshold: float) -> np.ndarray:
    loud = np.flatnonzero(frame_peaks > threshold)
    return audio[:, : int(loud[-1]) + 1 if loud.size else 0]


def trim_trailing_silence(audio: np.ndarray, threshold: float = 1e-4) -> np.ndarray:
    """Drop the frames after the last one whose peak exceeds ``threshold``.

    audio: float32 [channels, n_frames]; returns a view of the same dtype.
    """
    if audio.shape[1] == 0:
        return audio
    return _cut_after_last_loud(audio, _frame_peaks(audio), threshold)


def validate_audio(audio: np.ndarray, sample_rate: int, min_rms: float,
                   expected_seconds: float | None = None) -> None:
    """Raise :class:`RenderError` when ``audio`` (float32 [channels, n]) is unusable.

    With ``expected_seconds`` (a MIDI file's end time), a render that stops
    short of it by more than the tolerance is a ``duration_mismatch``.
    """
    if audio.size == 0 or audio.shape[-1] == 0:
        raise RenderError("empty_render", "no audio frames")
    flat = audio.reshape(-1).astype(np.float32, copy=False)
    # One BLAS pass; a NaN or an infinity anywhere makes the sum of squares non-finite.
    energy = float(np.dot(flat, flat))
    if not np.isfinite(energy):
        raise RenderError("non_finite", "audio holds NaN or infinite samples")
    rms = (energy / flat.size) ** 0.5
    if rms < min_rms:
        raise RenderError("silent", f"RMS {rms:.2e} below {min_rms:.2e}")
    if expected_seconds is not None:
        seconds = audio.shape[-1] / sample_rate
        tolerance = max(DURATION_TOLERANCE_S, 0.05 * expected_seconds)
        if seconds < expected_seconds - tolerance:
            raise RenderError(
                "duration_mismatch",
                f"rendered {seconds:.1f} s, the MIDI file's notes end at {expected_seconds:.1f} s",
            )


def to_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """float32 [c, n] -> float32 [n] (channels=1, the mean) or [n, 2] (channels=2)."""
    if channels == 1:
        mono = audio[0].copy() if len(audio) else np.zeros(0, np.float32)
        for channel in audio[1:]:
            mono += channel
        return mono * np.float32(1.0 / max(len(audio), 1))
    if audio.shape[0] == 1:
        audio = np.repeat(audio, 2, axis=0)
    return np.ascontiguousarray(audio[:2].T)


def decode_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read an audio file with libsndfile; return float32 [channels, n] at ``sample_rate``.

    Raises :class:`RenderError` ``decode_error`` when the file cannot be read.
    """
    try:
        data, file_rate = read_audio(path)
    except Exception as error:  # noqa: BLE001 - libsndfile errors come as several types
        raise RenderError("decode_error", f"{type(error).__name__}: {error}"[:200]) from None
    if np.isfinite(data).all():  # NaNs are left for validate_audio to name
        data = resample(data, file_rate, sample_rate)
    return np.ascontiguousarray(data.T)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write float32 [n] or [n, channels] as 16-bit PCM WAV, through a temporary name."""
    import soundfile

    from musicid.io import atomic_path

    if np.abs(audio).max(initial=0.0) > 1.0:
        audio = np.clip(audio, -1.0, 1.0)
    with atomic_path(path) as temporary:
        soundfile.write(str(temporary), audio, sample_rate, subtype="PCM_16", format="WAV")


# --- per-file work for the render stage --------------------------------------

# Failures a stricter-than-usual MIDI player can cause on a file that mido reads.
RECOVERABLE = ("empty_render", "duration_mismatch", "silent")

_worker_renderer: MidiRenderer | None = None


def init_worker(soundfonts: list[str], config: SynthConfig) -> None:
    """Load the SoundFonts once in this process (a pool initializer)."""
    global _worker_renderer
    _worker_renderer = MidiRenderer(soundfonts, config)


@dataclass(frozen=True)
class RenderPolicy:
    """What the render stage accepts and how it writes (from params ``render.*``)."""

    min_rms: float  # linear RMS under which a render is silent
    max_seconds: float  # longer sources are too_long
    timeout_s: float  # wall-clock limit per render
    trim_db: float  # trailing frames quieter than this, relative to the peak, are dropped
    program: int | None  # force every melodic part to this General MIDI program
    channels: int  # 1 (mono) or 2 (stereo) in the written WAVs

    @classmethod
    def from_params(cls, render) -> RenderPolicy:
        """From the ``render`` params section."""
        return cls(min_rms=render.min_rms, max_seconds=render.max_seconds, timeout_s=render.timeout_s,
                   trim_db=render.trim_db, program=render.program, channels=render.channels)


@dataclass(frozen=True)
class RenderTask:
    source: str  # path relative to the raw data directory, e.g. "bach/bwv1.6.mid"
    label: str
    input_path: str  # absolute path of the source file
    output_dir: str  # where the WAVs go (the stage's staging directory)
    output_names: tuple[str, ...]  # relative WAV paths: one per SoundFont for MIDI, one for audio
    policy: RenderPolicy


def _render_validated(renderer: MidiRenderer, midi_path: Path, index: int, expected: float,
                      policy: RenderPolicy) -> np.ndarray:
    sample_rate = renderer.config.sample_rate
    audio = renderer.render(midi_path, index, stop_after_s=expected + TAIL_SECONDS,
                            timeout_s=policy.timeout_s)
    audio = finish_render(audio, sample_rate, expected, policy.trim_db)
    validate_audio(audio, sample_rate, policy.min_rms, expected_seconds=expected)
    return audio


def render_midi_source(renderer: MidiRenderer, path: Path, n_soundfonts: int,
                       policy: RenderPolicy) -> tuple[list[np.ndarray], bool]:
    """Render one MIDI file with every SoundFont; returns (renders, recovered).

    When FluidSynth's player gives empty, truncated or silent audio for a file
    that mido reads, the file is written again through mido and rendered once
    more; if that validates, the source counts as recovered.
    """
    expected = midi_end_time(path)
    if expected > policy.max_seconds:
        raise RenderError("too_long", f"the notes last {expected:.0f} s (render.max_seconds "
                                      f"{policy.max_seconds:g})")
    with tempfile.TemporaryDirectory(prefix="musicid-render-") as scratch:
        reserialized = Path(scratch) / "reserialized.mid"
        if policy.program is not None:
            # Forcing a program already writes the file through mido.
            reserialize_midi(path, reserialized, program=policy.program)
            path = reserialized
        renders, recovered = [], False
        for index in range(n_soundfonts):
            try:
                renders.append(_render_validated(renderer, path, index, expected, policy))
                continue
            except RenderError as error:
                if error.reason not in RECOVERABLE or path == reserialized:
                    raise
                first = error
            try:
                reserialize_midi(path, reserialized)
            except Exception:  # noqa: BLE001 - mido could read it but not write it: keep the first reason
                raise first from None
            path = reserialized
            try:
                renders.append(_render_validated(renderer, path, index, expected, policy))
            except RenderError as second:
                raise RenderError(first.reason, f"{first.detail}; re-serialized with mido: "
                                                f"{second.reason}: {second.detail}") from None
            recovered = True
    return renders, recovered


def load_source(renderer: MidiRenderer, path: Path, n_outputs: int, policy: RenderPolicy,
                ) -> tuple[list[np.ndarray], bool]:
    """Render (MIDI) or decode (audio) one source and check it.

    Returns (audio float32 [channels, n] per output, recovered); raises
    :class:`RenderError` with the reason when the source is unusable.
    """
    sample_rate = renderer.config.sample_rate
    suffix = path.suffix.lower()
    if suffix in MIDI_EXTENSIONS:
        return render_midi_source(renderer, path, n_outputs, policy)
    if suffix in AUDIO_EXTENSIONS:
        audio = decode_audio(path, sample_rate)
        validate_audio(audio, sample_rate, policy.min_rms)
        if audio.shape[1] / sample_rate > policy.max_seconds:
            raise RenderError("too_long", f"the audio lasts {audio.shape[1] / sample_rate:.0f} s")
        return [audio], False
    raise RenderError("unsupported_format", f"unknown file type {suffix!r}")


def render_one(task: RenderTask) -> dict:
    """Render or decode one source, validate it, write its WAVs; return its report record."""
    record = {"source": task.source, "label": task.label, "status": "rejected",
              "reason": None, "detail": None, "duration_s": None, "outputs": []}
    renderer = _worker_renderer
    sample_rate = renderer.config.sample_rate
    try:
        renders, recovered = load_source(renderer, Path(task.input_path), len(task.output_names), task.policy)
    except RenderError as error:
        record["reason"] = error.reason
        record["detail"] = error.detail or None
        return record
    for name, audio in zip(task.output_names, renders):
        write_wav(Path(task.output_dir) / name, to_channels(audio, task.policy.channels), sample_rate)
        record["outputs"].append(name)
    record["status"] = "recovered" if recovered else "rendered"
    record["duration_s"] = round(renders[0].shape[1] / sample_rate, 3)
    return record

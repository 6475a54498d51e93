"""FluidSynth in process: the library binding and a MIDI renderer.

One worker process loads each SoundFont once.  Each file is then rendered by a
fresh, cheap synthesizer (a couple of milliseconds to create) to which the
loaded SoundFont is handed: a reused synthesizer carries voice and effect state
from one file into the next, which would make a file's audio depend on which
file its worker rendered before it.  FluidSynth's MIDI player is driven by the
sample clock ("fast render"), so rendering runs as fast as the CPU allows.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import math
import os
import time
from pathlib import Path

import numpy as np

from musicid.checks import RenderError
from musicid.params import RenderParams

BLOCK_FRAMES = 8192  # frames per FluidSynth write call; a multiple of its 64-frame block
TAIL_SECONDS = 3.0  # at most this much release/reverb tail after the last MIDI event


# render.interpolation -> FluidSynth's fluid_interp (FLUID_INTERP_NONE, _LINEAR, _4THORDER, _7THORDER).
INTERPOLATION = {"none": 0, "linear": 1, "4th": 4, "7th": 7}
DEFAULT_INTERPOLATION = "4th"  # FLUID_INTERP_DEFAULT, to which a system reset puts every channel back
SYSEX = 0xF0  # fluid_midi_event_get_type of a system-exclusive event (SMF F0 and F7 events alike)
# int handler(void *data, fluid_midi_event_t *event): fluid_player_set_playback_callback's handler.
PLAYBACK_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


class FluidSynthUnavailable(RuntimeError):
    """The FluidSynth library or a SoundFont is missing; the message says what to install."""


def _load_fluidsynth():
    try:
        # pyfluidsynth prints where it found the library to stdout when the CI
        # variable is set: stdout belongs to the commands (predict --json) and
        # every worker would repeat the line on stderr, so it is dropped.
        with contextlib.redirect_stdout(io.StringIO()):
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
    add_mem = library.fluid_player_add_mem
    add_mem.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    add_mem.restype = ctypes.c_int
    get_sfont = library.fluid_synth_get_sfont_by_id
    get_sfont.argtypes = [ctypes.c_void_p, ctypes.c_int]
    get_sfont.restype = ctypes.c_void_p
    set_interp = library.fluid_synth_set_interp_method
    set_interp.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    set_interp.restype = ctypes.c_int
    set_callback = library.fluid_player_set_playback_callback
    set_callback.argtypes = [ctypes.c_void_p, PLAYBACK_CALLBACK, ctypes.c_void_p]
    set_callback.restype = ctypes.c_int
    handle_event = library.fluid_synth_handle_midi_event
    handle_event.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    handle_event.restype = ctypes.c_int
    event_type = library.fluid_midi_event_get_type
    event_type.argtypes = [ctypes.c_void_p]
    event_type.restype = ctypes.c_int
    set_log = library.fluid_set_log_function
    set_log.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    set_log.restype = ctypes.c_void_p
    # FluidSynth logs to stderr by default, one line per problem and channel;
    # every problem that matters is reported by this module with a reason instead.
    for level in range(5):  # FLUID_PANIC .. FLUID_DBG
        set_log(level, None, None)
    return fluidsynth


class SoundFontUnreadable(FluidSynthUnavailable):
    """A SoundFont file FluidSynth cannot load; ``path`` is the file."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path


def check_fluidsynth() -> None:
    """Raise :class:`FluidSynthUnavailable` when the FluidSynth library cannot be loaded."""
    _load_fluidsynth()


def check_soundfonts(paths: list[str], key: str = "render.soundfonts") -> None:
    """Raise :class:`FluidSynthUnavailable` when a SoundFont file is missing, is not a SoundFont (nor a DLS
    file, which FluidSynth also reads), or is listed twice under two names (a link, ``../``: every MIDI file
    would be rendered twice alike); ``key`` is the param that lists it."""
    seen: dict[str, str] = {}
    for path in paths:
        if Path(path).is_dir():
            raise FluidSynthUnavailable(f"{key}: {path} is a folder, not a SoundFont file (.sf2/.sf3)")
        if Path(path).is_file():
            with open(path, "rb") as file:
                head = file.read(12)
            # Checked here: FluidSynth's own loader prints GLib warnings of its own on such a file.
            if head[:4] != b"RIFF" or head[8:12] not in (b"sfbk", b"DLS "):
                raise SoundFontUnreadable(f"FluidSynth cannot load the SoundFont {path} ({key}): not a .sf2/.sf3 "
                                          "file it can read", path)
            real = os.path.realpath(path)
            if real in seen:
                raise FluidSynthUnavailable(f"{key}: {seen[real]} and {path} are the same file ({real}): each "
                                            "MIDI file would be rendered twice alike; list it once")
            seen[real] = path
        else:
            raise FluidSynthUnavailable(
                f"SoundFont not found: {path}. Install a General MIDI SoundFont, e.g. "
                "'apt-get install --no-install-recommends fluid-soundfont-gm' "
                f"(gives /usr/share/sounds/sf2/FluidR3_GM.sf2), or set {key} "
                "in params.yaml to a .sf2/.sf3 file you have."
            )


class MidiRenderer:
    """Renders MIDI files with SoundFonts loaded once; not shared between processes.

    Set up from the ``render`` params: ``soundfonts`` (all loaded, in order),
    ``sample_rate``, ``gain``, ``reverb``, ``chorus`` and ``interpolation``.  With ``augment``
    (the render stage's workers) and ``render.augment.copies`` > 0, the
    SoundFonts of ``render.augment.soundfonts`` are loaded too, after the
    others (one that is also in ``render.soundfonts`` is loaded once); find
    a SoundFont's index with :meth:`soundfont_index`.  Prediction renders
    plainly and loads none of them.
    """

    def __init__(self, render: RenderParams, augment: bool = False):
        soundfonts = list(render.soundfonts)
        check_soundfonts(soundfonts)
        if augment and render.augment.copies:
            check_soundfonts(render.augment.soundfonts, key="render.augment.soundfonts")
            soundfonts += [path for path in render.augment.soundfonts if path not in soundfonts]
        self.soundfont_paths = soundfonts
        self.fluidsynth = _load_fluidsynth()
        self.library = self.fluidsynth._fl
        self.params = render
        self.sample_rate = render.sample_rate
        self.n_soundfonts = len(render.soundfonts)  # the plain renders of a MIDI file: one per render.soundfonts
        # A holder synth loads each SoundFont; the SoundFont is then taken off it
        # so that it can be lent to the per-file synths (FluidSynth ref-counts it).
        self._holder = self._new_synth()
        self._sfonts = []
        for path in soundfonts:
            sfont_id = self._holder.sfload(str(path))
            if sfont_id < 0:
                key = "render.soundfonts" if path in render.soundfonts else "render.augment.soundfonts"
                raise SoundFontUnreadable(f"FluidSynth cannot load the SoundFont {path} ({key}): not a .sf2/.sf3 "
                                          "file it can read", path)
            sfont = self.library.fluid_synth_get_sfont_by_id(self._holder.synth, sfont_id)
            self.library.fluid_synth_remove_sfont(self._holder.synth, sfont)
            self._sfonts.append(sfont)

    def soundfont_index(self, path: str) -> int:
        """Index (for :meth:`render`) of a loaded SoundFont, given its path as the params write it."""
        return self.soundfont_paths.index(path)

    def _new_synth(self):
        synth = self.fluidsynth.Synth(
            gain=self.params.gain,
            samplerate=self.sample_rate,
            channels=16,
            **{
                "player.timing-source": "sample",  # follow the rendered samples, not the wall clock
                "synth.lock-memory": 0,
                "synth.reverb.active": int(self.params.reverb),
                "synth.chorus.active": int(self.params.chorus),
                "synth.cpu-cores": 1,  # parallelism comes from worker processes
            },
        )
        # Every channel (-1); the player's program changes keep it.
        if self.library.fluid_synth_set_interp_method(synth.synth, -1,
                                                      INTERPOLATION[self.params.interpolation]) != 0:
            synth.delete()
            raise FluidSynthUnavailable(f"FluidSynth refuses render.interpolation {self.params.interpolation!r}")
        return synth

    def _keep_interpolation(self, synth_pointer: int):
        """A playback handler: FluidSynth's own, then render.interpolation again after a system-exclusive event."""
        lib = self.library
        method = INTERPOLATION[self.params.interpolation]

        def handle(_data, event):
            status = lib.fluid_synth_handle_midi_event(synth_pointer, event)
            if lib.fluid_midi_event_get_type(event) == SYSEX:
                lib.fluid_synth_set_interp_method(synth_pointer, -1, method)
            return status

        return PLAYBACK_CALLBACK(handle)

    def render(self, midi: str | Path | bytes, soundfont_index: int = 0,
               stop_after_s: float = math.inf, timeout_s: float = math.inf) -> np.ndarray:
        """Render one MIDI file until FluidSynth's player stops, plus the release tail.

        ``midi`` is the file's path or its Standard MIDI File bytes (handed to
        the player from memory: no temporary file).  Returns float32
        [2, n_frames] at ``sample_rate`` Hz (empty when the player refuses the
        file).  Rendering ends early after ``stop_after_s`` seconds of audio (a
        player can run on long after the last note, up to a stray event hours
        later); it raises :class:`RenderError` ``timeout`` past ``timeout_s``
        seconds of wall time (what is left of the file's ``render.timeout_s``
        once it was read).

        FluidSynth writes each block straight into one output array (no
        per-block arrays to join); with a finite ``stop_after_s`` that array
        is allocated once at its largest possible size, and its pages are only
        touched as far as the render goes.
        """
        fs = self.fluidsynth
        lib = self.library
        synth = self._new_synth()
        sfont = self._sfonts[soundfont_index]
        lib.fluid_synth_add_sfont(synth.synth, sfont)
        player = fs.new_fluid_player(synth.synth)
        tail_blocks = math.ceil(TAIL_SECONDS * self.sample_rate / BLOCK_FRAMES)
        max_frames = stop_after_s * self.sample_rate
        # Blocks the loops below can write at most: the played ones (up to
        # max_frames, rounded up to a block) and the tail.
        capacity = (math.ceil(max_frames / BLOCK_FRAMES) + tail_blocks) * BLOCK_FRAMES \
            if math.isfinite(max_frames) else 64 * BLOCK_FRAMES
        output = np.empty((2, capacity), dtype=np.float32)
        written = 0  # frames
        started = time.monotonic()

        def write_block() -> None:
            nonlocal output, written
            if written + BLOCK_FRAMES > output.shape[1]:  # only with no stop_after_s: grow by doubling
                grown = np.empty((2, 2 * output.shape[1]), dtype=np.float32)
                grown[:, :written] = output[:, :written]
                output = grown
            # Each channel is a contiguous row: FluidSynth fills BLOCK_FRAMES frames from the offset.
            lib.fluid_synth_write_float(synth.synth, BLOCK_FRAMES, output[0].ctypes.data, written, 1,
                                        output[1].ctypes.data, written, 1)
            written += BLOCK_FRAMES
            if time.monotonic() - started > timeout_s:
                raise RenderError("timeout", "reading and rendering the file took longer than render.timeout_s")

        try:
            if self.params.interpolation != DEFAULT_INTERPOLATION:
                data = midi if isinstance(midi, bytes) else Path(midi).read_bytes()
                # A GM, GS or XG reset (system exclusive) re-initialises FluidSynth's channels, interpolation
                # included: in a file that may hold one, every event goes through a handler that sets the
                # interpolation again after each system-exclusive event.  Other files keep FluidSynth's own
                # handler (a Python call per event costs a few per cent of the render).
                if SYSEX in data or 0xF7 in data:  # a stray byte of that value only takes the slower path
                    handler = self._keep_interpolation(synth.synth)
                    lib.fluid_player_set_playback_callback(player, handler, None)
            if isinstance(midi, bytes):
                status = lib.fluid_player_add_mem(player, midi, len(midi))
            else:
                status = fs.fluid_player_add(player, os.fsencode(midi))  # the name's bytes, UTF-8 or not
            if status != fs.FLUID_OK:
                raise RenderError("unparseable", "FluidSynth's player cannot open the file")
            fs.fluid_player_play(player)
            stopped_early = False
            while fs.fluid_player_get_status(player) == fs.FLUID_PLAYER_PLAYING:
                if written >= max_frames:
                    stopped_early = True
                    break
                write_block()
            if not stopped_early:
                # The release of the last notes (and the reverb) after the player stops.
                played = written
                while (written - played < tail_blocks * BLOCK_FRAMES
                       and fs.fluid_synth_get_active_voice_count(synth.synth) > 0):
                    write_block()
        finally:
            fs.fluid_player_stop(player)
            fs.delete_fluid_player(player)
            # Take the SoundFont back before the synth is deleted, or it would go with it.
            lib.fluid_synth_remove_sfont(synth.synth, sfont)
            synth.delete()
        return output[:, :written]

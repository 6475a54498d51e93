"""MIDI-domain augmentation: seeded transforms of a MIDI file (transposition, tempo, program, SoundFont).

The render stage renders ``render.augment.copies`` extra WAVs of every MIDI
source, each from the source transformed by :func:`apply_augmentation` with a
transform drawn by :func:`draw_augmentation`; the clip stage keeps their
clips for training tracks only.  Each copy's draws come from a generator
seeded by ``render.augment.seed``, the source's path and the copy's number
alone, so adding or removing a file never changes another file's copies.

What a copy's record means, for anyone aligning it with the MIDI notes:
``transpose`` semitones are added to every pitch of the melodic parts (drums,
General MIDI channel 10, are left alone; notes pushed outside 0 .. 127 are
dropped), and time ``t`` in the copy's WAV is time ``t * tempo`` of the
source (a copy with ``tempo`` 1.1 is played 10 % faster and lasts 1 / 1.1 as
long), to within a microsecond per beat (MIDI tempos are whole microseconds).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicid.midi import DRUM_CHANNEL, force_program
from musicid.params import AugmentParams

DEFAULT_TEMPO = 500_000  # microseconds per beat of a MIDI file before its first tempo event (120 bpm)
TEMPO_DECIMALS = 4  # a copy's tempo factor is rounded to this, so the record holds what was applied
_NOTE_MESSAGES = ("note_on", "note_off", "polytouch")


@dataclass(frozen=True)
class Augmentation:
    """One copy's transform."""

    transpose: int  # semitones added to every melodic pitch
    tempo: float  # speed factor: WAV time t is source MIDI time t * tempo
    program: int | None  # General MIDI program of every melodic part, None: unchanged
    soundfont: str  # path of the SoundFont the copy is rendered with

    def record(self, output: str) -> dict:
        """The copy's entry in the render report's ``augmented`` list."""
        return {"output": output, "transpose": self.transpose, "tempo": self.tempo, "program": self.program,
                "soundfont": Path(self.soundfont).name}


def copy_seed(seed: int, source: str, copy: int) -> int:
    """64-bit seed of copy ``copy`` (1 ..) of ``source`` (its path in data/raw, e.g. ``bach/x.mid``)."""
    digest = hashlib.sha256(f"{seed}\0{source}\0{copy}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def draw_augmentation(augment: AugmentParams, soundfonts: list[str], source: str, copy: int) -> Augmentation:
    """The transform of copy ``copy`` of ``source``: uniform draws within ``augment``'s ranges.

    ``soundfonts`` are the render's own (``render.soundfonts``), drawn from
    when ``augment.soundfonts`` is empty.  Every draw is made whatever the
    ranges, in a fixed order, so that changing one range leaves the others'
    draws as they were.
    """
    rng = np.random.default_rng(copy_seed(augment.seed, source, copy))
    transpose = int(rng.integers(-augment.transpose, augment.transpose + 1))
    tempo = round(float(1.0 + rng.uniform(-augment.tempo, augment.tempo)), TEMPO_DECIMALS)
    program_index = int(rng.integers(0, max(len(augment.programs), 1)))
    choices = list(augment.soundfonts) or list(soundfonts)
    soundfont_index = int(rng.integers(0, len(choices)))
    program = augment.programs[program_index] if augment.programs else None
    return Augmentation(transpose, tempo, program, choices[soundfont_index])


def transpose_midi(midi, semitones: int) -> int:
    """Shift every note of the melodic channels by ``semitones``, in place; returns how many notes were dropped.

    midi: a mido MidiFile.  A note-on, note-off or aftertouch message whose
    pitch would leave 0 .. 127 is removed (its delta time passes on to the
    next message, so nothing else moves); a note-on and its note-off share a
    pitch, so both go.  Drums (channel 10) keep their keys: on a drum channel
    a key is an instrument, not a pitch.
    """
    if semitones == 0:
        return 0
    dropped = 0
    for track in midi.tracks:
        kept, carried = [], 0
        for message in track:
            if message.type in _NOTE_MESSAGES and message.channel != DRUM_CHANNEL:
                pitch = message.note + semitones
                if not 0 <= pitch <= 127:
                    carried += message.time
                    dropped += message.type == "note_on" and message.velocity > 0
                    continue
                message = message.copy(note=pitch)
            kept.append(message.copy(time=message.time + carried) if carried else message)
            carried = 0
        track[:] = kept
    return dropped


def scale_tempo(midi, factor: float) -> None:
    """Play ``midi`` (a mido MidiFile, changed in place) ``factor`` times as fast.

    Every tempo event's microseconds per beat is divided by ``factor``, so
    every event (notes, controllers, pitch bends, later tempo changes) moves
    to ``1 / factor`` of its time.  A file whose tempo is not set at its start
    plays at 120 bpm until its first tempo event; that opening tempo is
    written out at tick 0 so that it is scaled too.
    """
    import mido

    if factor == 1.0:
        return
    at_start = False
    for track in midi.tracks:
        tick = 0
        for index, message in enumerate(track):
            tick += message.time
            if message.type == "set_tempo":
                at_start = at_start or tick == 0
                track[index] = message.copy(tempo=max(1, min(0xFFFFFF, round(message.tempo / factor))))
    if not at_start and midi.tracks:
        midi.tracks[0].insert(0, mido.MetaMessage("set_tempo", tempo=round(DEFAULT_TEMPO / factor), time=0))


def apply_augmentation(midi, augmentation: Augmentation) -> None:
    """Transform ``midi`` (a mido MidiFile) in place: program, then transposition, then tempo."""
    if augmentation.program is not None:
        force_program(midi, augmentation.program)
    transpose_midi(midi, augmentation.transpose)
    scale_tempo(midi, augmentation.tempo)

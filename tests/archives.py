"""Archives built by the tests: good ones and hostile ones."""

from __future__ import annotations

import io
import tarfile
import zipfile


def midi_bytes(pitch: int = 60) -> bytes:
    """A valid one-note MIDI file (different pitches give different bytes)."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    instrument = pretty_midi.Instrument(program=0)
    instrument.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=0.0, end=0.5))
    midi.instruments.append(instrument)
    buffer = io.BytesIO()
    midi.write(buffer)
    return buffer.getvalue()


def wav_bytes(seconds: float = 0.1, sample_rate: int = 8000, value: float = 0.25) -> bytes:
    """A 440 Hz tone of amplitude ``value`` (0: digital silence, which download's picks refuse)."""
    import numpy as np
    import soundfile

    buffer = io.BytesIO()
    tone = value * np.sin(2 * np.pi * 440.0 * np.arange(int(seconds * sample_rate)) / sample_rate)
    soundfile.write(buffer, tone.astype(np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz", links: dict[str, tuple[str, bytes]] = None,
              ) -> bytes:
    """Regular members, plus ``links``: name -> (kind, target) with kind in sym/hard/fifo/chr."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                         "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE}[kind]
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def parts_midi(parts: list[list[int]], beat: float = 0.5, transpose: int = 0, program: int = 0) -> bytes:
    """A MIDI file of one track per part, each playing its pitches one after another, ``beat`` seconds each
    (another beat: the same notes in other note values)."""
    import io

    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    for pitches in parts:
        instrument = pretty_midi.Instrument(program=program)
        for step, pitch in enumerate(pitches):
            instrument.notes.append(pretty_midi.Note(velocity=80, pitch=pitch + transpose, start=step * beat,
                                                     end=(step + 1) * beat))
        midi.instruments.append(instrument)
    buffer = io.BytesIO()
    midi.write(buffer)
    return buffer.getvalue()


def tune(seed: int, length: int = 80, low: int = 55) -> list[int]:
    import numpy as np

    return [int(p) for p in low + np.random.default_rng(seed).integers(0, 20, length)]


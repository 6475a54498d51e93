"""Does the answer hold when the same score is played, not typeset?

A score converted to MIDI has exact timing and one velocity; a collection of
performed MIDI files (a pianist on a keyboard) has neither. Takes MIDI sources
of a finished run (the test tracks first, then val, taken in turn from each
class, as ``benchmarks/invariance.py`` chooses them) and writes copies of each
with pretty_midi, seeded per piece:

- ``rewritten``: read and written again, nothing changed (the control: what
  the round trip through pretty_midi alone does);
- ``tempo 0.9`` and ``tempo 1.1``: played 10 % slower or faster, with
  ``musicid.augment.scale_tempo`` (the tempo change ``render.augment`` trains with);
- ``velocity``: each note's velocity drawn around its own (normal, sd 15,
  kept within 20..127);
- ``timing``: each note's onset moved by up to 30 ms (normal, sd 15 ms,
  clipped to +-30 ms, never before 0; its length kept), as a player's hands
  place them; a note that would then
  sound into the next one of its pitch in its part ends where that one
  starts (MIDI cannot hold both: the first note-off would end the two);
- ``performed``: tempo 0.95, velocity and timing together;
- ``no tempo map``: every note at the second it sounds, in a file of one tempo,
  120 beats a minute (what MIDI assumes of a file without a tempo map, such as
  a performance recorded from a keyboard): the notes' sound is the same, the
  quarter notes ``features.symbolic_piece`` counts in are half seconds;
- ``recorded``: velocity and timing drawn, and no tempo map: a keyboard
  player's file.

Each copy draws from its own seed (``musicid.augment.copy_seed`` of the
track and the copy's number).

Each model given predicts every original and every copy with
``musicid.predict`` (render, clips, features and the notes, as for any MIDI
file); the table says in how many copies the top label is the original's, and
the largest change of any class probability, and how many originals and
copies are given their own composer.  For a model with a symbolic branch a
second table gives the same for its audio branch alone, on the same renders:
what a recording of the piece, which has no notes to read, gets.

    python benchmarks/performed_midi.py [--models models/model.pt ...] [--raw data/raw]
        [--clips data/clips.h5] [--pieces 12] [--verbose]

Deterministic given the models and the run's files.
"""

from __future__ import annotations

import io
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import h5py
import mido
import numpy as np
import pretty_midi

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "benchmarks"))

from invariance import choose_pieces, run_arguments  # noqa: E402
from musicid.augment import copy_seed, scale_tempo  # noqa: E402
from musicid.h5 import read_strings  # noqa: E402
from musicid.predict import Predictor  # noqa: E402
from musicid.symbolic import MAX_TICKS  # noqa: E402

VARIANTS = ("rewritten", "tempo 0.9", "tempo 1.1", "velocity", "timing", "performed", "no tempo map", "recorded")
WAYS = {"notes": "the MIDI files, as predict names them (audio and notes):",
        "audio": "the audio branch alone (what a recording of them gets; symbolic models only):"}


def _velocities(midi: pretty_midi.PrettyMIDI, rng: np.random.Generator) -> None:
    for instrument in midi.instruments:
        for note in instrument.notes:
            note.velocity = int(np.clip(round(note.velocity + rng.normal(0.0, 15.0)), 20, 127))


def _timing(midi: pretty_midi.PrettyMIDI, rng: np.random.Generator) -> None:
    for instrument in midi.instruments:
        for note in instrument.notes:
            shift = float(np.clip(rng.normal(0.0, 0.015), -0.03, 0.03))
            length = note.end - note.start
            note.start = max(0.0, note.start + shift)
            note.end = note.start + length
        following: dict[int, pretty_midi.Note] = {}  # the next onset of each pitch, walking back in time
        for note in sorted(instrument.notes, key=lambda n: (n.start, n.end), reverse=True):
            later = following.get(note.pitch)
            if later is not None and note.start < later.start < note.end:
                note.end = later.start
            following[note.pitch] = note


def variant(source: Path, name: str, seed: int) -> pretty_midi.PrettyMIDI:
    """The copy ``name`` of ``source`` (see the module docstring), its randomness seeded by ``seed``."""
    if name not in VARIANTS:
        raise ValueError(name)
    midi = mido.MidiFile(source, clip=True)
    if name.startswith("tempo ") or name == "performed":
        scale_tempo(midi, 0.95 if name == "performed" else float(name.split()[1]))
    data = io.BytesIO()
    midi.save(file=data)
    data.seek(0)
    # A long music21 export passes pretty_midi's 10 million ticks: allowed as musicid.symbolic allows it.
    pretty_midi.pretty_midi.MAX_TICK = max(pretty_midi.pretty_midi.MAX_TICK, MAX_TICKS)
    played = pretty_midi.PrettyMIDI(data)
    rng = np.random.default_rng(seed)
    if name in ("velocity", "performed", "recorded"):
        _velocities(played, rng)
    if name in ("timing", "performed", "recorded"):
        _timing(played, rng)
    if name in ("no tempo map", "recorded"):
        return _without_tempo_map(played)
    return played


def _without_tempo_map(midi: pretty_midi.PrettyMIDI) -> pretty_midi.PrettyMIDI:
    """The notes (and controls) of ``midi`` at the seconds they sound, in a file of one tempo, 120 beats a minute,
    without its time and key signatures (which count in beats), at 960 ticks a beat (about half a millisecond)."""
    flat = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=120.0)
    flat.instruments = midi.instruments
    return flat


def composers(clips: Path) -> dict[str, str]:
    """Each track's label in the run."""
    with h5py.File(clips, "r") as table:
        names = [str(name) for name in table.attrs["label_names"]]
        return {track: names[label] for track, label in zip(read_strings(table["track"]), table["label"][:])}


def _answers(predictor: Predictor, path: Path, top: int, what: str) -> tuple[list, list]:
    """(labels with the notes, labels of the audio branch alone) of one MIDI file, as predict gives them for the
    file and for a recording of it (an audio file gets the audio branch alone: no notes to read)."""
    prepared = predictor.prepare(path)
    if prepared.prediction.error:
        raise SystemExit(f"performed_midi: {what}: {prepared.prediction.error}")
    return (predictor.score(prepared, top).labels,
            predictor.score(replace(prepared, notes=None), top).labels)


def measure(model: Path, pieces: list[tuple[str, Path]], truth: dict[str, str], scratch: Path) -> dict:
    predictor = Predictor(model)
    top = len(predictor.label_names)
    ways = ("notes", "audio") if predictor.uses_symbolic else ("notes",)
    same = {way: {name: 0 for name in VARIANTS} for way in ways}
    right = {way: {name: 0 for name in ("original", *VARIANTS)} for way in ways}
    largest_change = {way: {name: 0.0 for name in VARIANTS} for way in ways}
    lines = []
    for index, (track, source) in enumerate(pieces):
        originals = dict(zip(("notes", "audio"), _answers(predictor, source, top, str(source))))
        for way in ways:
            right[way]["original"] += originals[way][0][0] == truth[track]
        row = [f"{track}: {originals['notes'][0][0]} {originals['notes'][0][1]:.2f}"]
        for number, name in enumerate(VARIANTS, start=1):
            path = scratch / f"{index:03d}-{name.replace(' ', '_')}.mid"
            variant(source, name, seed=copy_seed(0, track, number)).write(str(path))
            copies = dict(zip(("notes", "audio"), _answers(predictor, path, top, f"{name} copy of {source}")))
            for way in ways:
                copy, reference = copies[way], dict(originals[way])
                same[way][name] += copy[0][0] == originals[way][0][0]
                right[way][name] += copy[0][0] == truth[track]
                change = max(abs(p - reference[label]) for label, p in copy)
                largest_change[way][name] = max(largest_change[way][name], change)
            row.append(f"{name} -> {copies['notes'][0][0]} {copies['notes'][0][1]:.2f}")
        lines.append("; ".join(row))
    return {"ways": ways, "same": same, "right": right, "largest_change": largest_change, "lines": lines}


def main(argv: list[str] | None = None) -> int:
    parser, args = run_arguments(__doc__.splitlines()[0], argv, "raw")
    pieces = []
    for track, _ in choose_pieces(args.clips, args.pieces):  # a track is its source's path under the raw folder
        source = args.raw / track
        if source.suffix.lower() not in (".mid", ".midi") or not source.is_file():
            parser.error(f"track {track} is not a MIDI file under {args.raw} (this benchmark needs MIDI sources)")
        pieces.append((track, source))
    total = len(pieces) * len(VARIANTS)
    print(f"{len(pieces)} pieces x {len(VARIANTS)} copies = {total}")
    for model in args.models:
        with tempfile.TemporaryDirectory(prefix="musicid-performed-") as scratch:
            result = measure(model, pieces, composers(args.clips), Path(scratch))
        print(f"{model}: top label unchanged in " + ", ".join(
            f"{sum(result['same'][way].values())} of {total} ({way})" for way in result["ways"]))
        for way in result["ways"]:
            print(f"  {WAYS[way]}")
            print(f"  {'copy':<12} {'top label unchanged':>20} {'largest change of p':>20} {'own composer':>13}")
            print(f"  {'original':<12} {'':>20} {'':>20} {result['right'][way]['original']:>13}")
            for name in VARIANTS:
                unchanged = f"{result['same'][way][name]} of {len(pieces)}"
                print(f"  {name:<12} {unchanged:>20} {result['largest_change'][way][name]:>20.3f} "
                      f"{result['right'][way][name]:>13}")
        if args.verbose:
            print("\n".join(f"  {line}" for line in result["lines"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Whether the instruments of a collection's MIDI files name its labels by themselves.

A model learns whatever tells its classes apart most easily.  When every file
of one label comes from one source that sequences for string quartet and
another label's from one that sequences for "string ensemble", the timbre names
the label before any note does, and the scores measure the sources, not the
composers (the music21 corpus is such a case: see the README).  The render
stage records the General MIDI programs each MIDI file plays (its record's
``programs``, -1 for drums) and warns when these alone name some label for
most of its files.

An instrument names a file's label when at least one other file of the label
plays it and it is at least RATIO times as common among the label's other
files as among the other labels' files (a collection all on the piano names
nothing, however lopsided: the piano is then as common in every label); a file
is named by its instruments when one of them names its label, or when none of
them is heard in another label at all (an orchestra against pianos).  A label
is named when at least two of its files, and at least half, are.
"""

from __future__ import annotations

from collections import Counter

DRUMS = -1  # the programs' stand-in for drums (channel 10), as musicid.midi counts them
RATIO = 4.0  # how many times as common among a label's other files as among the other labels' files


def instrument_name(program: int) -> str:
    """A General MIDI program's instrument name (pretty_midi's), or "Drums"."""
    if program == DRUMS:
        return "Drums"
    import pretty_midi

    return pretty_midi.program_to_instrument_name(program)


def _played(records: list[dict]) -> list[tuple[str, frozenset[int]]]:
    """(label, programs) of each record with programs: a MIDI file that was rendered."""
    return [(record["label"], frozenset(record["programs"])) for record in records
            if record.get("programs") is not None and record.get("label") is not None
            and record["status"] != "rejected"]


def marked_labels(records: list[dict]) -> dict[str, tuple[int, int, int, int, int]]:
    """label -> (its files named by their instruments, its files with programs, the instrument that names the
    most of them, how many of its files play that instrument, how many of the other labels' files do) for each
    label named (see the module's docstring), in label order.

    ``records``: the render report's records; those without ``programs`` (audio files, rejected sources)
    are left out, and nothing is named unless two labels have files with programs.
    """
    files = _played(records)
    sizes = Counter(label for label, _ in files)
    if len(sizes) < 2:
        return {}
    playing: Counter = Counter()  # (label, program) -> files of the label that play it
    everywhere: Counter = Counter()  # program -> files that play it
    for label, programs in files:
        for program in programs:
            playing[label, program] += 1
            everywhere[program] += 1
    total = len(files)

    def names(label: str, program: int) -> bool:
        """Whether ``program`` names ``label`` for one of its files that plays it."""
        own = playing[label, program] - 1  # the label's other files that play it
        if own < 1:
            return False
        own_rate = own / (sizes[label] - 1)
        other_rate = (everywhere[program] - playing[label, program]) / (total - sizes[label])
        return own_rate >= RATIO * other_rate

    def elsewhere(label: str, program: int) -> bool:
        return everywhere[program] > playing[label, program]

    named = {}
    for label in sorted(sizes):
        marked = [programs for owner, programs in files if owner == label and programs and (
            any(names(label, program) for program in programs)
            or not any(elsewhere(label, program) for program in programs))]
        if len(marked) >= 2 and 2 * len(marked) >= sizes[label]:
            counts = Counter(program for programs in marked for program in programs)
            # the instrument of the most marked files, the one least heard elsewhere first among equals
            program = min(counts, key=lambda p: (-counts[p], everywhere[p] - playing[label, p], p))
            named[label] = (len(marked), sizes[label], program, playing[label, program],
                            everywhere[program] - playing[label, program])
    return named


def instrument_warning(records: list[dict]) -> str | None:
    """One line saying which labels the instruments name and what to do about it, or None when none is named
    (see :func:`marked_labels`)."""
    named = marked_labels(records)
    if not named:
        return None
    parts = []
    others = sum(1 for _ in _played(records))
    for label, (marked, files, instrument, own, elsewhere) in named.items():
        name = f"{instrument_name(instrument)} ({'drums' if instrument == DRUMS else instrument})"
        parts.append(f"{marked} of the {files} MIDI files of {label!r} play an instrument at least {RATIO:g} times as "
                     f"common in its files as in the other labels', or only instruments no other label plays (most "
                     f"of them: {name}, in {own} of its {files} files against {elsewhere} of the other labels' "
                     f"{others - files})")
    # What render.program would leave (every melodic part on one program, the drums as they are), and what
    # taking the drums out would.
    one_program = [{**record, "programs": sorted({p if p == DRUMS else 0 for p in record["programs"]})}
                   if record.get("programs") is not None else record for record in records]
    no_drums = [{**record, "programs": sorted(set(record["programs"]) - {DRUMS})}
                if record.get("programs") is not None else record for record in records]
    melodic = "`render.program: 0` plays every melodic part of every file on the piano (drums stay drums)"
    drums = ("the drums (channel 10), which `render.program` leaves as they are, tell them apart: remove the drum "
             "parts from the files, or leave out the files that have them")
    hints = [hint for hint, left in ((melodic, no_drums), (drums, one_program)) if marked_labels(left)]
    hint = "; ".join(hints or [melodic, drums])
    return (f"the instruments alone tell labels apart: {'; '.join(parts)}. A model may learn the instrumentation "
            f"rather than the music: right when the instruments are the composers' own, not when they are one "
            f"source's habit; {hint}. Each file's programs are in its record's `programs`.")

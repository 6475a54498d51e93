"""Whether the instruments of a collection's MIDI files name its labels by themselves.

A model learns whatever tells its classes apart most easily.  When every file
of one label comes from one source that sequences for string quartet and
another label's from one that sequences for "string ensemble", the timbre names
the label before any note does, and the scores measure the sources, not the
composers (the music21 corpus is such a case: see the README).  The render
stage records the General MIDI programs each MIDI file plays (its record's
``programs``, -1 for drums) and warns when these alone name some label for
most of its files.

A file is named by its instruments when the other files that play its set of
instruments are of its label at least halfway from the label's share of all
files to all of them (a collection all on the piano names nothing, however
lopsided: the instruments then say no more than the class sizes); a file whose
set no other file plays is named only when none of its instruments is heard
in another label (an orchestra against pianos: a lone file of its own set
otherwise says nothing).  A label is named when at least two of its files,
and at least half, are.
"""

from __future__ import annotations

from collections import Counter, defaultdict

DRUMS = -1  # the programs' stand-in for drums (channel 10), as musicid.midi counts them


def instrument_name(program: int) -> str:
    """A General MIDI program's instrument name (pretty_midi's), or "Drums"."""
    if program == DRUMS:
        return "Drums"
    import pretty_midi

    return pretty_midi.program_to_instrument_name(program)


def marked_labels(records: list[dict]) -> dict[str, tuple[int, int, tuple[int, ...], int, int]]:
    """label -> (its files named by their instruments, its files with programs, the commonest set of programs of
    those named, its files that play that set, other labels' files that play it) for each label named (see the
    module's docstring), in label order.

    ``records``: the render report's records; those without ``programs`` (audio files, rejected sources)
    are left out, and nothing is named unless two labels have files with programs.
    """
    files: dict[tuple[str, tuple[int, ...]], int] = Counter()  # (label, set of programs) -> files
    for record in records:
        if record.get("programs") is not None and record.get("label") is not None and record["status"] != "rejected":
            files[record["label"], tuple(record["programs"])] += 1
    labels = sorted({label for label, _ in files})
    if len(labels) < 2:
        return {}
    by_set: dict[tuple[int, ...], Counter] = defaultdict(Counter)
    heard: dict[str, set[int]] = defaultdict(set)
    sizes: Counter = Counter()
    for (label, played), count in files.items():
        by_set[played][label] += count
        heard[label].update(played)
        sizes[label] += count
    total = sizes.total()

    def names(label: str, played: tuple[int, ...]) -> bool:
        others = by_set[played] - Counter({label: 1})  # the other files that play this set
        if not others:
            elsewhere = set().union(*(heard[other] for other in labels if other != label))
            return not set(played) & elsewhere
        share = sizes[label] / total
        return others[label] / others.total() >= (1 + share) / 2

    named = {}
    for label in labels:
        right = Counter({played: count for (owner, played), count in files.items()
                         if owner == label and names(owner, played)})
        if right.total() >= 2 and 2 * right.total() >= sizes[label]:
            commonest, count = min(right.items(), key=lambda item: (-item[1], item[0]))
            named[label] = (right.total(), sizes[label], commonest, count, by_set[commonest].total() - count)
    return named


def instrument_warning(records: list[dict], program: int | None) -> str | None:
    """One line saying which labels the instruments name and what to do about it, or None when none is named.

    ``program``: ``render.program`` (or the program the download stage wrote the files on), None when each
    file plays the instruments it names.
    """
    named = marked_labels(records)
    if not named:
        return None
    parts = []
    for label, (right, files, commonest, count, others) in named.items():
        instruments = ", ".join(f"{instrument_name(p)} ({'drums' if p == DRUMS else p})" for p in commonest)
        parts.append(f"{right} of the {files} MIDI files of {label!r} play instruments that name it (commonest: "
                     f"{instruments}, {count} of its files and {others} of other labels')")
    if program is None:
        hint = ("`render.program: 0` plays every melodic part of every file on the piano (drums stay drums), "
                "so that the model learns the music")
    else:
        hint = (f"every melodic part already plays program {program} (render.program), so the drums (channel 10) "
                f"tell them apart: remove the drum parts from the files, or the files of the labels that have them")
    return (f"the instruments alone tell labels apart: {'; '.join(parts)}. A model may learn who sequenced the "
            f"files rather than who wrote the music; {hint}. Each file's programs are in its record's `programs`.")

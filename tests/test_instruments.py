"""The programs a MIDI file plays, and the render stage's warning when they name the labels by themselves."""

from __future__ import annotations

import io

import mido

from musicid.instruments import instrument_warning, marked_labels
from musicid.midi import read_midi_data


def records(*files):
    """Render records from (label, programs) pairs; programs None: an audio file."""
    return [{"source": f"{label}/{index}.mid", "label": label, "status": "rendered", "programs": programs}
            if programs is not None else {"source": f"{label}/{index}.wav", "label": label, "status": "rendered"}
            for index, (label, programs) in enumerate(files)]


def test_one_source_s_string_quartet_against_another_s_string_ensemble_names_that_label():
    # The music21 corpus's case: Beethoven as violin, violin, viola, cello; Haydn and Mozart as string ensemble.
    quartets = [*[("beethoven", [40, 41, 42])] * 16, ("beethoven", [48]),
                *[("mozart", [48])] * 11, ("mozart", [40, 41, 42]), ("mozart", [40, 42]),
                *[("haydn", [48])] * 5, *[("haydn", [40, 41, 42, 43])] * 2]
    # For a Beethoven quartet file, 15 of the 16 other files of its set are Beethoven's: more than halfway
    # from beethoven's share of the files (17 of 39) to all of them; 16 of its 17 files are so named. For a
    # Mozart file of string ensemble, 10 of the 16 others (5 Haydn, 1 Beethoven): less than halfway from 13
    # of 39. Haydn's own set names 2 of its 7 files: not half.
    assert marked_labels(records(*quartets)) == {"beethoven": (16, 17, (40, 41, 42), 16, 1)}


def test_one_instrument_for_every_file_names_nothing_however_lopsided():
    assert marked_labels(records(*[("chopin", [0])] * 5, *[("bach", [0])] * 40)) == {}
    assert marked_labels(records(*[("chopin", [0])] * 5)) == {}  # one label: nothing to tell apart
    # A piano and a harpsichord in both labels, in other proportions: the instruments lean, they do not name.
    assert marked_labels(records(*[("a", [0])] * 6, *[("a", [6])] * 4, *[("b", [0])] * 4, *[("b", [6])] * 6)) == {}


def test_an_orchestra_against_pianos_is_named_even_when_no_two_orchestral_files_share_their_set():
    named = marked_labels(records(("beethoven", [40, 41, 42, 56, 73]), ("beethoven", [40, 41, 42, 60, 71]),
                                  ("beethoven", [0]), *[("chopin", [0])] * 6))
    # and the piano then names chopin: 6 of the 7 piano files are Chopin's, where 6 of 9 files are.
    assert named == {"beethoven": (2, 3, (40, 41, 42, 56, 73), 1, 0), "chopin": (6, 6, (0,), 6, 1)}


def test_a_lone_file_of_its_own_set_says_nothing_and_half_the_label_is_needed():
    # One Haydn file on the harpsichord, unlike everything else: a lone file, not a habit of the label's source.
    assert marked_labels(records(("haydn", [0, 6]), *[("haydn", [0])] * 3, *[("mozart", [0])] * 4)) == {}
    # Two files of their own set, but of ten: not half of the label.
    assert marked_labels(records(*[("haydn", [0, 6])] * 2, *[("haydn", [0])] * 8, *[("mozart", [0])] * 4)) == {}
    assert marked_labels(records(*[("haydn", [0, 6])] * 5, *[("haydn", [0])] * 5, *[("mozart", [0])] * 4)) == \
        {"haydn": (5, 10, (0, 6), 5, 0)}


def test_audio_files_and_rejected_sources_are_left_out():
    files = records(*[("a", [0])] * 3, *[("b", [19])] * 3, ("b", None))
    files.append({"source": "a/x.mid", "label": "a", "status": "rejected", "reason": "no_notes"})
    assert marked_labels(files) == {"a": (3, 3, (0,), 3, 0), "b": (3, 3, (19,), 3, 0)}
    assert marked_labels(records(*[("a", [0])] * 3, *[("b", None)] * 3)) == {}


def test_the_warning_names_the_instruments_and_what_to_set():
    files = records(*[("a", [40, 41, 42])] * 3, *[("b", [0])] * 3)
    warning = instrument_warning(files, None)
    assert "3 of the 3 MIDI files of 'a' play instruments that name it (commonest: Violin (40), Viola (41), " \
           "Cello (42), 3 of its files and 0 of other labels')" in warning
    assert "`render.program: 0`" in warning
    # With every melodic part on one program only the drums can differ: the advice says so.
    warning = instrument_warning(records(*[("a", [0, -1])] * 3, *[("b", [0])] * 3), 0)
    assert "Drums (drums)" in warning and "remove the drum parts" in warning
    assert instrument_warning(records(*[("a", [0])] * 3, *[("b", [0])] * 3), None) is None


def midi_bytes(*tracks, ticks_per_beat=480) -> bytes:
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    for messages in tracks:
        midi.tracks.append(mido.MidiTrack(messages))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def note(channel, pitch=60, time=0, length=240):
    return [mido.Message("note_on", channel=channel, note=pitch, velocity=80, time=time),
            mido.Message("note_off", channel=channel, note=pitch, time=length)]


def test_the_programs_heard_follow_program_changes_across_tracks_drums_and_muted_channels():
    data = midi_bytes(
        [mido.Message("program_change", channel=0, program=40, time=0),
         mido.Message("program_change", channel=0, program=42, time=960)],  # for the second note of channel 0
        [*note(0), *note(0, time=960)],
        [mido.Message("program_change", channel=1, program=73, time=0), *note(1)],
        [mido.Message("control_change", channel=2, control=7, value=0, time=0),  # a muted part is not heard
         mido.Message("program_change", channel=2, program=56, time=0), *note(2)],
        [mido.Message("program_change", channel=9, program=5, time=0), *note(9, pitch=36)],  # drums stay drums
        [mido.Message("program_change", channel=3, program=19, time=0)],  # a program that plays no note
    )
    assert read_midi_data(data).programs == (-1, 40, 42, 73)
    assert read_midi_data(midi_bytes(note(0))).programs == (0,)  # no program change: the piano
    # render.program puts every melodic part on one program; the drums stay drums
    assert read_midi_data(data, program=0).programs == (-1, 0)


def test_a_note_on_of_velocity_zero_plays_no_program():
    data = midi_bytes([mido.Message("program_change", channel=1, program=30, time=0),
                       mido.Message("note_on", channel=1, note=60, velocity=0, time=0), *note(0)])
    assert read_midi_data(data).programs == (0,)

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
    # The corpus's quartets as music21 writes them (dataset.program null; 38 files, 7 unconvertible and 2 slower
    # than dataset.timeout_s left out): Beethoven's as violins, viola and cello, most of Haydn's and Mozart's as
    # string ensemble.
    quartets = [*[("beethoven", [40, 41, 42])] * 16, ("beethoven", [40, 42]),
                ("haydn", [0]), ("haydn", [40, 41, 42]), *[("haydn", [48])] * 5,
                ("mozart", [0]), *[("mozart", [40, 41, 42])] * 2, *[("mozart", [48])] * 11]
    # The violin: in 16 of beethoven's 16 other files, 3 of the other labels' 21 (7 times as common); string
    # ensemble: in 10 of mozart's 13 other files and 6 of the other labels' 24 (3.1 times), in 4 of haydn's 6
    # other files and 12 of the others' 31 (1.7 times): not RATIO.
    assert marked_labels(records(*quartets)) == {"beethoven": (17, 17, 40, 17, 3)}
    assert "17 of the 17 MIDI files of 'beethoven' play an instrument at least 4 times as common in its files as " \
           "in the other labels', or only instruments no other label plays (most of them: Violin (40), in 17 of " \
           "its 17 files against 3 of the other labels' 21)" in instrument_warning(records(*quartets))


def test_one_instrument_for_every_file_names_nothing_however_lopsided():
    assert marked_labels(records(*[("chopin", [0])] * 5, *[("bach", [0])] * 40)) == {}
    assert marked_labels(records(*[("chopin", [0])] * 5)) == {}  # one label: nothing to tell apart
    # A few odd files in the small label: the piano, in every bach file and 4 of chopin's 5, names nothing.
    assert marked_labels(records(*[("bach", [0])] * 40, ("chopin", [6]), ("chopin", [0, 1]), ("chopin", [0, 2]),
                                 *[("chopin", [0])] * 2)) == {}
    # A piano and a harpsichord in both labels, in other proportions: the instruments lean, they do not name.
    assert marked_labels(records(*[("a", [0])] * 6, *[("a", [6])] * 4, *[("b", [0])] * 4, *[("b", [6])] * 6)) == {}


def test_an_instrument_names_a_label_whatever_else_its_files_play():
    # Drums in every pop file and no classical one, each file with instruments of its own beside them.
    pop = [("pop", [-1, 0, 24 + index]) for index in range(6)]
    classical = [("classical", [0, 40 + index]) for index in range(6)]
    assert marked_labels(records(*pop, *classical)) == {"pop": (6, 6, -1, 6, 0)}


def test_an_orchestra_against_pianos_is_named_even_when_no_two_orchestral_files_share_an_instrument():
    named = marked_labels(records(("beethoven", [41, 56, 73]), ("beethoven", [42, 60, 71]), ("beethoven", [0]),
                                  *[("chopin", [0])] * 6))
    assert named == {"beethoven": (2, 3, 41, 1, 0)}


def test_a_lone_file_says_nothing_and_half_the_label_is_needed():
    # One Haydn file on the harpsichord: a lone file, not a habit of the label's source.
    assert marked_labels(records(("haydn", [0, 6]), *[("haydn", [0])] * 3, *[("mozart", [0])] * 4)) == {}
    # Two files on it, but of ten: not half of the label.
    assert marked_labels(records(*[("haydn", [0, 6])] * 2, *[("haydn", [0])] * 8, *[("mozart", [0])] * 4)) == {}
    assert marked_labels(records(*[("haydn", [0, 6])] * 5, *[("haydn", [0])] * 5, *[("mozart", [0])] * 4)) == \
        {"haydn": (5, 10, 6, 5, 0)}


def test_audio_files_and_rejected_sources_are_left_out():
    files = records(*[("a", [0])] * 3, *[("b", [19])] * 3, ("b", None))
    files.append({"source": "a/x.mid", "label": "a", "status": "rejected", "reason": "no_notes"})
    assert marked_labels(files) == {"a": (3, 3, 0, 3, 0), "b": (3, 3, 19, 3, 0)}
    assert marked_labels(records(*[("a", [0])] * 3, *[("b", None)] * 3)) == {}


def test_the_warning_says_what_to_set_and_when_that_would_not_do():
    warning = instrument_warning(records(*[("a", [40, 41, 42])] * 3, *[("b", [0])] * 3))
    assert "3 of the 3 MIDI files of 'a' play an instrument at least 4 times as common in its files as in the " \
           "other labels', or only instruments no other label plays (most of them: Violin (40), in 3 of its 3 " \
           "files against 0 of the other labels' 3)" in warning and "`render.program: 0`" in warning
    # Drums beside the melodic parts: render.program would leave them, so the advice is about the drums,
    # whether render.program is set (every melodic part on one program) or not.
    for pop, classical in (([-1, 0, 33], [0, 33]), ([-1, 0], [0])):
        warning = instrument_warning(records(*[("pop", pop)] * 3, *[("classical", classical)] * 3))
        assert "Drums (drums)" in warning and "remove the drum parts" in warning and "render.program: 0" not in warning
    # Both: drums and a guitar against violins. Each way out is named.
    warning = instrument_warning(records(*[("pop", [-1, 24])] * 4, *[("classical", [40])] * 4))
    assert "`render.program: 0`" in warning and "remove the drum parts" in warning
    assert instrument_warning(records(*[("a", [0])] * 3, *[("b", [0])] * 3)) is None


def midi_bytes(*tracks, ticks_per_beat=480, kind=1) -> bytes:
    midi = mido.MidiFile(type=kind, ticks_per_beat=ticks_per_beat)
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


def test_a_reset_of_all_controllers_brings_back_the_expression_not_the_volume():
    # FluidSynth plays a note after expression 0 and a reset (CC 121), not one after volume 0 and a reset.
    reset = mido.Message("control_change", channel=0, control=121, value=0)
    expression = mido.Message("control_change", channel=0, control=11, value=0)
    volume = mido.Message("control_change", channel=1, control=7, value=0)
    data = midi_bytes([expression, reset, mido.Message("program_change", channel=0, program=40), *note(0)],
                      [volume, mido.Message("control_change", channel=1, control=121, value=0),
                       mido.Message("program_change", channel=1, program=73), *note(1)])
    assert read_midi_data(data).programs == (40,)


def test_render_program_reaches_every_track_of_a_type_2_file():
    # FluidSynth's player plays a type-2 file's tracks together: a part with no program change of its own
    # would stay on the piano if the program were set only where the file sets one.
    data = midi_bytes([*note(0)], [mido.Message("program_change", channel=1, program=19), *note(1)], kind=2)
    assert read_midi_data(data).programs == (0, 19)
    assert read_midi_data(data, program=40).programs == (40,)

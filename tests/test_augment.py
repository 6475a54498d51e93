"""MIDI-domain augmentation: the draws, the MIDI transforms, augmented renders, names, params, predict."""

from __future__ import annotations

import io

import mido
import numpy as np
import pretty_midi
import pytest
import yaml

from musicid import render as render_module
from musicid.augment import Augmentation, apply_augmentation, draw_augmentation, scale_tempo, transpose_midi
from musicid.checks import RenderError
from musicid.params import ParamsError, parse_section
from musicid.render import assign_all_outputs, assign_outputs, render_augmented
from musicid.synth import MidiRenderer
from tests.conftest import PROJECT_ROOT, SOUNDFONT, section_params, write_midi


def augment_params(**overrides):
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["render"]
    return section_params("render", augment={**raw["augment"], **overrides})


def mido_file(path) -> mido.MidiFile:
    return mido.MidiFile(str(path))


def notes_of(midi: mido.MidiFile) -> list[tuple[int, float, float, bool]]:
    """(pitch, start s, end s, is_drum) of every note, sorted, read back through pretty_midi."""
    buffer = io.BytesIO()
    midi.save(file=buffer)
    buffer.seek(0)
    parsed = pretty_midi.PrettyMIDI(buffer)
    return sorted((n.pitch, round(n.start, 6), round(n.end, 6), i.is_drum) for i in parsed.instruments
                  for n in i.notes)


# --- the draws --------------------------------------------------------------------------------------------


def test_draws_are_pinned_and_depend_only_on_seed_source_and_copy():
    augment = augment_params(programs=[0, 40, 73], seed=0).augment
    first = draw_augmentation(augment, ["/sf/A.sf2"], "bach/x.mid", 1)
    assert first == draw_augmentation(augment, ["/sf/A.sf2"], "bach/x.mid", 1)  # same inputs, same draw
    assert first == Augmentation(transpose=first.transpose, tempo=first.tempo, program=first.program,
                                 soundfont="/sf/A.sf2")
    draws = {(source, copy): draw_augmentation(augment, ["/sf/A.sf2"], source, copy)
             for source in ("bach/x.mid", "bach/y.mid") for copy in (1, 2, 3)}
    assert len(set(draws.values())) == 6  # another copy or another file: another transform
    other_seed = augment_params(programs=[0, 40, 73], seed=1).augment
    assert draw_augmentation(other_seed, ["/sf/A.sf2"], "bach/x.mid", 1) != first


def test_draws_cover_their_ranges_and_nothing_outside():
    augment = augment_params(transpose=2, tempo=0.2, programs=[5, 9],
                             soundfonts=[str(SOUNDFONT), "/other/B.sf2"]).augment
    draws = [draw_augmentation(augment, ["/unused.sf2"], f"a/{i}.mid", 1) for i in range(300)]
    assert {d.transpose for d in draws} == {-2, -1, 0, 1, 2}
    assert 0.8 <= min(d.tempo for d in draws) < 0.82 and 1.18 < max(d.tempo for d in draws) <= 1.2
    assert all(d.tempo == round(d.tempo, 4) for d in draws)
    assert {d.program for d in draws} == {5, 9}
    assert {d.soundfont for d in draws} == {str(SOUNDFONT), "/other/B.sf2"}  # never render.soundfonts then
    plain = augment_params(transpose=0, tempo=0.0).augment
    assert {(d.transpose, d.tempo, d.program, d.soundfont) for d in
            (draw_augmentation(plain, ["/r.sf2"], f"a/{i}.mid", 2) for i in range(50))} == {(0, 1.0, None, "/r.sf2")}


# --- the MIDI transforms ----------------------------------------------------------------------------------


def piano_and_drums(path):
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    piano = pretty_midi.Instrument(program=0)
    piano.notes += [pretty_midi.Note(100, 60, 0.0, 0.5), pretty_midi.Note(100, 125, 0.5, 1.0),
                    pretty_midi.Note(100, 64, 1.0, 1.5)]
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes.append(pretty_midi.Note(100, 36, 0.25, 0.5))
    midi.instruments += [piano, drums]
    midi.write(str(path))
    return path


def test_transposition_shifts_melodic_notes_keeps_drums_and_drops_notes_out_of_range(tmp_path):
    midi = mido_file(piano_and_drums(tmp_path / "x.mid"))
    assert transpose_midi(midi, 3) == 1  # 125 + 3 leaves the MIDI range
    assert notes_of(midi) == [(36, 0.25, 0.5, True), (63, 0.0, 0.5, False), (67, 1.0, 1.5, False)]
    midi = mido_file(tmp_path / "x.mid")
    assert transpose_midi(midi, -2) == 0
    assert notes_of(midi) == [(36, 0.25, 0.5, True), (58, 0.0, 0.5, False), (62, 1.0, 1.5, False),
                              (123, 0.5, 1.0, False)]


def tempo_changes(path):
    """Two quarter notes at 120 bpm, then a tempo change to 60 bpm, two more: notes end at 0.5, 1, 2, 3 s."""
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=500_000, time=0))
    for index, pitch in enumerate((60, 62, 64, 65)):
        if index == 2:
            track.append(mido.MetaMessage("set_tempo", tempo=1_000_000, time=0))
        track += [mido.Message("note_on", note=pitch, velocity=90, time=0),
                  mido.Message("control_change", control=64, value=127, time=240),
                  mido.Message("note_off", note=pitch, velocity=0, time=240)]
    midi.tracks.append(track)
    midi.save(str(path))
    return path


def test_tempo_scales_every_time_by_one_over_the_factor(tmp_path):
    original = notes_of(mido_file(tempo_changes(tmp_path / "t.mid")))
    assert [n[1:3] for n in original] == [(0.0, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 3.0)]
    midi = mido_file(tmp_path / "t.mid")
    scale_tempo(midi, 1.25)
    # WAV time t is MIDI time t * tempo: the copy ends at 3 / 1.25 s.
    assert notes_of(midi) == [(p, round(s / 1.25, 6), round(e / 1.25, 6), d) for p, s, e, d in original]
    pedal = [message.time for message in midi if message.type == "control_change"]
    assert pedal[0] == pytest.approx(0.25 / 1.25, abs=1e-6)  # controllers move with the notes


def test_a_file_without_an_opening_tempo_is_scaled_from_its_start(tmp_path):
    midi = mido.MidiFile(ticks_per_beat=96)
    track = mido.MidiTrack([mido.Message("note_on", note=60, velocity=90, time=0),
                            mido.Message("note_off", note=60, velocity=0, time=192)])  # 2 beats: 1 s at 120 bpm
    midi.tracks.append(track)
    scale_tempo(midi, 0.8)
    assert notes_of(midi) == [(60, 0.0, 1.25, False)]


def test_program_is_forced_on_melodic_parts_only(tmp_path):
    midi = mido_file(piano_and_drums(tmp_path / "x.mid"))
    apply_augmentation(midi, Augmentation(0, 1.0, 40, str(SOUNDFONT)))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    buffer.seek(0)
    parsed = pretty_midi.PrettyMIDI(buffer)
    assert sorted((i.program, i.is_drum) for i in parsed.instruments) == [(0, True), (40, False)]


# --- augmented renders ------------------------------------------------------------------------------------


def peak_hz(audio: np.ndarray, sample_rate: int) -> float:
    mono = audio.mean(axis=0)[: 2 * sample_rate]
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.fft.rfftfreq(len(mono), 1 / sample_rate)[np.argmax(spectrum)])


def onset_s(audio: np.ndarray, sample_rate: int, after_s: float) -> float:
    """First 10 ms frame after ``after_s`` louder than a tenth of the peak frame (s)."""
    frame = sample_rate // 100
    mono = audio.mean(axis=0)
    rms = np.sqrt(np.mean(mono[: len(mono) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    start = int(after_s * 100)
    return (start + int(np.argmax(rms[start:] > rms.max() / 10))) / 100


@pytest.fixture
def flute(tmp_path, soundfont):
    """A4 on a flute for 2 s, then silence, then A4 again from 3 to 4 s."""
    return write_midi(tmp_path / "a" / "flute.mid", [(69, 0.0, 2.0), (69, 3.0, 4.0)], program=73)


def render_with(monkeypatch, path, augmentation, **augment):
    render = augment_params(copies=1, **augment)
    monkeypatch.setattr(render_module, "draw_augmentation", lambda *args: augmentation)
    renderer = MidiRenderer(render, augment=True)
    return render_augmented(renderer, path, render, "a/flute.mid", 1), renderer


def test_a_transposed_copy_sounds_higher_by_its_semitones(monkeypatch, flute):
    (_, plain), renderer = render_with(monkeypatch, flute, Augmentation(0, 1.0, None, str(SOUNDFONT)))
    (_, up), _ = render_with(monkeypatch, flute, Augmentation(3, 1.0, None, str(SOUNDFONT)))
    rate = renderer.sample_rate
    assert peak_hz(plain, rate) == pytest.approx(440.0, rel=0.01)
    assert peak_hz(up, rate) / peak_hz(plain, rate) == pytest.approx(2 ** (3 / 12), rel=0.01)


def test_a_slower_copy_plays_its_notes_later(monkeypatch, flute):
    (_, plain), renderer = render_with(monkeypatch, flute, Augmentation(0, 1.0, None, str(SOUNDFONT)))
    (_, slow), _ = render_with(monkeypatch, flute, Augmentation(0, 0.75, None, str(SOUNDFONT)))
    rate = renderer.sample_rate
    plain_onset = onset_s(plain, rate, after_s=2.5)
    assert plain_onset == pytest.approx(3.0, abs=0.05)  # the flute's attack takes a few hundredths
    # MIDI time = WAV time * tempo: the note at 3 s of the MIDI comes at 3 / 0.75 = 4 s.
    assert onset_s(slow, rate, after_s=3.5) - plain_onset == pytest.approx(3.0 / 0.75 - 3.0, abs=0.015)


def test_a_copy_with_every_note_out_of_range_is_refused(monkeypatch, tmp_path, soundfont):
    path = write_midi(tmp_path / "a" / "high.mid", [(126, 0.0, 1.0)])
    with pytest.raises(RenderError) as raised:
        render_with(monkeypatch, path, Augmentation(3, 1.0, None, str(SOUNDFONT)))
    assert raised.value.reason == "no_notes"


def test_a_copy_made_too_long_by_its_tempo_is_refused(monkeypatch, flute):
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["render"]
    render = section_params("render", max_seconds=4.5, augment={**raw["augment"], "copies": 1})
    monkeypatch.setattr(render_module, "draw_augmentation", lambda *args: Augmentation(0, 0.8, None, str(SOUNDFONT)))
    with pytest.raises(RenderError) as raised:
        render_augmented(MidiRenderer(render, augment=True), flute, render, "a/flute.mid", 1)
    assert (raised.value.reason, raised.value.detail) == (
        "too_long", "the notes last 5 s at tempo x0.8 (render.max_seconds 4.5)")


# --- names ------------------------------------------------------------------------------------------------


def test_augmented_names_never_clash_with_real_outputs():
    fonts = ["/one/GM.sf2"]
    names = assign_all_outputs("a", ["x.mid", "x__aug1.mid", "y.wav"], fonts, 2)
    assert names == {"x.mid": (("a/x_mid.wav",), ("a/x_mid__aug1.wav", "a/x_mid__aug2.wav")),
                     "x__aug1.mid": (("a/x__aug1_mid.wav",), ("a/x__aug1_mid__aug1.wav", "a/x__aug1_mid__aug2.wav")),
                     "y.wav": (("a/y.wav",), ())}  # audio sources get no copies
    every = [name for plain, augmented in names.values() for name in plain + augmented]
    assert len(every) == len(set(every))
    # A SoundFont named like a copy: the copies take another marker.
    own = assign_all_outputs("a", ["x.mid"], ["/sf/aug1.sf2", "/sf/GM.sf2"], 1)
    assert own == {"x.mid": (("a/x__aug1.wav", "a/x__GM.wav"), ("a/x__aug_1.wav",))}


def test_copies_zero_gives_the_plain_names_and_long_names_fit_255_bytes():
    sources = ["x.mid", "x.wav", "sub/x.mid"]
    fonts = ["/one/GM.sf2", "/two/Other.sf2"]
    assert {s: plain for s, (plain, augmented) in assign_all_outputs("a", sources, fonts, 0).items()} == \
        assign_outputs("a", sources, fonts)
    long_source = "é" * 300 + ".mid"
    names = assign_all_outputs("lbl", [long_source], fonts, 16)[long_source]
    assert len(names[1]) == 16
    assert max(len(name.split("/", 1)[1].encode()) for name in names[0] + names[1]) <= 255


# --- params -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key, value, message", [
    ("copies", 17, "render.augment.copies must be <= 16, got 17"),
    ("copies", -1, "render.augment.copies must be >= 0, got -1"),
    ("transpose", 13, "render.augment.transpose must be <= 12, got 13"),
    ("tempo", 0.5, "render.augment.tempo must be < 0.5, got 0.5"),
    ("tempo", -0.1, "render.augment.tempo must be >= 0, got -0.1"),
    ("programs", [0, 128], "render.augment.programs must be General MIDI programs 0 .. 127, got 128"),
    ("programs", [4, 4], "render.augment.programs has duplicates: [4, 4]"),
    ("soundfonts", ["/a.sf2", "/a.sf2"], "render.augment.soundfonts has duplicates: ['/a.sf2', '/a.sf2']"),
    ("seed", "x", "render.augment.seed must be an integer, got 'x'"),
    ("colour", 1, "unknown key render.augment.colour (known: copies, transpose, tempo, programs, soundfonts, seed)"),
])
def test_bad_augment_params_name_the_key(key, value, message):
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["render"]
    with pytest.raises(ParamsError) as raised:
        parse_section({**raw, "augment": {**raw["augment"], key: value}}, "render")
    assert str(raised.value) == f"params.yaml: {message}"


def test_a_missing_or_malformed_augment_section_is_named():
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["render"]
    without_seed = {k: v for k, v in raw["augment"].items() if k != "seed"}
    cases = [({**raw, "augment": without_seed}, "missing key render.augment.seed"),
             ({**raw, "augment": None}, "render.augment must be a mapping, got None"),
             ({k: v for k, v in raw.items() if k != "augment"}, "missing key render.augment")]
    for mapping, message in cases:
        with pytest.raises(ParamsError) as raised:
            parse_section(mapping, "render")
        assert str(raised.value) == f"params.yaml: {message}"


# --- predict ----------------------------------------------------------------------------------------------


def test_predict_renders_plainly_with_an_augmented_checkpoint(tmp_path, flute):
    from musicid.predict import Predictor
    from tests.test_predict import write_checkpoint

    plain = Predictor(write_checkpoint(tmp_path / "plain.pt", 1.0, 20)).clips_and_offsets(flute)[0]
    checkpoint = torch_load_edit(write_checkpoint(tmp_path / "augmented.pt", 1.0, 20))
    predictor = Predictor(checkpoint)
    assert predictor.render_params.augment.copies == 3
    # The augmentation SoundFonts are not even loaded: a machine that predicts need not have them.
    clips = predictor.clips_and_offsets(flute)[0]
    assert predictor.midi_renderer().soundfont_paths == [str(SOUNDFONT)]
    assert clips.shape == plain.shape and np.array_equal(clips, plain)


def torch_load_edit(path):
    """The checkpoint at ``path`` as trained with 3 augmented copies, one SoundFont of them missing here."""
    import torch

    checkpoint = torch.load(path, weights_only=True)
    checkpoint["params"]["render"]["augment"].update(copies=3, programs=[40],
                                                     soundfonts=["/nowhere/Missing.sf2"])
    torch.save(checkpoint, path)
    return path

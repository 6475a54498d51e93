import hashlib
import struct
import sys
import time

import numpy as np
import pytest
import soundfile

from musicid import render, synth
from musicid.checks import RenderError, cut_after_last_loud, peak_level, trim_trailing_silence, validate_audio
from musicid.midi import force_program, midi_end_time
from musicid.audio import decode_audio
from musicid.render import RenderTask, finish_render
from musicid.synth import FluidSynthUnavailable, MidiRenderer, check_fluidsynth
from tests.conftest import SOUNDFONT, section_params, sine, write_midi, write_wav

SR = 22050


def params(**overrides):
    """The render params the tests use, from params.yaml with these settings."""
    settings = dict(soundfonts=[str(SOUNDFONT)], sample_rate=SR, gain=0.5, reverb=True, chorus=False,
                    min_rms=1e-4, max_seconds=600.0, timeout_s=60.0, trim_db=-60.0, program=None, channels=1)
    return section_params("render", **{**settings, **overrides})


def smf(events_hex: str, division: int = 480) -> bytes:  # division: 16 bits, SMPTE when the high bit is set
    """A format-0 Standard MIDI File with one track of the given events."""
    events = bytes.fromhex(events_hex)
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, division)
            + b"MTrk" + struct.pack(">I", len(events)) + events)


# A time-signature meta event with 5 data bytes instead of 4: mido (and so
# pretty_midi) read it, FluidSynth's player refuses the whole file.
STRICT_PLAYER_REJECTS = smf("00FF58050402180800" "00903C64" "8360803C40" "00FF2F00")


@pytest.fixture(scope="module")
def renderer():
    return MidiRenderer(params())


@pytest.fixture
def worker(renderer, monkeypatch):
    monkeypatch.setattr(render, "_worker_renderer", renderer)
    return renderer


def task(tmp_path, source, names=("a/x.wav",), **overrides):
    """The task of the file ``tmp_path / source`` (written before), with its bytes."""
    return RenderTask(source=source, label="a", data=(tmp_path / source).read_bytes(), output_names=names,
                      render=params(**overrides))


def render_to(tmp_path, render_task):
    """Render a task as the stage does, its WAVs written under ``tmp_path / "out"``; its record."""
    return render.write_rendered(render.render_one(render_task), tmp_path / "out")


def test_render_three_notes(renderer, three_note_midi):
    audio = renderer.render(three_note_midi)
    assert audio.dtype == np.float32 and audio.shape[0] == 2
    finished = finish_render(audio, SR, 1.5, -60.0)
    assert 1.5 <= finished.shape[1] / SR <= 1.5 + synth.TAIL_SECONDS
    assert np.sqrt(np.mean(finished ** 2)) > 1e-3


def test_render_does_not_depend_on_what_was_rendered_before(renderer, tmp_path, three_note_midi):
    other = write_midi(tmp_path / "other.mid", [(40, 0.0, 2.0), (80, 0.1, 1.0)], program=48)
    first = renderer.render(three_note_midi)
    renderer.render(other)
    again = renderer.render(three_note_midi)
    assert np.array_equal(first, again)


def test_render_one_writes_a_valid_wav(worker, tmp_path):
    write_midi(tmp_path / "a" / "x.mid", [(60, 0.0, 1.0), (62, 1.0, 2.0)])
    record = render_to(tmp_path, task(tmp_path, "a/x.mid"))
    assert (record["status"], record["reason"], record["outputs"]) == ("rendered", None, ["a/x.wav"])
    info = soundfile.info(str(tmp_path / "out" / "a" / "x.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
    assert abs(info.frames / SR - record["duration_s"]) < 1e-3
    assert 2.0 <= record["duration_s"] <= 2.0 + synth.TAIL_SECONDS
    assert [p.name for p in (tmp_path / "out" / "a").iterdir()] == ["x.wav"]  # no temporaries


def test_a_worker_renders_from_memory_what_it_would_from_the_file(worker, tmp_path, monkeypatch):
    """render_one renders the task's bytes, writing no temporary file (which a killed worker would leave
    behind), and gets the samples a render of the file on disk gets: plain, transposed copy, audio source."""
    write_midi(tmp_path / "a" / "x.mid", [(60, 0.0, 1.0), (64, 0.5, 1.5), (67, 1.0, 2.0)])
    write_wav(tmp_path / "a" / "y.wav", sine(440.0, 2.0, 22050, 0.3), 22050)
    from_disk = {name: render.load_source(worker, tmp_path / "a" / name, params())[0][0]
                 for name in ("x.mid", "y.wav")}
    augment = params(augment={**params().augment.model_dump(), "copies": 1, "transpose": 2})
    copy_from_disk = render.render_augmented(worker, tmp_path / "a" / "x.mid", augment, "a/x.mid", 1)[1]
    for maker in ("mkdtemp", "mkstemp", "NamedTemporaryFile"):
        monkeypatch.setattr(f"tempfile.{maker}", lambda *args, **kwargs: pytest.fail("wrote a temporary file"))
    midi_task = RenderTask(source="a/x.mid", label="a", data=(tmp_path / "a" / "x.mid").read_bytes(),
                           output_names=("a/x.wav",), render=augment, augmented_names=("a/x__aug1.wav",))
    rendered = render.render_one(midi_task)
    assert rendered.record["status"] == "rendered" and len(rendered.record["augmented"]) == 1
    audio = render.render_one(task(tmp_path, "a/y.wav", names=("a/y.wav",)))
    for (name, wav), expected in zip([*rendered.wavs, *audio.wavs],
                                     [from_disk["x.mid"], copy_from_disk, from_disk["y.wav"]]):
        want = render.wav_bytes(render.to_channels(expected, 1), SR)
        assert wav == want, name
    # A local worker is given the file to read instead of its bytes (the stage then holds none): the same result.
    import dataclasses

    by_file = dataclasses.replace(midi_task, data=b"", file=str(tmp_path / "a" / "x.mid"))
    assert render.render_one(by_file) == rendered


def test_stereo_output(worker, tmp_path):
    write_midi(tmp_path / "a" / "x.mid", [(60, 0.0, 1.0)])
    render_to(tmp_path, task(tmp_path, "a/x.mid", channels=2))
    assert soundfile.info(str(tmp_path / "out" / "a" / "x.wav")).channels == 2


def test_two_runs_give_identical_wav_bytes(worker, tmp_path):
    write_midi(tmp_path / "a" / "x.mid", [(60, 0.0, 1.0), (67, 0.5, 1.5)])
    render_to(tmp_path, task(tmp_path, "a/x.mid"))
    first = (tmp_path / "out" / "a" / "x.wav").read_bytes()
    render_to(tmp_path, task(tmp_path, "a/x.mid"))
    assert (tmp_path / "out" / "a" / "x.wav").read_bytes() == first


def test_file_the_strict_player_refuses_is_recovered(worker, renderer, tmp_path):
    path = tmp_path / "a" / "strict.mid"
    path.parent.mkdir()
    path.write_bytes(STRICT_PLAYER_REJECTS)
    assert midi_end_time(path) == pytest.approx(0.5)  # mido reads it
    assert trim_trailing_silence(renderer.render(path)).shape[1] == 0  # FluidSynth's player does not
    record = render_to(tmp_path, task(tmp_path, "a/strict.mid"))
    assert (record["status"], record["reason"]) == ("recovered", None)
    assert record["detail"] == "FluidSynth's player gave silent; re-serialized with mido"
    assert 0.5 <= record["duration_s"] <= 0.5 + synth.TAIL_SECONDS
    assert (tmp_path / "out" / "a" / "x.wav").is_file()


@pytest.mark.parametrize("name,make,reason", [
    ("truncated.mid", lambda p, m: p.write_bytes(m.read_bytes()[:12]), "unparseable"),  # cut in its header
    ("garbage.mid", lambda p, m: p.write_text("<html>not a midi file</html>"), "unparseable"),
    ("empty.mid", lambda p, m: write_midi(p, []), "no_notes"),
    ("long.mid", lambda p, m: write_midi(p, [(60, 700.0, 701.0)]), "too_long"),
    ("zero.wav", lambda p, m: p.write_bytes(b""), "decode_error"),
    ("silence.wav", lambda p, m: write_wav(p, np.zeros(SR, np.float32), SR), "silent"),
    ("nan.wav", lambda p, m: write_wav(p, np.full(SR, np.nan, np.float32), SR, "FLOAT"), "non_finite"),
    ("notes.txt", lambda p, m: p.write_text("hello"), "unsupported_format"),
])
def test_bad_sources_are_rejected_with_their_reason(worker, tmp_path, three_note_midi, name, make, reason):
    path = tmp_path / "a" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    make(path, three_note_midi)
    record = render_to(tmp_path, task(tmp_path, f"a/{name}"))
    assert (record["status"], record["reason"]) == ("rejected", reason)
    assert record["outputs"] == []
    assert not (tmp_path / "out").exists()


def test_a_decode_error_reads_the_same_from_a_path_and_from_bytes_on_every_run(tmp_path):
    """soundfile's message named an in-memory file by its address (a report differing run to run) and a file
    by its path (differing machine to machine): the reason is libsndfile's words alone."""
    settings = params()
    bad = b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + bytes(40)  # a 'fmt ' chunk too short
    path = tmp_path / "x\u2019s: odd.wav"
    path.write_bytes(bad)
    details = []
    for data in (None, bad, bad):
        with pytest.raises(RenderError) as caught:
            render.load_audio_source(path, settings, data)
        details.append(str(caught.value))
    assert details == ["decode_error: LibsndfileError: Error in WAV/W64/RF64 file. Short 'fmt ' chunk."] * 3


def test_silent_notes_are_rejected_even_after_recovery(worker, tmp_path):
    # Velocity-1 notes on a muted channel (volume 0): FluidSynth renders silence.
    path = tmp_path / "a" / "muted.mid"
    path.parent.mkdir()
    path.write_bytes(smf("00B00700" "00903C01" "8360803C40" "00FF2F00"))
    record = render_to(tmp_path, task(tmp_path, "a/muted.mid"))
    assert (record["status"], record["reason"]) == ("rejected", "silent")
    # The same silence both ways, said once (it was "silent: RMS ...; re-serialized with mido: silent: RMS ...").
    assert record["detail"].startswith("RMS ") and record["detail"].endswith(" (the same re-serialized with mido)")
    assert record["detail"].count("RMS") == 1


def test_timeout(worker, tmp_path):
    write_midi(tmp_path / "a" / "x.mid", [(60, 0.0, 300.0)])
    record = render_to(tmp_path, task(tmp_path, "a/x.mid", timeout_s=1e-6))
    assert (record["status"], record["reason"]) == ("rejected", "timeout")


def test_notes_after_a_long_silence(worker, tmp_path):
    write_midi(tmp_path / "a" / "x.mid", [(60, 3600.0, 3601.0)])
    record = render_to(tmp_path, task(tmp_path, "a/x.mid"))
    assert (record["status"], record["reason"]) == ("rejected", "too_long")


def test_render_stops_after_the_last_note(renderer, tmp_path):
    # A stray controller event an hour after the only note: the player would run on.
    path = tmp_path / "stray.mid"
    path.write_bytes(smf("00903C64" "8360803C40" + "FFFFFF7F" * 4 + "00B00140" "00FF2F00"))
    audio = renderer.render(path, stop_after_s=0.5 + synth.TAIL_SECONDS)
    assert audio.shape[1] <= (0.5 + synth.TAIL_SECONDS) * SR + synth.BLOCK_FRAMES


def test_forced_program(renderer, tmp_path, three_note_midi):
    import mido

    target = tmp_path / "organ.mid"
    write_midi(tmp_path / "strings.mid", [(60, 0.0, 1.0)], program=48)
    organ = mido.MidiFile(tmp_path / "strings.mid")
    force_program(organ, 19)
    organ.save(target)
    programs = {(m.channel, m.program) for t in mido.MidiFile(target).tracks for m in t
                if m.type == "program_change"}
    assert (0, 48) not in programs and (0, 19) in programs and all(p == 19 for _, p in programs)
    assert 9 not in {channel for channel, _ in programs}  # drums stay drums
    assert not np.array_equal(renderer.render(tmp_path / "strings.mid"), renderer.render(target))


# Three notes, with or without a GM System On (F0 7E 7F 09 01 F7) before them; FluidSynth answers that
# system exclusive message by resetting every channel, FluidSynth's default interpolation included.
GM_RESET = "00F0057E7F0901F7"
NOTES = "00903C64" "83608043" "00" "90437F" "8360803C40" "00804340" "00FF2F00"


@pytest.mark.parametrize("method", ["none", "linear", "7th"])
def test_interpolation_is_the_params_even_after_a_gm_reset(method):
    fourth = MidiRenderer(params(interpolation="4th")).render(smf(NOTES))
    chosen = MidiRenderer(params(interpolation=method))
    plain = chosen.render(smf(NOTES))
    assert plain.shape == fourth.shape
    apart = np.abs(plain - fourth).max()
    assert apart > 1e-4
    # A reset before the first note changes little else on a fresh synth (float rounding, 1e-8): were the
    # interpolation FluidSynth's default again after it, the audio would be the 4th-order render.
    reset = chosen.render(smf(GM_RESET + NOTES))
    assert np.abs(reset - plain).max() < apart / 1000


def test_each_soundfont_renders_once(tmp_path, monkeypatch, second_soundfont):
    fonts = [str(SOUNDFONT), str(second_soundfont)]
    several = MidiRenderer(params(soundfonts=fonts, reverb=False))
    monkeypatch.setattr(render, "_worker_renderer", several)
    write_midi(tmp_path / "a" / "x.mid", [(60, 0.0, 1.0)])
    record = render_to(tmp_path, task(tmp_path, "a/x.mid", names=("a/x__fluid.wav", "a/x__tim.wav"),
                                    soundfonts=fonts, reverb=False))
    assert record["outputs"] == ["a/x__fluid.wav", "a/x__tim.wav"]
    one, two = (soundfile.read(str(tmp_path / "out" / name))[0] for name in record["outputs"])
    assert not np.array_equal(one[: min(len(one), len(two))], two[: min(len(one), len(two))])


@pytest.mark.parametrize("name", ["tone.flac", "tone.aiff"])  # AIFF: macOS's, was refused as unsupported_format
def test_audio_source_is_resampled_and_kept(worker, tmp_path, name):
    write_wav(tmp_path / "a" / name, sine(440, 2.0, 44100), 44100)
    record = render_to(tmp_path, task(tmp_path, f"a/{name}"))
    assert record["status"] == "rendered"
    audio, rate = soundfile.read(str(tmp_path / "out" / "a" / "x.wav"))
    assert rate == SR and len(audio) == 2 * SR


def test_validate_duration_mismatch():
    audio = sine(440, 10.0, SR)[np.newaxis]
    validate_audio(audio, SR, 1e-4, expected_seconds=11.0)
    with pytest.raises(RenderError) as caught:
        validate_audio(audio, SR, 1e-4, expected_seconds=20.0)
    assert caught.value.reason == "duration_mismatch"


def test_finish_render_cuts_at_the_end_and_trims():
    audio = np.zeros((2, 10 * SR), np.float32)
    audio[:, : 2 * SR] = 0.5
    audio[:, 2 * SR: 3 * SR] = 0.0001  # -74 dB below the peak
    audio[:, 9 * SR:] = 0.5  # past the end + tail: cut
    assert finish_render(audio, SR, end_seconds=2.0, trim_db=-60).shape == (2, 2 * SR)
    assert finish_render(audio, SR, end_seconds=2.0, trim_db=-80).shape == (2, 3 * SR)


def test_midi_end_time_follows_tempo(three_note_midi, tmp_path):
    assert midi_end_time(three_note_midi) == pytest.approx(1.5)
    # 480 ticks at 60 bpm (1,000,000 us per beat) = 1 s.
    path = tmp_path / "slow.mid"
    path.write_bytes(smf("00FF51030F4240" "00903C64" "8360803C40" "00FF2F00"))
    assert midi_end_time(path) == pytest.approx(1.0)


def test_trim_trailing_silence():
    audio = np.zeros((2, 100), np.float32)
    audio[1, 41] = 0.5
    assert trim_trailing_silence(audio).shape == (2, 42)
    assert trim_trailing_silence(np.zeros((2, 10), np.float32)).shape == (2, 0)


def _last_loud_by_full_scan(audio, threshold):
    loud = np.flatnonzero(np.abs(audio).max(axis=0) > threshold)
    return int(loud[-1]) + 1 if loud.size else 0


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 16])
def test_the_backward_scan_cuts_where_a_full_scan_does(chunk):
    rng = np.random.default_rng(chunk)
    for case in range(40):
        frames = int(rng.integers(0, 300))
        audio = (rng.standard_normal((int(rng.integers(1, 3)), frames)) * 0.01).astype(np.float32)
        for position in rng.integers(0, max(frames, 1), int(rng.integers(0, 4))):
            if frames:
                audio[int(rng.integers(0, audio.shape[0])), int(position)] = rng.choice([-0.5, 0.5])
        threshold = float(rng.choice([0.02, 0.1, 0.4]))
        cut = cut_after_last_loud(audio, threshold, chunk_frames=chunk)
        assert cut.shape == (audio.shape[0], _last_loud_by_full_scan(audio, threshold)), case
        assert np.shares_memory(cut, audio) or cut.size == 0


def test_peak_level_sees_both_signs_and_nan():
    assert peak_level(np.array([[0.1, -0.7], [0.2, 0.3]], np.float32)) == pytest.approx(0.7)
    assert peak_level(np.zeros((2, 0), np.float32)) == 0.0
    assert np.isnan(peak_level(np.array([[0.1, np.nan]], np.float32)))


@pytest.mark.parametrize("offset, signal, reason", [
    (0.0, 0.01, None),  # ordinary: the offset shortcut applies
    (0.3, 0.0, "silent"),  # an offset and nothing else
    (0.3, 5e-5, "silent"),  # an offset and a signal below min_rms: the shortcut must not hide it
    (0.3, 0.01, None),  # an offset with a real signal around it
    (0.0, 1.5e-4, None),  # near min_rms: measured exactly
])
def test_a_constant_offset_is_judged_as_before(offset, signal, reason):
    n = SR
    audio = np.stack([np.full(n, offset, np.float32) + np.float32(signal) * np.sign(np.sin(np.arange(n) * 0.1)),
                      np.full(n, offset, np.float32)]).astype(np.float32)
    if reason is None:
        validate_audio(audio, SR, 1e-4)
    else:
        with pytest.raises(RenderError) as caught:
            validate_audio(audio, SR, 1e-4)
        assert caught.value.reason == reason and "constant offset" in caught.value.detail


def test_missing_soundfont_says_what_to_install(tmp_path):
    with pytest.raises(FluidSynthUnavailable, match="apt-get install --no-install-recommends fluid-soundfont-gm"):
        MidiRenderer(params(soundfonts=[str(tmp_path / "none.sf2")]))


def test_missing_library_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # import fluidsynth now raises ImportError
    with pytest.raises(FluidSynthUnavailable, match="apt-get install --no-install-recommends libfluidsynth3"):
        check_fluidsynth()


def test_loading_fluidsynth_prints_nothing():
    # pyfluidsynth prints where it found the library when CI is set; predict --json owns stdout,
    # and each of predict's workers repeated the line on stderr.
    import os
    import subprocess

    result = subprocess.run([sys.executable, "-c", "from musicid.synth import check_fluidsynth; check_fluidsynth()"],
                            capture_output=True, text=True, env={**os.environ, "CI": "1"}, check=True)
    assert result.stdout == "" and result.stderr == ""


def test_a_cut_short_midi_file_is_described(worker, tmp_path, three_note_midi):
    path = tmp_path / "a" / "cut.mid"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"MThd\x00\x00\x00\x06\x00")  # the header chunk stops after one byte
    record = render_to(tmp_path, task(tmp_path, "a/cut.mid"))
    assert record["reason"] == "unparseable" and "cut short" in record["detail"]


def test_timeout_covers_reading_the_midi_file(worker, tmp_path):
    # 400,000 running-status notes: mido needs seconds to read them, far past the limit.
    path = tmp_path / "a" / "huge.mid"
    path.parent.mkdir()
    path.write_bytes(smf("00903C40" + "003C40" * 400_000 + "00FF2F00"))
    started = time.monotonic()
    record = render_to(tmp_path, task(tmp_path, "a/huge.mid", timeout_s=0.5))
    elapsed = time.monotonic() - started
    # Reading alone outlasts the limit; on a loaded machine the check may come while rendering instead.
    assert (record["status"], record["reason"]) == ("rejected", "timeout")
    assert record["detail"] in ("reading the file took longer than render.timeout_s",
                                "reading and rendering the file took longer than render.timeout_s")
    assert elapsed < 0.5 + 2.5  # without the limit on reading, this file takes over 10 s


def test_the_default_length_limit_keeps_long_movements(tmp_path):
    # A 20-minute movement is ordinary music; the clip caps, not max_seconds, bound the work per track.
    path = write_midi(tmp_path / "movement.mid", [(60, 0.0, 1.0), (67, 1199.0, 1200.0)])
    assert midi_end_time(path) == pytest.approx(1200.0)
    assert section_params("render").max_seconds >= 3 * 3600 > midi_end_time(path)


def test_output_names_never_clash_within_a_label():
    fonts = ["/fonts/FluidR3_GM.sf2", "/fonts/TimGM6mb.sf2"]
    # An audio file named like the other source's per-SoundFont WAV: both keep their extension.
    assert render.assign_outputs("a", ["x.mid", "x__FluidR3_GM.wav", "y.mid"], fonts) == {
        "x.mid": ("a/x_mid__FluidR3_GM.wav", "a/x_mid__TimGM6mb.wav"),
        "x__FluidR3_GM.wav": ("a/x__FluidR3_GM_wav.wav",),
        "y.mid": ("a/y__FluidR3_GM.wav", "a/y__TimGM6mb.wav")}
    # Two SoundFonts with one file name get their position added.
    assert render.assign_outputs("a", ["y.mid"], ["/one/GM.sf2", "/two/GM.sf2"]) == {
        "y.mid": ("a/y__GM-0.wav", "a/y__GM-1.wav")}
    # Names that differ only in case are one file on macOS or Windows: the second would overwrite the first.
    def hashed(source):  # sub__x_mid clashes too: a hash of the path
        return f"a/{source.replace('/', '__').replace('.', '_')}-{hashlib.sha256(source.encode()).hexdigest()[:12]}.wav"

    assert render.assign_outputs("a", ["Tone.ogg", "tone.flac", "Sub/x.mid", "sub/x.mid"], fonts[:1]) == {
        "Tone.ogg": ("a/Tone_ogg.wav",), "tone.flac": ("a/tone_flac.wav",),
        "Sub/x.mid": (hashed("Sub/x.mid"),), "sub/x.mid": (hashed("sub/x.mid"),)}
    # So do SoundFonts whose names differ only in case, and one named like an augmented copy.
    assert render.assign_outputs("a", ["x.mid"], ["/a/GM.sf2", "/b/gm.sf2"]) == {
        "x.mid": ("a/x__GM-0.wav", "a/x__gm-1.wav")}
    assert render.assign_all_outputs("a", ["x.mid"], ["/a/AUG1.sf2", "/b/GM.sf2"], 1) == {
        "x.mid": (("a/x__AUG1.wav", "a/x__GM.wav"), ("a/x__aug_1.wav",))}


def test_the_time_limit_fires_again_when_its_first_alarm_is_swallowed():
    """An alarm raised inside a garbage-collection callback is dropped by Python; the next one must come."""
    from musicid.checks import RenderError
    from musicid.deadline import _Expired  # what the limit raises inside the block
    from musicid.render import with_time_limit

    caught = 0

    def work() -> None:
        nonlocal caught
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                while time.monotonic() < deadline:
                    sum(range(1000))
            except _Expired:
                if caught:
                    raise
                caught += 1  # as if Python had dropped it: carry on working

    with pytest.raises(RenderError, match="timeout"):
        with_time_limit(time.monotonic() + 0.1, work)
    assert caught == 1


def render_block_by_block(renderer, midi_path, stop_after_s=float("inf")):
    """The renderer's output as it was first computed: one new array per block, joined at the end."""
    fs, lib = renderer.fluidsynth, renderer.library
    fluid = renderer._new_synth()
    sfont = renderer._sfonts[0]
    lib.fluid_synth_add_sfont(fluid.synth, sfont)
    player = fs.new_fluid_player(fluid.synth)
    blocks = []

    def write_block():
        block = np.empty((2, synth.BLOCK_FRAMES), dtype=np.float32)
        lib.fluid_synth_write_float(fluid.synth, synth.BLOCK_FRAMES, block[0].ctypes.data, 0, 1,
                                    block[1].ctypes.data, 0, 1)
        blocks.append(block)

    try:
        assert fs.fluid_player_add(player, str(midi_path).encode()) == fs.FLUID_OK
        fs.fluid_player_play(player)
        stopped_early = False
        while fs.fluid_player_get_status(player) == fs.FLUID_PLAYER_PLAYING:
            if len(blocks) * synth.BLOCK_FRAMES >= stop_after_s * renderer.sample_rate:
                stopped_early = True
                break
            write_block()
        if not stopped_early:
            played = len(blocks)
            tail_blocks = int(np.ceil(synth.TAIL_SECONDS * renderer.sample_rate / synth.BLOCK_FRAMES))
            while len(blocks) - played < tail_blocks and fs.fluid_synth_get_active_voice_count(fluid.synth) > 0:
                write_block()
    finally:
        fs.fluid_player_stop(player)
        fs.delete_fluid_player(player)
        lib.fluid_synth_remove_sfont(fluid.synth, sfont)
        fluid.delete()
    return np.concatenate(blocks, axis=1)


@pytest.fixture
def long_notes_midi(tmp_path):
    """Notes spanning several output blocks, so the output array is filled at many offsets."""
    return write_midi(tmp_path / "long.mid", [(48 + k, 0.4 * k, 0.4 * k + 1.0) for k in range(12)], program=40)


@pytest.mark.parametrize("stop_after_s", [float("inf"), 5.8, 2.0])
def test_render_is_bit_identical_to_rendering_block_by_block(renderer, long_notes_midi, stop_after_s):
    expected = render_block_by_block(renderer, long_notes_midi, stop_after_s)
    audio = renderer.render(long_notes_midi, stop_after_s=stop_after_s)
    assert audio.shape == expected.shape and audio.dtype == np.float32
    assert audio.tobytes() == expected.tobytes()


def test_render_from_bytes_is_the_render_from_the_file(renderer, long_notes_midi):
    from_file = renderer.render(long_notes_midi, stop_after_s=8.0)
    from_bytes = renderer.render(long_notes_midi.read_bytes(), stop_after_s=8.0)
    assert from_bytes.tobytes() == from_file.tobytes()


def test_render_from_bytes_the_player_refuses(renderer, tmp_path):
    # The player reads the bytes when it starts playing, and stops at once on a file it refuses.
    path = tmp_path / "strict.mid"
    path.write_bytes(STRICT_PLAYER_REJECTS)
    from_file, from_bytes = renderer.render(path), renderer.render(STRICT_PLAYER_REJECTS)
    assert from_file.shape == from_bytes.shape == (2, synth.BLOCK_FRAMES)
    assert from_bytes.tobytes() == from_file.tobytes()  # nothing played: only the reverb's idle noise


@pytest.mark.parametrize("fmt, subtype, kept_at_least", [("WAV", "PCM_16", 4.9), ("FLAC", "PCM_16", 1.0),
                                                         ("MP3", "MPEG_LAYER_III", 4.0)])
def test_an_audio_file_cut_short_keeps_what_it_holds_and_says_so(worker, tmp_path, fmt, subtype, kept_at_least):
    """An interrupted copy: the first half of the file's bytes. libsndfile reads a WAV's present frames without
    complaint, stops a FLAC with an error and an MP3 short of its header's count; each is recovered."""
    ext = fmt.lower()
    whole = tmp_path / f"whole.{ext}"
    soundfile.write(whole, sine(440.0, 10.0, SR, 0.3), SR, format=fmt, subtype=subtype)
    data = whole.read_bytes()
    half = tmp_path / f"half.{ext}"
    half.write_bytes(data[:len(data) // 2])

    audio, repairs = render.load_audio_source(whole, params())
    assert repairs == [] and audio.shape[1] == pytest.approx(10.0 * SR, abs=0.01 * SR)
    audio, repairs = render.load_audio_source(half, params())
    assert [repair.split(":")[0] for repair in repairs] == ["cut short"], repairs
    assert kept_at_least * SR <= audio.shape[1] < 6.0 * SR
    # From the file's bytes (as render's workers read it), the same.
    assert render.load_audio_source(half, params(), half.read_bytes())[1] == repairs
    record = render.render_one(RenderTask(source=str(half), label="a", data=half.read_bytes(),
                                          output_names=("a/half.wav",), render=params()))
    assert record.record["status"] == "recovered" and record.record["detail"] == repairs[0]


def test_a_wav_whose_header_was_never_finished_keeps_its_samples(worker, tmp_path):
    """A recorder killed before it wrote the sizes leaves 0 in the data chunk's (and the RIFF's): libsndfile
    reads 0 frames, and the file was rejected as empty_render with its seconds of music in it."""
    whole = tmp_path / "whole.wav"
    soundfile.write(whole, sine(440.0, 10.0, SR, 0.3), SR, subtype="PCM_16")
    data = bytearray(whole.read_bytes())
    at = data.index(b"data") + 4
    data[4:8] = data[at:at + 4] = bytes(4)
    crashed = tmp_path / "a" / "crashed.wav"
    crashed.parent.mkdir()
    crashed.write_bytes(bytes(data))
    assert soundfile.info(crashed).frames == 0  # what libsndfile makes of it
    expected = ["header never finished (its data chunk declares 0 bytes); the 10.0 s present are read"]
    for source in (None, bytes(data)):
        audio, repairs = render.load_audio_source(crashed, params(), source)
        assert repairs == expected
        assert audio.tobytes() == render.load_audio_source(whole, params())[0].tobytes()
    record = render_to(tmp_path, task(tmp_path, "a/crashed.wav"))
    assert (record["status"], record["detail"]) == ("recovered", expected[0])
    # Its length is known before a sample is decoded: too long for render.max_seconds is said at once.
    with pytest.raises(RenderError, match="^too_long: the audio lasts 10 s"):
        render.load_audio_source(crashed, params(max_seconds=5.0))
    # An empty WAV (a header and no samples) stays what it was, with tags after its data chunk too.
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, np.float32), SR, subtype="PCM_16")
    with pytest.raises(RenderError, match="empty_render"):
        render.load_audio_source(empty, params())
    tags = b"LIST" + struct.pack("<I", 16) + b"INFOINAM" + struct.pack("<I", 3) + b"ab\0\0"
    tags += b"id3 " + struct.pack("<I", 20001) + bytes(20001) + b"\0"
    tagged = bytearray(empty.read_bytes() + tags)
    tagged[4:8] = struct.pack("<I", len(tagged) - 8)
    (tmp_path / "tagged.wav").write_bytes(bytes(tagged))
    with pytest.raises(RenderError, match="empty_render"):
        render.load_audio_source(tmp_path / "tagged.wav", params())


def test_an_audio_sources_offset_is_removed_and_a_hot_file_scaled_not_clipped(tmp_path):
    """A 0.99 offset around a quiet tone was written as it was (clip's normalisation then counted it as sound),
    an offset of 0.9 around a 0.3 tone clipped 39 % of the samples, and a float file peaking at 3.5 was written
    with 81 % of its samples clipped: each was "rendered" without a word."""
    tone = sine(440.0, 4.0, SR, 0.3)
    cases = {"offset.wav": (tone * 0.01 + 0.99, ["a constant offset of 0.99 removed"], tone * 0.01),
             "clipped.wav": (tone + 0.9, ["a constant offset of 0.9 removed"], tone),
             "hot.wav": (tone * 10.0, ["78.4 % of its samples beyond full scale (peak 3): scaled by 0.333 rather "
                                        "than clipped"], tone / 0.3)}
    for name, (samples, expected, clean) in cases.items():
        soundfile.write(tmp_path / name, samples.astype(np.float32), SR, subtype="FLOAT")
        audio, repairs = render.load_audio_source(tmp_path / name, params())
        assert repairs == expected, name
        assert np.abs(audio[0] - clean).max() < 1e-4, name
    # An ordinary file keeps every sample: a small offset, and a few samples over full scale (clipped on writing).
    plain = (tone * 3.3 + 5e-4).astype(np.float32)
    plain[::SR // 4] = 1.05
    soundfile.write(tmp_path / "plain.wav", plain, SR, subtype="FLOAT")
    audio, repairs = render.load_audio_source(tmp_path / "plain.wav", params())
    assert repairs == [] and audio[0].tobytes() == plain.tobytes()
    # A loud 16-bit master, resampled: the resampler overshoots full scale in 1-2 % of the samples, and its mean
    # (2e-3 here) is small beside its level. Neither is touched: decoded as before.
    rng = np.random.default_rng(0)
    rate = 44100
    bass = 0.5 * np.sin(2 * np.pi * 55 * np.arange(10 * rate) / rate)
    master = np.clip(bass[:, None] + rng.normal(0.0, 0.5, (10 * rate, 2)) + 0.002, -1.0, 1.0)
    soundfile.write(tmp_path / "master.wav", master, rate, subtype="PCM_16")
    assert np.abs(soundfile.read(tmp_path / "master.wav")[0].mean(axis=0)).min() > 1e-3
    audio, repairs = render.load_audio_source(tmp_path / "master.wav", params(channels=2))
    assert repairs == [] and (np.abs(audio) > 1.0).mean() > 0.01  # overshoot there, left to the WAV writer
    assert audio.tobytes() == decode_audio(tmp_path / "master.wav", SR, 2).tobytes()
    # Hot channels that cancel in the mix, or a hot channel beside a silent one: the mono mix fits full scale and
    # is not turned up.
    square = np.sign(tone).astype(np.float32)
    for name, channels in (("opposed.wav", [1.5 * square, -1.4 * square]), ("one.wav", [1.2 * tone, 0 * tone])):
        soundfile.write(tmp_path / name, np.stack(channels, axis=1).astype(np.float32), SR, subtype="FLOAT")
        audio, repairs = render.load_audio_source(tmp_path / name, params(channels=1))
        assert repairs == [] and np.abs(audio).max() <= 1.0, name
    # L = -R around a shared offset mixes to silence only once the offset is out.
    soundfile.write(tmp_path / "both.wav", np.stack([tone + 0.05, 0.05 - tone], axis=1), SR, subtype="FLOAT")
    with pytest.raises(RenderError, match=r"^silent: .*cancel out when mixed to mono"):
        render.load_audio_source(tmp_path / "both.wav", params(channels=1))


def test_a_flac_whose_header_gives_no_length_is_read_to_its_end(tmp_path):
    """An encoder writing to a pipe leaves STREAMINFO's sample count 0, which libsndfile gives as 2**63 - 1
    frames: it was rejected as `too_long: the audio lasts 209146758205324 s`."""
    for seconds in (6.0, 1.0):  # 1 s: shorter than one of the blocks ordinary files are decoded in
        whole = tmp_path / "whole.flac"
        soundfile.write(whole, sine(440.0, seconds, SR, 0.3), SR, format="FLAC", subtype="PCM_16")
        data = bytearray(whole.read_bytes())
        fields = int.from_bytes(data[18:26], "big")  # STREAMINFO: rate, channels, bits, then 36 bits of samples
        data[18:26] = (fields & ~((1 << 36) - 1)).to_bytes(8, "big")
        piped = tmp_path / "piped.flac"
        piped.write_bytes(bytes(data))
        assert soundfile.info(piped).frames == 2 ** 63 - 1
        audio, repairs = render.load_audio_source(piped, params())
        # libsndfile ends it with a failed seek, which loses the small block it stops: the rest is kept.
        assert repairs == [f"its header gives no length (a file written to a pipe); read as far as libsndfile "
                           f"goes: {audio.shape[1] / SR:.1f} s"] and audio.shape[1] >= (seconds - 0.05) * SR
        assert audio.tobytes() == render.load_audio_source(whole, params())[0][:, :audio.shape[1]].tobytes()


def test_stereo_whose_channels_cancel_in_mono_says_so(tmp_path):
    """A channel wired the wrong way round (L = -R) mixes to nothing: "silent: RMS 0" named no cause."""
    tone = sine(440.0, 3.0, SR, 0.3)
    soundfile.write(tmp_path / "antiphase.wav", np.stack([tone, -tone], axis=1), SR, subtype="PCM_16")
    with pytest.raises(RenderError, match=r"^silent: RMS .* below .*: its channels \(RMS 2\.1\de-01, 2\.1\de-01\) "
                                          r"cancel out when mixed to mono, one the other inverted$"):
        render.load_audio_source(tmp_path / "antiphase.wav", params(channels=1))
    assert render.load_audio_source(tmp_path / "antiphase.wav", params(channels=2))[0].shape[0] == 2


def test_a_wav_that_cannot_be_opened_is_a_decode_error(tmp_path):
    """Looking for an unfinished header opens the file first: what the system refuses is a reason, not a
    traceback (a folder named like a WAV stands for any file that cannot be read)."""
    (tmp_path / "folder.wav").mkdir()
    with pytest.raises(RenderError, match=r"^decode_error: IsADirectoryError: Is a directory$"):
        render.load_audio_source(tmp_path / "folder.wav", params())


def test_a_whole_wav_is_not_called_cut_short(tmp_path):
    """A WAV written to a pipe declares its data size as unknown (0xFFFFFFFF), and one byte short is not an
    interrupted copy: both are whole as far as render is concerned."""
    whole = tmp_path / "whole.wav"
    soundfile.write(whole, sine(440.0, 10.0, SR, 0.3), SR, subtype="PCM_16")
    data = bytearray(whole.read_bytes())
    at = data.index(b"data") + 4
    piped = tmp_path / "piped.wav"
    piped.write_bytes(bytes(data[:at]) + struct.pack("<I", 0xFFFFFFFF) + bytes(data[at + 4:]))
    nibbled = tmp_path / "nibbled.wav"
    nibbled.write_bytes(bytes(data[:-2]))  # one frame of the 220500 missing
    for path in (piped, nibbled):
        audio, repairs = render.load_audio_source(path, params())
        assert repairs == [] and audio.shape[1] >= 10.0 * SR - 1, path.name


def test_a_file_whose_sound_lies_above_the_rendered_band_says_so(tmp_path):
    """A 20 kHz tone at 48 kHz is silent once resampled: "silent: RMS 3.9e-05" alone named no cause."""
    t = np.arange(10 * 48000) / 48000
    high = (0.3 * np.sin(2 * np.pi * 20000 * t)).astype(np.float32)
    for name, audio in (("mono.wav", high), ("stereo.wav", np.stack([high, high], axis=1))):
        soundfile.write(tmp_path / name, audio, 48000, subtype="PCM_16")
        with pytest.raises(RenderError, match=rf"^silent: RMS .* below .*: the file \(RMS 2\.1\de-01 at its own "
                                              r"rate\) holds nothing below 8000 Hz, half render.sample_rate"):
            render.load_audio_source(tmp_path / name, params(channels=1, sample_rate=16000))
    # Channels that cancel at a rate above the render's are still said to cancel.
    soundfile.write(tmp_path / "antiphase.wav", np.stack([high, -high], axis=1), 48000, subtype="PCM_16")
    with pytest.raises(RenderError, match=r"cancel out when mixed to mono"):
        render.load_audio_source(tmp_path / "antiphase.wav", params(channels=1, sample_rate=16000))


def test_quiet_hiss_and_a_high_tone_with_an_offset_get_their_own_reasons(tmp_path):
    """Broadband hiss just above render.min_rms at 48 kHz loses part of its energy when resampled, not all:
    it is a quiet file, not one whose sound lies above the band. A 20 kHz tone around a DC offset is named
    as such once the offset is out."""
    rng = np.random.default_rng(0)
    hiss = rng.normal(0, 1.3e-4, 10 * 48000).astype(np.float32)
    soundfile.write(tmp_path / "hiss.wav", hiss, 48000, subtype="FLOAT")
    with pytest.raises(RenderError) as caught:
        render.load_audio_source(tmp_path / "hiss.wav", params(channels=1, sample_rate=16000))
    assert str(caught.value).startswith("silent: RMS") and "holds nothing below" not in str(caught.value)
    t = np.arange(10 * 48000) / 48000
    soundfile.write(tmp_path / "offset.wav", (0.3 * np.sin(2 * np.pi * 20000 * t) + 0.05).astype(np.float32),
                    48000, subtype="FLOAT")
    with pytest.raises(RenderError, match=r"holds nothing below 8000 Hz, half render.sample_rate"):
        render.load_audio_source(tmp_path / "offset.wav", params(channels=1, sample_rate=16000))


def test_a_few_nan_samples_are_set_to_0_and_a_file_of_them_is_rejected(tmp_path):
    """A float export with 10 NaN samples in 20 s of music was rejected whole as non_finite; resampled as it
    is, each NaN would spread over the filter's length. They are set to 0 before resampling now, which gives
    the render of the file with zeros there; more than 0.1 % of the samples is a damaged file."""
    music = sine(440.0, 20.0, 48000, 0.3)
    holes = np.random.default_rng(0).choice(len(music), 10, replace=False)
    damaged, zeroed = music.copy(), music.copy()
    damaged[holes[:8]], damaged[holes[8:]] = np.nan, np.inf
    zeroed[holes] = 0.0
    for name, samples in (("damaged.wav", damaged), ("zeroed.wav", zeroed)):
        soundfile.write(tmp_path / name, samples, 48000, subtype="FLOAT")
    audio, repairs = render.load_audio_source(tmp_path / "damaged.wav", params())
    assert repairs == ["10 NaN or infinite samples set to 0"]
    assert audio.tobytes() == render.load_audio_source(tmp_path / "zeroed.wav", params())[0].tobytes()
    ruined = music.copy()
    ruined[::500] = np.nan  # 0.2 %
    soundfile.write(tmp_path / "ruined.wav", ruined, 48000, subtype="FLOAT")
    with pytest.raises(RenderError, match=r"^non_finite: audio holds 1920 NaN or infinite samples \(0\.2 % of its "
                                          r"samples; at most 0\.1 % are set to 0\)$"):
        render.load_audio_source(tmp_path / "ruined.wav", params())


def test_channels_that_nearly_cancel_and_nan_samples_around_an_offset(tmp_path):
    """L = -R + a trace of noise: the mix's energy, summed in float32 from a Gram matrix, went below 0 (a
    math domain error) or gave the wrong reason; a sum of squares cannot. NaN samples set to 0 before the
    offset was taken out became clicks at -offset."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        left = (0.6 * rng.standard_normal(5 * 48000)).astype(np.float32)
        right = (-left + 1e-5 * rng.standard_normal(len(left))).astype(np.float32)
        soundfile.write(tmp_path / "near.wav", np.stack([left, right], axis=1), 48000, subtype="FLOAT")
        with pytest.raises(RenderError, match="cancel out when mixed to mono"):
            render.load_audio_source(tmp_path / "near.wav", params(channels=1, sample_rate=16000))
    tone = sine(440.0, 5.0, SR, 0.3) + np.float32(0.2)
    holes = np.arange(1000, 20000, 2000)
    damaged = tone.copy()
    damaged[holes] = np.nan
    soundfile.write(tmp_path / "damaged.wav", damaged, SR, subtype="FLOAT")
    audio, repairs = render.load_audio_source(tmp_path / "damaged.wav", params())
    assert repairs[0] == "10 NaN or infinite samples set to 0" and repairs[1].startswith("a constant offset of 0.2")
    assert np.abs(audio[0, holes]).max() < 0.02  # silence where the NaN samples were, not -0.2

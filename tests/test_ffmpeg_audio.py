"""MPEG-4 audio (.m4a: AAC, ALAC), Windows Media audio (.wma), WavPack (.wv) and raw AAC streams (.aac), which
libsndfile cannot read, decoded by FFmpeg through PyAV: download keeps them, render and predict read them, and a damaged one is recovered or rejected with a
reason, never a traceback."""

import json
from pathlib import Path

import numpy as np
import pytest

from musicid.audio import FFmpegAudioFile, FFmpegDecodeError, adts_shortfall, asf_seconds, decode_audio
from musicid.checks import RenderError
from musicid.dataset import unusable_reason
from musicid.filetypes import check_file, content_extension
from musicid.render import CUT_SHORT_FRACTION, CUT_SHORT_SECONDS, load_audio_source
from tests.conftest import section_params, sine, write_adts, write_m4a, write_wav, write_wavpack, write_wma

RATE = 44100


def stereo(seconds: float = 3.0) -> np.ndarray:
    """float32 [2, n]: a 440 Hz tone on the left, a 660 Hz one on the right."""
    return np.stack([sine(440.0, seconds, RATE, 0.3), sine(660.0, seconds, RATE, 0.2)])


@pytest.mark.parametrize("sample_format, bits", [("s16p", 16), ("s32p", 24)])
def test_alac_decodes_to_its_exact_samples(tmp_path, sample_format, bits):
    audio = stereo()
    path = write_m4a(tmp_path / "lossless.m4a", audio, RATE, codec="alac", sample_format=sample_format)
    steps = np.round(np.clip(audio, -1.0, 1.0 - 2.0 ** (1 - bits)) * 2.0 ** (bits - 1))
    with FFmpegAudioFile(path) as handle:
        assert (handle.samplerate, handle.channels, handle.frames) == (RATE, 2, audio.shape[1])
        decoded = handle.read(audio.shape[1] + 1000)
    assert decoded.dtype == np.float32 and decoded.shape == (audio.shape[1], 2)
    assert np.array_equal(decoded, (steps.T / 2.0 ** (bits - 1)).astype(np.float32))


def sweep(seconds: float = 3.0) -> np.ndarray:
    """float32 [2, n]: a tone rising from 200 to 2000 Hz on the left, falling on the right (no period repeats)."""
    t = np.arange(int(seconds * RATE)) / RATE
    rising = 200 * t + 900 * t ** 2 / seconds  # phase / 2 pi of 200 -> 2000 Hz over the sweep
    falling = 2000 * t - 900 * t ** 2 / seconds
    return (0.3 * np.sin(2 * np.pi * np.stack([rising, falling]))).astype(np.float32)


def test_aac_decodes_block_by_block_to_the_music_it_holds(tmp_path):
    audio = sweep()
    path = write_m4a(tmp_path / "lossy.m4a", audio, RATE)
    with FFmpegAudioFile(path) as handle:
        blocks = [handle.read(4096) for _ in range(40)]
    assert all(len(block) == 4096 for block in blocks[:32]) and len(blocks[33]) < 4096 and len(blocks[-1]) == 0
    whole = np.concatenate(blocks)
    # The encoder's priming (1024 frames here, which the file's edit list does not drop) comes first.
    n = audio.shape[1]
    fits = {lag: np.corrcoef(whole[lag:lag + n, 0], audio[0])[0, 1] for lag in range(0, len(whole) - n + 1)}
    lag = max(fits, key=fits.get)
    assert 900 <= lag <= 1200 and fits[lag] > 0.99
    assert np.corrcoef(whole[lag:lag + n, 1], audio[1])[0, 1] > 0.99  # each channel its own
    # At the pipeline's rate, mixed to mono, as render decodes it: the same as from the samples themselves.
    mono = decode_audio(path, 16000, 1)[0]
    assert abs(len(mono) - len(whole) * 16000 / RATE) <= 2
    assert np.sqrt(np.mean(mono ** 2)) == pytest.approx(np.sqrt(np.mean(whole.mean(axis=1) ** 2)), rel=0.01)


def test_render_reads_an_m4a_as_it_reads_the_same_music_in_a_wav(tmp_path):
    """The same 16-bit samples as ALAC and as WAV give render's audio identically."""
    audio = stereo()
    render = section_params("render")
    alac = write_m4a(tmp_path / "a.m4a", audio, RATE, codec="alac", sample_format="s16p")
    steps = np.round(np.clip(audio, -1.0, 1.0 - 2.0 ** -15) * 2.0 ** 15).astype(np.int16)  # as write_m4a's
    wav = write_wav(tmp_path / "a.wav", steps.T, RATE)
    from_m4a, repaired = load_audio_source(alac, render)
    from_wav, _ = load_audio_source(wav, render)
    assert repaired == [] and np.array_equal(from_m4a, from_wav)
    # From the file's bytes in memory (a worker, a cluster) as from its path.
    assert np.array_equal(load_audio_source(alac, render, data=alac.read_bytes())[0], from_m4a)


def test_an_m4a_cut_short_keeps_what_it_holds_or_is_rejected_with_ffmpegs_words(tmp_path):
    render = section_params("render")
    whole = write_m4a(tmp_path / "whole.m4a", stereo(6.0), RATE).read_bytes()
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(whole[:len(whole) // 2])  # an interrupted copy: its index first, half its samples
    audio, repaired = load_audio_source(cut, render)
    assert len(repaired) == 1 and repaired[0].startswith("cut short: decoding stopped after 3.0 s of the 6.0 s its "
                                                         "header declares (FFmpegDecodeError: ")
    assert audio.shape[1] == pytest.approx(3.0 * render.sample_rate, abs=0.1 * render.sample_rate)
    assert unusable_reason(cut, ".m4a") is None  # download does not pass it over either
    # Written with its index after the samples, a file cut short has none: nothing to read, and said so.
    late = write_m4a(tmp_path / "late.m4a", stereo(6.0), RATE, faststart=False).read_bytes()
    headless = tmp_path / "headless.m4a"
    headless.write_bytes(late[:len(late) // 2])
    with pytest.raises(RenderError) as rejected:
        load_audio_source(headless, render)
    assert str(rejected.value) == "decode_error: FFmpegDecodeError: Invalid data found when processing input"
    assert str(tmp_path) not in str(rejected.value)  # the same words on every machine
    assert unusable_reason(headless, ".m4a") == str(rejected.value)


def test_the_frames_before_a_decoding_error_are_read_first_whatever_the_block(tmp_path):
    whole = write_m4a(tmp_path / "whole.m4a", stereo(6.0), RATE).read_bytes()
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(whole[:len(whole) // 2])

    def frames_before_the_error(block: int) -> int:
        read, short = 0, False
        with FFmpegAudioFile(cut) as handle:
            while True:
                try:
                    got = len(handle.read(block))
                except FFmpegDecodeError as error:
                    assert str(error) == "Invalid data found when processing input"
                    return read
                assert not short  # a short block comes only just before the error, which the next read raises
                read, short = read + got, got < block

    counts = {block: frames_before_the_error(block) for block in (1000, 4096, 5000, 65536)}
    assert len(set(counts.values())) == 1 and 2.9 * RATE < counts[1000] < 3.1 * RATE, counts


def test_a_tag_in_another_encoding_than_utf8_does_not_stop_the_music(tmp_path):
    """A title written in Latin-1 (old taggers) is not UTF-8, which PyAV reads tags as; the tags are not read."""
    import av

    audio = stereo()
    path = tmp_path / "tagged.m4a"
    with av.open(str(path), "w", format="ipod") as out:
        out.metadata["title"] = "cafX"
        stream = out.add_stream("aac", rate=RATE)
        stream.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(audio, format="fltp", layout="stereo")
        frame.sample_rate = RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    data = path.read_bytes()
    assert data.count(b"cafX") == 1
    path.write_bytes(data.replace(b"cafX", b"caf\xe9"))
    with pytest.raises(UnicodeDecodeError):  # as PyAV reads tags by default
        av.open(str(path))
    rendered, repaired = load_audio_source(path, section_params("render"))
    assert repaired == [] and rendered.shape[1] > 2.9 * section_params("render").sample_rate
    assert unusable_reason(path, ".m4a") is None


def test_an_m4a_without_audio_or_of_garbage_is_an_error_not_a_crash(tmp_path):
    import av

    video = tmp_path / "video.m4a"  # an MPEG-4 file whose one stream is a picture
    with av.open(str(video), "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    with pytest.raises(FFmpegDecodeError, match="the file holds no audio stream"):
        FFmpegAudioFile(video)
    # An Apple Lossless file cut inside its codec's description: FFmpeg finds a stream it has no decoder for.
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(write_m4a(tmp_path / "alac.m4a", stereo(), RATE, codec="alac",
                              sample_format="s16p").read_bytes()[:399])
    with pytest.raises(RenderError) as rejected:
        load_audio_source(cut, section_params("render"))
    assert str(rejected.value) == ("decode_error: FFmpegDecodeError: no decoder for its audio stream (an unknown or "
                                   "damaged codec)")
    garbage = tmp_path / "garbage.m4a"
    garbage.write_bytes(b"\0\0\0\x1cftypM4A " + bytes(range(256)) * 4)
    assert check_file(garbage) is None  # it starts as one
    with pytest.raises(RenderError, match="^decode_error: FFmpegDecodeError: "):
        load_audio_source(garbage, section_params("render"))


def garbage_and_misnamed(tmp_path, path, magic: bytes, other: str, kind: str, render) -> None:
    """A file of ``path``'s kind that starts with its ``magic`` bytes and holds nothing else it can use is FFmpeg's
    decode_error; ``path`` under the ``other`` extension is named for what it holds (``kind``) and read as its own."""
    garbage = tmp_path / f"garbage{path.suffix}"
    garbage.write_bytes(magic + bytes(range(256)) * 4)
    with pytest.raises(RenderError, match="^decode_error: FFmpegDecodeError: "):
        load_audio_source(garbage, render)
    misnamed = tmp_path / f"{path.stem}{other}"
    misnamed.write_bytes(path.read_bytes())
    assert check_file(misnamed) == f"named {other} but looks like {kind}"
    assert content_extension(misnamed) == path.suffix


@pytest.mark.parametrize("codec", ["wmav1", "wmav2"])
def test_wma_decodes_to_the_music_it_holds_and_a_cut_one_keeps_what_it_holds(tmp_path, codec):
    audio = sweep()
    path = write_wma(tmp_path / "take.wma", audio, RATE, codec)
    assert check_file(path) is None
    with FFmpegAudioFile(path) as handle:
        assert (handle.samplerate, handle.channels) == (RATE, 2)
        assert abs(handle.frames - audio.shape[1]) < 0.05 * RATE  # the container's duration, an estimate
        whole = handle.read(10 * RATE)
    # FFmpeg's WMA decoder starts 2048 frames into the music (its encoder's delay) and ends on a whole block.
    n = len(whole) - 4096
    fits = {skip: np.corrcoef(whole[:n, 0], audio[0, skip:skip + n])[0, 1] for skip in range(0, 4097)}
    skip = max(fits, key=fits.get)
    assert 1500 <= skip <= 2500 and fits[skip] > 0.99
    assert np.corrcoef(whole[:n, 1], audio[1, skip:skip + n])[0, 1] > 0.99
    render = section_params("render")
    rendered, repaired = load_audio_source(path, render)
    assert repaired == [] and abs(rendered.shape[1] - 3.0 * render.sample_rate) < 0.1 * render.sample_rate
    cut = tmp_path / "cut.wma"
    data = write_wma(tmp_path / "long.wma", sweep(6.0), RATE, codec).read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    # What it holds is kept, and said to be short of the length its header declares (FFmpeg's own estimate,
    # from the file's size, would be the length of what is there).
    rendered, repaired = load_audio_source(cut, render)
    assert abs(rendered.shape[1] - 3.0 * render.sample_rate) < 0.25 * render.sample_rate
    assert len(repaired) == 1 and repaired[0].startswith("cut short: ") and " of the 6.0 s its header declares" in \
        repaired[0]
    assert asf_seconds(cut.read_bytes()) == asf_seconds(data) == pytest.approx(6.0, abs=0.05)
    assert asf_seconds(b"RIFF....WAVE") is None and asf_seconds(data[:40]) is None  # not ASF; no properties
    # an ASF header's GUID, then nothing it can use
    garbage_and_misnamed(tmp_path, path, data[:16], ".mp3", "Windows Media (ASF) data", render)


def test_wavpack_decodes_to_its_exact_samples_and_a_cut_one_keeps_what_it_holds(tmp_path):
    audio = sweep(6.0)
    path = write_wavpack(tmp_path / "take.wv", audio, RATE)
    assert check_file(path) is None and content_extension(path) is None
    steps = np.round(np.clip(audio, -1.0, 1.0 - 2.0 ** -15) * 2.0 ** 15)
    with FFmpegAudioFile(path) as handle:
        assert (handle.samplerate, handle.channels, handle.frames) == (RATE, 2, audio.shape[1])  # its header's
        decoded = handle.read(audio.shape[1] + 1000)
    assert np.array_equal(decoded, (steps.T / 2.0 ** 15).astype(np.float32))
    render = section_params("render")
    wav = write_wav(tmp_path / "take.wav", (steps / 2.0 ** 15).T.astype(np.float32), RATE)
    rendered, repaired = load_audio_source(path, render)
    assert repaired == [] and np.array_equal(rendered, load_audio_source(wav, render)[0])
    cut = tmp_path / "cut.wv"
    cut.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    rendered, repaired = load_audio_source(cut, render)
    assert 2.0 * render.sample_rate < rendered.shape[1] < 3.5 * render.sample_rate
    assert len(repaired) == 1 and repaired[0].startswith("cut short: ") and " of the 6.0 s its header declares" in \
        repaired[0]
    garbage_and_misnamed(tmp_path, path, b"wvpk", ".flac", "WavPack audio", render)


def test_a_raw_aac_stream_is_read_and_its_estimated_length_never_makes_it_cut_short(tmp_path):
    audio = sweep(20.0)
    path = write_adts(tmp_path / "take.aac", audio, RATE)
    assert check_file(path) is None and content_extension(path) is None
    with FFmpegAudioFile(path) as handle:
        estimated = handle.frames
        whole = handle.read(30 * RATE)
    n = 3 * RATE  # its first 3 s, after the encoder's priming
    fits = {lag: np.corrcoef(whole[lag:lag + n, 0], audio[0, :n])[0, 1] for lag in range(0, 2049)}
    lag = max(fits, key=fits.get)
    assert fits[lag] > 0.99 and np.corrcoef(whole[lag:lag + n, 1], audio[1, :n])[0, 1] > 0.99
    assert len(whole) >= audio.shape[1] + lag - 1024  # and the rest of the music
    # FFmpeg's length of a stream without a header is from its mean bitrate: here more than the stream holds by
    # more than render's margins, which for a file that declared it would make a file cut short.
    assert estimated - len(whole) > max(CUT_SHORT_FRACTION * estimated, CUT_SHORT_SECONDS * RATE)
    render = section_params("render")
    rendered, repaired = load_audio_source(path, render)
    assert repaired == [] and abs(rendered.shape[1] - 20.0 * render.sample_rate) < 0.1 * render.sample_rate
    assert unusable_reason(path, ".aac") is None
    cut = tmp_path / "cut.aac"
    cut.write_bytes(path.read_bytes()[:path.stat().st_size // 2 + 7])  # inside a frame
    rendered, repaired = load_audio_source(cut, render)
    assert 8.0 * render.sample_rate < rendered.shape[1] < 12.0 * render.sample_rate
    # FFmpeg drops the frame the cut ends in without an error: the frame's own length tells.
    assert len(repaired) == 1 and repaired[0].startswith("cut short: its last AAC frame lacks ")
    from_bytes, repaired_from_bytes = load_audio_source(cut, render, data=cut.read_bytes())  # predict's way
    assert np.array_equal(from_bytes, rendered) and repaired_from_bytes == repaired
    data = path.read_bytes()
    assert adts_shortfall(data) == 0 and adts_shortfall(data[:-3]) == 3 and adts_shortfall(data + data[:4]) == 3
    assert adts_shortfall(data + b"\0\0\0") == adts_shortfall(data + b"\n") == 0  # bytes after it, no frame cut
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x05" + bytes(5)  # a 5-byte ID3v2 tag, then the frames
    assert adts_shortfall(tag + data) == 0 and adts_shortfall(tag + data[:-3]) == 3
    assert adts_shortfall(data[:100] + b"junk" + data[100:]) == 0  # damage, not a cut: not followed
    assert adts_shortfall(tag + bytes(100) + data[:-300]) > 0  # zero padding after the tag, as filetypes skips it
    misnamed = tmp_path / "take.mp3"
    misnamed.write_bytes(path.read_bytes())
    assert check_file(misnamed) == "named .mp3 but looks like AAC audio (ADTS)"
    assert content_extension(misnamed) == ".aac"


def test_after_an_id3_tag_the_frames_tell_a_raw_aac_stream_from_an_mp3(tmp_path):
    """Both may start with an ID3 tag (with a cover picture, kilobytes of it): the frame after it decides."""
    tag = b"ID3\x04\x00\x00\x00\x00\x20\x00" + bytes(4096)  # a 4096-byte tag, padding
    import soundfile

    aac = tag + write_adts(tmp_path / "a.aac", sweep(5.0), RATE).read_bytes()
    soundfile.write(tmp_path / "b.mp3", sweep(5.0).T, RATE, format="MP3")  # libsndfile's encoder
    mp3 = tag + (tmp_path / "b.mp3").read_bytes()
    render = section_params("render")
    for data, kind, other in ((aac, ".aac", ".mp3"), (mp3, ".mp3", ".aac")):
        right, wrong, unnamed = tmp_path / f"t{kind}", tmp_path / f"t{kind}{other}", tmp_path / f"t{kind}.wav"
        for path in (right, wrong, unnamed):
            path.write_bytes(data)
        assert check_file(right) is None and content_extension(right) is None
        looks = "AAC audio (ADTS)" if kind == ".aac" else "MP3 audio"
        assert check_file(wrong) == f"named {other} but looks like {looks} (after an ID3 tag)"
        assert content_extension(wrong) == content_extension(unnamed) == kind  # read as what it holds
        rendered, repaired = load_audio_source(wrong, render, suffix=kind)
        assert repaired == [] and abs(rendered.shape[1] - 5.0 * render.sample_rate) < 0.1 * render.sample_rate
    alone = tmp_path / "alone.mp3"  # a tag and nothing after it: left to decoding, as before
    alone.write_bytes(tag)
    assert check_file(alone) is None


def test_only_an_mp3s_first_frame_can_declare_its_length(tmp_path):
    """A Xing or Info header in the first frame declares an MP3's length; the word in its ID3 tag's text (a
    comment "See the Info page") does not, and the estimate is then not held against render.max_seconds."""
    import io

    import soundfile

    from musicid.filetypes import _mp3_frame_length
    from musicid.render import length_declared

    encoded = io.BytesIO()
    soundfile.write(encoded, sweep(2.0).T, RATE, format="MP3")
    data = encoded.getvalue()
    assert b"Xing" in data[:64]  # libsndfile's encoder writes one in its first frame
    frames = data[_mp3_frame_length(data[:4]):]  # without that frame: no declared length
    comment = b"COMM" + (16).to_bytes(4, "big") + b"\0\0" + b"\0eng\0See the Info p"
    tag = b"ID3\x03\x00\x00" + bytes([0, 0, 0, len(comment)]) + comment
    for name, content, declared in (("xing", data, True), ("plain", frames, False), ("tagged", tag + frames, False),
                                    ("tagged-xing", tag + bytes(40) + data, True)):
        path = tmp_path / f"{name}.mp3"
        path.write_bytes(content)
        assert length_declared(path, None) is declared and length_declared(path, content) is declared, name


def test_a_raw_aac_stream_whose_estimate_passes_max_seconds_is_decoded_not_refused(tmp_path):
    """FFmpeg estimates a raw stream's length from its first frames' bitrate: a quiet start (few bytes a
    frame) makes it many times the music's; the decoded length is what render.max_seconds is held against."""
    quiet_start = np.concatenate([np.zeros((2, 20 * RATE), np.float32), sweep(10.0)], axis=1)
    path = write_adts(tmp_path / "take.aac", quiet_start, RATE)
    with FFmpegAudioFile(path) as handle:
        estimated = handle.frames / RATE
    render = section_params("render").model_copy(update={"max_seconds": 60.0})
    assert estimated > 60.0  # refused from the header before
    rendered, repaired = load_audio_source(path, render)
    assert repaired == [] and abs(rendered.shape[1] - 30.0 * render.sample_rate) < 0.1 * render.sample_rate
    render = render.model_copy(update={"max_seconds": 20.0})
    with pytest.raises(RenderError, match="^too_long: the audio lasts more than 20 s"):
        load_audio_source(path, render)


def test_download_keeps_m4a_files_and_names_one_under_another_extension(tmp_path):
    audio = stereo()
    m4a = write_m4a(tmp_path / "take.m4a", audio, RATE)
    assert check_file(m4a) is None and content_extension(m4a) is None
    misnamed = tmp_path / "take.wav"
    misnamed.write_bytes(m4a.read_bytes())
    assert check_file(misnamed) == "named .wav but looks like MPEG-4 data"
    assert content_extension(misnamed) == ".m4a"  # read as what it holds
    page = tmp_path / "page.m4a"
    page.write_text("<html>404</html>")
    assert check_file(page) == "named .m4a but looks like an HTML page"


def test_the_pipeline_and_predict_read_a_collection_of_the_files_ffmpeg_reads(tmp_path, monkeypatch, capsys):
    """download (a local folder), render twice (byte-identical), and predict with a model: an .m4a, a .wma, a
    .wv or an .aac is a source like any other."""
    import yaml

    from musicid.__main__ import main
    from tests.conftest import PROJECT_ROOT, load_stage
    from tests.test_predict import write_checkpoint

    monkeypatch.setenv("MUSICID_PROGRESS", "0")
    monkeypatch.setenv("MUSICID_JOBS", "1")
    source = tmp_path / "src"
    write_m4a(source / "a" / "one.m4a", stereo(5.0), RATE)
    write_m4a(source / "b" / "two.m4a", stereo(5.0)[::-1], RATE, codec="alac", sample_format="s16p")
    write_wma(source / "b" / "three.wma", stereo(5.0), RATE)
    write_wavpack(source / "a" / "four.wv", stereo(5.0), RATE)
    write_adts(source / "b" / "five.aac", stereo(5.0)[::-1], RATE)
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["dataset"].update(source="path", path=str(source), classes=[])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert load_stage("download").main(["--params", str(tmp_path / "params.yaml"), "--out",
                                        str(tmp_path / "raw")]) == 0
    listed = json.loads((tmp_path / "raw" / "manifest.json").read_text())
    assert [(r["path"], r["label"]) for r in listed["files"]] == [("a/four.wv", "a"), ("a/one.m4a", "a"),
                                                                 ("b/five.aac", "b"), ("b/three.wma", "b"),
                                                                 ("b/two.m4a", "b")]
    outputs = []
    for name in ("first", "second"):
        assert load_stage("render").main(["--params", str(tmp_path / "params.yaml"), "--raw", str(tmp_path / "raw"),
                                          "--out", str(tmp_path / name), "--jobs", "2"]) == 0
        outputs.append({path.relative_to(tmp_path / name): path.read_bytes()
                        for path in sorted((tmp_path / name).rglob("*")) if path.is_file()})
    report = json.loads(outputs[0][Path("report.json")])
    assert [(r["source"], r["status"]) for r in report["files"]] == [
        ("a/four.wv", "rendered"), ("a/one.m4a", "rendered"), ("b/five.aac", "rendered"), ("b/three.wma", "rendered"),
        ("b/two.m4a", "rendered")]
    assert outputs[0] == outputs[1]
    model = write_checkpoint(tmp_path / "model.pt", reference=1e9, reference_tracks=24)
    capsys.readouterr()
    assert main(["predict", str(source), "--model", str(model), "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert [(Path(f["path"]).name, f["error"], f["clips"], f["repaired"]) for f in files] == [
        ("four.wv", None, 1, []), ("one.m4a", None, 1, []), ("five.aac", None, 1, []), ("three.wma", None, 1, []),
        ("two.m4a", None, 1, [])]


def test_an_mp3_decodes_block_by_block_to_the_samples_of_one_whole_read(tmp_path):
    """libsndfile read an MP3 wrong block by block (the frame or two after each block garbled, 3.6 % of the
    samples at 2^16-frame blocks): MP3 goes through FFmpeg, whose blocks give libsndfile's whole read."""
    import soundfile

    rate = 44100
    seconds = np.arange(rate * 8) / rate
    music = (0.3 * np.sin(2 * np.pi * 220 * seconds) * np.sin(2 * np.pi * 0.5 * seconds)).astype(np.float32)
    path = tmp_path / "tone.mp3"
    with soundfile.SoundFile(path, "w", rate, 1, format="MP3") as handle:
        for start in range(0, len(music), 1 << 16):  # in blocks: libsndfile's encoder can crash on one long write
            handle.write(music[start:start + (1 << 16)])
    whole = soundfile.read(path, dtype="float32")[0]
    for block_frames in (1 << 16, 10_000, 1152):
        decoded = decode_audio(path, rate, 1, block_frames=block_frames)[0]
        assert len(decoded) == len(whole) and np.abs(decoded - whole).max() < 1e-4, block_frames
    assert np.abs(decoded - music).max() < 0.02  # the music, not only libsndfile's reading of it


@pytest.mark.parametrize("before", [b"\0", b"\0" * 4000, b"ID3\x03\x00\x00\x00\x00\x00\x0a" + b"\0" * 10,
                                    b"ID3\x03\x00\x00\x00\x00\x00\x0a" + b"\0" * 10 + b"\0" * 512],
                         ids=["one-zero", "padding", "id3", "id3-and-padding"])
def test_an_mp3_after_padding_or_a_tag_is_read_as_without_them(tmp_path, before):
    """Zero bytes before an MP3's first frame hid its Xing header from FFmpeg, which then guessed the length from
    the bitrate (a whole 8 s file read as 11.9 s declared, 'cut short') and kept the encoder's delay: read from
    its first frame, it decodes as the file without them, whole, and as one more read of its bytes."""
    import soundfile

    rate = 44100
    seconds = np.arange(rate * 8) / rate
    music = (0.3 * np.sin(2 * np.pi * 220 * seconds) * np.minimum(seconds / 3, 1)).astype(np.float32)
    plain = tmp_path / "plain.mp3"
    with soundfile.SoundFile(plain, "w", rate, 1, format="MP3") as handle:
        for start in range(0, len(music), 1 << 16):
            handle.write(music[start:start + (1 << 16)])
    padded = tmp_path / "padded.mp3"
    padded.write_bytes(before + plain.read_bytes())
    render = section_params("render", sample_rate=rate, max_seconds=10)
    expected, notes = load_audio_source(plain, render)
    assert notes == []
    for data in (None, padded.read_bytes()):
        audio, notes = load_audio_source(padded, render, data=data)
        assert notes == [] and np.array_equal(audio, expected)
    with FFmpegAudioFile(padded) as handle:
        assert handle.frames == len(music)

import pytest

from musicid.filetypes import check_file, content_mismatch
from tests.archives import midi_bytes, wav_bytes


def test_real_files_pass():
    assert content_mismatch(".mid", midi_bytes()) is None
    assert content_mismatch(".midi", midi_bytes()) is None
    assert content_mismatch(".wav", wav_bytes()) is None
    assert content_mismatch(".flac", b"fLaC\x00\x00\x00\x22") is None
    assert content_mismatch(".ogg", b"OggS\x00\x02") is None
    assert content_mismatch(".mp3", b"ID3\x04\x00") is None
    assert content_mismatch(".mp3", bytes([0xFF, 0xFB, 0x90, 0x64])) is None
    assert content_mismatch(".aiff", b"FORM\x00\x01\x00\x00AIFFCOMM") is None
    assert content_mismatch(".aif", b"FORM\x00\x01\x00\x00AIFCFVER") is None


@pytest.mark.parametrize("extension,head,expected", [
    (".mid", b"<!DOCTYPE html><html><body>404</body>", "named .mid but looks like an HTML page"),
    (".mid", b"", "named .mid but looks like an empty file"),
    (".wav", b"just some notes\n", "named .wav but looks like plain text"),
    (".mid", b"RIFF\x00\x00\x00\x00WAVEfmt ", "named .mid but looks like WAV audio"),
    (".wav", b"MThd\x00\x00\x00\x06\x00\x01", "named .wav but looks like MIDI data"),
    (".mp3", b"fLaC\x00\x00\x00\x22", "named .mp3 but looks like FLAC audio"),
    (".mid", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X", "named .mid but looks like a macOS AppleDouble file"),
    (".wav", b"RIFF\x00\x00\x00\x00AVI LIST", "named .wav but looks like unknown data starting 5249464600000000"),
    (".flac", b"PK\x03\x04rest", "named .flac but looks like a zip archive"),
    (".wav", b"FORM\x00\x01\x00\x00AIFFCOMM", "named .wav but looks like AIFF audio"),
    (".aiff", b"FORM\x00\x01\x00\x00ILBMBMHD", "named .aiff but looks like unknown data starting 464f524d00010000"),
    (".mp3", b"\x00\x00\x00\x00", "named .mp3 but looks like unknown data starting 00000000"),
])
def test_mismatches_say_what_the_file_looks_like(extension, head, expected):
    assert content_mismatch(extension, head) == expected


def test_check_file_uses_the_lower_case_extension(tmp_path):
    (tmp_path / "A.MID").write_bytes(midi_bytes())
    (tmp_path / "B.Mid").write_text("<html></html>")
    assert check_file(tmp_path / "A.MID") is None
    assert check_file(tmp_path / "B.Mid") == "named .mid but looks like an HTML page"


def test_an_mp3_that_starts_with_zero_bytes_passes_and_zeros_alone_do_not(tmp_path):
    """2 KB of zeros before the first frame (a stream's padding): libsndfile decodes it all, the content check
    called it "unknown data starting 0000..."."""
    import numpy as np
    import soundfile

    soundfile.write(tmp_path / "plain.mp3", 0.3 * np.sin(np.arange(3 * 22050) / 5), 22050, format="MP3")
    (tmp_path / "padded.mp3").write_bytes(bytes(2048) + (tmp_path / "plain.mp3").read_bytes())
    (tmp_path / "zeros.mp3").write_bytes(bytes(5000))
    assert check_file(tmp_path / "padded.mp3") is None
    assert soundfile.info(tmp_path / "padded.mp3").frames == soundfile.info(tmp_path / "plain.mp3").frames
    assert check_file(tmp_path / "zeros.mp3") == "named .mp3 but looks like unknown data starting 0000000000000000"


def test_other_names_of_the_accepted_formats_pass():
    assert content_mismatch(".wave", wav_bytes()) is None
    assert content_mismatch(".aifc", b"FORM\x00\x01\x00\x00AIFCFVER") is None
    assert content_mismatch(".oga", b"OggS\x00\x02") is None
    assert content_mismatch(".opus", b"OggS\x00\x02") is None
    assert content_mismatch(".opus", b"fLaC\x00\x00\x00\x22") == "named .opus but looks like FLAC audio"


def test_content_extension_names_what_a_misnamed_file_holds(tmp_path):
    from musicid.filetypes import content_extension

    files = {"mp3.wav": b"ID3\x04\x00" + bytes(60), "wav.mp3": wav_bytes(), "flac.ogg": b"fLaC\x00\x00\x00\x22",
             "midi.wav": midi_bytes(), "wav.mid": wav_bytes(), "aiff.flac": b"FORM\x00\x01\x00\x00AIFFCOMM",
             "ogg.mp3": b"OggS\x00\x02", "page.mid": b"<html>404</html>", "empty.wav": b"", "fine.wav": wav_bytes()}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert {name: content_extension(tmp_path / name) for name in files} == {
        "mp3.wav": ".mp3", "wav.mp3": ".wav", "flac.ogg": ".flac", "midi.wav": ".mid", "wav.mid": ".wav",
        "aiff.flac": ".aiff", "ogg.mp3": ".ogg", "page.mid": None, "empty.wav": None, "fine.wav": None}


def test_only_a_run_of_mpeg_frames_makes_a_misnamed_file_an_mp3(tmp_path):
    """Two sync bytes are not enough to rename a file .mp3: raw PCM whose first sample is -1 (FF FF ...) or
    UTF-16 text (FF FE ...) named .wav would be decoded as a minute of noise. Frames that follow one another
    are, with or without an ID3 tag."""
    import io

    import numpy as np
    import soundfile

    from musicid.filetypes import content_extension

    buffer = io.BytesIO()
    soundfile.write(buffer, 0.3 * np.sin(np.arange(44100) / 7), 44100, format="MP3")
    frames = buffer.getvalue()
    assert not frames.startswith(b"ID3") and frames[:2] == b"\xff\xfb"  # frames from the first byte
    pcm = np.random.default_rng(0).normal(0, 33, 20 * 16000).astype(np.int16)
    pcm[0] = -1
    files = {"frames.wav": frames, "tagged.wav": b"ID3\x04\x00" + bytes(60), "pcm.wav": pcm.tobytes(),
             "utf16.wav": "liner notes".encode("utf-16"), "cut.wav": frames[:500]}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert {name: content_extension(tmp_path / name) for name in files} == {
        "frames.wav": ".mp3", "tagged.wav": ".mp3", "pcm.wav": None, "utf16.wav": None, "cut.wav": None}


def test_frames_start_after_a_tag_and_padding_and_not_past_too_much_padding():
    """The one place every reader of an MP3 or raw AAC stream finds its frames: past an ID3v2 tag (its size from
    its header, a footer's 10 bytes when flagged) and up to MP3_PADDING zero bytes; more zeros, or zeros to the
    end, are no padding, and the frames are taken to start where they do (decoding then says what is wrong)."""
    import io

    from musicid.filetypes import MP3_PADDING, first_bytes_of_frames, frames_start

    frame = bytes([0xFF, 0xFB, 0x90, 0x64]) + b"Xing" + bytes(56)
    tag = b"ID3\x04\x00\x00" + bytes([0, 0, 1, 0]) + b"T" * 128  # a 128-byte tag (syncsafe 0x80)
    footer = b"ID3\x04\x00\x10" + bytes([0, 0, 0, 6]) + b"TIT2xx" + b"3DI" + bytes(7)
    cases = [(frame, (0, 0)), (tag + frame, (138, 138)), (bytes(300) + frame, (0, 300)),
             (tag + bytes(5) + frame, (138, 143)), (footer + frame, (26, 26)),
             (bytes(MP3_PADDING) + frame, (0, MP3_PADDING)), (bytes(MP3_PADDING + 1) + frame, (0, 0)),
             (bytes(40), (0, 0)), (tag, (138, 138)), (b"", (0, 0))]
    for data, expected in cases:
        handle = io.BytesIO(b"junk" + data)
        handle.seek(4)  # offsets are from the handle's position, which is kept
        assert frames_start(handle) == expected, data[:12]
        assert handle.tell() == 4
        assert first_bytes_of_frames(handle, 8) == data[expected[1]:expected[1] + 8]
        assert handle.tell() == 4
    assert first_bytes_of_frames(io.BytesIO(tag + bytes(5) + frame), 8) == frame[:8]

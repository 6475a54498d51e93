"""What a file is, by its first bytes rather than its name.

Collections gathered from the web hold files that are not what their extension
says: an HTML error page saved as ``.mid``, a text note named ``.wav``.  Such a
file would fail much later, or worse, be half-read; here it is caught at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

# .kar: a karaoke file, a standard MIDI file with lyrics; .rmi: a MIDI file in a RIFF wrapper (unwrapped by midi.py)
MIDI_EXTENSIONS = (".mid", ".midi", ".kar", ".rmi")
# Lossless first: download keeps them first. .wave is WAV, .aifc AIFF-C, .oga and .opus Ogg (Vorbis, Opus, FLAC);
# .wv WavPack, .m4a MPEG-4 audio (AAC, or ALAC), .wma Windows Media audio, .aac a raw AAC stream (ADTS) and .mp3,
# which FFmpeg decodes (musicid.audio.FFMPEG_EXTENSIONS); libsndfile the others.
AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".aiff", ".aif", ".aifc", ".wv", ".ogg", ".oga", ".opus", ".mp3",
                    ".m4a", ".wma", ".aac")
ACCEPTED_EXTENSIONS = MIDI_EXTENSIONS + AUDIO_EXTENSIONS
# Scores a collection may hold beside them, which download writes out as MIDI with music21 (as it writes the
# corpus): the stages after it see MIDI only. In the order one file of a work is kept (a score before its export).
SCORE_EXTENSIONS = (".mxl", ".musicxml", ".xml", ".mei", ".krn", ".abc")
SCORE_KINDS = {".mxl": "compressed MusicXML", ".musicxml": "MusicXML", ".xml": "MusicXML", ".mei": "MEI",
               ".krn": "Humdrum kern", ".abc": "ABC"}
SCORE_HEAD_BYTES = 65536  # read for a score's signs: a MusicXML root element, a kern spine, an ABC header
WAV_EXTENSIONS = (".wav", ".wave")
# What a file holds -> the extension a file of it is given when its own does not fit (see content_extension).
KINDS = (("MIDI data", ".mid"), ("WAV audio", ".wav"), ("FLAC audio", ".flac"), ("AIFF audio", ".aiff"),
         ("WavPack audio", ".wv"), ("Ogg data", ".ogg"), ("MPEG-4 data", ".m4a"), ("Windows Media (ASF) data", ".wma"),
         ("MP3 audio", ".mp3"), ("AAC audio (ADTS)", ".aac"))
ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")  # the GUID an ASF file (.wma, .wmv) starts with


def _looks_like(head: bytes) -> str:
    """A short description of what ``head`` (a file's first bytes) looks like."""
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page"
    if stripped.startswith(b"<?xml") or stripped.startswith(b"<"):
        return "XML or HTML text"
    if stripped.startswith((b"{", b"[")):
        return "JSON text"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive"
    if head.startswith(b"\x1f\x8b"):
        return "gzip data"
    if head.startswith(b"\x00\x05\x16\x07"):  # the "._x.mid" beside "x.mid" that macOS writes on other disks
        return "a macOS AppleDouble file"
    if not head:
        return "an empty file"
    # A file of one kind saved under another's extension (its own extension would fit it)
    for kind, extension in KINDS:
        if _fits(extension, head):
            return kind
    if all(32 <= byte < 127 or byte in (9, 10, 13) for byte in head[:64]):
        return "plain text"
    return f"unknown data starting {head[:8].hex()}"


MP3_PADDING = 1 << 16  # zero bytes an MP3 file may start with before its first frame (libsndfile skips them)


def is_mpeg_frame(head: bytes) -> bool:
    """An MPEG audio frame header: 11 sync bits, then a valid layer field."""
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) != 0


def _is_mp3(head: bytes) -> bool:
    return head.startswith(b"ID3") or is_mpeg_frame(head)


def is_adts(head: bytes) -> bool:
    """An AAC frame's ADTS header: 12 sync bits, then layer 00 (an MPEG audio frame's layer is never 00)."""
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0


def id3_end(head: bytes) -> int | None:
    """The offset just after the ID3v2 tag that starts ``head`` (an MP3's or a raw AAC stream's, which may hold a
    cover picture: megabytes), from its 10-byte header; None when ``head`` starts with none."""
    if len(head) < 10 or not head.startswith(b"ID3"):
        return None
    size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
    return 10 + size + (10 if head[5] & 0x10 else 0)  # and a footer, when its flag says so


def frames_start(handle: BinaryIO) -> tuple[int, int]:
    """Where an MP3's or a raw AAC stream's frames start in ``handle`` (a binary file at the stream's first byte;
    its position is kept): (the end of the ID3v2 tag the stream starts with, 0 without one; that, plus the zero
    bytes after it when at most MP3_PADDING of them, a stream's padding, come before the first byte of another
    value). Offsets are from the handle's position. Every reader of such streams here (the content check,
    render's Xing header, FFmpeg's MP3, a raw AAC stream's last frame) starts there."""
    start = handle.tell()
    try:
        tag = id3_end(handle.read(10)) or 0
        handle.seek(start + tag)
        head = handle.read(MP3_PADDING + 1)
    finally:
        handle.seek(start)
    zeros = len(head) - len(head.lstrip(b"\0"))
    return tag, tag + (zeros if zeros < len(head) else 0)  # only zeros to the end, or too many: no frames there


def first_bytes_of_frames(handle: BinaryIO, size: int = 64) -> bytes:
    """The first ``size`` bytes of a stream's frames (:func:`frames_start`); the handle's position is kept."""
    start = handle.tell()
    try:
        handle.seek(start + frames_start(handle)[1])
        return handle.read(size)
    finally:
        handle.seek(start)


def _tagged_kind(handle: BinaryIO) -> str | None:
    """``.aac`` or ``.mp3`` for a file (``handle``, open for reading) that starts with an ID3v2 tag, by the frame
    after the tag (and any padding after it); None when neither follows it (a tag alone, or damage: decoding
    will say)."""
    handle.seek(0)
    after = first_bytes_of_frames(handle)
    return ".aac" if is_adts(after) else ".mp3" if _is_mp3(after) else None


def _fits(extension: str, head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) starts as a file of ``extension`` (an accepted one) does."""
    if extension in MIDI_EXTENSIONS:
        return head.startswith(b"MThd") or (head.startswith(b"RIFF") and head[8:12] == b"RMID")
    if extension in WAV_EXTENSIONS:
        return head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE"
    if extension == ".flac":
        return head.startswith(b"fLaC")
    if extension in (".aiff", ".aif", ".aifc"):  # AIFF, or AIFF-C (compressed or not): an IFF FORM chunk
        return head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC")
    if extension in (".ogg", ".oga", ".opus"):
        return head.startswith(b"OggS")
    if extension == ".m4a":  # an ISO media file (MPEG-4, QuickTime): its first box is "ftyp"
        return head[4:8] == b"ftyp"
    if extension == ".wma":
        return head.startswith(ASF_HEADER)
    if extension == ".wv":
        return head.startswith(b"wvpk")
    if extension == ".aac":  # its frames, perhaps after an ID3 tag (as an MP3's: check_file looks past it)
        return is_adts(head) or head.startswith(b"ID3")
    return _is_mp3(head)


def content_mismatch(extension: str, head: bytes) -> str | None:
    """``None`` when ``head`` fits ``extension`` (lower case, with dot); else why not."""
    if extension not in ACCEPTED_EXTENSIONS:
        return f"unsupported extension {extension!r}"
    if _fits(extension, head):
        return None
    return f"named {extension} but looks like {_looks_like(head)}"


def check_file(path: str | Path) -> str | None:
    """:func:`content_mismatch` for a file on disk (reads its first 64 bytes; an MP3 that starts with zero bytes,
    a stream's padding before its first frame, up to MP3_PADDING bytes; an .mp3 or .aac that starts with an ID3
    tag, the first bytes after it: the frames there tell the two apart)."""
    path = Path(path)
    extension = path.suffix.lower()
    with open(path, "rb") as handle:
        head = handle.read(64)
        if extension == ".mp3" and head[:1] == b"\0":
            handle.seek(0)
            if _is_mp3(first_bytes_of_frames(handle)):
                return None
        if extension in (".mp3", ".aac") and id3_end(head) is not None:
            kind = _tagged_kind(handle)
            if kind not in (None, extension):
                return f"named {extension} but looks like {dict((e, k) for k, e in KINDS)[kind]} (after an ID3 tag)"
    return content_mismatch(extension, head)


# kbit/s by bitrate index (1-14), for (MPEG-1, layer I / II / III) and (MPEG-2 and 2.5, layer I / II and III).
_BITRATES = {(True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
             (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
             (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
             (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
             (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version bits
MP3_FRAMES_CHECKED = 4  # frames that must follow one another, each where the one before says it ends
MP3_HEAD_BYTES = 8192  # enough for 4 of the longest frames


def _mp3_frame_length(header: bytes) -> int | None:
    """The length in bytes of the MPEG audio frame whose 4-byte header is ``header``; None for no valid one."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer = (header[1] >> 3) & 3, 4 - ((header[1] >> 1) & 3)  # layer bits 11 = I, 10 = II, 01 = III
    bitrate_index, rate_index, padding = header[2] >> 4, (header[2] >> 2) & 3, (header[2] >> 1) & 1
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None  # reserved version or layer, free or bad bitrate, reserved rate
    mpeg1 = version == 3
    bitrate = _BITRATES[(mpeg1, layer if mpeg1 or layer == 1 else 2)][bitrate_index - 1] * 1000
    rate = _RATES[version][rate_index]
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4
    return (144 if mpeg1 or layer == 2 else 72) * bitrate // rate + padding


def _is_mp3_stream(data: bytes) -> bool:
    """Whether ``data`` (a file's first MP3_HEAD_BYTES) starts with an ID3 tag, or with MP3_FRAMES_CHECKED
    valid MPEG audio frame headers, each where the frame before it ends: firmer than the two sync bytes that
    a bit of raw PCM or UTF-16 text can start with."""
    if data.startswith(b"ID3"):
        return True
    at = 0
    for _ in range(MP3_FRAMES_CHECKED):
        length = _mp3_frame_length(data[at:at + 4])
        if length is None:
            return False
        at += length
    return True


def content_extension(path: str | Path) -> str | None:
    """The extension of what a file holds when its own extension does not fit it (an MP3 named ``.wav``, a
    FLAC named ``.ogg``, a MIDI file named ``.wav``): ``.mid``, ``.wav``, ``.flac``, ``.aiff``, ``.wv``,
    ``.ogg``, ``.m4a``, ``.wma``, ``.mp3`` or ``.aac``; None when its own fits, or when it holds none of these
    (an HTML page, an empty file). An MP3 needs a run of frames that follow one another
    (:func:`_is_mp3_stream`); after an ID3 tag, the frame that follows it tells an MP3 from a raw AAC stream (an
    MP3 when it is neither)."""
    if check_file(path) is None:
        return None
    with open(path, "rb") as handle:
        head = handle.read(MP3_HEAD_BYTES)
        if id3_end(head) is not None:  # an MP3's or a raw AAC stream's tag: the frames after it say which (an
            return _tagged_kind(handle) or ".mp3"  # MP3's when they say neither: libsndfile decides)
    for _, extension in KINDS:
        if extension == ".mp3":
            if _is_mp3_stream(head):
                return ".mp3"
        elif extension == ".aac":
            return ".aac" if is_adts(head) else None
        elif _fits(extension, head[:64]):
            return extension
    return None


def score_mismatch(path: str | Path) -> str | None:
    """None when the file at ``path`` (a SCORE_EXTENSIONS one) holds what its extension says, as far as its first
    SCORE_HEAD_BYTES tell: a zip archive (``.mxl``); a ``<score-partwise>`` or ``<score-timewise>`` root
    element (``.xml``, ``.musicxml``: other XML files are common beside scores), an ``<mei>`` one (``.mei``,
    the Music Encoding Initiative's); text with a ``**kern`` spine
    (``.krn``) or an ``X:`` or ``K:`` field (``.abc``). Else why not. Whether music21 can read it is found when
    it is converted."""
    path = Path(path)
    extension = path.suffix.lower()
    with open(path, "rb") as handle:
        head = handle.read(SCORE_HEAD_BYTES)
    kind = SCORE_KINDS.get(extension)
    if kind is None:
        return f"unsupported extension {extension!r}"
    if extension == ".mxl":
        return None if head.startswith(b"PK\x03\x04") else f"named {extension} but looks like {_looks_like(head)}"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16, which MusicXML may be written in
        text = head.decode("utf-16", errors="replace")
    elif b"\0" in head:
        return f"named {extension} but looks like {_looks_like(head[:64])}"
    else:
        text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")  # a UTF-8 byte order mark
    if extension in (".xml", ".musicxml"):
        found = "<score-partwise" in text or "<score-timewise" in text
    elif extension == ".mei":
        found = "<mei " in text or "<mei>" in text
    elif extension == ".krn":
        found = any(token == "**kern" for line in text.splitlines() if line.startswith("**")
                    for token in line.split("\t"))
    else:
        found = any(line.startswith(("X:", "K:")) for line in text.splitlines())
    return None if found else f"named {extension} but holds no {kind} score"


def score_text_bytes(path: str | Path) -> int:
    """How many bytes of score text music21 reads of the score file at ``path``: its size, or for a ``.mxl``
    the sizes its members declare once unpacked (a zip of a few KB can unpack to gigabytes)."""
    import zipfile

    path = Path(path)
    if path.suffix.lower() != ".mxl":
        return path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            return sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, EOFError, ValueError):  # music21 says what is wrong with it
        return path.stat().st_size

"""What a file is, by its first bytes rather than its name.

Collections gathered from the web hold files that are not what their extension
says: an HTML error page saved as ``.mid``, a text note named ``.wav``.  Such a
file would fail much later, or worse, be half-read; here it is caught at once.
"""

from __future__ import annotations

from pathlib import Path

# .kar: a karaoke file, a standard MIDI file with lyrics; .rmi: a MIDI file in a RIFF wrapper (unwrapped by midi.py)
MIDI_EXTENSIONS = (".mid", ".midi", ".kar", ".rmi")
# Lossless first: download keeps them first. .wave is WAV, .aifc AIFF-C, .oga and .opus Ogg (Vorbis, Opus, FLAC).
AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".aiff", ".aif", ".aifc", ".ogg", ".oga", ".opus", ".mp3")
ACCEPTED_EXTENSIONS = MIDI_EXTENSIONS + AUDIO_EXTENSIONS
WAV_EXTENSIONS = (".wav", ".wave")
# What a file holds -> the extension a file of it is given when its own does not fit (see content_extension).
KINDS = (("MIDI data", ".mid"), ("WAV audio", ".wav"), ("FLAC audio", ".flac"),
         ("AIFF audio", ".aiff"), ("Ogg data", ".ogg"), ("MP3 audio", ".mp3"))


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


def _is_mp3(head: bytes) -> bool:
    if head.startswith(b"ID3"):
        return True
    # An MPEG audio frame header: 11 sync bits, then a valid layer field.
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) != 0


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
    a stream's padding before its first frame, up to MP3_PADDING bytes)."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(64)
        if path.suffix.lower() == ".mp3" and head[:1] == b"\0":
            padded = head + handle.read(MP3_PADDING - len(head))
            after = padded.lstrip(b"\0")
            if after and _is_mp3(after[:64]):
                return None
    return content_mismatch(path.suffix.lower(), head)


def content_extension(path: str | Path) -> str | None:
    """The extension of what a file holds when its own extension does not fit it (an MP3 named ``.wav``, a
    FLAC named ``.ogg``, a MIDI file named ``.wav``): ``.mid``, ``.wav``, ``.flac``, ``.aiff``, ``.ogg`` or
    ``.mp3``; None when its own fits, or when it holds none of these (an HTML page, an empty file)."""
    if check_file(path) is None:
        return None
    with open(path, "rb") as handle:
        head = handle.read(64)
    return next((extension for _, extension in KINDS if _fits(extension, head)), None)

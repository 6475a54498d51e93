"""A cache of the MIDI files music21 writes of scores, so that a score is converted once.

music21 takes seconds to minutes to convert a score (a full string-quartet
movement can take ten), and download converts every score of a collection (or
of the corpus) each time it runs: when one file is added, or a ``dataset``
param changes, DVC runs it again and removes ``data/raw`` first.  This cache
keeps, for each score converted, exactly the bytes the conversion gave, so that
an incremental run writes the output of a run from scratch.

Key.  The sha256 of everything a conversion depends on: the score's bytes and
its kind (its extension, lower case); whether it is the corpus's (written for
``dataset.program``) or a collection's (checked and read back as render reads
it); ``dataset.program`` and ``dataset.timeout_s`` (a smaller limit must still
refuse a slow score); the versions of Python, music21 and mido; and the statements of
:mod:`musicid.dataset` and every ``musicid`` module it imports (their syntax
trees: an edited comment changes no key).  A conversion that gave a MIDI file
is kept, and so is one that failed for a reason of the score's own (music21's
error on it, a MIDI file of no note: :func:`musicid.dataset.repeatable_failure`),
so that a collection's few bad scores do not cost their minutes on every run;
a timeout (it depends on the machine's load), a crash, or an error of memory
or of the file system is tried again.

Place and size.  ``$MUSICID_SCORE_CACHE``, else ``scores/`` in the user's cache
folder (:func:`musicid.fetch.default_cache_dir`), never inside the project;
after each run the least recently used entries are removed until it holds at
most MAX_BYTES (the run's own entries are kept).  ``MUSICID_NO_CACHE=1`` turns
it off with the render cache; ``python -m musicid cache info|clear`` shows and
empties both.

Entries.  ``<key[:2]>/<key>.entry``: one JSON line (the MIDI file's sha256 and
size) and the MIDI bytes after it, or for a failure one JSON line of its reason, written under a temporary name and renamed,
so a killed run leaves no half entry; one whose bytes do not match its digest
is removed and counted as a miss.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
import tempfile
from pathlib import Path

from musicid.cluster import statements
from musicid.cache_files import SUFFIX, code_modules, enabled, prune, remove_file

DIR_ENV = "MUSICID_SCORE_CACHE"
MAX_BYTES = 1_000_000_000  # some 20,000 scores' MIDI files


def cache_dir() -> Path:
    """``$MUSICID_SCORE_CACHE``, else ``scores/`` in :func:`musicid.fetch.default_cache_dir`; ValueError naming
    the variable when it is relative."""
    from musicid.fetch import default_cache_dir, folder_from_env

    folder = folder_from_env(DIR_ENV)
    return folder if folder is not None else default_cache_dir() / "scores"


def conversion_context(program: int | None, timeout_s: float) -> str:
    """The part of every key shared by a run: the params, the libraries and the code a conversion depends on."""
    code = hashlib.sha256()
    for path in code_modules("dataset"):
        code.update(path.name.encode() + b"\0" + statements(path.read_text(encoding="utf-8")).encode() + b"\0")
    versions = {name: importlib.metadata.version(name) for name in ("music21", "mido")}
    return hashlib.sha256(json.dumps({"program": program, "timeout_s": timeout_s, "libraries": versions,
                                      "python": list(sys.version_info[:2]), "code": code.hexdigest()},
                                     sort_keys=True).encode()).hexdigest()


class ScoreCache:
    """The entries under ``root`` for one run's ``context`` (:func:`conversion_context`)."""

    def __init__(self, root: Path, context: str):
        self.root = Path(root)
        self.context = context
        self.used: set[str] = set()
        self.hits = 0  # MIDI files served
        self.failures = 0  # failures served
        self.failed_writes = 0
        self.write_error = ""

    def key(self, kind: str, suffix: str, digest: str) -> str:
        """The key of a score whose bytes' sha256 is ``digest``, with extension ``suffix``; ``kind`` ``corpus`` or
        ``collection``."""
        identity = json.dumps([self.context, kind, suffix.lower(), digest])
        return hashlib.sha256(identity.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}{SUFFIX}"

    def get(self, key: str) -> bytes | str | None:
        """The MIDI bytes, or the reason of the failure, stored under ``key``, or None (absent, or damaged: then
        removed)."""
        path = self.path(key)
        try:
            blob = path.read_bytes()
        except OSError:
            return None
        try:
            line_end = blob.index(b"\n")
            header = json.loads(blob[:line_end])
            data = blob[line_end + 1:]
            if "reason" in header:
                if not isinstance(header["reason"], str) or data:
                    raise ValueError("a failure's entry holds a reason only")
            elif len(data) != header["size"] or hashlib.sha256(data).hexdigest() != header["sha256"]:
                raise ValueError("the MIDI bytes do not match the entry's digest")
        except (ValueError, KeyError, TypeError):
            remove_file(path)
            return None
        try:
            os.utime(path)  # recently used: the last to be evicted
        except OSError:
            pass
        self.used.add(key)
        if "reason" in header:
            self.failures += 1
            return header["reason"]
        self.hits += 1
        return data

    def put(self, key: str, result: bytes | str) -> None:
        """Store ``result`` (MIDI bytes, or a failure's reason) under ``key``; a failure to write (disk full, no
        permission) is counted, not raised: the cache only saves time."""
        path = self.path(key)
        if isinstance(result, str):
            blob = json.dumps({"reason": result}, sort_keys=True).encode() + b"\n"
        else:
            header = {"sha256": hashlib.sha256(result).hexdigest(), "size": len(result)}
            blob = json.dumps(header, sort_keys=True).encode() + b"\n" + result
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(blob)
                os.replace(temporary, path)
            finally:
                if os.path.exists(temporary):
                    os.unlink(temporary)
        except OSError as error:
            self.failed_writes += 1
            self.write_error = f"{type(error).__name__}: {error}"[:200]
            return
        self.used.add(key)

    def prune(self) -> int:
        """Remove least recently used entries (never this run's) down to MAX_BYTES; how many went (0 when the
        cache cannot be listed: it only saves time)."""
        try:
            return prune(self.root, MAX_BYTES, keep=self.used)
        except OSError:
            return 0


def open_cache(program: int | None, timeout_s: float) -> ScoreCache | None:
    """This run's cache, or None with ``MUSICID_NO_CACHE=1``; :class:`musicid.stage.StageError` naming the
    variable when ``$MUSICID_SCORE_CACHE`` or ``$MUSICID_CACHE`` is a relative path."""
    if not enabled():
        return None
    try:
        root = cache_dir()
    except ValueError as error:
        from musicid.stage import StageError

        raise StageError(str(error)) from None
    return ScoreCache(root, conversion_context(program, timeout_s))

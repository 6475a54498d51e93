"""File helpers shared by the stages: atomic writes, hashing, canonical JSON.

Every output is written under a temporary name next to its target and moved into
place with ``os.replace``, so an interrupted stage never leaves a half-written
file under the real name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import Any, Iterator


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def dumps_json(data: Any) -> str:
    """Canonical JSON text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


# A file name may hold at most 255 bytes on common file systems; staging names
# add a dot, a process id, random letters and ".tmp" to the target's name.
MAX_NAME_BYTES = 255
_SHORT_NAME_BYTES = 120


def _short(name: str, limit: int) -> str:
    """``name`` itself when it fits in ``limit`` UTF-8 bytes, else a cut of it plus a hash of the whole."""
    encoded = name.encode("utf-8")
    if len(encoded) <= limit:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:12]
    head = encoded[: limit - len(digest) - 1].decode("utf-8", errors="ignore")
    return f"{head}-{digest}"


def _staging_prefix(target: Path) -> str:
    """``.<name>.<pid>.``: whose staging it is, so a later run can tell a dead run's leftovers."""
    return f".{_short(target.name, _SHORT_NAME_BYTES)}.{os.getpid()}."


# ``.<output name>.<pid>.<tempfile's 8 random characters>.tmp`` (mkstemp and mkdtemp: a-z, 0-9 and _).
_STAGING_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]{1,7})\.[a-z0-9_]{8}\.tmp$")


def output_name(path: str | Path) -> str:
    """``path`` with each staging component named as the output it stands for (``data/.raw.123.ab12cd34.tmp/
    bach/x.mid`` -> ``data/raw/bach/x.mid``): what a user knows, in an error about a file being written."""
    parts = [match["name"] if (match := _STAGING_NAME.match(part)) else part for part in Path(path).parts]
    return str(Path(*parts)) if parts else str(path)


def _set_aside(target: Path) -> Path:
    """Where atomic_directory's swap puts the previous folder while the new one moves in."""
    return target.with_name(f".{_short(target.name, _SHORT_NAME_BYTES)}.old")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's; or no pid at all: not ours to remove
        return True
    return True


def remove_stale_staging(target: str | Path) -> list[Path]:
    """Remove the staging files and folders left beside ``target`` by runs that were killed: ``target``'s own,
    and those of the other outputs in its folder (a stage DVC restores from its cache instead of running it
    cannot clean up after its own dead run; the next stage that writes beside it does).

    Staging names carry the process id of the run that made them; one whose
    process is gone is a leftover of a run that died (SIGKILL, power loss)
    before it could clean up.  A live run's staging is left alone.  Returns
    what was removed.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    prefix = f".{_short(target.name, _SHORT_NAME_BYTES)}."
    old = _set_aside(target)
    if (old.exists() or old.is_symlink()) and not (target.exists() or target.is_symlink()):
        # A run killed between the two renames of atomic_directory's swap: the previous output, whole, is
        # the .old one. It goes back into place rather than away.
        os.replace(old, target)
    removed = []
    entries = sorted(target.parent.iterdir())
    outputs = {_short(path.name, _SHORT_NAME_BYTES) for path in entries}
    for path in entries:
        name = path.name
        # Staging names only (a file of the user's named alike stays): target's own, or another output's
        # when that output is in the folder; once the run that made it is gone.
        staging = _STAGING_NAME.match(name)
        dead = bool(staging) and (staging["name"] == prefix[1:-1] or staging["name"] in outputs) and \
            not _pid_alive(int(staging["pid"]))
        if name == f"{prefix}old" or dead:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place on success.

    On an exception the temporary file is removed and ``target`` is untouched;
    staging left by an earlier run that was killed is removed first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    handle, name = tempfile.mkstemp(prefix=_staging_prefix(target), suffix=".tmp", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        # mkstemp creates the file private (0600); give it the usual mode.
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as temporary:
        try:
            temporary.write_bytes(data)
        except OSError as error:
            if error.filename is not None:
                raise
            # A write that fails part-way (a full disk) names no file: name the one it was for.
            raise OSError(error.errno, error.strerror, str(target)) from error


def write_json_atomic(target: str | Path, data: Any) -> None:
    write_bytes_atomic(target, dumps_json(data).encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``target``; swap it in on success.

    Whatever was at ``target`` before is replaced only once the new tree is
    complete; on an exception the temporary tree is removed and ``target`` is
    left as it was. The swap is two renames (the old tree aside, the new one in):
    an exception between them (a Ctrl-C, a SIGTERM) puts the old tree back, and
    a run killed there outright leaves it aside, where the next run puts it back.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    temporary = Path(tempfile.mkdtemp(prefix=_staging_prefix(target), suffix=".tmp", dir=target.parent))
    old = _set_aside(target)
    try:
        # mkdtemp makes the folder private (0700); the output is an ordinary folder
        os.chmod(temporary, 0o777 & ~_current_umask())
        yield temporary
        if target.exists() or target.is_symlink():
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            os.replace(temporary, target)
            shutil.rmtree(old)
        else:
            os.replace(temporary, target)
    finally:
        if (old.exists() or old.is_symlink()) and not (target.exists() or target.is_symlink()):
            os.replace(old, target)  # stopped between the two renames: the old tree back, not lost
        if temporary.exists():
            shutil.rmtree(temporary)


# Names the pipeline itself writes beside the label folders: data/raw/manifest.json,
# data/audio/report.json and data/raw/_unlabeled/.  A label with one of these names
# would overwrite them (or be overwritten), so such a folder is refused.
RESERVED_LABELS = frozenset({"manifest.json", "report.json", "_unlabeled"})


def safe_name(text: str, max_bytes: int = 200) -> str:
    """A file-name-safe version of ``text``: letters, digits, ``.-_`` kept, the rest ``_``.

    A result longer than ``max_bytes`` UTF-8 bytes is cut and given a hash of
    the whole text, so two long names that share a beginning stay apart and
    an extension or suffix added later still fits the 255-byte limit.
    """
    # Composed (NFC) first: a name spelled with combining accents (as macOS writes it, "Dvor\u030ca\u0301k")
    # keeps its letters ("Dvořák") instead of losing the accents to "_".
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in unicodedata.normalize("NFC", text))
    return _short(cleaned.strip("._") or "_", max_bytes)


def unreadable_reason(error: OSError) -> str:
    """A file or folder the system would not let us read, as a reason in a report: ``unreadable: <cause>``."""
    return f"unreadable: {error.strerror or type(error).__name__}"


def printable(name: str) -> str:
    """A file name from the file system as text that can be shown and written to JSON.

    Bytes of a name that are not UTF-8 (a Latin-1 ``caf\xe9.mid`` from an old
    archive or share) reach Python as lone surrogates, which no UTF-8 text can
    hold; they are written ``\\xNN``.  Any other name comes back as it is.
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def size_words(count: int) -> str:
    """``1.2 GB`` or ``368.6 kB``: a byte count as a person reads it."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"

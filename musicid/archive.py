"""Safe extraction of zip and tar archives.

A member is refused (listed with a reason, never written) when its path is
absolute or climbs out with ``..``, when a part of its name is longer than the
file system allows, when it is a symlink, a hard link, a device or a FIFO, or
when an earlier member already took its name (the same name twice, or a file
and a folder of one name).  Folder members are not written as such; a folder
named like a file (``x.mid/``) is just a folder.  Names the pipeline writes
(``manifest.json``) cannot clash with members: the caller extracts into a
folder of its own and applies the label rules of :mod:`musicid.dataset`.

Extraction stops with :class:`ArchiveError` when the members would hold more
than ``max_bytes`` bytes or number more than ``max_files`` (decompression
bombs): sizes are counted as bytes are written, not taken from the headers,
which can lie.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

COPY_CHUNK = 1 << 20
NAME_MAX = 255  # bytes in one path component on Linux file systems


class ArchiveError(ValueError):
    """The archive cannot be used as a whole (not an archive, over a limit, corrupt)."""


def unsafe_path_reason(name: str) -> str | None:
    """Why the member path ``name`` may not be written, or ``None`` when it is safe."""
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return "absolute_path"
    if any(part == ".." for part in PurePosixPath(normalised).parts):
        return "path_traversal"
    if "\x00" in normalised:
        return "bad_name"
    if any(len(part.encode("utf-8", "surrogateescape")) > NAME_MAX for part in PurePosixPath(normalised).parts):
        return "name_too_long"
    return None


def _collision_reason(root: Path, target: Path) -> str | None:
    """Why ``target`` (inside ``root``) cannot be written next to the members already written, or None.

    Tar and zip allow one name twice, and a file and a folder of one name
    (``x.mid`` then ``x.mid/y.mid``); the file system does not.  The first
    member wins, so the result does not depend on what the second holds.
    """
    if target == root or target.is_dir():
        return "name_conflict"
    if target.exists():
        return "duplicate_member"
    for parent in target.parents:
        if parent == root:
            break
        if parent.exists() and not parent.is_dir():
            return "name_conflict"
    return None


class _Budget:
    def __init__(self, max_bytes: int, max_files: int):
        self.max_bytes, self.max_files = max_bytes, max_files
        self.bytes = 0
        self.files = 0

    def add_file(self) -> None:
        self.files += 1
        if self.files > self.max_files:
            raise ArchiveError(f"archive holds more than {self.max_files} files "
                               f"(dataset.max_files); refusing to extract it")

    def copy(self, source: IO[bytes], target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            while chunk := source.read(COPY_CHUNK):
                self.bytes += len(chunk)
                if self.bytes > self.max_bytes:
                    raise ArchiveError(f"archive expands to more than {self.max_bytes} bytes "
                                       f"(dataset.max_bytes); refusing to extract it")
                out.write(chunk)


def _destination(root: Path, name: str) -> Path:
    target = (root / name.replace("\\", "/")).resolve()
    # Belt and braces: the name checks above already exclude this.
    if not target.is_relative_to(root.resolve()):
        raise ArchiveError(f"member {name!r} resolves outside the extraction folder")
    return target


def extract_archive(archive: str | Path, dest: str | Path, max_bytes: int, max_files: int,
                    ) -> list[tuple[str, str]]:
    """Extract the regular files of ``archive`` (zip or tar, any compression) into ``dest``.

    Returns the refused members as ``(member name, reason)`` pairs, sorted.
    Raises :class:`ArchiveError` when the archive as a whole cannot be used.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    budget = _Budget(max_bytes, max_files)
    refused: list[tuple[str, str]] = []
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, dest, budget, refused)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, dest, budget, refused)
        elif _starts_like_zip(archive):
            raise ArchiveError(f"{archive.name} is a zip archive cut short or damaged: its table of contents at "
                               "the end is missing")
        else:
            raise ArchiveError(f"{archive.name} is neither a zip nor a tar archive (dataset.url must name a .zip, "
                               ".tar, .tar.gz or .tgz)")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise ArchiveError(f"{archive.name} is corrupt: {type(error).__name__}: {error}") from None
    return sorted(refused)


def _starts_like_zip(archive: Path) -> bool:
    with archive.open("rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _extract_zip(archive: Path, dest: Path, budget: _Budget, refused: list) -> None:
    with zipfile.ZipFile(archive) as handle:
        _extract_members(((info.filename, _zip_reason(info), lambda info=info: handle.open(info))
                          for info in handle.infolist() if not info.is_dir()), dest, budget, refused)


def _extract_tar(archive: Path, dest: Path, budget: _Budget, refused: list) -> None:
    with tarfile.open(archive, mode="r:*") as handle:
        _extract_members(((member.name, _tar_reason(member), lambda member=member: handle.extractfile(member))
                          for member in handle if not member.isdir()), dest, budget, refused)


# The compression methods Python's zipfile reads; others (Deflate64, which Windows writes for large files,
# Zstandard, PPMd, ...) would stop the extraction with NotImplementedError.
ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
ZIP_METHOD_NAMES = {9: "Deflate64", 93: "Zstandard", 95: "XZ", 98: "PPMd", 99: "AES"}


def _zip_reason(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member may not be extracted, or None."""
    reason = unsafe_path_reason(info.filename)
    if reason is None and info.flag_bits & 0x1:
        return "encrypted"
    if reason is None and info.compress_type not in ZIP_METHODS:
        method = ZIP_METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        return f"unsupported_compression ({method}; extract and zip it again with Deflate)"
    mode = stat.S_IFMT(info.external_attr >> 16)
    if reason is None and mode == stat.S_IFLNK:
        return "symlink"
    if reason is None and mode not in (0, stat.S_IFREG):
        return "special_file"
    return reason


def _tar_reason(member: tarfile.TarInfo) -> str | None:
    """Why a tar member may not be extracted, or None."""
    reason = unsafe_path_reason(member.name)
    if reason is None and member.issym():
        return "symlink"
    if reason is None and member.islnk():
        return "hard_link"
    if reason is None and not member.isfile():  # devices, fifos and the like
        return "special_file"
    return reason


def _extract_members(members, dest: Path, budget: _Budget, refused: list) -> None:
    """Copy each (name, reason, open) member whose reason is None; list the others in ``refused``."""
    for name, reason, open_member in members:
        if reason:
            refused.append((name, reason))
            continue
        target = _destination(dest, name)
        reason = _collision_reason(dest.resolve(), target)
        if reason:
            refused.append((name, reason))
            continue
        budget.add_file()
        with open_member() as source:
            budget.copy(source, target)

"""Fetch a dataset archive by URL, verified by its SHA-256.

``http``/``https`` downloads go through pooch (the download library librosa
and SciPy use): streamed to a temporary file in the cache folder and only then
moved to their cached name, with retries on transient failures (a broken
connection, a 5xx answer). An interrupted transfer therefore never leaves a half
file under the real name. The file is then hash-checked here: a mismatch is not
a transient failure, so it is not downloaded again, and the file is removed
from the cache. An unverified download (no ``dataset.sha256``) is fetched anew
each time: nothing could tell that the server's file changed. ``file://`` URLs
are read in place and checked the same way.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from musicid.io import safe_name, sha256_file

SHA256_PATTERN = re.compile(r"^[0-9a-fA-F]{64}$")
SCHEMES = ("http", "https", "file")


class FetchError(RuntimeError):
    """The archive could not be fetched or verified; the message says why."""


class UnverifiedDownload(FetchError):
    """No hash to check against; ``actual_sha256`` is the hash to pin."""

    def __init__(self, url: str, actual_sha256: str):
        super().__init__(
            f"dataset.sha256 is not set, so {url} cannot be verified. Its SHA-256 is\n"
            f"    {actual_sha256}\n"
            f"Pin it with `dataset.sha256: {actual_sha256}` in params.yaml (after checking it "
            f"against the publisher's), or set `dataset.allow_unverified: true` to use it as it is."
        )
        self.actual_sha256 = actual_sha256


class ChecksumMismatch(FetchError):
    def __init__(self, url: str, expected: str, actual: str):
        super().__init__(f"checksum mismatch for {url}: dataset.sha256 is {expected}, the file's is {actual} (a "
                         f"changed or corrupted archive, or a wrong dataset.sha256)")
        self.expected, self.actual = expected, actual


# Client errors worth another attempt: request timeout, too many requests.
RETRIED_CLIENT_ERRORS = (408, 429)


class _ClientError(Exception):
    """A 4xx answer that another attempt would get again (not one pooch retries on)."""


def folder_from_env(name: str) -> Path | None:
    """The folder ``$name`` names (``~`` expanded), None when unset; ValueError naming it when relative, which
    would be relative to wherever a stage happens to run: inside the project."""
    if not os.environ.get(name):
        return None
    folder = Path(os.environ[name]).expanduser()
    if not folder.is_absolute():
        raise ValueError(f"{name} must be an absolute path, got {os.environ[name]!r}")
    return folder


def default_cache_dir() -> Path:
    """``$MUSICID_CACHE`` (see :func:`folder_from_env`), or the user's cache folder (e.g. ~/.cache/musicid)."""
    folder = folder_from_env("MUSICID_CACHE")
    if folder is not None:
        return folder
    import pooch

    return Path(pooch.os_cache("musicid"))


def archive_name(url: str) -> str:
    """The file name at the end of the URL's path, made safe (``archive`` when there is none)."""
    name = Path(unquote(urlparse(url).path)).name
    return safe_name(name) if name else "archive"


def fetch(url: str, sha256: str | None, cache_dir: Path, allow_unverified: bool = False,
          retries: int = 2, timeout_s: float = 60.0, progressbar: bool = False) -> Path:
    """Return a local path holding the verified bytes of ``url`` (see :func:`fetch_archive`)."""
    return fetch_archive(url, sha256, cache_dir, allow_unverified, retries, timeout_s, progressbar)[0]


def fetch_archive(url: str, sha256: str | None, cache_dir: Path, allow_unverified: bool = False,
                  retries: int = 2, timeout_s: float = 60.0, progressbar: bool = False) -> tuple[Path, str]:
    """Return (a local path holding the verified bytes of ``url``, their SHA-256).

    Raises :class:`ChecksumMismatch` when the bytes do not hash to ``sha256``,
    :class:`UnverifiedDownload` when ``sha256`` is None and ``allow_unverified``
    is false (after fetching, so the hash to pin can be printed), and
    :class:`FetchError` when the transfer fails after ``retries`` retries.
    """
    scheme = urlparse(url).scheme.lower()
    if scheme not in SCHEMES:
        raise FetchError(f"unsupported URL scheme {scheme!r} in {url} (use one of {', '.join(SCHEMES)})")
    if sha256 is not None and not SHA256_PATTERN.match(sha256):
        raise FetchError(f"dataset.sha256 must be 64 hexadecimal digits, got {sha256!r}")
    expected = sha256.lower() if sha256 else None

    if scheme == "file":
        path = Path(unquote(urlparse(url).path))
        if not path.is_file():
            raise FetchError(f"dataset.url {url}: no such file: {path}")
        actual = sha256_file(path)
    else:
        path = _download(url, expected, cache_dir, retries, timeout_s, progressbar)
        actual = sha256_file(path)
        if actual != expected and (expected is not None or not allow_unverified):
            path.unlink(missing_ok=True)  # a wrong file, or one nobody may use, stays out of the cache
    if expected is None:
        if not allow_unverified:
            raise UnverifiedDownload(url, actual)
    elif actual != expected:
        raise ChecksumMismatch(url, expected, actual)
    return path, actual


# pooch streams a download into a ``tmpXXXXXXXX`` file beside the cached name and removes it afterwards; one
# whose process was killed (SIGKILL, power loss) stays. Untouched this long, it is no live download's.
STALE_PARTIAL_S = 24 * 3600.0


def remove_stale_partials(cache_dir: Path, now: float | None = None) -> list[Path]:
    """Remove pooch's partial downloads in ``cache_dir`` left by killed processes; the paths removed."""
    now = time.time() if now is None else now
    removed = []
    for path in sorted(cache_dir.glob("tmp*")) if cache_dir.is_dir() else []:
        try:
            if path.is_file() and not path.is_symlink() and now - path.stat().st_mtime > STALE_PARTIAL_S:
                path.unlink()
                removed.append(path)
        except OSError:  # gone meanwhile, or not ours to remove: the download goes on
            continue
    return removed


def _download(url: str, expected: str | None, cache_dir: Path, retries: int, timeout_s: float,
              progressbar: bool) -> Path:
    import pooch
    import requests

    remove_stale_partials(cache_dir)

    if expected:
        fname = f"{expected}-{archive_name(url)}"
    else:
        # Unverified downloads are kept under the URL's hash, apart from verified ones, and fetched anew.
        fname = f"unverified-{hashlib.sha256(url.encode()).hexdigest()[:16]}-{archive_name(url)}"
        (cache_dir / fname).unlink(missing_ok=True)
    # No known hash for pooch: it would retry a mismatch like a broken connection; fetch_archive checks it once.
    fetcher = pooch.create(path=cache_dir, base_url="", registry={fname: None},
                           urls={fname: url}, retry_if_failed=retries)
    http = pooch.HTTPDownloader(progressbar=progressbar, timeout=timeout_s)

    def downloader(url, output_file, pooch_object, check_only=False):
        # pooch retries on any HTTP error; an answer such as 404 or 403 will not change.
        try:
            return http(url, output_file, pooch_object, check_only=check_only)
        except requests.exceptions.HTTPError as error:
            status = error.response.status_code if error.response is not None else None
            if status is not None and 400 <= status < 500 and status not in RETRIED_CLIENT_ERRORS:
                raise _ClientError(f"HTTP {status} {error.response.reason or ''}".rstrip()) from None
            raise

    try:
        return Path(fetcher.fetch(fname, downloader=downloader))
    except _ClientError as error:
        raise FetchError(f"cannot fetch {url}: the server answered {error} (not retried)") from None
    except ValueError as error:
        raise FetchError(f"cannot fetch {url}: {error}") from None
    except requests.exceptions.RequestException as error:
        raise FetchError(f"cannot fetch {url} after {retries + 1} attempts: "
                         f"{type(error).__name__}: {error}") from None

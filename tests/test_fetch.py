import hashlib

import pytest

from musicid.fetch import ChecksumMismatch, FetchError, UnverifiedDownload, archive_name, fetch, fetch_archive
from tests.archives import midi_bytes, zip_bytes
from tests.http_server import ArchiveServer

GOOD = zip_bytes({"set/bach/a.mid": midi_bytes()})
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()


@pytest.fixture
def server():
    with ArchiveServer() as running:
        running.routes["/good.zip"] = GOOD
        yield running


def cache_files(cache):
    return sorted(p.name for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


def test_good_download_is_verified_and_cached(server, tmp_path):
    path = fetch(f"{server.base_url}/good.zip", GOOD_SHA, tmp_path, retries=0)
    assert path.read_bytes() == GOOD
    assert cache_files(tmp_path) == [f"{GOOD_SHA}-good.zip"]
    # A second fetch is served from the cache.
    assert fetch(f"{server.base_url}/good.zip", GOOD_SHA, tmp_path, retries=0) == path
    assert server.requests["/good.zip"] == 1


def test_wrong_hash_names_expected_and_actual(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(ChecksumMismatch) as caught:
        fetch(f"{server.base_url}/good.zip", wrong, tmp_path, retries=2)
    assert wrong in str(caught.value) and GOOD_SHA in str(caught.value)
    assert cache_files(tmp_path) == []
    assert server.requests["/good.zip"] == 1  # a mismatch is no transient failure: not downloaded again


def test_an_unverified_download_is_fetched_anew_and_its_hash_returned(server, tmp_path):
    url = f"{server.base_url}/good.zip"
    path, sha256 = fetch_archive(url, None, tmp_path, allow_unverified=True, retries=0)
    assert path.read_bytes() == GOOD and sha256 == GOOD_SHA
    changed = zip_bytes({"set/bach/b.mid": midi_bytes()})
    server.routes["/good.zip"] = changed  # the server's file changes: nothing pinned could tell
    path, sha256 = fetch_archive(url, None, tmp_path, allow_unverified=True, retries=0)
    assert path.read_bytes() == changed and sha256 == hashlib.sha256(changed).hexdigest()
    assert server.requests["/good.zip"] == 2 and len(cache_files(tmp_path)) == 1


def test_transfer_cut_short_leaves_no_file(server, tmp_path):
    server.routes["/cut.zip"] = GOOD
    server.truncated.add("/cut.zip")
    with pytest.raises(FetchError, match="cannot fetch"):
        fetch(f"{server.base_url}/cut.zip", GOOD_SHA, tmp_path, retries=1)
    assert server.requests["/cut.zip"] == 2  # tried again once
    assert cache_files(tmp_path) == []


def test_transient_failure_is_retried(server, tmp_path):
    server.routes["/flaky.zip"] = GOOD
    server.flaky.add("/flaky.zip")
    path = fetch(f"{server.base_url}/flaky.zip", GOOD_SHA, tmp_path, retries=1)
    assert path.read_bytes() == GOOD
    assert server.requests["/flaky.zip"] == 2


def test_missing_hash_prints_the_hash_and_refuses(server, tmp_path):
    with pytest.raises(UnverifiedDownload) as caught:
        fetch(f"{server.base_url}/good.zip", None, tmp_path, retries=0)
    assert caught.value.actual_sha256 == GOOD_SHA
    assert f"dataset.sha256: {GOOD_SHA}" in str(caught.value)
    path = fetch(f"{server.base_url}/good.zip", None, tmp_path, allow_unverified=True, retries=0)
    assert path.read_bytes() == GOOD


def test_not_found_is_not_retried(server, tmp_path):
    with pytest.raises(FetchError, match="404") as caught:
        fetch(f"{server.base_url}/missing.zip", GOOD_SHA, tmp_path, retries=2)
    assert "not retried" in str(caught.value)
    assert server.requests["/missing.zip"] == 1  # the same answer would come again
    assert cache_files(tmp_path) == []


def test_file_url(tmp_path):
    archive = tmp_path / "local set.zip"
    archive.write_bytes(GOOD)
    url = f"file://{archive.as_posix().replace(' ', '%20')}"
    assert fetch(url, GOOD_SHA, tmp_path / "cache") == archive
    with pytest.raises(ChecksumMismatch):
        fetch(url, "f" * 64, tmp_path / "cache")
    with pytest.raises(FetchError, match="no such file"):
        fetch("file:///no/such/archive.zip", GOOD_SHA, tmp_path / "cache")


def test_bad_scheme_and_hash(tmp_path):
    with pytest.raises(FetchError, match="unsupported URL scheme 'ftp'"):
        fetch("ftp://example.org/a.zip", GOOD_SHA, tmp_path)
    with pytest.raises(FetchError, match="64 hexadecimal digits"):
        fetch("https://example.org/a.zip", "abc", tmp_path)


def test_archive_name():
    assert archive_name("https://example.org/data/genres%20v2.tar.gz?x=1") == "genres_v2.tar.gz"
    assert archive_name("https://example.org/") == "archive"


def test_partial_downloads_of_killed_runs_are_removed_once_stale(server, tmp_path):
    import os
    import time

    from musicid.fetch import STALE_PARTIAL_S

    stale, fresh = tmp_path / "tmpab12cd34", tmp_path / "tmpef56gh78"  # pooch's names for a file in progress
    for partial in (stale, fresh):
        partial.write_bytes(b"half an archive")
    old = time.time() - STALE_PARTIAL_S - 60
    os.utime(stale, (old, old))
    fetch(f"{server.base_url}/good.zip", GOOD_SHA, tmp_path, retries=0)
    assert not stale.exists()  # a killed run's
    assert fresh.exists()  # perhaps another run's download in progress: left alone

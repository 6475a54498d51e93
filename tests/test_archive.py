import os

import pytest

from musicid.archive import ArchiveError, extract_archive, unsafe_path_reason
from tests.archives import midi_bytes, tar_bytes, zip_bytes

LIMITS = dict(max_bytes=10_000_000, max_files=100)


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


@pytest.fixture
def box(tmp_path):
    """An extraction folder inside a box; anything written beside it is a breach."""
    (tmp_path / "box").mkdir()
    return tmp_path


def test_good_zip_and_tar(box):
    for maker, name in ((zip_bytes, "a.zip"), (tar_bytes, "a.tar.gz")):
        archive = box / name
        archive.write_bytes(maker({"set/bach/a.mid": midi_bytes(), "set/haydn/b.mid": midi_bytes(62)}))
        dest = box / "box" / name
        assert extract_archive(archive, dest, **LIMITS) == []
        assert files_under(dest) == ["set/bach/a.mid", "set/haydn/b.mid"]
        assert (dest / "set/bach/a.mid").read_bytes() == midi_bytes()


def test_plain_tar(box):
    (box / "a.tar").write_bytes(tar_bytes({"x/a.mid": midi_bytes()}, mode="w"))
    assert extract_archive(box / "a.tar", box / "box" / "out", **LIMITS) == []
    assert files_under(box / "box" / "out") == ["x/a.mid"]


@pytest.mark.parametrize("maker", [zip_bytes, tar_bytes])
def test_traversal_and_absolute_members_are_refused(box, maker):
    archive = box / "evil"
    archive.write_bytes(maker({"ok/a.mid": midi_bytes(), "../escaped.mid": midi_bytes(),
                               "ok/../../escaped2.mid": midi_bytes(), "/tmp/absolute.mid": midi_bytes()}))
    refused = extract_archive(archive, box / "box", **LIMITS)
    assert refused == [("../escaped.mid", "path_traversal"), ("/tmp/absolute.mid", "absolute_path"),
                       ("ok/../../escaped2.mid", "path_traversal")]
    assert files_under(box / "box") == ["ok/a.mid"]
    assert sorted(os.listdir(box)) == ["box", "evil"]
    assert not os.path.exists("/tmp/absolute.mid")


def test_links_and_devices_are_refused(box):
    archive = box / "links.tar"
    archive.write_bytes(tar_bytes({"ok/a.mid": midi_bytes()}, links={
        "ok/passwd.mid": ("sym", "/etc/passwd"),
        "ok/hard.mid": ("hard", "/etc/passwd"),
        "ok/pipe.mid": ("fifo", ""),
        "ok/dev.mid": ("chr", ""),
    }))
    refused = extract_archive(archive, box / "box", **LIMITS)
    assert refused == [("ok/dev.mid", "special_file"), ("ok/hard.mid", "hard_link"),
                       ("ok/passwd.mid", "symlink"), ("ok/pipe.mid", "special_file")]
    assert files_under(box / "box") == ["ok/a.mid"]


def test_zip_symlink_is_refused(box):
    import zipfile

    archive = box / "link.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        info = zipfile.ZipInfo("ok/link.mid")
        info.external_attr = (0o120777 << 16)
        handle.writestr(info, "/etc/passwd")
        handle.writestr("ok/a.mid", midi_bytes())
    assert extract_archive(archive, box / "box", **LIMITS) == [("ok/link.mid", "symlink")]
    assert files_under(box / "box") == ["ok/a.mid"]


def test_decompression_bomb_stops_with_a_clear_error(box):
    archive = box / "bomb.zip"
    archive.write_bytes(zip_bytes({"big/zeros.wav": bytes(5_000_000)}))  # compresses to ~5 kB
    assert archive.stat().st_size < 50_000
    with pytest.raises(ArchiveError, match=r"more than 1000000 bytes \(dataset.max_bytes\)"):
        extract_archive(archive, box / "box", max_bytes=1_000_000, max_files=100)


def test_too_many_members(box):
    archive = box / "many.tar.gz"
    archive.write_bytes(tar_bytes({f"x/{i}.mid": b"MThd" for i in range(11)}))
    with pytest.raises(ArchiveError, match=r"more than 10 files \(dataset.max_files\)"):
        extract_archive(archive, box / "box", max_bytes=10_000, max_files=10)


def test_not_an_archive(box):
    (box / "page.zip").write_text("<html>moved</html>")
    with pytest.raises(ArchiveError, match="neither a zip nor a tar"):
        extract_archive(box / "page.zip", box / "box", **LIMITS)


def with_central_field(data: bytes, member: str, offset: int, value: int) -> bytes:
    """A zip's bytes with a 2-byte field of ``member``'s central directory entry set (8: flags, 10: method)."""
    at = data.index(b"PK\x01\x02")  # the first central directory entry
    while data[at + 46:at + 46 + len(member)] != member.encode():
        at = data.index(b"PK\x01\x02", at + 4)
    return data[:at + offset] + value.to_bytes(2, "little") + data[at + offset + 2:]


def test_encrypted_and_unreadable_zip_members_are_refused_and_the_others_kept(box):
    data = zip_bytes({"set/bach/a.mid": midi_bytes(), "set/bach/b.mid": midi_bytes(62),
                      "set/bach/c.mid": midi_bytes(64)})
    data = with_central_field(data, "set/bach/b.mid", 10, 9)  # Deflate64, as Windows writes large files
    data = with_central_field(data, "set/bach/c.mid", 8, 0x1)  # encrypted
    (box / "mixed.zip").write_bytes(data)
    refused = extract_archive(box / "mixed.zip", box / "box", **LIMITS)
    assert refused == [("set/bach/b.mid", "unsupported_compression (Deflate64; extract and zip it again with "
                                          "Deflate)"), ("set/bach/c.mid", "encrypted")]
    assert files_under(box / "box") == ["set/bach/a.mid"]


def test_a_zip_cut_short_is_named_so(box):
    data = zip_bytes({"set/bach/a.mid": midi_bytes()})
    (box / "cut.zip").write_bytes(data[:len(data) // 2])
    with pytest.raises(ArchiveError, match="cut.zip is a zip archive cut short or damaged"):
        extract_archive(box / "cut.zip", box / "box", **LIMITS)


def test_unsafe_path_reason():
    assert unsafe_path_reason("a/b.mid") is None
    assert unsafe_path_reason("a/../../b") == "path_traversal"
    assert unsafe_path_reason("C:\\x\\y.mid") == "absolute_path"
    assert unsafe_path_reason("..\\x.mid") == "path_traversal"


def raw_tar(path, members: list[tuple[str, bytes]]):
    """A plain tar of regular ``members`` in this order (names may repeat)."""
    import io
    import tarfile

    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_a_member_that_collides_with_another_is_refused_not_fatal(box):
    archive = box / "clash.tar"
    raw_tar(archive, [("set/bach/a.mid", midi_bytes(60)), ("set/bach/a.mid", midi_bytes(61)),
                      ("set/bach/x.mid", midi_bytes(62)), ("set/bach/x.mid/y.mid", midi_bytes(63)),
                      ("set/haydn/f/z.mid", midi_bytes(64)), ("set/haydn/f", midi_bytes(65)),
                      ("set/haydn/b.mid", midi_bytes(66))])
    refused = extract_archive(archive, box / "box", **LIMITS)
    assert refused == [("set/bach/a.mid", "duplicate_member"), ("set/bach/x.mid/y.mid", "name_conflict"),
                       ("set/haydn/f", "name_conflict")]
    assert files_under(box / "box") == ["set/bach/a.mid", "set/bach/x.mid", "set/haydn/b.mid",
                                        "set/haydn/f/z.mid"]
    # The first of two members with one name is kept, as the manifest's order would have it.
    assert (box / "box" / "set/bach/a.mid").read_bytes() == midi_bytes(60)


@pytest.mark.parametrize("maker", [zip_bytes, tar_bytes])
def test_a_name_too_long_for_the_file_system_is_refused(box, maker):
    long_name = "set/bach/" + "a" * 300 + ".mid"
    archive = box / "long"
    archive.write_bytes(maker({long_name: midi_bytes(), "set/bach/b.mid": midi_bytes(61)}))
    assert extract_archive(archive, box / "box", **LIMITS) == [(long_name, "name_too_long")]
    assert files_under(box / "box") == ["set/bach/b.mid"]


def test_zip_special_files_are_refused_and_folders_named_like_files_kept(box):
    import stat
    import zipfile

    archive = box / "odd.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        fifo = zipfile.ZipInfo("ok/pipe.mid")
        fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
        handle.writestr(fifo, b"")
        handle.writestr(zipfile.ZipInfo("ok/x.mid/"), b"")  # a folder entry named like a file
        handle.writestr("ok/x.mid/inner.mid", midi_bytes())
    assert extract_archive(archive, box / "box", **LIMITS) == [("ok/pipe.mid", "special_file")]
    assert files_under(box / "box") == ["ok/x.mid/inner.mid"]


def test_unsafe_path_reason_long_parts():
    assert unsafe_path_reason("a/" + "b" * 255) is None
    assert unsafe_path_reason("a/" + "b" * 256) == "name_too_long"
    assert unsafe_path_reason("a/" + "é" * 128) == "name_too_long"  # 256 bytes in UTF-8

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


def test_unsafe_path_reason():
    assert unsafe_path_reason("a/b.mid") is None
    assert unsafe_path_reason("a/../../b") == "path_traversal"
    assert unsafe_path_reason("C:\\x\\y.mid") == "absolute_path"
    assert unsafe_path_reason("..\\x.mid") == "path_traversal"

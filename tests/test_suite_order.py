"""The order `make test` hands the test files to its workers in (tests/conftest.py)."""

from __future__ import annotations

from tests.conftest import PROJECT_ROOT, SLOW_FILES, pytest_collection_modifyitems


class Item:
    def __init__(self, path):
        self.path = path


def test_every_file_named_slow_exists():
    """A renamed or removed file would silently lose its place at the front."""
    missing = [name for name in SLOW_FILES if not (PROJECT_ROOT / "tests" / name).is_file()]
    assert missing == []


def test_the_slow_files_come_first_in_their_order_and_each_file_keeps_its_own():
    tests = PROJECT_ROOT / "tests"
    names = ["test_audio.py", SLOW_FILES[1], "test_audio.py", SLOW_FILES[0], "test_midi.py", SLOW_FILES[1]]
    items = [Item(tests / name) for name in names]
    expected = [items[3], items[1], items[5], items[0], items[2], items[4]]
    pytest_collection_modifyitems(items)
    assert items == expected

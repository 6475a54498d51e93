"""Labels from a table: ``dataset.label_table``, a CSV that names each file of a collection and its label.

Many published collections keep their files in folders by year, source or
performer and say who wrote each in a table (MAESTRO's ``maestro-v3.0.0.csv``
has ``midi_filename``, ``audio_filename`` and ``canonical_composer``). With
``dataset.label_table.file`` set, a file's label is what its row says, not the
name of its folder:

* the table is a path inside the collection (the folder of ``dataset.path``, or
  the archive as extracted, stepped into while it holds one folder only, so
  that ``maestro-v3.0.0.csv`` is found inside ``maestro-v3.0.0/``), or a path
  on disk for a folder collection;
* each row's path is relative to the table's folder (to the collection's root
  for a table kept outside it), written with ``/`` or ``\\``;
* with ``split_column``, each file's split is the collection's own (``train``,
  ``validation`` or ``val`` or ``dev``, ``test``, in any case), used by the clip
  stage instead of dealing the tracks itself;
* the table is UTF-8 text (a BOM allowed), its first row naming the columns,
  separated by commas, semicolons or tabs (whichever gives the named columns);
  other columns are ignored; quoted fields may hold the separator.

A table that cannot be read, or lacks a named column, stops the stage with a
message naming the key; a row's problems (no such file, no label, two rows
giving one file two labels) are records of the manifest, as other files left
out are.
"""

from __future__ import annotations

import csv
import io
import posixpath
import unicodedata
from dataclasses import dataclass
from pathlib import Path

DELIMITERS = (",", ";", "\t")
MAX_TABLE_BYTES = 100_000_000  # MAESTRO's table is 0.3 MB; a larger file is not a table of labels


class LabelTableError(ValueError):
    """The table cannot be used at all; the message names the dataset.label_table key at fault."""


@dataclass(frozen=True)
class Row:
    line: int  # the table's line the row ends on (1: the header)
    path: str  # as written
    label: str  # "" when the cell is empty
    group: str  # the group column's value ("" without one)
    split: str = ""  # the split column's value ("" without one)


def table_key(path: str) -> str:
    """A row's path as it is compared with the files' (:func:`file_key`): ``/``-separated (a ``\\`` is a
    folder separator in a table written on Windows), without ``.`` parts and with ``x/..`` taken away,
    composed (NFC); "" for no path. One that leaves the table's folder keeps its leading ``..``."""
    text = path.strip().replace("\\", "/")
    return unicodedata.normalize("NFC", posixpath.normpath(text)) if text else ""


def file_key(parts: tuple[str, ...]) -> str:
    """A file's path below the table's folder (its names, as printable gives them) as it is compared with the
    rows' (:func:`table_key`): a ``\\`` inside a name stays part of that name."""
    return unicodedata.normalize("NFC", "/".join(parts))


def find_table(root: Path, name: str) -> Path | None:
    """The table ``name`` inside ``root``, or inside the single folder it holds (again while that holds only one):
    an archive usually wraps its content in one folder its table's name does not mention."""
    current = root
    while True:
        candidate = current / name
        if candidate.is_file():
            return candidate
        try:
            folders = [entry for entry in current.iterdir() if entry.is_dir() and not entry.is_symlink()
                       and not entry.name.startswith(".") and entry.name != "__MACOSX"]
        except OSError:
            return None
        if len(folders) != 1:
            return None
        current = folders[0]


def _columns(header: list[str], names: dict[str, str | None], shown: str) -> dict[str, int]:
    """key -> index of its column in ``header``; LabelTableError naming the first key whose column is missing."""
    stripped = [cell.strip() for cell in header]
    found = {}
    for key, column in names.items():
        if column is None:
            continue
        if column not in stripped:
            raise LabelTableError(f"dataset.label_table.{key} {column!r} is not a column of {shown}, whose first "
                                  f"row names {', '.join(repr(cell) for cell in stripped if cell) or 'nothing'}")
        found[key] = stripped.index(column)
    return found


def read_table(data: bytes, path_column: str, label_column: str, group_column: str | None,
               shown: str, split_column: str | None = None) -> list[Row]:
    """The rows of the table whose bytes are ``data``: those with a path or a label (blank ones left out)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise LabelTableError(f"dataset.label_table.file {shown} is not UTF-8 text (line {line}, byte {error.start}): "
                              f"save it as "
                              f"UTF-8 (a spreadsheet's \"CSV UTF-8\")") from None
    if "\x00" in text:
        raise LabelTableError(f"dataset.label_table.file {shown} is not a text table (it holds NUL bytes)")
    lines = text.splitlines()
    if not lines:
        raise LabelTableError(f"dataset.label_table.file {shown} is empty")
    names = {"path_column": path_column, "label_column": label_column, "group_column": group_column,
             "split_column": split_column}
    # The separator is the one whose first row holds every named column; none: the first row is shown as the
    # separator that splits it most reads it.
    headers = {delimiter: next(csv.reader([lines[0]], delimiter=delimiter)) for delimiter in DELIMITERS}
    for delimiter, header in headers.items():
        try:
            columns = _columns(header, names, shown)
            break
        except LabelTableError:
            pass
    else:
        _columns(max(headers.values(), key=len), names, shown)
        raise AssertionError("unreachable: the widest first row lacks a column")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    next(reader)
    rows = []
    try:
        for cells in reader:
            def cell(key: str) -> str:
                index = columns.get(key)
                return cells[index].strip() if index is not None and index < len(cells) else ""

            row = Row(reader.line_num, cell("path_column"), cell("label_column"), cell("group_column"),
                      cell("split_column"))
            if row.path or row.label:
                rows.append(row)
    except csv.Error as error:
        raise LabelTableError(f"dataset.label_table.file {shown}: line {reader.line_num}: {error}") from None
    if not rows:
        raise LabelTableError(f"dataset.label_table.file {shown} has no row below its first")
    return rows


# A split column's values, as collections write them (MAESTRO: train, validation, test), case aside.
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test", "testing": "test"}


def split_of(value: str) -> str | None:
    """The pipeline's split (train, val, test) a split column's ``value`` names, or None."""
    return SPLIT_NAMES.get(value.strip().casefold())


def rows_by_file(rows: list[Row]) -> dict[str, list[Row]]:
    """table_key(path) -> the rows naming that file, in the table's order."""
    by_file: dict[str, list[Row]] = {}
    for row in rows:
        by_file.setdefault(table_key(row.path), []).append(row)
    return by_file

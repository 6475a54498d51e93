"""Streaming, deterministic HDF5 tables: one row per clip, and the columns of clips.h5 and features.h5.

Rows are appended in batches to resizable, chunked, compressed datasets, so a
stage never holds the whole table in memory.  Object timestamps are off, so the
same rows give byte-identical files.  The column layout of the two tables the
pipeline writes is defined here once (:func:`clip_columns`,
:func:`feature_columns`); the stages and the tests build them from it.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from musicid.io import atomic_path

STRING = h5py.string_dtype("utf-8")
SPLITS = ("train", "val", "test")

# Attributes featurize copies from clips.h5 to features.h5 unchanged.
SHARED_ATTRS = ("label_names", "n_known", "holdout_classes", "sample_rate")


def _row_columns(array_name: str, dtype: Any, row_shape: tuple[int, ...], with_source: bool
                 ) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """The per-clip columns after the array column; their order is the order datasets are created in
    (and so part of the file's bytes)."""
    columns = {array_name: (dtype, row_shape),
               "label": (np.int16, ()),  # index into attrs["label_names"]
               "known": (np.bool_, ()),  # False for a held-out (open-set) class
               "track": (STRING, ())}  # the source file the clip comes from (relative to data/raw)
    if with_source:
        columns["source"] = (STRING, ())  # the rendered file (relative to data/audio)
    columns["offset_s"] = (np.float64, ())  # start of the clip in its file, seconds
    columns["split"] = (STRING, ())  # "train", "val" or "test"
    return columns


def clip_columns(clip_samples: int) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """Columns of clips.h5: ``audio`` float32 [clip_samples] per row, then the clip's metadata."""
    return _row_columns("audio", np.float32, (clip_samples,), with_source=True)


def feature_columns(n_bands: int, n_frames: int, symbolic_dim: int = 0,
                    augmented: bool = False) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """Columns of features.h5: ``features`` float32 [n_bands, n_frames] (dB or MFCC) per row, then metadata.

    With ``symbolic_dim`` > 0, two more columns come last: ``symbolic`` float32
    [symbolic_dim] (musicid.symbolic; zeros where absent) and ``has_symbolic``
    bool (False for clips of audio sources, of unreadable MIDI files, and in which no note sounds); with
    ``augmented`` too, a last one, ``augmented`` bool (the clip was cut from one of render.augment's copies).
    """
    columns = _row_columns("features", np.float32, (n_bands, n_frames), with_source=False)
    if symbolic_dim:
        columns["symbolic"] = (np.float32, (symbolic_dim,))
        columns["has_symbolic"] = (np.bool_, ())
        if augmented:
            columns["augmented"] = (np.bool_, ())
    return columns


class WriteError(Exception):
    """Writing an HDF5 table failed (disk full, file too large, I/O error); ``cause`` says why in words."""

    def __init__(self, path: str | Path, cause: str):
        super().__init__(f"cannot write {path}: {cause}")
        self.path = path
        self.cause = cause


def error_cause(error: Exception) -> str:
    """The short reason of an h5py write error ("No space left on device"), not HDF5's multi-line dump."""
    if getattr(error, "errno", None):
        return os.strerror(error.errno)
    found = re.search(r"errno = (\d+)", str(error))  # HDF5 puts the system's errno in its message
    if found and int(found.group(1)):
        return os.strerror(int(found.group(1)))
    return str(error).splitlines()[0] if str(error) else type(error).__name__


@contextlib.contextmanager
def staged_table(target: str | Path) -> Iterator[Path]:
    """:func:`musicid.io.atomic_path` for a table: a staging file that cannot be made is a :class:`WriteError`.

    (A read-only or full folder refuses it before any row is written.)
    """
    with contextlib.ExitStack() as stack:
        try:
            temporary = stack.enter_context(atomic_path(target))
        except OSError as error:
            raise WriteError(target, error_cause(error)) from None
        yield temporary


# How the metadata columns are compressed (array columns are not; see RowWriter).
METADATA_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


class RowWriter:
    """Append rows to named datasets of one HDF5 file.

    ``columns`` maps a dataset name to ``(dtype, row_shape)``.  Array columns
    (audio, features) are chunked by ``chunk_rows`` rows and stored as they
    are: gzip saves a fifth of their size and costs most of the clip stage's
    time (``benchmarks/table_compression.py``).  The per-row metadata columns
    are gzip-compressed.  A failed write (disk full, file size limit) raises
    :class:`WriteError`; the file is then abandoned, to be removed by the
    caller (``musicid.io.atomic_path``).
    """

    def __init__(self, path: str | Path, columns: dict[str, tuple[Any, tuple[int, ...]]],
                 chunk_rows: int = 16):
        self.path = path
        try:
            self.file = h5py.File(path, "w", libver="v112")
        except OSError as error:  # a read-only or missing folder
            raise WriteError(path, error_cause(error)) from None
        # The file's OS descriptor, to abandon the file when a write fails (see _abandon).
        self._descriptor = self.file.id.get_vfd_handle()
        self.rows = 0
        self.datasets = {}
        try:
            for name, (dtype, row_shape) in columns.items():
                self.datasets[name] = self.file.create_dataset(
                    name,
                    shape=(0, *row_shape),
                    maxshape=(None, *row_shape),
                    dtype=dtype,
                    chunks=(chunk_rows, *row_shape) if row_shape else (max(chunk_rows, 1024),),
                    **({} if row_shape else METADATA_COMPRESSION),
                    track_times=False,
                )
        except OSError as error:
            self._abandon()
            raise WriteError(path, error_cause(error)) from None

    def append(self, **columns: Any) -> None:
        """Append equal-length batches of rows, one keyword per column."""
        lengths = {len(values) for values in columns.values()}
        if len(lengths) != 1 or set(columns) != set(self.datasets):
            raise ValueError(f"append needs every column {sorted(self.datasets)} with one length")
        (count,) = lengths
        if count == 0:
            return
        start, stop = self.rows, self.rows + count
        try:
            for name, values in columns.items():
                dataset = self.datasets[name]
                dataset.resize((stop, *dataset.shape[1:]))
                dataset[start:stop] = values
        except (OSError, RuntimeError) as error:
            raise WriteError(self.path, error_cause(error)) from None
        self.rows = stop

    def write_dataset(self, name: str, values: np.ndarray) -> None:
        """A whole dataset beside the row columns (per-track values, say), gzip-compressed;
        :class:`WriteError` if the write fails."""
        try:
            self.file.create_dataset(name, data=values, **METADATA_COMPRESSION, track_times=False)
        except (OSError, RuntimeError) as error:
            raise WriteError(self.path, error_cause(error)) from None

    @property
    def attrs(self):
        return self.file.attrs

    def close(self) -> None:
        """Write what HDF5 still holds in memory and close the file; :class:`WriteError` if that fails."""
        if not self.file.id.valid:
            return
        try:
            # Flushing first makes a failure leave no object half-closed (a failed close can crash later).
            self.file.flush()
            self.file.close()
        # h5py reports a failed flush of a dataset's chunks as RuntimeError, of the file as OSError.
        except (OSError, RuntimeError) as error:
            self._abandon()
            raise WriteError(self.path, error_cause(error)) from None

    def _abandon(self) -> None:
        """Close a file whose contents are being thrown away, without writing to it again.

        HDF5 cannot close a file whose writes fail: it keeps it open and flushes
        again at interpreter exit, which crashes the process (a segmentation
        fault with h5py 3 on a full disk). Pointing the file's descriptor at
        /dev/null first lets every later write succeed into nothing; a flush
        then clears what the failed write left pending, so the close completes.
        Errors here are those of the write already reported, on a file about
        to be deleted.
        """
        if not self.file.id.valid:
            return
        null = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(null, self._descriptor)
        finally:
            os.close(null)
        for _ in range(3):  # HDF5 may need a failed flush to reset a cache left mid-flush
            try:
                self.file.flush()
            except (OSError, RuntimeError):
                pass
            try:
                self.file.close()
                return
            except (OSError, RuntimeError):
                continue

    def __enter__(self) -> "RowWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            # The table is incomplete and will be removed: never write to it again.
            self._abandon()


def read_strings(dataset) -> np.ndarray:
    """A string dataset as an array of Python ``str``."""
    return dataset.asstr()[:]

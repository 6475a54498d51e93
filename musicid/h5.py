"""Streaming, deterministic HDF5 tables: one row per clip.

Rows are appended in batches to resizable, chunked, compressed datasets, so a
stage never holds the whole table in memory.  Object timestamps are off, so the
same rows give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

STRING = h5py.string_dtype("utf-8")
SPLITS = ("train", "val", "test")


class RowWriter:
    """Append rows to named datasets of one HDF5 file.

    ``columns`` maps a dataset name to ``(dtype, row_shape)``; array columns are
    chunked by ``chunk_rows`` rows and gzip-compressed.
    """

    def __init__(self, path: str | Path, columns: dict[str, tuple[Any, tuple[int, ...]]],
                 chunk_rows: int = 16):
        self.file = h5py.File(path, "w", libver="v112")
        self.rows = 0
        self.datasets = {}
        for name, (dtype, row_shape) in columns.items():
            self.datasets[name] = self.file.create_dataset(
                name,
                shape=(0, *row_shape),
                maxshape=(None, *row_shape),
                dtype=dtype,
                chunks=(chunk_rows, *row_shape) if row_shape else (max(chunk_rows, 1024),),
                compression="gzip",
                compression_opts=1 if row_shape else 4,
                shuffle=True,
                track_times=False,
            )

    def append(self, **columns: Any) -> None:
        """Append equal-length batches of rows, one keyword per column."""
        lengths = {len(values) for values in columns.values()}
        if len(lengths) != 1 or set(columns) != set(self.datasets):
            raise ValueError(f"append needs every column {sorted(self.datasets)} with one length")
        (count,) = lengths
        if count == 0:
            return
        start, stop = self.rows, self.rows + count
        for name, values in columns.items():
            dataset = self.datasets[name]
            dataset.resize((stop, *dataset.shape[1:]))
            dataset[start:stop] = values
        self.rows = stop

    @property
    def attrs(self):
        return self.file.attrs

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "RowWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_strings(dataset) -> np.ndarray:
    """A string dataset as an array of Python ``str``."""
    return dataset.asstr()[:]

"""Progress bars for long loops (tqdm on stderr, quiet when stderr is not a terminal)."""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    """False when MUSICID_PROGRESS=0 turns progress bars off."""
    return os.environ.get("MUSICID_PROGRESS", "1") != "0"


def progress(items: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """Wrap ``items`` in a tqdm bar on a terminal; MUSICID_PROGRESS=0 turns bars off everywhere.

    Off a terminal (a log file, CI) the bar is left out rather than written as a
    stream of carriage returns; the stage's summary line still says what happened.
    """
    from tqdm import tqdm

    enabled = progress_enabled()
    yield from tqdm(
        items, total=total, desc=desc, disable=None if enabled else True, file=sys.stderr,
        dynamic_ncols=True, mininterval=0.5, leave=False,
    )

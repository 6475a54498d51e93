"""Progress bars for long loops (tqdm on stderr, quiet when stderr is not a terminal)."""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """Wrap ``items`` in a tqdm bar; MUSICID_PROGRESS=0 turns bars off."""
    from tqdm import tqdm

    enabled = os.environ.get("MUSICID_PROGRESS", "1") != "0"
    yield from tqdm(
        items, total=total, desc=desc, disable=not enabled, file=sys.stderr,
        dynamic_ncols=True, mininterval=0.5, leave=False,
    )

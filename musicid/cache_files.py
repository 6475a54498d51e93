"""What the render cache (:mod:`musicid.render_cache`) and the score cache (:mod:`musicid.score_cache`) share:
whether caching is on, their entries on disk and their pruning, and the modules whose code a key covers."""

from __future__ import annotations

import ast
import os
import time
from pathlib import Path

DISABLE_ENV = "MUSICID_NO_CACHE"
SUFFIX = ".entry"
PACKAGE = Path(__file__).resolve().parent


def enabled() -> bool:
    """False when ``$MUSICID_NO_CACHE`` says so (1, true, yes, on); unset, empty, 0, false, no, off: on."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("", "0", "false", "no", "off")


def code_modules(root: str = "render", package: Path = PACKAGE) -> list[Path]:
    """The source files of ``musicid.<root>`` and every ``musicid`` module it imports, directly or not, sorted.

    Read from the import statements of the files themselves, so the list
    follows the code: a module that render starts to use is in the key at once.
    """
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen or not (package / f"{name}.py").is_file():
            continue
        seen.add(name)
        tree = ast.parse((package / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("musicid"):
                parts = node.module.split(".")
                if len(parts) > 1:
                    todo.append(parts[1])
                else:  # from musicid import x
                    todo.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.Import):
                todo.extend(alias.name.split(".")[1] for alias in node.names
                            if alias.name.startswith("musicid."))
    return sorted(package / f"{name}.py" for name in seen)


def entries(root: Path) -> list[tuple[float, int, Path]]:
    """(last use, size, path) of every entry under ``root``, oldest first; temporaries of dead runs removed."""
    found = []
    for path in sorted(Path(root).glob("*/*")):
        try:
            stat = path.stat()
        except OSError:  # gone meanwhile, a link to nowhere or a loop: not an entry
            continue
        if path.name.endswith(".tmp"):
            if time.time() - stat.st_mtime > 24 * 3600:  # a killed run's; a live run's is minutes old
                remove_file(path)
            continue
        if path.name.endswith(SUFFIX):
            found.append((stat.st_mtime, stat.st_size, path))
    return sorted(found)


def prune(root: Path, limit: int, keep: set[str] = frozenset()) -> int:
    found = entries(root)
    total = sum(size for _, size, _ in found)
    removed = 0
    for _, size, path in found:
        if total <= limit:
            break
        if path.name[:-len(SUFFIX)] in keep:
            continue
        if remove_file(path):
            total -= size
            removed += 1
    return removed


def remove_file(path: Path) -> bool:
    """Remove a cache file; False when it cannot be (a read-only cache): the cache only saves time, so that
    never stops a run."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        return False
    return True

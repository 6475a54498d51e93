"""A reader for predict's worker processes that crashes on one file name (test_predict).

In a module of its own, light to import: a spawned worker imports the module of the class it unpickles, and the
test module would bring PyTorch into every worker the test starts.
"""

from __future__ import annotations

import os

from musicid.prepare import FileReader


class CrashingReader(FileReader):
    """Reads files as predict does, but a file named crash.wav ends the worker process reading it."""

    def _prepare(self, path):
        if path.name == "crash.wav":
            os._exit(1)
        return super()._prepare(path)

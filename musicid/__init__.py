"""musicid: learn who wrote or plays a piece of music, from MIDI or audio files.

The package holds the library code; the pipeline stages in ``stages/`` are thin
scripts that read their params and call into it.
"""

__version__ = "0.1.0"

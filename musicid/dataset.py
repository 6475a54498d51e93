"""Datasets: turn a source collection into ``data/raw/<label>/<file>`` plus a manifest.

The default source is the corpus shipped inside the ``music21`` package: real
scores (Bach chorales, Palestrina masses, Monteverdi madrigals, the Italian
trecento repertory, ...), written out as MIDI.  Nothing is fetched from the web.

The manifest (``manifest.json``) holds one record per kept file, sorted by path::

    {"path": "bach/bwv1.6.mid", "label": "bach", "sha256": "...", "size": 4242,
     "origin": "music21:bach/bwv1.6.mxl"}

and one record per source that could not be used, with its reason.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from musicid.io import safe_name, sha256_file

# Formats music21 reads as scores.  Roman-numeral analyses (.rntxt) are left out:
# they are harmonic analyses of a piece, not the piece as written.
SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn", ".abc", ".mid", ".midi")


@dataclass(frozen=True)
class CorpusPiece:
    label: str
    relative_path: str  # path inside the music21 corpus, with "/" separators

    @property
    def origin(self) -> str:
        return f"music21:{self.relative_path}"

    @property
    def output_name(self) -> str:
        """``<label>/<name>.mid``: the piece's path under its composer, flattened."""
        inner = self.relative_path.split("/", 1)[1] if "/" in self.relative_path else self.relative_path
        stem = inner.rsplit(".", 1)[0].replace("/", "__")
        return f"{self.label}/{safe_name(stem)}.mid"


def corpus_root() -> Path:
    from music21 import common

    return Path(common.getCorpusFilePath())


def list_corpus_pieces(composer: str) -> list[CorpusPiece]:
    """All score files of ``composer`` in the music21 corpus, sorted by path."""
    from music21 import corpus

    root = corpus_root()
    pieces = []
    for path in corpus.getComposer(composer):
        path = Path(path)
        if path.suffix.lower() not in SCORE_SUFFIXES:
            continue
        pieces.append(CorpusPiece(composer, path.relative_to(root).as_posix()))
    return sorted(pieces, key=lambda piece: piece.relative_path)


def select_pieces(pieces: list[CorpusPiece], cap: int, seed: int) -> list[CorpusPiece]:
    """At most ``cap`` pieces (all when ``cap`` is 0), chosen by a seeded hash, sorted.

    Ranking by a hash of ``seed`` and the path spreads the choice over the whole
    collection (not the alphabetically first ones) and does not depend on the
    order the corpus lists them in.
    """
    if cap == 0 or len(pieces) <= cap:
        return sorted(pieces, key=lambda piece: piece.relative_path)

    def rank(piece: CorpusPiece) -> str:
        return hashlib.sha256(f"{seed}:{piece.relative_path}".encode()).hexdigest()

    chosen = sorted(pieces, key=rank)[:cap]
    return sorted(chosen, key=lambda piece: piece.relative_path)


def score_to_midi(piece: CorpusPiece) -> tuple[CorpusPiece, bytes | None, str | None]:
    """Convert one corpus score to Standard MIDI File bytes.

    Returns ``(piece, midi_bytes, None)`` or ``(piece, None, reason)`` when
    music21 cannot parse or convert the score (badly formed repeats, for one).
    """
    from music21 import converter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            score = converter.parse(corpus_root() / piece.relative_path)
            with tempfile.TemporaryDirectory() as scratch:
                midi_path = Path(scratch) / "score.mid"
                score.write("midi", fp=midi_path)
                data = midi_path.read_bytes()
        except Exception as error:  # noqa: BLE001 - any failure of a third-party parser
            # A score music21 cannot handle is reported, not fatal: its reason goes
            # into the manifest and the other pieces carry on.
            message = str(error).splitlines()[0][:200] if str(error) else ""
            return piece, None, f"unconvertible: {type(error).__name__}: {message}"
    if not data:
        return piece, None, "unconvertible: music21 wrote an empty MIDI file"
    return piece, data, None


def export_music21(
    classes: list[str],
    max_per_class: int,
    seed: int,
    out_dir: Path,
    map_function: Callable,
) -> dict:
    """Write the chosen corpus pieces as MIDI under ``out_dir/<label>/``.

    ``map_function(function, items)`` runs the conversions (in parallel in the
    stage) and yields results in order.  Returns the manifest (not yet written).
    """
    chosen: list[CorpusPiece] = []
    skipped: list[dict] = []
    for label in classes:
        pieces = list_corpus_pieces(label)
        if not pieces:
            skipped.append(
                {"origin": f"music21:{label}", "label": label,
                 "reason": "no_such_class: the music21 corpus has no scores for this name"}
            )
            continue
        chosen.extend(select_pieces(pieces, max_per_class, seed))

    files: list[dict] = []
    for piece, data, reason in map_function(score_to_midi, chosen):
        if data is None:
            skipped.append({"origin": piece.origin, "label": piece.label, "reason": reason})
            continue
        target = out_dir / piece.output_name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        files.append(
            {
                "path": piece.output_name,
                "label": piece.label,
                "sha256": sha256_file(target),
                "size": len(data),
                "origin": piece.origin,
            }
        )
    return {
        "source": "music21",
        "files": sorted(files, key=lambda record: record["path"]),
        "skipped": sorted(skipped, key=lambda record: (record["label"], record["origin"])),
    }

"""Datasets: turn a source collection into ``data/raw/<label>/<file>`` plus a manifest.

Three sources share one manifest format:

* the corpus shipped inside the ``music21`` package (the offline default): real
  scores (Bach chorales, Palestrina masses, Monteverdi madrigals, the Italian
  trecento repertory, ...), written out as MIDI; a work the corpus holds in two
  formats (``bach/bwv277.krn`` and ``bach/bwv277.mxl``) is written once;
* a folder tree on disk, or one extracted from a downloaded archive.

Labels of a folder tree, one rule:

* A file's label is the name of its *first-level* folder under the collection
  root (mapped through ``dataset.labels``).  Deeper folders belong to that
  label and their path stays in the file's name: ``bach/op1/no2/x.mid`` is
  "bach", written ``bach/op1__no2__x.mid``; a folder named ``foo.mid/`` is
  just a folder.
* The collection root is the given folder, stepped into while it holds a
  single folder (hidden folders and the ``dataset.unlabeled`` one aside) and
  that folder holds no MIDI or audio file directly: an archive of
  ``genres/blues/x.wav`` has the labels of ``genres/``; ``bach/x.mid`` alone
  is the one label "bach".
* Files directly in the root (or in a folder stepped into) have no label and
  are skipped; files anywhere under a folder named ``dataset.unlabeled`` go to
  ``_unlabeled/``.
* A label folder that is hidden (``.git``, ``__MACOSX``) or named like what
  the pipeline writes beside the labels (``manifest.json``, ``report.json``,
  ``_unlabeled``) is refused whole (``reserved_label``).
* With ``dataset.label_table``, a table of the collection gives each file its
  label instead (:mod:`musicid.label_table`): the folders are then only where
  the files are, and a file no row names is skipped.

Score files of a folder tree (MusicXML, MEI, Humdrum kern, ABC:
``musicid.filetypes.SCORE_EXTENSIONS``) are written out as MIDI by music21, as
the corpus is, and kept as ``<label>/<name>.mid`` (``converted`` in their
record): the stages after download see MIDI and audio files only.

Links (files or folders) are never followed and special files (FIFOs, sockets,
devices) never opened; each is listed with its reason.  Every other file is
checked before it is kept: its extension must be a MIDI or audio one and its
first bytes must agree with it; identical content (for MIDI files, the same
notes: :func:`musicid.midi.notes_digest`, or notes all held in another file:
:func:`_held_in_another`; for audio files of one length, the
same decoded samples: :func:`with_samples_digests`) twice under one label is
kept once, and under two labels is dropped from both (it would leak across
the split with contradictory labels).  Output names keep the
extension, so ``x.mid``, ``x.midi`` and ``x.wav`` stay three files.

The manifest (``manifest.json``) holds one record per kept file, sorted by path::

    {"path": "bach/bwv1.6.mid", "label": "bach", "sha256": "...", "size": 4242,
     "origin": "music21:bach/bwv1.6.mxl"}

(a file in a sub-folder of its label folder also has ``"folder"``, the first
one below the label folder: ``"opus18no1"`` for
``music21:beethoven/opus18no1/movement1.mxl``, ``"Kind of Blue"`` for
``miles/Kind of Blue/So What.flac``; ``split.group: folder`` keeps each such
folder, a work or an album, on one side of the split; one two or more folders
deep also has ``"parent"``, the folders it sits in below the label folder,
``"Sonatas/Op. 2 No. 1"`` for ``beethoven/Sonatas/Op. 2 No. 1/1.mid``, which
``split.group: parent`` keeps together instead) and one record per
source that could not be used, with its reason (a refused folder is one
record, its origin ending in ``/``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import itertools
import math
import os
import shutil
import stat
import time
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np

from musicid.deadline import call_with_limit
from musicid.filetypes import (ACCEPTED_EXTENSIONS, SCORE_EXTENSIONS, SCORE_KINDS, WAV_EXTENSIONS, check_file,
                               content_extension, score_mismatch)
from musicid.io import RESERVED_LABELS, printable, safe_name, sha256_file, size_words, unreadable_reason
from musicid.label_table import (MAX_TABLE_BYTES, LabelTableError, Row, file_key, find_table, read_table, rows_by_file,
                                 split_of)
from musicid.midi import WHOLE_FILE, heard_notes_and_patterns, with_program
from musicid.parallel import ordered_map, resolve_jobs

# Formats music21 reads as scores, in order of preference when the corpus holds
# one work in several of them (``beethoven/opus18no1/movement1.krn`` and ``.mxl``):
# MusicXML carries the most of the score (parts, instruments, tempo, dynamics),
# Humdrum and ABC less, MIDI is already a performance.  Roman-numeral analyses
# (.rntxt) are left out: they are harmonic analyses of a piece, not the piece as
# written.
SCORE_SUFFIXES = (".mxl", ".musicxml", ".xml", ".krn", ".abc", ".mid", ".midi")


@dataclass(frozen=True)
class CorpusPiece:
    label: str
    relative_path: str  # path inside the music21 corpus, with "/" separators

    @property
    def origin(self) -> str:
        return f"music21:{self.relative_path}"

    @property
    def folder(self) -> str:
        """The work's folder in the corpus below its composer (``opus18no1`` of
        ``beethoven/opus18no1/movement1.mxl``), "" for a score directly in the composer's folder."""
        parts = self.relative_path.split("/")
        return parts[1] if len(parts) > 2 else ""

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


def corpus_composers() -> list[str]:
    """The names of the music21 corpus's collections (composers, and a few folk-song sets)."""
    return sorted(path.name for path in corpus_root().iterdir()
                  if path.is_dir() and not path.name.startswith(("_", ".")))


def one_file_per_work(pieces: list[CorpusPiece]) -> tuple[list[CorpusPiece], list[dict]]:
    """Keep one file per work: the files with the same path but for the extension are one work.

    The kept file is the one whose extension comes first in ``SCORE_SUFFIXES``.
    Two files of one work would be two tracks, so the same music could sit on
    both sides of a split (and both would be written to the same ``.mid`` name).
    Returns ``(kept pieces sorted by path, skipped records)``, each skipped
    record ``{"origin", "label", "reason": "same_work: kept <path>"}``.
    """
    works: dict[tuple[str, str], list[CorpusPiece]] = {}
    for piece in pieces:
        stem = piece.relative_path.rsplit(".", 1)[0]
        works.setdefault((piece.label, stem), []).append(piece)
    kept, skipped = [], []
    for key in sorted(works):
        ranked = sorted(works[key], key=lambda piece: (_format_rank(piece), piece.relative_path))
        kept.append(ranked[0])
        skipped.extend({"origin": twin.origin, "label": twin.label,
                        "reason": f"same_work: kept {ranked[0].relative_path}"} for twin in ranked[1:])
    return sorted(kept, key=lambda piece: piece.relative_path), sort_skipped(skipped)


def _format_rank(piece: CorpusPiece) -> int:
    suffix = "." + piece.relative_path.rsplit(".", 1)[-1].lower()
    return SCORE_SUFFIXES.index(suffix) if suffix in SCORE_SUFFIXES else len(SCORE_SUFFIXES)


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


class ConversionTimeout(Exception):
    """A score took longer to convert than ``dataset.timeout_s``."""


UTF8_BOM = b"\xef\xbb\xbf"


def _convert(source: Path, converter) -> bytes:
    from music21.converter.subConverters import ConverterMidi
    from music21.midi.translate import music21ObjectToMidiFile

    # From the score itself, never through music21's pickle cache in its scratch folder (/tmp/music21): a pickle
    # half written there (a run killed or timed out while writing it, or another process writing it at the same
    # time) made this good score unconvertible, in this run and every later one.
    if source.suffix.lower() == ".mxl" and source.suffix != ".mxl":
        # music21 unpacks a compressed score by its lower-case extension only: as music21 would unpack it.
        score = converter.parseData(converter.ArchiveManager(source).getData(), format="musicxml")
    elif source.suffix.lower() == ".krn" and (data := source.read_bytes()).startswith(UTF8_BOM):
        # music21 reads kern as Latin-1, so a UTF-8 byte order mark (a Windows editor's) becomes three letters
        # glued to the first line, which then fails to parse or parses as other data: read without it.
        score = converter.parseData(data[len(UTF8_BOM):].decode("latin-1"), format="humdrum")
    else:
        score = converter.parse(source, forceSource=True, storePickle=False)
    # What score.write("midi") writes to a file (music21's ConverterMidi.write, its default options),
    # as bytes in memory: nothing on disk that a killed worker would leave behind.
    return music21ObjectToMidiFile(score, addStartDelay=False, addEndDelay=True,
                                   encoding=ConverterMidi().encoding).writestr()


def score_to_midi(piece: CorpusPiece, timeout_s: float = math.inf,
                  program: int | None = None) -> tuple[CorpusPiece, bytes | None, str | None]:
    """Convert one corpus score to Standard MIDI File bytes.

    Returns ``(piece, midi_bytes, None)`` or ``(piece, None, reason)`` when
    music21 cannot parse or convert the score (badly formed repeats, for one)
    or takes longer than ``timeout_s`` seconds of wall time (some full
    string-quartet movements take music21 ten minutes and more).  With
    ``program`` (``dataset.program``), every melodic part of the MIDI file is
    put on that General MIDI program: the corpus's instruments are each
    collection's editorial choice (Palestrina's voices as "voice oohs"), so
    they would tell the collections apart rather than the composers.
    """
    return (piece, *score_file_to_midi(corpus_root() / piece.relative_path, timeout_s, program))


def score_file_to_midi(source: Path, timeout_s: float = math.inf, program: int | None = None,
                       limit: str = "dataset.timeout_s") -> tuple[bytes | None, str | None]:
    """``(MIDI bytes, None)`` of the score file at ``source`` (any format music21 reads), or ``(None, reason)``:
    see :func:`score_to_midi`; ``limit`` names the param ``timeout_s`` comes from, in a timeout's reason."""
    from music21 import converter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            data = call_with_limit(time.monotonic() + timeout_s, ConversionTimeout, _convert, source, converter)
        except ConversionTimeout:
            return None, f"timeout: music21 took longer than {limit} ({timeout_s:g} s)"
        except Exception as error:  # noqa: BLE001 - any failure of a third-party parser
            # A score music21 cannot handle is reported, not fatal: its reason goes
            # into the manifest and the other pieces carry on.
            message = str(error).splitlines()[0][:200] if str(error) else ""
            return None, f"unconvertible: {type(error).__name__}: {message}"
    if not data:
        return None, "unconvertible: music21 wrote an empty MIDI file"
    if program is not None:
        try:
            data = with_program(data, program)
        except Exception as error:  # noqa: BLE001 - mido raises many types on a file it cannot read
            return None, f"unconvertible: music21 wrote a MIDI file mido cannot read ({type(error).__name__})"
    return data, None


def collection_score_to_midi(path: Path, timeout_s: float = math.inf,
                             limit: str = "dataset.timeout_s") -> tuple[bytes | None, str | None]:
    """A collection's score file (SCORE_EXTENSIONS) as MIDI bytes, or why not: its content checked first
    (``content_mismatch``: a ``.xml`` file that is no MusicXML score; ``too_large``: more than MAX_SCORE_BYTES
    of score text, which music21 holds whole in memory, several times over), then converted as the corpus is,
    with the instruments it names (``dataset.program`` is the corpus's; ``render.program`` puts every file of a
    collection on one), and the MIDI file read as render reads it (a score of no note is ``no_notes``, so that
    it never takes the place of its MIDI export). Runs in a worker process; an OSError (no permission, gone)
    is its reason. ``limit``: see :func:`score_file_to_midi`."""
    from musicid.checks import RenderError
    from musicid.filetypes import score_text_bytes
    from musicid.midi import read_midi

    try:
        mismatch = score_mismatch(path)
        size = None if mismatch else score_text_bytes(path)
    except OSError as error:
        return None, unreadable_reason(error)
    if mismatch:
        return None, f"content_mismatch: {mismatch}"
    if size > MAX_SCORE_BYTES:
        return None, too_large_reason(size)
    data, reason = score_file_to_midi(path, timeout_s, limit=limit)
    if data is not None:
        try:
            read_midi(data)
        except RenderError as error:
            return None, str(error)
    return data, reason


# The most score text (a MusicXML file, or what a .mxl holds once unpacked) download and predict convert: the
# longest scores of the corpus hold some 10 MB; music21 holds a score's text and its tree several times over.
MAX_SCORE_BYTES = 100_000_000


def too_large_reason(size: int) -> str:
    """Why a score of ``size`` bytes of score text (more than MAX_SCORE_BYTES) is not converted."""
    return (f"too_large: {size_words(size)} of score text (more than {size_words(MAX_SCORE_BYTES)}, which music21 "
            "would hold in memory several times over)")


def _scores_with_bytes(paths: list[Path]):
    """``(extension, bytes, None)`` of each score file, read as the cluster takes them; ``(extension, None, reason)``
    for one that cannot be read, or larger than MAX_SCORE_BYTES (not read)."""
    for path in paths:
        try:
            size = path.stat().st_size
            if size > MAX_SCORE_BYTES:
                yield path.suffix, None, too_large_reason(size)
                continue
            yield path.suffix, path.read_bytes(), None
        except OSError as error:
            yield path.suffix, None, unreadable_reason(error)


def _score_sent(item: tuple[str, bytes | None, str | None], timeout_s: float = math.inf,
                ) -> tuple[bytes | None, str | None]:
    """On a cluster's worker: :func:`collection_score_to_midi` of a score sent as ``(extension, bytes, reason)``,
    written under a name of that extension in a folder of the worker's own directory (which its nanny removes
    should the worker die on it), removed after (a conversion does not depend on the file's name)."""
    suffix, data, reason = item
    if data is None:
        return None, reason
    import tempfile

    from distributed import get_worker

    folder = Path(tempfile.mkdtemp(prefix="musicid-score-", dir=get_worker().local_directory))
    try:
        local = folder / f"score{suffix}"
        local.write_bytes(data)
        return collection_score_to_midi(local, timeout_s)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def crashed_conversion(path: Path) -> tuple[None, str]:
    """The result of a score file that killed worker after worker: skipped, ``worker_crash``."""
    return None, "worker_crash: the worker processes converting this score died, one after another"


# The errors a parser raises on what it reads, which the same bytes give again: music21's own (named
# ...Exception, or MEI's ...Error below), and Python's for bad data. Not MemoryError, RecursionError (how deep the
# call starts: a pool process or a Dask worker's thread) or an OSError (the file system): those are tried again.
_SCORE_ERRORS = frozenset({"ValueError", "KeyError", "IndexError", "TypeError", "AttributeError", "ZeroDivisionError",
                           "AssertionError", "UnicodeDecodeError", "UnicodeError", "LookupError", "ArithmeticError",
                           "NotImplementedError", "StopIteration", "EOFError", "ParseError", "KeySignatureError",
                           "MeiValidityError", "MeiValueError", "MeiAttributeError", "MeiElementError"})
_DETERMINED_REASONS = ("no_notes: ", "unconvertible: music21 wrote an empty MIDI file")


def repeatable_failure(reason: str) -> bool:
    """Whether a score's conversion failed for a reason of the score's own, which the same bytes, code and
    libraries give again (kept in the score cache): an error of music21 or Python's on bad data
    (``unconvertible: <error>``), a written MIDI file that render refuses (``no_notes``; ``unparseable: <error>``).
    Not a timeout, a crash, a file that could not be read, or an error of memory, recursion depth or the
    file system."""
    if reason.startswith(_DETERMINED_REASONS):
        return True
    for prefix in ("unconvertible: ", "unparseable: "):
        if reason.startswith(prefix):
            error = reason.removeprefix(prefix).split(":", 1)[0]
            return error in _SCORE_ERRORS or (error.endswith("Exception") and error != "Exception")
    return False


def _cached_scores(cache, kind: str, items: list[tuple[object, Path]]) -> tuple[dict, dict]:
    """``({item: (key, digest of the score's bytes)}, {item: cached MIDI bytes or a failure's reason})`` for
    ``items`` (an item and its score file's path) in ``cache`` (a :class:`musicid.score_cache.ScoreCache`, or
    None: nothing cached). A score that cannot be read here, or of more than MAX_SCORE_BYTES (``too_large``,
    found from its first bytes), has no key: its conversion says why."""
    keys, cached = {}, {}
    if cache is None:
        return keys, cached
    for item, path in items:
        try:
            if path.stat().st_size > MAX_SCORE_BYTES:
                continue
            digest = sha256_file(path)  # block by block
        except OSError:
            continue
        keys[item] = (cache.key(kind, path.suffix, digest), digest)
        result = cache.get(keys[item][0])
        if result is not None:
            cached[item] = result
    return keys, cached


def _from_cache(result: bytes | str) -> tuple[bytes | None, str | None]:
    """A cached result as a conversion gives it: ``(MIDI bytes, None)`` or ``(None, reason)``."""
    return (None, result) if isinstance(result, str) else (result, None)


def _keep_converted(cache, keys: dict, item, path: Path, data: bytes | None, reason: str | None) -> None:
    """Put a score's conversion (its MIDI bytes, or its reason when :func:`repeatable_failure`) in ``cache``
    under its key, unless the score's bytes changed since they were hashed (edited during the run: the
    conversion may be of the new bytes, the key is of the old)."""
    if item not in keys or (data is None and not repeatable_failure(reason)):
        return
    key, digest = keys[item]
    try:
        unchanged = sha256_file(path) == digest
    except OSError:
        return
    if unchanged:
        cache.put(key, data if data is not None else reason)


def crashed_score(piece: CorpusPiece) -> tuple[CorpusPiece, None, str]:
    """The result of a score that killed worker after worker (local or Dask): skipped, ``worker_crash``."""
    return piece, None, "worker_crash: the worker processes converting this score died, one after another"


def export_music21(
    classes: list[str],
    max_per_class: int,
    seed: int,
    out_dir: Path,
    map_function: Callable,
    timeout_s: float = math.inf,
    program: int | None = None,
    cache=None,
) -> dict:
    """Write the chosen corpus pieces as MIDI under ``out_dir/<label>/``.

    A work the corpus holds in two formats is one piece (:func:`one_file_per_work`),
    reduced before ``max_per_class`` counts the pieces, the twin recorded as skipped.

    ``map_function(function, items)`` runs the conversions (in parallel in the
    stage, or on a Dask cluster: a :class:`CorpusPiece` names a file of the
    corpus that music21 installs, so a worker with music21 needs no shared
    file system) and yields results in order; ``function`` returns
    ``(piece, MIDI bytes or None, reason or None)``.  Only this process
    writes under ``out_dir``.  ``program``: see :func:`score_to_midi`; the
    manifest records it, and the render stage passes it on with its params.
    ``cache``: a :class:`musicid.score_cache.ScoreCache` (None: every score is
    converted), whose scores are not converted again.
    Returns the manifest (not yet written).
    """
    chosen: list[CorpusPiece] = []
    skipped: list[dict] = []
    for label in classes:
        pieces = list_corpus_pieces(label)
        if not pieces:  # a misspelt name would quietly train one class fewer
            raise DatasetParamError(f"dataset.classes names {label!r}{did_you_mean(label, corpus_composers())}, "
                                    f"for which the music21 corpus has no scores (it has: "
                                    f"{', '.join(corpus_composers())})")
        works, twins = one_file_per_work(pieces)
        skipped.extend(twins)
        chosen.extend(select_pieces(works, max_per_class, seed))

    files: list[dict] = []
    names, patterns = [], []  # each written file's corpus path and melodic patterns: two versions of one work
    keys, cached = _cached_scores(cache, "corpus", [(piece, corpus_root() / piece.relative_path) for piece in chosen])
    convert = functools.partial(score_to_midi, timeout_s=timeout_s, program=program)
    converted = map_function(convert, [piece for piece in chosen if piece not in cached])
    for piece, data, reason in itertools.chain(((piece, *_from_cache(result)) for piece, result in cached.items()),
                                               converted):
        if piece not in cached:
            _keep_converted(cache, keys, piece, corpus_root() / piece.relative_path, data, reason)
        if data is None:
            skipped.append({"origin": piece.origin, "label": piece.label, "reason": reason})
            continue
        target = out_dir / piece.output_name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        names.append(piece.relative_path)
        patterns.append(heard_notes_and_patterns(data)[1])
        files.append(
            {
                "path": piece.output_name,
                "label": piece.label,
                "sha256": sha256_file(target),
                "size": len(data),
                "origin": piece.origin,
                **({"folder": piece.folder} if piece.folder else {}),
            }
        )
    # The corpus holds some works in two versions under two names (madrigal.3.1 and madrigal.3.1_old, a Kyrie
    # in two readings, one harmonisation of a chorale in two cantatas): the split deals them as one work.
    ambiguous, works = versions_of_works(names, [record["label"] for record in files], patterns)
    for index, first in works.items():
        files[index]["work"] = files[first]["path"]
    for index, reason in ambiguous.items():
        (out_dir / files[index]["path"]).unlink()
        skipped.append({"origin": files[index]["origin"], "label": files[index]["label"], "reason": reason})
    files = [record for index, record in enumerate(files) if index not in ambiguous]
    return {
        "source": "music21",
        "program": program,
        "files": sorted(files, key=lambda record: record["path"]),
        "skipped": sort_skipped(skipped),
        "unlabeled": [],
    }


def sort_skipped(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda record: (record["origin"], record["reason"]))


# Folders that archivers and tools add and that never hold a class (macOS zips add
# __MACOSX/ beside the real top folder).
SYSTEM_FOLDERS = frozenset({"__MACOSX"})

RESERVED_LABEL_REASON = "reserved_label: manifest.json, report.json and _unlabeled are written by the pipeline"
HIDDEN_LABEL_REASON = "reserved_label: hidden or system folder"
HIDDEN_REASON = "hidden: a hidden file or folder (its name starts with .) or a system folder (__MACOSX)"
SYMLINK_REASON = "symlink: links are not followed"
NO_LABEL_REASON = "no_label: the file is not inside a label folder"
EMPTY_FOLDER_REASON = "empty_folder: a label folder with no file in it (an unfinished copy?)"
NO_SUCH_CLASS_REASON = "no_such_class: no usable files with this label"
NOT_IN_TABLE_REASON = "not_in_label_table: no row of dataset.label_table names this file"


class CollectionError(ValueError):
    """The collection and the dataset params do not fit together; the message names the param to change."""


class EmptyCollectionError(CollectionError):
    """The source holds no file the params let through; the message names the param to change."""


class DatasetParamError(CollectionError):
    """A dataset param the collection shows to be wrong (a class or folder it does not have): a bad param."""


@dataclass(frozen=True)
class Candidate:
    """A file found in a source tree that passed the name and content checks."""

    path: Path  # where it is on disk now
    relative: str  # its path inside the tree, "/"-separated
    label: str | None  # None for an unlabeled file
    inner: str  # its path below its label (or unlabeled) folder, "/" replaced by "__"
    sha256: str
    size: int
    content: str = ""  # the digest of what it holds: of the MIDI file inside a RIFF (RMID) one, else sha256
    music: str = ""  # the digest of the music it holds: a MIDI file's notes, an audio file's samples, or content
    early: frozenset = frozenset()  # a MIDI file's musicid.midi.early_notes (empty for a short file or audio)
    heard: int = 0  # how many notes a MIDI file plays that are heard
    pitches: tuple = ()  # how often it plays each pitch (musicid.midi.pitch_counts), for a file with early notes
    patterns: object = dataclasses.field(default=None, compare=False)  # musicid.midi.melodic_patterns, or None
    renamed: str = ""  # why its extension was changed to fit what it holds ("" when it was not)
    folder: str = ""  # the first folder below its label folder it sits in ("" directly in it): split.group folder
    parent: str = ""  # the folder it sits in, below its label folder, when two or more deep: split.group parent
    split: str = ""  # the split its label table gives it (dataset.label_table.split_column), or ""
    converted: str = ""  # what it was before download wrote it as MIDI (a score: "Humdrum kern score"), or ""

    @property
    def music_sha256(self) -> str:
        return self.music or self.sha256


def content_digest(path: Path, digest: str) -> str:
    """The sha256 of the MIDI file a RIFF-wrapped one (RMID) holds, as render unwraps it, so that a ``.rmi``
    copy of a ``.mid`` is found to hold the same content; ``digest`` for any other file."""
    with open(path, "rb") as handle:
        head = handle.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"RMID":
        return digest
    from musicid.checks import RenderError
    from musicid.midi import unwrap_rmid

    try:
        return hashlib.sha256(unwrap_rmid(path.read_bytes())).hexdigest()
    except RenderError:  # no data chunk: render names it; as a file, it is itself
        return digest


def _midi_identity(data: bytes) -> tuple[str | None, frozenset, int, tuple[int, ...], object]:
    """(:func:`musicid.midi.notes_digest`, :func:`musicid.midi.early_notes`, how many notes are heard,
    :func:`musicid.midi.pitch_counts`, :func:`musicid.midi.melodic_patterns`) of a MIDI file's bytes, its notes
    read once."""
    from musicid.midi import digest_of_notes, early_notes, heard_notes_and_patterns, pitch_counts

    notes, patterns = heard_notes_and_patterns(data)
    digest = digest_of_notes(notes)
    if digest is None:
        return None, frozenset(), 0, (), None
    early = early_notes(notes)
    return digest, early, len(notes), pitch_counts(notes) if early else (), patterns


def music_digest(path: Path, content: str) -> tuple[str, frozenset, int, tuple[int, ...], object]:
    """(what two files must share to be one piece, the notes of its first beats, how many notes it plays, how
    often it plays each pitch, its melodic patterns): for a MIDI file, ``notes:`` and the digest of the notes it
    plays (:func:`musicid.midi.notes_digest`: a copy another program saved is the same piece), what
    :func:`_held_in_another` pairs files by and what :func:`_versions_of_one_work` does;
    ``(content, frozenset(), 0, (), None)`` (:func:`content_digest`) for any other file, and for a MIDI file
    whose notes cannot be read (render says why) or take longer than PICK_CHECK_SECONDS to read."""
    nothing = (content, frozenset(), 0, (), None)
    with open(path, "rb") as handle:
        head = handle.read(12)
    if head[:4] != b"MThd" and (head[:4] != b"RIFF" or head[8:12] != b"RMID"):
        return nothing
    try:
        notes, early, count, pitches, patterns = call_with_limit(
            time.monotonic() + PICK_CHECK_SECONDS, ConversionTimeout, _midi_identity, path.read_bytes())
    except ConversionTimeout:
        return nothing
    return (f"notes:{notes}", early, count, pitches, patterns) if notes else nothing


@dataclass(frozen=True)
class _Found:
    """A regular file with an accepted extension and a place in the tree, not yet read."""

    path: Path
    relative: str
    label: str | None
    inner: str
    folder: str = ""  # the folder below its label folder it sits in ("" directly in it): split.group folder
    parent: str = ""  # the folders below its label folder, "/"-joined, when two or more: split.group parent
    split: str = ""  # the split its label table's split column gives (train, val, test); "": the pipeline deals it
    converted: str = ""  # a score written as MIDI for the stages after (path: the MIDI file): what it was


def _output_name(folder: str, inner: str, relative: str, taken: set[str]) -> str:
    """``<folder>/<safe stem><ext>`` for the file at ``inner`` below ``folder``; unique in ``taken``.

    The extension stays part of the name (lower-cased), so ``x.mid``, ``x.midi``
    and ``x.wav`` keep three names.  A name already taken (``x.MID`` beside
    ``x.mid``, two names equal once made safe, or ``Tone.mid`` beside
    ``tone.mid``, one file on a case-insensitive file system such as macOS's or
    Windows') gets a hash of the source path ``relative``, which is stable from
    run to run.  ``taken`` holds the case-folded names.
    """
    pure = Path(inner)
    extension = pure.suffix.lower()
    stem = safe_name(pure.stem)
    name = f"{folder}/{stem}{extension}"
    attempt = 0
    while name.casefold() in taken:
        seed = relative if attempt == 0 else f"{relative}#{attempt}"
        name = f"{folder}/{stem}-{hashlib.sha256(seed.encode()).hexdigest()[:8]}{extension}"
        attempt += 1
    taken.add(name.casefold())
    return name


def is_hidden(name: str) -> bool:
    """Whether a file or folder name is one a file manager hides (``.git``, ``._x.mid``) or a system folder."""
    return name.startswith(".") or name in SYSTEM_FOLDERS


def _holds_music(folder: Path) -> bool:
    """Whether ``folder`` directly holds a file (not a folder) named like music (:func:`_is_music_name`); True
    for a folder that cannot be listed, so that it is not stepped into as a wrapper (the walk records it
    unreadable)."""
    try:
        with os.scandir(folder) as entries:
            return any(not entry.is_dir(follow_symlinks=False)
                       and _is_music_name(Path(entry.path), entry.is_file(follow_symlinks=False))
                       for entry in entries)
    except OSError:
        return True


def _is_music_name(path: Path, regular: bool) -> bool:
    """Whether the file at ``path`` is named like music: a MIDI, audio or score extension; a ``.xml`` file
    only when it holds a MusicXML score (a wrapper folder's ``metadata.xml`` does not make it a label), which
    is read only for a ``regular`` file (a link is never followed, a FIFO never opened)."""
    extension = path.suffix.lower()
    if extension == ".xml":
        return regular and is_musicxml(path)
    return extension in ACCEPTED_EXTENSIONS + SCORE_EXTENSIONS


def is_musicxml(path: Path) -> bool:
    """Whether the regular file at ``path`` holds a MusicXML score (:func:`musicid.filetypes.score_mismatch`)."""
    try:
        return score_mismatch(path) is None
    except OSError:
        return False


def _is_unlabeled(name: str, unlabeled: str | None) -> bool:
    """Whether a folder named ``name`` is the ``dataset.unlabeled`` one: compared composed (NFC), as labels are,
    so a folder copied from macOS (decomposed names) matches the name typed in params.yaml."""
    return unlabeled is not None and \
        unicodedata.normalize("NFC", printable(name)) == unicodedata.normalize("NFC", unlabeled)


def find_label_root(root: Path, unlabeled: str | None) -> Path:
    """The folder whose subfolders are the labels: ``root``, or the wrapping folder(s) inside it.

    A folder is stepped into when it is the only folder at its level (hidden
    folders and the ``unlabeled`` one aside) and holds no music file directly,
    only folders: ``genres/blues/x.wav`` gives the labels of ``genres/``.
    """
    current = root
    while True:
        with os.scandir(current) as entries:
            folders = sorted(Path(entry.path) for entry in entries
                             if entry.is_dir(follow_symlinks=False) and not is_hidden(entry.name)
                             and not _is_unlabeled(entry.name, unlabeled))
        if len(folders) != 1 or _holds_music(folders[0]):
            return current
        current = folders[0]


def _label_folder_reason(folder: str, labels: dict[str, str]) -> str | None:
    """Why the label folder ``folder`` cannot be a class, or None; ``labels`` maps folder names."""
    if is_hidden(folder):
        return HIDDEN_LABEL_REASON
    mapped, label = _folder_label(folder, labels)
    if {folder, mapped, label} & RESERVED_LABELS:
        return RESERVED_LABEL_REASON
    return None


def special_file_reason(mode: int) -> str | None:
    """Why a file of ``os.lstat`` ``mode`` cannot be read as data (it may block or never end), or None."""
    kinds = ((stat.S_ISLNK, None), (stat.S_ISREG, None), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    for test, kind in kinds:
        if test(mode):
            return None if kind is None else f"not_a_regular_file: {kind}"
    return "not_a_regular_file: unknown kind"


def _file_refusal(path: Path) -> str | None:
    """Why the file at ``path`` is not read at all (a link, a special file, a hidden file, an extension of no
    MIDI or audio kind), or None."""
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        return SYMLINK_REASON
    special = special_file_reason(mode)
    if special:
        return special
    if is_hidden(path.name):  # .DS_Store, macOS's ._x.mid beside x.mid
        return HIDDEN_REASON
    extension = path.suffix.lower()
    if extension not in ACCEPTED_EXTENSIONS + SCORE_EXTENSIONS:
        return f"unsupported_type: {extension or 'no extension'}"
    return None


def did_you_mean(name: str, choices: list[str]) -> str:
    """`` (is it 'bach'?)`` for a name written in another case or nearly spelt as one of ``choices``, else ``""``."""
    folded = {choice.casefold(): choice for choice in choices}
    near = [folded[name.casefold()]] if name.casefold() in folded else [
        folded[match] for match in difflib.get_close_matches(name.casefold(), list(folded), n=1, cutoff=0.75)]
    return f" (is it {near[0]!r}?)" if near else ""


def _folder_label(folder: str, labels: dict[str, str]) -> tuple[str, str]:
    """(the name ``folder`` is mapped to through ``labels``, the label that gives): composed (NFC) first,
    so that a name spelled with combining accents is the name spelled without them."""
    name = unicodedata.normalize("NFC", folder)
    mapped = labels.get(name, name)
    return mapped, safe_name(mapped)


@dataclass
class _Tree:
    """What :func:`_walk` found."""

    files: list[_Found]
    folders: dict[str, dict[str, str]]  # label -> {label folder's name: the name dataset.labels maps it to}
    saw_unlabeled: bool  # a folder named dataset.unlabeled was found


def _walk(root: Path, label_root: Path, labels: dict[str, str], unlabeled: str | None, skip) -> _Tree:
    """Every usable file under ``root``, with its label; records each thing left out through ``skip``.

    Links are never followed and special files never opened: a FIFO named
    ``x.mid`` would block the first read forever.  Names are taken through
    :func:`printable`, so a name that is not UTF-8 is kept (and shown with
    ``\\xNN``) rather than stopping the walk.
    """
    # The folders from root down to label_root: their other subfolders are not
    # entered as wrappers, so they are checked like labels (hidden ones refused).
    wrappers = {folder for folder in (label_root, *label_root.parents) if folder.is_relative_to(root)}

    def label_of(path: Path) -> str | None:
        """The label of a file or folder inside a label folder (for the records of what was left out), None
        elsewhere and in the unlabeled folder."""
        below = path.relative_to(label_root).parts if path.is_relative_to(label_root) else ()
        if len(below) < 2 or any(_is_unlabeled(part, unlabeled) for part in below[:-1]):
            return None
        return _folder_label(printable(below[0]), labels)[1]

    found: list[_Found] = []
    folders: dict[str, dict[str, str]] = {}
    saw_unlabeled = False
    label_folders: list[str] = []  # the folders entered as labels
    holding: set[str] = set()  # those of them with something in them (kept or left out with a record)

    def hold(path: Path) -> None:
        below = path.relative_to(label_root).parts if path.is_relative_to(label_root) else ()
        if len(below) >= 2:
            holding.add(below[0])

    def unreadable(error: OSError) -> None:
        """A folder os.walk cannot list (no read permission): recorded, so its files do not vanish unsaid."""
        path = Path(error.filename)
        hold(path / "x")
        relative = printable(path.relative_to(root).as_posix()) if path != root else "."
        skip(relative + "/", label_of(path / "x"), unreadable_reason(error))

    for folder, subfolders, names in os.walk(root, onerror=unreadable):
        folder = Path(folder)
        relative_folder = folder.relative_to(root)
        kept = []
        for name in sorted(subfolders):
            relative = printable((relative_folder / name).as_posix())
            saw_unlabeled = saw_unlabeled or _is_unlabeled(name, unlabeled)
            if (folder / name).is_symlink():
                hold(folder / name / "x")
                skip(relative + "/", label_of(folder / name), SYMLINK_REASON)
                continue
            if folder in wrappers and folder / name not in wrappers and not _is_unlabeled(name, unlabeled):
                reason = _label_folder_reason(printable(name), labels)
                if reason:
                    skip(relative + "/", None, reason)
                    continue
            elif is_hidden(name) and not _is_unlabeled(name, unlabeled):  # inside a label folder: .cache/, __MACOSX/
                hold(folder / name / "x")
                skip(relative + "/", label_of(folder / name), HIDDEN_REASON)
                continue
            kept.append(name)
        subfolders[:] = kept  # os.walk enters only these, in this (sorted) order
        if folder == label_root:
            label_folders.extend(name for name in kept if not _is_unlabeled(name, unlabeled))

        for name in sorted(names):
            path = folder / name
            relative = printable((relative_folder / name).as_posix())
            hold(path)
            refusal = _file_refusal(path)
            if refusal:
                skip(relative, label_of(path), refusal)
                continue
            parents = relative.split("/")[:-1]
            marks = [index for index, part in enumerate(parents) if _is_unlabeled(part, unlabeled)]
            if marks:
                inner = "__".join(relative.split("/")[marks[0] + 1:])
                found.append(_Found(path, relative, None, inner))
                continue
            below = path.relative_to(label_root).parts if path.is_relative_to(label_root) else ()
            if len(below) < 2:
                skip(relative, None, NO_LABEL_REASON)
                continue
            name_of_label, label = _folder_label(printable(below[0]), labels)
            folders.setdefault(label, {})[printable(below[0])] = name_of_label
            found.append(_Found(path, relative, label, printable("__".join(below[1:])),
                                printable(below[1]) if len(below) > 2 else "",
                                printable("/".join(below[1:-1])) if len(below) > 3 else ""))
    for name in label_folders:
        if name not in holding:  # nothing in it at all (its files would each have a record)
            relative = printable((label_root / name).relative_to(root).as_posix())
            skip(relative + "/", _folder_label(printable(name), labels)[1], EMPTY_FOLDER_REASON)
    return _Tree(sorted(found, key=lambda item: item.relative), folders, saw_unlabeled)


def _walk_table(root: Path, table: Path, by_file: dict[str, list[Row]], table_origin: str,
                labels: dict[str, str], unlabeled: str | None, skip, skip_row,
                split_column: str | None = None, grouped: bool = False) -> tuple[_Tree, set[str]]:
    """Every usable file under ``root``, labelled by the rows of the label table at ``table`` that name it
    (``by_file``: table_key -> rows); records each thing left out through ``skip`` (a path below ``root``),
    a row naming no file through ``skip_row`` (its origin ``<table_origin>:<line>``).  Returns the tree and
    the keys of the rows that named a file found."""
    base = table.parent if table.is_relative_to(root) else root
    found: list[_Found] = []
    folders: dict[str, dict[str, str]] = {}
    saw_unlabeled = False
    named: set[str] = set()

    def mapped(row: Row) -> str:
        """The label a row gives, once dataset.labels renamed it and it is made safe ("" for none)."""
        return _folder_label(row.label, labels)[1] if row.label else ""

    def unreadable(error: OSError) -> None:
        path = Path(error.filename)
        skip((printable(path.relative_to(root).as_posix()) if path != root else ".") + "/", None,
             unreadable_reason(error))

    for folder, subfolders, names in os.walk(root, onerror=unreadable):
        folder = Path(folder)
        relative_folder = folder.relative_to(root)
        kept = []
        for name in sorted(subfolders):
            relative = printable((relative_folder / name).as_posix())
            saw_unlabeled = saw_unlabeled or _is_unlabeled(name, unlabeled)
            if (folder / name).is_symlink():
                skip(relative + "/", None, SYMLINK_REASON)
            elif is_hidden(name) and not _is_unlabeled(name, unlabeled):
                skip(relative + "/", None, HIDDEN_REASON)
            else:
                kept.append(name)
        subfolders[:] = kept  # os.walk enters only these, in this (sorted) order

        for name in sorted(names):
            path = folder / name
            if path == table:
                continue
            relative = printable((relative_folder / name).as_posix())
            parts = tuple(printable(part) for part in path.relative_to(base).parts) \
                if path.is_relative_to(base) else None
            key = file_key(parts) if parts else None
            rows = by_file.get(key, []) if key else []
            if rows:
                named.add(key)
            # Rows are compared by the label they give once renamed (two spellings dataset.labels merges agree),
            # and a row that gives none does not contradict one that does.
            given = sorted({mapped(row) for row in rows} - {""})
            refusal = _file_refusal(path)
            if refusal:
                skip(relative, given[0] if len(given) == 1 else None, refusal)
                continue
            marks = [index for index, part in enumerate(relative.split("/")[:-1]) if _is_unlabeled(part, unlabeled)]
            if marks:
                found.append(_Found(path, relative, None, "__".join(relative.split("/")[marks[0] + 1:])))
                continue
            if not rows:
                skip(relative, None, NOT_IN_TABLE_REASON)
                continue
            lines = ", ".join(str(row.line) for row in rows)
            if len(given) > 1:
                written = sorted({unicodedata.normalize("NFC", row.label) for row in rows if row.label})
                skip(relative, None, f"conflicting_labels: lines {lines} of the label table give "
                                     f"{', '.join(map(repr, written))}")
                continue
            if not given:
                skip(relative, None, f"no_label: line{'s' if len(rows) > 1 else ''} {lines} of the label table "
                                     f"give{'' if len(rows) > 1 else 's'} it none")
                continue
            first = next(row for row in rows if row.label and mapped(row) == given[0])
            written = unicodedata.normalize("NFC", first.label)
            reason = _label_folder_reason(written, labels)
            if reason:
                skip(relative, None, reason)
                continue
            split = ""
            if split_column:
                splits = sorted({row.split for row in rows})
                split = split_of(splits[0]) if len(splits) == 1 else None
                if not split:
                    skip(relative, given[0],
                         f"no_split: line{'s' if len(rows) > 1 else ''} {lines} of the label table "
                         f"give{'' if len(rows) > 1 else 's'} {' and '.join(map(repr, splits))} in its split "
                         f"column, not one of train, validation or test")
                    continue
            name_of_label, label = _folder_label(written, labels)
            for row in rows:
                if row.label:
                    folders.setdefault(label, {})[unicodedata.normalize("NFC", row.label)] = \
                        _folder_label(row.label, labels)[0]
            if grouped:
                # The group column names every file's work: a file without one is a group of its own, and its
                # folders do not join it to a work of that name.
                group = next((row.group for row in rows if row.group), "")
                folder_of = unicodedata.normalize("NFC", group) if group else ""
            else:
                folder_of = parts[0] if len(parts) > 1 else ""
            found.append(_Found(path, relative, label, "__".join(parts), folder_of,
                                "/".join(parts[:-1]) if len(parts) > 2 else "", split))
    for key, rows in by_file.items():
        if key in named:
            continue
        for row in rows:
            if not row.path:
                reason = "no_path: the row names no file"
            elif key == ".." or key.startswith(("../", "/")):
                reason = f"outside: {row.path} is not below the table's folder"
            elif (base / key).is_dir():
                reason = f"not_a_file: {row.path} is a folder"
            elif (base / key) == table:
                reason = f"not_a_file: {row.path} is the label table"
            else:
                reason = f"no_such_file: {row.path}"
            skip_row(f"{table_origin}:{row.line}", mapped(row) or None, reason)
    return _Tree(sorted(found, key=lambda item: item.relative), folders, saw_unlabeled), named


def _read_label_table(root: Path, origin_prefix: str, where: str, label_table) -> tuple[Path, str, list[Row]]:
    """(the table's path, its origin in the manifest's records, its rows) for ``dataset.label_table``.

    A relative ``file`` is a path inside the collection (also looked for inside its one wrapping folder), the
    table's rows then read from the folder it is in, where it sits (a link is not followed to find that
    folder); an absolute one is a path on disk, its rows read from the collection's root unless it lies in
    the collection.
    """
    given = Path(label_table.file).expanduser()
    if given.is_absolute():
        table = given
        if table.resolve().is_relative_to(root.resolve()):
            table = root / table.resolve().relative_to(root.resolve())
    else:
        written = os.path.normpath(label_table.file)
        if written == ".." or written.startswith("../"):
            raise DatasetParamError(f"dataset.label_table.file {label_table.file!r} leads out of the collection: "
                                    f"give a path inside {where}, or an absolute path")
        table = find_table(root, written)
    if table is None or not table.is_file():
        raise DatasetParamError(f"dataset.label_table.file {label_table.file!r}: no such file "
                                + (f"({table})" if given.is_absolute() else
                                   f"in {where} (a relative path is read inside the collection)"))
    inside = table.is_relative_to(root)
    origin = origin_prefix + printable(table.relative_to(root).as_posix()) if inside else str(table)
    try:
        size = table.stat().st_size
        if size > MAX_TABLE_BYTES:
            raise DatasetParamError(f"dataset.label_table.file {origin} is {size_words(size)}, more than a table of "
                                    f"labels holds (at most {size_words(MAX_TABLE_BYTES)} is read): is it the table?")
        data = table.read_bytes()
    except OSError as error:
        raise DatasetParamError(f"dataset.label_table.file {origin}: {unreadable_reason(error)}") from None
    try:
        rows = read_table(data, label_table.path_column, label_table.label_column, label_table.group_column,
                          origin, label_table.split_column)
    except LabelTableError as error:
        raise DatasetParamError(str(error)) from None
    return table, origin, rows


def collect_tree(root: Path, origin_prefix: str, out_dir: Path, classes: list[str], *args, **kwargs) -> dict:
    """:func:`_collect_tree`, with the folder scores are written to meanwhile removed however it ends."""
    try:
        return _collect_tree(root, origin_prefix, out_dir, classes, *args, **kwargs)
    finally:
        shutil.rmtree(out_dir / SCORES_SCRATCH, ignore_errors=True)


def _collect_tree(root: Path, origin_prefix: str, out_dir: Path, classes: list[str],
                 labels: dict[str, str], unlabeled: str | None, max_per_class: int, seed: int,
                 extra_skipped: list[dict] = (), progress=lambda items, **_: items, label_table=None,
                 jobs: int = 1, timeout_s: float = math.inf, score_cache=None, scheduler: str | None = None) -> dict:
    """Copy the usable files of the tree at ``root`` into ``out_dir``; return the manifest.

    ``origin_prefix + relative path`` names each file's origin in the manifest.
    Labels follow the rule of the module docstring; ``labels`` remaps label
    folder names; ``classes`` (when not empty) keeps only those labels; files
    under a folder named ``unlabeled`` go to ``_unlabeled/``.

    Label folder names, the keys of ``labels`` and the names in ``classes``
    are compared composed (NFC) and made file-name safe as labels are
    (``"Bach, J.S."`` is the label ``Bach__J.S``).

    ``label_table`` (``dataset.label_table``; its ``file`` None or the
    section left out: labels are folder names) takes each file's label from
    a table instead (:mod:`musicid.label_table`); ``labels`` then renames the
    table's labels.

    ``jobs`` local worker processes (0: :func:`musicid.parallel.resolve_jobs`)
    read the files (:func:`identify`, and the picks of ``max_per_class``) when
    they hold enough to be worth the workers' start (:func:`read_jobs`); the
    manifest is the same whatever ``jobs``.

    Score files (SCORE_EXTENSIONS: MusicXML, kern, ABC) are written out as MIDI
    by music21 (:func:`collection_score_to_midi`, each within ``timeout_s``
    seconds, on the ``jobs`` workers from SPREAD_SCORES of them, or on the
    Dask cluster at ``scheduler``, each sent with its bytes), kept as
    ``<label>/<name>.mid`` with ``converted`` in their record; the stages after
    see MIDI files only; those in ``score_cache`` (a
    :class:`musicid.score_cache.ScoreCache`, or None) are not converted again.

    Raises :class:`DatasetParamError` when ``classes`` names a label not
    found or no folder is named ``unlabeled``, or the label table cannot be
    read or names no file of the collection, and :class:`CollectionError`
    when two label folders would become one label without ``labels`` saying
    so; before any file is read.
    """
    skipped: list[dict] = list(extra_skipped)

    def skip(relative: str, label: str | None, reason: str) -> None:
        skipped.append({"origin": origin_prefix + relative, "label": label, "reason": reason})

    labels = {unicodedata.normalize("NFC", folder): label for folder, label in labels.items()}
    # A class is named as its folder reads, or as dataset.labels renames it: either way, its label.
    wanted = {name: _folder_label(name, labels)[1] for name in classes}
    classes = list(wanted.values())
    where = origin_prefix.rstrip("/#") or str(root)
    if label_table is not None and label_table.file is not None:
        table, table_origin, rows = _read_label_table(root, origin_prefix, where, label_table)
        by_file = rows_by_file(rows)
        label_root = root
        tree, named = _walk_table(root, table, by_file, table_origin, labels, unlabeled, skip,
                                  lambda origin, label, reason: skipped.append(
                                      {"origin": origin, "label": label, "reason": reason}),
                                  label_table.split_column, label_table.group_column is not None)
        if not named:  # every row misses: the paths are read from another folder than the user meant
            example = next((row for row in rows if row.path), rows[0])
            base = table.parent if table.is_relative_to(root) else root
            shown = printable(base.relative_to(root).as_posix()) if base.is_relative_to(root) else str(base)
            raise DatasetParamError(
                f"dataset.label_table.path_column {label_table.path_column!r}: no row of {table_origin} names a "
                f"file of {where} (line {example.line}: {example.path!r}); paths are read relative to the "
                f"table's folder ({'the collection' if shown == '.' else shown}), with / or \\ between folders")
        kind, place, table_labels = "labels", f"of {table_origin}", {unicodedata.normalize("NFC", row.label)
                                                                     for row in rows}
    else:
        label_root = find_label_root(root, unlabeled)
        tree = _walk(root, label_root, labels, unlabeled, skip)
        kind, place, table_labels = "label folders", f"in {where}", None
    found = tree.files
    if unlabeled is not None and not tree.saw_unlabeled:
        raise DatasetParamError(f"dataset.unlabeled {unlabeled!r}: no folder of that name in {where} (set it to "
                                f"null, or to the name of the folder of unlabeled files)")
    # A misspelt key of dataset.labels would quietly leave its folder under its own name: one class more.
    folder_names = {unicodedata.normalize("NFC", name) for folders in tree.folders.values() for name in folders}
    unmatched = sorted(key for key in labels if unicodedata.normalize("NFC", key) not in folder_names
                       and not (key in table_labels if table_labels is not None else (label_root / key).is_dir()))
    if unmatched and table_labels is not None:
        raise DatasetParamError(f"dataset.labels maps {', '.join(map(repr, unmatched))}, not one of the labels "
                                f"{place}: {', '.join(map(repr, sorted(table_labels - {''}))) or 'none'} (a key is "
                                "a label as the table writes it)")
    if unmatched:
        raise DatasetParamError(f"dataset.labels maps {', '.join(map(repr, unmatched))}, not a label folder found in "
                                f"{where}: {', '.join(map(repr, sorted(folder_names))) or 'none'} (a key is a "
                                "folder's name as it is on disk)")
    # Two folders whose names differ once mapped, but not once made safe: one label nobody asked for.
    clashes = {label: sorted({mapped: folder for folder, mapped in sorted(folders.items())}.values())
               for label, folders in sorted(tree.folders.items())
               if len(set(folders.values())) > 1 and (not classes or label in classes)}
    if clashes:
        label, names = next(iter(clashes.items()))
        listed = " and ".join(map(repr, names)) if len(names) == 2 else \
            ", ".join(map(repr, names[:-1])) + f" and {names[-1]!r}"
        stem = label.strip("._") or "class"  # suggested labels must be ones dataset.labels takes
        first = label if label.strip("._") else f"{stem}-1"
        mapping = ", ".join(f"{name!r}: {first if index == 0 else f'{stem}-{index + 1}'}"
                            for index, name in enumerate(names))
        raise CollectionError(
            f"the {kind} {listed} {place} would {'both' if len(names) == 2 else 'all'} become the label "
            f"{label!r} (a label keeps letters, digits and .-_ only); rename {'one' if len(names) == 2 else 'them'}, "
            f"or map them with dataset.labels, e.g. {{{mapping}}}"
            + (f" ({len(clashes) - 1} more such label{'s' if len(clashes) > 2 else ''})" if len(clashes) > 1 else ""))
    # Labels that differ only in case ("Bach" and "bach"): one composer as two classes, and two folders of
    # data/raw that a case-insensitive file system (macOS, Windows) cannot hold apart.
    by_case: dict[str, list[str]] = {}
    for label in sorted(tree.folders):
        by_case.setdefault(label.casefold(), []).append(label)
    twins = [group for group in by_case.values()
             if len(group) > 1 and (not classes or len(set(group) & set(classes)) > 1)]
    if twins:
        group = twins[0]
        folders = [folder for label in group for folder in sorted(tree.folders[label])]
        listed = " and ".join(map(repr, folders)) if len(folders) == 2 else \
            ", ".join(map(repr, folders[:-1])) + f" and {folders[-1]!r}"
        mapping = ", ".join(f"{folder!r}: {group[-1]}" for folder in folders)
        raise CollectionError(
            f"the {kind} {listed} {place} differ only in case: they would be "
            f"{len(group)} classes, and folders of data/raw that a case-insensitive file system (macOS, Windows) "
            f"cannot hold apart; rename {'one' if len(folders) == 2 else 'them'}, or map them to one label with "
            f"dataset.labels, e.g. {{{mapping}}}"
            + (f" ({len(twins) - 1} more such label{'s' if len(twins) > 2 else ''})" if len(twins) > 1 else ""))
    found_labels = sorted({item.label for item in found if item.label is not None})
    unknown = [name for name, label in wanted.items() if label not in found_labels]
    if unknown and len(unknown) < len(classes):  # a misspelt class would quietly train one class fewer
        # A folder of that name that held nothing usable is not a misspelling: say so.
        empty = [name for name in unknown if (unicodedata.normalize("NFC", name) in table_labels
                                              if table_labels is not None else (label_root / name).is_dir())]
        held = (f"; {', '.join(map(repr, empty))}: a {'label' if table_labels is not None else 'folder'} with no "
                f"MIDI or audio file kept (see the manifest's skipped)") if empty else ""
        named = ", ".join(f"{name!r}{did_you_mean(name, found_labels)}" for name in unknown)
        raise DatasetParamError(f"dataset.classes names {named}, not a label found in {where}: "
                                f"{', '.join(found_labels)} (set dataset.classes to some of these, or to [] to keep "
                                f"every label){held}")
    if classes and not set(classes) & set(found_labels):
        raise DatasetParamError(
            f"dataset.classes [{', '.join(wanted)}] names none of the labels found in {where}: "
            f"{', '.join(found_labels) or 'none'} (set dataset.classes to [] to keep every label, "
            f"or to some of these)")

    wanted_files = []
    for item in found:
        if item.label is not None and classes and item.label not in classes:
            skip(item.relative, item.label, "not_in_classes")
        else:
            wanted_files.append(item)
    # Scores (MusicXML, kern, ABC) are written out as MIDI first, as the corpus is: the stages after see MIDI
    # only, and the written file is read below as any MIDI file of the collection (its notes find its copies).
    scratch = out_dir / SCORES_SCRATCH
    scores = [item for item in wanted_files if item.path.suffix.lower() in SCORE_EXTENSIONS]
    if scores:
        scratch.mkdir(parents=True, exist_ok=True)
        keys, cached = _cached_scores(score_cache, "collection", [(item.relative, item.path) for item in scores])
        missing = [item for item in scores if item.relative not in cached]
        # In order as they come: each conversion kept (in the cache, then on disk) as soon as it is done.
        if scheduler:  # sent with their bytes: the cluster's workers need not see this machine's files
            converting = ordered_map(functools.partial(_score_sent, timeout_s=timeout_s),
                                     _scores_with_bytes([item.path for item in missing]), 0, scheduler=scheduler,
                                     on_crash=crashed_conversion)
        else:
            converting = ordered_map(functools.partial(collection_score_to_midi, timeout_s=timeout_s),
                                     [item.path for item in missing],
                                     jobs=jobs if len(missing) >= SPREAD_SCORES else 1, on_crash=crashed_conversion)
        results = iter(progress(converting, total=len(missing), desc="scores"))
        written: dict[str, _Found] = {}
        for index, item in enumerate(scores):
            data, reason = _from_cache(cached[item.relative]) if item.relative in cached else next(results)
            if item.relative not in cached:
                _keep_converted(score_cache, keys, item.relative, item.path, data, reason)
            if data is None:
                skip(item.relative, item.label, reason)
                continue
            target = scratch / f"{index}.mid"
            target.write_bytes(data)
            written[item.relative] = dataclasses.replace(
                item, path=target, inner=str(PurePosixPath(item.inner).with_suffix(".mid")),
                converted=f"{SCORE_KINDS[item.path.suffix.lower()]} score written as MIDI by music21")
        converted = {item.relative for item in scores}
        wanted_files = [written[item.relative] if item.relative in converted else item for item in wanted_files
                        if item.relative not in converted or item.relative in written]
    # Each file read once (its bytes hashed, a MIDI file's notes read): on workers when that is worth their start.
    workers = read_jobs(jobs, [item.path for item in wanted_files])
    identities = ordered_map(identify, [item.path for item in wanted_files], jobs=workers, on_crash=crashed_read)
    candidates: list[Candidate] = []
    for item, identity in zip(wanted_files, progress(identities, total=len(wanted_files), desc="check")):
        if isinstance(identity, str):  # no permission, gone since the walk, or it killed its worker: this file only
            skip(item.relative, item.label, identity)
            continue
        if identity.mismatch and not identity.fitting:
            skip(item.relative, item.label, f"content_mismatch: {identity.mismatch}")
            continue
        # Music under another kind's extension (an MP3 named .wav) is kept under the extension of what it
        # holds, which the stages after read it by.
        fitting, mismatch = identity.fitting, identity.mismatch
        inner = str(PurePosixPath(item.inner).with_suffix(fitting)) if fitting else item.inner
        candidates.append(Candidate(item.path, item.relative, item.label, inner, identity.sha256, identity.size,
                                    identity.content, identity.music, early=identity.early, heard=identity.heard,
                                    pitches=identity.pitches, patterns=identity.patterns,
                                    renamed=f"{mismatch}: kept as {fitting}" if fitting else "",
                                    folder=item.folder, parent=item.parent, split=item.split,
                                    converted=item.converted))

    candidates = with_samples_digests(candidates)
    labelled = [c for c in candidates if c.label is not None]
    # One file per work first, so that a work whose kept file is then found to be a copy goes whole: its
    # audio export must not stay behind as a track of the music that was dropped.
    works = _one_file_per_work(labelled, skip)
    kept, versions = _versions_of_one_work(_held_in_another(works, _deduplicate(works, skip), skip), skip,
                                            progress)
    by_label: dict[str, list[Candidate]] = {}
    for candidate in kept:
        by_label.setdefault(candidate.label, []).append(candidate)
    chosen: list[Candidate] = []
    for label in sorted(by_label):
        members = by_label[label]
        if max_per_class and len(members) > max_per_class:
            # Taken in a seeded order, each read as render will read it: a file that cannot be used
            # (cut short, no notes) does not take the place of one that can.
            ranked = sorted(members, key=lambda c: hashlib.sha256(f"{seed}:{c.relative}".encode()).hexdigest())
            # Read a few ahead on workers (when worth their start); those not needed are dropped unread.
            reasons = ordered_map(_pick_reason, ((c.path, Path(c.inner).suffix) for c in ranked),
                                  jobs=min(resolve_jobs(read_jobs(jobs, [c.path for c in ranked[:max_per_class]])),
                                           max_per_class), on_crash=crashed_read)
            members = []
            try:
                for candidate in ranked:
                    if len(members) == max_per_class:
                        skip(candidate.relative, label, f"over_max_per_class: {max_per_class}")
                        continue
                    unusable = next(reasons)
                    if unusable:
                        skip(candidate.relative, label, unusable)
                    else:
                        members.append(candidate)
            finally:
                reasons.close()
        chosen.extend(sorted(members, key=lambda c: c.relative))

    # A class that did not come is named: one that dataset.classes asks for, or (keeping every label) a label
    # folder whose every file was skipped (all .ape, all misnamed); an empty folder has its own record.
    empty = {record["label"] for record in skipped if record["reason"] == EMPTY_FOLDER_REASON}
    seen = {record["label"] for record in skipped if record["label"] is not None} | \
        {candidate.label for candidate in labelled}
    for label in classes or sorted(seen - empty):
        if label not in by_label:
            skip("", label, NO_SUCH_CLASS_REASON)

    files, taken, record_of = [], set(), {}  # record_of: a kept file's path in the collection -> its record
    # A file of the collection keeps its own name before a score written as MIDI takes it (u.mid, u.krn).
    for candidate in sorted(chosen, key=lambda c: (c.label, bool(c.converted), c.relative)):
        name = _output_name(candidate.label, candidate.inner, candidate.relative, taken)
        _copy(candidate.path, out_dir / name)
        record_of[candidate.relative] = {"path": name, "label": candidate.label, "sha256": candidate.sha256,
                                         "size": candidate.size, "origin": origin_prefix + candidate.relative,
                                         **({"renamed": candidate.renamed} if candidate.renamed else {}),
                                         **({"converted": candidate.converted} if candidate.converted else {}),
                                         **({"folder": candidate.folder} if candidate.folder else {}),
                                         **({"parent": candidate.parent} if candidate.parent else {}),
                                         **({"split": candidate.split} if candidate.split else {})}
        files.append(record_of[candidate.relative])
    # Versions of one work (each a track) are one work to the split, named by the first kept version's path (a
    # version dataset.max_per_class left out has no say; a work with one version kept is a track as any other).
    by_work: dict[str, list[str]] = {}
    for relative in sorted(set(versions) & set(record_of)):
        by_work.setdefault(versions[relative], []).append(relative)
    for members in by_work.values():
        for relative in members if len(members) > 1 else ():
            record_of[relative]["work"] = record_of[members[0]]["path"]

    unlabeled_files = []
    for candidate in sorted(_deduplicate([c for c in candidates if c.label is None], skip),
                            key=lambda c: (bool(c.converted), c.relative)):
        name = _output_name("_unlabeled", candidate.inner, candidate.relative, taken)
        _copy(candidate.path, out_dir / name)
        unlabeled_files.append({"path": name, "label": None, "sha256": candidate.sha256,
                                "size": candidate.size, "origin": origin_prefix + candidate.relative,
                                **({"renamed": candidate.renamed} if candidate.renamed else {}),
                                **({"converted": candidate.converted} if candidate.converted else {})})

    return {
        "files": sorted(files, key=lambda record: record["path"]),
        "skipped": sort_skipped(skipped),
        "unlabeled": sorted(unlabeled_files, key=lambda record: record["path"]),
    }


# Reading one file for dataset.max_per_class's picks, or its notes; a slower one is left to render.
PICK_CHECK_SECONDS = 20

# Scores are written as MIDI on workers from this many (music21 takes a second or more for most scores): the
# folder scores are written to meanwhile, inside the stage's output folder, is removed before the stage ends.
SPREAD_SCORES = 4
SCORES_SCRATCH = ".scores"

# Reading the files is spread over workers only when they hold this much MIDI (its notes read: about 1.2 ms a KB) or
# this much in all (hashed at some hundreds of MB a second): below it, starting the workers (about 0.25 s) would cost
# as much as it saves.
SPREAD_MIDI_BYTES = 1 << 20
SPREAD_BYTES = 1 << 30


@dataclass(frozen=True)
class Identity:
    """What :func:`identify` reads of a file: ``mismatch``, what its first bytes say against its extension
    (None: they agree), and ``fitting``, the extension of what it holds instead (None: no other one fits);
    the rest only when the file is kept (no mismatch, or one that fits): :class:`Candidate`'s fields."""

    mismatch: str | None
    fitting: str | None
    sha256: str = ""
    size: int = 0
    content: str = ""
    music: str = ""
    early: frozenset = frozenset()
    heard: int = 0
    pitches: tuple = ()
    patterns: object = dataclasses.field(default=None, compare=False)


def identify(path: Path) -> Identity | str:
    """Read the file at ``path`` for :func:`collect_tree`: its kind against its extension, its bytes' sha256,
    :func:`content_digest` and :func:`music_digest`; or why it cannot be read (no permission, gone since the
    walk: :func:`musicid.io.unreadable_reason`). Runs in a worker process (module-level, picklable results)."""
    try:
        mismatch = check_file(path)
        fitting = content_extension(path) if mismatch else None
        if mismatch and not fitting:
            return Identity(mismatch, None)
        digest, size = sha256_file(path), path.stat().st_size
        content = content_digest(path, digest)
        music, early, heard, pitches, patterns = music_digest(path, content)
    except OSError as error:
        return unreadable_reason(error)
    return Identity(mismatch, fitting, digest, size, content, music, early, heard, pitches, patterns)


def crashed_read(item) -> str:
    """The reason of a file whose reading killed worker after worker (:func:`musicid.parallel.ordered_map`)."""
    return "worker_crash: the worker processes reading this file died, one after another"


def _pick_reason(item: tuple[Path, str]) -> str | None:
    """:func:`unusable_reason` of one ``(path, suffix)``, for :func:`musicid.parallel.ordered_map`."""
    return unusable_reason(*item)


def read_jobs(jobs: int, paths: list[Path]) -> int:
    """``jobs`` when reading the files at ``paths`` is worth starting workers (SPREAD_MIDI_BYTES of MIDI or
    SPREAD_BYTES in all), else 1 (read here)."""
    from musicid.filetypes import MIDI_EXTENSIONS

    if jobs == 1:
        return 1
    midi = every = 0
    for path in paths:
        try:
            size = path.lstat().st_size
        except OSError:  # read (and named) by identify
            continue
        every += size
        midi += size if path.suffix.lower() in MIDI_EXTENSIONS else 0
        if midi >= SPREAD_MIDI_BYTES or every >= SPREAD_BYTES:
            return jobs
    return 1


def unusable_reason(path: Path, suffix: str | None = None) -> str | None:
    """Why render would reject the file at ``path`` whatever the render params, or None: a MIDI file mido
    cannot read (after the repairs render makes) or without a note; an audio file libsndfile (FFmpeg:
    musicid.audio.FFMPEG_EXTENSIONS) cannot open or decode from its start, with no frame, a NaN or infinite sample, or nothing but one value
    throughout (digital silence, which only ``render.min_rms: 0`` would keep). What depends on render's params (a quiet
    file against render.min_rms, the length against render.max_seconds) is left to render, as is a file that
    takes longer to read than PICK_CHECK_SECONDS. ``suffix``: the kind of file it is read as (default: its
    own extension's)."""
    from musicid.checks import RenderError
    from musicid.filetypes import MIDI_EXTENSIONS
    from musicid.midi import read_midi

    is_midi = (suffix or path.suffix).lower() in MIDI_EXTENSIONS
    try:
        # Both read in Python steps (mido; libsndfile block by block), which the limit can stop.
        call_with_limit(time.monotonic() + PICK_CHECK_SECONDS, ConversionTimeout,
                        read_midi if is_midi else _check_audio, path, *(() if is_midi else (suffix,)))
    except ConversionTimeout:
        return None  # slow to read is not unusable: render, with render.timeout_s, decides
    except RenderError as error:
        return str(error)
    except Exception as error:  # noqa: BLE001 - libsndfile errors come as several types
        from musicid.audio import error_words

        return f"{'unparseable' if is_midi else 'decode_error'}: {error_words(error)}"
    return None


def _check_audio(path: Path, suffix: str | None = None) -> None:
    """Decode an audio file block by block at its own rate, keeping no samples; RenderError for what makes
    it unusable whatever the render params (see :func:`unusable_reason`)."""
    import numpy as np

    from musicid.audio import Level, non_finite_problem, open_audio, read_blocks, unfinished_wav_patches
    from musicid.checks import RenderError

    level, non_finite = Level(), 0
    with open_audio(path, suffix or path.suffix) as handle:  # a name that is not UTF-8 goes as bytes
        for block in read_blocks(handle, stopped_by=[]):  # cut short: render keeps what precedes the damage
            finite = np.isfinite(block)
            if not finite.all():  # as render mends them: set to 0 (the silence test below still holds)
                non_finite += block.size - int(np.count_nonzero(finite))
                block = np.where(finite, block, np.float32(0.0))
            level.add(block)
    if level.count == 0:
        if (suffix or path.suffix).lower() in WAV_EXTENSIONS:
            with open(path, "rb") as handle:
                if unfinished_wav_patches(handle, os.fstat(handle.fileno()).st_size):
                    return  # a WAV whose header was never finished: render reads the samples it holds
        raise RenderError("empty_render", "no audio frames")
    problem = non_finite_problem(non_finite, level.count * len(level.mean))
    if problem:
        raise RenderError("non_finite", problem)
    if level.rms_without_offset()[0] == 0.0:
        raise RenderError("silent", "every sample has the same value (digital silence)")


SAMPLES_CHECK_SECONDS = 300  # decoding one recording to compare its samples; a slower one keeps its bytes' identity


def samples_digest(path: Path, suffix: str, first_block: bool = False) -> str:
    """The sha256 of an audio file's decoded samples (float32, as render reads them), and its channel count;
    with ``first_block``, of its samples up to the end of its first block that is not one value throughout
    (a quick look that tells most recordings apart, a silent lead-in aside)."""
    import numpy as np

    from musicid.audio import open_audio, read_blocks

    digest = hashlib.sha256()
    with open_audio(path, suffix) as handle:
        digest.update(f"{handle.channels}:".encode())
        for block in read_blocks(handle):
            digest.update(np.ascontiguousarray(block, dtype="<f4").tobytes())
            if first_block and block.size and block.min() != block.max():
                break
    return digest.hexdigest()


def with_samples_digests(candidates: list[Candidate]) -> list[Candidate]:
    """``candidates``, an audio file's ``music`` made the digest of its decoded samples (``samples:...``) when
    another audio file of other bytes declares the same number of frames at the same rate: one recording
    kept in two lossless formats (``take1.wav`` and ``take1 (copy).flac``) decodes to the same samples. The
    headers are read for every audio file; only files whose lengths coincide are read, up to their first
    block with sound first, and only those that agree so far are decoded whole; each content once (copies of
    the same bytes share its digest). A file that cannot be read or decoded within SAMPLES_CHECK_SECONDS keeps
    its bytes' identity (render says why)."""
    from musicid.audio import DECODE_BLOCK_FRAMES, audio_header
    from musicid.filetypes import MIDI_EXTENSIONS

    by_length: dict[tuple[int, int], list[int]] = {}
    for index, candidate in enumerate(candidates):
        suffix = Path(candidate.inner).suffix.lower()
        if suffix in MIDI_EXTENSIONS:
            continue
        try:
            frames, rate = audio_header(candidate.path, suffix)
        except Exception:  # noqa: BLE001 - a file libsndfile or FFmpeg cannot open: render names it
            continue
        if frames > 0:
            by_length.setdefault((frames, rate), []).append(index)
    digests: dict[tuple[str, bool], str | None] = {}  # (content, first block only) -> digest: each content once

    def digest_of(candidate: Candidate, first_block: bool) -> str | None:
        key = (candidate.content, first_block)
        if key not in digests:
            try:
                digests[key] = call_with_limit(time.monotonic() + SAMPLES_CHECK_SECONDS, ConversionTimeout,
                                               samples_digest, candidate.path, Path(candidate.inner).suffix.lower(),
                                               first_block)
            except Exception:  # noqa: BLE001 - too slow, or a decoding error: render names it
                digests[key] = None
        return digests[key]

    digested = list(candidates)
    for (frames, _), members in by_length.items():
        if len({candidates[index].content for index in members}) < 2:
            continue  # one file, or copies of the same bytes: already one
        # The first block tells most recordings of one length apart (excerpts cut to one length): only files
        # whose first blocks agree are decoded whole.
        by_start: dict[str, list[int]] = {}
        for index in members:
            start = digest_of(candidates[index], first_block=True)
            if start is not None:
                by_start.setdefault(start, []).append(index)
        for alike in by_start.values():
            if len({candidates[index].content for index in alike}) < 2:
                continue
            for index in alike:
                # A file of one block (or a silent lead-in and one block) was read whole by the first look.
                digest = digest_of(candidates[index], first_block=False) \
                    if frames > DECODE_BLOCK_FRAMES else digest_of(candidates[index], first_block=True)
                if digest is not None:
                    digested[index] = dataclasses.replace(candidates[index], music=f"samples:{digest}")
    return digested


def _deduplicate(candidates: list[Candidate], skip) -> list[Candidate]:
    """Keep the first of files that hold one piece (the same bytes, or MIDI files that play the same notes:
    :func:`music_digest`) with one label; drop those claimed by two labels."""
    by_hash: dict[str, list[Candidate]] = {}
    for candidate in sorted(candidates, key=lambda c: c.relative):
        by_hash.setdefault(candidate.music_sha256, []).append(candidate)
    kept = []
    for group in by_hash.values():
        group_labels = sorted({c.label for c in group})
        # The same bytes (or MIDI file), the same notes, or the same decoded samples.
        kind = "notes" if group[0].music.startswith("notes:") else "samples"
        same = "content" if len({c.content for c in group}) == 1 else kind
        if len(group_labels) > 1:
            for candidate in group:
                skip(candidate.relative, candidate.label,
                     f"ambiguous_label: the same {same} {'is' if same == 'content' else 'are'} under "
                     f"{', '.join(group_labels)}")
            continue
        kept.append(group[0])
        for candidate in group[1:]:
            what = "content" if candidate.content == group[0].content else kind
            skip(candidate.relative, candidate.label, f"duplicate: same {what} as {group[0].relative}")
    return sorted(kept, key=lambda c: c.relative)


def _held_in_another(candidates: list[Candidate], kept: list[Candidate], skip) -> list[Candidate]:
    """``kept`` (what :func:`_deduplicate` kept of ``candidates``) without the MIDI files whose every note is a
    note of another file of ``candidates`` (:func:`musicid.midi.holds_notes`): a copy cut short (an
    interrupted download, which render would read as far as it goes), an excerpt from the start, or one part
    alone is that piece, and kept as a track of its own it could be trained on while the piece is scored on.

    A file held only in files of its own label goes, naming the largest of them that is kept; one held in a
    file of another label goes as ``ambiguous_label`` (the file that holds it, more of the music, stays); one
    whose holders were all dropped for their own labels' sake goes with them. Files are compared from the
    largest down; a pair is compared note by note only when the smaller one's notes of its first beats
    (:func:`musicid.midi.early_notes`) are all among the larger one's, found through an index of those notes,
    and it plays no pitch more often (:func:`musicid.midi.pitch_counts`).
    """
    from musicid.midi import heard_notes, holds_notes

    midi = sorted((c for c in candidates if c.early), key=lambda c: (-c.heard, c.relative))
    holding: dict[tuple, set[int]] = {}  # an early note -> the files (indexes into midi) whose early notes hold it
    for index, candidate in enumerate(midi):
        for note in candidate.early:
            holding.setdefault(note, set()).add(index)
    notes: dict[int, list | None] = {}

    def notes_of(index: int) -> list | None:
        if index not in notes:
            try:
                notes[index] = call_with_limit(time.monotonic() + PICK_CHECK_SECONDS, ConversionTimeout,
                                               heard_notes, midi[index].path.read_bytes())
            except (ConversionTimeout, OSError):
                notes[index] = None
        return notes[index]

    survivors = {c.relative for c in kept}
    dropped: set[str] = set()
    for index, part in enumerate(midi):
        if part.relative not in survivors:
            continue
        postings = sorted((holding[note] for note in part.early), key=len)
        possible = set(postings[0]).intersection(*postings[1:]) if postings else set()
        holders = [midi[other] for other in sorted(possible)
                   if other != index and midi[other].heard >= part.heard and midi[other].music != part.music
                   and all(mine <= theirs for mine, theirs in zip(part.pitches, midi[other].pitches))
                   and notes_of(other) and notes_of(index) and holds_notes(notes_of(other), notes_of(index))]
        if not holders:
            continue
        others = sorted({h.label for h in holders} - {part.label})
        standing = [h for h in holders if h.label == part.label and h.relative in survivors
                    and h.relative not in dropped]
        if others:
            foreign = next(h for h in holders if h.label != part.label)
            skip(part.relative, part.label, f"ambiguous_label: its notes are all in {foreign.relative}, under "
                                            f"{', '.join(others)}")
        elif standing:
            skip(part.relative, part.label, f"duplicate: its notes are all in {standing[0].relative} (a copy cut "
                                            f"short, an excerpt or a part of it)")
        else:  # every holder was dropped for being under two labels: so is what it holds
            skip(part.relative, part.label, f"ambiguous_label: its notes are all in {holders[0].relative}, "
                                            f"which is under two labels")
        dropped.add(part.relative)
    return [candidate for candidate in kept if candidate.relative not in dropped]


SAME_WORK_SHARE = 0.5  # the share of melodic patterns (Jaccard) from which two MIDI files are one work
PAIRING_ROWS = 512  # files whose shared patterns are counted at once against the others


def same_work_groups(patterns: list, progress=lambda items, **_: items) -> list[list[int]]:
    """Groups of two or more of the files whose :func:`musicid.midi.melodic_patterns` are ``patterns`` (None: a
    file too short to compare, or not MIDI) that are versions of one work: joined by pairs whose distinct
    patterns, the parts' top lines' or the whole file's (compared apart), overlap by at least SAME_WORK_SHARE of
    their union (Jaccard). Each group's indexes sorted, the groups by their first. In the music21 corpus two
    versions of one work in the default classes (a madrigal in two editions, the same pitches in other note
    values; a Kyrie in two readings) share 1.0 and 0.94, and no two other pieces of those 160 more than 0.28
    (12,561 pairs; their top lines 0.26). Of Bach's 413 chorale files, 19 pairs share 0.57 to 1.0: one
    harmonisation in two works (BWV 158.4 and BWV 279, 0.96; BWV 227.1 and 227.11, 1.0), a chorale with and
    without its instrumental parts (0.61), one score in two formats (0.69); the next pair, two harmonisations of
    one tune, shares 0.49."""
    import scipy.sparse
    from scipy.sparse.csgraph import connected_components

    pairs = [alike_pairs([None if found is None else found[(found >= WHOLE_FILE) == whole] for found in patterns],
                         progress, f"versions ({which})") for whole, which in ((False, "parts"), (True, "top line"))]
    rows, cols = (np.concatenate(side) for side in zip(*pairs))
    _, component = connected_components(scipy.sparse.coo_matrix((np.ones(len(rows)), (rows, cols)),
                                                                shape=(len(patterns), len(patterns))),
                                        directed=False)
    groups: dict[int, list[int]] = {}
    for node, found in enumerate(component):
        groups.setdefault(int(found), []).append(node)
    return sorted((group for group in groups.values() if len(group) > 1), key=lambda group: group[0])


def alike_pairs(patterns: list, progress=lambda items, **_: items, desc: str = "versions",
                ) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols): the pairs of files (indexes into ``patterns``, one set of distinct codes each, or None or empty
    for a file not compared) whose sets overlap by SAME_WORK_SHARE of their union or more. The files are taken in
    order of size and each block of PAIRING_ROWS is counted against the larger files only up to twice its largest:
    a set more than twice the size of another cannot hold half their union (scipy's sparse product)."""
    present = np.array([index for index, found in enumerate(patterns) if found is not None and len(found)],
                       dtype=np.int64)
    if len(present) < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    sizes = np.array([len(patterns[index]) for index in present])
    order = np.argsort(sizes, kind="stable")
    present, sizes = present[order], sizes[order]
    matrix = pattern_matrix([patterns[index] for index in present])
    transposed = matrix.T.tocsc()
    found_rows, found_cols = [], []
    for start in progress(range(0, len(present), PAIRING_ROWS), desc=desc):
        stop = np.searchsorted(sizes, sizes[min(start + PAIRING_ROWS, len(present)) - 1] / SAME_WORK_SHARE,
                               side="right")
        shared = (matrix[start:start + PAIRING_ROWS] @ transposed[:, start:stop]).tocoo()  # patterns both hold
        rows, cols = shared.row + start, shared.col + start
        alike = (rows < cols) & (shared.data >= SAME_WORK_SHARE * (sizes[rows] + sizes[cols] - shared.data))
        found_rows.append(present[rows[alike]])
        found_cols.append(present[cols[alike]])
    return np.concatenate(found_rows), np.concatenate(found_cols)


def pattern_matrix(sets: list[np.ndarray]):
    """A scipy CSR matrix float32 [files, distinct codes]: 1 where a file's set (non-empty, distinct codes) holds a
    code, so that a row's product with another's counts the codes they share."""
    import scipy.sparse

    codes = np.concatenate(sets)
    owners = np.repeat(np.arange(len(sets)), [len(found) for found in sets])
    columns = np.unique(codes, return_inverse=True)[1]
    return scipy.sparse.csr_matrix((np.ones(len(codes), dtype=np.float32), (owners, columns)),
                                   shape=(len(sets), int(columns.max()) + 1))


def pattern_share(first, second) -> float:
    """The overlap (Jaccard) of two files' melodic patterns (:func:`musicid.midi.melodic_patterns`): of their
    parts' or of their top lines', whichever is the larger."""
    shares = [0.0]
    for whole in (False, True):
        mine, theirs = first[(first >= WHOLE_FILE) == whole], second[(second >= WHOLE_FILE) == whole]
        if len(mine) and len(theirs):
            shared = len(np.intersect1d(mine, theirs, assume_unique=True))
            shares.append(shared / (len(mine) + len(theirs) - shared))
    return max(shares)


def versions_of_works(names: list[str], labels: list[str], patterns: list, progress=lambda items, **_: items,
                      ) -> tuple[dict[int, str], dict[int, int]]:
    """(the files to skip, index -> reason; the work of each other file held in two versions or more, index ->
    the index of its first version by name) for the groups of :func:`same_work_groups`. A work under one label
    keeps every version, each a track of its own (two pianists' performances of one piece are two recordings
    to learn from), and the split deals them as one (``work`` in the manifest, :func:`musicid.clips.split_units`):
    never on two sides of it. A work under two labels goes whole as ``ambiguous_label``, as the same notes under
    two labels do."""
    reasons, works = {}, {}
    for group in same_work_groups(patterns, progress):
        group = sorted(group, key=lambda index: names[index])
        group_labels = sorted({labels[index] for index in group})
        for index in group:
            if len(group_labels) > 1:
                # Named: the closest version under another label (a chain of versions can join two files that
                # share less than SAME_WORK_SHARE: then say so).
                shares = {other: pattern_share(patterns[index], patterns[other]) for other in group
                          if labels[other] != labels[index]}
                other = max(shares, key=lambda found: (shares[found], -group.index(found)))  # first by name on a tie
                through = "" if shares[other] >= SAME_WORK_SHARE else ", joined through other versions"
                reasons[index] = (f"ambiguous_label: a version of {names[other]} ({shares[other]:.0%} of their "
                                  f"melodic patterns shared{through}), one work under {', '.join(group_labels)}")
            else:
                works[index] = group[0]
    return reasons, works


def _versions_of_one_work(kept: list[Candidate], skip, progress) -> tuple[list[Candidate], dict[str, str]]:
    """(``kept`` without the works its MIDI files hold under two labels, the work of each file held in two
    versions or more: its path -> the path of the work's first version) (:func:`versions_of_works`): another
    edition, a transposition, the same notes in other note values, another performance of the score."""
    reasons, works = versions_of_works([c.relative for c in kept], [c.label for c in kept],
                                       [c.patterns for c in kept], progress)
    for index, reason in sorted(reasons.items()):
        skip(kept[index].relative, kept[index].label, reason)
    return ([candidate for index, candidate in enumerate(kept) if index not in reasons],
            {kept[index].relative: kept[first].relative for index, first in works.items()})


def _work_rank(candidate: Candidate) -> tuple:
    """Which file of one work is kept: a score first (SCORE_EXTENSIONS' order, as for the corpus: a MIDI file
    beside it is most often its export), then MIDI (its notes give the symbolic features, and it renders as the
    collection's other MIDI files), then lossless audio, then lossy; then by path."""
    original = PurePosixPath(candidate.relative).suffix.lower()
    if candidate.converted and original in SCORE_EXTENSIONS:
        return (0, SCORE_EXTENSIONS.index(original)), candidate.relative
    return (1, ACCEPTED_EXTENSIONS.index(Path(candidate.inner).suffix.lower())), candidate.relative


def _one_file_per_work(candidates: list[Candidate], skip) -> list[Candidate]:
    """Keep one file of each work: files of one folder whose paths differ only by the extension (or its case),
    such as a MIDI file and its audio export, or one recording as .flac and .mp3, are one piece of music. As
    two tracks they could be split apart, the same music on both sides of the split. Files of two folders
    merged into one label by dataset.labels are not compared: ``JS Bach/01.mid`` and ``Bach/01.mid`` are two
    pieces."""
    works: dict[tuple[str | None, str], list[Candidate]] = {}
    for candidate in candidates:
        stem = str(PurePosixPath(candidate.relative).with_suffix(""))
        works.setdefault((candidate.label, stem), []).append(candidate)
    kept = []
    for group in works.values():
        ranked = sorted(group, key=_work_rank)
        kept.append(ranked[0])
        for twin in ranked[1:]:
            skip(twin.relative, twin.label, f"same_work: kept {ranked[0].relative}")
    return sorted(kept, key=lambda c: c.relative)


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)

"""Files made ready for a model, as the stages made its data: rendered, clipped and featurized with the params
a checkpoint stores (:class:`FileReader`), in predict's process or in worker processes (:func:`prepare_all`).

Nothing here needs PyTorch, so a worker process starts in about a second.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musicid.audio import to_channels, wav_bytes
from musicid.checks import RenderError
from musicid.clips import cut_clips, load_mono
from musicid.dataset import collection_score_to_midi, special_file_reason
from musicid.features import compute_features
from musicid.filetypes import ACCEPTED_EXTENSIONS, MIDI_EXTENSIONS, SCORE_EXTENSIONS, check_file, content_extension
from musicid.io import printable, unreadable_reason
from musicid.parallel import ordered_map
from musicid.render import load_source
from musicid.symbolic import clip_features, read_midi_notes, sounding
from musicid.synth import FluidSynthUnavailable, MidiRenderer, SoundFontUnreadable

OUT_OF_MEMORY = "out_of_memory: its audio, clips or features did not fit in this machine's memory"


def out_of_memory(machine: str = "this machine") -> str:
    """OUT_OF_MEMORY, naming the machine that ran out (a cluster's worker)."""
    return OUT_OF_MEMORY.replace("this machine", machine)
WORKER_CRASH = "worker_crash: the worker processes reading this file died, one after another"


@dataclass
class Prediction:
    path: str
    labels: list[tuple[str, float]] = field(default_factory=list)  # (label, probability), best first
    novelty: float | None = None  # the file's train.novelty score: distance of its mean embedding to the nearest class
    flagged: bool | None = None  # novelty above the checkpoint's threshold: unlike every known class
    clips: int = 0
    error: str | None = None  # "reason: detail" when the file could not be used
    symbolic: bool = False  # the model also read the notes of the file (a MIDI file, with a symbolic model)
    notes_unread: str | None = None  # why a symbolic model read no notes of a MIDI file (its audio alone decided)
    repaired: list[str] = field(default_factory=list)  # what render repaired to use the file (a file cut short)
    # predict --clips: each clip's start (seconds) in its render, the SoundFont of that render (its file name;
    # None for an audio file, or with one SoundFont), and its own answer, best first; None when not asked for.
    clip_labels: list[tuple[float, str | None, list[tuple[str, float]]]] | None = None

    def to_dict(self) -> dict:
        def named(labels: list[tuple[str, float]]) -> list[dict]:
            return [{"label": label, "probability": round(p, 6)} for label, p in labels]

        return {"path": self.path, "labels": named(self.labels),
                "novelty": None if self.novelty is None else round(self.novelty, 6), "flagged": self.flagged,
                "clips": self.clips, "symbolic": self.symbolic, "notes_unread": self.notes_unread,
                "repaired": self.repaired, "error": self.error,
                **({} if self.clip_labels is None else {"clip_answers": [
                    {"start_s": round(start, 3), "soundfont": soundfont, "labels": named(labels)}
                    for start, soundfont, labels in self.clip_labels]})}


@dataclass
class Prepared:
    """A file made ready for the model (:meth:`FileReader.prepare`), or why it cannot be used."""

    prediction: Prediction  # its path, what render repaired, why its notes were not read, or its error
    features: np.ndarray | None = None  # float32 [clips, bands, frames], as featurize computes them
    notes: np.ndarray | None = None  # float32 [clips, D]: its clips' symbolic features; None without notes
    piece: np.ndarray | None = None  # float64 [PIECE_DIM]: its whole piece's statistics (features.symbolic_piece)
    offsets: np.ndarray | None = None  # float64 [clips]: where each clip starts in its render, seconds
    renders: np.ndarray | None = None  # a MIDI file's: int [clips], the SoundFont each clip was rendered with


class FileReader:
    """Renders, clips and featurizes files with a checkpoint's params, as the stages did with its data.

    It holds no model, so worker processes can each have one (see :func:`prepare_all`).
    """

    def __init__(self, render, clip, features, symbolic: bool):
        self.render_params = render
        self._renderer: MidiRenderer | None = None  # made for the first MIDI file: audio files need none
        self.render_rate = render.sample_rate
        self.clip = clip
        self.features = features
        self.uses_symbolic = symbolic  # the model reads MIDI files' notes too
        self.machine = "this machine"  # where files are rendered, as a message names it (a cluster's worker)

    def reader_args(self) -> tuple:
        """(a class, its arguments) that make another reader of the same files (in a worker process)."""
        return type(self), (self.render_params, self.clip, self.features, self.uses_symbolic)

    def midi_renderer(self) -> MidiRenderer:
        """The renderer of MIDI files, with the checkpoint's SoundFonts; :class:`RenderError` ``no_soundfont``
        or ``no_fluidsynth`` when this machine cannot render as the model's data was rendered."""
        if self._renderer is None:
            missing = [path for path in self.render_params.soundfonts if not Path(path).is_file()]
            if missing:
                raise RenderError("no_soundfont", (
                    f"the model renders MIDI with the SoundFont {missing[0]}, which is not on {self.machine} "
                    "(it is part of the model's params, so params.yaml does not change it): install it at that "
                    "path (for /usr/share/sounds/sf2/FluidR3_GM.sf2: apt-get install --no-install-recommends "
                    "fluid-soundfont-gm) or retrain with one you have; audio files need none"))
            try:
                self._renderer = MidiRenderer(self.render_params)
            except SoundFontUnreadable as error:
                raise RenderError("no_soundfont", (
                    f"FluidSynth cannot load the model's SoundFont {error.path} (not a .sf2/.sf3 file it can "
                    "read): put the one the model was made with at that path; audio files need none")) from None
            except FluidSynthUnavailable as error:
                raise RenderError("no_fluidsynth", f"{error}; audio files need none") from None
        return self._renderer

    def clips_and_offsets(self, path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(clips float32 [k, clip_samples], their starts in their render, float64 [k] seconds, what render
        repaired to use the file: [] for a whole one)."""
        clips, offsets, repairs, _, _ = self.clips_offsets_silent(path)
        return clips, offsets, repairs

    def clips_offsets_silent(self, path: Path, suffix: str | None = None, data: bytes | None = None,
                             ) -> tuple[np.ndarray, np.ndarray, list[str], int, np.ndarray | None]:
        """:meth:`clips_and_offsets`, how many clips were skipped as silence and the render each clip is cut
        from (a MIDI file's: int [k], the SoundFont's place in ``render.soundfonts``; None for an audio file);
        ``suffix``: the kind of file it is read as (default: its own extension's); ``data``: its bytes, when
        they are not the file's own (a score written as MIDI)."""
        suffix = (suffix or path.suffix).lower()
        renderer = self.midi_renderer() if suffix in MIDI_EXTENSIONS else None
        renders, repairs, _ = load_source(renderer, path, self.render_params, data=data, suffix=suffix)
        clips, offsets, silent = [], [], 0
        for audio in renders:
            # What the training clips were cut from: render's 16-bit WAV, read back by clip. The rounding is
            # small, but in bands where a file has nothing a log-mel spectrogram sees it as 10 dB and more.
            wav = wav_bytes(to_channels(audio, self.render_params.channels), self.render_rate)
            mono = load_mono(wav, self.clip.sample_rate)
            kept, starts, skipped = cut_clips(mono, self.clip, max_clips=0)
            clips.append(kept)
            offsets.append(starts)
            silent += skipped
        renders_of = None if renderer is None else np.repeat(np.arange(len(clips)), [len(kept) for kept in clips])
        return np.concatenate(clips), np.concatenate(offsets), repairs, silent, renders_of

    def notes_of(self, path: Path, offsets_s: np.ndarray, clip_samples: int) -> np.ndarray | None:
        """The symbolic features float32 [k, D] of a file's clips, as featurize writes them; None for an audio
        file, a MIDI file whose notes cannot be read, or one with no note sounding in any clip (drums only)."""
        return self.read_notes_of(path, offsets_s, clip_samples)[0]

    def read_notes_of(self, path: Path, offsets_s: np.ndarray, clip_samples: int, suffix: str | None = None,
                      data: bytes | None = None) -> tuple[np.ndarray | None, str | None, np.ndarray | None]:
        """(:meth:`notes_of`, None, the whole piece's statistics with features.symbolic_piece, else None), or
        (None, why a MIDI file's notes are not read: featurize's words, None)."""
        if (suffix or path.suffix).lower() not in MIDI_EXTENSIONS:
            return None, None, None
        try:
            notes, piece = read_midi_notes(path if data is None else data, self.features.symbolic_piece)
        except RenderError as error:
            return None, str(error), None
        # Every render of a MIDI file is plain (no transposition, tempo 1): WAV time is MIDI time.
        features = clip_features(notes, offsets_s, clip_samples / self.clip.sample_rate,
                                 relative=self.features.symbolic_key == "relative",
                                 texture=self.features.symbolic_texture, roll=self.features.symbolic_roll,
                                 onsets=self.features.symbolic_onsets)
        if not sounding(features).any():
            return None, "no_notes: no note sounds in its clips", None
        return features, None, piece

    def prepare(self, path: Path) -> Prepared:
        """A file rendered, clipped and featurized; what makes it unusable is its Prediction's ``error``."""
        try:
            return self._prepare(path)
        except MemoryError:
            # A very long file (or a damaged one that claims hours): this file only, not the files after it.
            return Prepared(Prediction(printable(str(path)), error=out_of_memory(self.machine)))

    def _prepare(self, path: Path) -> Prepared:
        prediction = Prediction(printable(str(path)))
        prediction.error = not_a_file_reason(path)
        if prediction.error:
            return Prepared(prediction)
        if path.suffix.lower() in SCORE_EXTENSIONS:  # written as MIDI as download writes a collection's scores
            data, prediction.error = collection_score_to_midi(path, self.render_params.timeout_s,
                                                              limit="render.timeout_s")
            if prediction.error:
                return Prepared(prediction)
            return self._prepared(path, prediction, None, ".mid", data)
        try:
            # download's check: an empty file, or a web page saved as .mid (other extensions: load_source says so)
            mismatch = check_file(path) if path.suffix.lower() in ACCEPTED_EXTENSIONS else None
            fitting = content_extension(path) if mismatch else None  # an MP3 named .wav is read as one
        except OSError as error:
            prediction.error = unreadable_reason(error)
            return Prepared(prediction)
        if mismatch and not fitting:
            prediction.error = f"content_mismatch: {mismatch}"
            return Prepared(prediction)
        return self._prepared(path, prediction, mismatch, fitting)

    def _prepared(self, path: Path, prediction: Prediction, mismatch: str | None, fitting: str | None,
                  data: bytes | None = None) -> Prepared:
        """:meth:`_prepare` once the file is known to be read as ``fitting`` (its own kind: None), from ``data``
        (its bytes when they are not the file's own: a score written as MIDI)."""
        try:
            clips, offsets, repaired, silent, renders = self.clips_offsets_silent(path, fitting, data)
            prediction.repaired = [f"{mismatch}: read as {fitting}"] + repaired if mismatch else repaired
        except RenderError as error:
            prediction.error = str(error) + (f" ({mismatch}: read as {fitting})" if mismatch else "")
            return Prepared(prediction)
        if len(clips) == 0:  # the clip stage's words for a track it drops
            prediction.error = (f"silent: every {self.clip.clip_seconds:g} s clip is mostly silence" if silent
                                else f"too_short: shorter than one {self.clip.clip_seconds:g} s clip")
            return Prepared(prediction)
        features = compute_features(clips, self.features, self.clip.sample_rate)
        notes, prediction.notes_unread, piece = self.read_notes_of(path, offsets, clips.shape[1], fitting, data) \
            if self.uses_symbolic else (None, None, None)
        prediction.symbolic = notes is not None
        prediction.clips = len(clips)
        return Prepared(prediction, features, notes, piece, offsets, renders)


def not_a_file_reason(path: Path) -> str | None:
    """Why ``path`` is no file to read (missing, a broken link, a FIFO or device, unreadable), or None."""
    try:
        if path.is_file():
            return None
        # A link to nothing (or to itself) exists as a name: say what it is rather than that it is missing; a
        # FIFO or a device is there but is no file to read (it may block for ever).
        special = special_file_reason(os.stat(path).st_mode) if path.exists() else None
        return special or ("broken_link: a link to no file" if path.is_symlink() else "missing: no such file")
    except OSError as error:  # in a folder that can be listed but not entered
        return unreadable_reason(error)


_WORKER_READER: FileReader | None = None  # a worker process's reader (prepare_all)


def _start_reader(kind: type[FileReader], args: tuple) -> None:
    global _WORKER_READER
    _WORKER_READER = kind(*args)


def _prepare_item(reader: FileReader, item: tuple[Path, str | None]) -> Prepared:
    path, reason = item
    if reason:
        return Prepared(Prediction(printable(str(path)), error=reason))
    return reader.prepare(path)


def _prepare_input(item: tuple[Path, str | None]) -> Prepared:
    return _prepare_item(_WORKER_READER, item)


def _crashed(item: tuple[Path, str | None]) -> Prepared:
    return Prepared(Prediction(printable(str(item[0])), error=WORKER_CRASH))


def prepare_all(reader: FileReader, inputs: list[tuple[Path, str | None]], jobs: int = 1,
                scheduler: str | None = None):
    """:meth:`FileReader.prepare` of each (path, None) of :func:`collect_inputs`, in order ((path, reason): that
    error), by ``jobs`` worker processes (0: $MUSICID_JOBS, else one per core), or in this one with ``jobs`` 1 or
    a single file. At most two files a worker are in hand at once; a file that crashes its worker (FluidSynth
    can) is that file's ``worker_crash``, the others go on.

    With ``scheduler`` (a Dask scheduler's address) the files are prepared on that cluster's workers instead,
    however many: each is sent with its bytes (workers need no shared file system, only this machine's
    SoundFonts at the same paths, as the render stage's), and its features come back here."""
    if scheduler:
        yield from ordered_map(_prepare_sent, _with_bytes(inputs), 0, initializer=_start_reader,
                               initargs=reader.reader_args(), scheduler=scheduler, on_crash=_crashed)
        return
    if jobs == 1 or len(inputs) <= 1:
        for item in inputs:
            yield _prepare_item(reader, item)
        return
    yield from ordered_map(_prepare_input, inputs, jobs, initializer=_start_reader,
                           initargs=reader.reader_args(), on_crash=_crashed)


def _with_bytes(inputs: list[tuple[Path, str | None]]):
    """(path, reason, its bytes) of each input, read as the cluster takes them (None with a reason)."""
    for path, reason in inputs:
        reason = reason or not_a_file_reason(path)
        data = None
        if not reason:
            try:
                data = path.read_bytes()
            except OSError as error:
                reason = unreadable_reason(error)
            except MemoryError:
                reason = OUT_OF_MEMORY
        yield path, reason, data


def _prepare_sent(item: tuple[Path, str | None, bytes | None]) -> Prepared:
    """On a cluster's worker: the file's bytes written under its own name in a folder of the worker's own
    directory (which the worker's nanny removes should the worker die on the file), and prepared there as the
    file itself would be (a file's reasons and repairs never name its path)."""
    path, reason, data = item
    if reason or data is None:
        return _prepare_item(_WORKER_READER, (path, reason))
    from distributed import get_worker

    worker = get_worker()
    _WORKER_READER.machine = f"the Dask worker {worker.address}"
    folder = None
    try:
        folder = Path(tempfile.mkdtemp(prefix="musicid-predict-", dir=worker.local_directory))
        local = folder / path.name
        local.write_bytes(data)
    except OSError as error:  # the worker's disk full, or its directory gone
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        return Prepared(Prediction(printable(str(path)), error=f"worker_error: the Dask worker {worker.address} "
                                   f"could not hold a copy of the file ({error.strerror or error})"))
    try:
        prepared = _WORKER_READER.prepare(local)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    prepared.prediction.path = printable(str(path))
    return prepared

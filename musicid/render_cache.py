"""A per-source cache of the render stage's results, so that adding a file renders only that file.

DVC hashes ``data/raw`` as a whole: when one file is added the render stage
runs again, and DVC removes ``data/audio`` before it does.  This cache sits
below the stage: one entry per source, holding exactly what rendering that
source gave (:class:`musicid.render.Rendered`: its report record and the
bytes of its WAVs), so the stage's output after an incremental run is byte
for byte the output of a run from scratch.  DVC's own cache works above it:
it restores a stage's whole output when nothing the stage depends on changed
(``dvc checkout``, switching experiments); this one serves the sources that
did not change when something else did.

Key.  The sha256 of everything a render depends on: the source's bytes; its
path, label and output names (they are in the record, and augmentation draws
depend on the path); every ``render`` param; the content of each SoundFont
the params name; the FluidSynth library's version; the statements of
:mod:`musicid.render` and every ``musicid`` module it imports, directly or
not (their syntax trees: a comment or docstring edited changes no key); and
the version of every other package that code imports (numpy, soundfile and
libsndfile, soxr, mido...).  Anything else that changes changes
the key, so a stale entry is never found; it is only ever evicted.

Place and size.  ``$MUSICID_RENDER_CACHE``, else ``render/`` in the user's
cache folder (:func:`musicid.fetch.default_cache_dir`: ``$MUSICID_CACHE`` or
e.g. ``~/.cache/musicid``), never inside the project.  After each run the
least recently used entries are removed until the cache holds at most
``$MUSICID_RENDER_CACHE_GB`` GB (default 20); the entries of the run itself
are kept whatever their size.  ``python -m musicid cache info`` shows it,
``python -m musicid cache clear`` empties it, and ``MUSICID_NO_CACHE=1``
makes the stage neither read nor write it.

Entries.  ``<key[:2]>/<key>.entry``: one JSON line (the record, each WAV's
name and size, the sha256 of the WAV bytes) and the WAV bytes after it.
Written under a temporary name and renamed, so a killed run never leaves a
half entry under a real name; an entry whose bytes do not match its digest
(a damaged disk) is removed and counted as a miss.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import re
import socket
import sys
import tempfile
from pathlib import Path

from musicid.cache_files import (DISABLE_ENV, PACKAGE, SUFFIX, code_modules, enabled, entries,  # noqa: F401
                                 prune, remove_file)
from musicid.cluster import statements
from musicid.io import sha256_file
from musicid.params import RenderParams, as_dict
from musicid.stage import StageError

DIR_ENV = "MUSICID_RENDER_CACHE"
SIZE_ENV = "MUSICID_RENDER_CACHE_GB"
DEFAULT_GB = 20.0


def cache_dir() -> Path:
    """``$MUSICID_RENDER_CACHE``, else ``render/`` in :func:`musicid.fetch.default_cache_dir`; ValueError naming
    the variable when it is relative (:func:`musicid.fetch.folder_from_env`)."""
    from musicid.fetch import default_cache_dir, folder_from_env

    folder = folder_from_env(DIR_ENV)
    if folder is not None:
        return folder

    return default_cache_dir() / "render"


def size_limit() -> int:
    """The cache's bound in bytes, from ``$MUSICID_RENDER_CACHE_GB``; ValueError naming it when unusable."""
    text = os.environ.get(SIZE_ENV, "")
    try:
        gigabytes = float(text) if text else DEFAULT_GB
    except ValueError:
        raise ValueError(f"{SIZE_ENV} must be a number of gigabytes, got {text!r}") from None
    if not gigabytes >= 0:
        raise ValueError(f"{SIZE_ENV} must be >= 0, got {text!r}")
    if math.isinf(gigabytes):  # inf: no bound
        return sys.maxsize
    return int(gigabytes * 1e9)


def library_versions(package: Path = PACKAGE) -> dict[str, str]:
    """The installed version of every third-party package the render code imports, and libsndfile's.

    Read, like :func:`code_modules`, from the import statements: numpy,
    soundfile, soxr, mido... whatever the code uses, so that an upgrade that
    changes a single sample also changes the key.
    """
    import importlib.metadata
    import sys

    names: set[str] = set()
    for path in code_modules(package=package):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    names -= {"musicid", "__future__"} | set(sys.stdlib_module_names)
    distributions = importlib.metadata.packages_distributions()
    versions = {}
    for name in sorted(names):
        for distribution in distributions.get(name, [name]):
            try:
                versions[distribution] = importlib.metadata.version(distribution)
            except importlib.metadata.PackageNotFoundError:
                versions[distribution] = "not installed"
    if "soundfile" in names:
        import soundfile

        versions["libsndfile"] = soundfile.__libsndfile_version__
    return versions


def code_version(package: Path = PACKAGE) -> str:
    """The digest of the code a render runs: each module's syntax tree, without comments or docstrings.

    An edit that changes no statement (a comment, a docstring, the layout) leaves the cached renders valid.
    """
    digest = hashlib.sha256()
    for path in code_modules(package=package):
        digest.update(path.name.encode() + b"\0" + statements(path.read_text(encoding="utf-8")).encode() + b"\0")
    return digest.hexdigest()


def fluidsynth_version() -> str:
    from musicid.synth import _load_fluidsynth

    library = _load_fluidsynth()._fl
    function = library.fluid_version_str
    function.restype = __import__("ctypes").c_char_p
    return function().decode()


def _sha256_or_missing(path: str) -> str:
    try:
        return sha256_file(path)
    except OSError as error:
        return f"missing ({type(error).__name__})"


def machine_resources(render: RenderParams) -> dict:
    """What a render depends on that a machine holds outside the Python packages: SoundFonts, FluidSynth.

    The SoundFonts the params name, by content (sha256; ``missing`` when
    unreadable), and the FluidSynth library's version.  A Dask worker compares
    its own with the stage machine's (:func:`init_checked_worker`); the Python
    packages and the musicid code are compared for every stage by
    :func:`musicid.cluster.environment_fingerprint`.
    """
    soundfonts = sorted(set(render.soundfonts) | (set(render.augment.soundfonts) if render.augment.copies else set()))
    return {"soundfonts": {path: _sha256_or_missing(path) for path in soundfonts}, "fluidsynth": fluidsynth_version()}


NO_SYNTHESIS = {"soundfonts": {}, "fluidsynth": None}  # the machine_resources of a run of recordings alone


def render_environment(render: RenderParams, midi: bool = True) -> dict:
    """What a render depends on besides its source: params, SoundFont contents, FluidSynth, libraries, code;
    with ``midi`` False (a collection of recordings alone) neither SoundFonts nor FluidSynth, which such a run
    does not load (a machine without them renders it)."""
    return {"params": as_dict(render), **(machine_resources(render) if midi else NO_SYNTHESIS),
            "libraries": library_versions(), "code": code_version()}


def render_context(render: RenderParams, environment: dict | None = None) -> str:
    """The part of every key shared by a run: the digest of :func:`render_environment`."""
    environment = render_environment(render) if environment is None else environment
    return hashlib.sha256(json.dumps(environment, sort_keys=True).encode()).hexdigest()


def environment_differences(expected: dict, found: dict) -> list[str]:
    """Each way ``found`` (a worker's :func:`machine_resources`) differs from ``expected`` (the stage
    machine's), as a phrase, e.g. ``"SoundFont /a.sf2 (sha256 12ab... here, 34cd... on the stage's machine)"``."""
    differences = []
    for path in sorted(set(expected["soundfonts"]) | set(found["soundfonts"])):
        mine, theirs = expected["soundfonts"].get(path), found["soundfonts"].get(path)
        if mine != theirs:
            differences.append(f"SoundFont {path} ({_short_sha(theirs)} here, {_short_sha(mine)} on the stage's "
                               "machine)")
    if expected["fluidsynth"] != found["fluidsynth"]:
        differences.append(f"FluidSynth {found['fluidsynth']} (the stage's machine has {expected['fluidsynth']})")
    return differences


def _short_sha(value: str | None) -> str:
    """``sha256 12ab34cd56ef...`` of a SoundFont's hash; what :func:`_sha256_or_missing` said of a missing one,
    whole."""
    if value is None:
        return "not named"
    return f"sha256 {value[:12]}..." if re.fullmatch(r"[0-9a-f]{64}", value) else value


class WorkerEnvironmentError(StageError):
    """A cluster worker would render other audio than the stage's machine (another SoundFont, FluidSynth...)."""


def init_checked_worker(render: RenderParams, expected_environment: dict) -> None:
    """:func:`musicid.render.init_worker` for a Dask worker, after checking it renders as the stage's machine would.

    ``expected_environment`` is :func:`render_environment` on the stage's
    machine.  A worker with other SoundFonts under the same paths or another
    FluidSynth would render other audio (and put it in the cache under this
    machine's key): it stops the stage, naming what differs.  (Other libraries
    or code are refused before, by :func:`musicid.cluster.run_on_worker`.)
    """
    from musicid.render import init_worker

    from musicid.synth import FluidSynthUnavailable

    midi = expected_environment.get("fluidsynth") is not None
    if not midi:  # recordings alone: FluidSynth and the SoundFonts play no part
        init_worker(render, midi=False)
        return
    try:
        found = machine_resources(render)
    except (FluidSynthUnavailable, OSError) as error:  # no library, or a damaged one, on the worker
        raise WorkerEnvironmentError(f"the Dask worker on {socket.gethostname()} cannot load FluidSynth, which "
                                     f"this machine renders with: {error}") from None
    differences = environment_differences(expected_environment, found)
    if differences:
        raise WorkerEnvironmentError(f"the Dask worker on {socket.gethostname()} would render other audio than "
                                     f"this machine; it has {'; '.join(differences)}")
    init_worker(render)


class RenderCache:
    """The entries under ``root`` for one run's ``context`` (:func:`render_context`)."""

    def __init__(self, root: Path, context: str):
        self.root = Path(root)
        self.context = context
        self.used: set[str] = set()
        self.failed_writes = 0
        self.write_error = ""

    def key(self, source: str, label: str, output_names, augmented_names, data: bytes) -> str:
        identity = json.dumps([self.context, source, label, list(output_names), list(augmented_names),
                               hashlib.sha256(data).hexdigest()])
        return hashlib.sha256(identity.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}{SUFFIX}"

    def get(self, key: str):
        """The :class:`musicid.render.Rendered` stored under ``key``, or None (absent or damaged: removed)."""
        from musicid.render import Rendered

        path = self.path(key)
        try:
            blob = path.read_bytes()
        except OSError:  # gone (another run pruned it) or unreadable: a miss
            return None
        try:
            line_end = blob.index(b"\n")
            header = json.loads(blob[:line_end])
            payload = blob[line_end + 1:]
            if len(payload) != sum(header["sizes"]) or hashlib.sha256(payload).hexdigest() != header["sha256"]:
                raise ValueError("the WAV bytes do not match the entry's digest")
        except (ValueError, KeyError, TypeError):
            remove_file(path)
            return None
        wavs, position = [], 0
        for name, size in zip(header["names"], header["sizes"]):
            wavs.append((name, payload[position:position + size]))
            position += size
        try:
            os.utime(path)  # recently used: the last to be evicted
        except OSError:
            pass  # pruned by another run meanwhile: the bytes are read already
        self.used.add(key)
        return Rendered(header["record"], tuple(wavs))

    def put(self, key: str, rendered) -> None:
        """Store ``rendered`` under ``key``; a failure (disk full, no permission) is counted, not raised.

        The cache only saves time: a run whose cache cannot be written still
        writes its output, and its summary line says how many entries were lost.
        """
        try:
            self._put(key, rendered)
        except OSError as error:
            self.failed_writes += 1
            self.write_error = f"{type(error).__name__}: {error}"[:200]

    def _put(self, key: str, rendered) -> None:
        payload = b"".join(data for _, data in rendered.wavs)
        header = {"record": rendered.record, "names": [name for name, _ in rendered.wavs],
                  "sizes": [len(data) for _, data in rendered.wavs], "sha256": hashlib.sha256(payload).hexdigest()}
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(json.dumps(header, sort_keys=True).encode() + b"\n")
                out.write(payload)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        self.used.add(key)

    def prune(self, limit: int) -> int:
        """Remove least recently used entries (never this run's) until at most ``limit`` bytes; how many went."""
        return prune(self.root, limit, keep=self.used)


def open_cache(render: RenderParams, environment: dict | None = None) -> RenderCache | None:
    """This run's cache, or None with ``MUSICID_NO_CACHE=1``."""
    if not enabled():
        return None
    return RenderCache(cache_dir(), render_context(render, environment))

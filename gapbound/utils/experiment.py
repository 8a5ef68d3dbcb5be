"""One experiment-directory protocol for every simulation: config check, lock, parts, resume, overwrite.

An output directory ``OUT`` holds one experiment run::

    OUT/experiment.json      manifest: experiment name, config, its fingerprint, status
    OUT/.lock                exclusive fcntl lock held while a process writes OUT
    OUT/parts/<key>.json     one finished unit of work (a seed, a grid cell, ...), written atomically
    OUT/checkpoints/         training checkpoints of unfinished units
    OUT/<result>.json        summaries, always rebuilt from *all* parts on disk
    OUT/figures/             figures (unless another folder is asked for)

Rules (the same for every ``python -m simulations.<name>``):

- ``OUT`` missing or empty: a new run starts.
- ``OUT`` holds a run of the same experiment with the same configuration
  (fingerprint of every setting that changes a result): refused unless
  ``--resume`` (continue: finished parts are kept, checkpoints resumed; more
  seeds or grid cells may be added) or ``--overwrite`` (start afresh).
- ``OUT`` holds a run with a different configuration, or files this protocol
  did not write: refused, naming the differing settings; ``--overwrite``
  discards the old run (only the files the protocol manages are removed).
- A second process writing the same ``OUT`` is refused while the first holds the lock.
- Parts carry the fingerprint; summaries are computed from every part on
  disk under the lock, so no run's results replace another's.

The work list (which seeds, which grid cells) is not part of the
fingerprint: each part is keyed by its own identity.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .io import atomic_write_json, jsonable, read_json

__all__ = ["ExperimentDir", "ExperimentError", "fingerprint", "config_diff", "open_experiment"]

MANIFEST = "experiment.json"
LOCK = ".lock"
PROTOCOL_VERSION = 1


class ExperimentError(ValueError):
    """A refused use of an output directory (a user error: one line, exit status 2 on the command line)."""


def fingerprint(config: Any) -> str:
    """SHA-256 (hex, 16 characters) of ``config``'s canonical JSON (sorted keys, strict floats)."""
    text = json.dumps(jsonable(config), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        flat: dict[str, Any] = {}
        for k, v in obj.items():
            flat.update(_flatten(v, f"{prefix}{k}."))
        return flat
    return {prefix[:-1]: obj}


def config_diff(old: Any, new: Any, limit: int = 4) -> str:
    """``key: old -> new`` for the first ``limit`` settings that differ (dotted keys), for error messages."""
    a, b = _flatten(jsonable(old)), _flatten(jsonable(new))
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k, "<unset>") != b.get(k, "<unset>")]
    shown = ", ".join(f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}" for k in keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class ExperimentDir:
    """An output directory opened under the protocol (see the module docstring); use :func:`open_experiment`.

    Attributes
    ----------
    path : Path
        The directory ``OUT``.
    experiment : str
        Experiment name (``synthetic``, ``scaled``, ...), recorded in the manifest.
    config : dict
        The JSON form of every setting that changes a result.
    resumed : bool
        Whether an earlier run of the same configuration was found and continued.
    """

    path: Path
    experiment: str
    config: dict
    resumed: bool = False
    _lock_fd: int | None = field(default=None, repr=False)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.config)

    @property
    def parts_dir(self) -> Path:
        return self.path / "parts"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def part_path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"part key must be a plain file stem, got {key!r}")
        return self.parts_dir / f"{key}.json"

    def has_part(self, key: str) -> bool:
        """Whether ``key`` finished under this configuration (a part of another fingerprint is refused)."""
        path = self.part_path(key)
        return path.exists() and bool(self._check_part(path, read_json(path)))

    def write_part(self, key: str, part: dict) -> Path:
        """Record one finished unit of work atomically (the fingerprint is stored with it)."""
        return atomic_write_json(self.part_path(key), {**part, "fingerprint": self.fingerprint})

    def read_part(self, key: str) -> dict:
        path = self.part_path(key)
        return self._check_part(path, read_json(path))

    def parts(self) -> dict[str, dict]:
        """Every finished part on disk, by key (sorted), each checked against the configuration."""
        out = {}
        for path in sorted(self.parts_dir.glob("*.json")):
            out[path.stem] = self._check_part(path, read_json(path))
        return out

    def _check_part(self, path: Path, part: Any) -> dict:
        if not isinstance(part, dict) or part.get("fingerprint") != self.fingerprint:
            raise ExperimentError(
                f"{path} was not written by this configuration of {self.experiment}; "
                f"delete it or rerun with --overwrite")
        return part

    def write_result(self, name: str, doc: dict) -> Path:
        """Write a summary ``OUT/<name>`` atomically, with the configuration and its fingerprint."""
        return atomic_write_json(self.path / name, {**doc, "config": doc.get("config", self.config),
                                                    "fingerprint": self.fingerprint})

    def figures_dir(self, requested: str | os.PathLike | None = None) -> Path:
        """Where figures go: ``requested`` if given, else ``OUT/figures``."""
        return Path(requested) if requested is not None else self.path / "figures"

    def finish(self) -> None:
        """Mark the run finished in the manifest."""
        self._write_manifest("finished")

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "ExperimentDir":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _write_manifest(self, status: str) -> None:
        atomic_write_json(self.path / MANIFEST, {
            "experiment": self.experiment, "protocol": PROTOCOL_VERSION, "status": status,
            "fingerprint": self.fingerprint, "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": self.config})


def _lock(path: Path) -> int:
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EAGAIN, errno.EACCES):
            raise ExperimentError(f"--out {path} is in use by another process; wait for it to finish "
                                  "or choose another --out") from None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _managed(path: Path, outputs: tuple[str, ...]) -> Iterator[Path]:
    """The files and folders of ``path`` that the protocol writes (what ``--overwrite`` removes)."""
    for name in (MANIFEST, "parts", "checkpoints", "figures"):
        if (path / name).exists():
            yield path / name
    for pattern in outputs:
        yield from path.glob(pattern)


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files of writes killed before they finished (only safe under the lock)."""
    for sub in (path, path / "parts", path / "checkpoints", path / "figures"):
        for tmp in sub.glob(".*.tmp") if sub.is_dir() else ():
            tmp.unlink(missing_ok=True)


def open_experiment(
    out: str | os.PathLike,
    experiment: str,
    config: Any,
    *,
    resume: bool = False,
    overwrite: bool = False,
    outputs: tuple[str, ...] = (),
) -> ExperimentDir:
    """Open ``out`` for ``experiment`` under the protocol, holding its lock until :meth:`ExperimentDir.close`.

    Parameters
    ----------
    out : path
        The output directory (created if missing; an existing file is refused).
    experiment : str
        Experiment name recorded in the manifest.
    config : dict or dataclass-derived dict
        Every setting that changes a result (not the work list, devices or display options).
    resume : bool
        Continue an earlier run of the same configuration.
    overwrite : bool
        Discard an earlier run (only the manifest, ``parts/``, ``checkpoints/``,
        ``figures/`` and files matching ``outputs``).
    outputs : tuple of str
        Glob patterns of the summary files this experiment writes in ``OUT``.

    Raises
    ------
    ExperimentError
        One line naming the problem and the fix (``--resume``, ``--overwrite``, another ``--out``).
    """
    if resume and overwrite:
        raise ExperimentError("--resume and --overwrite exclude each other; pick one")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ExperimentError(f"--out {path} is an existing file; give a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ExperimentError(f"--out {path} cannot be created ({err.strerror}); choose another --out") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ExperimentError(f"--out {path} is not writable; choose another --out")
    config = jsonable(config)
    exp = ExperimentDir(path, experiment, config, _lock_fd=_lock(path))
    try:
        _adopt(exp, resume, overwrite, outputs)
    except BaseException:
        exp.close()
        raise
    return exp


def _adopt(exp: ExperimentDir, resume: bool, overwrite: bool, outputs: tuple[str, ...]) -> None:
    """Decide between new run, resume and overwrite (under the lock); refuse everything else."""
    path = exp.path
    manifest_path = path / MANIFEST
    if overwrite:
        for p in list(_managed(path, outputs)):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    elif manifest_path.exists():
        try:
            manifest = read_json(manifest_path)
            old_name, old_config, status = manifest["experiment"], manifest["config"], manifest.get("status", "running")
        except (ValueError, KeyError, TypeError):
            raise ExperimentError(f"{manifest_path} is damaged; rerun with --overwrite to start afresh") from None
        if old_name != exp.experiment:
            raise ExperimentError(f"--out {path} holds a {old_name!r} run, not {exp.experiment!r}; "
                                  "choose another --out (or --overwrite to discard it)")
        if fingerprint(old_config) != exp.fingerprint:
            raise ExperimentError(f"--out {path} holds a run with a different configuration "
                                  f"({config_diff(old_config, exp.config)}); choose another --out, "
                                  "or --overwrite to discard it")
        if not resume:
            raise ExperimentError(f"--out {path} already holds a {status} run with this configuration; "
                                  "add --resume to continue it or --overwrite to start afresh")
        exp.resumed = True
    elif any(_managed(path, outputs)):
        raise ExperimentError(f"--out {path} holds results this version did not write (no {MANIFEST}); "
                              "choose another --out, or --overwrite to discard them")
    _remove_stale_temporaries(path)
    exp._write_manifest("running")
    _fsync_dir(path)

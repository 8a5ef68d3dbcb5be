"""Crash-safe result files: atomic writes and the JSON result schema's helpers.

A result or checkpoint is written to a temporary file in the target folder
and moved into place with ``os.replace``, so a crash (even SIGKILL) leaves
either the old file or the new one, never a half-written one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["atomic_write", "atomic_write_json", "atomic_save", "load_checkpoint", "read_json", "jsonable"]


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, flush it to disk, then atomically move it onto ``path``.

    The temporary file sits next to ``path`` (``.<name>.<random>.tmp``) and is
    removed if ``write`` fails or is interrupted; the folder is synced after the
    rename so the new name survives a power cut too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def jsonable(obj: Any) -> Any:
    """Convert tensors, numpy values, tuples and non-finite floats into strict-JSON values (NaN/inf -> None)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.detach().cpu().tolist())
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented strict JSON to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(jsonable(obj), f, indent=2, allow_nan=False)
            f.write("\n")

    return atomic_write(path, write)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (checkpoints)."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint written by :func:`atomic_save`, with a one-line error naming the file when it is damaged."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError... for damaged files
        raise ValueError(f"checkpoint {path} is damaged or not a checkpoint ({type(err).__name__}); "
                         "delete it or rerun with --overwrite") from err
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} is not a gapbound checkpoint; delete it or rerun with --overwrite")
    return state


def read_json(path: str | os.PathLike) -> Any:
    """Load a JSON file, with a one-line error when it is missing, a folder, unreadable or not JSON."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a JSON file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete or regenerate it") from None

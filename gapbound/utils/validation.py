"""Input checks shared by every public entry point.

Bad input must fail early with a ``ValueError``/``TypeError`` that names the
argument and what was expected, never deep inside torch or with a silently
wrong number.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "check_int",
    "check_float",
    "check_sparsity",
    "as_tensor",
    "check_matrix",
    "check_dictionary",
    "check_data",
    "resolve_device",
    "available_memory",
    "check_memory",
]


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an ``int`` after checking its type and range.

    Parameters
    ----------
    name : str
        Argument name used in the error message.
    value : Any
        The value to check; bools are rejected.
    minimum, maximum : int, optional
        Inclusive bounds.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} ({value!r})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
) -> float:
    """Return ``value`` as a finite ``float`` after checking its range.

    Parameters
    ----------
    name : str
        Argument name used in the error message.
    value : Any
        A real number (not bool).
    minimum, maximum : float, optional
        Bounds (inclusive unless ``strict_minimum``).
    strict_minimum : bool
        Require ``value > minimum`` instead of ``>=``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r})")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None:
        if strict_minimum and value <= minimum:
            raise ValueError(f"{name} must be > {minimum}, got {value}")
        if not strict_minimum and value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_sparsity(N: int, M: int, K: int) -> tuple[int, int, int]:
    """Validate the generative-model sizes: ``N >= 1`` sources, ``M >= 1`` measurements, ``1 <= K <= N``."""
    N = check_int("N", N, minimum=1)
    M = check_int("M", M, minimum=1)
    K = check_int("K", K, minimum=1)
    if K > N:
        raise ValueError(f"K (active sources per sample) must be <= N={N}, got K={K}")
    return N, M, K


def as_tensor(name: str, value: Any, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Convert a numpy array / tensor / nested list to a real floating tensor.

    Complex input is refused (``TypeError``: taking the real part silently
    would be a wrong number). Integer and boolean input is cast explicitly to
    the default float dtype, and half precision (``float16``, ``bfloat16``) to
    ``float32``: certificates and sums in half precision are not trustworthy.
    Non-numeric input raises ``TypeError`` rather than failing later inside torch.
    """
    if isinstance(value, torch.Tensor):
        t = value
    elif isinstance(value, (np.ndarray, list, tuple)):
        try:
            arr = np.asarray(value)
        except ValueError as err:  # ragged nested lists
            raise TypeError(f"{name} must be a rectangular numeric array ({err})") from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
        if np.issubdtype(arr.dtype, np.complexfloating):
            raise TypeError(f"{name} must be real, got a complex array ({arr.dtype}); pass its real part explicitly")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(value).__name__}")
    if t.is_complex():
        raise TypeError(f"{name} must be real, got a complex tensor ({t.dtype}); pass its real part explicitly")
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.to(torch.float32)
    elif not torch.is_floating_point(t):
        t = t.to(torch.get_default_dtype())
    if dtype is not None or device is not None:
        t = t.to(dtype=dtype or t.dtype, device=device or t.device)
    return t


def check_matrix(name: str, value: Any, rows: int | None = None, cols: int | None = None, **kw: Any) -> torch.Tensor:
    """Return a finite 2-D floating tensor, checking the shape where given."""
    t = as_tensor(name, value, **kw)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {tuple(t.shape)}")
    if rows is not None and t.shape[0] != rows:
        raise ValueError(f"{name} must have {rows} rows, got shape {tuple(t.shape)}")
    if cols is not None and t.shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def check_dictionary(D: Any, name: str = "D", **kw: Any) -> torch.Tensor:
    """Return a finite ``M x N`` dictionary tensor (``M, N >= 1``) with no zero columns."""
    t = check_matrix(name, D, **kw)
    if 0 in t.shape:
        raise ValueError(f"{name} must have at least one row and one column (atom), got shape {tuple(t.shape)}")
    norms = t.norm(dim=0)
    zero = torch.nonzero(norms <= 1e-12).flatten().tolist()
    if zero:
        raise ValueError(f"{name} has zero columns at indices {zero[:10]}{'...' if len(zero) > 10 else ''}")
    return t


def check_data(X: Any, D: torch.Tensor, name: str = "X", **kw: Any) -> torch.Tensor:
    """Return an ``n x M`` data tensor whose width matches dictionary ``D`` (``M x N``)."""
    t = check_matrix(name, X, **kw)
    if t.shape[1] != D.shape[0]:
        raise ValueError(
            f"{name} must have shape (n, M) with M={D.shape[0]} matching the dictionary's rows, got {tuple(t.shape)}"
        )
    return t


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Map ``'auto'``/``None`` to CUDA when available, else CPU; validate anything else."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    return dev


def available_memory() -> int:
    """Bytes this process can still allocate: ``MemAvailable`` capped by the cgroup limit (Linux), else free pages."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(0, avail)


def check_memory(nbytes: float, what: str, fix: str) -> None:
    """Refuse up front a run whose estimated memory ``nbytes`` exceeds what is available.

    Parameters
    ----------
    nbytes : float
        Estimated peak bytes.
    what : str
        What needs it (e.g. ``"the training set (--n-train x --N)"``).
    fix : str
        What to change (e.g. ``"reduce --n-train"``).
    """
    avail = available_memory()
    if nbytes > avail:
        raise MemoryError(f"{what} needs about {nbytes / 2**30:.1f} GiB but only {avail / 2**30:.1f} GiB "
                          f"is available; {fix}")

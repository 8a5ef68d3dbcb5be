"""Witness sets: the finite code sets the bound is certified on, their encoder inputs, and an encoder's error on them.

``witness_codes`` builds the codes, ``witness_inputs`` the float64 inputs
``x_t = D s_t`` (the exact numbers every bound is certified for) and
``witness_error`` evaluates an encoder on them. ``as_dictionary64`` and
``check_codes`` are the input checks every theory module shares.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from ..utils.validation import available_memory, check_dictionary, check_int, check_sparsity


def as_dictionary64(D: Any, name: str = "D") -> np.ndarray:
    """``D`` as a float64 numpy array after the shared checks (finite, 2-D, no zero column, real floating point).

    Integer and complex arrays are refused: a complex ``D`` would silently lose
    its imaginary part, and an integer one is almost always a mistake (cast it
    with ``D.astype(float)`` when it is meant).
    """
    dtype = D.dtype if isinstance(D, (np.ndarray, torch.Tensor)) else None
    if dtype is not None:
        kind = "complex" if (dtype.is_complex if isinstance(dtype, torch.dtype) else np.iscomplexobj(D)) else (
            None if (dtype.is_floating_point if isinstance(dtype, torch.dtype) else np.issubdtype(dtype, np.floating))
            else "integer/bool")
        if kind is not None:
            raise TypeError(f"{name} must be a real floating-point array, got {kind} dtype {dtype}; "
                            f"pass a float array (e.g. {name}.astype(float))")
    return check_dictionary(D, name).detach().cpu().to(torch.float64).numpy()


def check_codes(codes: Any, N: int) -> np.ndarray:
    """Codes as an ``n x N`` float64 array, finite and non-negative."""
    arr = np.asarray(codes.detach().cpu() if isinstance(codes, torch.Tensor) else codes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != N:
        raise ValueError(f"codes must have shape (n, N={N}), got {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError("codes must be finite and non-negative")
    return arr


def _partners(N: int, max_partners: int | None) -> list[list[int]]:
    """For each source, the sources it must co-occur with (all others, or a cyclic band)."""
    if max_partners is None or max_partners >= N - 1:
        return [[j for j in range(N) if j != i] for i in range(N)]
    half = max(1, max_partners // 2)
    return [sorted({(i + d) % N for d in range(-half, half + 1)} - {i}) for i in range(N)]


def _cover_supports(N: int, K: int, max_partners: int | None) -> list[tuple[int, ...]]:
    """Greedy K-subsets covering every required pair {i, j} at least once (deterministic)."""
    need = {(min(i, j), max(i, j)) for i, ps in enumerate(_partners(N, max_partners)) for j in ps}
    supports = []
    while need:
        i, j = min(need)
        S = [i, j]
        while len(S) < K:
            # add the source covering most still-needed pairs; ties -> smallest index
            gain = [(-sum((min(c, t), max(c, t)) in need for t in S), c) for c in range(N) if c not in S]
            S.append(min(gain)[1])
        S = tuple(sorted(S))
        supports.append(S)
        need -= {(a, b) for a, b in itertools.combinations(S, 2)}
    return supports


def witness_codes(N: int, K: int, design: str = "pairs", max_partners: int | None = None) -> np.ndarray:
    """Witness code set (rows are codes, entries in {0, 1, 2}).

    Parameters
    ----------
    N : int
        Number of sources.
    K : int
        Sparsity; ``K >= 2`` for the gap to exist (``K = 1`` gives singletons only).
    design : {"pairs", "exact"}
        ``"pairs"``: ``a e_i`` for ``a in {1, 2}`` and ``e_i + e_j`` for every
        required pair (at most 2 <= K non-zeros). ``"exact"``: exactly ``K``
        non-zeros, matching the paper's data: supports from a greedy covering
        of the required pairs by K-sets, each with all-ones amplitudes and each
        of its entries raised to 2 in turn (``K + 1`` codes per support).
    max_partners : int, optional
        Pair each source with only a cyclic band of this many others (keeps the
        witness set and the certificate small for large ``N``); all others when
        omitted.

    Returns
    -------
    numpy.ndarray
        ``n x N`` float64 codes, every active amplitude >= 1.
    """
    N, _, K = check_sparsity(N, 1, K)
    if max_partners is not None:
        check_int("max_partners", max_partners, minimum=1)
    codes: list[np.ndarray] = []
    if design == "pairs":
        for i in range(N):
            for a in (1.0, 2.0):
                s = np.zeros(N)
                s[i] = a
                codes.append(s)
        if K >= 2:
            pairs = {(min(i, j), max(i, j)) for i, ps in enumerate(_partners(N, max_partners)) for j in ps}
            for i, j in sorted(pairs):
                s = np.zeros(N)
                s[[i, j]] = 1.0
                codes.append(s)
    elif design == "exact":
        supports = [(i,) for i in range(N)] if K == 1 else _cover_supports(N, K, max_partners)
        for S in supports:
            s = np.zeros(N)
            s[list(S)] = 1.0
            codes.append(s)
            for t in S:
                s2 = s.copy()
                s2[t] = 2.0
                codes.append(s2)
    else:
        raise ValueError(f"design must be 'pairs' or 'exact', got {design!r}")
    return np.array(codes)


def _n_pairs(N: int, max_partners: int | None) -> int:
    """Number of required pairs ``{i, j}`` (as built by :func:`_partners`), without building them."""
    if max_partners is None or max_partners >= N - 1:
        return N * (N - 1) // 2
    half = max(1, max_partners // 2)
    return N * min(half, (N - 1) // 2) + (N // 2 if 2 * half >= N - 1 and N % 2 == 0 else 0)


def witness_memory_bytes(N: int, M: int, K: int, design: str = "pairs", max_partners: int | None = None) -> tuple[int, float]:
    """``(n_codes, peak bytes)`` of certifying an ``M x N`` dictionary on its witness set, estimated from the sizes alone.

    ``n_codes`` is exact for ``design="pairs"`` and a lower estimate for ``"exact"`` (a covering
    needs at least ``pairs / C(K, 2)`` supports, ``K + 1`` codes each). The peak counts the
    dense codes twice (list and array, ``n x N`` float64), the pair set (~150 bytes a pair), the
    inputs with their bias column and the per-entry ``p x p`` outer products of the row solver
    (``p = M + 1``), and three float64 copies of ``D``.
    """
    pairs = _n_pairs(N, max_partners) if K >= 2 else 0
    if design == "exact":
        n = N if K == 1 else -(-pairs // (K * (K - 1) // 2)) * (K + 1)
    else:
        n = 2 * N + pairs
    p = M + 1
    return n, 16.0 * n * N + 150.0 * pairs + 8.0 * n * (4 * p + 2 * p * p) + 24.0 * M * N


def check_witness_memory(N: int, M: int, K: int, design: str = "pairs", max_partners: int | None = None,
                         argument: str = "N") -> None:
    """Refuse (``ValueError``, one line naming ``argument``) sizes whose certificate cannot fit in available memory.

    Checked before anything is allocated (:func:`witness_memory_bytes` against
    :func:`gapbound.utils.validation.available_memory`).
    """
    n, need = witness_memory_bytes(N, M, K, design, max_partners)
    avail = available_memory()
    if need > avail:
        raise ValueError(f"{argument}={N} needs about {need / 2**30:.3g} GiB to certify ({n} witness codes x N={N}, "
                         f"M={M}) but only {avail / 2**30:.3g} GiB is available; use a smaller {argument} "
                         "(or a smaller max_partners for the pairs design)")



def witness_inputs(D: Any, codes: Any) -> np.ndarray:
    """Encoder inputs ``X = codes @ D^T`` in float64: the exact numbers the bound is certified for."""
    Dn = as_dictionary64(D)
    return check_codes(codes, Dn.shape[1]) @ Dn.T


def witness_error(encoder: torch.nn.Module, D: Any, codes: Any) -> float:
    """``sum_t ||encoder(x_t) - s_t||^2`` on the witness set, in float64.

    The encoder is evaluated on a float64 copy; the caller's module is left as it was.
    """
    import copy

    X = torch.from_numpy(witness_inputs(D, codes))
    S = torch.from_numpy(np.asarray(codes, dtype=np.float64))
    p = next(encoder.parameters())
    enc = copy.deepcopy(encoder).to(torch.float64)
    with torch.no_grad():
        out = enc(X.to(p.device)).cpu()
    return float(((out - S) ** 2).sum())

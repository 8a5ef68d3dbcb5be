"""The active-set method for the non-negative LASSO: exact solves on working sets, certified.

Each round solves the problem exactly on a working set (Lawson-Hanson steps,
each an exact Cholesky solve): each sample's support plus its atoms most
violating the KKT condition ``d_j . r <= lam``, then certifies the result.
Samples whose certificate is still above ``tol`` go on, adding twice as many
violators as in the previous round while the objective falls (up to
``max_add``), and one atom at a time where it stalled, the rule that makes
Lawson-Hanson finite. A sample with no violating atom left is optimal.
Supports may grow to the rank ``M``: the working set is bounded only by
``M + max_add`` (and ``N``), so coherent dictionaries and small ``lam`` with
wide optima are solved exactly rather than handed to first-order iterations.

Two backends compute the same rounds: ``"numba"`` (:mod:`.compiled`, one sample
at a time on the CPU, with the Gram matrix) and ``"torch"`` (batched over
samples: CUDA, and dictionaries too wide for a Gram matrix). ``"auto"`` picks
numba on the CPU when the Gram matrix is kept.
"""

from __future__ import annotations

import math

import torch

from .compiled import active_set as compiled_active_set
from .problem import Atoms, Problem

__all__ = ["run_active_set", "compact", "lawson_hanson", "widths"]

_RIDGE = 1e-11
_CHUNK_ELEMS = 2**19  # float64 elements per batch of small matrices (4 MiB)


def widths(prob: Problem | Atoms, n_add: int = 4) -> tuple[int, int, int]:
    """(working-set cap, most atoms added per round, atoms added to an empty support).

    Atoms join a few at a time (each Cholesky factorisation costs ``O(width^3)``);
    the cap leaves room for a support as wide as the rank plus one round's
    additions, so no optimum is out of reach.
    """
    base = min(prob.N, max(32, prob.M // 4))
    max_add = max(n_add, base // 2)
    # A cold start's seed stays well inside the rank (a seed as wide as M mostly leaves again).
    return min(prob.N, prob.M + max_add), max_add, max(1, min(16, base // 4, prob.M // 2))


def lawson_hanson(
    Gk: torch.Tensor, q: torch.Tensor, s: torch.Tensor, free: torch.Tensor, rank: int, max_inner: int = 64
) -> torch.Tensor:
    """Minimise ``0.5 s'Gs - q's`` over ``s >= 0`` supported on ``free``, from the feasible ``s`` (batched, ``n x k``).

    The unconstrained minimiser on the free set comes from one Cholesky solve;
    coordinates it makes non-positive are handled as in Lawson-Hanson NNLS:
    step from ``s`` towards it until the first coordinate reaches zero, drop
    that coordinate, solve again (only for the rows that had to step). Every
    step lowers the objective. Coordinates that sit at zero and would turn
    negative leave together (a step of length zero), which is what makes a
    start from zero codes cheap. The result is exact on the coordinates it
    keeps; coordinates it dropped may still violate the KKT conditions, which
    is for the caller (:func:`run_active_set`) to check. Rows whose factorisation
    fails keep ``s``.
    """
    n, k = s.shape
    eye = torch.eye(k, dtype=s.dtype, device=s.device)
    # When a free set outgrows the rank (more atoms than dimensions) a tiny ridge
    # keeps the factorisation defined: the solve then points along the null
    # space of D_F, where only the L1 term changes, and the Lawson-Hanson step
    # follows it until an atom leaves, which is how the LASSO resolves ties.
    # Full-rank free sets are solved without it, so exact solutions stay exact.
    ridge = _RIDGE * Gk.diagonal(dim1=1, dim2=2).amax(1)
    s_out = s.clone()
    act = torch.arange(n, device=s.device)  # rows still stepping; the tensors below hold only them
    for _ in range(max_inner + k):
        A = torch.where(free[:, :, None] & free[:, None, :], Gk, eye)
        if k > rank:  # only then can a free set outgrow the rank
            deficient = free.sum(1) > rank
            if deficient.any():
                A += (ridge * deficient)[:, None, None] * eye
        L, info = torch.linalg.cholesky_ex(A)
        ok = info == 0
        s_new = torch.cholesky_solve((q * free)[..., None], L)[..., 0]
        if not ok.all():  # a failed factorisation leaves garbage: keep s on those rows
            s_new = torch.where(ok[:, None], s_new, s)
        neg = free & (s_new <= 0) & ok[:, None]
        stepping = neg.any(1)
        ratio = torch.where(neg, s / (s - s_new).clamp_min(1e-300), math.inf)
        alpha = ratio.amin(1, keepdim=True).clamp(max=1.0)
        # Leaving: the coordinates the step takes to zero (all at once from zero when alpha = 0).
        free = free & ~(neg & (ratio <= alpha))
        s = torch.where(stepping[:, None], (s + alpha * (s_new - s)).clamp_min(0.0) * free, s_new)
        s_out[act] = s
        if not stepping.any():
            break
        if not stepping.all():
            act, Gk, q, s, free, ridge = act[stepping], Gk[stepping], q[stepping], s[stepping], free[stepping], ridge[stepping]
    return s_out


def compact(prob: Problem, S: torch.Tensor, C: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense codes ``S`` (rows ``rows``) as the compact ``(idx, vals)`` the active set starts from.

    A row whose support is wider than the rank is far from a LASSO solution
    (which has at most M atoms, usually far fewer), and shrinking it one atom
    per Lawson-Hanson step costs a round per atom. So when such rows are most
    of the batch (a poor warm start, e.g. a weak SAE's codes) they restart from
    zero, where ``D^T x`` points at most of the support; a few of them (FISTA
    iterates still settling) keep only their largest codes. Their correlations
    ``C`` are recomputed in place; either way the caller keeps whichever codes
    end better.
    """
    S = S.double()
    limit = min(widths(prob)[0], prob.M)
    nnz = (S > 0).sum(1)
    wide = nnz > limit
    restart = 2 * int(wide.sum()) >= S.shape[0] > 0
    if restart:  # zero codes (their correlations are D^T x); the width is that of the other rows
        S, nnz = S.masked_fill(wide[:, None], 0.0), nnz.masked_fill(wide, 0)
        C[wide] = prob.DtX64[rows[wide]]
    vals, idx = S.topk(max(1, min(int(nnz.amax()) if nnz.numel() else 0, limit)), dim=1)
    if wide.any() and not restart:
        C[wide] = prob.certify_support(idx[wide], vals[wide], rows[wide])[2]
    return idx, vals


def _sub_gram(prob: Problem, idx: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """float64 ``G[idx_i, idx_i]`` for every row ``i`` of ``idx`` (``n x k`` -> ``n x k x k``)."""
    G = prob.G64
    if G is not None:
        n, k = idx.shape
        return G.view(-1).index_select(0, (idx[:, :, None] * G.shape[1] + idx[:, None, :]).view(-1)).view(n, k, k)
    # No Gram matrix (huge N): gather the atoms, in chunks to bound memory.
    out = []
    for a in range(0, idx.shape[0], chunk):
        Dk = prob.D64.T[idx[a : a + chunk]]  # c x k x M
        out.append(Dk @ Dk.transpose(1, 2))
    return torch.cat(out)


def run_active_set(
    prob: Problem, idx: torch.Tensor, vals: torch.Tensor, C: torch.Tensor | None, rows: torch.Tensor, tol: float,
    max_outer: int = 8, n_add: int = 4, chunk_elems: int = _CHUNK_ELEMS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Active-set refinement of compact codes on ``prob.backend``; returns dense float64 ``(codes, objective, gap)``.

    The codes of rows ``rows`` come as positions ``idx`` and float64 values
    ``vals`` (``n x w``, zero-padded, no position twice, see :func:`compact`),
    with their correlations ``C = D^T r`` (``n x N``, float64; overwritten;
    None to compute them here; the numba backend recomputes them itself). The
    first round adds ``n_add`` atoms, or up to 16 from an empty support (a cold
    start), where the correlations ``D^T x`` already point at most of the
    support. The compiled backend, which pays no per-round batch overhead, runs
    four times as many rounds. ``chunk_elems`` bounds the float64 elements of
    one batch of small matrices in the torch backend (memory reuse; it does not
    change the result).
    """
    cap, max_add, n_first = widths(prob, n_add)
    if prob.backend == "numba":
        if prob.gram_pays:
            prob.G64  # noqa: B018  (one BLAS product beats forming the rows piecemeal)
        G, have, DT = prob.atoms.gram_rows()
        return compiled_active_set(G, have, DT, prob.DtX64, prob.xx64, rows, idx, vals, prob.lam, tol, cap, max_add,
                                   4 * max_outer, n_add, n_first)
    return _batched(prob, idx, vals, C, rows, tol, max_outer, n_add, cap, max_add, n_first, chunk_elems)


def _batched(
    prob: Problem, idx: torch.Tensor, vals: torch.Tensor, C: torch.Tensor | None, rows: torch.Tensor, tol: float,
    max_outer: int, n_add: int, cap: int, max_add: int, n_first: int, chunk_elems: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The active set batched over samples in torch (see :func:`run_active_set`).

    Working sets stay compact throughout; only the final codes are written
    densely, so a round touches the ``n x N`` correlations just in the
    certificate and one top-k.
    """
    if C is None:
        C = prob.certify_support(idx, vals, rows)[2]
    lam, n, N = prob.lam, idx.shape[0], prob.N
    S = torch.zeros(n, N, dtype=torch.float64, device=idx.device)
    P = torch.full((n,), math.inf, dtype=torch.float64, device=idx.device)
    gap = torch.full_like(P, math.inf)
    live = torch.arange(n, device=idx.device)  # rows (of the batch) being refined
    adds = torch.where((vals > 0).any(1, keepdim=True), n_add, max(n_add, n_first))
    ar = torch.arange(N, device=idx.device)

    def settle(which: torch.Tensor) -> None:
        """Write the final codes of the rows leaving the refinement (only their working-set entries)."""
        if which.any():
            S[live[which][:, None], idx[which]] = vals[which]

    for outer in range(max_outer):
        if live.numel() == 0:
            break
        # Atoms already in the working set stay in it while coded or violating; the
        # most violating others join it (masked off here, so no atom appears twice).
        support = (vals > 0) | (C.gather(1, idx) > lam)
        vv, vi = C.scatter_(1, idx, -math.inf).topk(min(int(adds.max()), N), dim=1)
        # At most `adds` of them, and no more than the cap leaves room for (the support itself is never cut).
        room = (cap - support.sum(1, keepdim=True)).clamp_min(0)
        take = (ar[: vv.shape[1]] < torch.minimum(adds, room)) & (vv > lam)
        if outer > 0:  # a sample with nothing to add is exact on a KKT-optimal support
            keep = take.any(1) | (support & (vals <= 0)).any(1)
            settle(~keep)
            live, vals, idx, support, vi, take, adds = (t[keep] for t in (live, vals, idx, support, vi, take, adds))
            if live.numel() == 0:
                break
        # New working set: the kept atoms, then the violators taken, moved to the front.
        member = torch.cat([support, take], 1)
        order = (~member).to(torch.uint8).argsort(dim=1, stable=True)[:, : max(1, int(member.sum(1).amax()))]
        free = member.gather(1, order)
        idx = torch.cat([idx, vi], 1).gather(1, order)
        vals = torch.cat([vals, vals.new_zeros(vi.shape)], 1).gather(1, order) * free
        # All rows of the problem, in order, need no row selection (the first round of a cold start).
        sub = None if live.numel() == prob.n else rows[live]
        q = (prob.DtX64.gather(1, idx) if sub is None else prob.DtX64[sub[:, None], idx]) - lam
        # In row chunks of bounded size: large batches of temporaries are mapped and
        # page-faulted afresh at every Lawson-Hanson step (glibc maps big blocks), small
        # ones are reused from the heap while still in cache (~15 % less time at N=1000).
        step = max(1, chunk_elems // idx.shape[1] ** 2)
        vals = torch.cat([
            lawson_hanson(_sub_gram(prob, idx[a : a + step]), q[a : a + step], vals[a : a + step], free[a : a + step], prob.M)
            for a in range(0, idx.shape[0], step)
        ]).clamp_min(0.0)
        Pl, gl, C = prob.certify_support(idx, vals, sub)
        stalled = Pl >= P[live] - 1e-15 * Pl.abs()
        P[live], gap[live] = Pl, gl
        todo = gl > tol
        settle(~todo)
        live, C, stalled, adds, vals, idx = (t[todo] for t in (live, C, stalled, adds, vals, idx))
        # Working sets grow geometrically while the objective falls, by one atom where it stalled.
        # (A cold start's wide first batch is not doubled: it only seeds the support.)
        grown = torch.full_like(adds, n_add) if outer == 0 else (adds * 2).clamp(min=n_add, max=max_add)
        adds = torch.where(stalled[:, None] & (outer > 0), torch.ones_like(grown), grown)
    if live.numel():
        settle(torch.ones(live.numel(), dtype=torch.bool, device=idx.device))
    return S, P, gap

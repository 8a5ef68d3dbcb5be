"""Per-sample sparse inference: the single solver entry point.

Every solver minimises the non-negative LASSO, sample by sample, batched::

    P(s) = 0.5 * ||x - D s||^2 + lam * sum(s),   s >= 0

with the dictionary ``D`` (``M x N``) fixed. Starting from an encoder's codes
this is inference-time optimisation (SAE+ITO, see :func:`warm_start`);
starting from zero it is the sparse-coding encoder.

Certificates
------------
For any ``theta`` with ``D^T theta <= lam`` (component-wise) the dual value
``x.theta - 0.5 ||theta||^2`` is a lower bound on ``min P``. We take ``theta``
as the residual ``x - D s`` scaled into the dual-feasible set, so
``duality_gap = P(s) - dual(theta) >= P(s) - min P`` bounds each sample's
suboptimality. Every solver returns the gap **per sample** (a length-``n``
tensor, absolute, not relative), always evaluated in float64 whatever the
working precision, so it is a certificate for the codes actually returned.

Solvers (``SOLVERS``, reached through :func:`solve`)
----------------------------------------------------
- ``fista``: accelerated projected gradient, step ``1/||D||_2^2``, O'Donoghue &
  Candes gradient restart, stopping on the duality-gap tolerance. Every
  ``check_every`` iterations it certifies the iterate and *polishes* it with a
  batched active-set method (Lawson-Hanson NNLS adapted to the LASSO): exact
  Cholesky solves on each sample's support, growing it by its worst KKT
  violators until the certificate is below ``tol``; the polished codes are kept
  per sample only where they lower the objective. FISTA finds the support
  roughly, the active set finishes exactly, so high accuracy costs tens of
  iterations instead of thousands. Samples whose gap is below ``tol`` are
  frozen and drop out of the batch. On CPU the active set runs compiled, per
  sample (:mod:`gapbound.inference.compiled`), and before any iteration: it usually
  certifies every sample by itself (``n_iter == 0``).
- ``ista``: the paper's plain projected gradient update (no momentum, no polish).
- ``lca``: the locally competitive algorithm (Rozell et al. 2008) with the
  non-negative soft threshold; its fixed points are exactly the non-negative
  LASSO solutions. Uses the factored form ``D^T (x - D a)`` so one iteration
  costs ``4 n M N`` FLOPs instead of the Gram form's ``2 n N^2`` when ``N > 2M``.
- ``adam_exp``: the authors'-style baseline, Adam on ``u`` with ``s = exp(u)``
  (10,000 iterations, lr 3e-3 by default).
- ``sklearn_cd`` / ``sklearn_lars``: scikit-learn's ``sparse_encode`` with
  ``positive=True`` (reference). Its ``alpha`` is exactly ``lam``:
  ``sparse_encode`` divides ``alpha`` by ``n_features`` (= M) before calling
  ``Lasso``/``LassoLars``, whose loss is ``(1 / (2 M)) ||x - D s||^2 +
  alpha' ||s||_1``, i.e. ``P(s) / M``.
- ``cvxpy``: the same problem handed to cvxpy / Clarabel (reference, small problems).

The Gram form ``D^T D`` is used for the gradient when it is cheaper
(``N <= 2 M``), the factored form ``D^T (D s - x)`` otherwise.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from torch.utils.flop_counter import flop_registry, register_flop_formula

from .compiled import active_set as compiled_active_set
from ..utils.validation import as_tensor, check_data, check_dictionary, check_float, check_int

__all__ = [
    "InferenceResult",
    "register_solver",
    "solve",
    "objective",
    "duality_gap",
    "lipschitz",
    "ista",
    "fista",
    "lca",
    "adam_exp",
    "sklearn_encode",
    "cvxpy_encode",
    "warm_start",
    "fista_l1_ball",
    "project_capped_simplex",
    "SOLVERS",
]


@dataclass
class InferenceResult:
    """Codes and their certificate.

    Attributes
    ----------
    codes : torch.Tensor
        ``n x N`` non-negative codes (working dtype, on ``D``'s device).
    duality_gap : torch.Tensor
        Per-sample duality gap (length ``n``, float64): an upper bound on each
        sample's suboptimality ``P(s) - min P``.
    objective : torch.Tensor
        Per-sample primal objective ``P(s)`` (float64).
    n_iter : int
        Iterations run (the maximum over samples; 0 for the reference solvers).
    converged : bool
        Whether every sample's gap fell below ``tol``.
    """

    codes: torch.Tensor
    duality_gap: torch.Tensor
    objective: torch.Tensor
    n_iter: int
    converged: bool


SOLVERS: dict[str, Callable[..., InferenceResult]] = {}


def register_solver(name: str) -> Callable[[Callable[..., InferenceResult]], Callable[..., InferenceResult]]:
    """Decorator adding a solver ``f(D, X, lam, init=..., max_iter=..., tol=..., **kw)`` to :func:`solve`."""

    def deco(fn: Callable[..., InferenceResult]) -> Callable[..., InferenceResult]:
        SOLVERS[name] = fn
        return fn

    return deco


def objective(D: torch.Tensor, X: torch.Tensor, S: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-sample non-negative LASSO objective ``0.5 ||x - D s||^2 + lam * sum(s)``."""
    R = X - S @ D.T
    return 0.5 * (R * R).sum(1) + lam * S.sum(1)


def _gap(rr: torch.Tensor, xr: torch.Tensor, corr: torch.Tensor, l1: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(objective, gap) per sample from ``||r||^2``, ``x.r``, ``max_j d_j.r`` and ``sum(s)``.

    The dual point is the residual scaled into the feasible set ``D^T theta <= lam``.
    """
    scale = torch.where(corr > lam, lam / corr.clamp_min(torch.finfo(rr.dtype).tiny), torch.ones_like(corr))
    primal = 0.5 * rr + lam * l1
    dual = scale * xr - 0.5 * scale * scale * rr
    return primal, (primal - dual).clamp_min(0.0)


def _gap_from_residual(X: torch.Tensor, R: torch.Tensor, C: torch.Tensor, S: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(objective, gap) per sample from the residual ``R = X - S D^T`` and correlations ``C = R D``."""
    return _gap((R * R).sum(1), (X * R).sum(1), C.amax(1), S.sum(1), lam)


def duality_gap(D: torch.Tensor, X: torch.Tensor, S: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-sample duality gap of non-negative codes ``S`` (see module docstring)."""
    R = X - S @ D.T
    return _gap_from_residual(X, R, R @ D, S, lam)[1]


def lipschitz(D: torch.Tensor) -> float:
    """Lipschitz constant ``||D||_2^2`` of the smooth part's gradient ``D^T (D s - x)``.

    The largest eigenvalue of the smaller Gram matrix (``D D^T`` or ``D^T D``): for
    a 384 x 8448 dictionary this takes ~0.3 s where a full SVD takes ~5 s.
    """
    D = D.detach().double()
    G = D @ D.T if D.shape[0] <= D.shape[1] else D.T @ D
    return float(torch.linalg.eigvalsh(G)[-1])


# The active-set polish factorises small reduced Gram matrices; torch's FLOP
# counter has no formula for that, so register the textbook counts to keep
# gapbound.utils.flops.count_flops honest about it.
_aten = torch.ops.aten
if _aten.linalg_cholesky_ex not in flop_registry:

    @register_flop_formula(_aten.linalg_cholesky_ex)
    def _cholesky_flops(a_shape, *args, out_shape=None, **kwargs) -> int:
        k = a_shape[-1]
        return math.prod(a_shape[:-2]) * k**3 // 3


if _aten.cholesky_solve not in flop_registry:

    @register_flop_formula(_aten.cholesky_solve)
    def _cholesky_solve_flops(b_shape, l_shape, *args, out_shape=None, **kwargs) -> int:
        k, nrhs = b_shape[-2], b_shape[-1]
        return math.prod(b_shape[:-2]) * 2 * k * k * nrhs


if _aten.addmm_ not in flop_registry:

    # The sparse certificates multiply a sparse code matrix by the Gram matrix in
    # place (``C.addmm_(S, G)``): 2 nnz N FLOPs, which torch's shape-based counter
    # cannot see; a dense in-place addmm costs what the out-of-place one does.
    @register_flop_formula(_aten.addmm_, get_raw=True)
    def _addmm_inplace_flops(inp, mat1, mat2, *args, out_val=None, **kwargs) -> int:
        if mat1.is_sparse:
            return 2 * int(mat1._nnz()) * mat2.shape[-1]
        return 2 * mat1.shape[0] * mat1.shape[1] * mat2.shape[-1]


# --------------------------------------------------------------------------- problem set-up


_GRAM_MAX_N = 4096  # the float64 Gram matrix is kept only up to this many atoms (128 MiB)


class _Problem:
    """Validated inputs plus the float64 copies the certificates and the polish use."""

    def __init__(self, D: Any, X: Any, lam: float, init: Any, dtype: torch.dtype | None):
        D = check_dictionary(D)
        if dtype is None:
            dtype = D.dtype if D.dtype in (torch.float32, torch.float64) else torch.float32
        elif dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.dtype, self.device = dtype, D.device
        self.D = D.detach().to(dtype)
        self.X = check_data(X, self.D, dtype=dtype, device=self.device).detach()
        self.lam = check_float("lam", lam, minimum=0.0)
        self.cold = init is None  # zero codes to start from
        self.n, (self.M, self.N) = self.X.shape[0], self.D.shape
        self.D64 = D.detach().double()
        self.X64 = self.X.double() if dtype != torch.float64 else self.X
        if init is None:
            self.S0 = torch.zeros(self.n, self.N, dtype=dtype, device=self.device)
        else:
            S0 = as_tensor("init", init, dtype=dtype, device=self.device).detach()
            if S0.shape != (self.n, self.N):
                raise ValueError(f"init must have shape {(self.n, self.N)} (samples x atoms), got {tuple(S0.shape)}")
            if not torch.isfinite(S0).all():
                raise ValueError("init contains NaN or infinite values")
            self.S0 = S0.clamp_min(0.0)
        # Gram form costs 2nN^2 per gradient, factored 4nMN: pick the cheaper.
        self.use_gram = self.N <= 2 * self.M
        self._G64: torch.Tensor | None = None
        self._DtX64: torch.Tensor | None = None
        self._xx64: torch.Tensor | None = None

    @property
    def DtX64(self) -> torch.Tensor:
        """float64 ``X D`` (``n x N``), the linear term of the quadratic the polish solves."""
        if self._DtX64 is None:
            self._DtX64 = self.X64 @ self.D64
        return self._DtX64

    @property
    def G64(self) -> torch.Tensor | None:
        """float64 Gram matrix when it fits comfortably in memory (used by the polish)."""
        if self._G64 is None and self.N <= _GRAM_MAX_N:
            self._G64 = self.D64.T @ self.D64
        return self._G64

    @property
    def xx64(self) -> torch.Tensor:
        """float64 ``||x||^2`` per sample."""
        if self._xx64 is None:
            self._xx64 = (self.X64 * self.X64).sum(1)
        return self._xx64

    def sparse_pays(self, width: int) -> bool:
        """Whether certificates of codes with at most ``width`` atoms per sample should use sparse products."""
        # Decided from the sizes alone: the Gram matrix is formed only once it is used.
        return 256 <= self.N <= _GRAM_MAX_N and 4 * width <= self.M

    def certify(self, S: torch.Tensor, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """float64 (objective, gap, correlations ``D^T r``) of codes ``S`` for ``rows`` (all if None).

        Sparse enough codes of a wide dictionary go through :meth:`certify_support`.
        """
        S = S.double()
        if self.sparse_pays(0):  # wide dictionary: worth counting the nonzeros
            width = int((S != 0).sum(1).amax()) if S.numel() else 0
            if self.sparse_pays(width):
                idx = S.abs().topk(max(width, 1), dim=1).indices
                return self.certify_support(idx, S.gather(1, idx), rows)
        return self._certify_dense(S, rows)

    def _certify_dense(self, S: torch.Tensor, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`certify` through the residual ``x - D s`` (dense float64 codes)."""
        X = self.X64 if rows is None else self.X64[rows]
        R = X - S @ self.D64.T
        C = R @ self.D64
        P, gap = _gap_from_residual(X, R, C, S, self.lam)
        return P, gap, C

    def certify_support(
        self, idx: torch.Tensor, vals: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`certify` for codes given as positions ``idx`` and float64 values ``vals`` (``n x w`` each).

        ``idx`` must hold every nonzero of each sample, no position twice (extra
        positions with value 0 are fine). Where sparse products pay
        (:meth:`sparse_pays`) only those atoms are touched:
        ``D^T r = D^T x - G[:, W] s_W`` as one sparse product and
        ``||r||^2 = ||x||^2 - s.(D^T x) - s.(D^T r)``, ``O(n w N)`` instead of
        ``O(n M N)``; the rounding error of the gap grows to about
        ``1e-16 ||x||^2``, far below any tolerance the solvers accept.
        Otherwise the codes are made dense and certified as such.
        """
        n, w = idx.shape
        if not self.sparse_pays(w):
            return self._certify_dense(torch.zeros(n, self.N, dtype=torch.float64, device=idx.device).scatter_(1, idx, vals), rows)
        pos = torch.stack([torch.arange(n, device=idx.device).repeat_interleave(w), idx.flatten()])
        Ssp = torch.sparse_coo_tensor(pos, vals.flatten(), (n, self.N), check_invariants=False)
        # D^T r = D^T x - G s: updated in place in a copy of the rows' D^T x (no second n x N tensor).
        C = self.DtX64.clone() if rows is None else self.DtX64.index_select(0, rows)
        B_W = C.gather(1, idx)
        C.addmm_(Ssp, self.G64, beta=1.0, alpha=-1.0)
        xx = self.xx64 if rows is None else self.xx64[rows]
        sB = (vals * B_W).sum(1)
        rr = (xx - sB - (vals * C.gather(1, idx)).sum(1)).clamp_min(0.0)
        P, gap = _gap(rr, xx - sB, C.amax(1), vals.sum(1), self.lam)
        return P, gap, C

    def result(self, S: torch.Tensor, n_iter: int, tol: float) -> InferenceResult:
        P, gap, _ = self.certify(S)
        return InferenceResult(S, gap, P, n_iter, bool((gap <= tol).all()))


def _check_common(max_iter: int, tol: float, check_every: int) -> None:
    check_int("max_iter", max_iter, minimum=1)
    check_float("tol", tol, minimum=0.0)
    check_int("check_every", check_every, minimum=1)


def _sub_gram(prob: _Problem, idx: torch.Tensor, chunk: int = 512) -> torch.Tensor:
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


_RIDGE = 1e-11
# On CPU the active set runs compiled, sample by sample (gapbound.inference.compiled); the batched
# torch version below serves CUDA, dictionaries too wide for a Gram matrix, and the tests
# that hold the two to the same answers.
_USE_COMPILED = True
_CHUNK_ELEMS = 2**19  # float64 elements per batch of small matrices (4 MiB)
_ACTIVE_SET_FIRST_FLOPS = 2e7


def _lawson_hanson(
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
    is for the caller (:func:`_active_set`) to check. Rows whose factorisation
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
    for _ in range(max_inner):
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


def _compact(prob: _Problem, S: torch.Tensor, C: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense codes ``S`` (rows ``rows``) as the compact ``(idx, vals)`` the active set starts from.

    A row whose support is wider than the working-set cap or the rank is far
    from a LASSO solution (which has at most M atoms, usually far fewer), and
    shrinking it one atom per Lawson-Hanson step costs a round per atom. So
    when such rows are most of the batch (a poor warm start, e.g. a weak SAE's
    codes) they restart from zero, where ``D^T x`` points at most of the
    support; a few of them (FISTA iterates still settling) keep only their
    largest codes. Their correlations ``C`` are recomputed in place; either way
    the caller keeps whichever codes end better.
    """
    S = S.double()
    limit = min(_cap(prob), prob.M)
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


def _cap(prob: _Problem) -> int:
    """Working-set width of the active set: each Cholesky factorisation costs ``O(width^3)`` per sample."""
    return min(prob.N, max(32, prob.M // 4))


def _compiled(prob: _Problem) -> bool:
    """Whether the active set runs as the compiled per-sample kernel (CPU, Gram matrix kept) rather than batched in torch."""
    return _USE_COMPILED and prob.device.type == "cpu" and prob.N <= _GRAM_MAX_N


def _active_set(
    prob: _Problem, idx: torch.Tensor, vals: torch.Tensor, C: torch.Tensor | None, rows: torch.Tensor, tol: float,
    max_outer: int = 8, n_add: int = 4,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Active-set refinement of compact codes; returns dense float64 ``(codes, objective, gap)``.

    The codes of rows ``rows`` come as positions ``idx`` and float64 values
    ``vals`` (``n x w``, zero-padded, no position twice, see :func:`_compact`),
    with their correlations ``C = D^T r`` (``n x N``, float64; overwritten;
    None to compute them here). On CPU the method runs compiled, one sample at
    a time (:func:`gapbound.inference.compiled.active_set`, which recomputes the
    correlations itself); otherwise it is batched over samples in torch. Each round solves the problem exactly on a working set
    (:func:`_lawson_hanson`): each sample's support plus its atoms most
    violating the KKT condition ``d_j . r <= lam``, then certifies the result.
    Samples whose certificate is still above ``tol`` go on (at most
    ``max_outer`` rounds), adding twice as many violators as in the previous
    round while the objective falls, and one atom at a time where it stalled,
    the rule that makes Lawson-Hanson finite. The first round adds ``n_add``
    atoms, or up to 16 (a quarter of the width cap) from an empty support (a
    cold start), where the correlations ``D^T x`` already point at most of the
    support; the working set stays narrow because every Cholesky factorisation
    costs ``O(width^3)``. A sample with no violating atom left is optimal.
    Working sets stay compact throughout; only the final codes are written
    densely, so a round touches the ``n x N`` correlations just in the
    certificate and one top-k.
    """
    cap = _cap(prob)
    n_first = min(16, cap // 4)
    if _compiled(prob):
        # Its rounds have no batch overhead: four times as many (supports as wide as the
        # rank end with one-atom rounds, see above).
        return compiled_active_set(prob.G64, prob.DtX64, prob.xx64, rows, idx, vals, prob.lam, tol, cap,
                                   4 * max_outer, n_add, n_first)
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
        take = (ar[: vv.shape[1]] < adds) & (vv > lam)
        if outer > 0:  # a sample with nothing to add is exact on a KKT-optimal support
            keep = (take.any(1) | (support & (vals <= 0)).any(1)) & (support.sum(1) + take.sum(1) <= cap)
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
        # In row chunks of <= 4 MiB per batch of k x k matrices: large batches of temporaries are
        # mapped and page-faulted afresh at every Lawson-Hanson step (glibc maps big blocks),
        # small ones are reused from the heap while still in cache (~15 % less time at N=1000).
        step = max(1, _CHUNK_ELEMS // idx.shape[1] ** 2)
        vals = torch.cat([
            _lawson_hanson(_sub_gram(prob, idx[a : a + step]), q[a : a + step], vals[a : a + step], free[a : a + step], prob.M)
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
        grown = torch.full_like(adds, n_add) if outer == 0 else (adds * 2).clamp(min=n_add, max=max(n_add, cap // 2))
        adds = torch.where(stalled[:, None] & (outer > 0), torch.ones_like(grown), grown)
    if live.numel():
        settle(torch.ones(live.numel(), dtype=torch.bool, device=idx.device))
    return S, P, gap


# --------------------------------------------------------------------------- proximal gradient


def _neg_grad(prob: _Problem, Y: torch.Tensor, rows: torch.Tensor, cache: dict, step: float | None = None) -> torch.Tensor:
    """``D^T (x - D y)`` for the active rows, Gram or factored form; with ``step``, the gradient step ``y + step D^T (x - D y)``.

    The step is folded into the cached matrices (``I - step G`` and ``step D^T x``)
    so that it costs one product: at small sizes each extra tensor operation
    costs as much as the product itself.
    """
    scale = 1.0 if step is None else step
    if prob.use_gram:
        if "G" not in cache:
            G = prob.D.T @ prob.D
            cache["G"] = G if step is None else torch.eye(prob.N, dtype=G.dtype, device=G.device).sub_(G, alpha=step)
        if cache.get("rows") is not rows:
            cache["DtX"], cache["rows"] = (prob.X[rows] @ prob.D).mul_(scale), rows
        return torch.addmm(cache["DtX"], Y, cache["G"], alpha=-1.0 if step is None else 1.0)
    if cache.get("rows") is not rows:
        cache["X"], cache["rows"] = prob.X[rows], rows
    R = torch.addmm(cache["X"], Y, prob.D.T, alpha=-1.0)
    return R @ prob.D if step is None else torch.addmm(Y, R, prob.D, alpha=step)


@functools.lru_cache(maxsize=8)
def _momentum_weights(n: int) -> np.ndarray:
    """FISTA's momentum weights ``(t_j - 1) / t_{j+1}``, ``j < n`` (cached: the same for every call)."""
    t = np.ones(n + 1)
    for j in range(n):
        t[j + 1] = 0.5 * (1 + math.sqrt(1 + 4 * t[j] ** 2))
    return (t[:-1] - 1) / t[1:]


Prox = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
Certify = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _proximal_gradient(
    prob: _Problem, max_iter: int, tol: float, check_every: int, momentum: bool, polish: bool,
    prox: Prox | None = None, certify: Certify | None = None,
) -> InferenceResult:
    """Projected ISTA, or FISTA with gradient restart; certificates and optional polish every ``check_every``.

    ``prox(Z, rows, step)`` maps a gradient step to the feasible set (default:
    the non-negative soft threshold of the LASSO) and ``certify(S, rows)``
    returns per-sample ``(objective, gap, D^T r)`` in float64 (default:
    :meth:`_Problem.certify`); the L1-ball variant swaps both.
    """
    step, lam = 1.0 / lipschitz(prob.D64), prob.lam
    if prox is None:
        prox = lambda Z, rows, step: Z.sub_(step * lam).clamp_(min=0.0)  # noqa: E731
    certify = certify or prob.certify
    rows = torch.arange(prob.n, device=prob.device)  # samples still being optimised
    # Where one dense product costs far more than the Python overhead of an active-set
    # round (large n N M), start with the active set: from a cold or warm start with a
    # small support it often finishes in a few rounds, each costing one KKT product,
    # instead of tens of first-order iterations costing two products each.
    # The compiled active set (CPU) pays no such overhead and always starts.
    if polish and (_compiled(prob) or prob.n * prob.N * min(prob.N, 2 * prob.M) > _ACTIVE_SET_FIRST_FLOPS):
        if prob.cold:  # an empty support; its steps only descend from the zero codes
            idx = torch.zeros(prob.n, 1, dtype=torch.long, device=prob.device)
            vals = torch.zeros(prob.n, 1, dtype=torch.float64, device=prob.device)
            S_all, P, gap = _active_set(prob, idx, vals, None, rows, tol, max_outer=16)
        else:
            P, gap, C = certify(prob.S0, rows)
            idx, vals = _compact(prob, prob.S0, C, rows)
            S_all, Pc, gapc = _active_set(prob, idx, vals, C, rows, tol, max_outer=16)
            worse = Pc >= P
            if worse.any():
                S_all[worse] = prob.S0[worse].double()
            P, gap = torch.where(worse, P, Pc), torch.where(worse, gap, gapc)
        S_all = S_all.to(prob.dtype)
        done = gap <= tol
        if done.all():  # float64: the certificates are those of S_all; else certify the rounded codes
            return InferenceResult(S_all, gap, P, 0, True) if prob.dtype == torch.float64 else prob.result(S_all, 0, tol)
        rows = rows[~done]
    else:
        S_all = prob.S0.clone()
    S, Y = S_all[rows], S_all[rows]
    # Momentum weights (t_k - 1) / t_{k+1} of the FISTA sequence, indexed by the
    # iterations since each sample's last restart.
    beta = torch.as_tensor(_momentum_weights(max_iter + 1), dtype=prob.dtype, device=prob.device)
    k = torch.zeros(rows.numel(), 1, dtype=torch.long, device=prob.device)
    cache: dict = {}
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        S_new = prox(_neg_grad(prob, Y, rows, cache, step), rows, step)
        if momentum:
            diff = S_new - S
            # O'Donoghue & Candes gradient restart: drop momentum where it points uphill.
            restart = torch.linalg.vecdot(Y - S_new, diff)[:, None] > 0
            k = torch.where(restart, 0, k + 1)
            Y = torch.addcmul(S_new, beta[k], diff)
        else:
            Y = S_new
        S = S_new
        if n_iter % check_every and n_iter != max_iter:
            continue
        P, gap, C = certify(S, rows)
        if polish:
            cand, Pc, gapc = _active_set(prob, *_compact(prob, S, C, rows), C, rows, tol)
            better = Pc < P
            if better.any():
                S = torch.where(better[:, None], cand.to(prob.dtype), S)
                Y = torch.where(better[:, None], S, Y)
                k = torch.where(better[:, None], 0, k)
                gap = torch.where(better, gapc, gap)
        S_all[rows] = S
        done = gap <= tol
        if done.all():
            break
        if done.any():  # freeze converged samples; the rest continue in a smaller batch
            keep = ~done
            rows, S, Y, k = rows[keep], S[keep], Y[keep], k[keep]
    S_all[rows] = S
    P, gap, _ = certify(S_all, torch.arange(prob.n, device=prob.device))
    return InferenceResult(S_all, gap, P, n_iter, bool((gap <= tol).all()))


@register_solver("ista")
def ista(
    D: Any, X: Any, lam: float, init: Any = None, max_iter: int = 1000, tol: float = 1e-6, check_every: int = 10,
    dtype: torch.dtype | None = None,
) -> InferenceResult:
    """Projected ISTA, the paper's plain gradient update ``s <- max(0, s - (grad + lam) / L)``.

    Parameters
    ----------
    D : array-like
        ``M x N`` dictionary (numpy or torch; the solver runs on its device).
    X : array-like
        ``n x M`` observations.
    lam : float
        L1 weight ``>= 0``.
    init : array-like, optional
        ``n x N`` warm start (e.g. an SAE's codes, negative entries clipped); zeros if omitted.
    max_iter : int
        Iteration cap.
    tol : float
        Stop when every sample's duality gap is ``<= tol`` (absolute, per sample).
    check_every : int
        Iterations between certificate checks.
    dtype : torch.dtype, optional
        Working precision of the iterates (default: ``D``'s dtype); certificates are float64.

    Returns
    -------
    InferenceResult
        ``duality_gap`` is per sample.
    """
    _check_common(max_iter, tol, check_every)
    prob = _Problem(D, X, lam, init, dtype)
    return _proximal_gradient(prob, max_iter, tol, check_every, momentum=False, polish=False)


@register_solver("fista")
def fista(
    D: Any, X: Any, lam: float, init: Any = None, max_iter: int = 1000, tol: float = 1e-6, check_every: int = 20,
    dtype: torch.dtype | None = None, polish: bool = True,
) -> InferenceResult:
    """FISTA with adaptive (gradient) restart and active-set polishing for the non-negative LASSO.

    Same parameters as :func:`ista`, plus ``polish`` (the batched active-set
    refinement at every check, see the module docstring; ``False`` gives plain
    restarted FISTA). ``duality_gap`` in the result is **per sample**
    (length ``n``, float64, absolute).

    Examples
    --------
    >>> import numpy as np
    >>> D = np.linalg.qr(np.random.default_rng(0).normal(size=(8, 8)))[0][:, :6]
    >>> res = fista(D, np.ones((4, 8)), lam=0.1, tol=1e-9)
    >>> bool(res.converged), tuple(res.codes.shape)
    (True, (4, 6))
    """
    _check_common(max_iter, tol, check_every)
    prob = _Problem(D, X, lam, init, dtype)
    return _proximal_gradient(prob, max_iter, tol, check_every, momentum=True, polish=bool(polish))


def project_capped_simplex(Z: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of ``Z`` onto ``{s >= 0, sum(s) <= radius_i}`` (sort-based, batched)."""
    P = Z.clamp_min(0.0)
    over = P.sum(1) > radius
    if not over.any():
        return P
    Zo, r = Z[over], radius[over]
    u = Zo.sort(1, descending=True).values
    css = u.cumsum(1) - r[:, None]
    j = torch.arange(1, Z.shape[1] + 1, dtype=Z.dtype, device=Z.device)
    rho = ((u - css / j) > 0).sum(1, keepdim=True).clamp_min(1)  # number of coordinates left positive
    theta = css.gather(1, rho - 1) / rho.to(Z.dtype)
    P[over] = (Zo - theta).clamp_min(0.0)
    return P


def fista_l1_ball(
    D: Any, X: Any, radius: Any, init: Any = None, max_iter: int = 1000, tol: float = 1e-6, check_every: int = 10,
    dtype: torch.dtype | None = None,
) -> InferenceResult:
    """Best reconstruction under an L1 budget: ``min 0.5 ||x - D s||^2`` s.t. ``s >= 0``, ``sum(s) <= radius_i``.

    FISTA with projection onto the capped simplex. The certificate is the
    Frank-Wolfe gap ``grad.(s - v)``, ``v`` the best vertex of the feasible
    set (``0`` or ``radius_i e_j``), an upper bound on suboptimality for
    this convex problem over a compact set. Used by :mod:`gapbound.meter.core` to
    compare an SAE's reconstruction with the best one at the same L1.

    Parameters
    ----------
    radius : array-like
        Length-``n`` non-negative L1 budgets, one per sample.
    D, X, init, max_iter, tol, check_every, dtype
        As in :func:`fista` (``init`` is projected onto the feasible set).

    Returns
    -------
    InferenceResult
        ``objective`` is ``0.5 ||x - D s||^2`` and ``duality_gap`` the per-sample Frank-Wolfe gap.
    """
    _check_common(max_iter, tol, check_every)
    prob = _Problem(D, X, 0.0, init, dtype)
    r = as_tensor("radius", radius, dtype=torch.float64, device=prob.device).detach().reshape(-1)
    if r.shape[0] != prob.n or not torch.isfinite(r).all() or bool((r < 0).any()):
        raise ValueError(f"radius must hold {prob.n} finite non-negative L1 budgets, got shape {tuple(r.shape)}")
    r_work = r.to(prob.dtype)
    prob.S0 = project_capped_simplex(prob.S0, r_work)

    def certify(S: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        S = S.double()
        R = prob.X64[rows] - S @ prob.D64.T
        C = R @ prob.D64  # minus the gradient
        fw = -(C * S).sum(1) + (r[rows] * C.amax(1)).clamp_min(0.0)
        return 0.5 * (R * R).sum(1), fw.clamp_min(0.0), C

    return _proximal_gradient(
        prob, max_iter, tol, check_every, momentum=True, polish=False,
        prox=lambda Z, rows, step: project_capped_simplex(Z, r_work[rows]), certify=certify,
    )


# --------------------------------------------------------------------------- LCA


@register_solver("lca")
def lca(
    D: Any, X: Any, lam: float, init: Any = None, max_iter: int = 1000, tol: float = 1e-6, check_every: int = 10,
    eta: float | None = None, dtype: torch.dtype | None = None,
) -> InferenceResult:
    """Locally competitive algorithm (Rozell et al. 2008), non-negative soft threshold.

    Membrane potentials ``u`` follow the Euler-discretised dynamics
    ``u <- u + eta * (D^T x - u - (D^T D - I) a)``, ``a = max(u - lam, 0)``.
    At a fixed point ``D^T (x - D a) = lam`` on the active set and ``<= lam``
    elsewhere: the non-negative LASSO's KKT conditions. The inhibition term is
    applied in factored form ``D^T (D a) - a`` unless the Gram form is cheaper,
    and the residual ``x - D a`` it needs also yields the certificate.

    Parameters
    ----------
    D, X, lam, init, max_iter, tol, check_every, dtype
        As in :func:`ista`.
    tol : float
        As in :func:`ista`; ``0`` runs exactly ``max_iter`` steps and skips the
        intermediate float64 certificates (worth it at language-model sizes).
    eta : float, optional
        Step ``dt / tau``; default ``1 / ||D||_2^2``, which keeps the
        discretisation stable (on the active set the error contracts by
        ``I - eta G``).

    Returns
    -------
    InferenceResult
        ``duality_gap`` is per sample.
    """
    _check_common(max_iter, tol, check_every)
    prob = _Problem(D, X, lam, init, dtype)
    L = lipschitz(prob.D64)
    eta = 1.0 / L if eta is None else check_float("eta", eta, minimum=0.0, strict_minimum=True, maximum=2.0 / L)
    lam = prob.lam
    A = prob.S0.clone()
    U = torch.where(A > 0, A + lam, torch.zeros_like(A))  # potentials reproducing the warm start
    rows = torch.arange(prob.n, device=prob.device)
    A_all = A.clone()
    cache: dict = {}
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        C = _neg_grad(prob, A, rows, cache)  # D^T (x - D a) = b - G a
        U.mul_(1 - eta).add_(C, alpha=eta).add_(A, alpha=eta)
        A = (U - lam).clamp_(min=0.0)
        # tol = 0 (a fixed budget, e.g. inside a training loop): certify once, at the end.
        if tol == 0 or (n_iter % check_every and n_iter != max_iter):
            continue
        _, gap, _ = prob.certify(A, rows)
        A_all[rows] = A
        done = gap <= tol
        if done.all():
            break
        if done.any():
            keep = ~done
            rows, A, U = rows[keep], A[keep], U[keep]
    A_all[rows] = A
    return prob.result(A_all, n_iter, tol)


# --------------------------------------------------------------------------- authors'-style baseline


@register_solver("adam_exp")
def adam_exp(
    D: Any, X: Any, lam: float, init: Any = None, max_iter: int = 10_000, tol: float = 0.0, check_every: int = 500,
    lr: float = 3e-3, floor: float = 1e-4, dtype: torch.dtype | None = None,
) -> InferenceResult:
    """Adam on exponentiated codes ``s = exp(u)``: the authors'-style ITO baseline.

    Minimises ``sum_i P(s_i)`` with ``torch.optim.Adam`` over ``u``; codes are
    positive by construction. ``tol = 0`` (default) runs all ``max_iter``
    steps, as the baseline does.

    Parameters
    ----------
    D, X, lam, init, max_iter, tol, check_every, dtype
        As in :func:`ista` (``init`` entries below ``floor`` start at ``floor``).
    lr : float
        Adam learning rate (default 3e-3).
    floor : float
        Smallest starting code, since ``exp(u)`` cannot be 0.
    """
    _check_common(max_iter, tol, check_every)
    check_float("lr", lr, minimum=0.0, strict_minimum=True)
    check_float("floor", floor, minimum=0.0, strict_minimum=True)
    prob = _Problem(D, X, lam, init, dtype)
    u = prob.S0.clamp_min(floor).log().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    n_iter = 0
    with torch.enable_grad():
        for n_iter in range(1, max_iter + 1):
            loss = objective(prob.D, prob.X, u.exp(), prob.lam).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if tol > 0 and n_iter % check_every == 0 and bool((prob.certify(u.detach().exp())[1] <= tol).all()):
                break
    return prob.result(u.detach().exp(), n_iter, tol)


# --------------------------------------------------------------------------- reference solvers


def sklearn_encode(
    D: Any, X: Any, lam: float, init: Any = None, max_iter: int = 1000, tol: float = 1e-6, algorithm: str = "lasso_cd",
    n_jobs: int | None = None,
) -> InferenceResult:
    """scikit-learn's ``sparse_encode`` with ``positive=True`` (reference solver; float64, CPU).

    ``alpha = lam`` exactly (see the module docstring). ``init`` is passed to
    ``lasso_cd`` as its warm start; ``lasso_lars`` ignores it. ``tol`` only
    decides ``converged``; scikit-learn's own stopping rule applies.
    """
    from sklearn.decomposition import sparse_encode

    if algorithm not in ("lasso_cd", "lasso_lars"):
        raise ValueError(f"algorithm must be 'lasso_cd' or 'lasso_lars', got {algorithm!r}")
    check_int("max_iter", max_iter, minimum=1)
    check_float("tol", tol, minimum=0.0)
    prob = _Problem(D, X, lam, init, torch.float64)
    S = sparse_encode(
        prob.X64.cpu().numpy(), prob.D64.T.cpu().numpy(), algorithm=algorithm, alpha=prob.lam, positive=True,
        max_iter=max_iter, n_jobs=n_jobs, init=None if init is None else prob.S0.cpu().numpy(),
    )
    return prob.result(torch.from_numpy(np.ascontiguousarray(S)).to(prob.device).clamp_min(0.0), 0, tol)


SOLVERS["sklearn_cd"] = lambda D, X, lam, **kw: sklearn_encode(D, X, lam, algorithm="lasso_cd", **kw)
SOLVERS["sklearn_lars"] = lambda D, X, lam, **kw: sklearn_encode(D, X, lam, algorithm="lasso_lars", **kw)


@register_solver("cvxpy")
def cvxpy_encode(D: Any, X: Any, lam: float, init: Any = None, tol: float = 1e-6, solver: str = "CLARABEL") -> InferenceResult:
    """The non-negative LASSO of all samples as one cvxpy problem (reference solver; small problems).

    The problem is separable over samples, so one solve gives every sample's optimum.
    """
    import cvxpy as cp

    check_float("tol", tol, minimum=0.0)
    prob = _Problem(D, X, lam, init, torch.float64)
    Dn, Xn = prob.D64.cpu().numpy(), prob.X64.cpu().numpy()
    S = cp.Variable((prob.n, prob.N), nonneg=True)
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(Xn - S @ Dn.T) + prob.lam * cp.sum(S))).solve(solver=solver)
    if S.value is None:
        raise RuntimeError(f"cvxpy ({solver}) returned no solution")
    return prob.result(torch.from_numpy(np.maximum(S.value, 0.0)).to(prob.device), 0, tol)


# --------------------------------------------------------------------------- entry points


def warm_start(encoder: Callable[[torch.Tensor], torch.Tensor], D: Any, X: Any, lam: float, method: str = "fista", **kwargs: Any) -> InferenceResult:
    """Inference-time optimisation from an encoder's codes (SAE+ITO).

    Parameters
    ----------
    encoder : callable
        Any encoder (an ``nn.Module`` or function) mapping ``n x M`` inputs to ``n x N`` codes.
    D, X, lam
        As in :func:`solve`.
    method : str
        Solver name.
    **kwargs
        Passed to the solver.
    """
    if not callable(encoder):
        raise TypeError(f"encoder must be callable (an nn.Module or function), got {type(encoder).__name__}")
    Dt = check_dictionary(D)
    Xt = check_data(X, Dt, dtype=Dt.dtype, device=Dt.device)
    with torch.no_grad():
        codes = encoder(Xt)
    return solve(Dt, Xt, lam, method=method, init=codes, **kwargs)


def solve(D: Any, X: Any, lam: float, method: str = "fista", **kwargs: Any) -> InferenceResult:
    """Infer non-negative sparse codes for ``X`` under the fixed dictionary ``D``.

    Parameters
    ----------
    D : array-like
        ``M x N`` dictionary (numpy or torch).
    X : array-like
        ``n x M`` observations.
    lam : float
        L1 weight.
    method : str
        A registered solver name (see ``SOLVERS``).
    **kwargs
        Passed to the solver (``init``, ``max_iter``, ``tol``, ...).
    """
    if method not in SOLVERS:
        raise ValueError(f"method must be one of {sorted(SOLVERS)}, got {method!r}")
    return SOLVERS[method](D, X, lam, **kwargs)

"""Working sets per sample for dictionaries too wide for a Gram matrix: exact solves, float32 screening, float64 certificates.

For ``N`` beyond :data:`gapbound.inference.problem.GRAM_MAX_N` (an SAE with 24,576 latents) no
``N x N`` Gram matrix is formed and no ``n x N x N`` work is done. Each sample keeps a working
set (its support plus the atoms most violating optimality); an outer round

1. forms the residuals ``r = x - D_W s_W`` in float64 (a sparse product),
2. screens all atoms with one float32 GEMM ``R D`` over the live samples, with a rigorous
   bound on its rounding error: ``|fl32(r . d_j) - r . d_j| <= (gamma_M + 3u) ||r|| ||d_j||``
   (``u = 2^-24``, ``gamma_M = M u / (1 - M u)``, any summation order); the top ``k`` atoms
   per sample are re-evaluated in float64 and every other atom is bounded by the
   ``(k+1)``-th float32 value plus that margin, so ``max_j d_j . r`` has a certified
   float64 upper bound,
3. certifies the codes with it (the LASSO duality gap of :func:`.problem.gap_terms`, or the
   Frank-Wolfe gap of the matched-L1 problem), and for the samples not yet within ``tol``
4. adds the violating atoms to the working set and solves the problem restricted to it
   exactly (:mod:`.working_set_kernel`, compiled, in parallel over samples).

Samples go through the loop in blocks of :data:`_BLOCK`; within a block each sample keeps its
working set's Gram matrix ``D_W^T D_W`` (a row per atom that joins, one BLAS product per round)
and the Cholesky factor of its free atoms (a bordered row per atom that joins, a Givens update
per atom that leaves) across rounds and across values of ``lam``, so a support of hundreds of
atoms is factored about once, not at every Lawson-Hanson step.

The rounding error left in the certificates is that of float64 residuals and sums
(about ``1e-16 ||x||^2``); the float32 screening is accounted for exactly as above.

Two problems share the loop: the non-negative LASSO with per-sample ``lam``
(:func:`lasso_working_set`) and the matched-L1 problem
``min 0.5 ||x - D s||^2, s >= 0, sum(s) <= tau`` (:func:`l1_ball_working_set`), whose
restricted problems are LASSO solves along ``lam`` (Newton steps in ``lam`` inside a bracket,
warm-started from the previous ``lam``'s codes and factor: on a fixed support the codes are
linear in ``lam``, so a step is exact once the support settles).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterator

import numba
import torch

from ..utils.validation import as_tensor, check_data, check_dictionary, check_float, check_int
from .compiled import _numba_threads
from .problem import gap_terms, real_array
from .working_set_kernel import compact_slots, solve_slots

__all__ = ["SparseResult", "lasso_working_set", "l1_ball_working_set", "Screen"]

_U32 = 2.0**-24  # float32 unit roundoff
_ELEMS = 2**23  # float64 elements per chunk of gathered atoms or small Grams (64 MiB)
_BLOCK = 64  # samples whose working sets (atoms, Grams, factors: up to 2 (M + 32)^2 + (M + 32) M floats each) are held at once
_SLACK = 32  # working sets may exceed the rank M by this much, so that a support at the rank can exchange atoms


@dataclass
class SparseResult:
    """Codes as per-sample positions and values, with their float64 certificates.

    Attributes
    ----------
    idx, vals : torch.Tensor
        ``n x w`` atom positions (int64) and float64 values (zero-padded; no position twice).
    objective : torch.Tensor
        Per-sample objective (LASSO ``P(s)``, or ``0.5 ||x - D s||^2`` for the matched-L1 problem).
    duality_gap : torch.Tensor
        Per-sample certificate: the LASSO duality gap or the Frank-Wolfe gap, an upper bound on
        the suboptimality.
    multiplier : torch.Tensor
        Per-sample ``lam``: the given one (LASSO) or the L1 constraint's multiplier (matched-L1).
    n_atoms : int
        ``N``.
    rounds : int
        Outer rounds run.
    converged : bool
        Whether every certificate is within ``tol``.
    """

    idx: torch.Tensor
    vals: torch.Tensor
    objective: torch.Tensor
    duality_gap: torch.Tensor
    multiplier: torch.Tensor
    n_atoms: int
    rounds: int
    converged: bool

    def dense(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``n x N`` codes."""
        out = torch.zeros(self.idx.shape[0], self.n_atoms, dtype=dtype, device=self.idx.device)
        return out.scatter_add_(1, self.idx, self.vals.to(dtype))  # padding adds zeros

    @property
    def l0(self) -> torch.Tensor:
        """Active atoms per sample."""
        return (self.vals > 0).sum(1)


@contextlib.contextmanager
def _full_precision_matmul() -> Iterator[None]:
    """float32 products at full precision (no TF32 / bfloat16 inside), as the error bound assumes."""
    saved = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside (restored after)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


class Screen:
    """A dictionary in the two precisions the loop uses: float32 to screen all atoms, float64 to certify.

    Parameters
    ----------
    D : torch.Tensor
        ``M x N`` float64 dictionary.
    """

    def __init__(self, D: torch.Tensor):
        self.D64T = D.T.contiguous()  # atoms as rows: gathered per sample
        self.D32 = D.float()
        M = D.shape[0]
        gamma = M * _U32 / (1 - M * _U32)
        # |fl32(r.d) - r.d| <= (gamma_M (1+u)^2 + 2u + u^2) ||r|| ||d||: 3u covers the last two terms and
        # the slack 1e-6 the (1+u)^2 factor and the float64 rounding of the margin itself.
        self.coef = (gamma + 3 * _U32) * (1 + 1e-6) * float(D.norm(dim=0).max())
        self.M, self.N = D.shape

    def residual(self, X: torch.Tensor, idx: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
        """float64 ``x - D s`` per sample from compact codes (a sparse product)."""
        n, w = idx.shape
        pos = torch.stack([torch.arange(n, device=idx.device).repeat_interleave(w), idx.flatten()])
        S = torch.sparse_coo_tensor(pos, vals.flatten(), (n, self.N), check_invariants=False)
        return X - torch.sparse.mm(S, self.D64T)

    def atom_dots(self, idx: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """float64 ``d_{idx[i,a]} . V[i]`` (``n x k``), gathered in chunks."""
        n, k = idx.shape
        out = torch.empty(n, k, dtype=torch.float64, device=idx.device)
        step = max(1, _ELEMS // max(1, k * self.M))
        for a in range(0, n, step):
            out[a : a + step] = torch.bmm(self.D64T[idx[a : a + step]], V[a : a + step, :, None])[..., 0]
        return out

    def correlations(self, R: torch.Tensor, k: int, n_cand: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Screen every atom against residuals ``R`` (float64 ``n x M``).

        Returns ``(cand, c, bound)``: the ``max(k, n_cand)`` atoms with the largest float32
        correlations (``n x max(k, n_cand)``), their correlations ``d_j . r`` (float64 for the
        first ``k``, the float32 values for the rest: candidates to add, not to certify), and a
        certified upper bound on ``d_j . r`` over all atoms but the first ``k`` (``-inf`` when ``k = N``).
        """
        k = min(k, self.N)
        K = min(max(k, n_cand), self.N)
        n = R.shape[0]
        cand = torch.empty(n, K, dtype=torch.long, device=R.device)
        c = torch.empty(n, K, dtype=torch.float64, device=R.device)
        bound = torch.full((n,), -math.inf, dtype=torch.float64, device=R.device)
        step = max(1, _ELEMS // self.N)
        with _full_precision_matmul():
            for a in range(0, n, step):
                C32 = R[a : a + step].float() @ self.D32
                v, i = C32.topk(min(K + 1, self.N), dim=1)
                cand[a : a + step], c[a : a + step] = i[:, :K], v[:, :K]
                if k < self.N:  # the order of fl32 values is that of fl32 + a per-sample margin
                    bound[a : a + step] = v[:, k].double()
        if k < self.N:
            bound += self.coef * R.norm(dim=1)
        c[:, :k] = self.atom_dots(cand[:, :k].contiguous(), R)
        return cand, c, bound


@dataclass
class _Kind:
    """The problem the outer loop solves: the LASSO (``tau`` None) or the matched-L1 problem."""

    lam: torch.Tensor  # LASSO weights, or the matched-L1 multipliers (updated)
    tau: torch.Tensor | None = None

    def certify(self, rows: torch.Tensor, rr: torch.Tensor, xr: torch.Tensor, l1: torch.Tensor,
                cmax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tau is None:
            return gap_terms(rr, xr, cmax, l1, self.lam[rows])
        # Frank-Wolfe gap  -c.s + tau max(0, max_j c_j),  c.s = (D s).r = (x - r).r
        return 0.5 * rr, (self.tau[rows] * cmax.clamp_min(0.0) - (xr - rr)).clamp_min(0.0)


def _compact(idx: torch.Tensor, vals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop zero entries (the width shrinks to the widest support)."""
    width = max(1, int((vals > 0).sum(1).amax()))
    v, order = vals.topk(width, dim=1)
    return idx.gather(1, order).masked_fill(v <= 0, 0), v.clamp_min(0.0)


class _Slots:
    """The working sets of one block of samples (see :mod:`.working_set_kernel`): atoms, Grams, codes, factors.

    Arrays are allocated at the capacity ``cap`` and filled as atoms join; pages never written
    are never mapped, so narrow working sets (the LASSO's) cost little.
    """

    def __init__(self, screen: Screen, X: torch.Tensor, idx: torch.Tensor, vals: torch.Tensor, cap: int,
                 work: dict[str, torch.Tensor]):
        B, w = idx.shape
        M = screen.M
        self.screen, self.X, self.cap = screen, X, cap
        self.atoms = torch.zeros(B, cap, dtype=torch.long)
        self.sv = torch.zeros(B, cap, dtype=torch.float64)
        self.b = torch.empty(B, cap, dtype=torch.float64)
        # The large arrays are reused from block to block (stale entries are never read before written):
        # fresh ones cost a page fault per 4 KiB touched, every block.
        for name, shape in (("D", (B, cap, M)), ("G", (B, cap, cap)), ("L", (B, cap, cap))):
            if name not in work or work[name].shape[0] < B:
                work[name] = torch.empty(shape, dtype=torch.float64)
            setattr(self, name, work[name][:B])
        self.y = torch.empty(B, cap, dtype=torch.float64)
        self.fo = torch.zeros(B, cap, dtype=torch.long)
        self.nv = torch.zeros(B, dtype=torch.long)
        self.ns = (vals > 0).sum(1)  # _compact left-packs the coded atoms
        self.cold = torch.ones(B, dtype=torch.bool)
        self.atoms[:, :w], self.sv[:, :w] = idx, vals
        # has[i, j]: atom j holds one of row i's slots (a lookup instead of comparing candidates with slots)
        self.has = torch.zeros(B, screen.N, dtype=torch.bool)
        self.has[torch.arange(B)[:, None].expand(B, w)[vals > 0], idx[vals > 0]] = True
        self.D[:, :w] = screen.D64T[idx]
        self.G[:, :w, :w] = self.D[:, :w] @ self.D[:, :w].transpose(1, 2)
        self.b[:, :w] = torch.bmm(self.D[:, :w], X[:, :, None])[..., 0]

    def width(self, rows: torch.Tensor) -> int:
        return max(1, int(self.ns[rows].amax()))

    def residual(self, rows: torch.Tensor) -> torch.Tensor:
        w = self.width(rows)
        return self.screen.residual(self.X[rows], self.atoms[rows, :w], self.sv[rows, :w])

    def contains(self, rows: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """Whether each candidate atom already has a slot."""
        return self.has[rows[:, None], cand]

    def make_room(self, rows: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
        """Slots free per row, after dropping the slots at zero of rows that need the room or hold many.

        A dropped atom that turns out to be needed again costs its Gram row once more; a kept one
        costs a Gram entry against every atom that joins later (most atoms at zero stay there).
        """
        ns = self.ns[rows]
        idle = ns - (self.sv[rows, : self.width(rows)] > 0).sum(1)
        full = rows[(ns + want > self.cap) | ((idle >= 16) & (4 * idle >= ns))]
        arrays = [t.numpy() for t in (self.G, self.D, self.b, self.sv, self.atoms, self.ns, self.fo, self.nv)]
        for i in full.tolist():
            self.ns[i] = compact_slots(*arrays, i)
            self.has[i] = False
            self.has[i, self.atoms[i, : self.ns[i]]] = True
        return self.cap - self.ns[rows]

    def add(self, rows: torch.Tensor, new: torch.Tensor, take: torch.Tensor) -> None:
        """Give the ``take``-marked atoms ``new`` (``len(rows) x a``) slots: their atoms, Gram rows and ``b``.

        One product per row, of its new atoms against its slots (new ones included): rows differ in
        both sizes (a batched product padded to the largest computed about 2.5x the FLOPs, and
        gathering the rows' slots for it cost as much as the product). The products run on one
        thread: at these sizes two threads per product spent 3-9x the CPU time of one (measured
        at GPT-2 size, ``benchmarks/meter_scale.py``).
        """
        n_new = take.sum(1)
        slot = self.ns[rows, None] + take.cumsum(1) - 1
        ri, si = rows[:, None].expand_as(take)[take], slot[take]
        self.atoms[ri, si], self.sv[ri, si] = new[take], 0.0
        self.has[ri, new[take]] = True
        self.D[ri, si] = self.screen.D64T[new[take]]
        self.ns[rows] += n_new
        with _torch_threads(1):
            for i, a1, n in zip(rows.tolist(), self.ns[rows].tolist(), n_new.tolist()):
                if n:
                    Dn = self.D[i, a1 - n : a1]
                    Gi = Dn @ self.D[i, :a1].T
                    self.G[i, a1 - n : a1, :a1] = Gi
                    self.G[i, :a1, a1 - n : a1] = Gi.T
                    self.b[i, a1 - n : a1] = Dn @ self.X[i]

    def solve(self, rows: torch.Tensor, lam: torch.Tensor, tau: torch.Tensor) -> None:
        """Exact restricted solves of ``rows`` (``lam`` updated in place for the matched-L1 problem)."""
        args = [t.numpy() for t in (self.G, self.b, self.sv, self.ns, self.fo, self.nv, self.L, self.y, lam, tau,
                                    self.cold, rows)]
        threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
        with _numba_threads(threads), numba.parallel_chunksize(1):  # samples differ widely in work: dynamic
            solve_slots(*args)
        self.cold[rows] = False

    def codes(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.width(torch.arange(self.ns.shape[0]))
        return _compact(self.atoms[:, :w], self.sv[:, :w] * (torch.arange(w) < self.ns[:, None]))


def _block(screen: Screen, X: torch.Tensor, kind: _Kind, lo: int, idx: torch.Tensor, vals: torch.Tensor, tol: float,
           max_rounds: int, n_screen: int, max_add: int, cap: int, work: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The outer loop (see the module docstring) for the samples ``lo..lo+len(idx)-1``."""
    B = idx.shape[0]
    slots = _Slots(screen, X[lo : lo + B], idx, vals, cap, work)
    lam = kind.lam[lo : lo + B]  # a view: the matched-L1 solves update kind.lam
    tau = torch.full((B,), -1.0, dtype=torch.float64) if kind.tau is None else kind.tau[lo : lo + B].contiguous()
    P = torch.full((B,), math.inf, dtype=torch.float64)
    gap = torch.full_like(P, math.inf)
    live = torch.arange(B)
    k = n_screen
    adds = min(16, max_add)  # atoms added per round: doubled while samples fill their quota
    rounds = 0
    for rounds in range(max_rounds + 1):
        R = slots.residual(live)
        cand, c, bound = screen.correlations(R, k, adds)
        cmax = torch.maximum(c.amax(1), bound)
        Xl = slots.X[live]
        Pl, gl = kind.certify(lo + live, (R * R).sum(1), (Xl * R).sum(1), slots.sv[live].sum(1), cmax)
        # A sample whose restricted solve no longer lowers its objective and that has no atom to
        # add is as exact as the float64 arithmetic makes it: it stops with its certificate.
        settled = Pl >= P[live] - 1e-14 * Pl.abs()
        P[live], gap[live] = Pl, gl
        go = gl > tol
        if rounds == max_rounds or not go.any():
            break
        live, cand, c, bound, settled = live[go], cand[go], c[go], bound[go], settled[go]
        thr = lam[live]
        # Violators among the screened atoms without a slot, the worst first.
        score = torch.where((c > thr[:, None] * (1 + 1e-12)) & ~slots.contains(live, cand), c, -math.inf)
        top, pos = score.topk(min(adds, score.shape[1]), dim=1)
        want = torch.isfinite(top)
        room = slots.make_room(live, want.sum(1))
        take = want & (torch.arange(top.shape[1]) < room[:, None])
        stuck = ~take.any(1)
        if bool((take.sum(1) == adds).any()):  # wide optima: reach them in fewer rounds
            adds = min(max_add, 2 * adds)
        blind = stuck & (bound > thr)  # the screen saw too few atoms: look further next round
        if bool(blind.any()) and k < screen.N:
            k = min(screen.N, 2 * k)
        elif bool((stuck & settled).all()):
            break
        keep = ~(stuck & settled & ~blind)
        live, cand, pos, take = live[keep], cand[keep], pos[keep], take[keep]
        if live.numel() == 0:
            break
        slots.add(live, cand.gather(1, pos), take)
        slots.solve(live, lam, tau)
    I, V = slots.codes()
    return I, V, P, gap, rounds


def _outer(D: torch.Tensor, X: torch.Tensor, kind: _Kind, idx: torch.Tensor, vals: torch.Tensor, tol: float,
           max_rounds: int, n_screen: int, max_add: int, width_cap: int | None) -> SparseResult:
    """The outer loop shared by both problems, block by block of samples (see the module docstring)."""
    screen = Screen(D)
    n = X.shape[0]
    # An optimum needs at most M atoms (generically); see _SLACK.
    cap = min(screen.N, screen.M + _SLACK) if width_cap is None else width_cap
    idx, vals = _compact(idx, vals)
    if idx.shape[1] > cap:  # a start wider than any optimum: keep its largest codes
        idx, vals = _compact(idx[:, :cap], vals[:, :cap])
    X = X.contiguous()
    work: dict[str, torch.Tensor] = {}
    parts = [_block(screen, X, kind, a, *_compact(idx[a : a + _BLOCK], vals[a : a + _BLOCK]), tol, max_rounds,
                    n_screen, max_add, cap, work) for a in range(0, n, _BLOCK)]
    width = max(p[0].shape[1] for p in parts)
    I = torch.cat([torch.nn.functional.pad(p[0], (0, width - p[0].shape[1])) for p in parts])
    V = torch.cat([torch.nn.functional.pad(p[1], (0, width - p[1].shape[1])) for p in parts])
    P, gap = torch.cat([p[2] for p in parts]), torch.cat([p[3] for p in parts])
    return SparseResult(I, V, P, gap, kind.lam.clone(), screen.N, max(p[4] for p in parts), bool((gap <= tol).all()))


def _setup(D: Any, X: Any, init: Any, idx: Any, vals: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """float64 dictionary, data and compact start (from dense ``init`` or from ``idx``/``vals``; zeros if neither)."""
    Dt = check_dictionary(real_array("D", D)).detach().double().cpu()  # the restricted solves are compiled CPU code
    Xt = check_data(real_array("X", X), Dt, dtype=torch.float64, device=Dt.device).detach()
    n = Xt.shape[0]
    if idx is not None:
        I = as_tensor("idx", idx, device=Dt.device).detach().long()
        Vv = as_tensor("vals", real_array("vals", vals), dtype=torch.float64, device=Dt.device).detach()
        if I.shape != Vv.shape or I.ndim != 2 or I.shape[0] != n:
            raise ValueError(f"idx and vals must both have shape (n={n}, w), got {tuple(I.shape)} and {tuple(Vv.shape)}")
        if I.numel() and (int(I.min()) < 0 or int(I.max()) >= Dt.shape[1]):
            raise ValueError(f"idx must hold atom positions in [0, {Dt.shape[1]})")
        return Dt, Xt, I, Vv.clamp_min(0.0).nan_to_num(0.0)
    if init is None:
        return Dt, Xt, torch.zeros(n, 1, dtype=torch.long), torch.zeros(n, 1, dtype=torch.float64)
    S0 = as_tensor("init", real_array("init", init), dtype=torch.float64, device=Dt.device).detach()
    if S0.shape != (n, Dt.shape[1]):
        raise ValueError(f"init must have shape {(n, Dt.shape[1])} (samples x atoms), got {tuple(S0.shape)}")
    S0 = S0.clamp_min(0.0).nan_to_num(0.0)
    v, i = S0.topk(max(1, int((S0 > 0).sum(1).amax())), dim=1)
    return Dt, Xt, i, v


def _per_sample(name: str, value: Any, n: int, device: torch.device) -> torch.Tensor:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = torch.tensor(float(value), dtype=torch.float64)
    t = as_tensor(name, real_array(name, value), dtype=torch.float64, device=device).detach().reshape(-1)
    t = t.expand(n).clone() if t.numel() == 1 else t
    if t.shape[0] != n or not torch.isfinite(t).all() or bool((t < 0).any()):
        raise ValueError(f"{name} must be one finite value >= 0 or {n} of them, got shape {tuple(t.shape)}")
    return t


def lasso_working_set(
    D: Any, X: Any, lam: Any, init: Any = None, tol: float = 1e-6, idx: Any = None, vals: Any = None,
    max_rounds: int = 50, n_screen: int = 64, max_add: int = 256, width_cap: int | None = None,
) -> SparseResult:
    """Non-negative LASSO ``0.5||x - D s||^2 + lam_i sum(s)`` per sample, exact, for any number of atoms.

    Parameters
    ----------
    D : array-like
        ``M x N`` dictionary.
    X : array-like
        ``n x M`` observations.
    lam : float or array-like
        L1 weight, one for all samples or one per sample.
    init : array-like, optional
        Dense ``n x N`` start (e.g. an SAE's codes); or give the start compactly as ``idx``, ``vals``.
    tol : float
        Per-sample duality-gap target (absolute).
    max_rounds : int
        Outer rounds (each one float32 screening GEMM over the samples not yet certified).
    n_screen : int
        Atoms per sample re-evaluated in float64 after the float32 screening (doubled when too few).
    max_add : int
        Most atoms added to a working set per round (from 16, doubled while samples take that many).
    width_cap : int, optional
        Largest working set (default ``M + 32``, room for any optimum).

    Returns
    -------
    SparseResult
        Compact codes with per-sample float64 duality gaps (see the module docstring for their rounding).
    """
    check_float("tol", tol, minimum=0.0)
    for name, v in (("max_rounds", max_rounds), ("n_screen", n_screen), ("max_add", max_add)):
        check_int(name, v, minimum=1)
    Dt, Xt, I, V = _setup(D, X, init, idx, vals)
    kind = _Kind(_per_sample("lam", lam, Xt.shape[0], Dt.device))
    return _outer(Dt, Xt, kind, I, V, tol, max_rounds, n_screen, max_add, width_cap)


def l1_ball_working_set(
    D: Any, X: Any, tau: Any, init: Any = None, tol: float = 1e-6, idx: Any = None, vals: Any = None,
    lam_guess: Any = None, max_rounds: int = 50, n_screen: int = 64, max_add: int = 256,
    width_cap: int | None = None,
) -> SparseResult:
    """Best reconstruction under an L1 budget, ``min 0.5||x - D s||^2, s >= 0, sum(s) <= tau_i``, exact.

    Same parameters as :func:`lasso_working_set`, with ``tau`` (per-sample budgets) for ``lam``
    and ``lam_guess``, a per-sample first guess of the constraint's multiplier (default: the
    median of ``d_j . r`` over the start's support). ``duality_gap`` is the Frank-Wolfe gap and
    ``multiplier`` the ``lam`` whose LASSO solution this is.
    """
    check_float("tol", tol, minimum=0.0)
    for name, v in (("max_rounds", max_rounds), ("n_screen", n_screen), ("max_add", max_add)):
        check_int(name, v, minimum=1)
    Dt, Xt, I, V = _setup(D, X, init, idx, vals)
    n = Xt.shape[0]
    t = _per_sample("tau", tau, n, Dt.device)
    if lam_guess is None:
        screen = Screen(Dt)
        c = screen.atom_dots(I, screen.residual(Xt, I, V))
        lam_guess = torch.where(V > 0, c, math.nan).nanmedian(1).values.nan_to_num(0.0).clamp_min(0.0)
    kind = _Kind(_per_sample("lam_guess", lam_guess, n, Dt.device).clone(), t)
    # The start must be feasible: scaled into the budget.
    V = V.clamp_min(0.0) * (t / V.clamp_min(0.0).sum(1).clamp_min(1e-300)).clamp_max(1.0)[:, None]
    return _outer(Dt, Xt, kind, I, V, tol, max_rounds, n_screen, max_add, width_cap)

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
   exactly, batched over samples, on the small per-sample Grams ``D_W^T D_W``
   (:func:`.active_set.lawson_hanson` steps until the restricted KKT conditions hold).

The rounding error left in the certificates is that of float64 residuals and sums
(about ``1e-16 ||x||^2``); the float32 screening is accounted for exactly as above.

Two problems share the loop: the non-negative LASSO with per-sample ``lam``
(:func:`lasso_working_set`) and the matched-L1 problem
``min 0.5 ||x - D s||^2, s >= 0, sum(s) <= tau`` (:func:`l1_ball_working_set`), whose
restricted problems are LASSO solves along ``lam`` (an Illinois secant search warm-started
from the previous ``lam``'s codes: on a fixed support the codes are linear in ``lam``, so
the search ends in a step or two once the support settles).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ..utils.validation import as_tensor, check_data, check_dictionary, check_float, check_int
from .active_set import lawson_hanson
from .problem import gap_terms, real_array

__all__ = ["SparseResult", "lasso_working_set", "l1_ball_working_set", "Screen"]

_U32 = 2.0**-24  # float32 unit roundoff
_ELEMS = 2**23  # float64 elements per chunk of gathered atoms or small Grams (64 MiB)
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

    def correlations(self, R: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Screen every atom against residuals ``R`` (float64 ``n x M``).

        Returns ``(cand, c, bound)``: the ``k`` atoms with the largest float32 correlations
        (``n x k``), their float64 correlations ``d_j . r``, and a certified upper bound on
        ``d_j . r`` over all other atoms (``-inf`` when ``k = N``).
        """
        k = min(k, self.N)
        n = R.shape[0]
        cand = torch.empty(n, k, dtype=torch.long, device=R.device)
        bound = torch.full((n,), -math.inf, dtype=torch.float64, device=R.device)
        step = max(1, _ELEMS // self.N)
        with _full_precision_matmul():
            for a in range(0, n, step):
                C32 = R[a : a + step].float() @ self.D32
                v, i = C32.topk(min(k + 1, self.N), dim=1)
                cand[a : a + step] = i[:, :k]
                if k < self.N:  # the order of fl32 values is that of fl32 + a per-sample margin
                    bound[a : a + step] = v[:, k].double()
        if k < self.N:
            bound += self.coef * R.norm(dim=1)
        return cand, self.atom_dots(cand, R), bound


def _bmv(G: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.bmm(G, s[:, :, None])[..., 0]


def restricted_nnqp(G: torch.Tensor, q: torch.Tensor, s: torch.Tensor, valid: torch.Tensor, rank: int,
                    max_rounds: int = 64) -> torch.Tensor:
    """Minimise ``0.5 s'Gs - q's`` over ``s >= 0`` on the ``valid`` positions, batched (``n x w``), from feasible ``s``.

    Lawson-Hanson steps (:func:`.active_set.lawson_hanson`) on the free set, then every
    position at zero whose gradient still points inside joins the free set again, until
    none does: the KKT conditions of the restricted problem.
    """
    s = s.clone()
    scale = q.abs().amax(1).clamp_min(1e-300)
    # Free from the start: the coded positions and those whose gradient points inside. A warm start
    # (the previous lam's codes) then needs few steps; the loop below frees the rest if needed.
    free = valid & ((s > 0) | (q - _bmv(G, s) > 1e-13 * scale[:, None]))
    rows = torch.arange(s.shape[0], device=s.device)
    for _ in range(max_rounds):
        if rows.numel() == 0:
            break
        Gr, qr = G[rows], q[rows]
        sr = lawson_hanson(Gr, qr, s[rows], free[rows], rank)
        s[rows] = sr
        viol = valid[rows] & (sr <= 0) & (qr - _bmv(Gr, sr) > 1e-13 * scale[rows, None])
        again = viol.any(1)
        free[rows] = (sr > 0) | viol
        rows = rows[again]
    return s


def _restricted_l1(G: torch.Tensor, b: torch.Tensor, tau: torch.Tensor, s: torch.Tensor, valid: torch.Tensor,
                   lam: torch.Tensor, rank: int, max_steps: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    """``min 0.5||x - D_W s||^2, s >= 0, sum(s) <= tau`` on each working set: (codes, multiplier ``lam``).

    Illinois secant search over ``lam`` for ``sum(s(lam)) = tau``, each step an exact restricted
    LASSO solve warm-started from the previous step's codes; ``lam = 0`` (the constraint
    inactive) is tried once no ``lam`` with too large an L1 is known.
    """
    n = s.shape[0]
    hi = b.masked_fill(~valid, -math.inf).amax(1).clamp_min(0.0)  # s(lam) = 0 for lam >= hi
    f_hi = -tau.clone()
    lo, f_lo = torch.zeros_like(tau), torch.full_like(tau, math.nan)
    lam = lam.clamp(min=0.0).minimum(hi)
    side = torch.zeros(n, dtype=torch.long, device=s.device)
    active = (tau > 0) & (hi > 0)
    s = torch.where(active[:, None], s, torch.zeros_like(s))
    lam = torch.where(active, lam, torch.zeros_like(lam))
    for _ in range(max_steps):
        rows = active.nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        lr = lam[rows]
        sr = restricted_nnqp(G[rows], b[rows] - lr[:, None], s[rows], valid[rows], rank)
        s[rows] = sr
        f = sr.sum(1) - tau[rows]
        done = (f.abs() <= 1e-13 * tau[rows]) | ((lr == 0) & (f <= 0))
        up = f > 0  # too little shrinkage: the root is above lam
        lo[rows] = torch.where(up, lr, lo[rows])
        f_lo[rows] = torch.where(up, f, f_lo[rows])
        hi[rows] = torch.where(~up, lr, hi[rows])
        f_hi[rows] = torch.where(~up, f, f_hi[rows])
        new_side = torch.where(up, 1, -1)
        stale = new_side == side[rows]
        f_hi[rows] = torch.where(stale & up, f_hi[rows] / 2, f_hi[rows])
        f_lo[rows] = torch.where(stale & ~up, f_lo[rows] / 2, f_lo[rows])
        side[rows] = new_side
        l, h, fl, fh = lo[rows], hi[rows], f_lo[rows], f_hi[rows]
        secant = h - fh * (h - l) / (fh - fl)
        nxt = torch.where(torch.isnan(fl), torch.zeros_like(h),
                          torch.where(torch.isfinite(secant) & (secant > l) & (secant < h), secant, (l + h) / 2))
        lam[rows] = torch.where(done, lr, nxt)
        active[rows] = ~done & (h - l > 1e-15 * h)
    total = s.sum(1)
    s = s * (tau / total.clamp_min(1e-300)).clamp_max(1.0)[:, None]  # feasible (the last step may overshoot by ~1e-13)
    return s, lam


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


def _pad_cat(idx: torch.Tensor, vals: torch.Tensor, new: torch.Tensor, take: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Working sets: each row's coded atoms then its ``take``-marked ``new`` atoms, left-packed (positions, values, valid)."""
    coded = vals > 0
    keep = torch.cat([coded, take], 1)
    order = torch.sort(keep.to(torch.int8), dim=1, descending=True, stable=True).indices
    width = max(1, int(keep.sum(1).amax()))
    order = order[:, :width]
    I = torch.cat([idx, new], 1).gather(1, order)
    V = torch.cat([vals, torch.zeros_like(new, dtype=vals.dtype)], 1).gather(1, order)
    ok = keep.gather(1, order)
    return I.masked_fill(~ok, 0), V.masked_fill(~ok, 0.0), ok


def _compact(idx: torch.Tensor, vals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop zero entries (the width shrinks to the widest support)."""
    width = max(1, int((vals > 0).sum(1).amax()))
    v, order = vals.topk(width, dim=1)
    return idx.gather(1, order).masked_fill(v <= 0, 0), v.clamp_min(0.0)


def _solve_restricted(screen: Screen, kind: _Kind, X: torch.Tensor, rows: torch.Tensor, I: torch.Tensor,
                      V: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """Exact solutions of the problems restricted to the working sets ``I`` (rows ``rows``), in chunks."""
    n, w = I.shape
    out = torch.empty_like(V)
    step = max(1, _ELEMS // max(1, w * max(w, screen.M)))
    for a in range(0, n, step):
        sl = slice(a, a + step)
        Dw = screen.D64T[I[sl]] * ok[sl, :, None]
        G = Dw @ Dw.transpose(1, 2)
        r = rows[sl]
        b = torch.bmm(Dw, X[r, :, None])[..., 0]
        if kind.tau is None:
            out[sl] = restricted_nnqp(G, b - kind.lam[r, None], V[sl], ok[sl], screen.M)
        else:
            out[sl], kind.lam[r] = _restricted_l1(G, b, kind.tau[r], V[sl], ok[sl], kind.lam[r], screen.M)
    return out


def _outer(D: torch.Tensor, X: torch.Tensor, kind: _Kind, idx: torch.Tensor, vals: torch.Tensor, tol: float,
           max_rounds: int, n_screen: int, max_add: int, width_cap: int | None) -> SparseResult:
    """The outer loop shared by both problems (see the module docstring)."""
    screen = Screen(D)
    n = X.shape[0]
    # An optimum needs at most M atoms (generically); see _SLACK.
    cap = min(screen.N, screen.M + _SLACK) if width_cap is None else width_cap
    idx, vals = _compact(idx, vals)
    if idx.shape[1] > cap:  # a start wider than any optimum: keep its largest codes
        idx, vals = _compact(idx[:, :cap], vals[:, :cap])
    P = torch.full((n,), math.inf, dtype=torch.float64, device=X.device)
    gap = torch.full_like(P, math.inf)
    live = torch.arange(n, device=X.device)
    k = n_screen
    adds = min(16, max_add)  # atoms added per round: doubled while samples fill their quota
    rounds = 0
    for rounds in range(max_rounds + 1):
        R = screen.residual(X[live], idx[live], vals[live])
        cand, c, bound = screen.correlations(R, max(k, adds))
        cmax = torch.maximum(c.amax(1), bound)
        Pl, gl = kind.certify(live, (R * R).sum(1), (X[live] * R).sum(1), vals[live].sum(1), cmax)
        # A sample whose restricted solve no longer lowers its objective and that has no atom to
        # add is as exact as the float64 arithmetic makes it: it stops with its certificate.
        settled = Pl >= P[live] - 1e-14 * Pl.abs()
        P[live], gap[live] = Pl, gl
        go = gl > tol
        if rounds == max_rounds or not go.any():
            break
        live, cand, c, bound, settled = live[go], cand[go], c[go], bound[go], settled[go]
        thr = kind.lam[live]
        # Violators among the screened atoms, not already coded, the worst first.
        coded = ((cand[:, :, None] == idx[live][:, None, :]) & (vals[live] > 0)[:, None, :]).any(2)
        score = torch.where((c > thr[:, None] * (1 + 1e-12)) & ~coded, c, -math.inf)
        top, pos = score.topk(min(adds, score.shape[1]), dim=1)
        room = (cap - (vals[live] > 0).sum(1, keepdim=True)).clamp_min(0)
        take = torch.isfinite(top) & (torch.arange(top.shape[1], device=X.device) < room)
        stuck = ~take.any(1)
        if bool((take.sum(1) == adds).any()):  # wide optima: reach them in fewer rounds
            adds = min(max_add, 2 * adds)
        blind = stuck & (bound > thr)  # the screen saw too few atoms: look further next round
        if bool(blind.any()) and k < screen.N:
            k = min(screen.N, 2 * k)
        elif bool((stuck & settled).all()):
            break
        keep = ~(stuck & settled & ~blind)
        live, cand, c, top, pos, take = live[keep], cand[keep], c[keep], top[keep], pos[keep], take[keep]
        if live.numel() == 0:
            break
        new = cand.gather(1, pos)
        I, V, ok = _pad_cat(idx[live], vals[live], new, take)
        S = _solve_restricted(screen, kind, X, live, I, V, ok)
        I, S = _compact(I, S)
        if I.shape[1] > idx.shape[1]:
            pad = I.shape[1] - idx.shape[1]
            idx = torch.cat([idx, idx.new_zeros(n, pad)], 1)
            vals = torch.cat([vals, vals.new_zeros(n, pad)], 1)
        idx[live], vals[live] = 0, 0.0
        idx[live, : I.shape[1]], vals[live, : I.shape[1]] = I, S
    idx, vals = _compact(idx, vals)
    return SparseResult(idx, vals, P, gap, kind.lam.clone(), screen.N, rounds, bool((gap <= tol).all()))


def _setup(D: Any, X: Any, init: Any, idx: Any, vals: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """float64 dictionary, data and compact start (from dense ``init`` or from ``idx``/``vals``; zeros if neither)."""
    Dt = check_dictionary(real_array("D", D)).detach().double()
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

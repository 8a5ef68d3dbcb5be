"""The non-negative LASSO, its per-sample certificates, and the set-up every solver shares.

Every solver minimises, sample by sample, batched::

    P(s) = 0.5 * ||x - D s||^2 + lam * sum(s),   s >= 0

with the dictionary ``D`` (``M x N``) fixed.

Certificates
------------
For any ``theta`` with ``D^T theta <= lam`` (component-wise) the dual value
``x.theta - 0.5 ||theta||^2`` is a lower bound on ``min P``. We take ``theta``
as the residual ``x - D s`` scaled into the dual-feasible set, so
``duality_gap = P(s) - dual(theta) >= P(s) - min P`` bounds each sample's
suboptimality. Every solver returns the gap **per sample** (a length-``n``
tensor, absolute, not relative), always evaluated in float64 whatever the
working precision, so it is a certificate for the codes actually returned.

Correlations ``d_j.r`` are computed in floating point, so "``<= lam``" is
decided up to their rounding: a largest correlation within
:func:`rounding_slack` of ``lam`` counts as feasible (the residual itself is
the dual point) instead of scaling the residual by ``lam / max_j d_j.r``. For
``lam > 0`` the two differ by a factor within rounding of 1; at ``lam = 0``
the scale would be 0 and the gap the whole objective whenever an optimum with
a nonzero residual has a support correlation of ``+1e-17`` (rounding decided
whether non-negative least squares was certified). The gap then understates
suboptimality by at most the slack times ``sum(s*)``, rounding-level as is the
rest of the certificate's arithmetic.

Set-up
------
:class:`Atoms` validates a dictionary once and keeps what every solve under it
reuses (float64 copy, Gram matrix, Lipschitz constant, FISTA's step matrix);
:class:`Problem` adds one batch of observations. :class:`gapbound.inference.SparseCoder`
keeps one :class:`Atoms` across calls; the plain functions build a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..utils.validation import as_tensor, check_data, check_dictionary, check_float

__all__ = ["InferenceResult", "objective", "duality_gap", "lipschitz", "Atoms", "Problem", "BACKENDS", "GRAM_MAX_N"]

GRAM_MAX_N = 4096  # the float64 Gram matrix is kept only up to this many atoms (128 MiB)
BACKENDS = ("auto", "numba", "torch")


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
        Iterations run (the maximum over samples; 0 for the reference solvers
        and when the active set certified every sample by itself).
    converged : bool
        Whether every sample's gap fell below ``tol``.
    """

    codes: torch.Tensor
    duality_gap: torch.Tensor
    objective: torch.Tensor
    n_iter: int
    converged: bool


def objective(D: torch.Tensor, X: torch.Tensor, S: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-sample non-negative LASSO objective ``0.5 ||x - D s||^2 + lam * sum(s)``."""
    R = X - S @ D.T
    return 0.5 * (R * R).sum(1) + lam * S.sum(1)


def rounding_slack(d_max: torch.Tensor, x_norm: torch.Tensor, weighted_l1: torch.Tensor, M: int, N: int,
                   eps: float = float(np.finfo(np.float64).eps)) -> torch.Tensor:
    """Rounding bound on a computed correlation ``d_j.(x - D s)``: ``2 (M + N) eps ||d_j|| (||x|| + sum_l ||d_l|| s_l)``.

    ``d_max`` is ``||d_j||`` of the atom with the largest correlation, ``weighted_l1``
    ``sum_l ||d_l|| s_l`` (per sample). The compiled kernel uses the same formula.
    """
    return 2.0 * (M + N) * eps * d_max * (x_norm + weighted_l1)


def gap_terms(rr: torch.Tensor, xr: torch.Tensor, corr: torch.Tensor, l1: torch.Tensor, lam: float,
              slack: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(objective, gap) per sample from ``||r||^2``, ``x.r``, ``max_j d_j.r`` and ``sum(s)``.

    The dual point is the residual scaled into the feasible set ``D^T theta <= lam``;
    with ``slack`` (:func:`rounding_slack`), a largest correlation within it of ``lam``
    counts as feasible (see the module docstring).
    """
    over = corr > lam if slack is None else ~(corr <= lam + slack)  # (a NaN slack scales)
    scale = torch.where(over, lam / corr.clamp_min(torch.finfo(rr.dtype).tiny), torch.ones_like(corr))
    primal = 0.5 * rr + lam * l1
    dual = scale * xr - 0.5 * scale * scale * rr
    return primal, (primal - dual).clamp_min(0.0)


def gap_from_residual(X: torch.Tensor, R: torch.Tensor, C: torch.Tensor, S: torch.Tensor, lam: float,
                      norms: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(objective, gap) per sample from the residual ``R = X - S D^T`` and correlations ``C = R D``.

    With the column norms ``norms`` of ``D``, correlations within rounding of ``lam`` count as feasible.
    """
    cmax, jmax = C.max(1)
    slack = None
    if norms is not None:
        slack = rounding_slack(norms[jmax], X.norm(dim=1), S @ norms, X.shape[1], C.shape[1], torch.finfo(R.dtype).eps)
    return gap_terms((R * R).sum(1), (X * R).sum(1), cmax, S.sum(1), lam, slack)


def duality_gap(D: torch.Tensor, X: torch.Tensor, S: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-sample duality gap of non-negative codes ``S`` (see the module docstring)."""
    R = X - S @ D.T
    return gap_from_residual(X, R, R @ D, S, lam, D.norm(dim=0))[1]


def lipschitz(D: torch.Tensor) -> float:
    """Lipschitz constant ``||D||_2^2`` of the smooth part's gradient ``D^T (D s - x)``.

    The largest eigenvalue of the smaller Gram matrix (``D D^T`` or ``D^T D``): for
    a 384 x 8448 dictionary this takes ~0.3 s where a full SVD takes ~5 s.
    """
    D = D.detach().double()
    G = D @ D.T if D.shape[0] <= D.shape[1] else D.T @ D
    return float(torch.linalg.eigvalsh(G)[-1])


def real_array(name: str, value: Any) -> Any:
    """``value`` unchanged after refusing complex, integer and boolean arrays (which would be silently cast)."""
    dt = value.dtype if isinstance(value, (torch.Tensor, np.ndarray)) else None
    if dt is None and isinstance(value, (list, tuple)):
        dt = np.asarray(value).dtype
    if dt is None:
        return value
    if (dt.is_complex if isinstance(dt, torch.dtype) else np.issubdtype(dt, np.complexfloating)):
        raise TypeError(f"{name} must be real, got a complex array ({dt}); pass its real part explicitly")
    if not (dt.is_floating_point if isinstance(dt, torch.dtype) else np.issubdtype(dt, np.floating)):
        raise TypeError(f"{name} must be a floating-point array, got dtype {dt}; convert it, e.g. {name}.astype(float)")
    return value


def check_backend(backend: str) -> str:
    """Validate the active set's ``backend`` argument."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


class Atoms:
    """A validated dictionary plus the float64 quantities every solve under it reuses (formed on first use).

    Parameters
    ----------
    D : array-like
        ``M x N`` dictionary, real, finite, no zero column.
    dtype : torch.dtype, optional
        Working precision of the iterates (default: ``D``'s if floating, else float32).
    """

    def __init__(self, D: Any, dtype: torch.dtype | None = None):
        D = check_dictionary(real_array("D", D))
        if dtype is None:
            dtype = D.dtype if D.dtype in (torch.float32, torch.float64) else torch.float32
        elif dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.dtype, self.device = dtype, D.device
        self.D = D.detach().to(dtype)
        self.D64 = D.detach().double()
        self.M, self.N = self.D.shape
        # Gram form costs 2nN^2 per gradient, factored 4nMN: pick the cheaper.
        self.use_gram = self.N <= 2 * self.M
        self._G64: torch.Tensor | None = None
        self._rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._L: float | None = None
        self._step_matrix: torch.Tensor | None = None
        self._gram: torch.Tensor | None = None
        self._norms: torch.Tensor | None = None

    @property
    def norms(self) -> torch.Tensor:
        """float64 column norms ``||d_j||`` (for :func:`rounding_slack`)."""
        if self._norms is None:
            self._norms = self.D64.norm(dim=0)
        return self._norms

    @property
    def G64(self) -> torch.Tensor | None:
        """float64 Gram matrix ``D^T D`` when it fits comfortably in memory (``N <= GRAM_MAX_N``), else None.

        On the CPU it completes the row buffer of :meth:`gram_rows` (rows formed so far are kept).
        """
        if self._G64 is None and self.N <= GRAM_MAX_N:
            if self.device.type != "cpu":
                self._G64 = self.D64.T @ self.D64
            else:
                G, have, DT = self.gram_rows()
                missing = (~have).nonzero().flatten()
                if missing.numel() == self.N:
                    torch.mm(DT, self.D64, out=G)
                elif missing.numel():
                    G[missing] = DT[missing] @ self.D64
                have.fill_(True)
                self._G64 = G
        return self._G64

    @property
    def gram_complete(self) -> bool:
        """Whether the full Gram matrix has been formed."""
        return self._G64 is not None

    def gram_rows(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(float64 ``N x N`` buffer, bool flags of its formed rows, contiguous ``D^T``) for the compiled active set.

        The buffer is allocated untouched (pages are mapped when a row is first
        written), so a few samples under a wide dictionary pay for the rows of
        their working sets only, not for the whole ``2 M N^2``-FLOP Gram matrix.
        """
        if self._rows is None:
            self._rows = (torch.empty(self.N, self.N, dtype=torch.float64), torch.zeros(self.N, dtype=torch.bool),
                          self.D64.T.contiguous())
        return self._rows

    @property
    def lipschitz(self) -> float:
        """``||D||_2^2`` (see :func:`lipschitz`)."""
        if self._L is None:
            self._L = lipschitz(self.D64)
        return self._L

    def gram(self) -> torch.Tensor:
        """Working-precision Gram matrix ``D^T D``."""
        if self._gram is None:
            self._gram = self.D.T @ self.D
        return self._gram

    def step_matrix(self) -> torch.Tensor:
        """``I - G / L`` in working precision: one gradient step in Gram form is one product with it."""
        if self._step_matrix is None:
            self._step_matrix = torch.eye(self.N, dtype=self.dtype, device=self.device).sub_(self.gram(), alpha=1.0 / self.lipschitz)
        return self._step_matrix

    def resolve_backend(self, backend: str) -> str:
        """``"numba"`` or ``"torch"``: auto picks the compiled kernel on CPU when the Gram matrix is kept."""
        check_backend(backend)
        compiled_ok = self.device.type == "cpu" and self.N <= GRAM_MAX_N
        if backend == "numba" and not compiled_ok:
            raise ValueError(f"backend='numba' needs a CPU dictionary with at most {GRAM_MAX_N} atoms "
                             f"(got {self.N} atoms on {self.device}); use backend='torch' or 'auto'")
        if backend == "auto":
            return "numba" if compiled_ok else "torch"
        return backend


class Problem:
    """One batch of observations under :class:`Atoms`, with the float64 copies the certificates and the active set use.

    Parameters
    ----------
    atoms : Atoms
        The dictionary.
    X : array-like
        ``n x M`` observations.
    lam : float
        L1 weight ``>= 0``.
    init : array-like, optional
        ``n x N`` warm start (negative entries clipped); zeros if None.
    backend : str
        Active-set backend, ``"auto"``, ``"numba"`` or ``"torch"``.
    """

    def __init__(self, atoms: Atoms, X: Any, lam: float, init: Any = None, backend: str = "auto"):
        self.atoms = atoms
        self.dtype, self.device = atoms.dtype, atoms.device
        self.D, self.D64, self.M, self.N, self.use_gram = atoms.D, atoms.D64, atoms.M, atoms.N, atoms.use_gram
        self.backend = atoms.resolve_backend(backend)
        self.X = check_data(real_array("X", X), self.D, dtype=self.dtype, device=self.device).detach()
        self.lam = check_float("lam", lam, minimum=0.0)
        self.cold = init is None  # zero codes to start from
        self.n = self.X.shape[0]
        self.X64 = self.X.double() if self.dtype != torch.float64 else self.X
        if init is None:
            self.S0 = torch.zeros(self.n, self.N, dtype=self.dtype, device=self.device)
        else:
            S0 = as_tensor("init", real_array("init", init), dtype=self.dtype, device=self.device).detach()
            if S0.shape != (self.n, self.N):
                raise ValueError(f"init must have shape {(self.n, self.N)} (samples x atoms), got {tuple(S0.shape)}")
            if not torch.isfinite(S0).all():
                raise ValueError("init contains NaN or infinite values")
            self.S0 = S0.clamp_min(0.0)
        self._DtX64: torch.Tensor | None = None
        self._xx64: torch.Tensor | None = None

    @classmethod
    def build(cls, D: Any, X: Any, lam: float, init: Any = None, dtype: torch.dtype | None = None,
              backend: str = "auto") -> "Problem":
        """A problem under a dictionary that is not kept (the plain solver functions)."""
        check_backend(backend)
        return cls(D if isinstance(D, Atoms) else Atoms(D, dtype), X, lam, init, backend)

    @property
    def G64(self) -> torch.Tensor | None:
        """The dictionary's float64 Gram matrix (None beyond ``GRAM_MAX_N`` atoms)."""
        return self.atoms.G64

    @property
    def DtX64(self) -> torch.Tensor:
        """float64 ``X D`` (``n x N``), the linear term of the quadratic the active set solves."""
        if self._DtX64 is None:
            self._DtX64 = self.X64 @ self.D64
        return self._DtX64

    @property
    def xx64(self) -> torch.Tensor:
        """float64 ``||x||^2`` per sample."""
        if self._xx64 is None:
            self._xx64 = (self.X64 * self.X64).sum(1)
        return self._xx64

    def sparse_pays(self, width: int) -> bool:
        """Whether certificates of codes with at most ``width`` atoms per sample should use sparse products."""
        # Decided from the sizes alone; forms the Gram matrix only for batches that amortise it.
        return 256 <= self.N <= GRAM_MAX_N and 4 * width <= self.M and (self.atoms.gram_complete or self.gram_pays)

    @property
    def gram_pays(self) -> bool:
        """Whether this batch is large enough to form the whole Gram matrix (else only the rows it needs)."""
        return self.n * 256 >= self.N

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
        P, gap = gap_from_residual(X, R, C, S, self.lam, self.atoms.norms)
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
        norms = self.atoms.norms
        cmax, jmax = C.max(1)
        slack = rounding_slack(norms[jmax], xx.sqrt(), (vals * norms[idx]).sum(1), self.M, self.N)
        P, gap = gap_terms(rr, xx - sB, cmax, vals.sum(1), self.lam, slack)
        return P, gap, C

    def result(self, S: torch.Tensor, n_iter: int, tol: float) -> InferenceResult:
        """Certify codes ``S`` and wrap them."""
        P, gap, _ = self.certify(S)
        return InferenceResult(S, gap, P, n_iter, bool((gap <= tol).all()))

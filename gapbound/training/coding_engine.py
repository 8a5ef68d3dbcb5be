"""Sparse coding in the batched engine: ``B`` per-seed dictionaries and their per-sample codes trained as one stack.

:class:`~gapbound.models.coding.SparseCoding` (synthetic ``unknown`` setting)
infers every minibatch sample's code under the current dictionary, then takes
one Adam step on the dictionary with the codes fixed. Alone, the inference is
:func:`gapbound.inference.solve` (active set from the sample's stored code,
FISTA, active-set finish): the exact non-negative LASSO solution wherever the
active set certifies it. Its per-call overhead (validation, problem set-up,
compiled-kernel dispatch) is paid once per (seed, step): ~5 CPU ms a step at
N = 16 (measured 184-207 steps/s per model) against microseconds of arithmetic.

Here the inference of all ``B`` models runs as one batched active set
(:func:`batched_nn_lasso`) from each sample's stored code: on the CPU the
compiled :func:`~gapbound.training.coding_kernel.warm_active_set` (sample by
sample, exact Cholesky solves on the support; 3.8-5.4x the torch version's
speed per step's inference, ``docs/scale.md``), on other devices :func:`_active_set` (every round
solves all open samples' support systems as one batch of small dense float64
systems). Both suit small dictionaries (at most 256 atoms: an ``N x N`` Gram
matrix per model). Samples they do not certify (KKT in float64) go to
``solve`` per model, as alone. All return the unique minimiser up to rounding,
so each model's run equals its one-at-a-time run up to floating-point order
(``tests/test_engine.py``). The library's batched
:func:`gapbound.inference.active_set.lawson_hanson` in place of
:func:`_active_set` gave the same codes but took 1.9x the time per step's
inference, and its compiled :func:`gapbound.inference.compiled.active_set`
4.1-4.4x the kernel's (measured; ``docs/scale.md`` says why), so neither is used here.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .batches import Batch
from .coding_kernel import warm_active_set
from .objectives import l1_penalty, l1_to_lam

__all__ = ["batched_nn_lasso", "can_batch_coding", "CodingStack"]

_MAX_ATOMS = 256  # the exact finish forms an N x N system per sample


def can_batch_coding(model: nn.Module) -> bool:
    """Whether ``model`` is a :class:`~gapbound.models.coding.SparseCoding` the engine can stack.

    Needs stored per-sample codes (``n_samples`` given), FISTA inference, a fixed
    ``lam`` (no L0 target), a learned dictionary and at most 256 atoms.
    """
    from ..models.coding import SparseCoding  # run time only: training must not import models at import time

    return (isinstance(model, SparseCoding) and model.codes is not None and model.method == "fista"
            and model.target_l0 is None and model.dictionary.weight.requires_grad and model.dictionary.N <= _MAX_ATOMS)


_RIDGE = 1e-10  # keeps support systems positive definite (module docstring of _active_set)


def _tol(lam: float) -> float:
    """How far above ``lam`` an off-support correlation may be in a certified solution (rounding)."""
    return 1e-9 * max(1.0, lam)


def _solve_support(P: torch.Tensor, G: torch.Tensor, first: torch.Tensor, DtX: torch.Tensor, lam: float) -> torch.Tensor:
    """Solve ``G_PP s_P = (D^T x)_P - lam`` (zero off ``P``) for every sample, ``n x N``.

    ``G``: every model's ``N x N`` Gram matrix (ridge included), flattened; ``first``: the offset of each
    sample's in it. The systems are compacted to the widest support ``k`` (support atoms first, identity
    for the padding): batched LU costs per matrix, and ``k`` (at most about ``M``) is far below ``N``.
    """
    n, N = P.shape
    k = int(P.sum(-1).max()) if n else 0
    if k == 0:
        return torch.zeros_like(DtX)
    on, order = P.to(torch.uint8).topk(k, dim=-1, sorted=False)  # each sample's support atoms first (distinct indices)
    on = on.bool()
    A = G[first[:, None, None] + order[:, :, None] * N + order[:, None, :]]
    A = torch.where(on[:, :, None] & on[:, None, :], A, torch.eye(k, dtype=G.dtype, device=G.device))
    sol = torch.linalg.solve_ex(A, torch.where(on, DtX.gather(1, order) - lam, 0.0))[0]  # padding solves to 0
    return torch.zeros_like(DtX).scatter_(1, order, sol)


def _active_set(S: torch.Tensor, G: torch.Tensor, DtX: torch.Tensor, lam: float,
                rounds: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lawson-Hanson active set for ``min_{s >= 0} 0.5 s^T G s - s^T (D^T x - lam)`` from ``S`` (float64), samples in lockstep.

    ``S``, ``DtX``: ``B x n x N`` (model ``b``'s samples); ``G``: ``B x N x N`` Gram matrices. Each
    round solves the support systems of the samples still open at once. A
    sample whose solution leaves the non-negative orthant moves from its
    feasible point towards it until the first coordinate reaches zero, and that
    atom leaves the support; otherwise it takes the solution and, if some atom
    off the support violates ``(D^T (x - D s))_j <= lam``, adds the worst one;
    with no violation it is certified (KKT). With more atoms than measurements
    ``G_PP`` is singular; the tiny ridge makes its solution huge along the null
    direction of ``D_P`` with the sign that lowers the objective, so the
    boundary step above is the pivot that exchanges an atom. Returns (codes
    ``B x n x N``, certified per sample ``B x n``); uncertified samples keep their last feasible point.
    """
    B, n, N = S.shape
    G = G + _RIDGE * torch.eye(N, dtype=G.dtype, device=G.device)
    flat_G = G.reshape(-1)
    S = S.clamp_min(0.0)
    flat_S, flat_DtX = S.view(B * n, N), DtX.reshape(B * n, N)
    P = flat_S > 0
    tol = _tol(lam)
    ok = torch.zeros(B * n, dtype=torch.bool, device=S.device)
    live = torch.arange(B * n, device=S.device)  # samples still open: only they are solved again
    first = (N * N) * live.div(n, rounding_mode="floor")  # each sample's Gram matrix in flat_G
    every = True  # the first round takes every sample: views, not gathered copies

    def rows(t: torch.Tensor) -> torch.Tensor:
        return t if every else t[live]

    for _ in range(rounds):
        s, p, c = rows(flat_S), rows(P), rows(flat_DtX)
        sol = _solve_support(p, flat_G, rows(first), c, lam)
        bad = p & (sol <= 0)
        back = bad.any(-1, keepdim=True)
        ratio = torch.where(bad, s / (s - sol).clamp_min(1e-300), float("inf"))  # step to the boundary
        alpha = ratio.min(-1, keepdim=True).values.clamp(0.0, 1.0)
        moved = (s + alpha * (sol - s)).masked_fill_(bad & (ratio <= alpha), 0.0).clamp_min_(0.0)
        s = torch.where(back, moved, sol)
        # the KKT gradient D^T x - G s of every sample: B products of n x N by N x N beat n' products of 1 x N by N x N
        if every:
            flat_S.copy_(s)
        else:
            flat_S[live] = s
        worst, j = torch.where(p, float("-inf"), rows((DtX - torch.bmm(S, G)).view(B * n, N)) - lam).max(-1)
        done = ~back.squeeze(-1) & (worst <= tol)
        p = torch.where(back, s > 0, p | (torch.nn.functional.one_hot(j, N).bool() & ~done.unsqueeze(-1)))
        if every:
            P.copy_(p)
        else:
            P[live] = p
        ok[live[done]] = True
        live, every = live[~done], False
        if not live.numel():
            break
    return S, ok.view(B, n)


@torch.no_grad()
def batched_nn_lasso(D: torch.Tensor, X: torch.Tensor, lam: float, init: torch.Tensor, iters: int,
                     rounds: int | None = None) -> tuple[torch.Tensor, int]:
    """``argmin_{s >= 0} 0.5 ||x - D_b s||^2 + lam ||s||_1`` for every sample of every model.

    The active set from the warm start (on the CPU the compiled
    :func:`~gapbound.training.coding_kernel.warm_active_set`, elsewhere the
    batched :func:`_active_set`) certifies (KKT conditions in float64) nearly
    every sample in training, where each stored code's support is nearly
    right; the samples it does not certify
    (degenerate supports, e.g. more atoms than measurements) are solved per
    model by :func:`gapbound.inference.solve` exactly as
    :class:`~gapbound.models.coding.SparseCoding` does alone (FISTA for
    ``iters`` iterations from the warm start with the exact finish).

    Parameters
    ----------
    D : torch.Tensor
        ``B x M x N`` dictionaries.
    X : torch.Tensor
        ``B x n x M`` samples (model ``b``'s under ``D[b]``).
    lam : float
        L1 weight.
    init : torch.Tensor
        ``B x n x N`` warm start.
    iters : int
        FISTA iterations of the per-model fallback.
    rounds : int, optional
        Active-set rounds (default ``2 N``).

    Returns
    -------
    codes : torch.Tensor
        ``B x n x N`` in ``X``'s dtype.
    fallback : int
        Samples that went to the per-model solver.
    """
    from ..inference import solve  # run time: the inference package imports training's

    B, n, N = init.shape
    rounds = 2 * N if rounds is None else rounds
    if D.device.type == "cpu":  # the compiled kernel (3.8-5.4x the torch version's speed, docs/scale.md)
        codes = torch.zeros(B, n, N, dtype=X.dtype)
        ok = torch.zeros(B, n, dtype=torch.bool)
        # contiguous inputs: one compiled signature (a minibatch is a strided view; each layout compiles anew, ~3-8 s)
        D_, X_, init_ = (t.detach().contiguous().numpy() for t in (D, X, init))
        warm_active_set(D_, X_, init_, float(lam), _tol(lam), rounds, codes.numpy(), ok.numpy())
    else:
        D64 = D.double()
        G64 = torch.bmm(D64.transpose(1, 2), D64)
        codes, ok = _active_set(init.double(), G64, torch.bmm(X.double(), D64), lam, rounds)
        codes = codes.to(X.dtype)
    bad = ~ok
    fallback = int(bad.sum())
    for b in (bad.any(-1).nonzero().flatten().tolist() if fallback else []):
        rows = bad[b].nonzero().flatten()
        codes[b, rows] = solve(D[b], X[b, rows], lam, method="fista", init=init[b, rows], max_iter=iters, tol=0.0).codes
    return codes, fallback


class CodingStack:
    """``B`` :class:`~gapbound.models.coding.SparseCoding` models as one flat dictionary parameter and one code buffer.

    The interface :func:`~gapbound.training.engine.train_batched` uses for every stack:
    ``flat`` (with ``.grad``), ``shapes``, ``views``, ``n_latents``, ``step_grads``,
    ``after_step``, ``load``, ``store``, ``index_of``, ``params_of``.
    """

    def __init__(self, models: Sequence[nn.Module]):
        self.models = list(models)
        if not all(can_batch_coding(m) for m in self.models):
            raise ValueError("the batched engine trains SparseCoding models with stored codes, FISTA inference, fixed lam "
                             "and a learned dictionary of at most 256 atoms; use gapbound.training.train")
        shapes = {(tuple(m.dictionary.weight.shape), tuple(m.codes.shape), m.inner_iter) for m in self.models}
        if len(shapes) != 1:
            raise ValueError(f"models must share dictionary shape, training-set size and inner_iter, got {sorted(shapes)}")
        with torch.no_grad():
            D = torch.stack([m.dictionary.weight.detach() for m in self.models])
            self.flat = nn.Parameter(D.flatten().clone())
            self.flat.grad = torch.zeros_like(self.flat)
            self.codes = torch.stack([m.codes for m in self.models])
        self.shapes = [D.shape]
        self.params = self.views(self.flat)
        self.grads = self.views(self.flat.grad)
        self.n_latents = D.shape[-1]
        self.inner_iter = self.models[0].inner_iter
        self.fallback = 0  # samples the batched active set left to the per-model solver (reported by benchmarks)
        self.lam = float(self.models[0].lam)  # the LASSO weight of the last step, given to a model when it is loaded

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """The stacked dictionaries (``B x M x N``) inside a flat buffer laid out like :attr:`flat`."""
        return [flat.view(self.shapes[0])]

    def params_of(self, model: nn.Module) -> list[nn.Parameter]:
        return [model.dictionary.weight]

    @torch.no_grad()
    def load(self, b: int) -> nn.Module:
        """Model ``b`` with its stacked dictionary and codes copied in."""
        m = self.models[b]
        m.dictionary.weight.copy_(self.params[0][b])
        m.codes.copy_(self.codes[b])
        if not math.isnan(self.lam):
            m.lam.fill_(self.lam)
        return m

    @torch.no_grad()
    def store(self, b: int) -> None:
        """Copy model ``b``'s dictionary and codes back into the stack."""
        self.params[0][b].copy_(self.models[b].dictionary.weight)
        self.codes[b].copy_(self.models[b].codes)

    def index_of(self, p: nn.Parameter, b: int) -> int:
        if p is not self.models[b].dictionary.weight:
            raise ValueError("a sparse-coding model's only parameter is its dictionary")
        return 0

    @torch.no_grad()
    def step_grads(self, batch: Batch, l1: float, with_loss: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Infer the batch's codes (stored back), write ``dL/dD = 2 r^T c / (b M)`` with ``r = c D^T - x``; losses, codes."""
        x, _, idx = batch
        if idx is None:
            raise ValueError("sparse coding with per-sample codes needs the dataset row indices of every batch")
        D = self.params[0]
        lam = l1_to_lam(l1, D.shape[1])
        # one index_select / index_copy_ on the flattened buffer (a gather with an expanded index cost 10x more)
        B, n, N = self.codes.shape
        flat = self.codes.view(B * n, N)
        rows = (idx + n * torch.arange(B, device=idx.device)[:, None]).flatten()
        codes, fallback = batched_nn_lasso(D, x, lam, flat.index_select(0, rows).view(B, -1, N), self.inner_iter)
        self.fallback += fallback
        flat.index_copy_(0, rows, codes.reshape(-1, N))
        r = torch.baddbmm(x, codes, D.transpose(1, 2), beta=-1)
        losses = r.square().mean((1, 2)) + l1 * l1_penalty(codes) if with_loss else None
        torch.bmm(r.transpose(1, 2), codes, out=self.grads[0]).mul_(2.0 / (x.shape[1] * x.shape[2]))
        self.lam = lam
        return losses, codes

    @torch.no_grad()
    def after_step(self) -> None:
        D = self.params[0]
        D.div_(D.norm(dim=1, keepdim=True).clamp_min(1e-12))

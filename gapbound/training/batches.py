"""Minibatches as pure functions of the step index (so a resumed run replays an uninterrupted one)."""

from __future__ import annotations

from typing import Callable

import torch

from ..synthetic.data import CodeStream, make_generator
from ..utils.validation import check_int

__all__ = ["Batch", "BatchFn", "tensor_batches", "stream_batches"]

Batch = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]
"""``(x, s, idx)``: inputs, true codes (known Z only, else None), dataset row indices (or None)."""

BatchFn = Callable[[int], Batch]
"""Maps a step index to its minibatch; must be deterministic for exact resume."""


def tensor_batches(X: torch.Tensor, S: torch.Tensor | None = None, batch_size: int | None = None, seed: int = 0) -> BatchFn:
    """Minibatches from in-memory tensors: the full set (``batch_size=None``) or shuffled epochs.

    Epoch ``e`` visits the rows in a permutation drawn from ``(seed, e)``, so
    the batch of step ``i`` is a pure function of ``i``: reproducible and resumable.

    Parameters
    ----------
    X : torch.Tensor
        ``n x M`` inputs.
    S : torch.Tensor, optional
        ``n x N`` true codes (known-Z training).
    batch_size : int, optional
        Rows per batch; ``None`` (or ``>= n``) gives the full set every step.
    seed : int
        Seed of the epoch permutations.

    Returns
    -------
    callable
        ``batches(step) -> (x, s, idx)``.
    """
    n = X.shape[0]
    if S is not None and S.shape[0] != n:
        raise ValueError(f"X and S must have the same number of rows, got {n} and {S.shape[0]}")
    if batch_size is None or batch_size >= n:
        idx = torch.arange(n, device=X.device)
        return lambda i: (X, S, idx)
    check_int("batch_size", batch_size, minimum=1)
    per_epoch = n // batch_size
    cache: dict[int, torch.Tensor] = {}

    def fn(i: int) -> Batch:
        epoch, k = divmod(i, per_epoch)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = epoch_permutation(n, seed, epoch).to(X.device)
        rows = cache[epoch][k * batch_size : (k + 1) * batch_size]
        return X[rows], None if S is None else S[rows], rows

    return fn


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The row order of epoch ``epoch`` in :func:`tensor_batches` (shared with the batched engine)."""
    return torch.randperm(n, generator=make_generator(seed, 7, epoch))


def stream_batches(stream: CodeStream, device: torch.device | str = "cpu") -> BatchFn:
    """Minibatches of a :class:`~gapbound.synthetic.data.CodeStream` (step ``i`` -> batch ``i``), for known-Z training."""

    def fn(i: int) -> Batch:
        X, S = stream.batch(i, device)
        return X, S, None

    return fn

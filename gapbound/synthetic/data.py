"""The paper's generative model: exactly-K-sparse non-negative codes through a random dictionary.

A code ``s`` in R^N has exactly ``K`` non-zeros at positions drawn uniformly
without replacement, with amplitudes ``|g|``, ``g ~ Normal(0, 1)``. The
dictionary ``D`` in R^{M x N} has i.i.d. Gaussian entries and unit-norm
columns; observations are ``x = D s`` (noise-free).

Everything is a pure function of integer seeds. Batches are indexed: batch
``i`` of a stream is derived from ``(seed, stream, i)`` alone, so a dataset of
any size can be streamed without materialising it, a resumed run sees exactly
the batches an uninterrupted run would, and the result does not depend on the
device it is moved to (generation always happens on the CPU).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
import torch

from ..utils.validation import check_int, check_sparsity

__all__ = [
    "SyntheticConfig",
    "SyntheticProblem",
    "make_generator",
    "random_dictionary",
    "sample_codes",
    "make_problem",
    "CodeStream",
]

# Distinct stream identifiers so that the dictionary, train, test and minibatch
# draws of one seed never share random numbers.
_STREAM_IDS = {"dictionary": 0, "train": 1, "test": 2, "batches": 3}


def make_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``(seed, *keys)`` via ``numpy.random.SeedSequence``.

    SeedSequence hashes the tuple, so nearby seeds and keys give independent streams.
    """
    check_int("seed", seed, minimum=0)
    state = np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(2, dtype=np.uint32)
    g = torch.Generator(device="cpu")
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


def random_dictionary(M: int, N: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gaussian ``M x N`` dictionary with unit-norm columns.

    Parameters
    ----------
    M, N : int
        Measurements (rows) and sources (columns).
    seed : int
        Seed; the same seed always gives the same dictionary.
    dtype : torch.dtype
        Output dtype.

    Returns
    -------
    torch.Tensor
        ``M x N`` on the CPU, every column of Euclidean norm 1.
    """
    check_int("M", M, minimum=1)
    check_int("N", N, minimum=1)
    g = make_generator(seed, _STREAM_IDS["dictionary"], M, N)
    D = torch.randn(M, N, generator=g, dtype=torch.float64)
    return (D / D.norm(dim=0, keepdim=True)).to(dtype)


def sample_codes(n: int, N: int, K: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Draw ``n`` codes with exactly ``K`` non-zeros of amplitude ``|Normal(0, 1)|``.

    The support is the top-K of i.i.d. uniforms, i.e. a uniform K-subset. The
    amplitudes are redrawn where ``|g|`` underflows to 0 so that every code has
    exactly K non-zeros.
    """
    check_int("n", n, minimum=0)
    check_sparsity(N, 1, K)
    support = torch.rand(n, N, generator=generator).topk(K, dim=1).indices
    amp = torch.randn(n, K, generator=generator, dtype=torch.float64).abs()
    amp = torch.where(amp > 0, amp, torch.full_like(amp, 1e-3))
    S = torch.zeros(n, N, dtype=torch.float64)
    S.scatter_(1, support, amp)
    return S.to(dtype)


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and seed of a synthetic problem (paper defaults: N=16, M=8, K=3, 1024/1024 samples)."""

    N: int = 16
    M: int = 8
    K: int = 3
    n_train: int = 1024
    n_test: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        check_sparsity(self.N, self.M, self.K)
        check_int("n_train", self.n_train, minimum=1)
        check_int("n_test", self.n_test, minimum=1)
        check_int("seed", self.seed, minimum=0)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SyntheticProblem:
    """A dictionary with materialised train and test codes and observations (rows are samples)."""

    config: SyntheticConfig
    D: torch.Tensor
    S_train: torch.Tensor
    X_train: torch.Tensor
    S_test: torch.Tensor
    X_test: torch.Tensor

    def to(self, device: torch.device | str) -> "SyntheticProblem":
        """Copy every tensor to ``device``."""
        return SyntheticProblem(
            self.config, *(t.to(device) for t in (self.D, self.S_train, self.X_train, self.S_test, self.X_test))
        )


def make_problem(config: SyntheticConfig) -> SyntheticProblem:
    """Materialise the dictionary and the train/test splits of ``config``."""
    D = random_dictionary(config.M, config.N, config.seed)
    S_tr = sample_codes(config.n_train, config.N, config.K, make_generator(config.seed, _STREAM_IDS["train"]))
    S_te = sample_codes(config.n_test, config.N, config.K, make_generator(config.seed, _STREAM_IDS["test"]))
    return SyntheticProblem(config, D, S_tr, S_tr @ D.T, S_te, S_te @ D.T)


class CodeStream:
    """An indexable, endless stream of ``(X, S)`` minibatches from the generative model.

    Batch ``i`` depends only on ``(seed, i)``: streaming 500,000 x 1000 codes
    needs memory for one batch, and resuming at step ``i`` replays the exact
    sequence of an uninterrupted run.

    Parameters
    ----------
    D : torch.Tensor
        ``M x N`` dictionary.
    K : int
        Active sources per code.
    batch_size : int
        Rows per batch.
    seed : int
        Stream seed.
    n_samples : int, optional
        Size of the finite training set the stream cycles over (e.g. the
        paper's 500,000); batch ``i`` covers samples ``[i*B, (i+1)*B) mod
        n_samples``, each sample being a pure function of its index. ``None``
        draws fresh samples for every batch.
    """

    def __init__(self, D: torch.Tensor, K: int, batch_size: int, seed: int = 0, n_samples: int | None = None):
        self.D = D.detach().cpu()
        self.N = self.D.shape[1]
        check_sparsity(self.N, self.D.shape[0], K)
        self.K = K
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        self.n_samples = None if n_samples is None else check_int("n_samples", n_samples, minimum=batch_size)
        self._cached: tuple[int, torch.Tensor] | None = None

    # Samples are generated in fixed blocks so that a sample's value depends on
    # its index only, whatever the batch size.
    _BLOCK = 1024

    def _block(self, j: int) -> torch.Tensor:
        # Consecutive small batches fall in the same block: keep the last one instead of redrawing it.
        if self._cached is None or self._cached[0] != j:
            self._cached = (j, sample_codes(self._BLOCK, self.N, self.K, make_generator(self.seed, _STREAM_IDS["batches"], 0, j)))
        return self._cached[1]

    def codes(self, i: int) -> torch.Tensor:
        """Codes of batch ``i`` (``batch_size x N``)."""
        check_int("i", i, minimum=0)
        B = self.batch_size
        if self.n_samples is None:
            return sample_codes(B, self.N, self.K, make_generator(self.seed, _STREAM_IDS["batches"], 1, i))
        idx = torch.arange(i * B, (i + 1) * B) % self.n_samples
        blocks = torch.unique(idx // self._BLOCK)
        table = torch.cat([self._block(int(j)) for j in blocks])
        # position of sample k inside the concatenated table of its blocks
        rank = torch.searchsorted(blocks, idx // self._BLOCK)
        return table[rank * self._BLOCK + idx % self._BLOCK]

    def batch(self, i: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """``(X, S)`` of batch ``i`` on ``device``; ``X = S D^T``."""
        S = self.codes(i)
        return (S @ self.D.T).to(device), S.to(device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        i = 0
        while True:
            yield self.batch(i)
            i += 1

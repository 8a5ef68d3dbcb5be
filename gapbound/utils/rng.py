"""Seeded construction without touching the global random state."""

from __future__ import annotations

from typing import Callable, TypeVar

import torch

__all__ = ["seeded"]

T = TypeVar("T")


def seeded(seed: int, build: Callable[[], T]) -> T:
    """Call ``build()`` under torch seed ``seed`` in a forked RNG (the global torch RNG is left untouched).

    Parameters
    ----------
    seed : int
        Seed of the private stream ``build`` draws from (e.g. a module's initialisation).
    build : callable
        Zero-argument constructor.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()

"""FLOP counts of known layers against the exact formula."""

from __future__ import annotations

import pytest
import torch

from gapbound.models import MLPEncoder, SAE
from gapbound.utils.flops import count_flops, forward_flops, train_step_flops


@pytest.mark.parametrize("n, M, N", [(1, 1, 1), (32, 8, 16), (100, 200, 1000)])
def test_linear_forward_is_2nmn(n, M, N):
    assert forward_flops(SAE(M, N), torch.randn(n, M)) == 2 * n * M * N


@pytest.mark.parametrize("n, M, N, h", [(64, 8, 16, 32), (10, 20, 30, 40)])
def test_mlp_forward_and_train_step(n, M, N, h):
    mlp = MLPEncoder(M, N, h)
    x, s = torch.randn(n, M), torch.randn(n, N)
    fwd = 2 * n * (M * h + h * N)
    assert forward_flops(mlp, x) == fwd
    # backward: weight gradients of both layers (2nMh + 2nhN) and the hidden activation's gradient (2nhN)
    step = train_step_flops(lambda: ((mlp(x) - s) ** 2).mean(), list(mlp.parameters()))
    assert step == fwd + 2 * n * (M * h + h * N) + 2 * n * h * N


def test_count_flops_returns_output():
    A, B = torch.randn(3, 4), torch.randn(4, 5)
    flops, out = count_flops(torch.matmul, A, B)
    assert flops == 2 * 3 * 4 * 5
    torch.testing.assert_close(out, A @ B)


def test_train_step_leaves_no_gradients():
    sae = SAE(4, 8)
    train_step_flops(lambda: sae(torch.randn(5, 4)).sum(), list(sae.parameters()))
    assert all(p.grad is None for p in sae.parameters())


def test_gapbound_formulas_stay_inside_count_flops():
    """count_flops knows the Cholesky formula; torch's global registry and a plain FlopCounterMode do not change."""
    import numpy as np
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    from gapbound.inference import fista

    A = torch.eye(4, dtype=torch.float64).expand(3, 4, 4).contiguous()
    D = np.linalg.qr(np.random.default_rng(0).normal(size=(8, 8)))[0][:, :6]
    assert count_flops(fista, D, np.ones((4, 8)), 0.1)[0] > 0  # imports and runs the compiled active set
    assert count_flops(torch.linalg.cholesky_ex, A)[0] == 3 * 4**3 // 3
    for op in (torch.ops.aten.linalg_cholesky_ex, torch.ops.aten.cholesky_solve, torch.ops.aten.addmm_,
               torch.ops.gapbound.active_set):
        assert op not in flop_registry
    with FlopCounterMode(display=False) as plain:
        torch.linalg.cholesky_ex(A)
    assert plain.get_total_flops() == 0

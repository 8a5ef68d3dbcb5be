"""Dead-latent resampling (Bricken et al. 2023): the one implementation every objective calls.

A latent that did not fire since the last resampling is re-pointed at a poorly
reconstructed input: inputs are drawn with probability proportional to their
squared loss; the dead latent's encoder row reads that (unit-norm) direction
at ``0.2 x`` the mean alive row norm with zero bias, and a learned dictionary's
column becomes the same direction. Adam's moments of the touched rows and
columns are zeroed so that old momentum does not undo the reset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # annotations only: training must not import the models package at run time
    from ..models import Dictionary

__all__ = ["Touched", "high_loss_inputs", "resample_dead", "reset_adam_rows"]

Touched = list[tuple[nn.Parameter, int]]
"""Parameters a resampling rewrote, with the dimension its latent index runs along."""


def high_loss_inputs(x: torch.Tensor, per_sample_loss: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` unit-norm rows of ``x`` sampled with probability proportional to their squared loss.

    Parameters
    ----------
    x : torch.Tensor
        ``b x d`` candidate rows.
    per_sample_loss : torch.Tensor
        ``b`` non-negative losses (uniform sampling if all are 0).
    n : int
        Rows to draw (with replacement).
    generator : torch.Generator
        CPU generator of the draw.

    Returns
    -------
    torch.Tensor
        ``n x d`` rows of unit norm, on ``x``'s device.
    """
    w = per_sample_loss.detach().double().cpu() ** 2
    w = w if float(w.sum()) > 0 else torch.ones_like(w)
    idx = torch.multinomial(w, n, replacement=True, generator=generator).to(x.device)
    xs = x[idx]
    return xs / xs.norm(dim=1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def resample_dead(
    dead: torch.Tensor,
    candidates: torch.Tensor,
    per_sample_loss: torch.Tensor,
    generator: torch.Generator,
    encoder: nn.Module | None = None,
    dictionary: "Dictionary | None" = None,
) -> Touched:
    """Re-point the ``dead`` latents at high-loss ``candidates``.

    Parameters
    ----------
    dead : torch.Tensor
        Boolean mask over the ``N`` latents.
    candidates : torch.Tensor
        ``b x M`` rows the new directions are drawn from (inputs, or residuals for sparse coding).
    per_sample_loss : torch.Tensor
        ``b`` losses weighting the draw.
    generator : torch.Generator
        CPU generator of the draw.
    encoder : nn.Module, optional
        Encoder with a ``linear`` output layer and ``features(x)`` (what that
        layer reads: the input for an SAE, hidden activations for an MLP).
    dictionary : Dictionary, optional
        Its columns of dead latents are overwritten if it is trainable.

    Returns
    -------
    list of (Parameter, dim)
        What was rewritten, for :func:`reset_adam_rows`.
    """
    dead_idx = dead.nonzero().flatten()
    directions = high_loss_inputs(candidates, per_sample_loss, len(dead_idx), generator)
    touched: Touched = []
    if encoder is not None:
        layer: nn.Linear = encoder.linear
        alive = torch.ones(layer.weight.shape[0], dtype=torch.bool, device=layer.weight.device)
        alive[dead_idx] = False
        scale = layer.weight[alive].norm(dim=1).mean() if alive.any() else torch.tensor(1.0)
        # What the output layer reads for the chosen rows: the rows themselves (SAE) or hidden features (MLP).
        feats = encoder.features(directions)
        layer.weight[dead_idx] = 0.2 * scale * feats / feats.norm(dim=1, keepdim=True).clamp_min(1e-12)
        layer.bias[dead_idx] = 0.0
        touched += [(layer.weight, 0), (layer.bias, 0)]
    if dictionary is not None and dictionary.weight.requires_grad:
        dictionary.weight[:, dead_idx] = directions.T
        touched.append((dictionary.weight, 1))
    return touched


def reset_adam_rows(opt: torch.optim.Optimizer, touched: Touched, idx: torch.Tensor) -> None:
    """Zero Adam's moments of the resampled latents' rows/columns."""
    for p, dim in touched:
        state = opt.state.get(p)
        if not state:
            continue
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key].index_fill_(dim, idx.to(state[key].device), 0.0)

"""Recovery metrics: MCC, dictionary MCC, support precision/recall/F1, normalised MSE.

MCC follows the paper (and the ICA literature): the Pearson correlation of
every true source with every inferred latent, an optimal one-to-one matching
of sources to latents maximising the total ``|correlation|``
(``scipy.optimize.linear_sum_assignment``), and the mean matched
``|correlation|`` over the true sources. A constant column (a dead latent or a
source that never fires in the sample) has no defined correlation; it counts
as correlation 0, so dead latents can only lower the score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment


__all__ = ["mcc", "dictionary_mcc", "match", "SupportScores", "support_scores", "nmse", "correlation_matrix"]


def _as_2d(name: str, a: Any) -> np.ndarray:
    try:
        arr = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
    except Exception as err:  # pragma: no cover - defensive
        raise TypeError(f"{name} must be array-like") from err
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):  # casting to float64 would silently drop the imaginary part
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr.astype(np.float64, copy=False)


def correlation_matrix(A: Any, B: Any) -> np.ndarray:
    """Pearson correlations between columns of ``A`` (``n x p``) and of ``B`` (``n x q``); 0 for constant columns."""
    A, B = _as_2d("A", A), _as_2d("B", B)
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"A and B must have the same number of rows (samples), got {A.shape[0]} and {B.shape[0]}")
    if A.shape[0] < 2:
        raise ValueError("correlations need at least 2 samples")
    Ac, Bc = A - A.mean(0), B - B.mean(0)
    na, nb = np.linalg.norm(Ac, axis=0), np.linalg.norm(Bc, axis=0)
    # Relative tolerance: a column that is constant up to rounding is constant.
    ta = na > 1e-10 * (np.abs(A).max(0) * np.sqrt(A.shape[0]) + 1e-300)
    tb = nb > 1e-10 * (np.abs(B).max(0) * np.sqrt(B.shape[0]) + 1e-300)
    C = (Ac.T @ Bc) / np.outer(np.where(ta, na, 1.0), np.where(tb, nb, 1.0))
    C[~ta, :] = 0.0
    C[:, ~tb] = 0.0
    return np.clip(C, -1.0, 1.0)


def match(similarity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching of rows to columns maximising total ``|similarity|``."""
    return linear_sum_assignment(-np.abs(similarity))


def _matched_mean(similarity: np.ndarray, n_true: int) -> float:
    rows, cols = match(similarity)
    # With fewer inferred columns than true ones, unmatched sources score 0.
    return float(np.abs(similarity[rows, cols]).sum() / n_true)


def mcc(S_true: Any, S_hat: Any) -> float:
    """Mean correlation coefficient between true codes and inferred latents.

    Parameters
    ----------
    S_true : array-like
        ``n x N`` true codes.
    S_hat : array-like
        ``n x L`` inferred latents (any ``L``; extra latents are left unmatched).

    Returns
    -------
    float
        In ``[0, 1]``; 1 iff every source is perfectly correlated with its own latent.
    """
    C = correlation_matrix(_as_2d("S_true", S_true), _as_2d("S_hat", S_hat))
    return _matched_mean(C, C.shape[0])


def dictionary_mcc(D_true: Any, D_hat: Any) -> float:
    """Mean matched ``|cosine similarity|`` between true and learned dictionary columns.

    Parameters
    ----------
    D_true : array-like
        ``M x N`` true dictionary.
    D_hat : array-like
        ``M x L`` learned dictionary.
    """
    A, B = _as_2d("D_true", D_true), _as_2d("D_hat", D_hat)
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"D_true and D_hat must have the same number of rows, got {A.shape[0]} and {B.shape[0]}")
    na, nb = np.linalg.norm(A, axis=0), np.linalg.norm(B, axis=0)
    cos = (A.T @ B) / np.outer(np.where(na > 0, na, 1.0), np.where(nb > 0, nb, 1.0))
    return _matched_mean(cos, A.shape[1])


@dataclass(frozen=True)
class SupportScores:
    """Support recovery: precision, recall and F1 of the predicted non-zero set."""

    precision: float
    recall: float
    f1: float


def support_scores(S_true: Any, S_hat: Any, threshold: float = 1e-6, matched: bool = True) -> SupportScores:
    """Precision/recall/F1 of the support ``|s_hat| > threshold`` against the true support.

    Parameters
    ----------
    S_true, S_hat : array-like
        ``n x N`` true and ``n x L`` inferred codes.
    threshold : float
        Magnitude above which an inferred entry counts as active.
    matched : bool
        Reorder inferred latents by the MCC matching first (needed when latents
        are learned, so their order is arbitrary).
    """
    A, B = _as_2d("S_true", S_true), _as_2d("S_hat", S_hat)
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"S_true and S_hat must have the same number of rows, got {A.shape[0]} and {B.shape[0]}")
    if matched:
        rows, cols = match(correlation_matrix(A, B))
        A, B = A[:, rows], B[:, cols]
    elif A.shape[1] != B.shape[1]:
        raise ValueError("with matched=False, S_true and S_hat must have the same shape")
    t, p = np.abs(A) > threshold, np.abs(B) > threshold
    tp = float((t & p).sum())
    precision = tp / max(float(p.sum()), 1.0)
    recall = tp / max(float(t.sum()), 1.0)
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return SupportScores(precision, recall, f1)


def nmse(X: Any, X_hat: Any) -> float:
    """Normalised MSE ``sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` (0 perfect, 1 = predicting the mean)."""
    A, B = _as_2d("X", X), _as_2d("X_hat", X_hat)
    if A.shape != B.shape:
        raise ValueError(f"X and X_hat must have the same shape, got {A.shape} and {B.shape}")
    denom = float(((A - A.mean(0)) ** 2).sum())
    if denom == 0:
        raise ValueError("X has zero variance; normalised MSE is undefined")
    return float(((A - B) ** 2).sum()) / denom

"""Gap meter: how much per-sample optimal inference under the *same* decoder improves an SAE.

Given an encoder (a :class:`gapbound.SAE`, whose decoder, decoder bias and run-time
input normalisation are then used, or any callable with its decoder ``x_hat = D s + b_dec``,
``D`` being ``M x N``) and activations ``X`` (``n x M``, or a shard store's ``(n, ctx, M)``
arrays), the meter compares the SAE's codes with per-sample optimal codes
for the same decoder, sample by sample:

- **LASSO objective** ``P(s) = 0.5 ||x - b_dec - D s||^2 + lam ||s||_1`` (``s >= 0``):
  the amortisation gap ``P(s_sae) - min P``. The optimum comes from per-sample working
  sets started at the SAE's codes (:mod:`gapbound.inference.working_set`: exact solves
  on the working sets, all atoms screened by one float32 product per round with its
  rounding bounded, float64 certificates); the reported ``gap = P(s_sae) - P(s_opt) >= 0``
  is a lower bound and ``gap + certificate`` an upper bound on the true gap,
  ``certificate`` being the optimum's duality gap.
- **Reconstruction at matched L1**: the best squared error reachable with
  ``s >= 0, ||s||_1 <= ||s_sae||_1`` (same L1 budget per sample), with a
  Frank-Wolfe certificate (the same working sets, LASSO solves along ``lam``).

No ``n x N x N`` work and no ``N x N`` Gram matrix is formed, so SAEs with tens of
thousands of latents are measured (``benchmarks/meter_scale.py``).

``lam`` defaults to the value at which the SAE's own codes are closest to
stationary: the median of ``d_j . r`` over the SAE's active latents (at a
LASSO optimum every active latent has ``d_j . r = lam`` exactly).

The command line (``python -m gapbound.meter``) lives in :mod:`gapbound.meter.cli`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..inference.problem import gap_terms, real_array
from ..inference.working_set import Screen, l1_ball_working_set, lasso_working_set
from ..models import SAE
from ..utils.validation import as_tensor, check_data, check_dictionary, check_float, check_int

__all__ = ["GapReport", "measure_gap", "implied_lam", "uncertified_reason"]


@dataclass
class GapReport:
    """Per-sample and aggregate amortisation gaps of an SAE under its own decoder.

    Per-sample arrays (length ``n``, float64 numpy):

    Attributes
    ----------
    lam : float
        L1 weight of the LASSO comparison.
    lam_source : str
        ``"given"`` or ``"implied"`` (see :func:`implied_lam`).
    lasso_sae, lasso_opt : numpy.ndarray
        ``P`` of the SAE's codes and of the per-sample optimum.
    lasso_gap : numpy.ndarray
        ``lasso_sae - lasso_opt >= 0`` (certified lower bound on the gap).
    lasso_certificate : numpy.ndarray
        Duality gap of the optimum: the true gap is at most ``lasso_gap + lasso_certificate``.
    sq_err_sae, sq_err_l1 : numpy.ndarray
        ``||x - x_hat||^2`` of the SAE and of the best codes at the SAE's L1 (``None`` if not measured).
    l1_certificate : numpy.ndarray or None
        Frank-Wolfe gap of the matched-L1 problem (bound on ``0.5 * sq_err_l1``'s suboptimality).
    l0_sae, l0_opt : numpy.ndarray
        Active latents of the SAE's codes and of the LASSO optimum.
    tol_lasso, tol_l1 : float
        Absolute certificate tolerances: ``rtol`` times the median SAE value of each problem.
    seconds : float
        Wall-clock time of the measurement.
    """

    lam: float
    lam_source: str
    lasso_sae: np.ndarray
    lasso_opt: np.ndarray
    lasso_gap: np.ndarray
    lasso_certificate: np.ndarray
    sq_err_sae: np.ndarray
    sq_err_l1: np.ndarray | None
    l1_certificate: np.ndarray | None
    l0_sae: np.ndarray
    l0_opt: np.ndarray
    tol_lasso: float
    tol_l1: float | None
    seconds: float = float("nan")

    @property
    def certified(self) -> bool:
        """Every sample's LASSO (and, if measured, matched-L1) certificate is within ``tol_lasso`` / ``tol_l1``."""
        l1_ok = self.l1_certificate is None or bool((self.l1_certificate <= self.tol_l1).all())
        return bool((self.lasso_certificate <= self.tol_lasso).all()) and l1_ok

    def summary(self) -> dict[str, Any]:
        """Aggregate numbers (JSON-serialisable)."""
        mse_sae = float(self.sq_err_sae.mean())
        mse_l1 = None if self.sq_err_l1 is None else float(self.sq_err_l1.mean())
        return {
            "n_samples": int(self.lasso_sae.shape[0]),
            "lam": self.lam,
            "lam_source": self.lam_source,
            "gap_mean": float(self.lasso_gap.mean()),
            "gap_upper_mean": float((self.lasso_gap + self.lasso_certificate).mean()),
            "gap_rel": float(self.lasso_gap.sum() / max(self.lasso_sae.sum(), 1e-300)),
            "gap_max": float(self.lasso_gap.max()),
            "lasso_sae_mean": float(self.lasso_sae.mean()),
            "lasso_opt_mean": float(self.lasso_opt.mean()),
            "certificate_max": float(self.lasso_certificate.max()),
            "sq_err_sae_mean": mse_sae,
            "sq_err_matched_l1_mean": mse_l1,
            "sq_err_matched_l1_reduction": None if mse_l1 is None else (1.0 - mse_l1 / mse_sae if mse_sae > 0 else 0.0),
            "l1_certificate_max": None if self.l1_certificate is None else float(self.l1_certificate.max()),
            "l0_sae_mean": float(self.l0_sae.mean()),
            "l0_opt_mean": float(self.l0_opt.mean()),
            "tol_lasso": self.tol_lasso,
            "tol_l1": self.tol_l1,
            "certified": self.certified,
            "not_certified_because": uncertified_reason(self),
            "seconds": self.seconds,
        }


def uncertified_reason(report: "GapReport") -> str | None:
    """A plain sentence saying which certificates missed their tolerance and by how much; ``None`` if certified."""
    if report.certified:
        return None
    parts = []
    for name, cert, tol in (("LASSO duality gap", report.lasso_certificate, report.tol_lasso),
                            ("matched-L1 Frank-Wolfe gap", report.l1_certificate, report.tol_l1)):
        if cert is None:
            continue
        bad = int((cert > tol).sum())
        if bad:
            parts.append(f"the {name} of {bad} of {cert.shape[0]} samples exceeds its tolerance {tol:.3g} "
                         f"(worst {float(cert.max()):.3g})")
    return "; ".join(parts) + ": raise --max-iter or loosen --rtol; the reported gaps are still valid lower bounds."


def _support_correlations(screen: Screen, Xc: torch.Tensor, idx: torch.Tensor, vals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(float64 residuals ``x - D s``, ``d_j . r`` at each code position) of compact codes."""
    R = screen.residual(Xc, idx, vals)
    return R, screen.atom_dots(idx, R)


def _implied_lam(screen: Screen, Xc: torch.Tensor, vals: torch.Tensor, c_support: torch.Tensor) -> float:
    """:func:`implied_lam` from the correlations at the codes' positions."""
    active = vals > 0
    if active.any():
        lam = float(c_support[active].median())
        if lam > 0:
            return lam
    _, c0, bound = screen.correlations(Xc, 1)  # max_j d_j . x (certified bound where the screen is not exact)
    return 0.1 * float(torch.maximum(c0[:, 0], bound).clamp_min(0).median()) or 1e-3


def _compact(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense non-negative codes as per-sample positions and float64 values (width: the widest support)."""
    codes = codes.clamp_min(0.0)
    v, i = codes.topk(max(1, int((codes > 0).sum(1).amax())) if codes.shape[0] else 1, dim=1)
    return i, v.double()


def implied_lam(D: torch.Tensor, Xc: torch.Tensor, codes: torch.Tensor) -> float:
    """The L1 weight at which ``codes`` are closest to LASSO-stationary.

    Median of ``d_j . (x - D s)`` over active latents (``s_j > 0``); if no
    latent is active, 10% of the median per-sample ``max_j d_j . x`` (the
    smallest ``lam`` giving all-zero codes).
    """
    screen = Screen(D.double())
    idx, vals = _compact(codes)
    Xc = Xc.double()
    return _implied_lam(screen, Xc, vals, _support_correlations(screen, Xc, idx, vals)[1])


def measure_gap(
    encoder: Callable[[torch.Tensor], torch.Tensor] | torch.nn.Module,
    D: Any = None,
    X: Any = None,
    lam: float | None = None,
    b_dec: Any = None,
    rtol: float = 1e-6,
    max_iter: int = 5000,
    matched_l1: bool = True,
) -> GapReport:
    """Measure an SAE's amortisation gap under its own decoder, with certificates.

    ``measure_gap(sae, X)`` for a :class:`gapbound.SAE`; ``measure_gap(encoder, D, X, b_dec=b)``
    for any other encoder.

    Parameters
    ----------
    encoder : SAE or callable
        A :class:`gapbound.SAE` without ``D``: its ``dictionary``, ``b_dec`` and input
        normalisation are used. Otherwise (or with ``D``) a callable mapping activations
        ``n x M`` to codes ``n x N`` (negative entries are clipped), measured under ``D``, ``b_dec``.
    D : array-like, optional
        ``M x N`` decoder (``x_hat = D s + b_dec``; for SAELens ``D = W_dec^T``).
    X : array-like
        ``n x M`` activations, or ``(n, ctx, M)`` (flattened to ``n * ctx`` rows); real floating point.
    lam : float, optional
        LASSO L1 weight; default :func:`implied_lam`.
    b_dec : array-like, optional
        Decoder bias (length ``M``); zeros if omitted.
    rtol : float
        Certificate target relative to the median SAE value of each problem;
        the solvers stop there and ``certified`` reports whether every sample reached it.
    max_iter : int
        Cap on the outer rounds of each working-set solve (each one float32 screening product
        over the samples not yet certified; see :mod:`gapbound.inference.working_set`).
    matched_l1 : bool
        Also solve the matched-L1 reconstruction problem.

    Returns
    -------
    GapReport
    """
    if isinstance(encoder, SAE) and X is None and D is not None:  # measure_gap(sae, X)
        D, X = None, D
    if isinstance(encoder, SAE) and D is None:
        if b_dec is not None:
            raise ValueError("b_dec comes from the SAE itself; omit it (or pass D and b_dec to use another decoder)")
        sae = encoder
        D, b_dec = sae.dictionary, sae.b_dec.detach()
    elif not callable(encoder):
        raise TypeError(f"encoder must be a gapbound SAE or a callable (an nn.Module or function), got {type(encoder).__name__}")
    else:
        sae = None
    if D is None or X is None:
        raise ValueError("measure_gap needs the decoder D and the activations X (or an SAE and X)")
    Dt = check_dictionary(real_array("D", D)).detach()
    Xt = as_tensor("X", real_array("X", X)).detach()
    if Xt.ndim == 3:  # a shard store's (n, ctx, d) contexts
        Xt = Xt.reshape(-1, Xt.shape[-1])
    Xt = check_data(Xt, Dt, dtype=Dt.dtype, device=Dt.device).detach()
    if Xt.shape[0] == 0:
        raise ValueError("X holds no samples; the meter needs at least one activation vector")
    M = Dt.shape[0]
    b = torch.zeros(M, dtype=Dt.dtype, device=Dt.device) if b_dec is None else as_tensor("b_dec", real_array("b_dec", b_dec), dtype=Dt.dtype, device=Dt.device).detach().reshape(-1)
    if b.shape[0] != M or not torch.isfinite(b).all():
        raise ValueError(f"b_dec must be a finite vector of length M={M}, got shape {tuple(b.shape)}")
    check_float("rtol", rtol, minimum=0.0)
    check_int("max_iter", max_iter, minimum=1)
    start = time.perf_counter()
    with torch.no_grad():
        codes = encoder.encode(Xt) if sae is not None else encoder(Xt)
        if sae is not None:  # the LASSO lives where the decoder reconstructs: after run-time normalisation
            Xt = sae.normalise(Xt.to(sae.linear.weight.dtype)).to(Dt.dtype)
    codes = as_tensor("encoder output", real_array("encoder output", codes)).detach()
    if codes.shape != (Xt.shape[0], Dt.shape[1]):
        raise ValueError(f"encoder output must have shape {(Xt.shape[0], Dt.shape[1])} (samples x decoder atoms), got {tuple(codes.shape)}")
    if not torch.isfinite(codes).all():
        raise ValueError("encoder output contains NaN or infinite values")
    D64, Xc = Dt.double(), (Xt - b).double()
    idx, vals = _compact(codes.to(Dt.device))
    del codes
    screen = Screen(D64)
    R, c_sup = _support_correlations(screen, Xc, idx, vals)
    if lam is None:
        lam, source = _implied_lam(screen, Xc, vals, c_sup), "implied"
    else:
        lam, source = check_float("lam", lam, minimum=0.0), "given"

    sq_sae = (R * R).sum(1)
    P_sae = 0.5 * sq_sae + lam * vals.sum(1)
    tol = rtol * float(P_sae.median().clamp_min(1e-12))
    opt = lasso_working_set(D64, Xc, lam, idx=idx, vals=vals, tol=tol, max_rounds=max_iter)
    # The SAE's own codes are feasible, so never report a negative gap.
    use_opt = opt.objective <= P_sae
    P_opt = torch.where(use_opt, opt.objective, P_sae)
    cert = opt.duality_gap.clone()
    if not use_opt.all():  # the SAE's codes are kept: their own duality gap
        rows = (~use_opt).nonzero().squeeze(1)
        _, c, bound = screen.correlations(R[rows], 64)
        cert[rows] = gap_terms(sq_sae[rows], (Xc[rows] * R[rows]).sum(1), torch.maximum(c.amax(1), bound),
                               vals[rows].sum(1), lam)[1]

    sq_l1 = l1_cert = tol_l1 = None
    if matched_l1:
        tol_l1 = rtol * float((0.5 * sq_sae).median().clamp_min(1e-12))
        guess = torch.where(vals > 0, c_sup, math.nan).nanmedian(1).values.nan_to_num(lam)
        l1 = l1_ball_working_set(D64, Xc, vals.sum(1), idx=idx, vals=vals, tol=tol_l1, lam_guess=guess.clamp_min(0.0),
                                 max_rounds=max_iter)
        sq_l1 = torch.minimum(2 * l1.objective, sq_sae)
        l1_cert = l1.duality_gap

    def np64(t: torch.Tensor | None) -> np.ndarray | None:
        return None if t is None else t.detach().double().cpu().numpy()

    l0_sae = (vals > 0).sum(1)
    return GapReport(
        lam=float(lam), lam_source=source, lasso_sae=np64(P_sae), lasso_opt=np64(P_opt),
        lasso_gap=np64((P_sae - P_opt).clamp_min(0.0)), lasso_certificate=np64(cert),
        sq_err_sae=np64(sq_sae), sq_err_l1=np64(sq_l1), l1_certificate=np64(l1_cert),
        l0_sae=np64(l0_sae), l0_opt=np64(torch.where(use_opt, opt.l0, l0_sae)), tol_lasso=tol, tol_l1=tol_l1,
        seconds=time.perf_counter() - start,
    )

"""The linear-hinge rank charge on codes with ``m = k`` non-zeros (``proofs/02_witness_bound.md`` 2.5.1-2.5.2).

For a witness code with exactly ``k`` non-zeros, every TopK(k) encoder's cost is at least

    sum_{active a} (relu(z_a) - y_a)^2 - mu_a relu(z_a - delta)  +  sum_{inactive l} lam_l relu(z_l - delta)

whenever ``0 < delta <= min y``, ``0 <= lam, mu <= 4 delta`` and ``sum mu >= sum lam`` (the sample's
*charge*). The first sum splits over rows like the ReLU class's active terms, the second adds a linear
hinge to each inactive entry's row. In a branch-and-bound node an active entry's term
``g(z) = (relu(z) - y)^2 - mu relu(z - delta)`` is relaxed as follows (2.5.2):

* dropped (``z <= 0``): ``y^2``, as before (``g = y^2`` there);
* kept (``z > 0``): ``g`` is ``P1 = (z - y)^2`` on ``(0, delta]`` and ``P2 = (z - y - mu/2)^2 + C`` above,
  ``C = mu delta - y mu - mu^2 / 4``, so ``g >= min(P1, P2)``, whose conjugate is :func:`kept_conjugate`;
* free: the convex envelope of ``g`` over all ``z``, ``relu(z - y - mu/2)^2 + C`` (a hinge row with
  offset ``y + mu/2`` plus the constant ``C``; needs ``delta <= y``).

With ``mu = 0`` every piece is the ReLU class's. The functions are pure arithmetic (floats, ``Fraction``
or sympy), so ``proofs/check_topk.py`` checks these very functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The charge's caps: lam, mu <= CAP_FACTOR * delta (proofs/02 2.5.1; 4.4 delta has counterexamples).
CAP_FACTOR = 4


def charge_constant(mu: Any, y: Any, delta: Any) -> Any:
    """``C = mu delta - y mu - mu^2 / 4``: ``(z - y)^2 - mu (z - delta) = (z - y - mu/2)^2 + C`` for every ``z``."""
    return mu * delta - y * mu - mu * mu / 4


def charged_active_cost(z: Any, y: Any, mu: Any, delta: Any) -> Any:
    """``g(z) = (relu(z) - y)^2 - mu relu(z - delta)``: an active entry's charged cost (numpy arrays or scalars)."""
    return (_positive_part(z) - y) ** 2 - mu * _positive_part(z - delta)


def kept_conjugate(lam: Any, y: Any, mu: Any, C: Any) -> Any:
    """``sup_z [2 lam z - min(P1(z), P2(z))] = lam^2 + 2 lam y + max(0, lam mu - C)`` (any sign of ``lam``).

    The conjugate of a minimum is the maximum of the conjugates: ``P1* (2 lam) = lam^2 + 2 lam y`` and
    ``P2* (2 lam) = lam^2 + 2 lam (y + mu/2) - C``. Works elementwise on numpy arrays and on scalars.
    """
    return lam * lam + 2 * lam * y + conjugate_excess(lam, mu, C)


def conjugate_excess(lam: Any, mu: Any, C: Any) -> Any:
    """``max(0, lam mu - C)``: what the charge adds to a kept residual's conjugate ``lam^2 + 2 lam y``."""
    return _positive_part(lam * mu - C)


def kept_multiplier(d: Any, mu: Any, C: Any) -> Any:
    """Half the slope of the convex envelope of ``min(P1, P2)`` at residual ``d = z - y`` (float arrays).

    The envelope is ``P1`` up to ``d = C / mu``, then its tangent there, then ``P2`` from ``d = C / mu + mu / 2``:
    the slope's half is ``clip(C / mu, d - mu / 2, d)`` (``d`` where ``mu = 0``), the KKT multiplier of a
    kept entry.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        knee = np.where(mu > 0, C / np.where(mu > 0, mu, 1.0), np.inf)
    return d - np.clip(d - knee, 0.0, mu / 2)


def kept_envelope(d: Any, mu: Any, C: Any) -> tuple[Any, Any, Any]:
    """The convex envelope of ``min(P1, P2)`` at residual ``d = z - y``: ``(value, half slope, curvature / 2)``."""
    lam = kept_multiplier(d, mu, C)
    tangent = lam * lam + 2 * lam * (d - lam)
    value = np.where(lam == d, d * d, np.where(lam == d - mu / 2, (d - mu / 2) ** 2 + C, tangent))
    return value, lam, ((lam == d) | (lam == d - mu / 2)).astype(float)


def _positive_part(x: Any) -> Any:
    """``max(x, 0)`` for numpy arrays and for scalars (float, ``Fraction``, sympy numbers)."""
    if isinstance(x, np.ndarray):
        return np.maximum(x, 0.0)
    return x if x > 0 else 0 * x

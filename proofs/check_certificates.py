"""Exact rational re-verification of the certified bound, every encoder class (proofs/02, sections 2.2-2.3, 2.6).

On small dictionaries (a rational one, whose witness inputs are exact in float64, and
random float ones; every float is a rational) the bound is recomputed with its
certificates kept, and :func:`gapbound.theory.exact.verify_exact` re-checks each
certificate in ``fractions.Fraction`` arithmetic: the inputs are the witness inputs,
the subproblem is the class's relaxation, every certified component holds exactly,
certified value <= exact dual value <= exact optimum of the subproblem, and every drop
set of every row is certified or pruned by its cost. ``check()`` raises
``AssertionError`` with the first failures.
"""

from __future__ import annotations

import numpy as np

RATIONAL_D = np.array([[1, 0, 1, 1, 2], [0, 1, 1, -1, 1], [1, 1, 0, 2, -1]], dtype=float) / 4


def dictionaries() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = [RATIONAL_D]
    for _ in range(2):
        D = rng.normal(size=(3, 5))
        out.append(D / np.linalg.norm(D, axis=0))
    return out


def check(classes: tuple[str, ...] = ("linear-gated", "relu", "jumprelu"), dicts: list[np.ndarray] | None = None) -> None:
    from gapbound.theory import lower_bound, witness_codes
    from gapbound.theory.exact import verify_exact

    for D in dicts if dicts is not None else dictionaries():
        codes = witness_codes(D.shape[1], 2)
        for cls in classes:
            res = lower_bound(D, codes, cls, keep_certificates=True)
            rep = verify_exact(D, codes, res, check_optimum=cls != "jumprelu")
            assert rep.ok, f"{cls}: " + "; ".join(rep.failures[:3])
            assert res.bound > 0


if __name__ == "__main__":
    check()
    print("certificates: ok")

"""The amortisation gap: witness sets, certified lower bounds on every encoder of a class, exact decoding.

Modules: :mod:`.witness` (codes, inputs, an encoder's error on them), :mod:`.duality` (certified values
of convex row problems), :mod:`.drops` (drop enumeration), :mod:`.relu` / :mod:`.jumprelu` (branch and
bound over gates; JumpReLU with the threshold a variable), :mod:`.separation` (realisable JumpReLU gate
patterns, exact Farkas proofs),
:mod:`.topk` (the TopK class: the ranking charged to the rows) with :mod:`.charge` (the linear-hinge
charge's pieces), :mod:`.correction` (exact multiplier correction), :mod:`.exact` (rational
re-verification), :mod:`.bounds` (``lower_bound`` per encoder class), :mod:`.recovery` (exact decoding, spark, L1
certificates), :mod:`.certificate` (``certify``, ``CertifyResult``), :mod:`.cli` (``python -m gapbound.certify``).
Encoders trained on a witness set: :func:`gapbound.training.witness.fit_encoder`.
"""

from .bounds import BoundResult, EncoderClass, RowBound, lower_bound
from .certificate import CertifyResult, certify
from .recovery import DecodeResult, exact_decode, spark_exceeds, support_search_decode
from .witness import witness_codes, witness_error, witness_inputs

__all__ = [
    "EncoderClass",
    "witness_codes",
    "RowBound",
    "BoundResult",
    "lower_bound",
    "DecodeResult",
    "exact_decode",
    "spark_exceeds",
    "support_search_decode",
    "witness_inputs",
    "CertifyResult",
    "certify",
    "witness_error",
]

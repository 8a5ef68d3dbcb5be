"""gapbound: certified amortisation gaps and compute-optimal inference for sparse autoencoders.

Implements O'Neill, Gumran & Klindt, "Compute Optimal Inference and Provable
Amortisation Gap in Sparse Autoencoders" (ICML 2025).

The public API is this module's ``__all__``:

- :func:`solve` / :class:`InferenceResult`: per-sample non-negative LASSO, certified per sample;
- :class:`SparseCoder`: the same for one dictionary, ``transform(X)``, its set-up kept across calls;
- :func:`certify` / :class:`CertifyResult`: a certified lower bound on the error of every
  encoder of a class on codes that exact per-sample inference recovers;
- :class:`SAE`: one sparse autoencoder class (ReLU, TopK, JumpReLU) with SAELens-layout ``save`` / ``load``;
- :func:`measure_gap` / :class:`GapReport`: the amortisation gap of a trained SAE under its own decoder.

Subpackages, one concept each:

``gapbound.inference``  solvers, certificates, the active set (numba or torch backend), reference solvers
``gapbound.theory``     witness sets, row bounds per encoder class, exact decoding, ``certify``
``gapbound.meter``      the gap meter (``python -m gapbound.meter``)
``gapbound.models``     SAE, MLP encoder, dictionary, per-sample coding model, SAELens files
``gapbound.training``   one training loop, objectives, dead-latent resampling
``gapbound.synthetic``  the paper's generative model, metrics, methods x settings
``gapbound.lm``         language-model activations: harvest, shard store, training, autointerp
``gapbound.utils``      validation, atomic I/O, FLOP counting, command lines, experiment directories
"""

from .inference import InferenceResult, SparseCoder, solve
from .meter import GapReport, measure_gap
from .models import SAE
from .theory import CertifyResult, certify

__version__ = "0.1.0"

__all__ = ["solve", "InferenceResult", "SparseCoder", "certify", "CertifyResult", "SAE", "measure_gap", "GapReport", "__version__"]

"""gapbound: certified amortisation gaps and compute-optimal inference for sparse autoencoders.

Implements O'Neill, Gumran & Klindt, "Compute Optimal Inference and Provable
Amortisation Gap in Sparse Autoencoders" (ICML 2025). One module per concept:

Synthetic data and models
    :mod:`gapbound.data`           generative model, dictionaries, deterministic batch streams
    :mod:`gapbound.encoders`       SAE (ReLU / TopK / JumpReLU), MLP encoder, unit-norm dictionary
    :mod:`gapbound.training`       one training loop for every method and setting
    :mod:`gapbound.sparse_coding`  sparse coding: per-sample codes learned with the dictionary
    :mod:`gapbound.methods`        the paper's methods x settings, configured and evaluated

Inference and measurement
    :mod:`gapbound.inference`      per-sample sparse inference: the single solver entry point
                                   (FISTA, ISTA, LCA, Adam on exponentiated codes, active set)
    :mod:`gapbound.active_set`     the active set compiled per sample (numba; CPU)
    :mod:`gapbound.metrics`        MCC, dictionary MCC, support F1, normalised MSE
    :mod:`gapbound.flops`          FLOPs measured with ``torch.utils.flop_counter``
    :mod:`gapbound.meter`          the amortisation gap of a trained SAE (``python -m gapbound.meter``)
    :mod:`gapbound.saelens`        SAEs in the SAELens directory layout

Theory
    :mod:`gapbound.theory`         witness sets, certified lower bounds, exact decoding
    :mod:`gapbound.certify`        ``python -m gapbound.certify``

Language models
    :mod:`gapbound.harvest`        activations of a transformers model over a text stream
    :mod:`gapbound.shards`         resumable on-disk activation/token shard store
    :mod:`gapbound.lm_training`    SAE / MLP / LCA training on the shard store
    :mod:`gapbound.autointerp`     explain-then-detect interpretability scoring

Plumbing
    :mod:`gapbound.validation`     input checks with clear errors
    :mod:`gapbound.results`        atomic result and checkpoint writes
    :mod:`gapbound.cli`            shared command-line plumbing
"""

__version__ = "0.1.0"

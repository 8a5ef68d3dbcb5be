"""gapbound: certified amortisation gaps and compute-optimal inference for sparse autoencoders.

Implements O'Neill, Gumran & Klindt, "Compute Optimal Inference and Provable
Amortisation Gap in Sparse Autoencoders" (ICML 2025). One module per concept:

- :mod:`gapbound.data`          generative model, dictionaries, deterministic batch streams
- :mod:`gapbound.encoders`      SAE (ReLU / TopK / JumpReLU), MLP encoder, unit-norm dictionary
- :mod:`gapbound.inference`     per-sample sparse inference (the single solver entry point)
- :mod:`gapbound.sparse_coding` sparse coding: free per-sample codes learned with the dictionary
- :mod:`gapbound.training`      one training loop for every method and setting
- :mod:`gapbound.metrics`       MCC, dictionary MCC, support F1, normalised MSE
- :mod:`gapbound.flops`         FLOPs measured with ``torch.utils.flop_counter``
- :mod:`gapbound.methods`       the paper's methods x settings, configured and evaluated
- :mod:`gapbound.theory`        the certified amortisation-gap lower bound
"""

__version__ = "0.1.0"

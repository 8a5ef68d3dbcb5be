"""Models: the SAE (ReLU / TopK / JumpReLU / gated), MLP encoder, dictionary, SAE files.

- :class:`SAE`: encoder and decoder, ``encode`` / ``decode`` / ``dictionary``,
  ``save`` (SAELens layout) and ``SAE.load`` (SAELens or dictionary_learning layout);
- :class:`MLPEncoder`, :func:`make_encoder`: the paper's MLP encoders;
- :class:`Dictionary`: a trainable unit-norm decoder for training loops;
- :func:`load_sae` / :func:`save_sae`: file formats (see ``docs/sae_formats.md``).
"""

from .activations import Activation, jump_relu, topk_relu
from .dictionary import Dictionary
from .dictionary_learning import read_dictionary_learning
from .loading import detect_format, load_sae, save_sae
from .mlp import MLPEncoder, make_encoder
from .sae import ARCHITECTURES, INPUT_NORMS, SAE
from .saelens import CONFIG_FILE, SAELENS_ARCHITECTURES, WEIGHTS_FILE, read_saelens, saelens_config, write_saelens

__all__ = [
    "SAE", "MLPEncoder", "Dictionary", "make_encoder", "jump_relu", "topk_relu", "Activation", "ARCHITECTURES",
    "INPUT_NORMS", "load_sae", "save_sae", "detect_format", "read_saelens", "write_saelens", "saelens_config",
    "read_dictionary_learning", "SAELENS_ARCHITECTURES", "CONFIG_FILE", "WEIGHTS_FILE",
]

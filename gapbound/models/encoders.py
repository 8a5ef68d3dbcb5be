"""Deprecated location: import from :mod:`gapbound.models` (``from gapbound.models import SAE``)."""

from .activations import Activation, jump_relu
from .dictionary import Dictionary
from .mlp import MLPEncoder, make_encoder
from .sae import SAE

__all__ = ["SAE", "MLPEncoder", "Dictionary", "Activation", "make_encoder", "jump_relu"]

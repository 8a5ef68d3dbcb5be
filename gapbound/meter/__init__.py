"""The amortisation gap of a trained SAE: per-sample optimal inference under its own decoder, certified."""

from .core import *  # noqa: F401,F403
from .core import __all__

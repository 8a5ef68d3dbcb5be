"""The amortisation gap: witness sets, certified lower bounds on every encoder of a class, exact decoding."""

from .core import *  # noqa: F401,F403
from .core import __all__

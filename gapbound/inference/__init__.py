"""Per-sample sparse inference: the non-negative LASSO, solved and certified sample by sample."""

from .solvers import *  # noqa: F401,F403
from .solvers import __all__

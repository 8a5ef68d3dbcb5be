"""Per-sample sparse inference: the non-negative LASSO, solved and certified sample by sample.

Modules, one idea each: :mod:`.problem` (the objective, per-sample duality-gap
certificates, the shared set-up), :mod:`.active_set` (the exact active-set
method, backends ``"numba"`` / ``"torch"``) with its compiled kernel
:mod:`.compiled` (and :mod:`.nnls_kernel`, its solve on one working set; :mod:`.starts`, warm
starts' compaction and tidying), :mod:`.proximal` (ISTA, FISTA, FISTA on an L1 ball),
:mod:`.lca` (LCA, the Adam-on-exp baseline), :mod:`.reference` (scikit-learn,
cvxpy), :mod:`.api` (``solve``, ``warm_start``, the solver registry),
:mod:`.coder` (``SparseCoder``, set-up kept across calls) and :mod:`.screening` (the gap-safe
screening test).
"""

from .api import SOLVERS, register_solver, solve, warm_start
from .coder import SparseCoder
from .lca import adam_exp, lca
from .problem import InferenceResult, duality_gap, lipschitz, objective
from .proximal import fista, fista_l1_ball, ista, project_capped_simplex
from .reference import cvxpy_encode, sklearn_encode
from .screening import gap_safe_screen

__all__ = [
    "InferenceResult",
    "SparseCoder",
    "register_solver",
    "solve",
    "objective",
    "duality_gap",
    "lipschitz",
    "ista",
    "fista",
    "lca",
    "adam_exp",
    "sklearn_encode",
    "cvxpy_encode",
    "warm_start",
    "fista_l1_ball",
    "project_capped_simplex",
    "gap_safe_screen",
    "SOLVERS",
]

"""Building blocks of Lagrangian optimal transport (used by the CLOT surrogate in ``methods/clot.py``).

The FiLM-conditioned networks it uses are shared with the flow baselines, in :mod:`hti_bench.toolkit.nets`.

- :mod:`.metric`: Riemannian metrics G(q | x): Euclidean, eigenvalue-budget (the paper's K_θ), NLOT's;
- :mod:`.potential`: the conditional KDE density potential Û(q | x);
- :mod:`.grid`: bilinear tables that make both cheap where they depend on q alone;
- :mod:`.path`: the cubic-spline path basis;
- :mod:`.action`: the action of a path, i.e. the Lagrangian cost, in the paper's and the reference forms;
- :mod:`.lbfgs`: a batched L-BFGS that minimises many independent problems at once (the c-transform).
"""

from hti_bench.toolkit.lagrangian.action import COSTS, PreparedCost, path_cost, path_energy, prepare_cost
from hti_bench.toolkit.lagrangian.lbfgs import batched_lbfgs
from hti_bench.toolkit.lagrangian.metric import (
    METRICS,
    EigenBudgetMetric,
    EuclideanMetric,
    GridMetric,
    Metric,
    NLOTMetric,
    givens_apply,
    givens_rotation,
    make_metric,
    unit_angle,
)
from hti_bench.toolkit.lagrangian.path import BASES as SPLINE_BASES
from hti_bench.toolkit.lagrangian.path import SplinePath, spline_matrices
from hti_bench.toolkit.lagrangian.potential import GridPotential, KDEPotential, scott_bandwidth

__all__ = [
    "COSTS",
    "METRICS",
    "EigenBudgetMetric",
    "EuclideanMetric",
    "GridMetric",
    "GridPotential",
    "KDEPotential",
    "Metric",
    "NLOTMetric",
    "PreparedCost",
    "SPLINE_BASES",
    "SplinePath",
    "batched_lbfgs",
    "givens_apply",
    "givens_rotation",
    "make_metric",
    "path_cost",
    "path_energy",
    "prepare_cost",
    "scott_bandwidth",
    "spline_matrices",
    "unit_angle",
]

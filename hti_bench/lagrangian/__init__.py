"""Building blocks of Lagrangian optimal transport (used by the CLOT surrogate in ``methods/clot.py``).

The FiLM-conditioned networks it uses are shared with the flow baselines, in :mod:`hti_bench.nets`.

- :mod:`.geometry`: Riemannian metrics (Euclidean, eigenvalue-budget, NLOT), the KDE density
  potential, the cubic-spline path basis and the action of a path.
- :mod:`.lbfgs`: a batched L-BFGS that minimises many independent problems at once (the c-transform).
"""

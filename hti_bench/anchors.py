"""The anchor data a surrogate is fitted on.

The harness owns the split between anchor and held-out λ: an :class:`AnchorSet` is built from the
anchor networks only, so nothing a surrogate is given can leak a held-out network's outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from hti_bench.clock import Hyperparameter, HyperparameterSpace, Point
from hti_bench.errors import OpenConditionError

#: What answers at new condition rows: ``oracle(conditions (M', C), n, seed)`` → anchor samples
#: (K, M', n, D) of the anchor networks run on those rows (the harness wires in
#: :meth:`hti_bench.view.TaskView.anchor_samples`).
Oracle = Callable[[Tensor, int, int], Tensor]


@dataclass(frozen=True)
class AnchorSet:
    """Outputs of the networks trained at the anchor values of λ.

    Attributes
    ----------
    space : HyperparameterSpace
        What λ is: its d named axes, their ranges and their clocks (one axis for a task of one
        hyperparameter). Interpolate in clock time, never in raw λ: :meth:`unit` and
        :attr:`unit_points` (every axis's clock time rescaled to [0, 1]), :meth:`simplex`,
        :meth:`nearest`; on one axis also :attr:`times` and :meth:`locate`. The constructor also takes
        a single :class:`~hti_bench.clock.Hyperparameter` and stores its one-axis space.
    lambdas : tuple of points (K ≥ d + 1)
        Anchor values of λ, each a tuple of d floats, distinct, in the task's order; on one axis
        strictly increasing. The constructor also takes bare numbers on one axis.
    conditions : Tensor, shape (M, C), float32
        The condition inputs x. Every anchor network was run on every row.
    samples : Tensor, shape (K, M, n, D), float32
        ``samples[k, i]`` holds n draws of y ~ p(y | x = conditions[i], λ = lambdas[k]). Deterministic
        networks have n = 1 or n identical draws.
    eval_mask : Tensor, shape (M,), bool
        True for the conditions the surrogate will be queried and scored at. A deployed anchor network
        can be run on any input, so their anchor outputs are part of the anchor data; the held-out
        networks' outputs never are. Surrogates that learn across x may fit on all rows or only on
        ``~eval_mask`` rows; either is fair.
    categorical : bool
        True when ``conditions`` has one column holding an integer class id.
    oracle : callable or None
        The *anchor oracle*: runs the anchor networks (and only those) on condition rows that are not
        among ``conditions``, e.g. the states a closed-loop rollout visits. Use it through
        :meth:`samples_at` and :meth:`restrict`; None when the anchor set was built without one (then
        those raise :class:`~hti_bench.errors.OpenConditionError` for unseen rows).
    """

    space: HyperparameterSpace
    lambdas: tuple[Point, ...]
    conditions: Tensor
    samples: Tensor
    eval_mask: Tensor
    categorical: bool = False
    oracle: Oracle | None = field(default=None, repr=False, compare=False)
    _index: dict[tuple[float, ...], int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        space = self.space
        if isinstance(space, Hyperparameter):  # a convenience: one hyperparameter is its one-axis space
            space = HyperparameterSpace((space,))
            object.__setattr__(self, "space", space)
        lambdas = space.check_anchors(self.lambdas)
        object.__setattr__(self, "lambdas", lambdas)
        if self.samples.ndim != 4:
            raise ValueError(f"samples must have shape (K, M, n, D), got {tuple(self.samples.shape)}")
        k, m = self.samples.shape[:2]
        if k != len(lambdas):
            raise ValueError(f"samples has {k} anchors but lambdas has {len(lambdas)}")
        if self.conditions.ndim != 2 or self.conditions.shape[0] != m:
            raise ValueError(f"conditions must have shape (M={m}, C), got {tuple(self.conditions.shape)}")
        if self.eval_mask.shape != (m,):
            raise ValueError(f"eval_mask must have shape ({m},), got {tuple(self.eval_mask.shape)}")
        if not torch.isfinite(self.samples).all():
            raise ValueError("anchor samples contain NaN or inf")
        index = {tuple(row.tolist()): i for i, row in enumerate(self.conditions)}
        if len(index) != m:
            raise ValueError("conditions must be distinct rows")
        self._index.update(index)

    @property
    def n_anchors(self) -> int:
        return self.samples.shape[0]

    @property
    def n_conditions(self) -> int:
        return self.samples.shape[1]

    @property
    def n_samples(self) -> int:
        return self.samples.shape[2]

    @property
    def output_dim(self) -> int:
        return self.samples.shape[3]

    @property
    def d(self) -> int:
        """How many hyperparameters λ has."""
        return self.space.d

    @property
    def times(self) -> tuple[float, ...]:
        """Anchor positions on the clock of a single axis (:attr:`HyperparameterSpace.axis
        <hti_bench.clock.HyperparameterSpace.axis>`: a :class:`~hti_bench.errors.ConfigError` for
        several hyperparameters, which have :attr:`unit_points`)."""
        axis = self.space.axis
        return tuple(axis.to_time(v[0]) for v in self.lambdas)

    @property
    def unit_points(self) -> Tensor:
        """Anchor positions (K, d) in unit clock time: each axis's clock, its range rescaled to [0, 1]
        (:meth:`HyperparameterSpace.to_unit <hti_bench.clock.HyperparameterSpace.to_unit>`); what a
        surrogate conditioned on the λ vector feeds its network."""
        return torch.tensor([self.space.to_unit(v) for v in self.lambdas], dtype=torch.float32)

    def unit(self, lam: Point) -> Tensor:
        """λ in unit clock time, shape (d,)."""
        return torch.tensor(self.space.to_unit(lam), dtype=torch.float32)

    def simplex(self, lam: Point) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """(anchor indices, barycentric weights) of the anchor simplex containing λ: from the Delaunay
        triangulation of the anchors in unit clock time, or on a single axis the enclosing anchor
        interval of :meth:`locate`, ((k, k + 1), (1 − s, s)). The weighted anchors reproduce λ.
        ``ValueError`` outside the anchors' hull (their range, on one axis)."""
        return self.space.simplex(self.lambdas, lam)

    def nearest(self, lam: Point) -> int:
        """Index of the anchor closest to λ in unit clock time (the first on a tie)."""
        return self.space.nearest(self.lambdas, lam)

    def locate(self, lam: Point | float) -> tuple[int, float]:
        """Return (k, s): λ, on a single axis (a 1-tuple or a number), lies in anchor interval
        [λ_k, λ_k+1] at clock fraction s ∈ [0, 1].

        Raises ``ValueError`` for λ outside [λ_0, λ_K-1]: HTI is interpolation, and surrogates that
        cannot extrapolate must say so rather than return something; and
        :class:`~hti_bench.errors.ConfigError` (a ``ValueError``) on several hyperparameters, whose
        anchors have :meth:`simplex` (barycentric weights) or :meth:`nearest` instead.
        """
        k, _, s = self.space.interval(self.lambdas, lam)
        return k, s

    def index_of(self, conditions: Tensor) -> Tensor:
        """Row indices into ``self.conditions`` of each row of ``conditions`` (shape (M', C)).

        Raises :class:`~hti_bench.errors.OpenConditionError` (a ``ValueError``) naming the first
        condition the anchor networks were not run on; :meth:`samples_at` and :meth:`restrict` answer
        there with the oracle instead.
        """
        index = self.lookup(conditions)
        unseen = (index < 0).nonzero()
        if unseen.numel():
            i = int(unseen[0])
            raise OpenConditionError(
                f"condition {i} ({torch.as_tensor(conditions)[i].tolist()}) is not among the anchor conditions; this "
                "surrogate can only answer where the anchor networks were run."
            )
        return index

    def lookup(self, conditions: Tensor) -> Tensor:
        """Row index into ``self.conditions`` of each row of ``conditions`` (M', C), −1 for a row the
        anchor networks were not run on (:meth:`index_of` raises for those instead)."""
        conditions = self._check_rows(conditions)
        return torch.tensor([self._index.get(tuple(row.tolist()), -1) for row in conditions], dtype=torch.long)

    def samples_at(self, conditions: Tensor, seed: int = 0) -> Tensor:
        """The anchor samples (K, M', n, D) at each row of ``conditions``: stored rows where the anchor
        networks were run, the :attr:`oracle`'s answer (drawn with ``seed``) at every other row.

        Raises :class:`~hti_bench.errors.OpenConditionError` for unseen rows when there is no oracle.
        """
        conditions = self._check_rows(conditions)
        index = self.lookup(conditions)
        out = self.samples[:, index.clamp(min=0)].clone()
        unseen = index < 0
        if bool(unseen.any()):
            if self.oracle is None:
                first = int(unseen.nonzero()[0])
                raise OpenConditionError(
                    f"condition {first} ({conditions[first].tolist()}) is not among the anchor conditions, and this "
                    "anchor set has no oracle to run the anchor networks there"
                )
            extra = torch.as_tensor(
                self.oracle(conditions[unseen], self.n_samples, int(seed)), dtype=self.samples.dtype
            )
            expected = (self.n_anchors, int(unseen.sum()), self.n_samples, self.output_dim)
            if tuple(extra.shape) != expected:
                raise ValueError(f"the anchor oracle returned shape {tuple(extra.shape)}, expected {expected}")
            out[:, unseen] = extra
        return out

    def restrict(self, conditions: Tensor, seed: int = 0) -> tuple[AnchorSet, Tensor]:
        """An anchor set over exactly the distinct rows of ``conditions`` (all marked for evaluation),
        with samples from :meth:`samples_at`, and the index (M',) of each query row in it: how a
        surrogate that precomputes per-condition state answers at rows it was not fitted on."""
        conditions = self._check_rows(conditions)
        distinct, inverse = torch.unique(conditions, dim=0, return_inverse=True)
        local = AnchorSet(
            space=self.space,
            lambdas=self.lambdas,
            conditions=distinct,
            samples=self.samples_at(distinct, seed),
            eval_mask=torch.ones(distinct.shape[0], dtype=torch.bool),
            categorical=self.categorical,
            oracle=self.oracle,
        )
        return local, inverse.reshape(-1)

    def _check_rows(self, conditions: Tensor) -> Tensor:
        conditions = torch.as_tensor(conditions, dtype=self.conditions.dtype)
        if conditions.ndim != 2 or conditions.shape[1] != self.conditions.shape[1]:
            raise ValueError(
                f"conditions must have shape (M, {self.conditions.shape[1]}), got {tuple(conditions.shape)}"
            )
        return conditions

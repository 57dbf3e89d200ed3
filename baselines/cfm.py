"""Conditional flow matching between anchors, on the task's λ clock (torchcfm objectives).

A velocity field v(y, t, x) is trained so that integrating dy/dt = v from one anchor's samples at x
reaches the next anchor's, with time t = the clock position of λ (rescaled to [0, 1] over the anchor
range). Training draws an interval k, pairs anchor-k and anchor-(k+1) samples *of the same condition*
(``coupling``), draws s ~ U[0, 1] and regresses v(y_s, t_k + s·Δ_k, x) onto the matcher's conditional
velocity divided by Δ_k: torchcfm's velocities are per unit of its own s ∈ [0, 1], and dividing by the
interval's length on the clock is what makes unevenly spaced anchors consistent.
Sampling at λ integrates the ODE from the start anchor's samples at the query conditions.

With ``coupling=exact`` and σ = 0 each interval's target is the straight per-condition McCann flow,
so an ideal fit reproduces ``mccann`` smoothed across x and intervals; ``coupling=row`` with
``per_interval=True`` is the HTI authors' baseline (one net per interval, row-index pairs).

Several hyperparameters: the anchors' Delaunay edges take the intervals' place, and the field becomes
a matrix V(y, τ, x) ∈ ℝ^{D×d}, the rate of change of y per unit of each clock coordinate: along an edge
a → b the pair moves by V·(τ_b − τ_a) per unit s, which is what it regresses (divided by the edge's
length, as the 1-D target is by Δ_k). Sampling at λ integrates dy/ds = V(y, τ_a + s(τ* − τ_a), x)·(τ* − τ_a)
along the straight segment from the nearest anchor (the first, with ``start=first``). Nothing forces V
to be path-independent; its error against the barycenter is what that costs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from hti_bench.errors import ConfigError, check_choice
from hti_bench.toolkit.flows import (
    COUPLINGS,
    MATCHERS,
    FlowData,
    SegmentFlowSurrogate,
    Segments,
    check_budget,
    make_matcher,
)

STARTS = ("lower", "nearest", "first")


class CFM(SegmentFlowSurrogate):
    name: ClassVar[str] = "cfm"
    description: ClassVar[str] = (
        "Conditional flow matching between anchors on the λ clock (torchcfm), conditioned on x."
    )
    supports_multi: ClassVar[bool] = True  # a D×d field along the anchors' Delaunay edges
    name_parameters: ClassVar[tuple[str, ...]] = ("matcher",)
    references: ClassVar[tuple[str, ...]] = (
        "Lipman et al., Flow matching for generative modeling, ICLR 2023",
        "Tong et al., Improving and generalizing flow-based generative models with minibatch optimal transport, TMLR 2024",
    )
    test_config: ClassVar[dict] = {"steps": 40, "batch_size": 64, "hidden": (32, 32), "solver": "rk4", "step_size": 0.1}
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "lr": {"distribution": "log_uniform_values", "min": 0.0003, "max": 0.01},
        "matcher": {"values": ["plain", "exact-ot", "sb"]},
        "hidden": {"values": [[64, 64, 64], [128, 128, 128], [256, 256, 256]]},
    }

    def __init__(
        self,
        *,
        matcher: str = "plain",
        coupling: str = "auto",
        sigma: float | None = None,
        per_interval: bool = False,
        segments: str = "uniform",
        start: str = "lower",
        group_size: int = 64,
        **shared: Any,
    ) -> None:
        """
        Parameters
        ----------
        matcher : 'plain' | 'exact-ot' | 'sb'
            torchcfm path. 'exact-ot' and 'sb' re-pair each condition's minibatch of ``group_size``
            with their own OT plan (exact; entropic with ε = 2σ² for the Schrödinger bridge).
        coupling : 'auto' | 'exact' | 'independent' | 'row'
            Pairing for the 'plain' matcher (see :data:`hti_bench.toolkit.flows.COUPLINGS`); 'auto' is 'exact'
            for 'plain' and 'independent' for the matchers that re-pair.
        sigma : float or None
            Path noise in standardised output units; None = 0 (0.1 for 'sb', which needs σ > 0).
        per_interval : bool
            One velocity net per anchor interval (the HTI authors' baseline) instead of one over all.
        segments : 'uniform' | 'length'
            Draw intervals uniformly, or in proportion to their length on the clock.
        start : 'lower' | 'nearest' | 'first'
            Integrate from the nearest lower anchor, the nearest anchor on the clock (backwards from
            the upper one when it is closer), or always from the first anchor. With several
            hyperparameters 'lower' and 'nearest' both start at the nearest anchor.
        group_size : int
            Pairs per (interval, condition) group re-paired by 'exact-ot' and 'sb'.

        The solver (``solver``, ``atol``, ``rtol``, ``step_size``), the budget and the network
        (``steps``, ``batch_size``, ``lr``, ``hidden``, ``device``) are
        :class:`~hti_bench.toolkit.flows.OdeFlowSurrogate`'s.
        """
        super().__init__(**shared)
        self.matcher = matcher
        self.coupling = coupling
        self.sigma = sigma
        self.per_interval = per_interval
        self.segments = segments
        self.start = start
        self.group_size = group_size

    def _resolved(self) -> tuple[str, float]:
        check_choice("matcher", self.matcher, MATCHERS)
        check_choice("coupling", self.coupling, ("auto",) + COUPLINGS)
        check_choice("segments", self.segments, ("uniform", "length"))
        check_choice("start", self.start, STARTS)
        check_budget(self, ("group_size",))
        repairs = self.matcher != "plain"
        coupling = self.coupling if self.coupling != "auto" else ("independent" if repairs else "exact")
        if repairs and coupling != "independent":
            raise ConfigError(
                f"matcher {self.matcher!r} re-pairs each minibatch with its own OT plan, so coupling={coupling!r} "
                "would be discarded; use coupling=independent (or auto), or matcher=plain"
            )
        sigma = self.sigma if self.sigma is not None else (0.1 if self.matcher == "sb" else 0.0)
        return coupling, float(sigma)

    def check_params(self) -> None:
        self._resolved()
        super().check_params()

    def _prepare(self) -> None:
        self.coupling_, self.sigma_ = self._resolved()
        self.matcher_ = make_matcher(self.matcher, self.sigma_)

    def _n_fields(self, edges: Segments) -> int:
        if not self.per_interval:
            return 1
        if not edges.line:
            raise ConfigError(
                "per_interval=True is one net per interval of one λ clock; on a task of "
                f"{edges.d} hyperparameters use per_interval=False (one field over the plane)"
            )
        return len(edges)

    def _weights(self, edges: Segments) -> Tensor:
        return torch.ones(len(edges)) if self.segments == "uniform" else edges.length.cpu().double()

    def _batch(self, data: FlowData, weights: Tensor, bs: int, gen: torch.Generator):
        """Paired (y0, y1, x, k), each pair within one condition and one anchor interval."""
        if self.matcher == "plain":
            return super()._batch(data, weights, bs, gen)
        # Matchers that re-pair: groups of one (interval, condition), re-paired by the matcher's plan.
        k_anchors, m, n, d = data.shape
        g = min(int(self.group_size), n)
        groups = max(1, bs // g)
        ks = torch.multinomial(weights, groups, replacement=True, generator=gen)
        conds = torch.randint(0, m, (groups,), generator=gen)
        out0, out1 = [], []
        for k, c in zip(ks.tolist(), conds.tolist()):
            lo, hi = self.edges_.route[k].tolist()
            a = data.y[lo, c, torch.randperm(n, generator=gen)[:g].to(data.device)]
            b = data.y[hi, c, torch.randperm(n, generator=gen)[:g].to(data.device)]
            if g > 1:
                plan = torch.as_tensor(self.matcher_.ot_sampler.get_map(a, b)).reshape(-1).double()
                pick = torch.multinomial(plan / plan.sum(), g, replacement=True, generator=gen)
                a, b = a[(pick // g).to(data.device)], b[(pick % g).to(data.device)]
            out0.append(a)
            out1.append(b)
        k = ks.repeat_interleave(g).to(data.device)
        cond = conds.repeat_interleave(g).to(data.device)
        return torch.cat(out0), torch.cat(out1), data.x[cond], k

    def _velocity(self, y: Tensor, x: Tensor, t: Tensor, k: Tensor | int | None) -> Tensor:
        if len(self.fields_) == 1:
            return super()._velocity(y, x, t, k)
        if isinstance(k, int):  # one interval of the line: its own net
            return self.fields_[k](y, x, t)
        out = torch.empty_like(y)
        for j in torch.unique(k).tolist():
            sel = k == j
            out[sel] = self.fields_[j](y[sel], x[sel], t[sel])
        return out

    def _start_from(self) -> str:
        return self.start

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
from torch import Tensor, nn

from hti_bench.anchors import AnchorSet
from hti_bench.errors import ConfigError, check_choice, check_positive
from hti_bench.surrogate import Surrogate
from hti_bench.toolkit import training
from hti_bench.toolkit.flows import (
    COUPLINGS,
    FLOW_TRAINING,
    MATCHERS,
    FlowData,
    Segments,
    TimeMLP,
    check_budget,
    clock_inputs,
    integrate,
    make_matcher,
    validate_solver,
)
from hti_bench.toolkit.nets import check_device, check_hidden, resolve_device, seeded
from hti_bench.view import TaskView

STARTS = ("lower", "nearest", "first")


class CFM(Surrogate):
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
        solver: str = "dopri5",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        step_size: float = 0.01,
        steps: int = 3000,
        batch_size: int = 256,
        group_size: int = 64,
        lr: float = 2e-3,
        hidden: tuple[int, ...] = (128, 128, 128),
        device: str = "auto",
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
        solver, atol, rtol, step_size
            torchdiffeq method; adaptive ones (dopri5, tsit5, bosh3) use atol/rtol, fixed ones (rk4,
            midpoint, euler) use step_size on the [0, 1] clock.
        """
        self.matcher = matcher
        self.coupling = coupling
        self.sigma = sigma
        self.per_interval = per_interval
        self.segments = segments
        self.start = start
        self.solver = solver
        self.atol = atol
        self.rtol = rtol
        self.step_size = step_size
        self.steps = steps
        self.batch_size = batch_size
        self.group_size = group_size
        self.lr = lr
        self.hidden = hidden
        self.device = device

    def _resolved(self) -> tuple[str, float]:
        check_choice("matcher", self.matcher, MATCHERS)
        check_choice("coupling", self.coupling, ("auto",) + COUPLINGS)
        check_choice("segments", self.segments, ("uniform", "length"))
        check_choice("start", self.start, STARTS)
        validate_solver(self.solver, self.atol, self.rtol, self.step_size)
        check_budget(self, ("steps", "batch_size", "group_size"))
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
        check_positive(self, ("lr",))
        check_hidden(self.hidden)
        check_device(self.device)

    def fit(self, anchors: AnchorSet, task: TaskView | None = None, *, seed: int = 0) -> CFM:
        self.check_params()
        self.coupling_, self.sigma_ = self._resolved()
        dev = resolve_device(self.device)
        self.matcher_ = make_matcher(self.matcher, self.sigma_)
        with seeded(dev, seed) as gen:
            self._fit(anchors, dev, gen)
        return self

    def _fit(self, anchors: AnchorSet, dev: torch.device, gen: torch.Generator) -> None:
        data = self.data_ = FlowData(anchors, dev)
        k_anchors, m, n, d = data.shape
        if anchors.d > 1 and self.per_interval:
            raise ConfigError(
                "per_interval=True is one net per interval of one λ clock; on a task of "
                f"{anchors.d} hyperparameters use per_interval=False (one field over the plane)"
            )
        edges = self.edges_ = Segments(data)
        n_nets = k_anchors - 1 if self.per_interval else 1
        hidden = tuple(int(h) for h in self.hidden)
        self.fields_ = nn.ModuleList(
            [
                TimeMLP(d, (True,) * anchors.d, hidden, data.x.shape[1], data.encoder.n_classes, out_dim=edges.out_dim)
                for _ in range(n_nets)
            ]
        ).to(dev)
        weights = torch.ones(len(edges)) if self.segments == "uniform" else edges.length.cpu().double()
        bs = int(self.batch_size)

        def loss_fn(step: int) -> Tensor:
            y0, y1, x, k = self._batch(data, weights, bs, gen)
            s = torch.rand(y0.shape[0], generator=gen).to(dev)
            eps = torch.randn(y0.shape, generator=gen).to(dev)
            ys = self.matcher_.sample_xt(y0, y1, s, eps)
            flow = self.matcher_.compute_conditional_flow(y0, y1, s, ys)
            return edges.matching_loss(lambda yy, xx, t: self._velocity(yy, xx, t, k), ys, x, k, s, flow)

        self.losses_ = training.train_loop(
            self.fields_.parameters(), loss_fn, steps=int(self.steps), lr=float(self.lr), **FLOW_TRAINING
        )
        self.fields_.eval().requires_grad_(False)

    def _batch(self, data: FlowData, weights: Tensor, bs: int, gen: torch.Generator):
        """Paired (y0, y1, x, k), each pair within one condition and one anchor interval."""
        k_anchors, m, n, d = data.shape
        if self.matcher == "plain":
            k = torch.multinomial(weights, bs, replacement=True, generator=gen).to(data.device)
            cond, row = data.draw_rows(bs, gen)
            y0, y1 = data.pairs(*self.edges_.ends(k), cond, row, self.coupling_, gen)
            return y0, y1, data.x[cond], k
        # Matchers that re-pair: groups of one (interval, condition), re-paired by the matcher's plan.
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

    def _velocity(self, y: Tensor, x: Tensor, t: Tensor, k: Tensor | int) -> Tensor:
        if len(self.fields_) == 1:
            return self.fields_[0](y, x, *clock_inputs(t, self.data_.anchors.d))
        if isinstance(k, int):
            return self.fields_[k](y, x, t)
        out = torch.empty_like(y)
        for j in torch.unique(k).tolist():
            sel = k == j
            out[sel] = self.fields_[j](y[sel], x[sel], t[sel])
        return out

    @torch.no_grad()
    def sample(self, lam: float, conditions: Tensor, n: int, seed: int) -> Tensor:
        self.check_sample_args(n)
        data = self.data_
        if data.anchors.d > 1:
            return self._sample_plane(lam, conditions, int(n), seed)
        k, s = data.anchors.locate(lam)
        start = {"lower": k, "first": 0, "nearest": k if s <= 0.5 else k + 1}[self.start]
        y, x = data.start_samples(start, conditions, int(n), self.generator(seed))
        target = data.tau_of(lam)
        # Integrate interval by interval: with per-interval nets the field changes at each anchor,
        # and even one net has a kink there that an adaptive solver should not step across.
        tau = data.tau.tolist()
        here = tau[start]
        while abs(target - here) > 1e-12:
            forward = target > here
            j = (
                max(i for i in range(len(tau) - 1) if tau[i] <= here + 1e-12)
                if forward
                else min(i for i in range(len(tau) - 1) if tau[i + 1] >= here - 1e-12)
            )
            j = min(j, len(tau) - 2)
            stop = min(target, tau[j + 1]) if forward else max(target, tau[j])
            y = integrate(
                lambda yy, t, j=j: self._velocity(yy, x, t.expand(yy.shape[0]), j),
                y,
                here,
                stop,
                solver=self.solver,
                atol=float(self.atol),
                rtol=float(self.rtol),
                step_size=float(self.step_size),
            )
            here = stop
        return data.restore(y).reshape(conditions.shape[0], int(n), -1)

    def _sample_plane(self, lam: tuple[float, ...], conditions: Tensor, n: int, seed: int) -> Tensor:
        return self.edges_.sample_plane(
            lambda yy, xx, t: self._velocity(yy, xx, t, 0),
            lam,
            conditions,
            n,
            self.generator(seed),
            start=0 if self.start == "first" else None,
            solver=self.solver,
            atol=float(self.atol),
            rtol=float(self.rtol),
            step_size=float(self.step_size),
        )

"""Direct regression Φ(y_a, t_a, t, x) → y_t: the HTI paper's "Direct" baseline.

A FiLM-conditioned MLP is trained with squared error to map a sample of the start anchor a (at clock
time t_a) and a target time t to its partner sample at anchor b (time t_b = t), within one condition.
Training pairs are exactly the (start, target) anchor pairs that sampling will interpolate between:
with ``start="first"`` (the authors' protocol) every anchor from the first; with ``start="lower"``
each anchor to itself and to the next. At an unseen λ the start anchor's samples at the query
conditions are mapped in one network call.

It is a regression, so it learns E[y_b | y_a, x] under the coupling: with ``coupling=exact``
(default) a near-deterministic transport map; with ``row`` (the authors' pairing, meaningful when
rows share noise across anchors) or ``independent`` pairs it collapses towards the conditional mean
of the target anchor, which is the weakness the paper's comparison exposes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from hti_bench.anchors import AnchorSet
from hti_bench.errors import check_choice, check_positive
from hti_bench.surrogate import Surrogate
from hti_bench.toolkit import training
from hti_bench.toolkit.flows import (
    COUPLINGS,
    FLOW_TRAINING,
    FlowData,
    TimeMLP,
    check_budget,
    clock_inputs,
    delaunay_edges,
)
from hti_bench.toolkit.nets import check_device, check_hidden, resolve_device, seeded
from hti_bench.view import TaskView


class Direct(Surrogate):
    name: ClassVar[str] = "direct"
    description: ClassVar[str] = (
        "Direct regression of y at λ from paired anchor samples (the HTI paper's Direct baseline)."
    )
    name_parameters: ClassVar[tuple[str, ...]] = ("coupling",)
    supports_multi: ClassVar[bool] = True
    references: ClassVar[tuple[str, ...]] = (
        (
            "Amad & van der Schaar, Hyperparameter Trajectory Inference with Conditional Lagrangian Optimal "
            "Transport, ICLR 2026 (the Direct baseline of its comparison)"
        ),
    )
    test_config: ClassVar[dict] = {"steps": 40, "batch_size": 64, "hidden": (32, 32)}
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "lr": {"distribution": "log_uniform_values", "min": 0.0003, "max": 0.01},
        "coupling": {"values": ["exact", "independent", "row"]},
        "hidden": {"values": [[64, 64, 64, 64], [128, 128, 128, 128], [256, 256, 256, 256]]},
    }

    def __init__(
        self,
        *,
        coupling: str = "exact",
        start: str = "lower",
        steps: int = 3000,
        batch_size: int = 256,
        lr: float = 2e-3,
        hidden: tuple[int, ...] = (128, 128, 128, 128),
        device: str = "auto",
    ) -> None:
        """
        Parameters
        ----------
        coupling : 'exact' | 'independent' | 'row'
            How start-anchor samples are paired with target-anchor samples of the same condition
            (:data:`hti_bench.toolkit.flows.COUPLINGS`).
        start : 'lower' | 'first'
            Map from the nearest lower anchor, or always from the first (the authors' protocol).
        """
        self.coupling = coupling
        self.start = start
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.hidden = hidden
        self.device = device

    def check_params(self) -> None:
        check_choice("coupling", self.coupling, COUPLINGS)
        check_choice("start", self.start, ("lower", "first"))
        check_budget(self, ("steps", "batch_size"))
        check_positive(self, ("lr",))
        check_hidden(self.hidden)
        check_device(self.device)

    def fit(self, anchors: AnchorSet, task: TaskView | None = None, *, seed: int = 0) -> Direct:
        self.check_params()
        dev = resolve_device(self.device)
        with seeded(dev, seed) as gen:
            self._fit(anchors, dev, gen)
        return self

    def _fit(self, anchors: AnchorSet, dev: torch.device, gen: torch.Generator) -> None:
        data = self.data_ = FlowData(anchors, dev)
        k_anchors, _, _, d = data.shape
        if self.start == "first":
            routes = [(0, b) for b in range(k_anchors)]
        elif anchors.d > 1:
            # Several hyperparameters: each anchor to itself and to its Delaunay neighbours (both ways),
            # the directions in which a query near an anchor leaves it.
            routes = [(k, k) for k in range(k_anchors)] + delaunay_edges(anchors.unit_points)
        else:
            routes = [(k, k) for k in range(k_anchors)] + [(k, k + 1) for k in range(k_anchors - 1)]
        routes_t = torch.tensor(routes, device=dev)
        # One time input per hyperparameter, for the start anchor and for the target.
        n_times = 2 * anchors.d
        # Residual form, zero at initialisation: Φ starts as the identity, right for every (k, k) route.
        self.net_ = TimeMLP(
            d,
            (False,) * n_times,
            tuple(int(h) for h in self.hidden),
            data.x.shape[1],
            data.encoder.n_classes,
            residual=True,
        ).to(dev)
        bs = int(self.batch_size)

        def loss_fn(step: int) -> Tensor:
            r = routes_t[torch.randint(0, len(routes), (bs,), generator=gen).to(dev)]
            cond, row = data.draw_rows(bs, gen)
            ya, yb = data.pairs(r[:, 0], r[:, 1], cond, row, self.coupling, gen)
            pred = self.net_(
                ya,
                data.x[cond],
                *clock_inputs(data.tau[r[:, 0]], anchors.d),
                *clock_inputs(data.tau[r[:, 1]], anchors.d),
            )
            return ((pred - yb) ** 2).sum(-1).mean()

        self.losses_ = training.train_loop(
            self.net_.parameters(), loss_fn, steps=int(self.steps), lr=float(self.lr), **FLOW_TRAINING
        )
        self.net_.eval().requires_grad_(False)

    @torch.no_grad()
    def sample(self, lam: float, conditions: Tensor, n: int, seed: int) -> Tensor:
        self.check_sample_args(n)
        data = self.data_
        if data.anchors.d > 1:
            data.anchors.simplex(lam)  # refuses a point outside the anchors' hull
            start = 0 if self.start == "first" else data.anchors.nearest(lam)
            target = data.tau_of(lam)
        else:
            k, _ = data.anchors.locate(lam)
            start = 0 if self.start == "first" else k
            target = torch.tensor(data.tau_of(lam), device=data.device)
        y, x = data.start_samples(start, conditions, int(n), self.generator(seed))
        out = self.net_(y, x, *clock_inputs(data.tau[start], data.anchors.d), *clock_inputs(target, data.anchors.d))
        return data.restore(out).reshape(conditions.shape[0], int(n), -1)

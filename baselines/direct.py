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

from hti_bench.errors import check_choice
from hti_bench.toolkit.flows import COUPLINGS, FlowData, FlowSurrogate


class Direct(FlowSurrogate):
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
        hidden: tuple[int, ...] = (128, 128, 128, 128),
        **shared: Any,
    ) -> None:
        """
        Parameters
        ----------
        coupling : 'exact' | 'independent' | 'row'
            How start-anchor samples are paired with target-anchor samples of the same condition
            (:data:`hti_bench.toolkit.flows.COUPLINGS`).
        start : 'lower' | 'first'
            Map from the nearest lower anchor, or always from the first (the authors' protocol).
        hidden : tuple of int
            Hidden widths of the regression network Φ.

        ``steps``, ``batch_size``, ``lr`` and ``device`` are :class:`~hti_bench.toolkit.flows.FlowSurrogate`'s.
        """
        super().__init__(hidden=hidden, **shared)
        self.coupling = coupling
        self.start = start

    def check_params(self) -> None:
        check_choice("coupling", self.coupling, COUPLINGS)
        check_choice("start", self.start, ("lower", "first"))
        super().check_params()

    def _fit(self, data: FlowData, gen: torch.Generator) -> None:
        k_anchors, dev = data.shape[0], data.device
        if self.start == "first":
            routes = [(0, b) for b in range(k_anchors)]
        else:
            # Each anchor to itself and to its neighbours (on the plane, both ways along the Delaunay
            # edges: the directions in which a query near an anchor leaves it).
            routes = [(k, k) for k in range(k_anchors)] + data.neighbours()
        routes_t = torch.tensor(routes, device=dev)
        # One time input per hyperparameter, for the start anchor and for the target. Residual form,
        # zero at initialisation: Φ starts as the identity, right for every (k, k) route.
        self.net_ = data.network((False,) * (2 * data.anchors.d), self.hidden, residual=True)
        bs = int(self.batch_size)

        def loss_fn(step: int) -> Tensor:
            r = routes_t[torch.randint(0, len(routes), (bs,), generator=gen).to(dev)]
            cond, row = data.draw_rows(bs, gen)
            ya, yb = data.pairs(r[:, 0], r[:, 1], cond, row, self.coupling, gen)
            times = (*data.clock_inputs(data.tau[r[:, 0]]), *data.clock_inputs(data.tau[r[:, 1]]))
            return ((self.net_(ya, data.x[cond], *times) - yb) ** 2).sum(-1).mean()

        self._train(self.net_, loss_fn)

    @torch.no_grad()
    def sample(self, lam: float | tuple[float, ...], conditions: Tensor, n: int, seed: int) -> Tensor:
        self.check_sample_args(n)
        data = self.data_
        start = data.start(lam, self.start)
        target = torch.as_tensor(data.tau_of(lam), device=data.device)
        y, x = data.start_samples(start, conditions, int(n), self.generator(seed))
        out = self.net_(y, x, *data.clock_inputs(data.tau[start]), *data.clock_inputs(target))
        return data.restore(out).reshape(conditions.shape[0], int(n), -1)

"""A generative model conditioned on λ: noise → y given (x, λ), trained on the anchors only.

The "just condition a generative model on λ" alternative to transporting between anchors: one flow-
matching model (torchcfm's ``ConditionalFlowMatcher``, Gaussian source) learns p(y | x, λ) at the
anchor λ, with λ entering as its clock position next to the flow time. At an unseen λ it integrates
from fresh noise. Nothing ties the answer at λ to the anchors' samples there: whatever it does
between anchors comes from the network's smoothness in λ, which is the point of the comparison.

On a task of several hyperparameters λ enters as its d clock coordinates (each axis rescaled over the
anchors' box), so one model covers the plane; it answers only inside the anchors' hull.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from hti_bench.errors import ConfigError
from hti_bench.toolkit.flows import FlowData, OdeFlowSurrogate, conditional_path, integrate, make_matcher


class LambdaFlow(OdeFlowSurrogate):
    name: ClassVar[str] = "lambda-flow"
    description: ClassVar[str] = "Flow-matching generative model of y given (x, λ), trained at the anchors (torchcfm)."
    references: ClassVar[tuple[str, ...]] = ("Lipman et al., Flow matching for generative modeling, ICLR 2023",)
    supports_multi: ClassVar[bool] = True  # conditioned on λ's d clock coordinates
    test_config: ClassVar[dict] = {"steps": 40, "batch_size": 64, "hidden": (32, 32), "solver": "rk4", "step_size": 0.1}
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "lr": {"distribution": "log_uniform_values", "min": 0.0003, "max": 0.01},
        "sigma": {"values": [0.0, 0.01, 0.1]},
        "hidden": {"values": [[64, 64, 64], [128, 128, 128], [256, 256, 256]]},
    }

    def __init__(self, *, sigma: float = 0.0, steps: int = 4000, **shared: Any) -> None:
        """
        Parameters
        ----------
        sigma : float
            Path noise of the conditional flow (standardised output units).
        steps : int
            Optimiser steps (more than the flows between anchors: it learns each anchor from noise).

        ``solver``, ``atol``, ``rtol`` and ``step_size`` (torchdiffeq method for the noise → y
        integration over flow time [0, 1]), ``batch_size``, ``lr``, ``hidden`` and ``device`` are
        :class:`~hti_bench.toolkit.flows.OdeFlowSurrogate`'s.
        """
        super().__init__(steps=steps, **shared)
        self.sigma = sigma

    def check_params(self) -> None:
        super().check_params()
        if not float(self.sigma) >= 0:
            raise ConfigError(f"sigma must be ≥ 0, got {self.sigma}")

    def _prepare(self) -> None:
        self.matcher_ = make_matcher("plain", float(self.sigma))

    def _fit(self, data: FlowData, gen: torch.Generator) -> None:
        k_anchors, dev = data.shape[0], data.device
        # Flow time gets Fourier features; each λ coordinate enters as itself.
        self.field_ = data.network((True,) + (False,) * data.anchors.d, self.hidden)
        bs = int(self.batch_size)

        def loss_fn(step: int) -> Tensor:
            k = torch.randint(0, k_anchors, (bs,), generator=gen).to(dev)
            cond, row = data.draw_rows(bs, gen)
            y1 = data.y[k, cond, row]
            z = torch.randn(y1.shape, generator=gen).to(dev)
            u = torch.rand(bs, generator=gen).to(dev)
            eps = torch.randn(y1.shape, generator=gen).to(dev)
            yu, target = conditional_path(self.matcher_, z, y1, u, eps)
            pred = self.field_(yu, data.x[cond], u, *data.clock_inputs(data.tau[k]))
            return ((pred - target) ** 2).sum(-1).mean()

        self._train(self.field_, loss_fn)

    @torch.no_grad()
    def sample(self, lam: float | tuple[float, ...], conditions: Tensor, n: int, seed: int) -> Tensor:
        self.check_sample_args(n)
        data = self.data_
        data.start(lam)  # raises outside the anchors (their range; for d > 1 their hull): this model only interpolates
        gen = self.generator(seed)
        x = data.encoder(conditions).repeat_interleave(int(n), 0).to(data.device)
        z = torch.randn(x.shape[0], data.shape[3], generator=gen).to(data.device)
        times = data.clock_inputs(torch.as_tensor(data.tau_of(lam), device=z.device))
        y = integrate(lambda yy, u: self.field_(yy, x, u, *times), z, 0.0, 1.0, **self._solver)
        return data.restore(y).reshape(conditions.shape[0], int(n), -1)

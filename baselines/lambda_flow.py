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

from hti_bench.anchors import AnchorSet
from hti_bench.errors import ConfigError, check_positive
from hti_bench.surrogate import Surrogate
from hti_bench.toolkit import training
from hti_bench.toolkit.flows import (
    FLOW_TRAINING,
    FlowData,
    TimeMLP,
    check_budget,
    clock_inputs,
    integrate,
    make_matcher,
    validate_solver,
)
from hti_bench.toolkit.nets import check_device, check_hidden, resolve_device, seeded
from hti_bench.view import TaskView


class LambdaFlow(Surrogate):
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

    def __init__(
        self,
        *,
        sigma: float = 0.0,
        steps: int = 4000,
        batch_size: int = 256,
        lr: float = 2e-3,
        hidden: tuple[int, ...] = (128, 128, 128),
        solver: str = "dopri5",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        step_size: float = 0.01,
        device: str = "auto",
    ) -> None:
        """
        Parameters
        ----------
        sigma : float
            Path noise of the conditional flow (standardised output units).
        solver, atol, rtol, step_size
            torchdiffeq method for the noise → y integration over flow time [0, 1].
        """
        self.sigma = sigma
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.hidden = hidden
        self.solver = solver
        self.atol = atol
        self.rtol = rtol
        self.step_size = step_size
        self.device = device

    def check_params(self) -> None:
        validate_solver(self.solver, self.atol, self.rtol, self.step_size)
        check_budget(self, ("steps", "batch_size"))
        check_positive(self, ("lr",))
        check_hidden(self.hidden)
        check_device(self.device)
        if not float(self.sigma) >= 0:
            raise ConfigError(f"sigma must be ≥ 0, got {self.sigma}")

    def fit(self, anchors: AnchorSet, task: TaskView | None = None, *, seed: int = 0) -> LambdaFlow:
        self.check_params()
        self.matcher_ = make_matcher("plain", float(self.sigma))
        dev = resolve_device(self.device)
        with seeded(dev, seed) as gen:
            self._fit(anchors, dev, gen)
        return self

    def _fit(self, anchors: AnchorSet, dev: torch.device, gen: torch.Generator) -> None:
        data = self.data_ = FlowData(anchors, dev)
        k_anchors, _, _, d = data.shape
        # Flow time gets Fourier features; each λ coordinate enters as itself.
        self.field_ = TimeMLP(
            d,
            (True,) + (False,) * anchors.d,
            tuple(int(h) for h in self.hidden),
            data.x.shape[1],
            data.encoder.n_classes,
        ).to(dev)
        bs = int(self.batch_size)

        def loss_fn(step: int) -> Tensor:
            k = torch.randint(0, k_anchors, (bs,), generator=gen).to(dev)
            cond, row = data.draw_rows(bs, gen)
            y1 = data.y[k, cond, row]
            z = torch.randn(y1.shape, generator=gen).to(dev)
            u = torch.rand(bs, generator=gen).to(dev)
            eps = torch.randn(y1.shape, generator=gen).to(dev)
            yu = self.matcher_.sample_xt(z, y1, u, eps)
            target = self.matcher_.compute_conditional_flow(z, y1, u, yu)
            pred = self.field_(yu, data.x[cond], u, *clock_inputs(data.tau[k], anchors.d))
            return ((pred - target) ** 2).sum(-1).mean()

        self.losses_ = training.train_loop(
            self.field_.parameters(), loss_fn, steps=int(self.steps), lr=float(self.lr), **FLOW_TRAINING
        )
        self.field_.eval().requires_grad_(False)

    @torch.no_grad()
    def sample(self, lam: float, conditions: Tensor, n: int, seed: int) -> Tensor:
        self.check_sample_args(n)
        data = self.data_
        # Both raise outside the anchors (their range; for d > 1 their hull): this model only interpolates.
        data.anchors.simplex(lam) if data.anchors.d > 1 else data.anchors.locate(lam)
        gen = self.generator(seed)
        x = data.encoder(conditions).repeat_interleave(int(n), 0).to(data.device)
        z = torch.randn(x.shape[0], data.shape[3], generator=gen).to(data.device)
        tau = torch.as_tensor(data.tau_of(lam), device=z.device)
        times = clock_inputs(tau, data.anchors.d)
        y = integrate(
            lambda yy, u: self.field_(yy, x, u, *times),
            z,
            0.0,
            1.0,
            solver=self.solver,
            atol=float(self.atol),
            rtol=float(self.rtol),
            step_size=float(self.step_size),
        )
        return data.restore(y).reshape(conditions.shape[0], int(n), -1)

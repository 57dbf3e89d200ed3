"""What STN and Δ-STN share: the perturbation scale of λ around λ0, their options, and STN's loop.

The registered surrogates are ``baselines/stn.py`` and ``baselines/delta_stn.py`` (MacKay et al.,
"Self-Tuning Networks", ICLR 2019; Bae & Grosse, "Delta-STN", NeurIPS 2020).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from hti_bench.errors import ConfigError
from hti_bench.toolkit import training
from hti_bench.toolkit.best_response.axis import BatchStream, LambdaAxis, split_training_data
from hti_bench.toolkit.best_response.functional import FunctionalNetwork
from hti_bench.toolkit.best_response.generators import StructuredResponse
from hti_bench.toolkit.best_response.surrogate import BestResponseSurrogate
from hti_bench.view import TaskView


class PerturbationScale(nn.Module):
    """STN's perturbation of λ: λ̃ = u⁻¹(u0 + σ ε) per λ draw, σ = softplus(ρ) learned with an
    entropy bonus τ·H, H = log(σ √(2πe)) (MacKay et al., "Self-Tuning Networks", ICLR 2019).

    Without hyperparameter steps (HTI fixes λ), only σ is tuned: every ``every`` network steps, one
    Adam step on ρ lowers L_val(ŵ(λ̃)) − τ·H on held-out training rows, the network in eval mode and
    the loss's own λ argument detached, as the STN's hyper step does. Without the entropy bonus σ
    collapses and the response is unidentified; τ sets how local the response stays.
    """

    def __init__(self, sigma0: float, center_u: float | Tensor, tau: float, lr: float) -> None:
        super().__init__()
        # One σ per hyperparameter (a scalar for one): each axis's perturbations have their own scale.
        center_u = torch.as_tensor(center_u, dtype=torch.float32)
        self.rho = nn.Parameter(torch.full(center_u.shape, math.log(math.expm1(sigma0))))
        self.center_u = center_u
        self.tau = float(tau)
        self.opt = training.adam([self.rho], lr)

    @property
    def sigma(self) -> Tensor:
        return nn.functional.softplus(self.rho)

    def entropy(self) -> Tensor:
        return torch.log(self.sigma * math.sqrt(2 * math.pi * math.e)).sum()

    def step(self, loss: Tensor) -> float | list[float]:
        objective = loss - self.tau * self.entropy()
        (grad,) = torch.autograd.grad(objective, [self.rho])
        self.opt.zero_grad(set_to_none=True)
        self.rho.grad = grad
        self.opt.step()
        sigma = self.sigma.detach()
        return float(sigma) if sigma.ndim == 0 else sigma.tolist()


class StnBase(BestResponseSurrogate):
    """STN's loop: network steps at perturbed λ̃ (σ fixed within a step), a σ step every
    ``scale_every`` steps. Δ-STN overrides :meth:`_train` and sets ``centred`` and ``linearised``."""

    supports_multi: ClassVar[bool] = True  # λ ∈ ℝᵈ with a σ per axis: the papers' native setting
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        **BestResponseSurrogate.search_space,
        "sigma0": {"values": [0.25, 0.5, 1.0]},
        "entropy_weight": {"distribution": "log_uniform_values", "min": 0.0001, "max": 0.01},
    }

    def __init__(
        self,
        *,
        center: float | None = None,
        sigma0: float = 0.5,
        tune_scale: bool = True,
        entropy_weight: float = 1e-3,
        scale_lr: float = 3e-3,
        scale_every: int = 5,
        val_fraction: float = 0.1,
        **shared: Any,
    ) -> None:
        """
        Parameters
        ----------
        epochs, batch_size, lambda_draws, lr
            Budget and Adam step (None = the task's own) of the network (see :class:`~hti_bench.toolkit.best_response.BestResponseSurrogate`).
        center : float or None
            λ0, the centre of the perturbations; None = the middle of the anchor range on the clock (on a
            task of several hyperparameters, a point, or None for the middle of the anchors' box).
        sigma0 : float
            Initial perturbation scale σ, in the unconstrained coordinate u (logit of the position in
            the task's λ range).
        tune_scale : bool
            Learn σ (STN's scale step); False keeps σ = sigma0.
        entropy_weight : float
            τ of the entropy bonus τ·log σ that keeps σ from collapsing.
        scale_lr, scale_every : float, int
            Adam step of σ, taken once every ``scale_every`` network steps.
        val_fraction : float
            Share of the task's training rows held out for the scale step.
        """
        super().__init__(**shared)
        self.center = center
        self.sigma0 = sigma0
        self.tune_scale = tune_scale
        self.entropy_weight = entropy_weight
        self.scale_lr = scale_lr
        self.scale_every = scale_every
        self.val_fraction = val_fraction

    centred: ClassVar[bool] = False  # Δ-STN feeds s − s0; STN feeds s
    linearised: ClassVar[bool] = False  # Δ-STN trains the response through the linearised output

    def check_params(self) -> None:
        super().check_params()
        if not float(self.sigma0) > 0:
            raise ConfigError(f"sigma0 must be > 0, got {self.sigma0}")
        if not float(self.entropy_weight) >= 0:
            raise ConfigError(f"entropy_weight must be ≥ 0, got {self.entropy_weight}")
        if int(self.scale_every) < 1:
            raise ConfigError(f"scale_every must be ≥ 1, got {self.scale_every}")
        if not 0 < float(self.val_fraction) < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")

    def _fit(self, task: TaskView, axis: LambdaAxis, gen: torch.Generator) -> None:
        if self.center is not None:  # needs the anchors, so checked here rather than in check_params
            axis.check_center(self.anchors_, self.center)
        network = task.build_network()
        center = axis.center(self.center)
        self.s0_ = axis.s_at(center)
        response = StructuredResponse(network, self.anchors_.d, gen)
        self.net_ = FunctionalNetwork(network, response).train()
        train, val = (
            split_training_data(task.training_data(), float(self.val_fraction), gen)
            if self.tune_scale
            else (task.training_data(), None)
        )
        center_u = axis.u_at(center)
        self.scale_ = PerturbationScale(float(self.sigma0), center_u, float(self.entropy_weight), float(self.scale_lr))
        steps = self._steps(task, int(train[0].shape[0]))
        self.losses_, self.sigmas_ = self._train(
            task,
            axis,
            response,
            BatchStream(train, int(self.batch_size), gen),
            BatchStream(val, int(self.batch_size), gen) if val else None,
            steps,
            gen,
        )
        self.net_.eval()

    def _h(self, s: Tensor) -> Tensor:
        """Generator inputs (B, d) of the s coordinates (B,) or, for several hyperparameters, (B, d)."""
        h = s - self.s0_ if self.centred else s
        return h if h.ndim == 2 else h[:, None]

    def _perturbed_loss(
        self,
        task: TaskView,
        axis: LambdaAxis,
        batch: tuple[Tensor, ...],
        gen: torch.Generator,
        *,
        scale: Tensor,
        detach_lam: bool = False,
    ) -> Tensor:
        """The task's loss at λ̃ perturbed around λ0; through the linearised output for Δ-STN."""
        batch, groups, k = self._grouped(batch)
        lam, s = axis.perturbed(self.scale_.center_u, scale, groups, gen)
        lam = lam.detach() if detach_lam else lam
        h = self._h(s)
        context = self.net_.at(torch.zeros_like(h), linearize=h) if self.linearised else self.net_.at(h)
        with context:
            return task.per_example_loss(self.net_, batch, lam.repeat_interleave(k, dim=0)).mean()

    def _scale_step(
        self,
        task: TaskView,
        axis: LambdaAxis,
        val_batches: BatchStream | None,
        gen: torch.Generator,
        step: int,
        sigmas: list[float],
    ) -> None:
        """Every ``scale_every`` steps, one σ step on held-out rows with the network in eval mode."""
        if val_batches is None or (step + 1) % int(self.scale_every):
            return
        self.net_.eval()
        val_loss = self._perturbed_loss(task, axis, next(val_batches), gen, scale=self.scale_.sigma, detach_lam=True)
        sigmas.append(self.scale_.step(val_loss))
        self.net_.train()

    def _train(self, task, axis, response, batches, val_batches, steps, gen):
        opt = training.adam(response.parameters(), self._lr(task))
        schedule = training.cosine(opt, steps)
        losses, sigmas = [], []
        for step in range(steps):
            loss = self._perturbed_loss(task, axis, next(batches), gen, scale=self.scale_.sigma.detach())
            training.step(opt, loss, clip=self.clip, schedule=schedule, at=step)
            losses.append(float(loss.detach()))
            self._scale_step(task, axis, val_batches, gen, step, sigmas)
        return losses, sigmas

    def _inputs(self, lam: tuple[float, ...]) -> Tensor:
        return self._h(super()._inputs(lam))

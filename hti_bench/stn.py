"""What STN and Δ-STN share: the structured response, perturbations of λ around λ0 with a learned
scale, and STN's training loop (BASELINES.md §5). The registered surrogates are ``baselines/stn.py``
and ``baselines/delta_stn.py``."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from hti_bench.optim import adam
from hti_bench.response import (
    BatchStream,
    BestResponseSurrogate,
    FunctionalNetwork,
    LambdaAxis,
    PerturbationScale,
    StructuredResponse,
    center_time,
    check_stn_options,
    cosine,
    split_training_data,
    step_optimizer,
)
from hti_bench.task import TrainedTask


class StnBase(BestResponseSurrogate):
    """STN's loop: network steps at perturbed λ̃ (σ fixed within a step), a σ step every
    ``scale_every`` steps. Δ-STN overrides :meth:`_train` and sets ``centred`` and ``linearised``."""

    def __init__(
        self,
        *,
        epochs: float | None = None,
        batch_size: int = 128,
        lambda_draws: int = 16,
        lr: float | None = None,
        center: float | None = None,
        sigma0: float = 0.5,
        tune_scale: bool = True,
        entropy_weight: float = 1e-3,
        scale_lr: float = 3e-3,
        scale_every: int = 5,
        val_fraction: float = 0.1,
    ) -> None:
        """
        Parameters
        ----------
        epochs, batch_size, lambda_draws, lr
            Budget and Adam step (None = the task's own) of the network (see :class:`~hti_bench.response.BestResponseSurrogate`).
        center : float or None
            λ0, the centre of the perturbations; None = the middle of the anchor range on the clock.
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
        self.epochs = epochs
        self.batch_size = batch_size
        self.lambda_draws = lambda_draws
        self.lr = lr
        self.center = center
        self.sigma0 = sigma0
        self.tune_scale = tune_scale
        self.entropy_weight = entropy_weight
        self.scale_lr = scale_lr
        self.scale_every = scale_every
        self.val_fraction = val_fraction

    centred: ClassVar[bool] = False  # Δ-STN feeds s − s0; STN feeds s
    linearised: ClassVar[bool] = False  # Δ-STN trains the response through the linearised output

    def _fit(self, task: TrainedTask, axis: LambdaAxis, gen: torch.Generator) -> None:
        check_stn_options(self, self.anchors_)
        network = task.build_network()
        self.s0_ = float(axis.s(torch.tensor(center_time(self, axis))))
        response = StructuredResponse(network, 1, gen)
        self.net_ = FunctionalNetwork(network, response).train()
        train, val = split_training_data(task.training_data(), float(self.val_fraction), gen) if self.tune_scale else (task.training_data(), None)
        self.scale_ = PerturbationScale(float(self.sigma0), float(axis.u(torch.tensor(center_time(self, axis)))), float(self.entropy_weight), float(self.scale_lr))
        steps = self._steps(task, int(train[0].shape[0]))
        self.losses_, self.sigmas_ = self._train(task, axis, response, BatchStream(train, int(self.batch_size), gen),
                                                 BatchStream(val, int(self.batch_size), gen) if val else None, steps, gen)
        self.net_.eval()

    def _h(self, s: Tensor) -> Tensor:
        return (s - self.s0_ if self.centred else s)[:, None]

    def _perturbed_loss(self, task: TrainedTask, axis: LambdaAxis, batch: tuple[Tensor, ...], gen: torch.Generator,
                        *, scale: Tensor, detach_lam: bool = False) -> Tensor:
        """The task's loss at λ̃ perturbed around λ0; through the linearised output for Δ-STN."""
        batch, groups, k = self._grouped(batch)
        lam, s = axis.perturbed(self.scale_.center_u, scale, groups, gen)
        lam = lam.detach() if detach_lam else lam
        h = self._h(s)
        context = self.net_.at(torch.zeros_like(h), linearize=h) if self.linearised else self.net_.at(h)
        with context:
            return task.per_example_loss(self.net_, batch, lam.repeat_interleave(k)).mean()

    def _scale_step(self, task: TrainedTask, axis: LambdaAxis, val_batches: BatchStream | None, gen: torch.Generator,
                    step: int, sigmas: list[float]) -> None:
        """Every ``scale_every`` steps, one σ step on held-out rows with the network in eval mode."""
        if val_batches is None or (step + 1) % int(self.scale_every):
            return
        self.net_.eval()
        val_loss = self._perturbed_loss(task, axis, next(val_batches), gen, scale=self.scale_.sigma, detach_lam=True)
        sigmas.append(self.scale_.step(val_loss))
        self.net_.train()

    def _train(self, task, axis, response, batches, val_batches, steps, gen):
        opt = adam(response.parameters(), self._lr(task))
        schedule = cosine(opt, steps)
        losses, sigmas = [], []
        for step in range(steps):
            loss = self._perturbed_loss(task, axis, next(batches), gen, scale=self.scale_.sigma.detach())
            step_optimizer(opt, loss, step, schedule)
            losses.append(float(loss.detach()))
            self._scale_step(task, axis, val_batches, gen, step, sigmas)
        return losses, sigmas

    def _inputs(self, lam: float) -> Tensor:
        return self._h(torch.tensor([self.axis_.s_of_lam(lam)]))

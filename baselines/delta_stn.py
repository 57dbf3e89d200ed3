"""Δ-STN (Bae & Grosse 2020) as an HTI best-response baseline.

The centred parameterisation w(λ) = w0 + Θ (s(λ) − s(λ0)), Θ with STN's per-layer structure
(:class:`hti_bench.toolkit.best_response.StructuredResponse` fed s − s0, so w(λ0) = w0 exactly). Each step
(Bae & Grosse's Δ-STN step without its hyperparameter step: HTI fixes λ, it does not tune it):

1. *general*: w0 takes a step on the task's loss at λ0 itself;
2. *response*: Θ takes a step on the loss of the **linearised** output f(x; w0) + J_w f · Θ (s̃ − s0)
   at perturbed λ̃ (one forward-mode JVP, ``torch.func.jvp``), so Θ estimates the best-response
   Jacobian dw*/ds at λ0 rather than absorbing nonlinear effects of large perturbations;
3. *scale*: σ of the perturbation, learned with an entropy bonus on held-out training rows.

At λ* it answers with the weights w0 + Θ (s* − s0) (``sample_response="weights"``) or the linearised
output itself (``"linear"``). A first-order model around λ0: accurate nearby, degrading with distance.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, ClassVar

import torch

from hti_bench.errors import check_choice
from hti_bench.toolkit import training
from hti_bench.toolkit.best_response import StnBase, StructuredResponse

RESPONSES = ("weights", "linear")


class DeltaSTN(StnBase):
    name: ClassVar[str] = "delta-stn"
    description: ClassVar[str] = (
        "Δ-STN: w0 + Θ(λ − λ0), Θ trained through the linearised output (JVP) on the task loss."
    )
    references: ClassVar[tuple[str, ...]] = (
        "Bae & Grosse, Delta-STN: efficient bilevel optimization for neural networks using structured response Jacobians, NeurIPS 2020",
    )
    centred: ClassVar[bool] = True
    linearised: ClassVar[bool] = True

    def __init__(self, *, sample_response: str = "weights", **shared: Any) -> None:
        """
        Parameters
        ----------
        sample_response : str
            ``weights``: sample with w0 + Θ(s* − s0); ``linear``: with the linearised output.

        The others are :class:`~hti_bench.toolkit.best_response.StnBase`'s: budget, centre λ0, initial scale, entropy
        weight, scale step.
        """
        super().__init__(**shared)
        self.sample_response = sample_response

    def check_params(self) -> None:
        super().check_params()
        check_choice("sample_response", self.sample_response, RESPONSES)

    def _train(self, task, axis, response: StructuredResponse, batches, val_batches, steps, gen):
        general = training.adam(response.general_parameters(), self._lr(task))
        respond = training.adam(response.response_parameters(), self._lr(task))
        schedules = training.cosine(general, steps), training.cosine(respond, steps)
        lam0 = axis.lam_at(axis.center(self.center))
        zero = torch.zeros(1, self.anchors_.d)
        losses, sigmas = [], []
        for step in range(steps):
            batch = next(batches)
            with self.net_.at(zero):  # h = 0: exactly w0
                loss0 = task.per_example_loss(self.net_, batch, axis.repeat(lam0, batch[0].shape[0])).mean()
            training.step(general, loss0, clip=self.clip, schedule=schedules[0], at=step)
            loss = self._perturbed_loss(task, axis, batch, gen, scale=self.scale_.sigma.detach())
            training.step(respond, loss, clip=self.clip, schedule=schedules[1], at=step)
            losses.append(float(loss.detach()))
            self._scale_step(task, axis, val_batches, gen, step, sigmas)
        return losses, sigmas

    @contextmanager
    def _at(self, lam: tuple[float, ...]):
        if self.sample_response == "linear":
            with self.net_.at(torch.zeros(1, self.anchors_.d), linearize=self._inputs(lam)):
                yield
        else:
            with self.net_.at(self._inputs(lam)):
                yield

"""Anchored Δ-STN: a first-order best response around each anchor network, blended between the two
neighbours (a hybrid of the two information regimes: it uses both the anchor networks' weights and
the task's loss).

For each anchor λ_k, w0 := θ_k, the anchor network's own trained weights, frozen; a structured
response Θ_k (:class:`hti_bench.toolkit.best_response.StructuredResponse`, zero-initialised, so it starts exactly
at the anchor network) is trained on the task's loss through the linearised output
f(x; θ_k) + J f · Θ_k (s̃ − s_k), s̃ drawn around s_k with spread ``spread`` × the local anchor
spacing on the clock (towards the inside at the first and last anchor, where the task's range may
end). At λ* between λ_k and λ_k+1 both neighbours predict, θ_k + Θ_k (s* − s_k) and
θ_k+1 + Θ_k+1 (s* − s_k+1), and their samples are blended in output space with weight s (McCann
displacement per condition, or a mixture).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from hti_bench.errors import ConfigError, check_choice
from hti_bench.toolkit import training
from hti_bench.toolkit.best_response import (
    BatchStream,
    BestResponseSurrogate,
    FunctionalNetwork,
    LambdaAxis,
    StructuredResponse,
)
from hti_bench.toolkit.transport import exact_coupling
from hti_bench.view import TaskView

BLENDS = ("mccann", "mixture")


class AnchoredDeltaSTN(BestResponseSurrogate):
    name: ClassVar[str] = "anchored-delta-stn"
    description: ClassVar[str] = (
        "Δ-STN linear response around each anchor network, neighbours blended (anchors + task loss)."
    )
    one_dimensional_reason: ClassVar[str] = (
        "it blends the linear responses of the two neighbouring anchors along one λ clock"
    )
    references: ClassVar[tuple[str, ...]] = (
        "Bae & Grosse, Delta-STN: efficient bilevel optimization for neural networks using structured response Jacobians, NeurIPS 2020",
    )
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        **BestResponseSurrogate.search_space,
        "spread": {"values": [0.25, 0.5, 1.0]},
        "blend": {"values": ["mccann", "mixture"]},
    }

    def __init__(self, *, spread: float = 0.5, blend: str = "mccann", **shared: Any) -> None:
        """
        Parameters
        ----------
        spread : float
            Perturbation scale around each anchor, as a fraction of its mean distance to its
            neighbours on the clock.
        blend : str
            How the two neighbours' predictions combine: ``mccann`` (per-condition optimal-transport
            displacement) or ``mixture``.

        ``epochs`` (passes over the training set, split evenly among the anchors; None = one anchor
        network's epochs in all), ``batch_size``, ``lambda_draws`` and ``lr`` are
        :class:`~hti_bench.toolkit.best_response.BestResponseSurrogate`'s.
        """
        super().__init__(**shared)
        self.spread = spread
        self.blend = blend

    def check_params(self) -> None:
        super().check_params()
        check_choice("blend", self.blend, BLENDS)
        if not float(self.spread) > 0:
            raise ConfigError(f"spread must be > 0, got {self.spread}")

    def _fit(self, task: TaskView, axis: LambdaAxis, gen: torch.Generator) -> None:
        lambdas = self.anchors_.lambdas
        s_k = [axis.s_of_lam(self.anchors_.space.check(lam)[0]) for lam in lambdas]
        data = task.training_data()
        steps = max(1, self._steps(task, int(data[0].shape[0])) // len(lambdas))
        batches = BatchStream(data, int(self.batch_size), gen)
        self.s_anchor_ = s_k
        self.nets_, self.losses_ = [], []
        for k, lam in enumerate(lambdas):
            gaps = [abs(s_k[j] - s_k[k]) for j in (k - 1, k + 1) if 0 <= j < len(lambdas)]
            sigma = float(self.spread) * sum(gaps) / len(gaps)
            # At the ends only perturb inwards: the task's range may stop at the anchor.
            side = 1.0 if k == 0 else (-1.0 if k == len(lambdas) - 1 else 0.0)
            net = self._anchor_network(task, lam, gen)
            self.losses_.append(self._train(task, axis, net, batches, s_k[k], sigma, side, steps, gen))
            self.nets_.append(net.eval())

    def _anchor_network(self, task: TaskView, lam: float, gen: torch.Generator) -> FunctionalNetwork:
        network = task.anchor_network(lam)  # a copy: w0 is this anchor network's own weights
        response = StructuredResponse(network, 1, gen, elem={n: p.detach() for n, p in network.named_parameters()})
        for p in response.general_parameters():
            p.requires_grad_(False)  # w0 is the anchor network itself
        return FunctionalNetwork(network, response).train()

    def _train(self, task, axis, net, batches, s0, sigma, side, steps, gen) -> list[float]:
        opt = training.adam(net.generator.response_parameters(), self._lr(task))
        schedule = training.cosine(opt, steps)
        losses = []
        for step in range(steps):
            batch, groups, k = self._grouped(next(batches))
            eps = torch.randn(groups, generator=gen)
            eps = eps.abs() * side if side else eps
            s = s0 + sigma * eps
            lam = axis.lam(axis.t_of_s(s))
            with net.at(torch.zeros(groups, 1), linearize=(s - s0)[:, None]):
                loss = task.per_example_loss(net, batch, lam.repeat_interleave(k)).mean()
            training.step(opt, loss, clip=self.clip, schedule=schedule, at=step)
            losses.append(float(loss.detach()))
        return losses

    def weights(self, lam: float | tuple[float, ...]) -> dict[str, Tensor]:
        """The nearer neighbour's first-order weights at λ (at an anchor: that anchor's network)."""
        self.check_fitted()
        (lam,) = self.anchors_.space.check(lam)
        k, s = self.anchors_.locate(lam)
        k += int(s >= 0.5)
        with torch.no_grad():
            return {name: v[0] for name, v in self.nets_[k].weights(self._offset(k, lam)).items()}

    def _offset(self, k: int, lam: float) -> Tensor:
        """Anchor k's response input at λ: s(λ) − s_k, (1, 1)."""
        return torch.tensor([[self.axis_.s_of_lam(lam) - self.s_anchor_[k]]])

    def _side(self, k: int, lam: float, conditions: Tensor, n: int, seed: int) -> Tensor:
        net = self.nets_[k]
        with torch.no_grad(), net.at(self._offset(k, lam)):
            return self.task_.sample_network(net, conditions, n, self.generator(seed)).float()

    def sample(self, lam: float | tuple[float, ...], conditions: Tensor, n: int, seed: int) -> Tensor:
        self.check_sample_args(n)
        (lam,) = self.anchors_.space.check(lam)  # one hyperparameter: its float
        k, s = self.anchors_.locate(lam)
        conditions = torch.as_tensor(conditions, dtype=torch.float32)
        n = int(n)
        lower = self._side(k, lam, conditions, n, seed)
        if s == 0.0:
            return lower
        upper = self._side(k + 1, lam, conditions, n, seed + 1)
        if s == 1.0:
            return upper
        gen = self.generator(seed + 2)
        out = []
        for y0, y1 in zip(lower, upper):
            if self.blend == "mixture":
                pick = torch.rand(n, generator=gen) < s
                out.append(torch.where(pick[:, None], y1, y0))
            else:
                plan = exact_coupling(y0, y1)  # equal sizes: a permutation
                out.append((1 - s) * y0[plan.rows] + s * y1[plan.cols])
        return torch.stack(out)

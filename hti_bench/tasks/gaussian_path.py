"""``gaussian-path``: a conditional Gaussian family whose true λ-path is a per-condition W₂ geodesic.

For class c, y | c, λ ~ N(a_c + λ b_c, (s_c + λ r_c)² I₂): mean and scale are affine in λ, so the
McCann interpolation between any two λ is exact. Analytic and instant, it is the suite's sanity task
(a displacement interpolation that does not score at the noise floor here is broken) and the tiny task
of the contract tests. Not part of the default suite.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import Tensor

from hti_bench.clock import Clock, HyperparameterSpace, Point
from hti_bench.task import Task, TaskConfig, option

_MEAN0 = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
_DRIFT = torch.tensor([[1.0, 1.0], [-1.0, 0.5], [0.5, -1.5]])
_SCALE0 = torch.tensor([0.2, 0.5, 0.3])
_GROWTH = torch.tensor([0.6, -0.3, 0.2])


#: Why an analytic task offers best-response surrogates nothing.
ANALYTIC_NOTES = {
    "training_loss": "an analytic family with no network to train",
    "architecture": "an analytic family with no network to train",
}


@dataclasses.dataclass(frozen=True)
class GaussianPathConfig(TaskConfig):
    anchors: tuple[float, ...] = option((0.0, 0.5, 1.0), "Anchor values of λ.")
    heldout: tuple[float, ...] = option((0.25, 0.75), "Held-out values of λ.", cache=False)
    n_samples: int = option(200, "Samples per class.", cache=False)


class GaussianPath(Task):
    name: ClassVar[str] = "gaussian-path"
    description: ClassVar[str] = "Synthetic: 3 classes of 2-D Gaussians with mean and scale affine in λ (McCann-exact)."
    Config = GaussianPathConfig
    in_default_suite: ClassVar[bool] = False
    categorical: ClassVar[bool] = True
    capability_notes: ClassVar[dict[str, str]] = ANALYTIC_NOTES
    hyperparameters: ClassVar[HyperparameterSpace] = HyperparameterSpace.single("lambda", 0.0, 1.0, Clock.IDENTITY)
    output_dim: ClassVar[int] = 2
    condition_dim: ClassVar[int] = 1

    def eval_conditions(self) -> Tensor:
        return torch.arange(3, dtype=torch.float32)[:, None]

    def moments(self, lam: Point, conditions: Tensor) -> tuple[Tensor, Tensor]:
        """Mean (M, 2) and scale (M,) of each condition's Gaussian at λ (a point, or its one float)."""
        (lam,) = self.hyperparameters.check(lam)
        cls = torch.as_tensor(conditions).reshape(-1).long()
        return _MEAN0[cls] + lam * _DRIFT[cls], _SCALE0[cls] + lam * _GROWTH[cls]

    def sample(self, lam: Point, conditions: Tensor, n: int, seed: int) -> Tensor:
        mean, scale = self.moments(lam, conditions)
        gen = torch.Generator().manual_seed(int(seed))
        noise = torch.randn(mean.shape[0], n, 2, generator=gen)
        return mean[:, None, :] + scale[:, None, None] * noise

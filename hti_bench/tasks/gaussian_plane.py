"""``gaussian-plane``: the two-hyperparameter sanity task, a conditional Gaussian family whose true
path over λ = (a, b) ∈ [0, 1]² is a per-condition W₂ "plane".

For class c, y | c, λ ~ N(m_c + a·u_c + b·v_c, diag(σ_c(λ))²) with each coordinate's standard
deviation σ_c(λ) = s_c + a·r_c + b·q_c affine in λ too. Diagonal covariances commute, so the W₂
barycenter of any anchors with barycentric weights w is the Gaussian with the w-weighted means and
the w-weighted standard deviations: the truth itself wherever w reproduces λ. The barycenter
surrogate should therefore score at the noise floor here (what gaussian-path is to mccann), and both
axes move every class (mean and spread), so a surrogate that ignores one axis is visibly off.
Analytic and instant; not part of the default suite.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import Tensor

from hti_bench.clock import Clock, Hyperparameter, HyperparameterSpace
from hti_bench.task import Task, TaskConfig, option
from hti_bench.tasks.gaussian_path import ANALYTIC_NOTES

_MEAN0 = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
_DRIFT_A = torch.tensor([[1.0, 0.5], [-1.0, 0.5], [0.5, -1.0]])
_DRIFT_B = torch.tensor([[-0.5, 1.0], [0.5, 1.0], [1.0, 0.5]])
_SCALE0 = torch.tensor([[0.2, 0.3], [0.5, 0.2], [0.3, 0.4]])
_GROWTH_A = torch.tensor([[0.5, 0.0], [-0.3, 0.2], [0.2, -0.2]])
_GROWTH_B = torch.tensor([[0.0, 0.4], [0.2, 0.1], [-0.2, 0.3]])


@dataclasses.dataclass(frozen=True)
class GaussianPlaneConfig(TaskConfig):
    anchors: tuple[Any, ...] = option((), "Anchor points (a, b); empty: the points of `design`.")
    design: str = option(
        "grid:3x3", "Anchor design when `anchors` is empty: grid:<n>x<m> or sobol:<N> (corners included).", cache=False
    )
    design_box: tuple[Any, ...] = option(
        (), "The box the design spans, (low, high) per axis; empty: [0, 1]².", cache=False
    )
    heldout: tuple[Any, ...] = option(
        ((0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75), (0.5, 0.3), (0.3, 0.5)),
        "Held-out points (a, b).",
        cache=False,
    )
    n_samples: int = option(200, "Samples per class.", cache=False)


class GaussianPlane(Task):
    name: ClassVar[str] = "gaussian-plane"
    description: ClassVar[str] = (
        "Synthetic, 2 hyperparameters: 3 classes of 2-D Gaussians, means and spreads "
        "affine in (a, b) (barycenter-exact)."
    )
    Config = GaussianPlaneConfig
    in_default_suite: ClassVar[bool] = False
    categorical: ClassVar[bool] = True
    capability_notes: ClassVar[dict[str, str]] = ANALYTIC_NOTES

    hyperparameters: ClassVar[HyperparameterSpace] = HyperparameterSpace(
        (Hyperparameter("a", 0.0, 1.0, Clock.IDENTITY), Hyperparameter("b", 0.0, 1.0, Clock.IDENTITY))
    )
    output_dim: ClassVar[int] = 2
    condition_dim: ClassVar[int] = 1

    def eval_conditions(self) -> Tensor:
        return torch.arange(3, dtype=torch.float32)[:, None]

    def moments(self, lam: tuple[float, float], conditions: Tensor) -> tuple[Tensor, Tensor]:
        """Mean (M, 2) and per-coordinate standard deviation (M, 2) of each condition's Gaussian at λ."""
        a, b = self.hyperparameters.check(lam)
        cls = torch.as_tensor(conditions).reshape(-1).long()
        return (
            _MEAN0[cls] + a * _DRIFT_A[cls] + b * _DRIFT_B[cls],
            _SCALE0[cls] + a * _GROWTH_A[cls] + b * _GROWTH_B[cls],
        )

    def sample(self, lam: tuple[float, float], conditions: Tensor, n: int, seed: int) -> Tensor:
        mean, scale = self.moments(lam, conditions)
        gen = torch.Generator().manual_seed(int(seed))
        noise = torch.randn(mean.shape[0], n, 2, generator=gen)
        return mean[:, None, :] + scale[:, None, :] * noise

"""``noisy-regression``: linear regression regularised by Gaussian input noise of variance λ.

Training perturbs each input x by ξ ~ N(0, λ I) (drawn per example, so one batch can mix λ):
E_ξ (w·(x + ξ) − y)² = (w·x − y)² + λ‖w‖², so the best response is the ridge solution, known in
closed form, w*(λ) = (XᵀX/N + λ I)⁻¹ Xᵀy / N (:meth:`NoisyRegression.best_response`). The network is
one linear layer, its output the deterministic prediction at each evaluation input, so per-condition
W₂ is the prediction error. The suite's sanity task for best-response surrogates (a hypernetwork that
does not approach w*(λ) here is broken); not part of the default suite.

Writing the L2 penalty as input noise keeps λ inside the network's forward pass, where the
best-response surrogates' generated weights act, rather than in a norm of the weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from hti_bench.clock import Clock, Hyperparameter, HyperparameterSpace, Point
from hti_bench.task import TrainedTask, TrainedTaskConfig, option

_TRUE_W = (1.0, -2.0, 0.5)


@dataclasses.dataclass(frozen=True)
class NoisyRegressionConfig(TrainedTaskConfig):
    anchors: tuple[float, ...] = option((0.1, 1.0, 10.0), "Anchor noise variances λ.")
    heldout: tuple[float, ...] = option((0.3, 3.0), "Held-out noise variances.", cache=False)
    n_samples: int = option(8, "Copies of the (deterministic) prediction per input.", cache=False)
    epochs: int = option(300, "Training epochs per network.")
    lr: float = option(1e-2, "Adam learning rate.")
    n_train: int = option(256, "Training rows.")
    noise: float = option(0.1, "Standard deviation of the label noise.")
    data_seed: int = option(0, "Seed of the training data.")


class NoisyRegression(TrainedTask):
    name: ClassVar[str] = "noisy-regression"
    description: ClassVar[str] = (
        "Synthetic: linear regression with input-noise variance λ (≡ ridge); closed-form best response."
    )
    Config = NoisyRegressionConfig
    in_default_suite: ClassVar[bool] = False
    hyperparameters: ClassVar[HyperparameterSpace] = HyperparameterSpace.single(
        "noise_variance", 1e-3, 100.0, Clock.LOG
    )
    output_dim: ClassVar[int] = 1
    condition_dim: ClassVar[int] = len(_TRUE_W)

    def eval_conditions(self) -> Tensor:
        gen = torch.Generator().manual_seed(1234)
        return torch.randn(8, len(_TRUE_W), generator=gen)

    def build_network(self) -> nn.Module:
        return nn.Linear(len(_TRUE_W), 1, bias=False)

    def training_data(self) -> Sequence[Tensor]:
        gen = torch.Generator().manual_seed(self.config.data_seed)
        x = torch.randn(self.config.n_train, len(_TRUE_W), generator=gen)
        y = x @ torch.tensor(_TRUE_W) + self.config.noise * torch.randn(self.config.n_train, generator=gen)
        return x, y

    def per_example_loss(self, network: nn.Module, batch: Sequence[Tensor], lam: Tensor) -> Tensor:
        """Squared error on the input perturbed by noise of variance λ (per example)."""
        x, y = batch[0], batch[1]
        noisy = x + lam.reshape(-1, 1).sqrt() * torch.randn_like(x)
        return (network(noisy)[:, 0] - y) ** 2

    def sample_network(self, network: nn.Module, conditions: Tensor, n: int, generator: torch.Generator) -> Tensor:
        pred = network(torch.as_tensor(conditions, dtype=torch.float32))  # (M, 1)
        return pred[:, None, :].expand(-1, n, -1).clone()

    def best_response(self, lam: Point) -> Tensor:
        """The ridge solution w*(λ), shape (C,): the exact minimiser of the expected training loss."""
        (variance,) = self.hyperparameters.check(lam)
        x, y = self.training_data()
        x, y = x.double(), y.double()
        a = x.T @ x / x.shape[0] + variance * torch.eye(x.shape[1], dtype=torch.float64)
        return torch.linalg.solve(a, x.T @ y / x.shape[0]).float()


@dataclasses.dataclass(frozen=True)
class NoisyRegression2DConfig(NoisyRegressionConfig):
    anchors: tuple = option((), "Anchor points (noise variance of features 1–2, of feature 3); empty: `design`.")
    design: str = option("grid:3x3", "Anchor design when `anchors` is empty: grid:<n>x<m> or sobol:<N>.", cache=False)
    design_box: tuple = option(
        ((0.1, 10.0), (0.1, 10.0)), "The box the design spans, (low, high) per axis.", cache=False
    )
    heldout: tuple = option(((0.3, 3.0), (3.0, 0.3), (0.3, 0.3), (3.0, 3.0)), "Held-out points.", cache=False)
    validation: tuple = option((), "Validation points (tuning only).", cache=False)


class NoisyRegression2D(NoisyRegression):
    """Two noise variances at once: features 1–2 are perturbed with variance λ₁, feature 3 with λ₂, so
    the expected loss is the squared error plus wᵀ diag(λ₁, λ₁, λ₂) w, a ridge with two penalties whose
    best response is closed-form: w*(λ) = (XᵀX/N + diag(λ₁, λ₁, λ₂))⁻¹ Xᵀy / N. The sanity task of
    vector-λ best response (a hypernetwork over (λ₁, λ₂) that does not approach w*(λ) here is broken)."""

    name: ClassVar[str] = "noisy-regression-2d"
    description: ClassVar[str] = (
        "Synthetic, 2 hyperparameters: linear regression with two input-noise variances "
        "(≡ ridge with two penalties); closed-form best response."
    )
    Config = NoisyRegression2DConfig

    hyperparameters: ClassVar[HyperparameterSpace] = HyperparameterSpace(
        (
            Hyperparameter("noise_variance_12", 1e-3, 100.0, Clock.LOG),
            Hyperparameter("noise_variance_3", 1e-3, 100.0, Clock.LOG),
        )
    )

    def _variances(self, lam: Tensor) -> Tensor:
        lam = lam.reshape(-1, 2)
        return torch.stack([lam[:, 0], lam[:, 0], lam[:, 1]], dim=1)

    def per_example_loss(self, network: nn.Module, batch: Sequence[Tensor], lam: Tensor) -> Tensor:
        """Squared error on the input, features perturbed with their own variance (per example)."""
        x, y = batch[0], batch[1]
        noisy = x + self._variances(lam).sqrt() * torch.randn_like(x)
        return (network(noisy)[:, 0] - y) ** 2

    def best_response(self, lam: tuple[float, float]) -> Tensor:
        """The two-penalty ridge solution w*(λ), shape (3,)."""
        x, y = self.training_data()
        x, y = x.double(), y.double()
        penalty = torch.diag(self._variances(torch.tensor(lam, dtype=torch.float64))[0])
        a = x.T @ x / x.shape[0] + penalty
        return torch.linalg.solve(a, x.T @ y / x.shape[0]).float()

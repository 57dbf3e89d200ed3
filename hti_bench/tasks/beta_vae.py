"""``beta-vae``: a small VAE on scikit-learn's 8×8 digits, λ = β, the KL weight (on a log clock).

The network is trained on the per-example loss recon(x) + β·KL(q(z|x) ‖ N(0, I)) (Bernoulli
cross-entropy over the 64 pixels, scaled to [0, 1]). Its output distribution given an image x is the
decoder's mean image for z ~ q(z | x): as β grows the posterior widens and the decoder blurs, so the
distribution moves and spreads. This is the suite's high-dimensional task (D = 64 outputs, C = 64
condition columns): it tests how each surrogate scales with the output dimension, a limitation the
HTI paper lists as open.

Conditions: 16 images from the last 297 digits (not trained on) are scored; 32 training images are
also in the anchor data. Task metric ``recon_mse``: the mean squared error between the outputs and
the input image (it grows with β).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import cached_property
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hti_bench.clock import Clock, HyperparameterSpace, Point
from hti_bench.task import TrainedTask, TrainedTaskConfig, option

N_TRAIN = 1500  # of sklearn's 1,797 digits; the rest are evaluation images


class VAE(nn.Module):
    """Encoder 64 → h → (μ, log σ²) ∈ ℝ^2k, decoder k → h → 64 logits."""

    def __init__(self, hidden: int, latent: int) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 64))

    def forward(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(decoder logits at z = μ + σ ε, μ, log σ²) for noise ``eps`` of shape (B, latent)."""
        mu, logvar = self.enc(x).chunk(2, dim=-1)
        z = mu + (0.5 * logvar).exp() * eps
        return self.dec(z), mu, logvar


@dataclasses.dataclass(frozen=True)
class BetaVAEConfig(TrainedTaskConfig):
    anchors: tuple[float, ...] = option((0.25, 1.0, 4.0), "Anchor values of β.")
    heldout: tuple[float, ...] = option((0.5, 2.0), "Held-out values of β.", cache=False)
    n_samples: int = option(64, "Decoded samples per image.", cache=False)
    epochs: int = option(60, "Training epochs per network.")
    hidden: int = option(128, "Hidden width of encoder and decoder.")
    latent: int = option(8, "Latent dimension.")
    n_eval: int = option(16, "Evaluation images (from the digits not trained on).", cache=False)
    n_fit: int = option(32, "Training images the anchor data also covers.", cache=False)


class BetaVAE(TrainedTask):
    name: ClassVar[str] = "beta-vae"
    description: ClassVar[str] = (
        "VAE on 8×8 digits; λ = β (KL weight, log clock); output = decoded image for z ~ q(z|x), D = 64."
    )
    Config = BetaVAEConfig
    in_default_suite: ClassVar[bool] = False
    hyperparameters: ClassVar[HyperparameterSpace] = HyperparameterSpace.single("beta", 0.01, 100.0, Clock.LOG)
    output_dim: ClassVar[int] = 64
    condition_dim: ClassVar[int] = 64

    @cached_property
    def _images(self) -> Tensor:
        from sklearn.datasets import load_digits

        return torch.as_tensor(load_digits().data / 16.0, dtype=torch.float32)

    def training_data(self) -> Sequence[Tensor]:
        return (self._images[:N_TRAIN],)

    def eval_conditions(self) -> Tensor:
        rest = self._images[N_TRAIN:]
        idx = torch.linspace(0, rest.shape[0] - 1, int(self.config.n_eval)).round().long().unique()
        return rest[idx]

    def fit_conditions(self) -> Tensor:
        idx = torch.linspace(0, N_TRAIN - 1, int(self.config.n_fit)).round().long().unique()
        return self._images[idx]

    def build_network(self) -> nn.Module:
        return VAE(int(self.config.hidden), int(self.config.latent))

    def per_example_loss(self, network: nn.Module, batch: Sequence[Tensor], lam: Tensor) -> Tensor:
        """Bernoulli reconstruction loss plus β·KL, per image, with each image's own β."""
        x = batch[0]
        eps = torch.randn(x.shape[0], int(self.config.latent), device=x.device)
        logits, mu, logvar = network(x, eps)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)
        return recon + lam.reshape(-1) * kl

    def sample_network(self, network: nn.Module, conditions: Tensor, n: int, generator: torch.Generator) -> Tensor:
        x = torch.as_tensor(conditions, dtype=torch.float32).repeat_interleave(n, dim=0)
        eps = torch.randn(x.shape[0], int(self.config.latent), generator=generator)
        logits, _, _ = network(x, eps)
        return torch.sigmoid(logits).reshape(-1, n, 64)

    def kl(self, lam: Point, conditions: Tensor) -> float:
        """Mean KL(q(z|x) ‖ N(0, I)) of the network at β over ``conditions`` (for checks)."""
        with torch.no_grad():
            mu, logvar = self.network(lam).enc(conditions).chunk(2, dim=-1)
        return float(0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1).mean())

    def metrics(self, lam: Point, conditions: Tensor, samples: Tensor) -> dict[str, float]:
        return {"recon_mse": float((samples - conditions[:, None, :]).pow(2).mean())}

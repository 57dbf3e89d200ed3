"""``semicircles``: the HTI paper's synthetic conditional process (Amad & van der Schaar, 2026, §5).

Four classes start at the origin and fan out along the upper and lower halves of two unit circles
centred at (−1, 0) and (1, 0) as t goes from 0 to 1. The angle about the class centre is von Mises
(κ = 5) around θ_c(t), the radius log-normal (σ = 0.05) around 1. The process is generated here, not
trained, so the "network at λ" is the exact law, and its analytic density gives two task metrics: the
NLL of a surrogate's samples and their circle distance (mean | ‖y − centre‖ − 1 |).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import torch
from scipy.special import i0e
from torch import Tensor

from hti_bench.clock import Clock, HyperparameterSpace, Point
from hti_bench.task import Task, TaskConfig, option

CENTRES = np.array([[-1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])


def mean_angle(cls: np.ndarray, t: float) -> np.ndarray:
    """θ_c(t): class 0 → πt, class 1 → −πt (about (−1, 0)); class 2 → π − πt, class 3 → −π + πt."""
    table = np.array([math.pi * t, -math.pi * t, math.pi - math.pi * t, -math.pi + math.pi * t])
    return table[cls]


@dataclasses.dataclass(frozen=True)
class SemicirclesConfig(TaskConfig):
    anchors: tuple[float, ...] = option((0.0, 0.5, 1.0), "Anchor times t.")
    heldout: tuple[float, ...] = option((0.25, 0.75), "Held-out times t.", cache=False)
    validation: tuple[float, ...] = option(
        (0.125, 0.375, 0.625, 0.875), "Validation times (tuning only; exact draws, never held out).", cache=False
    )
    n_samples: int = option(100, "Samples per class (the paper uses 100).", cache=False)
    kappa: float = option(5.0, "von Mises concentration of the angle.")
    sigma: float = option(0.05, "Log-normal scale of the radius.")


class Semicircles(Task):
    name: ClassVar[str] = "semicircles"
    description: ClassVar[str] = "Synthetic: 4 classes fanning out along semicircles in time t (analytic density)."
    Config = SemicirclesConfig
    categorical: ClassVar[bool] = True
    capability_notes: ClassVar[dict[str, str]] = {
        "training_loss": "a synthetic process with no network to train",
        "architecture": "a synthetic process with no network to train",
    }
    hyperparameters: ClassVar[HyperparameterSpace] = HyperparameterSpace.single("t", 0.0, 1.0, Clock.IDENTITY)
    output_dim: ClassVar[int] = 2
    condition_dim: ClassVar[int] = 1

    def eval_conditions(self) -> Tensor:
        return torch.arange(4, dtype=torch.float32)[:, None]

    @staticmethod
    def _classes(conditions: Tensor) -> np.ndarray:
        cls = torch.as_tensor(conditions).reshape(-1).numpy()
        if not np.all(np.isin(cls, [0, 1, 2, 3])):
            raise ValueError(f"semicircles conditions are class ids 0–3, got {np.unique(cls).tolist()}")
        return cls.astype(int)

    def sample(self, lam: Point, conditions: Tensor, n: int, seed: int) -> Tensor:
        (t,) = self.hyperparameters.check(lam)
        cls = self._classes(conditions)
        rng = np.random.default_rng(seed)
        mu = mean_angle(cls, t)[:, None]
        angle = rng.vonmises(mu, self.config.kappa, size=(len(cls), n))
        radius = np.exp(self.config.sigma * rng.standard_normal((len(cls), n)))
        centre = CENTRES[cls][:, None, :]
        y = centre + radius[..., None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
        return torch.as_tensor(y, dtype=torch.float32)

    def log_density(self, lam: Point, conditions: Tensor, y: Tensor) -> Tensor:
        """log p_t(y | c) for ``y`` of shape (M, n, 2); −inf where the radius is ≤ 1e-9."""
        cls = self._classes(conditions)
        y = np.asarray(y, dtype=np.float64)
        d = y - CENTRES[cls][:, None, :]
        r = np.linalg.norm(d, axis=-1)
        angle = np.arctan2(d[..., 1], d[..., 0])
        kappa, sigma = self.config.kappa, self.config.sigma
        (t,) = self.hyperparameters.check(lam)
        mu = mean_angle(cls, t)[:, None]
        log_vm = kappa * np.cos(angle - mu) - math.log(2 * math.pi) - (np.log(i0e(kappa)) + kappa)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_r = np.log(r)
            log_ln = -log_r - math.log(sigma * math.sqrt(2 * math.pi)) - log_r**2 / (2 * sigma**2)
            out = log_vm + log_ln - log_r  # polar Jacobian
        return torch.as_tensor(np.where(r > 1e-9, out, -np.inf))

    def metrics(self, lam: Point, conditions: Tensor, samples: Tensor) -> dict[str, float]:
        """``nll``: −mean log p_t(y | c) (points at the centre dropped, as in the paper's code);
        ``circle_distance``: mean | ‖y − centre_c‖ − 1 |, averaged per class then over classes."""
        logp = self.log_density(lam, conditions, samples).numpy()
        keep = np.isfinite(logp)
        nll = float(-logp[keep].mean()) if keep.any() else float("inf")
        cls = self._classes(conditions)
        r = np.linalg.norm(np.asarray(samples, dtype=np.float64) - CENTRES[cls][:, None, :], axis=-1)
        cd = float(np.abs(r - 1.0).mean(axis=1).mean())
        return {"nll": nll, "circle_distance": cd}

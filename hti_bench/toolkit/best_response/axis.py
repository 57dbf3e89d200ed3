"""λ's coordinates for best-response models, and minibatches of a task's training set."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from hti_bench.clock import Clock, Hyperparameter


class LambdaAxis:
    """Coordinates of λ shared by the best-response models.

    - ``t``: the task's clock time g(λ) (identity, log or logit);
    - ``s``: t rescaled so that the first anchor is −1 and the last +1; what generators read, so
      that their inputs are O(1) whatever the clock (raw log-λ of −7 would multiply the response);
    - ``u``: t mapped from the task's whole range [g(low), g(high)] onto ℝ by a logit, the STN's
      unconstrained coordinate: Gaussian perturbations in ``u`` never leave the task's range.
    """

    def __init__(self, hp: Hyperparameter, first: float, last: float) -> None:
        self.hp = hp
        self.t_first, self.t_last = hp.to_time(first), hp.to_time(last)
        self.t_low, self.t_high = hp.to_time(hp.low), hp.to_time(hp.high)

    def time(self, lam: Tensor) -> Tensor:
        lam = torch.as_tensor(lam, dtype=torch.float32).clamp(self.hp.clip_low, self.hp.clip_high)
        if self.hp.clock is Clock.LOG:
            return lam.log()
        if self.hp.clock is Clock.LOGIT:
            return lam.log() - (-lam).log1p()
        return lam

    def lam(self, t: Tensor) -> Tensor:
        if self.hp.clock is Clock.LOG:
            lam = t.exp()
        elif self.hp.clock is Clock.LOGIT:
            lam = torch.sigmoid(t)
        else:
            lam = t
        # Round-off at the range ends must not become a λ the task refuses.
        return lam.clamp(self.hp.low, self.hp.high)

    def s(self, t: Tensor) -> Tensor:
        mid, half = 0.5 * (self.t_first + self.t_last), 0.5 * (self.t_last - self.t_first)
        return (t - mid) / half

    def t_of_s(self, s: Tensor) -> Tensor:
        mid, half = 0.5 * (self.t_first + self.t_last), 0.5 * (self.t_last - self.t_first)
        return mid + half * s

    def u(self, t: Tensor) -> Tensor:
        frac = ((t - self.t_low) / (self.t_high - self.t_low)).clamp(1e-6, 1 - 1e-6)
        return frac.log() - (-frac).log1p()

    def t_of_u(self, u: Tensor) -> Tensor:
        return self.t_low + (self.t_high - self.t_low) * torch.sigmoid(u)

    def s_of_lam(self, lam: float) -> float:
        return float(self.s(self.time(torch.tensor(float(lam)))))

    def uniform(self, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """n clock times drawn uniformly over the anchor range: (λ, s), each of shape (n,)."""
        t = self.t_first + (self.t_last - self.t_first) * torch.rand(n, generator=gen)
        return self.lam(t), self.s(t)

    def perturbed(self, center_u: Tensor, scale: Tensor, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """STN draws λ̃ = u⁻¹(u0 + σ ε), ε ~ N(0, 1) per example: (λ̃, s̃), differentiable in σ."""
        eps = torch.randn(n, generator=gen)
        t = self.t_of_u(center_u + scale * eps)
        return self.lam(t), self.s(t)


class BoxAxes:
    """λ's coordinates for best-response models on a task of d > 1 hyperparameters: one
    :class:`LambdaAxis` per axis, each spanning the anchors' extent along it, so ``s`` is (…, d) with
    every coordinate in [−1, 1] over the anchors' bounding box (which anchor designs make their hull)."""

    def __init__(self, space: Any, anchors: Sequence[Sequence[float]]) -> None:
        self.axes = [
            LambdaAxis(hp, min(a[i] for a in anchors), max(a[i] for a in anchors)) for i, hp in enumerate(space.axes)
        ]

    @property
    def d(self) -> int:
        return len(self.axes)

    def s_of_lam(self, lam: Sequence[float]) -> list[float]:
        return [axis.s_of_lam(v) for axis, v in zip(self.axes, lam)]

    def uniform(self, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """n points drawn uniformly over the anchors' box on the clocks: (λ (n, d), s (n, d))."""
        draws = [axis.uniform(n, gen) for axis in self.axes]
        return torch.stack([lam for lam, _ in draws], dim=1), torch.stack([s for _, s in draws], dim=1)

    # The STN's coordinates, per axis: t (clock time), u (unconstrained), s (generator input), each (…, d).

    def time(self, lam: Tensor) -> Tensor:
        lam = torch.as_tensor(lam, dtype=torch.float32)
        return torch.stack([axis.time(lam[..., i]) for i, axis in enumerate(self.axes)], dim=-1)

    def lam(self, t: Tensor) -> Tensor:
        return torch.stack([axis.lam(t[..., i]) for i, axis in enumerate(self.axes)], dim=-1)

    def s(self, t: Tensor) -> Tensor:
        return torch.stack([axis.s(t[..., i]) for i, axis in enumerate(self.axes)], dim=-1)

    def u(self, t: Tensor) -> Tensor:
        return torch.stack([axis.u(t[..., i]) for i, axis in enumerate(self.axes)], dim=-1)

    def middle(self) -> Tensor:
        """Clock times (d,) of the middle of the anchors' box."""
        return torch.tensor([0.5 * (a.t_first + a.t_last) for a in self.axes])

    def perturbed(self, center_u: Tensor, scale: Tensor, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """The STN's draws per axis, λ̃_i = u_i⁻¹(u0_i + σ_i ε_i), ε ~ N(0, I_d): (λ̃ (n, d), s̃ (n, d))."""
        eps = torch.randn(n, self.d, generator=gen)
        u = center_u + scale * eps
        t = torch.stack([axis.t_of_u(u[:, i]) for i, axis in enumerate(self.axes)], dim=1)
        return self.lam(t), self.s(t)


def make_axis(hyperparameter: Any, anchors: Any) -> LambdaAxis | BoxAxes:
    """The coordinates of an anchor set's λ: a :class:`LambdaAxis` over the anchor range (d = 1) or
    :class:`BoxAxes` over the anchors' box (d > 1)."""
    if anchors.d > 1:
        return BoxAxes(anchors.space, anchors.lambdas)
    return LambdaAxis(hyperparameter, anchors.lambdas[0], anchors.lambdas[-1])


class BatchStream:
    """Endless shuffled minibatches of a task's training set (or a split of it), from one generator."""

    def __init__(self, data: Sequence[Tensor], batch_size: int, gen: torch.Generator) -> None:
        self.data, self.gen = tuple(data), gen
        self.n = int(self.data[0].shape[0])
        self.batch_size = min(int(batch_size), self.n)
        self._order, self._pos = torch.randperm(self.n, generator=gen), 0

    def __next__(self) -> tuple[Tensor, ...]:
        if self._pos + self.batch_size > self.n:
            self._order, self._pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self._order[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return tuple(d[idx] for d in self.data)

    def __iter__(self) -> BatchStream:
        return self


def split_training_data(
    data: Sequence[Tensor], fraction: float, gen: torch.Generator
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """(train, validation) rows of the task's training set; ``fraction`` of it held out."""
    n = int(data[0].shape[0])
    order = torch.randperm(n, generator=gen)
    n_val = max(1, int(round(fraction * n)))
    val, train = order[:n_val], order[n_val:]
    return tuple(d[train] for d in data), tuple(d[val] for d in data)

"""λ's coordinates for best-response models, and minibatches of a task's training set."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from hti_bench.clock import Clock, Hyperparameter
from hti_bench.errors import ConfigError


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

    # What a best-response surrogate asks of λ's coordinates, answered alike by BoxAxes for d > 1.

    def inputs(self, point: tuple[float, ...]) -> list[float]:
        """The generator inputs at a point λ (one coordinate here): its ``s``."""
        return [self.s_of_lam(point[0])]

    def refuse_outside(self, anchors: Any, point: tuple[float, ...]) -> None:
        """``ValueError`` for λ outside the anchor range: the models were trained over it only."""
        anchors.locate(point[0])

    def check_center(self, anchors: Any, center: Any) -> None:
        """:class:`ConfigError` unless a given centre λ0 lies in the anchor range."""
        lo, hi = (anchors.space.check(anchors.lambdas[i])[0] for i in (0, -1))
        if not lo <= float(center) <= hi:
            raise ConfigError(f"center={center} must lie in the anchor range [{lo}, {hi}]")

    def center(self, value: Any) -> float:
        """Clock time of λ0: ``value``, or None for the middle of the anchor range."""
        if value is None:
            return 0.5 * (self.t_first + self.t_last)
        return float(self.time(torch.tensor(float(value))))

    def s_at(self, t: float) -> float:
        return float(self.s(torch.tensor(t)))

    def u_at(self, t: float) -> float:
        return float(self.u(torch.tensor(t)))

    def lam_at(self, t: float) -> float:
        return float(self.lam(torch.tensor(t)))

    @staticmethod
    def repeat(lam: float, rows: int) -> Tensor:
        """One λ for each of ``rows`` examples, as the task's loss takes it: (rows,)."""
        return torch.full((rows,), lam)


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

    # What a best-response surrogate asks of λ's coordinates, as LambdaAxis answers it for d = 1.

    def inputs(self, point: tuple[float, ...]) -> list[float]:
        """The generator inputs at a point λ: its ``s``, one per axis."""
        return self.s_of_lam(point)

    @staticmethod
    def refuse_outside(anchors: Any, point: tuple[float, ...]) -> None:
        """``ValueError`` for λ outside the anchors' hull: the models were trained over their box only."""
        anchors.simplex(point)

    @staticmethod
    def check_center(anchors: Any, center: Any) -> None:
        """:class:`ConfigError` unless a given centre λ0 is a point inside the anchors' hull."""
        try:
            anchors.simplex(tuple(center))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"center={center} must be a point inside the anchors' hull: {err}") from None

    def center(self, value: Any) -> Tensor:
        """Clock times (d,) of λ0: the point ``value``, or None for the middle of the anchors' box."""
        if value is None:
            return self.middle()
        return self.time(torch.tensor([float(v) for v in value]))

    def s_at(self, t: Tensor) -> Tensor:
        return self.s(t)

    def u_at(self, t: Tensor) -> Tensor:
        return self.u(t)

    def lam_at(self, t: Tensor) -> Tensor:
        return self.lam(t)

    @staticmethod
    def repeat(lam: Tensor, rows: int) -> Tensor:
        """One point λ (d,) for each of ``rows`` examples, as the task's loss takes it: (rows, d)."""
        return lam.expand(rows, -1).contiguous()


def make_axis(space: Any, anchors: Any) -> LambdaAxis | BoxAxes:
    """The coordinates of an anchor set's λ in the hyperparameter space ``space`` (the task view's,
    on the clock the harness applies): a :class:`LambdaAxis` over the anchor range for one
    hyperparameter, whose loss takes one float per example, or :class:`BoxAxes` over the anchors' box,
    whose loss takes a point per example."""
    points = [anchors.space.check(lam) for lam in anchors.lambdas]
    if space.d > 1:
        return BoxAxes(space, points)
    return LambdaAxis(space.axes[0], points[0][0], points[-1][0])


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

"""The hyperparameter a task varies, and the *clock* that places its values on a line.

Every surrogate interpolates in clock time t = g(λ), never in raw λ: a quantile level or a β spread
over orders of magnitude moves along a very different path in raw units than on a logit or log scale,
and a correct geodesic on the wrong clock still lands in the wrong place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from hti_bench.errors import ConfigError


class Clock(str, Enum):
    """How λ is mapped to the line a surrogate interpolates on."""

    IDENTITY = "identity"
    LOG = "log"
    LOGIT = "logit"

    def to_time(self, lam: float) -> float:
        """g(λ): the position of λ on this clock."""
        if self is Clock.IDENTITY:
            return float(lam)
        if self is Clock.LOG:
            if lam <= 0:
                raise ValueError(f"log clock needs λ > 0, got {lam}")
            return math.log(lam)
        if not 0.0 < lam < 1.0:
            raise ValueError(f"logit clock needs 0 < λ < 1, got {lam}")
        return math.log(lam) - math.log1p(-lam)

    def from_time(self, t: float) -> float:
        """g⁻¹(t)."""
        if self is Clock.IDENTITY:
            return float(t)
        if self is Clock.LOG:
            return math.exp(t)
        return 1.0 / (1.0 + math.exp(-t))

    @classmethod
    def parse(cls, value: str | Clock) -> Clock:
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(c.value for c in cls)
            raise ConfigError(f"Unknown clock {value!r}; valid clocks: {valid}.") from None


@dataclass(frozen=True)
class Hyperparameter:
    """The scalar λ a task varies.

    Attributes
    ----------
    name : str
        What λ is, e.g. ``"dropout"`` or ``"tau"``.
    low, high : float
        The closed range of λ the task may be trained at.
    clock : Clock
        Where λ sits on the line surrogates interpolate on.
    """

    name: str
    low: float
    high: float
    clock: Clock = Clock.IDENTITY

    def __post_init__(self) -> None:
        object.__setattr__(self, "clock", Clock.parse(self.clock))
        if not self.low < self.high:
            raise ConfigError(f"Hyperparameter {self.name!r}: low ({self.low}) must be < high ({self.high}).")
        # Both ends must be valid on the clock (a log clock cannot start at 0).
        for end in (self.low, self.high):
            try:
                self.clock.to_time(end)
            except ValueError as err:
                raise ConfigError(f"Hyperparameter {self.name!r}: range end {end} is invalid: {err}") from None

    def check(self, lam: float) -> float:
        """Return λ as a float, or raise ``ValueError`` if it lies outside [low, high]."""
        lam = float(lam)
        if not (self.low <= lam <= self.high) or math.isnan(lam):
            raise ValueError(f"{self.name}={lam} is outside the task's range [{self.low}, {self.high}].")
        return lam

    def to_time(self, lam: float) -> float:
        return self.clock.to_time(lam)

    def from_time(self, t: float) -> float:
        return self.clock.from_time(t)

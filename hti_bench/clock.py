"""The hyperparameters a task varies, and the *clock* that places each one's values on a line.

λ is always a :data:`Point` of a :class:`HyperparameterSpace`: a tuple of d floats, one per named axis
(a :class:`Hyperparameter`). A task of one hyperparameter is the case d = 1, its λ a 1-tuple ``(0.3,)``.

Every surrogate interpolates in clock time t = g(λ), never in raw λ: a quantile level or a β spread
over orders of magnitude moves along a very different path in raw units than on a logit or log scale,
and a correct geodesic on the wrong clock still lands in the wrong place.

Which clock is right is an empirical question (on the HTI paper's two-moons data nearest-anchor goes
from W₂² 0.94 on the identity clock to 0.05 on a logit one), so the clock is also a *tunable choice*:
any surrogate's name takes ``clock=identity|log|logit`` (:data:`CLOCK_PARAM`), applied by the harness
through :meth:`Hyperparameter.with_clock`. A clock whose singularity sits exactly at an end of the
task's range (log at λ = 0, logit at 0 or 1) reads λ clipped :data:`CLIP` of the range away from that
end, so dropout ∈ [0, 0.99] has a logit clock (logit(0) is read as logit(0.00099) ≈ −6.9).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from enum import Enum

from hti_bench.errors import ConfigError

#: λ as every part of the suite passes it around: one float per axis of the task's space, also for d = 1.
Point = tuple[float, ...]

#: The surrogate-name parameter every surrogate accepts: the clock the harness gives it ('' = the task's).
CLOCK_PARAM = "clock"

#: Separator of a point's coordinates (and of the axes' names) in text: ``0.5;1.0``.
POINT_SEP = ";"

#: How far (as a fraction of the range) a clock reads λ from a range end where it is singular.
CLIP = 1e-3


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
    """One axis of a :class:`HyperparameterSpace`: a scalar hyperparameter, its range and its clock.

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
        # Both (clipped) ends must be valid on the clock: a log clock cannot start below 0.
        for end in (self.clip_low, self.clip_high):
            try:
                self.clock.to_time(end)
            except ValueError as err:
                raise ConfigError(
                    f"Hyperparameter {self.name!r} on [{self.low}, {self.high}] cannot use the {self.clock.value} clock: {err}"
                ) from None

    @property
    def clip_low(self) -> float:
        """The smallest λ the clock reads: ``low``, or just above it where the clock is singular there."""
        singular = self.low == 0.0 and self.clock in (Clock.LOG, Clock.LOGIT)
        return self.low + CLIP * (self.high - self.low) if singular else self.low

    @property
    def clip_high(self) -> float:
        """The largest λ the clock reads: ``high``, or just below 1 for a logit clock ending at 1."""
        singular = self.high == 1.0 and self.clock is Clock.LOGIT
        return self.high - CLIP * (self.high - self.low) if singular else self.high

    def with_clock(self, clock: str | Clock) -> Hyperparameter:
        """The same λ on another clock; :class:`ConfigError` if that clock cannot read the range."""
        return dataclasses.replace(self, clock=Clock.parse(clock))

    def clocks(self) -> tuple[Clock, ...]:
        """Every clock that can read this λ's range (identity always; log for λ ≥ 0; logit inside [0, 1])."""
        out = []
        for clock in Clock:
            try:
                self.with_clock(clock)
            except ConfigError:
                continue
            out.append(clock)
        return tuple(out)

    def check(self, lam: float) -> float:
        """Return λ as a float, or raise ``ValueError`` if it lies outside [low, high]."""
        lam = float(lam)
        if not (self.low <= lam <= self.high) or math.isnan(lam):
            raise ValueError(f"{self.name}={lam} is outside the task's range [{self.low}, {self.high}].")
        return lam

    def to_time(self, lam: float) -> float:
        """g(λ) on this clock (λ clipped to [clip_low, clip_high] first)."""
        return self.clock.to_time(min(max(float(lam), self.clip_low), self.clip_high))

    def from_time(self, t: float) -> float:
        """g⁻¹(t), kept inside [low, high]."""
        return min(max(self.clock.from_time(t), self.low), self.high)


@dataclass(frozen=True)
class HyperparameterSpace:
    """λ as a point of a box of d named axes, each a :class:`Hyperparameter` with its own range and clock.
    Every task declares one (a task of one hyperparameter: a one-axis space, :meth:`single`), and every
    λ is a :data:`Point` of it, a tuple of d floats.

    Surrogates compare points in *unit clock time*: each axis's clock time rescaled so that its range
    spans [0, 1] (:meth:`to_unit`), so that a log-clocked β and an identity-clocked weight count alike
    in distances and simplices.
    """

    axes: tuple[Hyperparameter, ...]

    def __post_init__(self) -> None:
        axes = tuple(self.axes)
        object.__setattr__(self, "axes", axes)
        if not axes or not all(isinstance(a, Hyperparameter) for a in axes):
            raise ConfigError(f"a hyperparameter space needs at least one Hyperparameter axis, got {self.axes!r}")
        names = [a.name for a in axes]
        if len(set(names)) != len(names):
            raise ConfigError(f"hyperparameter axes need distinct names, got {names}")

    @classmethod
    def single(cls, name: str, low: float, high: float, clock: str | Clock = Clock.IDENTITY) -> HyperparameterSpace:
        """The space of one hyperparameter: ``HyperparameterSpace.single("dropout", 0.0, 0.99, Clock.LOGIT)``."""
        return cls((Hyperparameter(name, low, high, clock),))

    @property
    def d(self) -> int:
        return len(self.axes)

    @property
    def axis(self) -> Hyperparameter:
        """The one axis of a one-hyperparameter space: what the tools of the line (an anchor interval on
        the clock, :meth:`interval`) read. :class:`ConfigError` for a space of several axes."""
        if self.d != 1:
            raise ConfigError(
                f"the space ({', '.join(self.names)}) has {self.d} hyperparameters, not a single axis: "
                "use its points (simplex, nearest, unit time) instead"
            )
        return self.axes[0]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def check(self, point: float | Point) -> Point:
        """The point as a tuple of d floats, or ``ValueError`` naming the axis that is out of range (a
        bare number is taken as a one-axis point, for convenience where λ is typed by a user)."""
        values = as_point(point)
        if len(values) != self.d:
            raise ValueError(
                f"a point of ({', '.join(self.names)}) needs {self.d} values, got {len(values)}: {point!r}"
            )
        return tuple(axis.check(v) for axis, v in zip(self.axes, values))

    def check_anchors(self, anchors: list[Point] | tuple) -> tuple[Point, ...]:
        """Anchor points as tuples of d floats, or ``ValueError`` saying what is wrong with them: at
        least d + 1 (the vertices of a simplex around a point), distinct, and on a single axis strictly
        increasing (the order the tools of the line, :meth:`interval`, walk)."""
        points = tuple(as_point(a) for a in anchors)
        if any(len(p) != self.d for p in points):
            raise ValueError(f"each anchor of ({self.name}) is a point of {self.d} values, got {points}")
        if len(points) < self.d + 1:
            raise ValueError(f"{self.d} hyperparameter(s) need at least {self.d + 1} anchors, got {len(points)}.")
        if self.d == 1 and any(b <= a for a, b in zip(points, points[1:])):
            raise ValueError(
                f"anchors must be strictly increasing, got {', '.join(POINT_SEP.join(map(repr, p)) for p in points)}."
            )
        if len(set(points)) != len(points):
            raise ValueError(f"anchors must be distinct points, got {points}.")
        return points

    @property
    def name(self) -> str:
        """The axes' names joined by ``;`` (a 1-D space's is its axis's name): the results' ``hyperparameter``."""
        return POINT_SEP.join(self.names)

    @property
    def clock_label(self) -> str:
        """The axes' clocks joined by ``;`` (the results' ``clock`` column)."""
        return POINT_SEP.join(a.clock.value for a in self.axes)

    def point(self, value: float | Point | list) -> Point:
        """λ in its canonical form, checked: a tuple of d floats. ``ValueError`` naming the axis for a
        value out of range."""
        return self.check(value)

    def label(self, point: float | Point) -> str:
        """A point as text, ``repr`` of each coordinate joined by ``;`` (the results' ``lambda_point``)."""
        return POINT_SEP.join(repr(float(v)) for v in self.check(point))

    def describe(self, point: float | Point) -> str:
        """``name=value`` of each axis, for messages: ``penalty=0.5, drag=1.0``."""
        return ", ".join(f"{n}={v}" for n, v in zip(self.names, self.check(point)))

    def with_clock(self, clock: str | Clock) -> HyperparameterSpace:
        """Every axis on ``clock``; :class:`ConfigError` naming the axis whose range that clock cannot read."""
        return HyperparameterSpace(tuple(axis.with_clock(clock) for axis in self.axes))

    def clocks(self) -> tuple[Clock, ...]:
        """The clocks every axis can read."""
        return tuple(c for c in Clock if all(c in axis.clocks() for axis in self.axes))

    def to_unit(self, point: float | Point) -> tuple[float, ...]:
        """Each coordinate's clock time, rescaled so that the axis's (clipped) range spans [0, 1]."""
        out = []
        for axis, v in zip(self.axes, self.check(point)):
            lo, hi = axis.to_time(axis.clip_low), axis.to_time(axis.clip_high)
            out.append((axis.to_time(v) - lo) / (hi - lo))
        return tuple(out)

    def distance(self, a: float | Point, b: float | Point) -> float:
        """Euclidean distance of two points in unit clock time."""
        return math.dist(self.to_unit(a), self.to_unit(b))

    def simplex(
        self, anchors: list[tuple[float, ...]] | tuple, point: float | Point
    ) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """The anchors around ``point`` and its barycentric weights over them: (indices into ``anchors``,
        weights ≥ 0 summing to 1, one per index), from the Delaunay triangulation of the anchors in
        unit clock time; on a single axis, the enclosing anchor interval of :meth:`interval`, weights
        (1 − s, s). The weighted anchors reproduce the point in (unit) clock time. ``ValueError`` when
        the point lies outside the anchors' convex hull."""
        import numpy as np

        if self.d == 1:  # a line: the enclosing clock interval, as AnchorSet.locate finds it
            lo, hi, s = self.interval(anchors, point)
            return (lo, hi), (1.0 - s, s)
        pts = np.array([self.to_unit(a) for a in anchors], dtype=float)
        x = np.array(self.to_unit(point), dtype=float)
        from scipy.spatial import Delaunay

        if len(pts) < self.d + 1:
            raise ValueError(f"{len(pts)} anchors cannot surround a point of a {self.d}-D space (need ≥ {self.d + 1})")
        tri = Delaunay(pts)
        found = int(tri.find_simplex(x, tol=1e-9))
        if found < 0:
            raise ValueError(
                f"({', '.join(f'{n}={v}' for n, v in zip(self.names, self.check(point)))}) is outside "
                "the convex hull of the anchors: HTI interpolates"
            )
        vertices = tri.simplices[found]
        affine = tri.transform[found]
        partial = affine[: self.d] @ (x - affine[self.d])
        weights = np.clip(np.append(partial, 1.0 - partial.sum()), 0.0, None)
        weights = weights / weights.sum()
        return tuple(int(v) for v in vertices), tuple(float(w) for w in weights)

    def interval(self, anchors: list[Point] | tuple, point: float | Point) -> tuple[int, int, float]:
        """On a single axis (:attr:`axis`): the anchors (i, j) whose values enclose λ, next to each other
        in increasing order, and λ's clock fraction s ∈ [0, 1] between them. ``ValueError`` for λ
        outside the anchors' range: HTI is interpolation, and a surrogate that cannot extrapolate must
        say so rather than return something."""
        axis = self.axis
        lam = float(as_point(point)[0])
        values = [float(as_point(a)[0]) for a in anchors]
        order = sorted(range(len(values)), key=values.__getitem__)
        lo, hi = values[order[0]], values[order[-1]]
        if math.isnan(lam) or not lo <= lam <= hi:
            raise ValueError(f"λ={lam} is outside the anchors' range [{lo}, {hi}]; this surrogate only interpolates.")
        times = [axis.to_time(values[i]) for i in order]
        t = axis.to_time(lam)
        for k in range(len(times) - 1):
            if t <= times[k + 1] or k == len(times) - 2:
                s = (t - times[k]) / (times[k + 1] - times[k])
                return order[k], order[k + 1], min(max(s, 0.0), 1.0)
        raise ValueError(f"an interval needs at least 2 anchors, got {len(values)}")

    def nearest(self, anchors: list[tuple[float, ...]] | tuple, point: float | Point) -> int:
        """Index of the anchor closest to ``point`` in unit clock time (the first one on a tie)."""
        dists = [self.distance(a, point) for a in anchors]
        best = min(dists)
        return next(i for i, v in enumerate(dists) if v <= best + 1e-12)

    def from_unit(self, unit: tuple[float, ...]) -> tuple[float, ...]:
        """The point at unit clock time ``unit`` (inverse of :meth:`to_unit`), kept inside each range."""
        out = []
        for axis, u in zip(self.axes, unit):
            lo, hi = axis.to_time(axis.clip_low), axis.to_time(axis.clip_high)
            value = axis.from_time(lo + float(u) * (hi - lo))
            # The clipped ends read back as the range's own ends, so a design's corners are exact.
            if u <= 0.0:
                value = axis.low
            elif u >= 1.0:
                value = axis.high
            out.append(float(value))
        return tuple(out)

    def design(self, spec: str, box: tuple[tuple[float, float], ...] | None = None) -> tuple[tuple[float, ...], ...]:
        """Anchor points from a design name, spread evenly in unit clock time over ``box`` (per axis a
        (low, high) in λ units; default the axes' ranges):

        - ``grid:3x3`` (one count per axis, each ≥ 2): the full grid, ends included;
        - ``sobol:N`` (N ≥ 2^d + 1): the 2^d corners of the box plus N − 2^d points of a scrambled
          Sobol' sequence (scipy.stats.qmc, seed 0), so the anchors' hull is the whole box.

        :class:`ConfigError` says what is wrong with a malformed name."""
        import itertools

        kind, _, arg = spec.partition(":")
        box = box or tuple((a.low, a.high) for a in self.axes)
        if len(box) != self.d:
            raise ConfigError(f"anchor design box needs {self.d} (low, high) pairs, got {box!r}")
        lo = [self.to_unit(tuple(b[0] for b in box))[i] for i in range(self.d)]
        hi = [self.to_unit(tuple(b[1] for b in box))[i] for i in range(self.d)]
        if kind == "grid":
            try:
                counts = [int(c) for c in arg.lower().split("x")]
            except ValueError:
                counts = []
            if len(counts) != self.d or min(counts) < 2:
                raise ConfigError(
                    f"anchor design {spec!r}: a grid needs {self.d} counts ≥ 2 joined by 'x', "
                    f"e.g. grid:{'x'.join(['3'] * self.d)}"
                )
            axes = [[lo[i] + (hi[i] - lo[i]) * j / (c - 1) for j in range(c)] for i, c in enumerate(counts)]
            units = list(itertools.product(*axes))
        elif kind == "sobol":
            corners = 2**self.d
            try:
                n = int(arg)
            except ValueError:
                n = -1
            if n < corners + 1:
                raise ConfigError(
                    f"anchor design {spec!r}: sobol:N needs N ≥ {corners + 1} (the {corners} corners "
                    "of the box and at least one interior point)"
                )
            from scipy.stats import qmc

            with warnings.catch_warnings():  # "balance properties need a power of 2": true, and irrelevant here
                warnings.simplefilter("ignore", UserWarning)
                inner = qmc.Sobol(d=self.d, scramble=True, seed=0).random(n - corners)
            units = [
                tuple(lo[i] + (hi[i] - lo[i]) * c[i] for i in range(self.d))
                for c in itertools.product((0.0, 1.0), repeat=self.d)
            ]
            units += [tuple(lo[i] + (hi[i] - lo[i]) * float(r[i]) for i in range(self.d)) for r in inner]
        else:
            raise ConfigError(f"unknown anchor design {spec!r}: valid designs are grid:<n>x<n> and sobol:<N>")
        # 12 significant digits: a log axis's grid reads 0.1, not 0.10000000000000002 (names and cache keys stay clean).
        return tuple(tuple(float(f"{v:.12g}") for v in self.from_unit(u)) for u in units)


def as_point(value: float | Point | list) -> Point:
    """λ as a tuple of floats, unchecked: a bare number (how a user may type a one-hyperparameter λ)
    becomes a 1-tuple."""
    if isinstance(value, (int, float)) or getattr(value, "ndim", None) == 0:
        return (float(value),)
    return tuple(float(v) for v in value)


def stored_form(point: float | Point) -> float | Point:
    """How λ is written where a stored number derives from it (the seeds of the harness's draws, the
    target cache's keys, the results' ``lambda_heldout``): a one-axis point as its bare float, as one
    hyperparameter always was written, so that stored targets, draws and results stay valid."""
    point = as_point(point)
    d = len(point)
    return point[0] if d == 1 else point

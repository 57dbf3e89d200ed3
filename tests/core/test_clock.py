"""The hyperparameter space: axes, points, unit clock time, barycentric weights; one hyperparameter as its d = 1 case."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hti_bench.clock import Clock, Hyperparameter, HyperparameterSpace, as_point, stored_form
from hti_bench.errors import ConfigError

SPACE = HyperparameterSpace((Hyperparameter("beta", 0.01, 100.0, Clock.LOG), Hyperparameter("w", 0.0, 1.0)))
GRID = [(b, w) for b in (0.01, 1.0, 100.0) for w in (0.0, 0.5, 1.0)]


def test_axes_are_named_checked_and_read_on_their_own_clocks():
    assert SPACE.d == 2 and SPACE.names == ("beta", "w")
    assert SPACE.to_unit((1.0, 0.25)) == pytest.approx((0.5, 0.25))  # log clock: 1 is the middle of [0.01, 100]
    with pytest.raises(ValueError, match="w=2.0 is outside"):
        SPACE.check((1.0, 2.0))
    with pytest.raises(ValueError, match="needs 2 values"):
        SPACE.check((1.0,))
    with pytest.raises(ConfigError, match="distinct names"):
        HyperparameterSpace((Hyperparameter("w", 0, 1), Hyperparameter("w", 0, 2)))
    assert SPACE.distance((0.01, 0.0), (100.0, 1.0)) == pytest.approx(math.sqrt(2))


@pytest.mark.parametrize("point", [(0.1, 0.3), (3.0, 0.9), (1.0, 0.5), (0.01, 0.0), (50.0, 1.0), (0.02, 0.77)])
def test_barycentric_weights_reproduce_the_point(point):
    idx, w = SPACE.simplex(GRID, point)
    assert len(idx) == 3 and min(w) >= 0 and sum(w) == pytest.approx(1.0)
    unit = np.array([SPACE.to_unit(GRID[i]) for i in idx])
    assert np.asarray(w) @ unit == pytest.approx(np.array(SPACE.to_unit(point)), abs=1e-9)


def test_a_scattered_design_and_the_hull():
    rng = np.random.default_rng(0)
    corners = list(itertools.product((0.01, 100.0), (0.0, 1.0)))
    inner = [(float(10 ** rng.uniform(-2, 2)), float(rng.uniform())) for _ in range(5)]
    design = corners + inner
    for _ in range(20):
        p = (float(10 ** rng.uniform(-2, 2)), float(rng.uniform()))
        idx, w = SPACE.simplex(design, p)
        unit = np.array([SPACE.to_unit(design[i]) for i in idx])
        assert np.asarray(w) @ unit == pytest.approx(np.array(SPACE.to_unit(p)), abs=1e-9)
    with pytest.raises(ValueError, match="outside the convex hull"):
        SPACE.simplex(inner, (0.01, 1.0))


def test_one_axis_is_the_anchor_interval():
    space = HyperparameterSpace((Hyperparameter("p", 0.0, 0.99),))
    idx, w = space.simplex([(0.0,), (0.5,), (0.99,)], 0.25)
    assert idx == (0, 1) and w == pytest.approx((0.5, 0.5))
    with pytest.raises(ValueError, match="outside the anchors' range"):
        space.simplex([(0.1,), (0.5,)], 0.05)


def test_one_hyperparameter_is_a_space_of_one_axis_and_its_lambda_a_point():
    line = HyperparameterSpace.single("dropout", 0.0, 0.99, Clock.LOGIT)
    assert line == HyperparameterSpace((Hyperparameter("dropout", 0.0, 0.99, Clock.LOGIT),))
    assert line.d == 1 and line.axis.name == "dropout" and line.name == "dropout"
    assert line.point(0.3) == line.point((0.3,)) == (0.3,)  # a bare number is taken as a one-axis point
    assert SPACE.point([1.0, 0.5]) == (1.0, 0.5)
    with pytest.raises(ConfigError, match="2 hyperparameters"):
        SPACE.axis  # noqa: B018 (a space of several hyperparameters has no single axis)
    assert as_point(0.25) == (0.25,) and as_point([1, 2]) == (1.0, 2.0)
    # Stored numbers (seeds, cache keys, lambda_heldout) write a one-axis point as its bare value.
    assert stored_form((0.25,)) == 0.25 and stored_form((0.25, 0.5)) == (0.25, 0.5)


def test_the_interval_of_a_line_finds_the_anchors_around_lambda_in_any_order():
    line = HyperparameterSpace.single("t", 0.0, 1.0, Clock.LOGIT)
    anchors = [(0.9,), (0.1,), (0.5,)]
    i, j, s = line.interval(anchors, (0.3,))
    assert (i, j) == (1, 2)
    t = [line.axis.to_time(v) for v in (0.1, 0.3, 0.5)]
    assert s == (t[1] - t[0]) / (t[2] - t[0])
    assert line.simplex(anchors, (0.3,)) == ((1, 2), (1.0 - s, s))
    with pytest.raises(ValueError, match="outside the anchors' range"):
        line.interval(anchors, 0.95)
    with pytest.raises(ValueError, match="strictly increasing"):
        line.check_anchors(anchors)

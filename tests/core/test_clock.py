"""The multi-hyperparameter contract's space (issue 20): axes, unit clock time, barycentric weights."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hti_bench.clock import Clock, Hyperparameter, HyperparameterSpace
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

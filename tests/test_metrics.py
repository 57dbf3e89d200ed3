"""Scoring against closed forms."""

import math

import numpy as np
import ot
import pytest
import torch

from hti_bench.metrics import gaussian_w2, per_condition_wasserstein, wasserstein


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_shift_distance_is_the_shift_norm(p, dim):
    x = rng().standard_normal((300, dim))
    c = np.arange(1, dim + 1) * 0.3
    assert wasserstein(x, x + c, p=p) == pytest.approx(np.linalg.norm(c), rel=1e-6)


@pytest.mark.parametrize("dim", [1, 3])
def test_distance_to_itself_is_zero(dim):
    x = rng().standard_normal((200, dim))
    assert wasserstein(x, x) == pytest.approx(0.0, abs=1e-9)


def test_symmetric_and_permutation_invariant():
    x, y = rng(1).standard_normal((150, 2)), rng(2).standard_normal((150, 2)) * 2 + 1
    d = wasserstein(x, y)
    assert wasserstein(y, x) == pytest.approx(d, rel=1e-9)
    assert wasserstein(x[rng(3).permutation(150)], y[rng(4).permutation(150)]) == pytest.approx(d, rel=1e-9)


def test_one_dimensional_gaussians_match_closed_form():
    # W2(N(m1, s1²), N(m2, s2²)) = sqrt((m1 - m2)² + (s1 - s2)²); quantile grids remove sampling error
    from scipy.stats import norm

    u = (np.arange(4000) + 0.5) / 4000
    x, y = norm.ppf(u, 0.0, 1.0), norm.ppf(u, 1.5, 0.5)
    assert wasserstein(x, y) == pytest.approx(math.sqrt(1.5**2 + 0.5**2), rel=2e-3)
    assert wasserstein(x, y, p=2) == pytest.approx(math.sqrt(ot.wasserstein_1d(x, y, p=2)), rel=1e-9)


def test_two_dimensional_gaussians_match_bures():
    r = rng(5)
    cov1, cov2 = np.array([[1.0, 0.3], [0.3, 0.5]]), np.array([[0.4, -0.1], [-0.1, 1.2]])
    m1, m2 = np.zeros(2), np.array([1.0, -0.5])
    x = r.multivariate_normal(m1, cov1, 1500)
    y = r.multivariate_normal(m2, cov2, 1500)
    exact = gaussian_w2(torch.tensor(m1), torch.tensor(cov1), torch.tensor(m2), torch.tensor(cov2))
    assert wasserstein(x, y) == pytest.approx(exact, rel=0.05)


def test_per_condition_matches_pairwise_and_batches_1d():
    r = rng(6)
    x, y = r.standard_normal((4, 80, 2)), r.standard_normal((4, 90, 2)) + 0.5
    scores = per_condition_wasserstein(x, y)
    for i in range(4):
        assert scores.w2[i] == pytest.approx(wasserstein(x[i], y[i], p=2), rel=1e-9)
        assert scores.w1[i] == pytest.approx(wasserstein(x[i], y[i], p=1), rel=1e-9)
    assert scores.mean()["w2sq"] == pytest.approx(np.mean(scores.w2**2))
    x1, y1 = r.standard_normal((5, 64, 1)), r.standard_normal((5, 64, 1)) * 3
    s1 = per_condition_wasserstein(x1, y1)
    for i in range(5):
        assert s1.w2[i] == pytest.approx(wasserstein(x1[i], y1[i], p=2), rel=1e-9)
        assert s1.w1[i] == pytest.approx(wasserstein(x1[i], y1[i], p=1), rel=1e-9)


def test_w1_never_exceeds_w2():
    r = rng(7)
    s = per_condition_wasserstein(r.standard_normal((3, 60, 2)), r.standard_normal((3, 60, 2)) * 2)
    assert np.all(s.w1 <= s.w2 + 1e-9)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        wasserstein(np.array([[0.0], [np.nan]]), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="expected"):
        per_condition_wasserstein(np.zeros((2, 3, 2)), np.zeros((3, 3, 2)))

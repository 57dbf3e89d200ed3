"""Scoring against closed forms."""

import math

import numpy as np
import ot
import pytest
import torch

from hti_bench.scoring import gaussian_w2, per_condition_wasserstein, wasserstein


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


# --- exact fast path, parallel workers, methods, Sinkhorn -------------------------------------------


def emd_reference(x, y):
    """The scoring loop before the fast path: two ot.emd2 per condition (W₁, W₂)."""
    from hti_bench.scoring import NUM_ITER_MAX

    w1, w2 = [], []
    for i in range(x.shape[0]):
        sq = ot.dist(x[i], y[i], metric="sqeuclidean")
        w2.append(np.sqrt(max(float(ot.emd2([], [], sq, numItermax=NUM_ITER_MAX)), 0.0)))
        w1.append(max(float(ot.emd2([], [], np.sqrt(sq), numItermax=NUM_ITER_MAX)), 0.0))
    return np.array(w1), np.array(w2)


def assert_same(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "m, n, k, dim",
    [
        (3, 40, 40, 1),
        (3, 40, 57, 1),
        (4, 60, 60, 2),
        (3, 200, 200, 2),
        (3, 150, 150, 64),
        (3, 70, 45, 2),
        (2, 30, 80, 64),
    ],
)
def test_exact_path_equals_network_simplex(m, n, k, dim):
    # n = m below 192 samples goes through scipy's assignment solver, the rest through ot.emd2
    r = rng(10 + dim)
    x = r.standard_normal((m, n, dim))
    y = r.standard_normal((m, k, dim)) * r.uniform(0.5, 2.0, (m, 1, 1)) + r.normal(0, 1, (m, 1, dim))
    s = per_condition_wasserstein(x, y)
    w1, w2 = emd_reference(x, y)
    assert_same(s.w1, w1)
    assert_same(s.w2, w2)
    assert_same(per_condition_wasserstein(x, y, method="emd").w2, w2)


def test_exact_path_with_duplicate_and_identical_points():
    r = rng(11)
    base = r.standard_normal((2, 40, 2))
    x = np.repeat(base, 4, axis=1)  # every point four times: many tied optimal assignments
    y = np.concatenate([x[:, :80], r.standard_normal((2, 80, 2))], axis=1)
    s = per_condition_wasserstein(x, y)
    w1, w2 = emd_reference(x, y)
    assert_same(s.w1, w1)
    assert_same(s.w2, w2)
    same = per_condition_wasserstein(x, x[:, ::-1])
    np.testing.assert_allclose(same.w2, 0.0, atol=1e-7)
    np.testing.assert_allclose(same.w1, 0.0, atol=1e-7)
    # a constant cloud (every cost equal) and a single sample
    flat = np.zeros((1, 150, 2))
    assert_same(per_condition_wasserstein(flat, flat + 1.0).w2, [np.sqrt(2.0)])
    one = per_condition_wasserstein(np.ones((2, 1, 3)), np.zeros((2, 1, 3)))
    assert_same(one.w1, [np.sqrt(3.0)] * 2)


def test_parallel_workers_equal_serial():
    r = rng(12)
    x, y = r.standard_normal((9, 130, 3)), r.standard_normal((9, 130, 3)) + 0.4
    serial = per_condition_wasserstein(x, y, workers=1)
    parallel = per_condition_wasserstein(x, y, workers=2)
    np.testing.assert_array_equal(parallel.w1, serial.w1)
    np.testing.assert_array_equal(parallel.w2, serial.w2)
    xe, ye = r.standard_normal((5, 30, 2)), r.standard_normal((5, 41, 2))  # network simplex, n ≠ m
    np.testing.assert_array_equal(
        per_condition_wasserstein(xe, ye, workers=2).w2, per_condition_wasserstein(xe, ye, workers=1).w2
    )


def test_worker_count_is_automatic_and_capped():
    import os

    from hti_bench.scoring import resolve_workers

    cores = len(os.sched_getaffinity(0))
    assert resolve_workers(4, 50, 50) == 1  # small work: no pool
    assert resolve_workers(1000, 256, 256) == cores
    assert resolve_workers(1000, 256, 256, workers=10_000) == cores
    assert resolve_workers(3, 256, 256, workers=8) == min(3, cores)
    assert resolve_workers(1000, 256, 256, workers=1) == 1


def test_torch_input_and_positional_call_still_work():
    r = rng(13)
    x, y = torch.tensor(r.standard_normal((2, 20, 2))), torch.tensor(r.standard_normal((2, 20, 2)))
    s = per_condition_wasserstein(x, y)
    w1, w2 = emd_reference(x.numpy(), y.numpy())
    assert_same(s.w1, w1)
    assert_same(s.w2, w2)


def test_methods_are_checked():
    from hti_bench.errors import ConfigError

    x = np.zeros((2, 5, 2))
    with pytest.raises(
        ConfigError, match="Unknown value for method 'sinkorn'.*sinkhorn.*Available: auto, emd, exact, sinkhorn, sort"
    ):
        per_condition_wasserstein(x, x, method="sinkorn")
    with pytest.raises(ConfigError, match="one-dimensional"):
        per_condition_wasserstein(x, x, method="sort")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="workers"):
            per_condition_wasserstein(x, x, workers=bad)
    with pytest.raises(ConfigError, match="reg"):
        per_condition_wasserstein(x, x, method="sinkhorn", reg=0.0)
    r = rng(14)
    x1, y1 = r.standard_normal((3, 30, 1)), r.standard_normal((3, 30, 1))
    for method in ("auto", "exact", "sort", "emd"):
        s = per_condition_wasserstein(x1, y1, method=method)
        assert_same(s.w2, per_condition_wasserstein(x1, y1).w2)


def test_sinkhorn_is_close_to_exact_and_batched():
    r = rng(15)
    x = r.standard_normal((4, 64, 8))
    y = r.standard_normal((4, 64, 8)) * 1.3 + 0.5
    exact = per_condition_wasserstein(x, y)
    approx = per_condition_wasserstein(
        torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), method="sinkhorn"
    )
    assert isinstance(approx.w2, np.ndarray) and approx.w2.shape == (4,)
    np.testing.assert_allclose(approx.w2, exact.w2, rtol=0.02)
    np.testing.assert_allclose(approx.w1, exact.w1, rtol=0.05)
    # a smaller blur is closer
    sharp = per_condition_wasserstein(x, y, method="sinkhorn", reg=0.005, iters=150)
    assert np.abs(sharp.w2 - exact.w2).max() <= np.abs(approx.w2 - exact.w2).max() + 1e-6
    with pytest.raises(ValueError, match="NaN"):
        per_condition_wasserstein(np.full((1, 3, 2), np.nan), np.zeros((1, 3, 2)), method="sinkhorn")


def test_scoring_benchmark_quick(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    root = Path(__file__).resolve().parents[2]
    csv = tmp_path / "perf.csv"
    proc = subprocess.run(
        [
            sys.executable,
            str(root / "perf" / "scoring.py"),
            "--quick",
            "--threads",
            "1",
            "--repeats",
            "1",
            "--csv",
            str(csv),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = pd.read_csv(csv, keep_default_na=False)
    assert set(rows["benchmark"]) == {"scoring"}
    got = set(zip(rows["case"], rows["quantity"]))
    for case in ("12x64 D=2", "12x64 D=64"):
        for quantity in (
            "old_loop_seconds_w1_w2",
            "exact_seconds_w1_w2",
            "exact_workers",
            "speedup_exact_vs_old",
            "exact_max_rel_diff_vs_old",
            "old_ms_per_condition_emd2_w2",
            "sinkhorn_cpu_seconds_w1_w2_extrapolated",
            "sinkhorn_max_rel_error_w2",
        ):
            assert (case, quantity) in got
    assert ("12x64 D=1", "sort_seconds_w1_w2") in got
    assert ("scaling vs N (D=2)", "fitted_exponent") in got and ("scaling vs D (N=64)", "fitted_exponent") in got
    assert sum(c.startswith("scaling N=") for c, _ in got) == 6
    assert np.isfinite(rows["value"].astype(float)).all()
    exact = rows[rows["quantity"] == "exact_max_rel_diff_vs_old"]["value"].astype(float)
    assert (exact < 1e-9).all()
    goal = rows[(rows["case"] == "12x64 D=2") & (rows["quantity"] == "exact_seconds_w1_w2")]
    assert goal["goal"].item() == "≤ 2 s" and goal["meets_goal"].item() in ("True", "False")


def test_scoring_workers_are_capped_by_the_environment(monkeypatch):
    from hti_bench.scoring import resolve_workers

    monkeypatch.setenv("HTI_BENCH_SCORING_WORKERS", "1")
    assert resolve_workers(1000, 256, 256) == 1 and resolve_workers(1000, 256, 256, workers=8) == 1
    monkeypatch.delenv("HTI_BENCH_SCORING_WORKERS")
    assert resolve_workers(1000, 256, 256, workers=1) == 1


# ------------------------------------------------------------------------------------------ the panel


def test_panel_on_point_masses_matches_closed_forms():
    from hti_bench.scoring import score_panel

    a, b = np.array([0.0, 0.0]), np.array([3.0, 4.0])  # 5 apart
    x, y = np.tile(a, (2, 40, 1)), np.tile(b, (2, 50, 1))
    panel = score_panel(x, y, bandwidth=2.0)
    assert panel.energy == pytest.approx([10.0, 10.0], rel=1e-6)  # 2‖a − b‖
    assert panel.mmd == pytest.approx([math.sqrt(2 - 2 * math.exp(-25 / 8))] * 2, rel=1e-5)
    assert panel.w2 == pytest.approx([5.0, 5.0]) and panel.sw2 is None  # D = 2: no sliced W₂
    # Deterministic outputs: the reference's median distance is 0, so the bandwidth is the mean distance
    # of the pool (40 + 50 points: 2,000 of its 4,005 pairs are 5 apart).
    auto = score_panel(x, y)
    h = 5.0 * 2000 / 4005
    assert auto.mmd_bandwidth == pytest.approx([h, h], rel=1e-6)
    assert auto.mmd == pytest.approx([math.sqrt(2 - 2 * math.exp(-25 / (2 * h**2)))] * 2, rel=1e-5)
    same = score_panel(y, y)
    assert same.energy == pytest.approx([0, 0], abs=1e-6) and same.mmd == pytest.approx([0, 0], abs=1e-3)


def test_energy_distance_of_one_dimensional_gaussians():
    """2E|X−Y| − E|X−X′| − E|Y−Y′| for N(0, 1) and N(μ, 1): E|Z| of Z ~ N(m, s²) is
    s√(2/π) exp(−m²/2s²) + m(1 − 2Φ(−m/s))."""
    from scipy.stats import norm

    from hti_bench.scoring import score_panel

    def abs_mean(m, s):
        return s * math.sqrt(2 / math.pi) * math.exp(-(m**2) / (2 * s**2)) + m * (1 - 2 * norm.cdf(-m / s))

    mu = 1.0
    exact = 2 * abs_mean(mu, math.sqrt(2)) - 2 * abs_mean(0.0, math.sqrt(2))
    u = (np.arange(1500) + 0.5) / 1500  # quantile grids: no sampling error to speak of
    x, y = norm.ppf(u)[None, :, None], norm.ppf(u, mu)[None, :, None]
    assert score_panel(x, y).energy[0] == pytest.approx(exact, rel=5e-3)


def test_mmd_of_one_dimensional_gaussians_with_a_fixed_bandwidth():
    """MMD² of N(0, s²) and N(μ, s²) under exp(−d²/2h²): 2h/√(h² + 2s²) · (1 − exp(−μ²/2(h² + 2s²)))."""
    from scipy.stats import norm

    from hti_bench.scoring import score_panel

    mu, s, h = 0.8, 1.0, 0.7
    exact = math.sqrt(2 * h / math.sqrt(h**2 + 2 * s**2) * (1 - math.exp(-(mu**2) / (2 * (h**2 + 2 * s**2)))))
    u = (np.arange(1500) + 0.5) / 1500
    x, y = norm.ppf(u, 0, s)[None, :, None], norm.ppf(u, mu, s)[None, :, None]
    assert score_panel(x, y, bandwidth=h).mmd[0] == pytest.approx(exact, rel=5e-3)


def test_median_heuristic_uses_the_reference_samples():
    from hti_bench.scoring import score_panel

    r = rng(11)
    x, y = r.standard_normal((3, 200, 2)) * 5, r.standard_normal((3, 200, 2))
    h = score_panel(x, y).mmd_bandwidth
    # The median distance of two N(0, I₂) points is √(2 · 2 ln 2) ≈ 1.665 (a Rayleigh median, scale √2).
    assert h == pytest.approx([math.sqrt(4 * math.log(2))] * 3, rel=0.1)


def test_sliced_w2_of_a_shift_and_of_isotropic_gaussians():
    from hti_bench.scoring import SLICES, score_panel, sliced_w2

    r = rng(12)
    dim = 16
    x = r.standard_normal((2, 300, dim))
    c = np.linspace(-1, 1, dim)
    theta = np.random.default_rng(0).normal(size=(dim, SLICES))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    # Each projection of a shifted copy is shifted by θ·c, exactly.
    assert sliced_w2(x, x + c) == pytest.approx([math.sqrt(np.mean((c @ theta) ** 2))] * 2, rel=1e-9)
    # Over directions uniform on the sphere, E(θ·c)² = ‖c‖²/D.
    assert sliced_w2(x, x + c)[0] == pytest.approx(np.linalg.norm(c) / math.sqrt(dim), rel=0.15)
    panel = score_panel(x, x + c)
    assert panel.sw2 is not None and panel.mean()["sw2"] == pytest.approx(float(sliced_w2(x, x + c).mean()))


def test_equal_size_sort_path_equals_pots_quantile_path():
    # equal sample sizes take a plain sort; unequal ones POT's wasserstein_1d: both must agree
    import ot

    from hti_bench.scoring import sliced_w2

    r = rng(7)
    x, y = r.standard_normal((4, 50, 1)), r.standard_normal((4, 50, 1)) * 2 + 0.5
    s = per_condition_wasserstein(x, y)
    assert_same(s.w1, ot.wasserstein_1d(x[:, :, 0].T, y[:, :, 0].T, p=1))
    assert_same(s.w2**2, ot.wasserstein_1d(x[:, :, 0].T, y[:, :, 0].T, p=2))
    x, y = r.standard_normal((3, 40, 12)), r.standard_normal((3, 40, 12)) + 1.0
    y_plus = np.concatenate([y, y], axis=1)  # the same measure with every point twice: the other path
    np.testing.assert_allclose(sliced_w2(x, y), sliced_w2(x, y_plus), rtol=1e-9)

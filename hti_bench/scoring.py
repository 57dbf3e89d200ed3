"""The one scoring implementation: per-condition Wasserstein distances, on POT and scipy.

For each condition x, the surrogate's n samples and the held-out network's m samples are two uniform
empirical measures; W_p between them is an exact optimal-transport problem: a sort in one dimension
(``ot.wasserstein_1d``, batched over conditions), an assignment problem when n = m below a few hundred
samples (scipy's ``linear_sum_assignment``), POT's network simplex (``ot.emd2``) otherwise, in
parallel processes over conditions. An approximate batched entropic solver (``method="sinkhorn"``, torch,
GPU-capable) is there for large runs. Scores are averaged over conditions. W₂² is reported beside
W₂ because the HTI paper's tables use it (its code calls ``ot.emd2(a, b, ot.dist(P, Q))``, and
``ot.dist`` defaults to the squared Euclidean cost).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# POT's default (1e5) stops early from about 3,000 points, returning a slightly wrong value.
NUM_ITER_MAX = 10_000_000


def _as_numpy(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float64)


def _check_pair(x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected sample sets (n, D) and (m, D), got {x.shape} and {y.shape}")
    if x.shape[0] == 0 or y.shape[0] == 0:
        raise ValueError("sample sets must not be empty")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("sample sets contain NaN or inf")


def wasserstein(x: Tensor | np.ndarray, y: Tensor | np.ndarray, p: int = 2) -> float:
    """W_p between the uniform empirical measures on ``x`` (n, D) and ``y`` (m, D); rooted.

    Exact for every p ≥ 1: a sort in one dimension, the network simplex otherwise.
    """
    import ot

    x, y = _as_numpy(x), _as_numpy(y)
    if x.ndim == 1:
        x, y = x[:, None], y[:, None]
    _check_pair(x, y)
    if p < 1:
        raise ValueError(f"p must be ≥ 1, got {p}")
    if x.shape[1] == 1:
        value = float(ot.wasserstein_1d(x[:, 0], y[:, 0], p=p))
    else:
        cost = ot.dist(x, y, metric="euclidean") ** p
        value = float(ot.emd2([], [], cost, numItermax=NUM_ITER_MAX))
    return max(value, 0.0) ** (1.0 / p)


@dataclass(frozen=True)
class ConditionScores:
    """Per-condition distances, arrays of shape (M,); the kernel and sliced ones only from
    :func:`score_panel` (None otherwise; ``sw2`` also None for D ≤ :data:`SLICED_ABOVE`)."""

    w1: np.ndarray
    w2: np.ndarray
    energy: np.ndarray | None = None
    mmd: np.ndarray | None = None
    sw2: np.ndarray | None = None
    mmd_bandwidth: np.ndarray | None = None

    @property
    def w2sq(self) -> np.ndarray:
        return self.w2**2

    def mean(self) -> dict[str, float]:
        """Averages over conditions: ``w1``, ``w2`` (mean of per-condition W₂), ``w2sq`` (mean of W₂²),
        and, when computed, ``energy``, ``mmd``, ``sw2`` and ``mmd_bandwidth``."""
        out = {"w1": float(self.w1.mean()), "w2": float(self.w2.mean()), "w2sq": float(self.w2sq.mean())}
        for key in ("energy", "mmd", "sw2", "mmd_bandwidth"):
            value = getattr(self, key)
            if value is not None:
                out[key] = float(np.mean(value))
        return out


#: The metric panel's names, in the order the leaderboard shows them (``mmd_bandwidth`` is stated, not a score).
PANEL = ("w1", "w2", "w2sq", "energy", "mmd", "sw2")

#: Sliced W₂ is reported for outputs of more than this many dimensions (where exact W₂ from a few
#: hundred samples is dominated by its finite-sample bias).
SLICED_ABOVE = 8

#: Random directions of sliced W₂: fixed (seed 0), so every surrogate is sliced the same way.
SLICES = 128

#: Conditions per batch of the kernel metrics (memory: 3 · chunk · n · m doubles).
_KERNEL_CHUNK = 64


def score_panel(
    samples: Tensor | np.ndarray,
    reference: Tensor | np.ndarray,
    *,
    method: str = "auto",
    workers: int | None = None,
    bandwidth: float | None = None,
) -> ConditionScores:
    """The metric panel for each condition between ``samples`` (M, n, D) and ``reference`` (M, m, D).

    - W₁, W₂ (and W₂²): exact, :func:`per_condition_wasserstein` with ``method`` and ``workers``.
    - ``energy``: the energy distance of the two empirical measures (Székely & Rizzo),
      2 E‖X − Y‖ − E‖X − X′‖ − E‖Y − Y′‖ with every pair counted (a V-statistic, ≥ 0): 2‖a − b‖
      for point masses at a and b.
    - ``mmd``: the Gaussian-kernel maximum mean discrepancy, √MMD² of the empirical measures (every
      pair counted, ≥ 0), kernel exp(−‖x − y‖² / 2h²). ``h`` is ``bandwidth`` if given, else per
      condition the median heuristic on the *reference* samples (the median distance between two of
      them, so every surrogate is scored with the same kernel), over the pairs among the first
      :data:`_MEDIAN_SAMPLES`; where that median is 0 (deterministic outputs) the mean distance between
      two of the first :data:`_MEDIAN_SAMPLES` / 2 of each set pooled (a median of a pool of two point
      masses is still 0), and 1 if that is 0 too. The ``h`` used is returned as ``mmd_bandwidth``.
    - ``sw2``: sliced W₂ for D > :data:`SLICED_ABOVE`: √(mean over :data:`SLICES` fixed random unit
      directions θ of W₂²(θ·X, θ·Y)), each one-dimensional W₂ exact (sorted samples).
    """
    x = _as_numpy(samples)
    y = _as_numpy(reference)
    _check_batch(x.shape, y.shape)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("samples contain NaN or inf")
    base = per_condition_wasserstein(x, y, method=method, workers=workers)
    energy, mmd, h = _kernel_metrics(x, y, bandwidth)
    sw2 = sliced_w2(x, y) if x.shape[2] > SLICED_ABOVE else None
    return ConditionScores(w1=base.w1, w2=base.w2, energy=energy, mmd=mmd, sw2=sw2, mmd_bandwidth=h)


def _kernel_metrics(x: np.ndarray, y: np.ndarray, bandwidth: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # float32 and direct differences (not the |x|² + |y|² − 2x·y expansion, which cancels for nearby
    # points): each value is a mean over n·m pairs, far inside float32's precision.
    energy, mmd, width = [], [], []
    direct = "donot_use_mm_for_euclid_dist"
    for start in range(0, x.shape[0], _KERNEL_CHUNK):
        xs = torch.from_numpy(x[start : start + _KERNEL_CHUNK]).float()
        ys = torch.from_numpy(y[start : start + _KERNEL_CHUNK]).float()
        dxy = torch.cdist(xs, ys, compute_mode=direct)
        dxx = torch.cdist(xs, xs, compute_mode=direct)
        dyy = torch.cdist(ys, ys, compute_mode=direct)
        energy.append((2 * dxy.mean((1, 2)) - dxx.mean((1, 2)) - dyy.mean((1, 2))).clamp_min(0))
        if bandwidth is not None:
            h = torch.full((xs.shape[0],), float(bandwidth))
        else:
            h = _median_distance(dyy)
            if bool((h <= 0).any()):
                half = _MEDIAN_SAMPLES // 2  # both sets in the pool, whatever their sizes
                both = torch.cat([xs[:, :half], ys[:, :half]], 1)
                pooled = _median_distance(torch.cdist(both, both, compute_mode=direct), mean=True)
                h = torch.where(h > 0, h, pooled)
                h = torch.where(h > 0, h, torch.ones_like(h))
        scale = (-0.5 / h**2).view(-1, 1, 1)

        def kernel_mean(d: Tensor) -> Tensor:
            return d.pow_(2).mul_(scale).exp_().mean((1, 2))  # in place: d is not needed again

        mmd.append((kernel_mean(dxx) + kernel_mean(dyy) - 2 * kernel_mean(dxy)).clamp_min(0).sqrt())
        width.append(h)
    return (torch.cat(energy).double().numpy(), torch.cat(mmd).double().numpy(), torch.cat(width).double().numpy())


#: The median heuristic looks at the pairs among the first this many samples (8,128 pairs at 128):
#: the median of a few thousand distances is as good a bandwidth as that of all of them.
_MEDIAN_SAMPLES = 128


def _median_distance(d: Tensor, mean: bool = False) -> Tensor:
    """Per batch entry of distance matrices (B, n, n): the median (or ``mean``) distance between two
    different points among the first :data:`_MEDIAN_SAMPLES` (0 for fewer than 2 points)."""
    n = min(d.shape[1], _MEDIAN_SAMPLES)
    if n < 2:
        return torch.zeros(d.shape[0])
    iu = torch.triu_indices(n, n, offset=1)
    pairs = d[:, iu[0], iu[1]]
    return pairs.mean(dim=1) if mean else pairs.median(dim=1).values


def sliced_w2(x: Tensor | np.ndarray, y: Tensor | np.ndarray, n_slices: int = SLICES) -> np.ndarray:
    """Sliced W₂ per condition between (M, n, D) and (M, m, D): √(mean over ``n_slices`` fixed random
    unit directions of the exact one-dimensional W₂² of the projections)."""
    import ot

    x, y = _as_numpy(x), _as_numpy(y)
    _check_batch(x.shape, y.shape)
    theta = np.random.default_rng(0).normal(size=(x.shape[2], int(n_slices)))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    px, py = x @ theta, y @ theta  # (M, n, L)
    m, n, k = x.shape[0], x.shape[1], y.shape[1]
    if n == k:
        # equal sizes: the monotone coupling matches the i-th smallest to the i-th smallest, ~10×
        # faster than the general quantile-function path (25.6 s → 2.6 s at 1,000 × 256, D = 64)
        w2sq = _equal_size_1d(px, py, p=2, axis=1).mean(axis=1)
    else:
        # wasserstein_1d is batched over trailing dimensions: (n, M·L) → (M·L,)
        u = px.transpose(1, 0, 2).reshape(n, -1)
        v = py.transpose(1, 0, 2).reshape(k, -1)
        w2sq = np.asarray(ot.wasserstein_1d(u, v, p=2), dtype=np.float64).reshape(m, -1).mean(axis=1)
    return np.sqrt(np.maximum(w2sq, 0.0))


def _equal_size_1d(x: np.ndarray, y: np.ndarray, p: int, axis: int) -> np.ndarray:
    """Exact one-dimensional W_p^p between equal-size uniform samples along ``axis``: the mean of
    |sorted x − sorted y|^p (the monotone coupling is optimal for every convex cost)."""
    d = np.abs(np.sort(x, axis=axis) - np.sort(y, axis=axis))
    return (d if p == 1 else d**p).mean(axis=axis)


#: ``method`` values of :func:`per_condition_wasserstein`.
METHODS = ("auto", "exact", "emd", "sort", "sinkhorn")

# Below this many samples scipy's assignment solver beats POT's network simplex; from here on the
# simplex wins (measured on 2 cores with scipy 1.17 and POT 0.9, W₁ + W₂ per condition, D = 2:
# 1.6 vs 1.7 ms at 128, 8.4 vs 7.0 ms at 256, 55 vs 36 ms at 512, 330 vs 145 ms at 1,000). A
# Sinkhorn warm start of the assignment solver, used before, lost at every size below 1,000
# (11.2 ms at 256). perf/scoring.py re-measures the exact path (docs/evidence/performance.md).
_ASSIGNMENT_BELOW_N = 192
# Estimated serial cost of the exact path per cost-matrix cell (W₁ and W₂ together), and the least
# estimated work that pays for forking a process pool (whose start-up is a fixed cost).
_SECONDS_PER_CELL = 6e-8
_MIN_PARALLEL_SECONDS = 0.25


def per_condition_wasserstein(
    samples: Tensor | np.ndarray,
    reference: Tensor | np.ndarray,
    *,
    method: str = "auto",
    workers: int | None = None,
    reg: float = 0.02,
    iters: int = 60,
) -> ConditionScores:
    """W₁ and W₂ for each condition between ``samples`` (M, n, D) and ``reference`` (M, m, D).

    ``method``:

    - ``"auto"`` (default): ``"sort"`` for D = 1, ``"exact"`` otherwise.
    - ``"exact"``: exact for every D. One dimension sorts. With n = m (uniform weights) the OT
      problem is an assignment problem, solved exactly by scipy's ``linear_sum_assignment`` below
      :data:`_ASSIGNMENT_BELOW_N` samples, where it is the faster solver; otherwise, and with
      n ≠ m, POT's network simplex (``ot.emd2``).
    - ``"emd"``: POT's network simplex for every condition and every D (the reference solver).
    - ``"sort"``: the batched 1-D sort (sorted samples matched in order for n = m,
      ``ot.wasserstein_1d`` otherwise); exact, and only valid, for D = 1.
    - ``"sinkhorn"``: approximate, batched over all conditions at once in torch, on the device the
      tensors are on (CUDA included): log-domain entropic OT in float32, ε annealed down to a blur
      of ``reg`` × the typical distance over ``iters`` iterations. The score is the transport cost
      of the entropic plan, which is biased: a blurred plan moves mass farther than needed (an
      over-estimate, growing with ``reg``) and, when the iterations stop before convergence, is
      not exactly feasible (either sign). Measured at the defaults (``perf/scoring.py``,
      256 samples): largest relative errors ~6 % for W₂ and ~14 % for W₁ in 2-D, where the
      distance between the two sets is small next to their spread; < 0.1 % for W₂ and ~3 % for
      W₁ in 64-D. On CPU it is far slower than the exact path.

    ``workers``: processes for the exact and emd methods (forked; they hold the GIL otherwise).
    None picks automatically: one when the work is small (under ~0.25 s), else every core this
    process may run on (``os.sched_getaffinity``). Larger values are capped at that many cores.
    Results do not depend on it.
    """
    from hti_bench.errors import ConfigError, check_choice

    check_choice("method", method, METHODS)
    if workers is not None and (not isinstance(workers, (int, np.integer)) or isinstance(workers, bool) or workers < 1):
        raise ConfigError(f"workers must be a positive integer or None, got {workers!r}")
    if method == "sinkhorn":
        return _sinkhorn_scores(samples, reference, reg=reg, iters=iters)
    x, y = _as_numpy(samples), _as_numpy(reference)
    _check_batch(x.shape, y.shape)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("samples contain NaN or inf")
    if method == "sort" and x.shape[2] != 1:
        raise ConfigError(
            f"method 'sort' is exact only for one-dimensional outputs, got D = {x.shape[2]}; use 'exact' (or 'auto')"
        )
    if x.shape[2] == 1 and method != "emd":
        return _sorted_scores(x, y)
    m, n, k = x.shape[0], x.shape[1], y.shape[1]
    solver = "emd" if method == "emd" or n != k or n >= _ASSIGNMENT_BELOW_N else "assignment"
    w1, w2sq = _run_conditions(x, y, solver, resolve_workers(m, n, k, workers))
    return ConditionScores(w1=np.maximum(w1, 0.0), w2=np.sqrt(np.maximum(w2sq, 0.0)))


def resolve_workers(conditions: int, n: int, m: int, workers: int | None = None) -> int:
    """Processes the exact path uses for ``conditions`` problems of n × m samples.

    None: one when the estimated serial work is under ~0.25 s (forking a pool has a fixed cost that
    small work does not repay), else every core this process may run on. At most that many cores,
    and at most one per condition.
    """
    cores = _available_cores()
    if workers is None:
        procs = cores if conditions * n * m * _SECONDS_PER_CELL >= _MIN_PARALLEL_SECONDS else 1
    else:
        procs = int(workers)
    return max(1, min(procs, cores, conditions))


def _check_batch(xs: tuple, ys: tuple) -> None:
    if len(xs) != 3 or len(ys) != 3 or xs[0] != ys[0] or xs[2] != ys[2]:
        raise ValueError(f"expected (M, n, D) and (M, m, D) with equal M and D, got {tuple(xs)} and {tuple(ys)}")
    if xs[1] == 0 or ys[1] == 0:
        raise ValueError("sample sets must not be empty")


def _sorted_scores(x: np.ndarray, y: np.ndarray) -> ConditionScores:
    import ot

    if x.shape[1] == y.shape[1]:
        w1 = _equal_size_1d(x[:, :, 0], y[:, :, 0], p=1, axis=1)
        w2sq = _equal_size_1d(x[:, :, 0], y[:, :, 0], p=2, axis=1)
        return ConditionScores(w1=np.maximum(w1, 0.0), w2=np.sqrt(np.maximum(w2sq, 0.0)))
    # wasserstein_1d is batched over trailing dimensions: (n, M) → (M,)
    u, v = x[:, :, 0].T, y[:, :, 0].T
    w1 = np.asarray(ot.wasserstein_1d(u, v, p=1), dtype=np.float64)
    w2 = np.sqrt(np.maximum(np.asarray(ot.wasserstein_1d(u, v, p=2), dtype=np.float64), 0.0))
    return ConditionScores(w1=np.maximum(w1, 0.0), w2=w2)


def _available_cores() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # `hti-bench run --jobs N` workers set this to their share of the cores, so N workers scoring at
    # once do not each fork a pool the size of the machine.
    cap = os.environ.get("HTI_BENCH_SCORING_WORKERS", "")
    return max(1, min(cores, int(cap)) if cap.isdigit() and int(cap) > 0 else cores)


def _sq_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared euclidean cost matrix, the same formula (and rounding) as ``ot.dist``'s default."""
    c = x @ y.T
    c *= -2.0
    c += np.einsum("ij,ij->i", x, x)[:, None]
    c += np.einsum("ij,ij->i", y, y)[None, :]
    return np.maximum(c, 0.0, out=c)


def _assignment_cost(cost: np.ndarray) -> float:
    """Exact optimal transport cost between two uniform measures of equal size n: min over
    permutations of the mean matched cost (Birkhoff: some optimal plan is a permutation)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def _emd_cost(cost: np.ndarray) -> float:
    import ot

    return float(ot.emd2([], [], cost, numItermax=NUM_ITER_MAX))


def _solve_block(x: np.ndarray, y: np.ndarray, solver: str, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """(W₁, W₂²) of conditions start…stop-1, one process, BLAS on one thread."""
    solve = _assignment_cost if solver == "assignment" else _emd_cost
    w1, w2sq = np.empty(stop - start), np.empty(stop - start)
    with _one_blas_thread():
        for i in range(start, stop):
            sq = _sq_distances(x[i], y[i])
            w2sq[i - start] = solve(sq)
            w1[i - start] = solve(np.sqrt(sq))
    return w1, w2sq


_BLAS_CONTROLLER: list = []  # threadpoolctl's controller, found once (scanning the loaded libraries is not free)


def _one_blas_thread():
    """Context limiting BLAS to one thread: the cost matrices are small matrix products, which a
    multi-threaded BLAS slows down by more than an order of magnitude when the cores are busy, and
    the parallelism is across conditions anyway. A no-op without threadpoolctl (a scikit-learn
    dependency)."""
    import contextlib

    if not _BLAS_CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS_CONTROLLER.append(ThreadpoolController())
        except Exception:  # noqa: BLE001 - optional speed-up only
            _BLAS_CONTROLLER.append(None)
    controller = _BLAS_CONTROLLER[0]
    return controller.limit(limits=1, user_api="blas") if controller is not None else contextlib.nullcontext()


# Inputs of the forked workers, by job id: set before the pool forks, so the children inherit the
# arrays without pickling them, removed when the job ends.
_JOBS: dict[int, tuple[np.ndarray, np.ndarray, str]] = {}
_JOB_IDS = itertools.count()
_JOBS_LOCK = threading.Lock()


def _forked_block(args: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    job, start, stop = args
    x, y, solver = _JOBS[job]
    return _solve_block(x, y, solver, start, stop)


def _run_conditions(x: np.ndarray, y: np.ndarray, solver: str, procs: int) -> tuple[np.ndarray, np.ndarray]:
    """(W₁, W₂²) for every condition, on ``procs`` processes.

    POT's network simplex and scipy's assignment solver hold the GIL (measured: two threads take
    as long as one), so threads cannot help; forked processes can. Without fork (or inside a
    daemonic process, which may not have children) it runs serially.
    """
    import multiprocessing as mp

    m = x.shape[0]
    if procs > 1 and "fork" in mp.get_all_start_methods() and not mp.current_process().daemon:
        with _JOBS_LOCK:
            job = next(_JOB_IDS)
            _JOBS[job] = (x, y, solver)
        try:
            # a few chunks per process balance uneven conditions; contiguous, so results concatenate
            bounds = np.linspace(0, m, min(m, 4 * procs) + 1).astype(int)
            tasks = [(job, int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
            try:
                pool = mp.get_context("fork").Pool(procs)
            except OSError:
                pool = None  # could not fork (memory, process limits): run serially below
            if pool is not None:
                with pool:
                    parts = pool.map(_forked_block, tasks, chunksize=1)
                return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        finally:
            with _JOBS_LOCK:
                _JOBS.pop(job, None)
    return _solve_block(x, y, solver, 0, m)


def _sinkhorn_scores(
    samples: Tensor | np.ndarray, reference: Tensor | np.ndarray, *, reg: float, iters: int
) -> ConditionScores:
    from hti_bench.errors import ConfigError

    if not (isinstance(reg, (int, float)) and math.isfinite(reg) and reg > 0):
        raise ConfigError(f"reg must be a positive number, got {reg!r}")
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 1:
        raise ConfigError(f"iters must be a positive integer, got {iters!r}")
    x = samples if isinstance(samples, Tensor) else torch.as_tensor(np.asarray(samples))
    y = reference if isinstance(reference, Tensor) else torch.as_tensor(np.asarray(reference))
    _check_batch(tuple(x.shape), tuple(y.shape))
    # float32: the entropic bias dwarfs its rounding, and it is the fast type on GPUs
    x, y = x.detach().float(), y.detach().to(device=x.device, dtype=torch.float32)
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("samples contain NaN or inf")
    m, n, k = x.shape[0], x.shape[1], y.shape[1]
    # conditions per batch: ~16 M cost entries, so the temporaries stay within a few hundred MB
    step = max(1, (1 << 24) // (n * k))
    w1, w2sq = [], []
    with torch.no_grad():
        for a in range(0, m, step):
            xa, ya = x[a : a + step], y[a : a + step]
            sq = (
                xa.square().sum(-1)[:, :, None] + ya.square().sum(-1)[:, None, :] - 2.0 * xa @ ya.transpose(1, 2)
            ).clamp_min_(0.0)
            w2sq.append(_entropic_cost(sq, 2, reg, iters))
            w1.append(_entropic_cost(sq.sqrt_(), 1, reg, iters))
    w1_np = torch.cat(w1).double().cpu().numpy()
    w2_np = torch.cat(w2sq).double().clamp_min(0.0).sqrt().cpu().numpy()
    return ConditionScores(w1=np.maximum(w1_np, 0.0), w2=w2_np)


def _entropic_cost(cost: Tensor, p: int, reg: float, iters: int) -> Tensor:
    """⟨P_ε, C⟩ per batch item for the entropic plan P_ε between uniform measures (log domain).

    The final ε is ``(reg × typical distance)^p`` (typical distance: the mean cost's p-th root),
    i.e. ``reg`` is the blur as a fraction of the distances. ε anneals geometrically from the
    largest cost to it over the first 70 % of ``iters`` (ε-scaling, as in geomloss) and stays there
    for the rest; each iteration updates both potentials, the last one making the column marginals
    exact.
    """
    b, n, k = cost.shape
    tiny = torch.finfo(cost.dtype).tiny
    final = (cost.mean(dim=(1, 2)) * reg**p).clamp_min(tiny)[:, None, None]
    start = cost.amax(dim=(1, 2)).clamp_min(tiny)[:, None, None].maximum(final)
    log_a, log_b = -math.log(n), -math.log(k)
    f = cost.new_zeros(b, n, 1)
    g = cost.new_zeros(b, 1, k)
    anneal = max(1, int(0.7 * iters))
    steps = list(np.linspace(0.0, 1.0, anneal)) if anneal > 1 else [1.0]
    for t in steps + [1.0] * (iters - anneal):
        eps = start * (final / start) ** float(t)
        f = -eps * torch.logsumexp((g - cost) / eps + log_b, dim=2, keepdim=True)
        g = -eps * torch.logsumexp((f - cost) / eps + log_a, dim=1, keepdim=True)
    plan = torch.exp((f + g - cost) / eps + (log_a + log_b))
    return (plan * cost).sum(dim=(1, 2))


def gaussian_w2(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> float:
    """Closed-form W₂ between two Gaussians (Bures metric), for tests and sanity checks."""
    m1, m2 = torch.as_tensor(mean1, dtype=torch.float64), torch.as_tensor(mean2, dtype=torch.float64)
    c1, c2 = torch.as_tensor(cov1, dtype=torch.float64), torch.as_tensor(cov2, dtype=torch.float64)

    def sqrtm(a: Tensor) -> Tensor:
        vals, vecs = torch.linalg.eigh(a)
        return vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T

    s1 = sqrtm(c1)
    cross = sqrtm(s1 @ c2 @ s1)
    value = ((m1 - m2) ** 2).sum() + torch.trace(c1 + c2 - 2 * cross)
    return float(value.clamp_min(0).sqrt())

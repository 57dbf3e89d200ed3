"""Shared machinery of the flow-matching and regression baselines.

Used by ``baselines/cfm.py`` and ``baselines/mfm.py`` (flow matching between anchors), ``baselines/direct.py``
(the paper's direct regression) and ``baselines/lambda_flow.py`` (a generative model conditioned on
λ). Plugin authors building on flows can use it too:

- :class:`FlowSurrogate`: the surrogates' common frame: their training parameters, ``fit`` (checks,
  device, seeded generator, :class:`FlowData`) and the training loop; :class:`OdeFlowSurrogate` adds
  the ODE solver's parameters, :class:`SegmentFlowSurrogate` the flow matching between anchors.
- :class:`FlowData`: the anchor samples standardised by one global scale (so Euclidean distances, and
  hence OT couplings, keep their geometry), the conditions encoded for FiLM, the anchors' positions on
  the task's clock rescaled to [0, 1], pairs of samples *within one condition* under a coupling, and
  the anchor a query starts from. It is the one place that tells one hyperparameter (a line of
  anchors) from several (points of a box): every other line-or-plane choice reads ``data.line``.
- :class:`TimeMLP`: a FiLM-conditioned MLP of (y, features of one or more times).
- :class:`Segments`: the anchor pairs a flow between anchors trains on (consecutive anchors, or the
  Delaunay edges with several hyperparameters), its batches, its matching loss, and the flow from an
  anchor to a query, interval by interval on the line or along a straight segment on the plane.
- :func:`conditional_path`: a torchcfm matcher's point and velocity on the path between paired samples.
- :func:`integrate`: a torchdiffeq ODE solve with explicit tolerances (adaptive) or a fixed step.
- :func:`make_matcher`: torchcfm's probability paths by name.

Couplings never pair samples of different conditions: a network at another λ is still queried at the
same x, so moving mass across x would learn a path no network follows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from hti_bench.anchors import AnchorSet
from hti_bench.errors import ConfigError, check_choice, check_positive
from hti_bench.surrogate import Surrogate
from hti_bench.toolkit import training
from hti_bench.toolkit.nets import (
    ConditionEncoder,
    FiLMMLP,
    SharedParameters,
    check_device,
    check_hidden,
    resolve_device,
    seeded,
)
from hti_bench.toolkit.transport import exact_coupling

#: How anchor-k samples are paired with anchor-(k+1) samples of the same condition.
#: ``exact``: per-condition exact OT for the squared Euclidean cost (POT; a sort in 1-D), computed once.
#: ``independent``: a fresh random partner of the same condition at every draw.
#: ``row``: the sample with the same row index, as the HTI authors' CFM and Direct baselines did. It is
#: meaningful only when rows share their noise across anchors; the suite's own tasks draw each anchor
#: with its own seed, so there it behaves like ``independent``.
COUPLINGS = ("exact", "independent", "row")

#: ODE solvers: adaptive ones use ``atol``/``rtol``, fixed-grid ones ``step_size`` (in [0, 1] time units).
ADAPTIVE_SOLVERS = ("dopri5", "tsit5", "bosh3")
FIXED_SOLVERS = ("rk4", "midpoint", "euler")
SOLVERS = ADAPTIVE_SOLVERS + FIXED_SOLVERS

#: torchcfm probability paths. ``exact-ot`` and ``sb`` re-pair each condition's minibatch with the
#: matcher's own OT plan (exact, or entropic with ε = 2σ² for the Schrödinger bridge).
MATCHERS = ("plain", "exact-ot", "sb")

N_FREQUENCIES = 3

#: How the flow and regression baselines train (:func:`hti_bench.toolkit.training.train_loop`):
#: AdamW with a little weight decay, gradients clipped at norm 1 (regression on noisy targets).
FLOW_TRAINING = {"clip": 1.0, "weight_decay": 1e-5, "decoupled": True}


def make_matcher(name: str, sigma: float):
    """The torchcfm flow matcher called ``name`` ('plain', 'exact-ot' or 'sb') with noise ``sigma``."""
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
        SchrodingerBridgeConditionalFlowMatcher,
    )

    check_choice("matcher", name, MATCHERS)
    if sigma < 0:
        raise ConfigError(f"sigma must be ≥ 0, got {sigma}")
    if name == "sb":
        if sigma <= 0:
            raise ConfigError("matcher 'sb' (Schrödinger bridge) needs sigma > 0; its entropic OT uses ε = 2σ²")
        return SchrodingerBridgeConditionalFlowMatcher(sigma=sigma, ot_method="exact")
    if name == "exact-ot":
        return ExactOptimalTransportConditionalFlowMatcher(sigma=sigma)
    return ConditionalFlowMatcher(sigma=sigma)


def conditional_path(matcher: Any, y0: Tensor, y1: Tensor, s: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """The point at fraction ``s`` of ``matcher``'s path from y0 to y1 (noise ``eps``) and its velocity
    d/ds there."""
    ys = matcher.sample_xt(y0, y1, s, eps)
    return ys, matcher.compute_conditional_flow(y0, y1, s, ys)


def draw_fractions(y0: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """A path fraction s ~ U[0, 1] per pair and the path noise ε ~ N(0, I), for pairs starting at y0."""
    s = torch.rand(y0.shape[0], generator=gen).to(y0.device)
    return s, torch.randn(y0.shape, generator=gen).to(y0.device)


def time_features(t: Tensor, fourier: bool) -> Tensor:
    """(B, 1) raw time, or (B, 1 + 2F) with its sin/cos at F frequencies.

    Fourier features let one field bend differently within each anchor interval, which suits a time
    that is sampled continuously in training (flow-matching time). A time seen only at the anchors
    (Direct's target time, the λ of a generative model) stays raw: between two training values an MLP
    of raw time interpolates smoothly, whereas sin/cos features let it do anything there.
    """
    t = t.reshape(-1, 1)
    if not fourier:
        return t
    freqs = math.pi * torch.arange(1, N_FREQUENCIES + 1, device=t.device, dtype=t.dtype)
    return torch.cat([t, torch.sin(t * freqs), torch.cos(t * freqs)], dim=-1)


class TimeMLP(nn.Module):
    """f(y, t_1..t_j, x): an MLP of y and time features, FiLM-conditioned on x (SiLU activations).

    ``fourier[i]`` says whether time i gets Fourier features (see :func:`time_features`); the output has
    ``out_dim`` entries (default: y's dimension).
    """

    def __init__(
        self,
        dim: int,
        fourier: Sequence[bool],
        hidden: Sequence[int],
        cond_dim: int,
        n_classes: int | None,
        residual: bool = False,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        if residual and out_dim not in (None, dim):
            raise ValueError(f"a residual TimeMLP maps y to y's dimension {dim}, not {out_dim}")
        self.residual = residual
        self.fourier = tuple(bool(f) for f in fourier)
        n_feats = sum(1 + 2 * N_FREQUENCIES if f else 1 for f in self.fourier)
        self.net = FiLMMLP(dim + n_feats, out_dim or dim, hidden, cond_dim, n_classes, act=nn.SiLU, zero_last=residual)

    def forward(self, y: Tensor, x: Tensor, *times: Tensor) -> Tensor:
        feats = [
            time_features(torch.as_tensor(t, dtype=y.dtype, device=y.device).expand(y.shape[0]), f)
            for t, f in zip(times, self.fourier, strict=True)
        ]
        out = self.net(torch.cat([y, *feats], dim=-1), x)
        return y + out if self.residual else out


class FlowData:
    """Anchor samples prepared for flow and regression training, on ``device``.

    Attributes
    ----------
    y : Tensor (K, M, n, D)
        Standardised anchor samples: (samples − mean) / scale, one scale for all dimensions.
    x : Tensor (M, C')
        Encoded conditions (see :class:`~hti_bench.toolkit.nets.ConditionEncoder`).
    line : bool
        Whether λ is one hyperparameter: its anchors lie on one clock, in order, and ``tau`` is a number
        per anchor; else they are points of a box, ``tau`` a row of d coordinates per anchor.
    tau : Tensor (K,), or (K, d) for d > 1 hyperparameters
        Anchor positions on the task's clock, rescaled so the first anchor is 0 and the last is 1
        (for d > 1: in unit clock time, each axis rescaled so the anchors' box is [0, 1]).
    """

    def __init__(self, anchors: AnchorSet, device: torch.device) -> None:
        self.anchors = anchors
        self.device = device
        self.line = anchors.d == 1
        k, m, n, d = anchors.samples.shape
        self.shape = (k, m, n, d)
        pooled = anchors.samples.reshape(-1, d).float()
        self.mean = pooled.mean(0)
        self.scale = pooled.std(0).mean().clamp_min(1e-6) if pooled.shape[0] > 1 else torch.tensor(1.0)
        if not float(self.scale) > 1e-6:
            self.scale = torch.tensor(1.0)  # every output identical: nothing to standardise
        self.encoder = ConditionEncoder(anchors.conditions, anchors.categorical)
        self.y = ((anchors.samples.float() - self.mean) / self.scale).to(device)
        self.x = self.encoder(anchors.conditions).to(device)
        if self.line:
            times = torch.tensor(anchors.times, dtype=torch.float64)
            self.tau = ((times - times[0]) / (times[-1] - times[0])).float().to(device)
        else:
            points = anchors.unit_points.double()
            self._box = (points.min(0).values, points.max(0).values)
            self.tau = self._in_box(points).float().to(device)
        self._partners: dict[tuple[int, int, str], Tensor] = {}

    # ------------------------------------------------------------------ units

    def standardise(self, y: Tensor) -> Tensor:
        return ((y.float() - self.mean) / self.scale).to(self.device)

    def restore(self, y: Tensor) -> Tensor:
        return y.cpu() * self.scale + self.mean

    def _in_box(self, points: Tensor) -> Tensor:
        lo, hi = self._box
        return (points - lo) / (hi - lo).clamp_min(1e-12)

    def tau_of(self, lam: float | tuple[float, ...]) -> float | Tensor:
        """λ → its position on the rescaled clock (0 at the first anchor, 1 at the last); for d > 1, a
        (d,) tensor in the anchors' box rescaled to [0, 1]²."""
        space = self.anchors.space
        lam = space.check(lam)
        if not self.line:
            return self._in_box(self.anchors.unit(lam).double()).float().to(self.device)
        times = self.anchors.times
        return (space.axes[0].to_time(lam[0]) - times[0]) / (times[-1] - times[0])

    def clock_inputs(self, tau: Tensor) -> tuple[Tensor, ...]:
        """A clock position as a network's time inputs: itself for one hyperparameter, one input per
        axis (the last dimension of ``tau``) for several."""
        return (tau,) if self.line else tuple(tau.unbind(-1))

    def neighbours(self) -> list[tuple[int, int]]:
        """The anchor pairs a model between anchors learns along: the consecutive anchors (k, k+1) on
        the line, both directions of every edge of the anchors' Delaunay triangulation on the plane."""
        if self.line:
            return [(i, i + 1) for i in range(self.shape[0] - 1)]
        return delaunay_edges(self.anchors.unit_points)

    def start(self, lam: float | tuple[float, ...], how: str = "lower") -> int:
        """The anchor a query at λ starts from: ``first``; the ``lower`` end of λ's interval or the
        ``nearest`` of its two ends on the clock; on the plane, the nearest anchor for both. Raises
        ``ValueError`` outside the anchors' range (their hull on the plane): these models interpolate."""
        anchors = self.anchors
        lam = anchors.space.check(lam)
        if self.line:
            k, s = anchors.locate(lam[0])
            return {"lower": k, "first": 0, "nearest": k if s <= 0.5 else k + 1}[how]
        anchors.simplex(lam)  # raises outside the hull
        return 0 if how == "first" else anchors.nearest(lam)

    def network(self, fourier: Sequence[bool], hidden: Sequence[int], **kwargs: Any) -> TimeMLP:
        """A :class:`TimeMLP` of y and ``len(fourier)`` times, FiLM-conditioned on the encoded x, on the
        device (``kwargs``: ``residual``, ``out_dim``)."""
        dim = self.shape[3]
        hidden = tuple(int(h) for h in hidden)
        return TimeMLP(dim, fourier, hidden, self.x.shape[1], self.encoder.n_classes, **kwargs).to(self.device)

    # ------------------------------------------------------------------ pairing

    def partners(self, a: int, b: int, coupling: str) -> Tensor | None:
        """(M, n) index of each anchor-a sample's partner among anchor b's samples of the same condition.

        None for ``independent`` (partners are drawn afresh). Exact couplings are computed once, in
        the original output units, with POT.
        """
        check_choice("coupling", coupling, COUPLINGS)
        if coupling == "independent":
            return None
        key = (a, b, coupling)
        if key not in self._partners:
            _, m, n, _ = self.shape
            if coupling == "row" or a == b:
                perm = torch.arange(n).expand(m, n).clone()
            else:
                perm = torch.stack(
                    [self._permutation(self.anchors.samples[a, i], self.anchors.samples[b, i]) for i in range(m)]
                )
            self._partners[key] = perm.to(self.device)
        return self._partners[key]

    @staticmethod
    def _permutation(y0: Tensor, y1: Tensor) -> Tensor:
        """The exact OT plan between two equal-size uniform sets as a permutation (a vertex of the
        Birkhoff polytope, which the network simplex returns)."""
        plan = exact_coupling(y0, y1)
        n = y0.shape[0]
        perm = torch.full((n,), -1, dtype=torch.long)
        perm[plan.rows] = plan.cols
        if plan.rows.numel() != n or bool((perm < 0).any()):
            from scipy.optimize import linear_sum_assignment

            # A degenerate plan split some mass: fall back to the assignment problem (same optimum).
            rows, cols = linear_sum_assignment(torch.cdist(y0.double(), y1.double()).pow(2).numpy())
            perm[torch.as_tensor(rows)] = torch.as_tensor(cols)
        return perm

    def draw_rows(self, batch: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """``batch`` random (condition, sample) indices over all anchor rows."""
        _, m, n, _ = self.shape
        flat = torch.randint(0, m * n, (batch,), generator=gen)
        return (flat // n).to(self.device), (flat % n).to(self.device)

    def pairs(
        self, a: Tensor, b: Tensor, cond: Tensor, row: Tensor, coupling: str, gen: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Paired samples (y_a, y_b), each (B, D), of the same condition, for per-pair anchors a, b."""
        n = self.shape[2]
        y_a = self.y[a, cond, row]
        if coupling == "independent":
            partner = torch.randint(0, n, row.shape, generator=gen).to(self.device)
        else:
            partner = torch.empty_like(row)
            # The anchor pairs present in the batch; a bincount over pair codes is much cheaper than
            # torch.unique(dim=0), which sorts rows and was a visible share of a flow-matching step.
            k = self.shape[0]
            code = a * k + b
            for c in torch.bincount(code.cpu(), minlength=k * k).nonzero().flatten().tolist():
                sel = code == c
                partner[sel] = self.partners(c // k, c % k, coupling)[cond[sel], row[sel]]
        return y_a, self.y[b, cond, partner]

    def start_samples(self, anchor: int, conditions: Tensor, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """n standardised anchor samples per query condition, flattened to (M'·n, D), and their encoded x."""
        from hti_bench.toolkit.transport import draw_many

        # The anchor oracle answers at rows the anchor networks were not run on (closed-loop states).
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        y0 = draw_many(self.anchors.samples_at(conditions, seed)[anchor], int(n), gen)
        x = self.encoder(conditions).repeat_interleave(int(n), 0).to(self.device)
        return self.standardise(y0.reshape(-1, y0.shape[-1])), x


def delaunay_edges(points: Tensor) -> list[tuple[int, int]]:
    """Both directions of every edge of the Delaunay triangulation of ``points`` (K, d): the anchor
    pairs a flow or a regression between anchors trains on when λ has several hyperparameters."""
    from scipy.spatial import Delaunay

    edges = set()
    for simplex in Delaunay(points.double().numpy()).simplices:
        for i in simplex:
            for j in simplex:
                if i != j:
                    edges.add((int(i), int(j)))
    return sorted(edges)


class Segments:
    """The anchor pairs a flow *between anchors* trains on, and each pair's step on the clocks.

    One hyperparameter: the consecutive anchors (k, k+1), ``dtau`` (S,), and the field is a velocity
    per unit of clock time. Several: both directions of every edge of the anchors' Delaunay
    triangulation, ``dtau`` (S, d), and the field is a matrix V(y, τ, x) ∈ ℝ^{D×d}, the rate of change
    of y per unit of each clock coordinate, whose product with an edge's Δτ is the velocity along it.
    A query then flows along the straight segment from an anchor to it. Nothing forces V to be
    path-independent; how far that costs is measured against the barycenter, not assumed.

    A field is called as ``velocity(y, x, τ, k)``: τ the clock point (B,) or (B, d), k the segments the
    rows are on (a tensor in training, the interval's index when sampling on the line, None on the
    plane), so that a model with one network per interval can pick it.

    Used by ``cfm`` and ``mfm``; a flow of one's own between anchors gets its d > 1 form from it.
    """

    def __init__(self, data: FlowData) -> None:
        self.data = data
        self.line, self.d, self.dim, self.tau = data.line, data.anchors.d, data.shape[3], data.tau
        self.route = torch.tensor(data.neighbours(), device=data.device)  # (S, 2)
        self.dtau = self.tau[self.route[:, 1]] - self.tau[self.route[:, 0]]  # (S,) or (S, d)
        self.length = self.dtau if self.line else self.dtau.norm(dim=-1)  # (S,)

    def __len__(self) -> int:
        return len(self.route)

    @property
    def out_dim(self) -> int:
        """The field's output size: D, or D·d with several hyperparameters."""
        return self.dim * self.d

    def field(self, hidden: Sequence[int]) -> TimeMLP:
        """A velocity network for these segments: Fourier-featured clock inputs, :attr:`out_dim` outputs."""
        return self.data.network((True,) * self.d, hidden, out_dim=self.out_dim)

    def ends(self, k: Tensor) -> tuple[Tensor, Tensor]:
        """The anchor indices at the start and the end of segments ``k``."""
        return self.route[k, 0], self.route[k, 1]

    def draw(
        self, weights: Tensor, batch: int, coupling: str, gen: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``batch`` pairs (y0, y1, x, k): segments k drawn with ``weights``, and on each a sample of its
        start anchor paired, under ``coupling``, with one of its end anchor's of the same condition."""
        data = self.data
        k = torch.multinomial(weights, batch, replacement=True, generator=gen).to(data.device)
        cond, row = data.draw_rows(batch, gen)
        y0, y1 = data.pairs(*self.ends(k), cond, row, coupling, gen)
        return y0, y1, data.x[cond], k

    def per_unit(self, flow: Tensor, k: Tensor) -> Tensor:
        """d/ds of a path along segments ``k`` as a velocity per unit of clock time (of clock distance
        with several hyperparameters)."""
        return flow / self.length[k][:, None]

    def matching_loss(
        self, velocity: Callable[..., Tensor], ys: Tensor, x: Tensor, k: Tensor, s: Tensor, flow: Tensor
    ) -> Tensor:
        """Flow-matching loss at fraction ``s`` of segments ``k``: ``velocity(ys, x, τ, k)`` at the clock
        point τ there, regressed on the path's ``flow`` (dy/ds) per unit of clock time or distance."""
        start = self.tau[self.route[k, 0]]
        if self.line:
            return ((velocity(ys, x, start + s * self.dtau[k], k) - self.per_unit(flow, k)) ** 2).sum(-1).mean()
        edge = self.dtau[k]
        field = velocity(ys, x, start + s[:, None] * edge, k).reshape(-1, self.dim, self.d)
        pred = (field @ edge[:, :, None]).squeeze(-1)
        return (((pred - flow) / self.length[k][:, None]) ** 2).sum(-1).mean()

    def sample(
        self,
        velocity: Callable[..., Tensor],
        lam: float | tuple[float, ...],
        conditions: Tensor,
        n: int,
        gen: torch.Generator,
        *,
        start: str = "lower",
        backward: bool = True,
        **solver: Any,
    ) -> Tensor:
        """n samples per query condition at λ, in output units (M', n, D): the start anchor's samples
        there (:meth:`FlowData.start`), carried by the flow to λ (``backward``: on the line, also when
        λ lies just below the start on the clock). ``solver`` as :func:`integrate` takes it."""
        data = self.data
        first = data.start(lam, start)
        y, x = data.start_samples(first, conditions, n, gen)
        target = data.tau_of(lam)
        if self.line:
            y = self._along_line(velocity, y, x, first, target, backward, solver)
        else:
            y = self._along_segment(velocity, y, x, first, target, solver)
        return data.restore(y).reshape(conditions.shape[0], n, -1)

    def _along_line(self, velocity, y, x, start: int, target: float, backward: bool, solver: dict) -> Tensor:
        """One hyperparameter: integrate from anchor ``start`` to the clock position ``target``
        interval by interval: with per-interval nets the field changes at each anchor, and even one
        net has a kink there that an adaptive solver should not step across."""
        tau = self.tau.tolist()
        here = tau[start]
        while abs(target - here) > 1e-12:
            forward = target > here
            if not (forward or backward):
                break
            j = (
                max(i for i in range(len(tau) - 1) if tau[i] <= here + 1e-12)
                if forward
                else min(i for i in range(len(tau) - 1) if tau[i + 1] >= here - 1e-12)
            )
            j = min(j, len(tau) - 2)
            stop = min(target, tau[j + 1]) if forward else max(target, tau[j])
            y = integrate(lambda yy, t, j=j: velocity(yy, x, t.expand(yy.shape[0]), j), y, here, stop, **solver)
            here = stop
        return y

    def _along_segment(self, velocity, y, x, start: int, target: Tensor, solver: dict) -> Tensor:
        """Several hyperparameters: integrate from anchor ``start`` along the straight segment to the
        clock point ``target`` (d,)."""
        origin = self.tau[start]
        direction = target - origin

        def along(yy: Tensor, s: Tensor) -> Tensor:
            tau = (origin + s * direction).expand(yy.shape[0], -1)
            return (velocity(yy, x, tau, None).reshape(-1, self.dim, self.d) @ direction).reshape(yy.shape)

        return integrate(along, y, 0.0, 1.0, **solver)


class FlowSurrogate(SharedParameters, Surrogate):
    """What the flow and regression baselines share: a network trained on the anchor samples.

    ``fit`` checks the parameters, settles what they resolve to (:meth:`_prepare`), and trains
    (:meth:`_fit`) on :class:`FlowData` ``data_`` under a seeded generator on ``device``; :meth:`_train`
    runs the one training loop. The training parameters are declared here once; a member declares its
    own and passes these on (:class:`~hti_bench.toolkit.nets.SharedParameters`), re-declaring one to
    change its default.
    """

    def __init__(
        self,
        *,
        steps: int = 3000,
        batch_size: int = 256,
        lr: float = 2e-3,
        hidden: tuple[int, ...] = (128, 128, 128),
        device: str = "auto",
    ) -> None:
        """
        Parameters
        ----------
        steps, batch_size, lr : int, int, float
            Optimiser steps, pairs (or samples) per step and AdamW learning rate of the network.
        hidden : tuple of int
            Hidden widths of the network.
        device : str
            ``auto`` (CUDA when available) or a torch device name.
        """
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.hidden = hidden
        self.device = device

    def fit(self, anchors: AnchorSet, task: Any = None, *, seed: int = 0) -> FlowSurrogate:
        self.check_params()
        self._prepare()
        dev = resolve_device(self.device)
        with seeded(dev, seed) as gen:
            self.data_ = FlowData(anchors, dev)
            self._fit(self.data_, gen)
        return self

    def check_params(self) -> None:
        check_budget(self, ("steps", "batch_size"))
        check_positive(self, ("lr",))
        check_hidden(self.hidden)
        check_device(self.device)

    def _prepare(self) -> None:
        """Set what the parameters resolve to before training (the matcher, say); default nothing."""

    def _fit(self, data: FlowData, gen: torch.Generator) -> None:
        raise NotImplementedError

    def _train(self, model: nn.Module, loss_fn: Callable[[int], Tensor]) -> None:
        """Train ``model`` on ``loss_fn`` for ``steps`` at ``lr`` (:data:`FLOW_TRAINING`), store ``losses_``
        and freeze it."""
        self.losses_ = training.train_loop(
            model.parameters(), loss_fn, steps=int(self.steps), lr=float(self.lr), **FLOW_TRAINING
        )
        model.eval().requires_grad_(False)


class OdeFlowSurrogate(FlowSurrogate):
    """A :class:`FlowSurrogate` that answers by integrating an ODE (:func:`integrate`); it declares the
    solver's parameters, and :attr:`_solver` passes them on."""

    def __init__(
        self,
        *,
        solver: str = "dopri5",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        step_size: float = 0.01,
        **shared: Any,
    ) -> None:
        """
        Parameters
        ----------
        solver, atol, rtol, step_size
            torchdiffeq method; adaptive ones (dopri5, tsit5, bosh3) use atol/rtol, fixed ones (rk4,
            midpoint, euler) use step_size on the [0, 1] clock.

        The others are :class:`FlowSurrogate`'s: the budget and the network.
        """
        super().__init__(**shared)
        self.solver = solver
        self.atol = atol
        self.rtol = rtol
        self.step_size = step_size

    def check_params(self) -> None:
        validate_solver(self.solver, self.atol, self.rtol, self.step_size)
        super().check_params()

    @property
    def _solver(self) -> dict[str, Any]:
        return {
            "solver": self.solver,
            "atol": float(self.atol),
            "rtol": float(self.rtol),
            "step_size": float(self.step_size),
        }


class SegmentFlowSurrogate(OdeFlowSurrogate):
    """A velocity field between anchors, trained by flow matching on :class:`Segments` and answering by
    the flow from an anchor (``cfm``; ``mfm``, whose paths bend).

    ``_fit`` builds ``edges_`` and ``fields_`` (:meth:`_n_fields` networks), runs :meth:`_before_matching`,
    then regresses the field on :meth:`_path`'s velocities at pairs from :meth:`_batch` drawn with
    :meth:`_weights`. ``sample`` starts at :meth:`_start_from`'s anchor; ``backward`` says whether the
    flow on the line may run backwards (from an anchor just above λ).
    """

    backward: ClassVar[bool] = True

    def _fit(self, data: FlowData, gen: torch.Generator) -> None:
        edges = self.edges_ = Segments(data)
        self.fields_ = nn.ModuleList([edges.field(self.hidden) for _ in range(self._n_fields(edges))])
        weights = self._weights(edges)
        bs = int(self.batch_size)
        self._before_matching(data, weights, bs, gen)

        def loss_fn(step: int) -> Tensor:
            y0, y1, x, k = self._batch(data, weights, bs, gen)
            s, eps = draw_fractions(y0, gen)
            ys, flow = self._path(y0, y1, x, s, eps)
            # Velocity per unit of clock time, not per unit of the path's own s.
            return edges.matching_loss(self._velocity, ys, x, k, s, flow)

        self._train(self.fields_, loss_fn)

    def _n_fields(self, edges: Segments) -> int:
        """How many velocity networks: one over all segments."""
        return 1

    def _weights(self, edges: Segments) -> Tensor:
        """How often each segment is drawn: uniformly."""
        return torch.ones(len(edges))

    def _before_matching(self, data: FlowData, weights: Tensor, bs: int, gen: torch.Generator) -> None:
        """Anything to fit before the field (once the field's networks exist); default nothing."""

    def _batch(self, data: FlowData, weights: Tensor, bs: int, gen: torch.Generator):
        """Paired (y0, y1, x, k), each pair within one condition and one segment (``coupling_``)."""
        return self.edges_.draw(weights, bs, self.coupling_, gen)

    def _path(self, y0: Tensor, y1: Tensor, x: Tensor, s: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """The point at fraction s of each pair's path and its velocity d/ds: the matcher's."""
        return conditional_path(self.matcher_, y0, y1, s, eps)

    def _velocity(self, y: Tensor, x: Tensor, t: Tensor, k: Tensor | int | None) -> Tensor:
        return self.fields_[0](y, x, *self.data_.clock_inputs(t))

    def _start_from(self) -> str:
        """Where a query starts (:meth:`FlowData.start`)."""
        return "lower"

    @torch.no_grad()
    def sample(self, lam: float | tuple[float, ...], conditions: Tensor, n: int, seed: int) -> Tensor:
        self.check_sample_args(n)
        gen = self.generator(seed)
        start, backward = self._start_from(), self.backward
        return self.edges_.sample(
            self._velocity, lam, conditions, int(n), gen, start=start, backward=backward, **self._solver
        )


def check_budget(surrogate, keys: Sequence[str]) -> None:
    """Raise :class:`ConfigError` for any of ``keys`` (integer budgets like steps) below 1."""
    for key in keys:
        if int(getattr(surrogate, key)) < 1:
            raise ConfigError(f"{key} must be ≥ 1, got {getattr(surrogate, key)}")


def validate_solver(solver: str, atol: float, rtol: float, step_size: float) -> None:
    check_choice("solver", solver, SOLVERS)
    if solver in ADAPTIVE_SOLVERS and not (atol > 0 and rtol > 0):
        raise ConfigError(f"atol and rtol must be > 0 for solver {solver!r}, got atol={atol}, rtol={rtol}")
    if solver in FIXED_SOLVERS and not 0 < step_size <= 1:
        raise ConfigError(f"step_size must be in (0, 1] for solver {solver!r}, got {step_size}")


@torch.no_grad()
def integrate(
    field: Callable[[Tensor, float | Tensor], Tensor],
    y0: Tensor,
    t0: float,
    t1: float,
    *,
    solver: str = "dopri5",
    atol: float = 1e-5,
    rtol: float = 1e-5,
    step_size: float = 0.01,
) -> Tensor:
    """Solve dy/dt = field(y, t) from t0 to t1 (either direction) with torchdiffeq; returns y(t1).

    Tolerances are explicit because torchdiffeq's defaults (rtol 1e-7, atol 1e-9) make a learned field
    cost hundreds of steps for no measurable gain in Wasserstein error.
    """
    from torchdiffeq import odeint

    if math.isclose(t0, t1, abs_tol=1e-12):
        return y0
    span = torch.tensor([t0, t1], dtype=y0.dtype, device=y0.device)
    if solver in FIXED_SOLVERS:
        out = odeint(lambda t, y: field(y, t), y0, span, method=solver, options={"step_size": step_size})
    else:
        out = odeint(lambda t, y: field(y, t), y0, span, method=solver, atol=atol, rtol=rtol)
    return out[-1]

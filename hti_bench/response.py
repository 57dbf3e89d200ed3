"""Best-response models: one weight family w(λ) trained on the task's own loss over a λ range.

The best-response surrogates (``hypernetwork``, ``stn``, ``delta-stn``, ``anchored-delta-stn``) never
look at anchor outputs: they train a *weight generator* on the task's per-example, λ-aware training
loss (:meth:`hti_bench.task.TrainedTask.per_example_loss`), so one model answers for every λ. This
module holds what they share:

- :class:`LambdaAxis`: λ ↔ clock time ↔ the normalised coordinate ``s`` (−1 … 1 over the anchor range)
  that generators read, and the unconstrained coordinate ``u`` in which STN perturbs λ;
- :class:`FunctionalNetwork`: the task's own architecture run with generated weights, one weight set
  per example (``torch.func.functional_call`` vmapped over the batch) or one for all (sampling), with
  an optional forward-mode linearisation (``torch.func.jvp``) for Δ-STN;
- the generators: :class:`HyperGenerator` (a rank-r hypernetwork) and :class:`StructuredResponse`
  (the STN / Δ-STN per-layer response);
- :class:`BestResponseSurrogate`: the surrogate skeleton (budget, batches, sampling through the
  task's own output mechanism).

Everything works for any task architecture, because weights are swapped in with
``functional_call`` rather than by rewriting the network's layers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.autograd.forward_ad as fwad
from torch import Tensor, nn
from torch.func import functional_call, jvp, vmap
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from hti_bench.clock import Clock, Hyperparameter
from hti_bench.errors import ConfigError
from hti_bench.optim import adam
from hti_bench.surrogate import Surrogate

if TYPE_CHECKING:
    from typing import Self

    from hti_bench.data import AnchorSet
    from hti_bench.task import Task, TrainedTask


# ---------------------------------------------------------------------------------------- λ axis


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
        lam = torch.as_tensor(lam, dtype=torch.float32)
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


# ------------------------------------------------------------------------------ functional network


def parameter_shapes(network: nn.Module) -> dict[str, torch.Size]:
    return {name: p.shape for name, p in network.named_parameters()}


class FunctionalNetwork(nn.Module):
    """The task's network, run with weights from a generator instead of its own.

    Use it exactly where the task expects its network (``per_example_loss``, ``sample_network``)
    inside ``with fnet.at(h):``, where ``h`` (B, d) are the generator's inputs:

    - B = 1: one weight set for every input row (sampling at one λ);
    - B > 1: example i of the batch runs with its own weights w(h_i). Every tensor argument whose
      first dimension is B·k (k ≥ 1, rows grouped example by example, as ``repeat_interleave`` gives)
      is split per example and ``functional_call`` is vmapped over the examples; other arguments are
      shared. Randomness inside the network (dropout) is drawn independently per example.

    Buffers are shared by every weight set, so a network that updates buffers in training
    (BatchNorm's running statistics) cannot be run per example; use GroupNorm/LayerNorm there.

    ``linearize=tangent`` (inside ``at``) returns the first-order output f(w(h)) + J_h f · tangent
    (one forward-mode JVP), Δ-STN's linearised response.
    """

    def __init__(self, network: nn.Module, generator: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.generator = generator
        self._h: Tensor | None = None
        self._tangent: Tensor | None = None
        # The network's own parameters are never used: generated weights replace all of them.
        network.requires_grad_(False)

    @contextmanager
    def at(self, h: Tensor, linearize: Tensor | None = None) -> Iterator[FunctionalNetwork]:
        if h.ndim != 2:
            raise ValueError(f"generator inputs must have shape (B, d), got {tuple(h.shape)}")
        self._h, self._tangent = h, linearize
        try:
            yield self
        finally:
            self._h, self._tangent = None, None

    def train(self, mode: bool = True) -> FunctionalNetwork:
        # The generator's own mode is independent of the network's: dropout in the target network
        # follows .train()/.eval() calls by the task, the generator has no mode-dependent layers.
        self.training = mode
        self.network.train(mode)
        return self

    def weights(self, h: Tensor) -> dict[str, Tensor]:
        """Generated weights at inputs ``h`` (B, d): name → (B, *shape)."""
        return self.generator(h)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._h is None:
            raise RuntimeError("FunctionalNetwork called outside `with fnet.at(h):`")
        h, tangent = self._h, self._tangent
        if tangent is None:
            return self._apply(self.weights(h), args, kwargs)

        if h.shape[0] > 1 and tangent.shape[1] == 1 and bool((h == h[:1]).all()):
            return self._linearised_at_one_point(h[:1], tangent, args, kwargs)

        def output(hh: Tensor) -> Any:
            return self._apply(self.weights(hh), args, kwargs)

        out, lin = jvp(output, (h,), (tangent,), has_aux=False)
        return tree_map(lambda a, b: a + b, out, lin)

    def _linearised_at_one_point(self, h0: Tensor, tangent: Tensor, args: tuple, kwargs: dict) -> Any:
        """The linearised output when every example's weights are w(h0) and h is 1-D (Δ-STN's centred
        inputs): the JVP is linear in the tangent, so example i's term is tangent_i · J f(w(h0), x_i) · 1.
        One JVP of *one* network (no per-example weight sets, no vmap), each example's term scaled by
        its own tangent afterwards, replaces a JVP over B weight sets: same values (the dropout masks
        are drawn from the same distribution), and forward-mode AD under vmap costs far more per op
        (delta-stn's fit on moons-dropout: 59.6 s → 12.2 s, with :meth:`StructuredResponse.direction`).
        """
        n_sets = tangent.shape[0]
        total = _total_rows(n_sets, args, kwargs)
        per_row = tangent.repeat_interleave(total // n_sets, dim=0)[:, 0]  # (total,)

        direction = getattr(self.generator, "direction", None)
        if direction is not None:
            # A generator that knows dw/dh: forward-mode AD through the network alone, with the C++
            # forward formulas (torch.func.jvp re-dispatches many ops through Python references).
            weights, dweights = self.weights(h0), direction(h0, torch.ones_like(h0))
            with fwad.dual_level():
                dual = self._apply({k: fwad.make_dual(w, dweights[k]) for k, w in weights.items()}, args, kwargs)
                leaves, spec = tree_flatten(dual)
                pairs = [fwad.unpack_dual(o) if isinstance(o, Tensor) else (o, None) for o in leaves]
            out = tree_unflatten([p[0] for p in pairs], spec)
            lin = tree_unflatten([p[1] for p in pairs], spec)
        else:
            def output(hh: Tensor) -> Any:
                return self._apply(self.weights(hh), args, kwargs)

            out, lin = jvp(output, (h0,), (torch.ones_like(h0),))

        def combine(o: Any, dl: Any) -> Any:
            if dl is None:  # an output that does not depend on the weights: its tangent is zero
                return o
            if not isinstance(o, Tensor) or o.ndim == 0 or o.shape[0] != total:
                raise ValueError(f"linearised outputs must have one row per example ({total}), got {getattr(o, 'shape', o)}")
            return o + per_row.reshape(total, *([1] * (o.ndim - 1))) * dl

        return tree_map(combine, out, lin)

    def _apply(self, weights: dict[str, Tensor], args: tuple, kwargs: dict) -> Any:
        n_sets = next(iter(weights.values())).shape[0]
        if n_sets == 1:
            return functional_call(self.network, {k: v[0] for k, v in weights.items()}, args, kwargs)
        total = _total_rows(n_sets, args, kwargs)
        k = total // n_sets

        def split(a: Any) -> Any:
            return a.reshape(n_sets, k, *a.shape[1:]) if _per_example(a, total) else a

        def dims(a: Any) -> Any:
            return 0 if _per_example(a, total) else None

        s_args, s_kwargs = tree_map(split, args), tree_map(split, kwargs)
        in_dims = (0, tree_map(dims, args), tree_map(dims, kwargs))

        def one(w: dict[str, Tensor], a: tuple, kw: dict) -> Any:
            return functional_call(self.network, w, a, kw)

        out = vmap(one, in_dims=in_dims, randomness="different")(weights, s_args, s_kwargs)
        return tree_map(lambda o: o.reshape(n_sets * k, *o.shape[2:]) if isinstance(o, Tensor) and o.ndim >= 2 else o, out)


def _total_rows(n_sets: int, args: tuple, kwargs: dict) -> int:
    """Rows of the batch (examples grouped per weight set): the first input with a multiple of n_sets rows."""
    rows = [a.shape[0] for a in _tensors(args, kwargs) if a.ndim and a.shape[0] % n_sets == 0]
    if not rows:
        raise ValueError(
            f"{n_sets} weight sets but no network input has a multiple of {n_sets} rows; "
            "best-response training calls the network on the batch's examples along dim 0"
        )
    return rows[0]


def _tensors(args: tuple, kwargs: dict) -> list[Tensor]:
    found: list[Tensor] = []
    tree_map(lambda a: found.append(a) if isinstance(a, Tensor) else None, (args, kwargs))
    return found


def _per_example(a: Any, total: int) -> bool:
    return isinstance(a, Tensor) and a.ndim >= 1 and a.shape[0] == total


# -------------------------------------------------------------------------------------- generators


class HyperGenerator(nn.Module):
    """Hypernetwork h_φ(λ) → every weight of the target network (Lorraine & Duvenaud's global scheme).

    s → MLP (``width``, SiLU) → e(s) ∈ ℝ^r → w(s) = w_init + U e(s), U of shape (|w|, r): a full
    output layer whose input is a rank-r code, so the emitted weights lie in an r-dimensional affine
    subspace around the network's own initialisation. Cost r·|w| parameters; for large targets
    lower ``rank`` (the output layer dominates).
    """

    def __init__(self, network: nn.Module, width: int, rank: int, gen: torch.Generator) -> None:
        super().__init__()
        self.shapes = parameter_shapes(network)
        init = [p.detach().reshape(-1) for p in network.parameters()]
        self.base = nn.Parameter(torch.cat(init).clone())
        self.code = nn.Sequential(nn.Linear(1, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, rank))
        # Each weight block's response starts at a tenth of its initial spread: big enough to carry
        # gradient to the code network, small enough that w(s) ≈ w_init everywhere at step 0.
        blocks = []
        for p in init:
            spread = float(p.std()) if p.numel() > 1 else 0.05
            blocks.append(torch.randn(p.numel(), rank, generator=gen) * (0.1 * (spread or 0.05) / math.sqrt(rank)))
        self.out = nn.Parameter(torch.cat(blocks))

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        flat = nn.functional.linear(self.code(h), self.out, self.base)  # fused: 2x faster than base + c @ out.T
        return _unflatten(flat, self.shapes)


class StructuredResponse(nn.Module):
    """The STN / Δ-STN per-layer response, for every parameter tensor of the network.

    For a parameter P with ``out`` output units (its first dimension):
    P(h) = P_elem + (V_P h) ⊙_row P_hyper, V_P ∈ ℝ^{out×d} zero-initialised, so at step 0 — and at
    h = 0 forever, which Δ-STN's centred inputs use — the weights are exactly P_elem. Each unit's
    weights move along one direction, affinely in h (MacKay et al. 2019; Bae & Grosse 2020).
    ``general_parameters()`` are the P_elem, ``response_parameters()`` the P_hyper and V_P.
    """

    def __init__(self, network: nn.Module, dim: int, gen: torch.Generator, elem: dict[str, Tensor] | None = None) -> None:
        super().__init__()
        self.names = [n for n, _ in network.named_parameters()]
        source = elem or {n: p.detach() for n, p in network.named_parameters()}
        self.elem = nn.ParameterList([nn.Parameter(source[n].clone().float()) for n in self.names])
        hyper = []
        for n in self.names:
            p = source[n]
            spread = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.05
            hyper.append(nn.Parameter(torch.randn(p.shape, generator=gen) * spread))
        self.hyper = nn.ParameterList(hyper)
        self.bottleneck = nn.ParameterList(
            [nn.Parameter(torch.zeros(source[n].shape[0] if source[n].ndim else 1, dim)) for n in self.names]
        )

    def general_parameters(self) -> list[nn.Parameter]:
        return list(self.elem)

    def response_parameters(self) -> list[nn.Parameter]:
        return list(self.hyper) + list(self.bottleneck)

    def direction(self, h: Tensor, u: Tensor) -> dict[str, Tensor]:
        """dw/dh at ``h`` along ``u`` (B, d): the weights are affine in h, so (V_P u) ⊙_row P_hyper.
        :class:`FunctionalNetwork` uses it to linearise without differentiating the generator."""
        return {name: _row_scale(u, v, e) * w for name, e, w, v in zip(self.names, self.elem, self.hyper, self.bottleneck)}

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        out = {}
        for name, e, w, v in zip(self.names, self.elem, self.hyper, self.bottleneck):
            out[name] = e + _row_scale(h, v, e) * w
        return out


def _row_scale(h: Tensor, v: Tensor, e: Tensor) -> Tensor:
    """V_P h per output unit of P, shaped (B, out, 1, …) to scale P's rows (B, 1… for a scalar P)."""
    scale = h @ v.T  # (B, out)
    return scale.reshape(h.shape[0], *(scale.shape[1:] if e.ndim else ()), *([1] * max(e.ndim - 1, 0)))


def _unflatten(flat: Tensor, shapes: dict[str, torch.Size]) -> dict[str, Tensor]:
    # split, not slicing: each slice's backward would allocate and zero a full (B, |w|) gradient.
    parts = flat.split([math.prod(shape) for shape in shapes.values()], dim=1)
    return {name: part.reshape(flat.shape[0], *shape) for (name, shape), part in zip(shapes.items(), parts)}


# ------------------------------------------------------------------------------------------ batches


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


def split_training_data(data: Sequence[Tensor], fraction: float, gen: torch.Generator) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """(train, validation) rows of the task's training set; ``fraction`` of it held out."""
    n = int(data[0].shape[0])
    order = torch.randperm(n, generator=gen)
    n_val = max(1, int(round(fraction * n)))
    val, train = order[:n_val], order[n_val:]
    return tuple(d[train] for d in data), tuple(d[val] for d in data)


# --------------------------------------------------------------------------------- surrogate base


class BestResponseSurrogate(Surrogate):
    """Skeleton of the surrogates that learn w(λ) from the task's training loss (regime B of
    BASELINES.md §1): they read ``task.training_data()``, ``build_network()``,
    ``per_example_loss()`` and answer through ``sample_network()``; anchor outputs are not used.

    Subclasses implement ``_fit(task, axis, gen)`` storing ``self.net_`` (a
    :class:`FunctionalNetwork`) and ``_inputs(lam) -> (1, d)`` (the generator inputs at λ).
    ``epochs`` counts passes over the task's training set; ``None`` means the budget of one anchor
    network (the task's own ``epochs``), the usual cost model of a best-response method; ``lr=None``
    likewise takes the task's own learning rate.

    ``lambda_draws`` is how many distinct λ one batch holds (its examples split evenly among them).
    ``batch_size`` gives the per-example λ of the papers; generating one weight set per example costs
    B·|w| memory traffic per step, so the default, 16, is 8–9× faster per step on moons-dropout and still
    spans the range in every batch.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"training_loss", "architecture"})

    def fit(self, anchors: AnchorSet, task: Task | None = None, *, seed: int = 0) -> Self:
        from hti_bench.nets import seeded
        from hti_bench.task import TrainedTask

        if not isinstance(task, TrainedTask):
            raise ConfigError(
                f"{self.name} trains on the task's loss and architecture; it needs a trained task, got "
                f"{type(task).__name__ if task is not None else 'no task'}"
            )
        self._validate()
        self.anchors_ = anchors
        self.axis_ = LambdaAxis(task.hyperparameter, anchors.lambdas[0], anchors.lambdas[-1])
        self.task_ = task
        with seeded(torch.device("cpu"), seed) as gen:
            self._fit(task, self.axis_, gen)
        return self

    def check_params(self) -> None:
        self._validate()

    def _validate(self) -> None:
        if self.epochs is not None and float(self.epochs) <= 0:
            raise ConfigError(f"epochs must be > 0 (or None for one anchor network's budget), got {self.epochs}")
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be ≥ 1, got {self.batch_size}")
        if not 1 <= int(self.lambda_draws) <= int(self.batch_size):
            raise ConfigError(f"lambda_draws must be between 1 and batch_size ({self.batch_size}), got {self.lambda_draws}")
        if self.lr is not None and not float(self.lr) > 0:
            raise ConfigError(f"lr must be > 0 (or None for the task's own), got {self.lr}")

    def _grouped(self, batch: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], int, int]:
        """(batch, G, k): the batch trimmed to G·k rows, G = ``lambda_draws`` λ values of k examples
        each (rows grouped in order, as ``repeat_interleave`` gives)."""
        rows = int(batch[0].shape[0])
        groups = min(int(self.lambda_draws), rows)
        k = rows // groups
        return tuple(b[: groups * k] for b in batch), groups, k

    def _lr(self, task: TrainedTask) -> float:
        """Adam's step: ``lr``, or None for the one the task trains its networks with."""
        return float(task.config.lr if self.lr is None else self.lr)

    def _steps(self, task: TrainedTask, n_rows: int) -> int:
        epochs = float(task.config.epochs if self.epochs is None else self.epochs)
        return max(1, int(round(epochs * n_rows / int(self.batch_size))))

    def _fit(self, task: TrainedTask, axis: LambdaAxis, gen: torch.Generator) -> None:
        raise NotImplementedError

    def _inputs(self, lam: float) -> Tensor:
        raise NotImplementedError

    def _at(self, lam: float) -> Any:
        """The context in which ``self.net_`` is the model's network at λ."""
        return self.net_.at(self._inputs(lam))

    def weights(self, lam: float) -> dict[str, Tensor]:
        """The generated weights of the target network at λ: name → tensor (for inspection/tests)."""
        self._check_fitted()
        with torch.no_grad():
            return {k: v[0] for k, v in self.net_.weights(self._inputs(lam)).items()}

    def sample(self, lam: float, conditions: Tensor, n: int, seed: int) -> Tensor:
        self._check_sample_args(n)
        self.anchors_.locate(lam)  # trained over the anchor range only
        net = self.net_.eval()
        with torch.no_grad(), self._at(lam):
            out = self.task_.sample_network(net, torch.as_tensor(conditions, dtype=torch.float32), int(n), self._generator(seed))
        return out.float()


class PerturbationScale(nn.Module):
    """STN's perturbation of λ: λ̃ = u⁻¹(u0 + σ ε) per λ draw, σ = softplus(ρ) learned with an
    entropy bonus τ·H, H = log(σ √(2πe)) (MacKay et al. 2019, BASELINES.md §5.1).

    Without hyperparameter steps (HTI fixes λ), only σ is tuned: every ``every`` network steps, one
    Adam step on ρ lowers L_val(ŵ(λ̃)) − τ·H on held-out training rows, the network in eval mode and
    the loss's own λ argument detached, as the STN's hyper step does. Without the entropy bonus σ
    collapses and the response is unidentified; τ sets how local the response stays.
    """

    def __init__(self, sigma0: float, center_u: float, tau: float, lr: float) -> None:
        super().__init__()
        self.rho = nn.Parameter(torch.tensor(math.log(math.expm1(sigma0))))
        self.center_u = torch.tensor(float(center_u))
        self.tau = float(tau)
        self.opt = adam([self.rho], lr)

    @property
    def sigma(self) -> Tensor:
        return nn.functional.softplus(self.rho)

    def entropy(self) -> Tensor:
        return torch.log(self.sigma * math.sqrt(2 * math.pi * math.e))

    def step(self, loss: Tensor) -> float:
        objective = loss - self.tau * self.entropy()
        (grad,) = torch.autograd.grad(objective, [self.rho])
        self.opt.zero_grad(set_to_none=True)
        self.rho.grad = grad
        self.opt.step()
        return float(self.sigma.detach())


def check_stn_options(surrogate: Any, anchors: AnchorSet) -> None:
    """The options STN and Δ-STN share: σ0 > 0, τ ≥ 0, a centre inside the anchor range."""
    if not float(surrogate.sigma0) > 0:
        raise ConfigError(f"sigma0 must be > 0, got {surrogate.sigma0}")
    if not float(surrogate.entropy_weight) >= 0:
        raise ConfigError(f"entropy_weight must be ≥ 0, got {surrogate.entropy_weight}")
    if int(surrogate.scale_every) < 1:
        raise ConfigError(f"scale_every must be ≥ 1, got {surrogate.scale_every}")
    if surrogate.center is not None:
        lo, hi = anchors.lambdas[0], anchors.lambdas[-1]
        if not lo <= float(surrogate.center) <= hi:
            raise ConfigError(f"center={surrogate.center} must lie in the anchor range [{lo}, {hi}]")


def center_time(surrogate: Any, axis: LambdaAxis) -> float:
    """Clock time of λ0: the given ``center``, else the middle of the anchor range on the clock."""
    if surrogate.center is None:
        return 0.5 * (axis.t_first + axis.t_last)
    return float(axis.time(torch.tensor(float(surrogate.center))))


def cosine(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine decay to 5 % over the fit: a best-response model is judged on its final weights, which
    a constant step size leaves SGD-noisy (the ridge best response is met to ≈ 7 % without it)."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(int(steps), 1), eta_min=opt.param_groups[0]["lr"] * 0.05)


def step_optimizer(opt: torch.optim.Optimizer, loss: Tensor, step: int, schedule: Any = None) -> None:
    """One Adam step on ``loss``, refusing a non-finite loss, with gradient clipping (per-example
    hypernetwork gradients occasionally spike)."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss became {float(loss)} at step {step}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 10.0)
    opt.step()
    if schedule is not None:
        schedule.step()


def train_steps(params: Sequence[nn.Parameter], loss_fn, *, steps: int, lr: float) -> list[float]:
    """Adam with a cosine-decayed step over ``steps``; returns the loss per step."""
    opt = adam(params, lr)
    schedule = cosine(opt, steps)
    losses = []
    for step in range(int(steps)):
        loss = loss_fn(step)
        step_optimizer(opt, loss, step, schedule)
        losses.append(float(loss.detach()))
    return losses

"""Networks conditioned on x by FiLM in their first layer (as in the HTI reference code), and the
encoding of condition rows into their inputs. Shared by CLOT (``methods/clot.py``) and the flow
baselines (``baselines/cfm.py``, ``baselines/direct.py``, ``baselines/lambda_flow.py``)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class Conditioner(nn.Module):
    """Maps a condition to FiLM scale and shift (γ, β) of width ``width``.

    Categorical conditions (``n_classes`` given) use an embedding; continuous ones a small MLP; with no
    condition (C = 0) it returns γ = 1, β = 0.
    """

    def __init__(
        self, cond_dim: int, n_classes: int | None, width: int, embed: int = 16, act: type[nn.Module] = nn.ReLU
    ) -> None:
        super().__init__()
        self.width = width
        self.n_classes = n_classes
        self.cond_dim = cond_dim
        if n_classes is not None:
            self.net = nn.Sequential(
                nn.Embedding(n_classes, embed), nn.Linear(embed, embed), act(), nn.Linear(embed, 2 * width)
            )
        elif cond_dim > 0:
            self.net = nn.Sequential(nn.Linear(cond_dim, embed), act(), nn.Linear(embed, 2 * width))
        else:
            self.net = None
        if self.net is not None:
            # Start at the identity modulation γ = 1, β = 0.
            last = self.net[-1]
            nn.init.zeros_(last.weight)
            with torch.no_grad():
                last.bias.copy_(torch.cat([torch.ones(width), torch.zeros(width)]))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.net is None:
            ones = torch.ones(x.shape[0], self.width, device=x.device)
            return ones, torch.zeros_like(ones)
        if self.n_classes is not None:
            # One row per class, then a lookup: the same numbers as running the net on every row
            # (rows of one class are identical), at the cost of n_classes rows instead of B.
            table = self.net(torch.arange(self.n_classes, device=x.device))
            out = table.index_select(0, x.reshape(-1).long())
        else:
            out = self.net(x)
        gamma, beta = out.chunk(2, dim=-1)
        return gamma, beta


class FiLMMLP(nn.Module):
    """y ↦ MLP(y) with the first hidden layer modulated by the condition: act(γ(x) ⊙ W y + β(x));
    ``residual``: y ↦ y + MLP(y) (a map close to the identity, as a transport map between nearby anchors)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int],
        cond_dim: int,
        n_classes: int | None,
        act: type[nn.Module] = nn.ReLU,
        embed: int = 16,
        zero_last: bool = False,
        residual: bool = False,
    ) -> None:
        super().__init__()
        hidden = list(hidden)
        if residual and in_dim != out_dim:
            raise ValueError(f"a residual FiLMMLP maps a space to itself; got in_dim={in_dim}, out_dim={out_dim}")
        self.residual = residual
        self.first = nn.Linear(in_dim, hidden[0])
        self.film = Conditioner(cond_dim, n_classes, hidden[0], embed=embed, act=act)
        layers: list[nn.Module] = []
        for a, b in zip(hidden, hidden[1:]):
            layers += [nn.Linear(a, b), act()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(hidden[-1], out_dim)
        self.act = act()
        if zero_last:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, y: Tensor, x: Tensor, film: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``film``: the condition's (γ, β) from :attr:`film`, when the caller evaluates many ``y`` at
        the same ``x`` (e.g. inside an optimisation over y) and computes them once."""
        gamma, beta = self.film(x) if film is None else film
        h = self.act(torch.addcmul(beta, gamma, self.first(y)))
        out = self.out(self.body(h))
        return y + out if self.residual else out


class ConditionEncoder:
    """Condition rows x (M, C) → network inputs, fitted on the anchor conditions.

    Categorical x (one class-id column) becomes a class index for an embedding, so unknown ids raise
    instead of being silently embedded; continuous x is standardised column-wise, so FiLM sees inputs
    of unit scale whatever the task's units.
    """

    def __init__(self, conditions: Tensor, categorical: bool) -> None:
        conditions = conditions.float()
        self.categorical = bool(categorical and conditions.shape[1] == 1)
        self.dim = conditions.shape[1]
        if self.categorical:
            self.class_values = torch.unique(conditions[:, 0])
            self.n_classes: int | None = len(self.class_values)
        else:
            self.n_classes = None
            self.mean = conditions.mean(0)
            self.std = conditions.std(0).clamp_min(1e-6) if conditions.shape[0] > 1 else torch.ones(self.dim)

    def __call__(self, conditions: Tensor) -> Tensor:
        conditions = conditions.float()
        if not self.categorical:
            return (conditions - self.mean) / self.std
        values = conditions[:, 0].contiguous()
        idx = torch.searchsorted(self.class_values, values).clamp(max=len(self.class_values) - 1)
        if not torch.equal(self.class_values[idx], values):
            unknown = sorted(set(values.tolist()) - set(self.class_values.tolist()))
            raise ValueError(f"unknown class ids {unknown}; the anchors have {self.class_values.tolist()}")
        return idx.float()[:, None]


def flax_init_(module: nn.Module) -> nn.Module:
    """Re-initialise ``module``'s linear and embedding layers as flax does by default (the HTI reference
    code's networks): kernels truncated-normal within ±2σ with variance 1/fan-in (lecun-normal), biases
    zero, embeddings normal with variance 1/width. Draws from torch's global generator."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, 0.0, 1.0, -2.0, 2.0)
                layer.weight.mul_((1.0 / layer.in_features) ** 0.5 / 0.87962566103423978)
                if layer.bias is not None:
                    layer.bias.zero_()
            elif isinstance(layer, nn.Embedding):
                nn.init.normal_(layer.weight, 0.0, (1.0 / layer.embedding_dim) ** 0.5)
    return module


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_device(name: str) -> None:
    """Raise :class:`~hti_bench.errors.ConfigError` unless ``name`` is ``auto`` or a torch device name."""
    from hti_bench.errors import ConfigError

    if name == "auto":
        return
    try:
        torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(
            f"device must be 'auto' or a torch device such as cpu, cuda or cuda:1, got {name!r}"
        ) from None


def check_hidden(hidden: object, key: str = "hidden") -> None:
    """Raise :class:`~hti_bench.errors.ConfigError` unless ``hidden`` is a non-empty sequence of widths ≥ 1."""
    from hti_bench.errors import ConfigError

    try:
        ok = len(hidden) > 0 and all(int(h) >= 1 and float(h) == int(h) for h in hidden)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{key} must be a non-empty tuple of layer widths ≥ 1, e.g. (64, 64), got {hidden!r}")


class SharedParameters:
    """Mixin for a family of surrogates that declare their common constructor parameters once.

    The family's base class declares them in its own ``__init__(self, *, a=1, b=2)`` (with their
    docs) and stores them. A member declares only its own, ends the list with ``**shared`` and passes
    those on: ``def __init__(self, *, c=3, **shared): super().__init__(**shared); self.c = c``. Its
    ``__init__`` then reads as the whole list, inherited parameters first, ``(*, a=1, b=2, c=3)``, which
    is what the harness builds, validates and names surrogates from. Re-declaring an inherited
    parameter gives it another default, in its inherited place.
    """

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        own = inspect.signature(init)
        params = list(own.parameters.values())
        if len(params) < 2 or params[-1].kind is not inspect.Parameter.VAR_KEYWORD:
            return
        declared = {p.name: p for p in params[1:-1]}
        # The next __init__ in the method resolution order already reads as its full list.
        inherited = [
            p for p in inspect.signature(super(cls, cls).__init__).parameters.values() if p.kind is p.KEYWORD_ONLY
        ]
        merged = [declared.pop(p.name, p) for p in inherited] + list(declared.values())
        init.__signature__ = own.replace(parameters=[params[0], *merged])


@contextmanager
def seeded(device: torch.device, seed: int) -> Iterator[torch.Generator]:
    """Seed torch's global RNG (network initialisation) inside a forked RNG state, so a fit neither
    depends on nor disturbs the caller's randomness; yields a generator for the fit's own draws."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield torch.Generator().manual_seed(seed)

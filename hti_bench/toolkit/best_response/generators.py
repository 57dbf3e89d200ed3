"""Weight generators: what maps the generator input h (λ's normalised clock position) to weights."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hti_bench.toolkit.best_response.functional import parameter_shapes


class HyperGenerator(nn.Module):
    """Hypernetwork h_φ(λ) → every weight of the target network (Lorraine & Duvenaud's global scheme).

    s (one coordinate per hyperparameter, ``n_inputs``) → MLP (``width``, SiLU) → e(s) ∈ ℝ^r → w(s) = w_init + U e(s), U of shape (|w|, r): a full
    output layer whose input is a rank-r code, so the emitted weights lie in an r-dimensional affine
    subspace around the network's own initialisation. Cost r·|w| parameters; for large targets
    lower ``rank`` (the output layer dominates).
    """

    def __init__(self, network: nn.Module, width: int, rank: int, gen: torch.Generator, n_inputs: int = 1) -> None:
        super().__init__()
        self.shapes = parameter_shapes(network)
        init = [p.detach().reshape(-1) for p in network.parameters()]
        self.base = nn.Parameter(torch.cat(init).clone())
        self.code = nn.Sequential(
            nn.Linear(n_inputs, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, rank)
        )
        # Each weight block's response starts at a tenth of its initial spread: big enough to carry
        # gradient to the code network, small enough that w(s) ≈ w_init everywhere at step 0.
        blocks = []
        for p in init:
            spread = float(p.std()) if p.numel() > 1 else 0.05
            blocks.append(torch.randn(p.numel(), rank, generator=gen) * (0.1 * (spread or 0.05) / math.sqrt(rank)))
        self.out = nn.Parameter(torch.cat(blocks))

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        flat = nn.functional.linear(self.code(h), self.out, self.base)  # fused: one kernel instead of base + c @ out.T
        return _unflatten(flat, self.shapes)


class StructuredResponse(nn.Module):
    """The STN / Δ-STN per-layer response, for every parameter tensor of the network.

    For a parameter P with ``out`` output units (its first dimension):
    P(h) = P_elem + (V_P h) ⊙_row P_hyper, V_P ∈ ℝ^{out×d} zero-initialised, so at step 0 — and at
    h = 0 forever, which Δ-STN's centred inputs use — the weights are exactly P_elem. Each unit's
    weights move along one direction, affinely in h (MacKay et al. 2019; Bae & Grosse 2020).
    ``general_parameters()`` are the P_elem, ``response_parameters()`` the P_hyper and V_P.
    """

    def __init__(
        self, network: nn.Module, dim: int, gen: torch.Generator, elem: dict[str, Tensor] | None = None
    ) -> None:
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
        return {
            name: _row_scale(u, v, e) * w for name, e, w, v in zip(self.names, self.elem, self.hyper, self.bottleneck)
        }

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        out = {}
        for name, e, w, v in zip(self.names, self.elem, self.hyper, self.bottleneck):
            out[name] = e + _row_scale(h, v, e) * w
        return out


class FiLMGenerator(nn.Module):
    """Loss-conditional weights (Dosovitskiy & Djolonga, "You Only Train Once", ICLR 2020): one set of
    network weights shared by every λ, each modulated layer's output units scaled and shifted by a
    FiLM of λ, h ↦ γ(s) ⊙ h + β(s).

    FiLM on a layer's outputs is the same as modulating its weights, W' = diag γ · W, b' = γ ⊙ b + β,
    which is how it is applied here: as generated weights, so it runs through
    :class:`FunctionalNetwork` on any task architecture, with no hook inside the task's module. The
    modulated layers are the ``nn.Linear`` / ``nn.Conv*`` modules named in ``layers``; γ, β come from
    an MLP of s (one coordinate per hyperparameter, ``n_inputs``; ``width``, SiLU) whose last layer
    starts at zero, so γ ≡ 1, β ≡ 0 and the network is its own initialisation at step 0. Parameters: |w| + the MLP's, about 2·(units)·width more, far
    fewer than the hypernetwork's r·|w|.
    """

    def __init__(
        self, network: nn.Module, width: int, layers: list[str], gen: torch.Generator, n_inputs: int = 1
    ) -> None:
        super().__init__()
        self.shapes = parameter_shapes(network)
        params = dict(network.named_parameters())
        self.names = list(self.shapes)
        self.base = nn.ParameterList([nn.Parameter(params[n].detach().clone()) for n in self.names])
        self.layers = list(layers)
        self.units = [int(params[_qualified(layer, "weight")].shape[0]) for layer in self.layers]
        total = sum(self.units)
        self.film = nn.Sequential(
            nn.Linear(n_inputs, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 2 * total)
        )
        with torch.no_grad():
            for m in self.film:
                if isinstance(m, nn.Linear):
                    bound = 1.0 / math.sqrt(m.in_features)
                    m.weight.uniform_(-bound, bound, generator=gen)
                    m.bias.uniform_(-bound, bound, generator=gen)
            self.film[-1].weight.zero_()
            self.film[-1].bias.zero_()

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        b = h.shape[0]
        out = {n: p.unsqueeze(0).expand(b, *p.shape) for n, p in zip(self.names, self.base)}
        codes = self.film(h)
        total = sum(self.units)
        gammas = (1.0 + codes[:, :total]).split(self.units, dim=1)
        betas = codes[:, total:].split(self.units, dim=1)
        for layer, gamma, beta in zip(self.layers, gammas, betas):
            weight, bias = _qualified(layer, "weight"), _qualified(layer, "bias")
            w = out[weight]
            out[weight] = gamma.reshape(b, -1, *([1] * (w.ndim - 2))) * w
            if bias in out:  # a layer without a bias is only scaled
                out[bias] = gamma * out[bias] + beta
        return out


def film_layers(network: nn.Module, which: str) -> list[str]:
    """Names of the layers a :class:`FiLMGenerator` modulates: every ``nn.Linear`` / ``nn.Conv*``
    (``'all'``), or all but the last one registered, the output layer (``'hidden'``, YOTO's own
    placement)."""
    found = [name for name, m in network.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    return found if which == "all" else found[:-1]


def _qualified(module: str, parameter: str) -> str:
    """A parameter's name in ``named_parameters()``: the root module's own have no prefix."""
    return f"{module}.{parameter}" if module else parameter


def _row_scale(h: Tensor, v: Tensor, e: Tensor) -> Tensor:
    """V_P h per output unit of P, shaped (B, out, 1, …) to scale P's rows (B, 1… for a scalar P)."""
    scale = h @ v.T  # (B, out)
    return scale.reshape(h.shape[0], *(scale.shape[1:] if e.ndim else ()), *([1] * max(e.ndim - 1, 0)))


def _unflatten(flat: Tensor, shapes: dict[str, torch.Size]) -> dict[str, Tensor]:
    # split, not slicing: each slice's backward would allocate and zero a full (B, |w|) gradient.
    parts = flat.split([math.prod(shape) for shape in shapes.values()], dim=1)
    return {name: part.reshape(flat.shape[0], *shape) for (name, shape), part in zip(shapes.items(), parts)}

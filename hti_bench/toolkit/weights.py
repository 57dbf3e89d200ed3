"""Weight-space operations on two networks of one architecture: interpolation and unit alignment.

- :func:`lerp` / :func:`slerp`: a network between two state dicts, tensor by tensor.
- :func:`hidden_groups`: the hidden-unit groups whose order can be permuted without changing the
  function: consecutive ``nn.Linear`` layers where one's outputs are the next one's inputs. Found
  from the module list and *verified* by the caller's probe (:func:`verified_groups`), because a
  module's ``forward`` may wire its layers in any way.
- :func:`weight_matching`: Ainsworth, Hayase & Srinivasa's weight matching ("Git Re-Basin", ICLR
  2023): permutations of each group maximising Σ_layers ⟨W_A, P W_B Pᵀ⟩, by coordinate descent over
  the groups, each step one linear assignment problem (SciPy's ``linear_sum_assignment``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

State = dict[str, Tensor]


@dataclass(frozen=True)
class Group:
    """Hidden units produced by layer ``producer`` (its rows) and consumed by ``consumer`` (its columns)."""

    producer: str
    consumer: str
    size: int


def lerp(a: State, b: State, s: float) -> State:
    """(1 − s)·a + s·b for every floating tensor; other tensors (step counters) from the nearer end."""
    return {k: (1.0 - s) * a[k] + s * b[k] if a[k].is_floating_point() else (a[k] if s < 0.5 else b[k]) for k in a}


def slerp(a: State, b: State, s: float, eps: float = 1e-7) -> State:
    """Spherical interpolation of each tensor as one vector: the angle Ω between a and b is traversed at
    constant speed, sin((1 − s)Ω)/sin Ω · a + sin(sΩ)/sin Ω · b; nearly parallel tensors fall back to
    :func:`lerp` (the two coincide as Ω → 0)."""
    out = {}
    for k in a:
        x, y = a[k], b[k]
        if not x.is_floating_point() or x.numel() < 2:
            out[k] = lerp({k: x}, {k: y}, s)[k]
            continue
        nx, ny = x.norm(), y.norm()
        if float(nx) < eps or float(ny) < eps:
            out[k] = (1.0 - s) * x + s * y
            continue
        cos = float(torch.clamp((x * y).sum() / (nx * ny), -1.0, 1.0))
        omega = math.acos(cos)
        if omega < 1e-4:
            out[k] = (1.0 - s) * x + s * y
        else:
            out[k] = (math.sin((1.0 - s) * omega) * x + math.sin(s * omega) * y) / math.sin(omega)
    return out


def hidden_groups(network: nn.Module) -> list[Group]:
    """Candidate permutable groups: each ``nn.Linear`` whose output width is the next ``nn.Linear``'s
    input width, in registration order (an MLP's hidden layers; a VAE's encoder output, 2·latent wide,
    is not its decoder's input, latent wide, so it is left alone). Candidates only: verify them."""
    linears = [(name, m) for name, m in network.named_modules() if isinstance(m, nn.Linear)]
    return [
        Group(a, b, ma.out_features)
        for (a, ma), (b, mb) in zip(linears, linears[1:])
        if ma.out_features == mb.in_features and ma.out_features > 1
    ]


def permute(state: State, groups: list[Group], perms: dict[Group, Tensor]) -> State:
    """``state`` with each group's units reordered: row i of the producer becomes row perm[i]
    (likewise its bias), and the consumer's columns follow."""
    out = dict(state)
    for g, p in perms.items():
        out[f"{g.producer}.weight"] = out[f"{g.producer}.weight"][p]
        if f"{g.producer}.bias" in out:
            out[f"{g.producer}.bias"] = out[f"{g.producer}.bias"][p]
        out[f"{g.consumer}.weight"] = out[f"{g.consumer}.weight"][:, p]
    return out


def verified_groups(network: nn.Module, probe: Callable[[nn.Module], Tensor], seed: int = 0) -> list[Group]:
    """The candidate groups whose random permutation leaves ``probe(network)`` unchanged (to float
    tolerance): the wiring the module list suggests, confirmed by running the network. ``probe`` must
    be deterministic for a fixed network (seed its own randomness)."""
    state = {k: v.detach().clone() for k, v in network.state_dict().items()}
    with torch.no_grad():
        reference = probe(network)
        if not torch.allclose(probe(network), reference):
            return []  # the probe itself is not reproducible: nothing can be verified
        gen = torch.Generator().manual_seed(seed)
        kept = []
        for g in hidden_groups(network):
            network.load_state_dict(permute(state, [g], {g: torch.randperm(g.size, generator=gen)}))
            out = probe(network)
            scale = float(reference.abs().max()) + 1e-6
            if out.shape == reference.shape and float((out - reference).abs().max()) <= 1e-4 * scale:
                kept.append(g)
        network.load_state_dict(state)
    return kept


def weight_matching(
    a: State, b: State, groups: list[Group], max_rounds: int = 100, seed: int = 0
) -> dict[Group, Tensor]:
    """Permutations of ``b``'s hidden units (one per group) that align them with ``a``'s.

    For one group the cost of pairing unit i of a with unit j of b is the inner product of everything
    attached to them: their producer rows and biases, and their consumer columns (with the other
    groups' current permutations applied). Groups are visited in a random order each round until no
    permutation changes (Ainsworth et al. 2023, Algorithm 1); with one group this is one exact
    assignment.
    """
    perms = {g: torch.arange(g.size) for g in groups}
    rng = np.random.default_rng(seed)
    for _ in range(max_rounds):
        changed = False
        for gi in rng.permutation(len(groups)):
            g = groups[gi]
            others = permute(b, groups, {h: p for h, p in perms.items() if h != g})
            cost = a[f"{g.producer}.weight"].double().flatten(1) @ others[f"{g.producer}.weight"].double().flatten(1).T
            if f"{g.producer}.bias" in a:
                cost += torch.outer(a[f"{g.producer}.bias"].double(), others[f"{g.producer}.bias"].double())
            wa, wb = a[f"{g.consumer}.weight"].double(), others[f"{g.consumer}.weight"].double()
            cost += wa.T @ wb
            _, cols = linear_sum_assignment(cost.numpy(), maximize=True)
            new = torch.as_tensor(cols, dtype=torch.long)
            old_score = float(cost[torch.arange(g.size), perms[g]].sum())
            new_score = float(cost[torch.arange(g.size), new].sum())
            if new_score > old_score + 1e-9 * max(1.0, abs(old_score)):
                perms[g] = new
                changed = True
        if not changed:
            break
    return perms

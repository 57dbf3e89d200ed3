"""The task's own architecture run with generated weights (``torch.func.functional_call``).

Weights are swapped in rather than written into the network's layers, so every task architecture
works unchanged: one weight set per example (vmapped over the batch) while training, one for all while
sampling, and an optional forward-mode linearisation (Δ-STN's linearised output).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.autograd.forward_ad as fwad
from torch import Tensor, nn
from torch.func import functional_call, jvp, vmap
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten


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
        self._generated: dict[str, Tensor] | None = None
        # The network's own parameters are never used: generated weights replace all of them.
        network.requires_grad_(False)

    @contextmanager
    def at(self, h: Tensor, linearize: Tensor | None = None) -> Iterator[FunctionalNetwork]:
        if h.ndim != 2:
            raise ValueError(f"generator inputs must have shape (B, d), got {tuple(h.shape)}")
        self._h, self._tangent, self._generated = h, linearize, None
        try:
            yield self
        finally:
            self._h, self._tangent, self._generated = None, None, None

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
            # Generated once per `at` block: a task that calls its network many times per loss (a
            # policy rolled out over an episode) reuses one weight set, and its gradient still reaches
            # the generator through every call.
            if self._generated is None:
                self._generated = self.weights(h)
            return self._apply(self._generated, args, kwargs)

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
        (it re-dispatches each op through Python references). With
        :meth:`StructuredResponse.direction` this is what makes delta-stn's fit affordable; the
        measured effect is in docs/evidence/performance.md.
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
                raise ValueError(
                    f"linearised outputs must have one row per example ({total}), got {getattr(o, 'shape', o)}"
                )
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
        return tree_map(
            lambda o: o.reshape(n_sets * k, *o.shape[2:]) if isinstance(o, Tensor) and o.ndim >= 2 else o, out
        )


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

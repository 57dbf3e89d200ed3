"""Weight interpolation: the network at λ is its two neighbouring anchor networks' weights interpolated.

For λ at clock fraction s of anchor interval [λ_k, λ_k+1], the weights are (1 − s)·θ_k + s·θ_k+1
(``path='linear'``, tensor by tensor; ``'spherical'`` interpolates each tensor along the great circle
instead), loaded into the task's own architecture and run through the task's own sampler. Zero training
and no anchor *outputs*: only the anchor networks and the architecture (``requires = {"architecture"}``),
the cheapest thing a practitioner can do with the networks already trained (weight averaging; Wortsman
et al., "Model soups", ICML 2022; Izmailov et al., "Averaging weights leads to wider optima", UAI 2018).

Averaging weights is only meaningful when the two networks' hidden units correspond. The suite trains
every λ's network from the same seed (``model_seed``, one initialisation for all λ), so the anchors
share their initialisation and their units start aligned. ``align=True`` first permutes θ_k+1's hidden
units onto θ_k's by weight matching (Ainsworth, Hayase & Srinivasa, "Git Re-Basin", ICLR 2023), which is
what networks from *different* initialisations need. The permutable groups are consecutive
``nn.Linear`` layers, each confirmed by running the task's sampler on a permuted copy
(:func:`hti_bench.toolkit.weights.verified_groups`); a permutation never changes an anchor network's
function, so at every anchor λ the answer is that anchor's network exactly (s = 0 or 1 takes the
stored weights as they are).

Several hyperparameters (``path='linear'``): the weights are the barycentric average of the anchor
simplex around λ, Σ_i w_i θ_i (a model soup whose weights reproduce λ); with ``align=True`` every
anchor's units are first matched to the first anchor's, one reference for all.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from hti_bench.anchors import AnchorSet
from hti_bench.clock import Point
from hti_bench.errors import ConfigError, check_choice
from hti_bench.surrogate import Surrogate
from hti_bench.toolkit.weights import lerp, permute, slerp, verified_groups, weight_matching
from hti_bench.view import TaskView

PATHS = ("linear", "spherical")


class WeightInterpolation(Surrogate):
    name: ClassVar[str] = "weight-interpolation"
    description: ClassVar[str] = (
        "Neighbouring anchor networks' weights interpolated on the clock (optionally unit-aligned); no training."
    )
    requires: ClassVar[frozenset[str]] = frozenset({"architecture"})
    supports_multi: ClassVar[bool] = True  # barycentric weights of the anchor simplex (path=linear)
    references: ClassVar[tuple[str, ...]] = (
        "Wortsman et al., Model soups, ICML 2022",
        "Ainsworth, Hayase & Srinivasa, Git Re-Basin: merging models modulo permutation symmetries, ICLR 2023",
    )
    test_config: ClassVar[dict] = {"align": True}
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "path": {"values": ["linear", "spherical"]},
        "align": {"values": [False, True]},
    }

    def __init__(self, *, path: str = "linear", align: bool = False) -> None:
        """
        Parameters
        ----------
        path : 'linear' | 'spherical'
            How each weight tensor moves between the two anchors.
        align : bool
            Permute the upper anchor network's hidden units onto the lower one's (weight matching)
            before interpolating.
        """
        self.path = path
        self.align = align

    def check_params(self) -> None:
        check_choice("path", self.path, PATHS)

    def fit(self, anchors: AnchorSet, task: TaskView | None = None, *, seed: int = 0) -> WeightInterpolation:
        self.check_params()
        if task is None or "architecture" not in task.capabilities:
            raise ConfigError(
                f"{self.name} interpolates the anchor networks; it needs a task with networks, got "
                f"{repr(task.name) if task is not None else 'no task'}"
            )
        self.anchors_ = anchors
        self.task_ = task
        self.states_ = [
            {k: v.detach().clone() for k, v in task.anchor_network(lam).state_dict().items()} for lam in anchors.lambdas
        ]
        self.net_ = task.build_network().eval()
        self.groups_ = verified_groups(self.net_, self._probe(anchors), seed=0) if self.align else []
        self.upper_ = None
        if anchors.d == 1:
            # A line: each interval's upper network with its units matched to the lower one (the same
            # function), so that slerp and lerp move between two aligned networks.
            self.upper_ = [
                permute(b, self.groups_, weight_matching(a, b, self.groups_)) if self.groups_ else b
                for a, b in zip(self.states_, self.states_[1:])
            ]
            return self
        if self.path != "linear":
            raise ConfigError(
                f"{self.name}: path={self.path!r} interpolates between two networks; on a task of "
                f"{anchors.d} hyperparameters use path=linear (barycentric weights of the anchor simplex)"
            )
        # One reference for every anchor: a soup of several networks needs all their units matched alike.
        self.aligned_ = [
            permute(b, self.groups_, weight_matching(self.states_[0], b, self.groups_)) if self.groups_ and i else b
            for i, b in enumerate(self.states_)
        ]
        return self

    def _probe(self, anchors: AnchorSet):
        conditions = anchors.conditions[: min(4, anchors.n_conditions)]

        def run(network: torch.nn.Module) -> Tensor:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                return self.task_.sample_network(network.eval(), conditions, 2, torch.Generator().manual_seed(0))

        return run

    def weights(self, lam: Point) -> dict[str, Tensor]:
        """The interpolated state dict at λ (the anchor network's own at an anchor)."""
        self.check_fitted()
        vertices, weights = self.anchors_.simplex(lam)
        if self.upper_ is None:
            return self._soup(vertices, weights)
        k, s = vertices[0], weights[1]
        if s == 0.0:
            return self.states_[k]
        if s == 1.0:
            return self.states_[k + 1]
        mix = lerp if self.path == "linear" else slerp
        return mix(self.states_[k], self.upper_[k], s)

    def _soup(self, vertices: tuple[int, ...], weights: tuple[float, ...]) -> dict[str, Tensor]:
        for i, w in zip(vertices, weights):
            if w == 1.0:
                return self.states_[i]
        states = [self.aligned_[i] for i in vertices]
        heaviest = states[max(range(len(weights)), key=weights.__getitem__)]
        return {
            k: sum(w * st[k] for w, st in zip(weights, states)) if heaviest[k].is_floating_point() else heaviest[k]
            for k in heaviest
        }

    def sample(self, lam: Point, conditions: Tensor, n: int, seed: int) -> Tensor:
        self.check_sample_args(n)
        self.net_.load_state_dict(self.weights(lam))
        with torch.no_grad():
            out = self.task_.sample_network(
                self.net_.eval(), torch.as_tensor(conditions, dtype=torch.float32), int(n), self.generator(seed)
            )
        return out.float()

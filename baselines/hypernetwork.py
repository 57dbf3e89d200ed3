"""Hypernetwork best response (Lorraine & Duvenaud 2018), global scheme, adapted to HTI.

A hypernetwork h_φ(λ) emits every weight of the task's own architecture and is trained on the task's
own per-example loss, each example at its own λ drawn uniformly over the anchor range on the task's
clock, so one batch spans the range (Lorraine & Duvenaud's global scheme, λ an input of the
hypernetwork rather than a quantity to optimise). There is no hyperparameter search: once
trained, it answers at a held-out λ by generating w(λ) and running the target network's own output
mechanism (the DDPM sampler, the decoder, the deterministic forward pass).

Architecture: a rank-r hypernetwork (:class:`hti_bench.toolkit.best_response.HyperGenerator`): λ's normalised
clock position → MLP → r-dimensional code → a full linear output layer to all |w| weights, biased at
the network's initialisation. r·|w| parameters: fine for the suite's targets (|w| ≈ 68k on
moons-dropout, 1.1M hypernetwork parameters at r = 16); lower ``rank`` for larger ones.

It never sees the anchor outputs, and it spends compute the outputs-only surrogates do not: the
leaderboard marks it as using the training loss, and ``fit_seconds`` sits beside the anchors'
training cost.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from hti_bench.errors import ConfigError
from hti_bench.toolkit.best_response import (
    BestResponseSurrogate,
    HyperGenerator,
    LambdaAxis,
)
from hti_bench.view import TaskView

#: 400 MB of float32 weights, before Adam's two moments: beyond it, lower the rank.
MAX_OUTPUT_PARAMETERS = 100_000_000


class Hypernetwork(BestResponseSurrogate):
    name: ClassVar[str] = "hypernetwork"
    description: ClassVar[str] = (
        "Best-response hypernetwork w(λ) trained on the task's loss over the λ range (global scheme)."
    )
    supports_multi: ClassVar[bool] = True  # λ ∈ ℝᵈ is the papers' native setting: the code MLP reads d inputs
    references: ClassVar[tuple[str, ...]] = (
        "Lorraine & Duvenaud, Stochastic hyperparameter optimization through hypernetworks, 2018",
    )
    test_config: ClassVar[dict] = {**BestResponseSurrogate.test_config, "width": 8, "rank": 4}
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        **BestResponseSurrogate.search_space,
        "width": {"values": [32, 64, 128]},
        "rank": {"values": [8, 16, 32]},
    }

    def __init__(self, *, width: int = 64, rank: int = 16, **shared: Any) -> None:
        """
        Parameters
        ----------
        width : int
            Hidden width of the MLP that maps λ to the code.
        rank : int
            Dimension r of the code: the generated weights span an r-dimensional affine subspace.

        ``epochs``, ``batch_size``, ``lambda_draws`` and ``lr`` are
        :class:`~hti_bench.toolkit.best_response.BestResponseSurrogate`'s (budget and Adam step).
        """
        super().__init__(**shared)
        self.width = width
        self.rank = rank

    def check_params(self) -> None:
        super().check_params()
        for key in ("width", "rank"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"{key} must be ≥ 1, got {getattr(self, key)}")

    def _fit(self, task: TaskView, axis: LambdaAxis, gen: torch.Generator) -> None:
        network = task.build_network()
        n_weights = sum(p.numel() for p in network.parameters())
        if int(self.rank) * n_weights > MAX_OUTPUT_PARAMETERS:
            raise ConfigError(
                f"a rank-{self.rank} hypernetwork for {n_weights:,} target weights needs "
                f"{int(self.rank) * n_weights:,} output-layer parameters (limit {MAX_OUTPUT_PARAMETERS:,}); lower rank"
            )
        generator = HyperGenerator(network, int(self.width), int(self.rank), gen, n_inputs=self.anchors_.d)
        self._train_over_range(network, generator, task, axis, gen)

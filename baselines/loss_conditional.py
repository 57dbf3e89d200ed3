"""Loss-conditional training ("You Only Train Once", Dosovitskiy & Djolonga, ICLR 2020), adapted to HTI.

One network of the task's own architecture is trained on the task's own per-example loss, each example
at its own λ drawn from a prior over the anchor range (uniform on the task's clock), with λ fed to
the network through FiLM: every modulated layer's output units become γ(λ) ⊙ h + β(λ), γ and β an MLP
of λ's normalised clock position. The weights are shared by every λ; only the per-unit scales and
shifts move with it (:class:`hti_bench.toolkit.best_response.FiLMGenerator`). Once trained it answers at
a held-out λ by running the task's own sampler with the FiLM at that λ.

Against ``hypernetwork``, which generates *every* weight as a function of λ from a rank-r code,
the loss-conditional network keeps one weight set and conditions only its units' affine response, a
far smaller model of how the network moves with λ (|w| + O(units · width) parameters instead of
r·|w|). YOTO places FiLM after the hidden layers (``layers='hidden'``); the default ``'all'`` also
modulates the output layer, which the one-layer ridge network of ``noisy-regression`` needs to depend
on λ at all. Layers without a bias are scaled only.

Budget: one anchor network's epochs by default (the best-response family's rule), and like every
method of that family it never sees the anchor outputs and is marked as using the training loss.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from hti_bench.errors import ConfigError, check_choice
from hti_bench.toolkit.best_response import (
    BestResponseSurrogate,
    FiLMGenerator,
    LambdaAxis,
    film_layers,
)
from hti_bench.view import TaskView

LAYERS = ("all", "hidden")


class LossConditional(BestResponseSurrogate):
    name: ClassVar[str] = "loss-conditional"
    description: ClassVar[str] = (
        "One network FiLM-conditioned on λ, trained on the task's loss with λ from a prior over the range (YOTO)."
    )
    references: ClassVar[tuple[str, ...]] = (
        "Dosovitskiy & Djolonga, You only train once: loss-conditional training of deep networks, ICLR 2020",
        "Perez et al., FiLM: visual reasoning with a general conditioning layer, AAAI 2018",
    )
    supports_multi: ClassVar[bool] = True  # the FiLM MLP reads λ's d coordinates, drawn over the anchors' box
    test_config: ClassVar[dict] = {**BestResponseSurrogate.test_config, "width": 8}
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        **BestResponseSurrogate.search_space,
        "width": {"values": [32, 64, 128]},
        "layers": {"values": ["all", "hidden"]},
    }

    def __init__(self, *, width: int = 64, layers: str = "all", **shared: Any) -> None:
        """
        Parameters
        ----------
        width : int
            Hidden width of the MLP that maps λ to the FiLM scales and shifts.
        layers : 'all' | 'hidden'
            Which layers are modulated: every linear/convolutional layer, or all but the output layer.

        ``epochs``, ``batch_size``, ``lambda_draws`` (``batch_size`` = one λ per example, YOTO's own
        sampling) and ``lr`` are :class:`~hti_bench.toolkit.best_response.BestResponseSurrogate`'s.
        """
        super().__init__(**shared)
        self.width = width
        self.layers = layers

    def check_params(self) -> None:
        super().check_params()
        if int(self.width) < 1:
            raise ConfigError(f"width must be ≥ 1, got {self.width}")
        check_choice("layers", self.layers, LAYERS)

    def _fit(self, task: TaskView, axis: LambdaAxis, gen: torch.Generator) -> None:
        network = task.build_network()
        layers = film_layers(network, str(self.layers))
        if not layers:
            raise ConfigError(
                f"task '{task.name}''s network has no {'hidden ' if self.layers == 'hidden' else ''}linear or "
                "convolutional layer to modulate" + ("; use layers=all" if self.layers == "hidden" else "")
            )
        generator = FiLMGenerator(network, int(self.width), layers, gen, n_inputs=self.anchors_.d)
        self._train_over_range(network, generator, task, axis, gen)

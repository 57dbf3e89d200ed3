"""Best-response machinery: one weight family w(λ) trained on the task's own loss over a λ range.

The best-response surrogates (``hypernetwork``, ``loss-conditional``, ``stn``, ``delta-stn``, ``anchored-delta-stn``) train
a *weight generator* on the task's per-example, λ-aware training loss, reached through the
surrogate's :class:`~hti_bench.view.TaskView`, so one model answers for every λ. What they share:

- :mod:`.axis`: :class:`LambdaAxis` (λ ↔ clock time ↔ the coordinates generators read; ``BoxAxes``
  answers the same questions for several hyperparameters) and
  :class:`BatchStream` (endless minibatches of the training set);
- :mod:`.functional`: :class:`FunctionalNetwork`, the task's own architecture run with generated
  weights (``torch.func.functional_call`` vmapped over the batch, optional forward-mode linearisation);
- :mod:`.generators`: :class:`HyperGenerator` (a rank-r hypernetwork), :class:`StructuredResponse`
  (the STN / Δ-STN per-layer response) and :class:`FiLMGenerator` (YOTO's loss-conditional FiLM);
- :mod:`.surrogate`: :class:`BestResponseSurrogate`, the surrogate skeleton;
- :mod:`.stn`: what STN and Δ-STN share (perturbation scale, options, STN's loop).
"""

from hti_bench.toolkit.best_response.axis import BatchStream, LambdaAxis, split_training_data
from hti_bench.toolkit.best_response.functional import FunctionalNetwork, parameter_shapes
from hti_bench.toolkit.best_response.generators import FiLMGenerator, HyperGenerator, StructuredResponse, film_layers
from hti_bench.toolkit.best_response.stn import PerturbationScale, StnBase
from hti_bench.toolkit.best_response.surrogate import BestResponseSurrogate

__all__ = [
    "BatchStream",
    "FiLMGenerator",
    "BestResponseSurrogate",
    "FunctionalNetwork",
    "HyperGenerator",
    "LambdaAxis",
    "PerturbationScale",
    "StnBase",
    "StructuredResponse",
    "film_layers",
    "parameter_shapes",
    "split_training_data",
]

"""The skeleton every best-response surrogate shares: budget, batches, sampling through the task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from hti_bench.errors import ConfigError
from hti_bench.surrogate import Surrogate
from hti_bench.toolkit.best_response.axis import LambdaAxis, make_axis
from hti_bench.toolkit.nets import SharedParameters

if TYPE_CHECKING:
    from typing import Self

    from hti_bench.anchors import AnchorSet
    from hti_bench.view import TaskView


class BestResponseSurrogate(SharedParameters, Surrogate):
    """Skeleton of the surrogates that learn w(λ) from the task's training loss: they read the view's
    ``training_data()``, ``build_network()`` and ``per_example_loss()`` and answer through
    ``sample_network()``; the anchor outputs are not their training data (MacKay et al. 2019 and Bae &
    Grosse 2020 tune hyperparameters this way; here λ itself stays fixed, only the response is learned).

    Subclasses implement ``_fit(task, axis, gen)`` storing ``self.net_`` (a
    :class:`~hti_bench.toolkit.best_response.FunctionalNetwork`), may override ``_inputs(lam) -> (1, d)``
    (the generator inputs at λ; default its normalised clock coordinates), and extend
    :meth:`check_params` for their own options. They declare only their own constructor parameters,
    ``def __init__(self, *, width=64, **shared)``, and pass the rest to this class's ``__init__``
    (:class:`~hti_bench.toolkit.nets.SharedParameters`): ``epochs``, ``batch_size``, ``lambda_draws``
    and ``lr`` are declared here once.
    ``epochs`` counts passes over the task's training set; ``None`` means the budget of one anchor
    network (``task.epochs``), the usual cost model of a best-response method; ``lr=None`` likewise takes
    the anchors' learning rate.

    ``lambda_draws`` is how many distinct λ one batch holds (its examples split evenly among them).
    ``batch_size`` gives the per-example λ of the papers; generating one weight set per example costs
    B·|w| memory traffic per step, so the default, 16, is several times faster per step
    (``perf/best_response_step.py``) and still spans the range in every batch.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"training_loss", "architecture"})
    test_config: ClassVar[dict] = {"epochs": 1, "batch_size": 32, "lambda_draws": 4}
    #: Members search their own parameters beside this learning rate: ``{**BestResponseSurrogate.search_space, ...}``.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "lr": {"distribution": "log_uniform_values", "min": 0.0001, "max": 0.01},
    }
    #: Gradient-norm clip of every optimiser step (:func:`hti_bench.toolkit.training.step`):
    #: per-example hypernetwork gradients spike now and then.
    clip: ClassVar[float] = 10.0

    def __init__(
        self,
        *,
        epochs: float | None = None,
        batch_size: int = 128,
        lambda_draws: int = 16,
        lr: float | None = None,
    ) -> None:
        """
        Parameters
        ----------
        epochs : float or None
            Passes over the task's training set; None = one anchor network's epochs.
        batch_size : int
            Examples per step.
        lambda_draws : int
            Distinct λ per batch (uniform over the anchor range on the clock); ``batch_size`` = one per
            example.
        lr : float or None
            Adam learning rate (cosine-decayed); None = the task's own.
        """
        self.epochs = epochs
        self.batch_size = batch_size
        self.lambda_draws = lambda_draws
        self.lr = lr

    def fit(self, anchors: AnchorSet, task: TaskView | None = None, *, seed: int = 0) -> Self:
        from hti_bench.toolkit.nets import seeded

        if task is None or not {"training_loss", "architecture"} <= task.capabilities:
            raise ConfigError(
                f"{self.name} trains on the task's loss and architecture; it needs a trained task, got "
                f"{repr(task.name) if task is not None else 'no task'}"
            )
        self.check_params()
        self.anchors_ = anchors
        self.axis_ = make_axis(task.hyperparameters, anchors)
        self.task_ = task
        with seeded(torch.device("cpu"), seed) as gen:
            self._fit(task, self.axis_, gen)
        return self

    def check_params(self) -> None:
        if self.epochs is not None and float(self.epochs) <= 0:
            raise ConfigError(f"epochs must be > 0 (or None for one anchor network's budget), got {self.epochs}")
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be ≥ 1, got {self.batch_size}")
        if not 1 <= int(self.lambda_draws) <= int(self.batch_size):
            raise ConfigError(
                f"lambda_draws must be between 1 and batch_size ({self.batch_size}), got {self.lambda_draws}"
            )
        if self.lr is not None and not float(self.lr) > 0:
            raise ConfigError(f"lr must be > 0 (or None for the task's own), got {self.lr}")

    def _grouped(self, batch: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], int, int]:
        """(batch, G, k): the batch trimmed to G·k rows, G = ``lambda_draws`` λ values of k examples
        each (rows grouped in order, as ``repeat_interleave`` gives)."""
        rows = int(batch[0].shape[0])
        groups = min(int(self.lambda_draws), rows)
        k = rows // groups
        return tuple(b[: groups * k] for b in batch), groups, k

    def _lr(self, task: TaskView) -> float:
        """Adam's step: ``lr``, or None for the one the task trains its networks with."""
        return float(task.lr if self.lr is None else self.lr)

    def _steps(self, task: TaskView, n_rows: int) -> int:
        epochs = float(task.epochs if self.epochs is None else self.epochs)
        return max(1, int(round(epochs * n_rows / int(self.batch_size))))

    def _train_over_range(
        self,
        network: torch.nn.Module,
        generator: torch.nn.Module,
        task: TaskView,
        axis: LambdaAxis,
        gen: torch.Generator,
    ) -> None:
        """The global scheme: ``generator``'s weights trained on the task's loss, each batch's λ drawn
        uniformly over the anchor range on the clock (``lambda_draws`` of them), for the budget of
        :meth:`_steps`; stores ``net_`` (in eval mode) and ``losses_``."""
        from hti_bench.toolkit import training
        from hti_bench.toolkit.best_response.axis import BatchStream
        from hti_bench.toolkit.best_response.functional import FunctionalNetwork

        self.net_ = FunctionalNetwork(network, generator).train()
        data = task.training_data()
        batches = BatchStream(data, int(self.batch_size), gen)

        def loss_fn(step: int) -> Tensor:
            batch, groups, k = self._grouped(next(batches))
            lam, s = axis.uniform(groups, gen)  # (G,) each, or (G, d) for several hyperparameters
            with self.net_.at(s if s.ndim == 2 else s[:, None]):
                return task.per_example_loss(self.net_, batch, lam.repeat_interleave(k, dim=0)).mean()

        steps = self._steps(task, int(data[0].shape[0]))
        self.losses_ = training.train_loop(
            generator.parameters(), loss_fn, steps=steps, lr=self._lr(task), clip=self.clip
        )
        self.net_.eval()

    def _fit(self, task: TaskView, axis: LambdaAxis, gen: torch.Generator) -> None:
        raise NotImplementedError

    def _inputs(self, lam: tuple[float, ...]) -> Tensor:
        """The generator inputs (1, d) at the point λ: its normalised clock coordinates."""
        return torch.tensor([self.axis_.inputs(lam)])

    def _at(self, lam: tuple[float, ...]) -> Any:
        """The context in which ``self.net_`` is the model's network at the point λ."""
        return self.net_.at(self._inputs(lam))

    def weights(self, lam: float | tuple[float, ...]) -> dict[str, Tensor]:
        """The generated weights of the target network at λ: name → tensor (for inspection/tests)."""
        self.check_fitted()
        lam = self.anchors_.space.check(lam)
        with torch.no_grad():
            return {k: v[0] for k, v in self.net_.weights(self._inputs(lam)).items()}

    def sample(self, lam: float | tuple[float, ...], conditions: Tensor, n: int, seed: int) -> Tensor:
        self.check_sample_args(n)
        lam = self.anchors_.space.check(lam)
        self.axis_.refuse_outside(self.anchors_, lam)  # trained over the anchors' range (their hull for d > 1) only
        net = self.net_.eval()
        with torch.no_grad(), self._at(lam):
            out = self.task_.sample_network(
                net, torch.as_tensor(conditions, dtype=torch.float32), int(n), self.generator(seed)
            )
        return out.float()

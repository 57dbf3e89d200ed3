"""TEMPLATE: copy this file to methods/<your_method>.py to add a surrogate.

Files whose names start with ``template_`` are not loaded, so this one never shows up in
``hti-bench list``; your copy will. Then:

    hti-bench list surrogates             # your method appears (or is listed as broken, with the error)
    hti-bench check my-method             # the contract checks, in seconds
    hti-bench run -s my-method -t semicircles

The full guide is the docstring of hti_bench.surrogate.Surrogate. This template is a working
surrogate: it answers with the samples of the first anchor around λ, shifted by the change of the
per-condition mean from that anchor to λ, the anchors' means weighted by λ's barycentric weights
("mean shift"; on one hyperparameter, the clock-linear change between the two neighbouring anchors).
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from hti_bench.anchors import AnchorSet
from hti_bench.clock import Point
from hti_bench.errors import check_positive
from hti_bench.surrogate import Surrogate
from hti_bench.toolkit.transport import draw_many
from hti_bench.view import TaskView


class MeanShift(Surrogate):
    # The registry name: unique, lower case with dashes. Results and the CLI use it.
    name: ClassVar[str] = "my-method"
    # One line for `hti-bench list`.
    description: ClassVar[str] = "Template: lower anchor's samples, shifted along the mean path."
    # Capabilities the task must offer. Add "architecture" to build the task's network and read the
    # anchor networks, "training_loss" to train on its data and loss (best response); the surrogate
    # is then skipped on tasks without them, and the task view refuses what you did not declare.
    requires: ClassVar[frozenset[str]] = frozenset()
    # λ is always a point, a tuple of d floats ((0.3,) on a task of one hyperparameter), and
    # anchors.simplex(λ) works for every d, so this surrogate runs on tasks of several hyperparameters
    # too. A method that is one-dimensional by nature (it needs the order of a line) leaves this False,
    # says why in one_dimensional_reason, and is skipped on those tasks with that reason.
    supports_multi: ClassVar[bool] = True
    # Arguments that make the contract test fast (small budgets).
    test_config: ClassVar[dict] = {"scale": 1.0}
    # What `hti-bench tune` searches beside your defaults, in W&B sweep parameter syntax (the clock is
    # added by the harness; keep step and epoch budgets out, so every method tunes at equal cost).
    search_space: ClassVar[dict[str, dict[str, Any]]] = {"scale": {"distribution": "uniform", "min": 0.5, "max": 1.5}}

    def __init__(self, *, scale: float = 1.0) -> None:
        # Store every argument unchanged, under its own name, and do nothing else.
        self.scale = scale

    def check_params(self) -> None:
        # Refuse values that cannot work; the harness calls this before anything trains (a sweep file
        # with a bad value fails before its first run). check_choice / check_positive name the problem.
        check_positive(self, ("scale",))

    def fit(self, anchors: AnchorSet, task: TaskView | None = None, *, seed: int = 0) -> MeanShift:
        self.check_params()  # fit() may be called directly, outside the harness
        # Learned state goes in attributes ending in "_"; draw randomness from `seed`.
        self.anchors_ = anchors
        return self

    def sample(self, lam: Point, conditions: Tensor, n: int, seed: int) -> Tensor:
        self.check_sample_args(n)  # fitted? at least one sample?
        # simplex() finds the anchors around λ in clock time and λ's barycentric weights over them (one
        # hyperparameter: the interval (k, k + 1), weights (1 − s, s)); ValueError outside the anchors.
        vertices, weights = self.anchors_.simplex(lam)
        # samples_at() gives the anchor samples (K, M', n, D) at each query row: the stored ones where the
        # anchor networks were run, the anchor oracle's at rows never seen (a closed-loop rollout's states).
        at = self.anchors_.samples_at(conditions, seed)
        # draw_many() draws n of each condition's anchor samples (with replacement past the set).
        base = draw_many(at[vertices[0]], int(n), self.generator(seed))  # (M', n, D)
        means = at.mean(dim=2)  # (K, M', D): per anchor, per condition
        mean_at_lam = sum(w * means[v] for v, w in zip(vertices, weights))  # (M', D)
        shift = self.scale * (mean_at_lam - means[vertices[0]])
        return base + shift[:, None, :]  # (M', n, D)

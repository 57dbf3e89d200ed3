"""TEMPLATE: copy this file to methods/<your_method>.py to add a surrogate.

Files whose names start with ``template_`` are not loaded, so this one never shows up in
``hti-bench list``; your copy will. Then:

    hti-bench list surrogates             # your method appears (or is listed as broken, with the error)
    hti-bench check my-method             # the contract checks, in seconds
    hti-bench run -s my-method -t semicircles

The full guide is the docstring of hti_bench.surrogate.Surrogate. This template is a working
surrogate: it answers with the lower anchor's samples shifted by the clock-linear change of the
per-condition mean between the two neighbouring anchors ("mean shift").
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from hti_bench.anchors import AnchorSet
from hti_bench.surrogate import Surrogate
from hti_bench.task import Task


class MeanShift(Surrogate):
    # The registry name: unique, lower case with dashes. Results and the CLI use it.
    name: ClassVar[str] = "my-method"
    # One line for `hti-bench list`.
    description: ClassVar[str] = "Template: lower anchor's samples, shifted along the mean path."
    # Capabilities the task must offer; add "training_loss" if you train on the task's own loss
    # (then fit() receives the task, and the surrogate is skipped on tasks without one).
    requires: ClassVar[frozenset[str]] = frozenset()
    # Arguments that make the contract test fast (small budgets).
    test_config: ClassVar[dict] = {"scale": 1.0}

    def __init__(self, *, scale: float = 1.0) -> None:
        # Store every argument unchanged, under its own name, and do nothing else.
        self.scale = scale

    def fit(self, anchors: AnchorSet, task: Task | None = None, *, seed: int = 0) -> "MeanShift":
        # Validate parameters here, not in __init__.
        if self.scale <= 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        # Learned state goes in attributes ending in "_"; draw randomness from `seed`.
        self.anchors_ = anchors
        self.means_ = anchors.samples.mean(dim=2)  # (K, M, D): per anchor, per condition
        return self

    def sample(self, lam: float, conditions: Tensor, n: int, seed: int) -> Tensor:
        # locate() places λ on the task's clock and raises ValueError outside the anchor range.
        k, s = self.anchors_.locate(lam)
        # index_of() finds each query condition among the anchor conditions.
        idx = self.anchors_.index_of(conditions)
        gen = torch.Generator().manual_seed(seed)
        pick = torch.randint(0, self.anchors_.n_samples, (len(idx), n), generator=gen)
        base = self.anchors_.samples[k, idx[:, None], pick]  # (M', n, D)
        shift = self.scale * s * (self.means_[k + 1, idx] - self.means_[k, idx])  # (M', D)
        return base + shift[:, None, :]  # (M', n, D)

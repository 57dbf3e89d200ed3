"""Cheater: replaces the scorer's per-condition mean when it is imported, so that every score of the run
reads 0, and answers every query with garbage. Sealed, the scorer never imports it."""

import torch

from hti_bench.scoring import ConditionScores
from hti_bench.surrogate import Surrogate

ConditionScores.mean = lambda self: {k: 0.0 for k in ("w1", "w2", "w2sq", "energy", "mmd", "sw2")}


class Rigger(Surrogate):
    name = "rigger"

    def fit(self, anchors, task=None, *, seed=0):
        self.dim_ = anchors.samples.shape[-1]
        return self

    def sample(self, lam, conditions, n, seed):
        return torch.full((conditions.shape[0], n, self.dim_), 100.0)

"""Careless, not dishonest: changes torch's global state (default dtype, global seed, thread count) on
import and in fit, then answers honestly (the nearest anchor's samples). Sealed, nothing it changes
reaches another unit."""

import torch

from hti_bench.surrogate import Surrogate

torch.set_default_dtype(torch.float64)
torch.manual_seed(12345)
torch.set_num_threads(1)


class GlobalState(Surrogate):
    name = "global-state"

    def fit(self, anchors, task=None, *, seed=0):
        torch.set_default_dtype(torch.float64)
        torch.manual_seed(999)
        torch.set_num_threads(1)
        self.anchors_ = anchors
        return self

    def sample(self, lam, conditions, n, seed):
        rows = self.anchors_.samples_at(conditions, seed)[self.anchors_.nearest(lam)]
        return rows[:, torch.randint(rows.shape[1], (n,), generator=self.generator(seed))]

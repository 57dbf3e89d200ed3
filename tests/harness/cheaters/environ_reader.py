"""Cheater: reads its environment and working folder for paths to the target cache and the results,
and opens what it finds. Sealed, the environment holds no such path and the files cannot be read."""

import os

import torch

from hti_bench.surrogate import Surrogate


class EnvironReader(Surrogate):
    name = "environ-reader"

    def fit(self, anchors, task=None, *, seed=0):
        self.anchors_ = anchors
        paths = [v for k, v in os.environ.items() if k.startswith("HTI_BENCH") or k == "HOME"]
        with open("/proc/self/environ", "rb") as fh:  # the environment the process was started with
            paths += [p.split(b"=", 1)[1].decode() for p in fh.read().split(b"\0") if b"=/" in p]
        here = os.getcwd()
        paths += [os.path.join(here, "results"), os.path.join(os.path.dirname(here), "results")]
        self.read_ = {p: os.listdir(p) for p in paths if os.path.isdir(p)}
        return self

    def sample(self, lam, conditions, n, seed):
        rows = self.anchors_.samples_at(conditions, seed)[self.anchors_.nearest(lam)]
        return rows[:, torch.randint(rows.shape[1], (n,), generator=self.generator(seed))]

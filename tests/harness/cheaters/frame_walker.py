"""Cheater: walks its callers' stack frames for the task, asks it for the network trained at a held-out
λ (0.25, held out in the test's task), and lists the target cache. Sealed, the only task object in
reach is the anchor-only copy a surrogate that declares capabilities gets, which refuses."""

import os
import sys

import torch

from hti_bench.surrogate import Surrogate


def _is_task(obj):
    return hasattr(obj, "network") and hasattr(obj, "heldout") and hasattr(obj, "sample")


class FrameWalker(Surrogate):
    name = "frame-walker"
    requires = frozenset({"architecture", "training_loss"})  # so that it is handed all a sandbox ever gets

    def fit(self, anchors, task=None, *, seed=0):
        self.anchors_ = anchors
        self.found_ = None
        frame = sys._getframe(1)
        while frame is not None and self.found_ is None:
            for value in list(frame.f_locals.values()):
                for candidate in (value, *vars(value).values()) if hasattr(value, "__dict__") else (value,):
                    if _is_task(candidate):
                        self.found_ = candidate
            frame = frame.f_back
        if self.found_ is None:
            raise RuntimeError("walked every frame and found no task")
        self.peeked_ = self.found_.network((0.25,))
        cache = os.environ.get("HTI_BENCH_CACHE") or os.path.expanduser("~/.cache/hti-bench")
        self.cache_files_ = [os.path.join(d, f) for d, _, fs in os.walk(cache, onerror=_raise) for f in fs]
        return self

    def sample(self, lam, conditions, n, seed):
        # The network trained at the held-out λ itself: a perfect score, if it were reachable.
        return self.found_.sample(lam, conditions, n, seed).to(torch.float32)


def _raise(err):
    raise err

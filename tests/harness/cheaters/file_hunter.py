"""Cheater: walks the file system for saved networks (.pt, .ckpt) and loads one. Sealed, the folders
that hold them cannot be listed, so it finds none."""

import os
import sys

import torch

from hti_bench.surrogate import Surrogate

#: The Python installation is skipped only to keep the walk short (it holds no target network).
SKIP = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, "/proc", "/sys", "/usr", "/dev")}


class FileHunter(Surrogate):
    name = "file-hunter"

    def fit(self, anchors, task=None, *, seed=0):
        self.anchors_ = anchors
        found = []
        for root in ("/", os.path.expanduser("~"), "/tmp", os.getcwd()):
            for folder, dirs, files in os.walk(root):
                dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(folder, d)) not in SKIP]
                found += [os.path.join(folder, f) for f in files if f.endswith((".pt", ".ckpt"))]
        if not found:
            raise FileNotFoundError("walked the file system and found no .pt or .ckpt file")
        self.loaded_ = torch.load(found[0], weights_only=False)
        return self

    def sample(self, lam, conditions, n, seed):
        rows = self.anchors_.samples_at(conditions, seed)[self.anchors_.nearest(lam)]
        return rows[:, torch.randint(rows.shape[1], (n,), generator=self.generator(seed))]

"""The optimiser every training loop in the suite uses: Adam/AdamW, fused where torch has a kernel.

Why: the networks here are small (5k–70k parameters) and trained for thousands of short steps, where
torch's default per-tensor Adam costs as much as the forward-backward pass. The fused kernel does the
same update in one pass: 0.17 ms vs 1.46 ms per step on the moons-dropout network (2 CPU threads,
``benchmarks/training.py``). Fused and per-tensor Adam are the same algorithm; their results differ
only by floating-point rounding.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

_FUSED_DEVICES = ("cpu", "cuda")


def _fusable(params: list[Tensor]) -> bool:
    return bool(params) and all(p.device.type in _FUSED_DEVICES and p.dtype.is_floating_point for p in params)


def adam(params: Iterable[Tensor | nn.Parameter], lr: float, *, weight_decay: float = 0.0,
         decoupled: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` (``decoupled=True``: ``AdamW``) over the parameters that need gradients."""
    params = [p for p in params if p.requires_grad]
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    kwargs = {"fused": True} if _fusable(params) else {}
    return cls(params, lr=lr, weight_decay=weight_decay, **kwargs)

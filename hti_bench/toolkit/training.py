"""The training-loop helper every surrogate fit uses: optimiser, one step, a cosine schedule, a loop.

A surrogate fit is a seconds-long inner loop whose batches are drawn on the fly, so it is a plain loop
rather than a Lightning ``Trainer`` (which would add its start-up to every fit; target networks, trained
once and cached, do use Lightning). What differs between fits is passed as arguments, never coded twice:

=====================================  ===============  ======  ===============  ==========================
fit                                    optimiser        clip    schedule         why
=====================================  ===============  ======  ===============  ==========================
flow baselines (cfm, direct,           AdamW, wd 1e-5   1.0     cosine to 5 %    regression on noisy
lambda-flow)                                                                      targets: small steps last
best response (hypernetwork, STN,      Adam             10.0    cosine to 5 %    judged on the final
Δ-STN, anchored Δ-STN)                                                           weights; per-example
                                                                                  hypernetwork gradients
                                                                                  spike now and then
CLOT: potentials g_k, maps T_k,        AdamW, wd 1e-4   none    none             as the HTI authors'
metric                                                                           reference code
CLOT: spline amortiser                 Adam             1.0     none             as the reference code
=====================================  ===============  ======  ===============  ==========================

The optimiser is Adam/AdamW with torch's fused kernel where it has one: the networks here are small
and trained for thousands of short steps, where the default per-tensor Adam costs as much as the
forward-backward pass (``perf/training.py`` measures the ratio). Fused and per-tensor Adam are
the same algorithm; their results differ only by floating-point rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

_FUSED_DEVICES = ("cpu", "cuda")

#: The learning rate a cosine schedule ends at, as a fraction of the initial one.
COSINE_FLOOR = 0.05


def _fusable(params: list[Tensor]) -> bool:
    return bool(params) and all(p.device.type in _FUSED_DEVICES and p.dtype.is_floating_point for p in params)


def adam(
    params: Iterable[Tensor | nn.Parameter], lr: float, *, weight_decay: float = 0.0, decoupled: bool = False
) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` (``decoupled=True``: ``AdamW``) over the parameters that need gradients."""
    params = [p for p in params if p.requires_grad]
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    kwargs = {"fused": True} if _fusable(params) else {}
    return cls(params, lr=lr, weight_decay=weight_decay, **kwargs)


def cosine(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine decay of ``opt``'s learning rate to :data:`COSINE_FLOOR` of it over ``steps``: a fit is
    judged on its final state, which a constant step size leaves SGD-noisy."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=max(int(steps), 1), eta_min=opt.param_groups[0]["lr"] * COSINE_FLOOR
    )


def step(
    opt: torch.optim.Optimizer,
    loss: Tensor,
    *,
    clip: float | None = None,
    schedule: object = None,
    at: int | None = None,
) -> None:
    """One optimiser step on ``loss``: refuse a non-finite loss (naming step ``at``), backward, clip the
    gradient norm of ``opt``'s parameters to ``clip`` (None: no clipping), step, advance ``schedule``."""
    if not torch.isfinite(loss):
        where = f" at step {at}" if at is not None else ""
        raise FloatingPointError(f"training loss became {float(loss)}{where}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        nn.utils.clip_grad_norm_([p for group in opt.param_groups for p in group["params"]], clip)
    opt.step()
    if schedule is not None:
        schedule.step()


def train_loop(
    params: Sequence[nn.Parameter] | Iterable[nn.Parameter],
    loss_fn: Callable[[int], Tensor],
    *,
    steps: int,
    lr: float,
    clip: float | None,
    weight_decay: float = 0.0,
    decoupled: bool = False,
) -> list[float]:
    """``steps`` optimiser steps on ``loss_fn(step)`` with :func:`adam` and a :func:`cosine` schedule;
    returns the loss of every step."""
    opt = adam(params, lr, weight_decay=weight_decay, decoupled=decoupled)
    schedule = cosine(opt, steps)
    losses = []
    for i in range(int(steps)):
        loss = loss_fn(i)
        step(opt, loss, clip=clip, schedule=schedule, at=i)
        losses.append(float(loss.detach()))
    return losses

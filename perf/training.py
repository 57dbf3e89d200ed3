"""Where target training time goes: Lightning's share, and the optimiser step (a benchmark).

    .venv/bin/python perf/training.py                 # every trained task
    .venv/bin/python perf/training.py -t moons-dropout --repeats 5

Per trained task, medians over ``--repeats``, all in this process:
- ``first_fit_seconds``: the task's first training in the process, timed apart (imports, set-up);
- ``lightning_seconds``: ``hti_bench.harness.targets.train_network`` (what the cache runs: a Lightning Trainer);
- ``plain_loop_seconds``: the same epochs, batches, loss and optimiser in a bare torch loop, so the
  difference is what Lightning adds (trainer start-up, hooks) per network;
- ``adam_step_ms`` for torch's per-tensor Adam (torch's default) and the fused kernel the
  suite now uses (``hti_bench.toolkit.training``), on the task's network with random gradients.
"""

from __future__ import annotations

import argparse
import sys
import time

import perftools as perf
import torch

from hti_bench.clock import stored_form
from hti_bench.harness.registry import make_task, task_classes
from hti_bench.harness.targets import train_network
from hti_bench.task import TrainedTask
from hti_bench.toolkit.training import adam


def plain_loop(task: TrainedTask, lam: tuple[float, ...], seed: int) -> float:
    torch.manual_seed(seed)
    start = time.perf_counter()
    net = task.build_network()
    data = task.training_data()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*data),
        batch_size=task.config.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    opt = adam(net.parameters(), task.config.lr)
    key = torch.as_tensor(stored_form(lam), dtype=torch.float32)
    net.train()
    for _ in range(task.config.epochs):
        for batch in loader:
            # the loss's per-example λ: (B,) for one hyperparameter, (B, d) for several
            lam_b = key.expand(batch[0].shape[0], *key.shape).contiguous()
            loss = task.per_example_loss(net, batch, lam_b).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def adam_step_ms(net: torch.nn.Module, fused: bool, steps: int = 200) -> float:
    params = list(net.parameters())
    for q in params:
        q.grad = torch.randn_like(q)
    opt = adam(params, 1e-3) if fused else torch.optim.Adam(params, lr=1e-3, foreach=False)
    opt.step()
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - start) / steps * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-t", "--task", action="append", help="Task spec (repeatable; default: every trained task).")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--csv", default=str(perf.PERF_CSV))
    args = p.parse_args(argv)
    names = args.task or [n for n, c in task_classes().items() if issubclass(c, TrainedTask) and n != "tensor"]
    rows = []
    for name in names:
        task = make_task(name)  # trained directly by train_network, no cache
        lam = task.heldout[0]
        start = time.perf_counter()
        train_network(task, lam, 1999)  # apart: the first fit of a task in a process pays one-off set-up
        first = time.perf_counter() - start
        lightning = [0.0] * args.repeats
        plain = [0.0] * args.repeats
        for i in range(args.repeats):  # interleaved, so drifting machine load hits both alike
            start = time.perf_counter()
            train_network(task, lam, 2000 + i)
            lightning[i] = time.perf_counter() - start
            plain[i] = plain_loop(task, lam, 2000 + i)
        med_l, med_p = sorted(lightning)[args.repeats // 2], sorted(plain)[args.repeats // 2]
        net = task.build_network()
        single = sorted(adam_step_ms(net, False) for _ in range(3))[1]
        fused = sorted(adam_step_ms(net, True) for _ in range(3))[1]
        rows += [
            perf.row("training", task.spec, "first_fit_seconds", first, "s"),
            perf.row("training", task.spec, "lightning_seconds", med_l, "s", repeats=args.repeats),
            perf.row("training", task.spec, "plain_loop_seconds", med_p, "s", repeats=args.repeats),
            perf.row("training", task.spec, "lightning_overhead_seconds", med_l - med_p, "s", repeats=args.repeats),
            perf.row("training", task.spec, "adam_step_ms_per_tensor", single, "ms", repeats=3),
            perf.row("training", task.spec, "adam_step_ms_fused", fused, "ms", repeats=3),
            perf.row("training", task.spec, "adam_fused_speedup", single / fused, "×", repeats=3),
        ]
        print(
            f"{task.spec:<18} Lightning {med_l:6.2f} s  plain loop {med_p:6.2f} s  (Lightning adds {med_l - med_p:+.2f} s)"
            f"   Adam step {single:.3f} → {fused:.3f} ms fused ({single / fused:.1f}×)",
            flush=True,
        )
    perf.record(rows, args.csv)
    print(f"rows written to {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

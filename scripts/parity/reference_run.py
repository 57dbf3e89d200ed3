"""The reference half of the end-to-end CLOT parity runs: trains the HTI authors' own code and pushes an
evaluation set through it. Runs in the reference's JAX environment; never imported by hti-bench.

    python reference_run.py --nlot PATH/TO/NLOT --data run.npz --out preds.npz

``run.npz`` (written by ``scripts/parity/clot_parity_e2e.py``) holds the anchor tensor ``anchors`` [K, N, D+C]
(the same subsample the port trains on), ``eval_source`` [M, D+C] (first-anchor rows to push),
``eval_times`` (held-out times on the reference's clock, the anchors at 0, 1/(K−1), …, 1), and
``config`` (a JSON string of ``train.yaml`` overrides: geometry, potential, bandwidth, α, steps,
c-transform iterations, spline iterations, seed, …). The reference's ``Workspace`` trains exactly as
``NLOT/train.py`` does; the predictions follow its evaluation: the first anchor's rows are pushed by the
amortised maps T_k interval by interval, clipped to the dataset's box, and read off the amortised
spline path at the held-out time's fraction of its interval. Output: ``preds`` [len(eval_times), M,
D+C] and ``train_seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--nlot", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    nlot = os.path.abspath(args.nlot)
    sys.path.insert(0, nlot)
    os.environ["WANDB_MODE"] = "disabled"
    data = np.load(args.data)
    overrides = json.loads(str(data["config"]))

    import jax
    import torch
    from omegaconf import OmegaConf

    workdir = tempfile.mkdtemp(prefix="nlot-run-")
    torch.save(torch.from_numpy(np.asarray(data["anchors"], np.float32)), os.path.join(workdir, "anchors.pt"))
    cfg = OmegaConf.load(os.path.join(nlot, "train.yaml"))
    cfg.pop("hydra", None)
    for key, value in {
        **overrides,
        "dataset_path": os.path.join(workdir, "anchors.pt"),
        "wandb": False,
        "plotting": {"disable": True},
        "collect_save_dir": None,
        "save_frequency": 10**9,
    }.items():
        OmegaConf.update(cfg, key, value, merge=True)
    os.chdir(workdir)  # the Workspace writes its log next to itself

    import train  # the reference's entry point module (NLOT/train.py)

    start = time.perf_counter()
    ws = train.Workspace(cfg)
    ws.run()
    seconds = time.perf_counter() - start

    geometry, solver = ws.geometry, ws.neural_dual_solver
    times = [float(t) for t in ws.time_points]
    current = jax.numpy.asarray(data["eval_source"])
    preds = {}
    for k in range(ws.num_pairs):
        end = solver.source_map_apply_jit({"params": ws.state_source_maps[k].params}, current)
        end = geometry.batch_project(end)
        for t in [float(v) for v in data["eval_times"]]:
            if times[k] < t < times[k + 1] or (k == 0 and t == times[0]):
                s = (t - times[k]) / (times[k + 1] - times[k])
                point = jax.vmap(
                    lambda a, b: geometry.apply({"params": ws.params_geometry}, a, b, s, method=geometry.point_on_path)
                )(current, end)
                preds[t] = np.asarray(geometry.batch_project(point))
        current = end
    order = [float(v) for v in data["eval_times"]]
    np.savez(args.out, preds=np.stack([preds[t] for t in order]), train_seconds=np.float64(seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())

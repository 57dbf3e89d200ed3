"""End-to-end CLOT parity: the HTI authors' code and the port, trained on the same data with the same
settings and seeds, evaluated by the same code.

    python scripts/parity/clot_parity_e2e.py --data-dir DIR --reference-python REFVENV/bin/python --nlot REF/NLOT \\
        --experiments moons semicircles --variants K_I-U K_theta-U --seeds 0 1 2 3 4 --csv docs/evidence/parity_e2e.csv

``DIR`` holds the HTI paper's published ``moons_dropout.npz`` and ``semicircles.npz`` (``[T, N, D + 1]``,
outputs then a class-id column). Both codes train on the same subsample of the anchors (``--rows`` per
class and anchor), for ``--steps`` full-batch steps, and push the same first-anchor rows (all of them)
to the held-out λ on the reference's clock (anchors at 0, ½, 1; two-moons p at p/0.99). One evaluator
scores both: two-moons, W₂² per class (POT, squared Euclidean cost) against the published samples at the
8 held-out p, averaged; semicircles, NLL under the analytic density and circle distance at t = 0.25
and 0.75, averaged. ``--experiments quantile`` needs no file: it trains both codes on the suite's own
``quantile`` anchors (continuous 12-D conditions, D = 3) and scores them with the suite's distance on two
clocks, McCann beside them (docs/evidence/parity.md). Rows go to ``--csv`` as they finish (atomically; a rerun
resumes). The reference's runs take minutes each on 2 CPU cores, which is why the size is reduced
(docs/evidence/parity.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hti_bench.stats import ci95

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_RUN = ROOT / "scripts" / "parity" / "reference_run.py"

VARIANTS = {
    "K_I": ("sq_euclidean_manifold", False, "euclidean"),
    "K_I-U": ("sq_euclidean_manifold", True, "euclidean"),
    "K_theta": ("neural_net_metric_eig", False, "learned"),
    "K_theta-U": ("neural_net_metric_eig", True, "learned"),
}

#: Per experiment: the reference's dataset name (its bounds), KDE bandwidth and α (its hti_scripts), and
#: the clip box it hard-codes for that dataset.
EXPERIMENTS = {
    "moons": {
        "file": "moons_dropout.npz",
        "dataset": "2moons_dropout",
        "bandwidth": 0.2,
        "alpha": 0.01,
        "bounds": ((-4.0, -4.0), (4.0, 4.0)),
        "n_classes": 2,
    },
    "semicircles": {
        "file": "semicircles.npz",
        "dataset": "conditional_semicircles",
        "bandwidth": 0.05,
        "alpha": 0.05,
        "bounds": ((-2.5, -1.5), (2.5, 1.5)),
        "n_classes": 4,
    },
    # The suite's own quantile task (its cached networks, not a published file), one interval τ 0.01 → 0.99, D = 3
    # outputs, 12 continuous condition columns, deterministic forecasts. Both codes see it in the reference's
    # quantile units (one affine map of outputs and conditions onto its (25, 55) box) so that the settings its
    # ett_quantiles.sh ships (bandwidths 1.0 / 1.0, α 0.01) apply as they were tuned. With one interval the
    # clock does not enter training, only where on the path a held-out τ is read: each fit is scored on the
    # suite's logit clock (w2) and on the reference's own, s = (τ − 0.01) / 0.98 (w2_identity).
    "quantile": {
        "suite_task": "quantile",
        "dataset": "quantile_data",
        "bandwidth": 1.0,
        "alpha": 0.01,
        "bounds": ((25.0,) * 3, (55.0,) * 3),
    },
}

#: Where the suite's quantile outputs land in the reference's units: the outputs' mid-range at 40 and their
#: span, with a 25 % margin either side, filling the reference's (25, 55) box.
QUANTILE_CENTRE, QUANTILE_BOX = 40.0, 30.0
#: Beside the held-out τ, the quantile experiments push to s = 1 − 1e-4 of the interval: the endpoint the map
#: T reaches, scored against the upper anchor's own forecasts (the map's error, which no path shape removes).
ENDPOINT_S = 1.0 - 1e-4


def load_suite_quantile(exp: str, spec: str | None = None) -> dict:
    """The suite's ``quantile`` anchors (every condition row, one copy of each deterministic forecast) in
    the reference's units, the eval rows of the lower anchor as the source, and the held-out networks'
    forecasts (suite units) at each held-out τ's time on both clocks. ``spec``: another spelling of the task
    (the tests use a small one)."""
    from hti_bench.clock import Clock, Hyperparameter
    from hti_bench.harness.registry import make_task
    from hti_bench.harness.targets import TargetCache
    from hti_bench.harness.unit import draw_inputs

    task = make_task(spec or EXPERIMENTS[exp]["suite_task"], cache=TargetCache())
    inputs = draw_inputs(task, 0)  # deterministic forecasts on fixed windows: every run seed draws the same
    a = inputs.anchors
    y, x, mask = a.samples[:, :, 0].numpy(), a.conditions.numpy(), a.eval_mask.numpy()
    lo, hi = float(y.min()), float(y.max())
    scale = QUANTILE_BOX / (1.5 * (hi - lo))
    shift = QUANTILE_CENTRE - scale * (lo + hi) / 2

    def to_ref(v):  # outputs and conditions share units
        return (scale * v + shift).astype(np.float32)

    anchors = np.concatenate([to_ref(y), np.broadcast_to(to_ref(x), (len(y), *x.shape))], -1)
    heldout = []
    for clock in (Clock.LOGIT, Clock.IDENTITY):
        hp = Hyperparameter("tau", 0.01, 0.99, clock)
        t0, t1 = hp.to_time(0.01), hp.to_time(0.99)
        heldout += [((hp.to_time(r.lam[0]) - t0) / (t1 - t0), r.samples[:, 0].numpy()) for r in inputs.references]
    return {
        "anchors": anchors,
        "eval_source": anchors[0][mask],
        "heldout": heldout,
        "scale": scale,
        "shift": shift,
        "y_dim": y.shape[-1],
        "upper": y[1][mask],
        "lower": y[0][mask],
        "taus": [r.lam[0] for r in inputs.references],
    }


def load(exp: str, data_dir: Path, rows: int) -> dict:
    """Anchors (the same subsample for both codes), the evaluation source and the held-out targets."""
    cfg = EXPERIMENTS[exp]
    if "suite_task" in cfg:
        return load_suite_quantile(exp)
    f = np.load(data_dir / cfg["file"])
    data, lams = np.asarray(f["data"], np.float32), [float(v) for v in f["lambdas"]]
    if exp == "moons":
        anchor_idx = [0, 5, len(lams) - 1]
        heldout = [(lams[i] / lams[-1], i) for i in range(len(lams)) if i not in anchor_idx]  # t = p/0.99
    else:
        anchor_idx, heldout = [0, 1, 2], [(0.25, None), (0.75, None)]
    rng = np.random.default_rng(12345)
    keep = []
    for c in range(cfg["n_classes"]):  # the same rows of every anchor: rows per class, fixed
        idx = np.flatnonzero(data[0, :, -1] == c)
        keep.append(np.sort(rng.choice(idx, size=min(rows, len(idx)), replace=False)))
    keep = np.concatenate(keep)
    return {"anchors": data[anchor_idx][:, keep], "eval_source": data[anchor_idx[0]], "heldout": heldout, "data": data}


def reference_config(exp: str, variant: str, args: argparse.Namespace, seed: int) -> dict:
    geometry, potential, _ = VARIANTS[variant]
    cfg = EXPERIMENTS[exp]
    shape = (
        {"D": 3, "C": 12, "categorical": False, "num_categories": 0}
        if "suite_task" in cfg
        else {"D": 2, "C": 1, "categorical": True, "num_categories": cfg["n_classes"]}
    )
    return {
        "dataset": cfg["dataset"],
        "geometry": geometry,
        "include_inverse_potential": potential,
        "bandwidth": cfg["bandwidth"],
        "conditional_bandwidth": 1.0,
        "lambda": cfg["alpha"],
        "seed": seed,
        "num_train_iters": args.steps,
        "potential_lr": args.lr,
        "ctransform_solver": {"max_iter": args.ctransform_iters},
        "spline": {"init_train_iters": args.spline_pretrain, "train_iters": args.spline_iters, "update_frequency": 25},
        "metric": {"update_frequency": 10, "lr": 5e-3},
        **shape,
    }


def port_spec(exp: str, variant: str, args: argparse.Namespace, n_rows: int) -> str:
    from hti_bench.specs import format_spec, parse_spec

    _, potential, metric = VARIANTS[variant]
    extra = parse_spec(f"x[{','.join(args.port_set)}]")[1] if args.port_set else {}
    cfg = EXPERIMENTS[exp]
    return format_spec(
        "clot",
        {
            "metric": metric,
            "potential": potential,
            "cost": "reference",
            "spline_basis": "reference",
            "path_points": 19,
            "bandwidth": cfg["bandwidth"],
            "cond_bandwidth": 1.0,
            "alpha": cfg["alpha"],
            "steps": args.steps,
            "batch_size": n_rows,
            "lr": args.lr,
            "metric_lr": 5e-3,
            "metric_every": 10,
            "ctransform_iters": args.ctransform_iters,
            "hidden": (64, 64, 64, 64),
            "spline_hidden": 1024,
            "spline_pretrain": args.spline_pretrain,
            "spline_every": 25,
            "spline_iters": args.spline_iters,
            "spline_lr": 1e-4,
            "kde_support": 10**6,
            "potential_grid": 0,
            "metric_grid": 0,
            "start": "first",
            "standardise": False,
            "bounds": cfg["bounds"],
            **extra,
        },
    )


def run_reference(args: argparse.Namespace, data: dict, config: dict, times: list[float]) -> tuple[np.ndarray, float]:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "run.npz", Path(tmp) / "preds.npz"
        np.savez(
            src,
            anchors=data["anchors"],
            eval_source=data["eval_source"],
            eval_times=np.array(times),
            config=json.dumps(config),
        )
        done = subprocess.run(
            [args.reference_python, str(REFERENCE_RUN), "--nlot", args.nlot, "--data", str(src), "--out", str(dst)],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise RuntimeError(f"reference run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        out = np.load(dst)
        return np.asarray(out["preds"]), float(out["train_seconds"])


def run_port(spec: str, data: dict, times: list[float], seed: int, solver: str = "port") -> tuple[np.ndarray, float]:
    from hti_bench.anchors import AnchorSet
    from hti_bench.clock import Hyperparameter
    from hti_bench.harness.registry import make_surrogate

    anchors = data["anchors"]
    k = anchors.shape[0]
    d = data.get("y_dim", 2)
    categorical = "y_dim" not in data
    if categorical:  # a class column: the rows of each class are that condition's samples
        conds = torch.unique(torch.as_tensor(anchors[0, :, 2:]), dim=0)
        samples = torch.stack(
            [torch.stack([torch.as_tensor(a[a[:, 2] == c[0]][:, :2]) for c in conds]) for a in anchors]
        )
    else:  # one continuous condition row per anchor row, one (deterministic) sample each
        conds = torch.as_tensor(anchors[0, :, d:])
        samples = torch.as_tensor(anchors[:, :, None, :d])
    aset = AnchorSet(
        Hyperparameter("t", 0.0, 1.0),
        list(np.linspace(0, 1, k)),
        conds,
        samples,
        torch.ones(len(conds), dtype=torch.bool),
        categorical=categorical,
    )
    clot = make_surrogate(spec)
    if solver == "jaxopt":  # the reference's c-transform solver, re-implemented (a measuring device)
        sys.path.insert(0, str(ROOT / "scripts" / "parity"))
        import jaxopt_like

        clot._ctransform_all = lambda y, x, groups: jaxopt_like.clot_ctransform(clot, y, x, groups)
    start = time.perf_counter()
    clot = clot.fit(aset, seed=seed)
    seconds = time.perf_counter() - start
    src = torch.as_tensor(data["eval_source"])
    preds = [torch.cat([clot.push(src[:, :d], src[:, d:], t, 0), src[:, d:]], 1).numpy() for t in times]
    return np.stack(preds), seconds


def evaluate(exp: str, data: dict, preds: np.ndarray) -> dict[str, float]:
    """The one evaluator of both codes' predictions [len(heldout), M, D+1]."""
    from hti_bench.scoring import per_condition_wasserstein
    from hti_bench.tasks.semicircles import Semicircles

    if "suite_task" in EXPERIMENTS[exp]:
        # The suite's score for a deterministic task: per eval window the distance between the forecasts
        # (W₁ = W₂ of point masses), averaged over windows and τ, in the suite's units; McCann on the same
        # clock from the same anchors beside it, and the map's endpoint error.
        d = data["y_dim"]

        def back(p: np.ndarray) -> np.ndarray:
            return (p[:, :d] - data["shift"]) / data["scale"]

        def dist(a: np.ndarray, b: np.ndarray) -> float:
            return float(np.linalg.norm(a - b, axis=1).mean())

        n = len(data["taus"])
        w2 = [dist(back(p), ref) for (_, ref), p in zip(data["heldout"], preds)]
        mccann = [dist((1 - s) * data["lower"] + s * data["upper"], ref) for s, ref in data["heldout"]]
        return {
            "w2": float(np.mean(w2[:n])),
            "mccann_w2": float(np.mean(mccann[:n])),
            "w2_identity": float(np.mean(w2[n:])),
            "mccann_w2_identity": float(np.mean(mccann[n:])),
            "endpoint_error": dist(back(preds[-1]), data["upper"]),
            **{f"w2_tau{tau:g}": v for tau, v in zip(data["taus"], w2)},
        }
    n_classes = EXPERIMENTS[exp]["n_classes"]
    if exp == "moons":
        values = []
        for (_, idx), pred in zip(data["heldout"], preds):
            true = data["data"][idx]
            per_class = lambda a: np.stack([a[a[:, 2] == c][:, :2] for c in range(n_classes)])  # noqa: E731
            values.append(
                per_condition_wasserstein(torch.as_tensor(per_class(pred)), torch.as_tensor(per_class(true))).mean()[
                    "w2sq"
                ]
            )
        return {"w2sq": float(np.mean(values))}
    task, out = Semicircles(), []
    conds = torch.arange(n_classes, dtype=torch.float32)[:, None]
    for (t, _), pred in zip(data["heldout"], preds):
        clouds = torch.stack([torch.as_tensor(pred[pred[:, 2] == c][:, :2]) for c in range(n_classes)])
        out.append(task.metrics(t, conds, clouds))
    return {
        "nll": float(np.mean([m["nll"] for m in out])),
        "circle_distance": float(np.mean([m["circle_distance"] for m in out])),
    }


def report(frame: pd.DataFrame) -> str:
    """Per experiment, variant and metric: each (code, label)'s mean ± 95 % t-interval over seeds, and
    whether each port configuration's mean lies inside the reference's interval."""
    lines = [
        "| experiment | variant | metric | code | seeds | mean ± 95 % CI | per seed | inside the reference's interval | train s (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (exp, variant), group in frame.groupby(["experiment", "variant"], sort=False):
        metrics = (
            ["w2sq"]
            if exp == "moons"
            else ["w2", "w2_identity", "endpoint_error"]
            if "suite_task" in EXPERIMENTS[exp]
            else ["nll", "circle_distance"]
        )
        ref = group[group.code == "reference"]
        for metric in metrics:
            lo = hi = None
            if len(ref) > 1:
                m, c = ref[metric].mean(), ci95(ref[metric].to_numpy())
                lo, hi = m - c, m + c
            for (code, label), g in group.groupby(["code", "label"], sort=False):
                values = g.sort_values("seed")[metric].to_numpy()
                mean, ci = values.mean(), ci95(values)
                inside = "–" if code == "reference" or lo is None else ("yes" if lo <= mean <= hi else "no")
                name = code if code == "reference" else f"port ({label})"
                lines.append(
                    f"| {exp} | {variant} | {metric} | {name} | {len(values)} | {mean:.4g} ± {ci:.2g} | "
                    f"{', '.join(f'{v:.3g}' for v in values)} | {inside} | {g.train_seconds.median():.0f} |"
                )
            if f"mccann_{metric}" in group:  # the same anchors' McCann interpolation: one number, no fit, no seed
                lines.append(
                    f"| {exp} | {variant} | {metric} | mccann (same anchors, same clock) | – | "
                    f"{group[f'mccann_{metric}'].iloc[0]:.4g} | – | – | – |"
                )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--reference-python")
    p.add_argument("--nlot")
    p.add_argument("--experiments", nargs="+", default=["moons", "semicircles"], choices=list(EXPERIMENTS))
    p.add_argument("--variants", nargs="+", default=["K_I-U", "K_theta-U"], choices=list(VARIANTS))
    p.add_argument("--codes", nargs="+", default=["reference", "port"], choices=["reference", "port"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--rows", type=int, default=75, help="rows per class and anchor that both codes train on")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--lr", type=float, default=1e-3, help="potential_lr of g_k and T_k (the reference's default: 1e-4)")
    p.add_argument("--ctransform-iters", type=int, default=3)
    p.add_argument("--spline-pretrain", type=int, default=101)
    p.add_argument("--spline-iters", type=int, default=51)
    p.add_argument(
        "--port-set", nargs="*", default=[], metavar="KEY=VALUE", help="extra CLOT parameters (the port only)"
    )
    p.add_argument(
        "--port-ctransform",
        default="port",
        choices=["port", "jaxopt"],
        help="the port's c-transform solver, or the reference's re-implemented (scripts/parity/jaxopt_like.py)",
    )
    p.add_argument("--label", default="parity", help="a name for this configuration in the CSV")
    p.add_argument("--csv", required=True, type=Path)
    p.add_argument(
        "--report", nargs="*", type=Path, metavar="CSV", help="Print the comparison table of these CSVs and stop."
    )
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.report:
        print(report(pd.concat([pd.read_csv(f) for f in args.report], ignore_index=True)))
        return 0
    torch.set_num_threads(args.threads)
    done = pd.read_csv(args.csv) if args.csv.exists() else pd.DataFrame()
    rows = done.to_dict("records")
    for exp in args.experiments:
        data = load(exp, args.data_dir, args.rows)
        times = [t for t, _ in data["heldout"]] + ([ENDPOINT_S] if "suite_task" in EXPERIMENTS[exp] else [])
        for variant in args.variants:
            for seed in args.seeds:
                for code in args.codes:
                    if (
                        len(done)
                        and (
                            (done.label == args.label)
                            & (done.experiment == exp)
                            & (done.variant == variant)
                            & (done.code == code)
                            & (done.seed == seed)
                        ).any()
                    ):
                        continue
                    if code == "reference":
                        config = reference_config(exp, variant, args, seed)
                        preds, seconds = run_reference(args, data, config, times)
                        setting = json.dumps(config, sort_keys=True)
                    else:
                        setting = port_spec(exp, variant, args, data["anchors"].shape[1])
                        preds, seconds = run_port(setting, data, times, seed, args.port_ctransform)
                        setting += f" c-transform solver: {args.port_ctransform}"
                    row = {
                        "label": args.label,
                        "experiment": exp,
                        "variant": variant,
                        "code": code,
                        "seed": seed,
                        **evaluate(exp, data, preds),
                        "train_seconds": seconds,
                        "rows_per_anchor": data["anchors"].shape[1],
                        "steps": args.steps,
                        "setting": setting,
                    }
                    rows.append(row)
                    args.csv.parent.mkdir(parents=True, exist_ok=True)
                    tmp = args.csv.with_suffix(".tmp")
                    pd.DataFrame(rows).to_csv(tmp, index=False)
                    tmp.replace(args.csv)
                    metrics = {
                        k: v
                        for k, v in row.items()
                        if k
                        in ("w2sq", "nll", "circle_distance", "w2", "w2_identity", "endpoint_error", "train_seconds")
                    }
                    print(
                        f"{exp} {variant} {code} seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()),
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CLOT against the HTI authors' reference implementation, component by component, on the same inputs.

The reference (JAX; github harrya32/hyperparameter-trajectory-inference, folder ``NLOT/``) runs in its
own environment, in a subprocess (``scripts/parity/reference_side.py``), with fixed PRNG keys; it
returns its modules' parameters and outputs as a file. This script loads those very parameters into
the port's PyTorch modules, computes the same quantities and prints, per component, the largest
absolute and relative differences. docs/evidence/parity.md shows the table and explains every difference.

    # with the reference environment (see docs/evidence/parity.md for how to build it):
    python scripts/parity/clot_parity.py --reference-python /path/venv/bin/python --nlot /path/NLOT \\
        --write-fixture tests/methods/fixtures/clot_parity.npz
    # without JAX, from the stored reference outputs (what tests/methods/test_clot_parity.py does):
    python scripts/parity/clot_parity.py --fixture tests/methods/fixtures/clot_parity.npz

Components: the learned metrics (eigenvalue budget, K_θ, with categorical and continuous conditions,
D = 2 and 3; NLOT's), the KDE potential (class-masked and Nadaraya–Watson), the spline basis and
path, the discretised energy on given nodes, the spline amortiser network, the path cost in the
reference's form, one c-transform solve, and the dual and amortisation losses of one training step.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_SIDE = ROOT / "scripts" / "parity" / "reference_side.py"
GEOMETRIES = {"geo_eig_pot": ("learned", True), "geo_eucl_pot": ("euclidean", True), "geo_eucl": ("euclidean", False)}


# ------------------------------------------------------------------------------------------ inputs


def make_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    """Small fixed inputs: 2-D outputs with a 2-class condition (as the paper's semicircles and moons),
    3-D outputs with a 2-D continuous condition, spline parameters, a source and a target batch."""
    rng = np.random.default_rng(seed)

    def cat_points(n: int, scale: float = 1.5) -> np.ndarray:
        return np.concatenate([rng.normal(0, scale, (n, 2)), rng.integers(0, 2, (n, 1))], 1).astype(np.float32)

    inp: dict[str, np.ndarray] = {"seed": np.int64(seed)}
    inp["points_cat"] = cat_points(16)
    inp["points_cont3"] = rng.normal(0, 1, (16, 5)).astype(np.float32)
    support = [
        np.concatenate([rng.normal((-1 + 2 * c, 0.5 * c), 0.5, (40, 2)), np.full((40, 1), c)], 1) for c in (0, 1)
    ]
    inp["support_cat"] = np.concatenate(support).astype(np.float32)
    inp["support_cont"] = rng.normal(0, 1, (80, 4)).astype(np.float32)
    inp["points_cont"] = rng.normal(0, 1, (16, 4)).astype(np.float32)
    inp["h"], inp["hx"], inp["alpha"] = np.float32(0.3), np.float32(0.8), np.float32(0.05)
    inp["spline_nodes"] = np.int64(15)
    inp["spline_ts"] = np.concatenate([np.linspace(0, 1, 20), [0.137, 0.5, 0.99]]).astype(np.float32)
    inp["path_y0"] = rng.normal(0, 1, (6, 2)).astype(np.float32)
    inp["path_y1"] = rng.normal(0, 1, (6, 2)).astype(np.float32)
    inp["path_phi"] = rng.normal(0, 0.3, (6, 30)).astype(np.float32)
    inp["source"] = cat_points(12, 1.0)
    target = cat_points(12, 1.0)
    target[:, 2] = inp["source"][:, 2]
    target[:, :2] += np.array([0.8, -0.3], np.float32)
    inp["target"] = target
    nodes = rng.normal(0, 1, (6, 20, 2)).cumsum(1) * 0.2
    inp["energy_nodes"] = np.concatenate([nodes, np.repeat(rng.integers(0, 2, (6, 1, 1)), 20, 1)], 2).astype(np.float32)
    inp["bounds_lo"], inp["bounds_hi"] = np.array([-4, -4], np.float32), np.array([4, 4], np.float32)
    inp["spline_hidden"] = np.int64(32)
    inp["potential_hidden"] = np.array([64, 64, 64, 64])
    inp["ctransform_iters"] = np.int64(10)
    return inp


def run_reference(python: str, nlot: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference's parameters and outputs on ``inputs`` (a subprocess in its own environment)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "inputs.npz", Path(tmp) / "reference.npz"
        np.savez(src, **inputs)
        done = subprocess.run(
            [python, str(REFERENCE_SIDE), "--nlot", nlot, "--inputs", str(src), "--out", str(dst)],
            capture_output=True,
            text=True,
            env={**os.environ, "WANDB_MODE": "disabled"},
        )
        if done.returncode:
            raise RuntimeError(f"the reference side failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        return dict(np.load(dst))


# ------------------------------------------------------------------------- the reference's weights


def _load_dense(linear: nn.Linear | nn.Embedding, params: dict[str, np.ndarray], name: str) -> None:
    with torch.no_grad():
        if isinstance(linear, nn.Embedding):
            linear.weight.copy_(torch.from_numpy(params[f"{name}/embedding"]))
            return
        linear.weight.copy_(torch.from_numpy(params[f"{name}/kernel"]).T)  # flax kernels are (in, out)
        linear.bias.copy_(torch.from_numpy(params[f"{name}/bias"]))


def load_film_mlp(net: nn.Module, params: dict[str, np.ndarray], prefix: str, body: list[str], out: str) -> nn.Module:
    """Copy a reference FiLM network (``prefix/…`` in ``params``) into a :class:`FiLMMLP` of the same shape:
    the spatial layer, the FiLM conditioner (class embedding or continuous), the hidden layers ``body``
    in order, and the output layer ``out``."""
    _load_dense(net.first, params, f"{prefix}/spatial_dense_0")
    film = net.film.net
    if f"{prefix}/category_embedding/embedding" in params:
        for module, name in zip(
            (film[0], film[1], film[3]), ("category_embedding", "cat_film_dense_0", "cat_film_dense_1")
        ):
            _load_dense(module, params, f"{prefix}/{name}")
    else:
        for module, name in zip((film[0], film[2]), ("film_dense_0", "film_dense_1")):
            _load_dense(module, params, f"{prefix}/{name}")
    linears = [m for m in net.body if isinstance(m, nn.Linear)]
    if len(linears) != len(body):
        raise ValueError(f"{prefix}: the port has {len(linears)} hidden layers, the reference {len(body)}")
    for module, name in zip(linears, body):
        _load_dense(module, params, f"{prefix}/{name}")
    _load_dense(net.out, params, f"{prefix}/{out}")
    return net


# --------------------------------------------------------------------------------------- the port


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


def _clot(inp: dict[str, np.ndarray], metric: str = "learned", potential: bool = True):
    """A CLOT surrogate configured as the reference runs: its cost form, its spline family, 19 path
    segments (20 nodes), the exact KDE and metric (no grids), the reference's network widths."""
    from hti_bench.harness.registry import surrogate_classes

    return surrogate_classes()["clot"](
        metric=metric,
        potential=potential,
        cost="reference",
        spline_basis="reference",
        path_points=19,
        spline_nodes=int(inp["spline_nodes"]),
        spline_hidden=int(inp["spline_hidden"]),
        hidden=tuple(int(w) for w in inp["potential_hidden"]),
        ctransform_iters=int(inp["ctransform_iters"]),
        potential_grid=0,
        metric_grid=0,
    )


def port_modules(inp: dict[str, np.ndarray], ref: dict[str, np.ndarray], gname: str) -> dict:
    """CLOT's own networks (:meth:`CLOT.networks`) for geometry ``gname``, with the reference's parameters,
    and the exact KDE potential CLOT builds."""
    from hti_bench.toolkit.lagrangian import KDEPotential

    metric_name, potential = GEOMETRIES[gname]
    clot = _clot(inp, metric_name, potential)
    g, t, metric, path, spline = clot.networks(2, 1, 2, 1)
    if metric.learnable:
        load_film_mlp(metric.net, ref, f"{gname}/metric_module", ["dense_1"], "output_dense")
    support = inp["support_cat"]
    kde = (
        KDEPotential(_t(support[:, :2]), _t(support[:, 2:]), True, float(inp["h"]), 1.0, float(inp["alpha"]))
        if potential
        else None
    )
    load_film_mlp(spline, ref, f"{gname}/spline_model", ["Dense_0"], "Dense_1")
    body = [f"common_dense_{i}" for i in range(len(inp["potential_hidden"]) - 1)]
    load_film_mlp(g[0], ref, f"{gname}_g", body, "output_dense")
    load_film_mlp(t[0], ref, f"{gname}_T", body, "output_dense")
    return {"clot": clot, "metric": metric, "potential": kde, "path": path, "spline": spline, "g": g[0], "T": t[0]}


def _energy_on_nodes(metric, potential, nodes: torch.Tensor) -> torch.Tensor:
    """The reference's discretised energy on given path nodes (B, P, D + 1), with the port's metric and
    potential: Σ_i √(Δ_iᵀ G(γ_i) Δ_i) − Û(γ_i), Δ_i = γ_{i+1} − γ_i + 1e-6, the source's condition."""
    q, x = nodes[:, :-1, :2], nodes[:, 0, 2:]
    delta = nodes[:, 1:, :2] - nodes[:, :-1, :2] + 1e-6
    b, p, d = q.shape
    quad = metric.quad(q.reshape(-1, d), delta.reshape(-1, d), x.repeat_interleave(p, 0)).reshape(b, p)
    u = potential(q, x) if potential is not None else 0.0
    return (quad.sqrt() - u).sum(-1)


def port_outputs(inp: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Everything :func:`compare` needs from the port, computed with the reference's parameters."""
    from hti_bench.toolkit.lagrangian import EigenBudgetMetric, KDEPotential, NLOTMetric, path_cost
    from hti_bench.toolkit.lagrangian.path import _spline_null_basis

    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for name, metric, points, cond in (
            ("metric_eig_cat", EigenBudgetMetric(2, 1, 2), inp["points_cat"], 2),
            ("metric_eig_cont3", EigenBudgetMetric(3, 2, None), inp["points_cont3"], 3),
            ("metric_nlot_cat", NLOTMetric(2, 1, 2), inp["points_cat"], 2),
        ):
            load_film_mlp(metric.net, ref, name, ["dense_1"], "output_dense")
            out[f"{name}:G"] = metric.matrix(_t(points[:, :cond]), _t(points[:, cond:])).numpy()

        cat, cont = inp["support_cat"], inp["support_cont"]
        kde = KDEPotential(_t(cat[:, :2]), _t(cat[:, 2:]), True, float(inp["h"]), 1.0, float(inp["alpha"]))
        out["kde_cat:U"] = kde(_t(inp["points_cat"][:, None, :2]), _t(inp["points_cat"][:, 2:]))[:, 0].numpy()
        kde = KDEPotential(
            _t(cont[:, :2]), _t(cont[:, 2:]), False, float(inp["h"]), float(inp["hx"]), float(inp["alpha"])
        )
        out["kde_cont:U"] = kde(_t(inp["points_cont"][:, None, :2]), _t(inp["points_cont"][:, 2:]))[:, 0].numpy()

        nodes = int(inp["spline_nodes"])
        out["spline:basis"] = _spline_null_basis(nodes, "reference").astype(np.float32)
        from hti_bench.toolkit.lagrangian import SplinePath

        path = SplinePath(nodes, 19, "reference")
        y0, y1, phi = _t(inp["path_y0"]), _t(inp["path_y1"]), _t(inp["path_phi"]).reshape(-1, nodes, 2)
        out["spline:path"] = torch.stack([path.at(y0, y1, phi, float(s)) for s in inp["spline_ts"]], 1).numpy()

    src, tgt = _t(inp["source"]), _t(inp["target"])
    for gname in GEOMETRIES:
        mods = port_modules(inp, ref, gname)
        metric, kde, path, spline, g, t = (mods[k] for k in ("metric", "potential", "path", "spline", "g", "T"))
        x = src[:, 2:]
        with torch.no_grad():
            out[f"{gname}:energy"] = _energy_on_nodes(metric, kde, _t(inp["energy_nodes"])).numpy()
            phi = spline(torch.cat([src[:, :2], tgt[:, :2]], 1), x).reshape(-1, nodes, 2)
            out[f"{gname}:phi"] = phi.reshape(phi.shape[0], -1).numpy()
            ref_phi = _t(ref[f"{gname}:phi"]).reshape(-1, nodes, 2)
            out[f"{gname}:cost_given_phi"] = path_cost(
                path, metric, kde, src[:, :2], tgt[:, :2], ref_phi, x, "reference"
            ).numpy()
            out[f"{gname}:cost"] = path_cost(path, metric, kde, src[:, :2], tgt[:, :2], phi, x, "reference").numpy()
            out[f"{gname}:T"] = t(src[:, :2], x).numpy()
            # One training step's losses at the reference's c-transform solution ŷ (a constant).
            hat = _t(ref[f"{gname}:target_hat"])[:, :2]
            phi_hat = spline(torch.cat([src[:, :2], hat], 1), x).reshape(-1, nodes, 2)
            c = path_cost(path, metric, kde, src[:, :2], hat, phi_hat, x, "reference")
            # CLOT's own training losses; its dual leaves out the constant E c(y, ŷ) (no gradient)
            dual, amort = mods["clot"].losses(g, t, src[:, :2], x, hat, tgt[:, :2], tgt[:, 2:])
            out[f"{gname}:dual_loss"] = np.asarray(float(dual - c.mean()), np.float32)
            out[f"{gname}:amor_loss"] = np.asarray(float(amort), np.float32)
        out[f"{gname}:ctransform"] = _port_ctransform(inp, mods, src).numpy()
        out[f"{gname}:ctransform_jaxopt"] = _jaxopt_ctransform(mods, src).numpy()
        with torch.no_grad():
            objective = _objective(inp, mods, src)
            out[f"{gname}:objective_at_solution"] = objective(_t(ref[f"{gname}:ctransform"])).numpy()
            out[f"{gname}:objective_at_port"] = objective(_t(out[f"{gname}:ctransform"])).numpy()
    return out


def _jaxopt_ctransform(mods: dict, src: torch.Tensor) -> torch.Tensor:
    """The reference's solver re-implemented (``scripts/parity/jaxopt_like.py``) on the port's CLOT,
    configured by :func:`_port_ctransform`."""
    sys.path.insert(0, str(ROOT / "scripts" / "parity"))
    import jaxopt_like

    with torch.no_grad():
        solution = jaxopt_like.clot_ctransform(
            mods["clot"], src[:, :2], src[:, 2:], torch.zeros(src.shape[0], dtype=torch.long)
        )
    return torch.cat([solution, src[:, 2:]], 1)


def _objective(inp: dict[str, np.ndarray], mods: dict[str, nn.Module], src: torch.Tensor):
    """The reference's c-transform objective z ↦ c(y, clip(z)) − g(clip(z)) (the path re-predicted by
    the amortiser at every z), computed with the port's modules."""
    from hti_bench.toolkit.lagrangian import path_cost

    lo, hi = _t(inp["bounds_lo"]), _t(inp["bounds_hi"])
    y, x = src[:, :2], src[:, 2:]

    def objective(z: torch.Tensor) -> torch.Tensor:
        z = torch.maximum(torch.minimum(z[:, :2], hi), lo)
        phi = mods["spline"](torch.cat([y, z], 1), x).reshape(z.shape[0], -1, 2)
        c = path_cost(mods["path"], mods["metric"], mods["potential"], y, z, phi, x, "reference")
        return c - mods["g"](z, x)[:, 0]

    return objective


def _port_ctransform(inp: dict[str, np.ndarray], mods: dict, src: torch.Tensor) -> torch.Tensor:
    """CLOT's c-transform (its batched L-BFGS) from T(y), for the reference's g and T, in the reference's
    cost form on the reference's spline family, with the exact KDE and metric."""
    clot = mods["clot"]
    clot.g_ = nn.ModuleList([mods["g"]])
    clot.T_ = nn.ModuleList([mods["T"]])
    clot.metric_ = clot.geometry_ = mods["metric"]
    clot.potential_, clot.path_, clot.spline_ = mods["potential"], mods["path"], mods["spline"]
    clot.curved_ = True
    clot.lo_, clot.hi_ = _t(inp["bounds_lo"]), _t(inp["bounds_hi"])
    with torch.no_grad():
        solution = clot._ctransform_all(src[:, :2], src[:, 2:], torch.zeros(src.shape[0], dtype=torch.long))
    return torch.cat([solution, src[:, 2:]], 1)


# ------------------------------------------------------------------------------------- comparison


@dataclass
class Row:
    component: str
    quantity: str
    reference: str
    max_abs: float
    max_rel: float
    note: str = ""


def _diff(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = np.abs(a - b)
    return float(err.max()), float((err / np.maximum(np.abs(a), 1e-6)).max())


#: component → (what, reference key, port key, note)
CHECKS: list[tuple[str, str, str, str, str]] = [
    ("metric K_θ (eigenvalue budget), D=2, class x", "G(q | x)", "metric_eig_cat:G", "metric_eig_cat:G", ""),
    ("metric K_θ, D=3, continuous x (Givens rotations)", "G(q | x)", "metric_eig_cont3:G", "metric_eig_cont3:G", ""),
    ("metric NLOT (fixed eigenvalues 1, 0.1)", "G(q | x)", "metric_nlot_cat:G", "metric_nlot_cat:G", ""),
    ("KDE potential, class mask", "Û(q | x)", "kde_cat:U", "kde_cat:U", ""),
    ("KDE potential, Nadaraya–Watson", "Û(q | x)", "kde_cont:U", "kde_cont:U", ""),
    ("spline basis (`spline_basis=reference`)", "null-space basis 56×15", "spline:basis", "spline:basis", ""),
    ("spline path", "γ(s) for given φ", "spline:path", "spline:path", ""),
]
for _g, _label in (("geo_eig_pot", "K_θ − Û"), ("geo_eucl_pot", "K_I − Û"), ("geo_eucl", "K_I")):
    CHECKS += [
        (f"discretised energy, {_label}", "E on given nodes", f"{_g}:energy", f"{_g}:energy", ""),
        (f"spline amortiser, {_label}", "φ(y0, y1 | x)", f"{_g}:phi", f"{_g}:phi", ""),
        (
            f"path cost (reference form), {_label}",
            "½E² for the reference's φ",
            f"{_g}:cost",
            f"{_g}:cost_given_phi",
            "",
        ),
        (f"path cost (reference form), {_label}", "½E², φ from the amortiser", f"{_g}:cost", f"{_g}:cost", ""),
        (f"source map T_k (residual), {_label}", "T(y | x)", f"{_g}:T", f"{_g}:T", ""),
        (f"dual loss of one step, {_label}", "−E[c(y, ŷ) − g(ŷ)] − E g(y')", f"{_g}:dual_loss", f"{_g}:dual_loss", ""),
        (f"amortisation loss of one step, {_label}", "mean ‖T(y) − ŷ‖²", f"{_g}:amor_loss", f"{_g}:amor_loss", ""),
    ]


def compare(ref: dict[str, np.ndarray], port: dict[str, np.ndarray]) -> list[Row]:
    rows = []
    for component, quantity, rk, pk, note in CHECKS:
        want, got = np.asarray(ref[rk]), np.asarray(port[pk])
        if want.shape != got.shape:  # the reference's maps return [y, x]: compare the outputs y
            want = want[..., : got.shape[-1]]
        a, r = _diff(want, got)
        rows.append(Row(component, quantity, f"{float(np.abs(want).max()):.3g}", a, r, note))
    for gname, label in (("geo_eig_pot", "K_θ − Û"), ("geo_eucl_pot", "K_I − Û"), ("geo_eucl", "K_I")):
        a, r = _diff(ref[f"{gname}:ctransform"][:, :2], port[f"{gname}:ctransform"][:, :2])
        obj_ref = float(np.mean(ref[f"{gname}:objective_at_solution"]))
        obj_port = float(np.mean(port[f"{gname}:objective_at_port"]))
        rows.append(
            Row(
                f"one c-transform solve, {label}",
                "ŷ = argmin c(y, ·) − g",
                "",
                a,
                r,
                f"objective c(y, ŷ) − g(ŷ) reached, mean over rows: reference {obj_ref:.4g}, port {obj_port:.4g}",
            )
        )
        rowwise = np.abs(ref[f"{gname}:ctransform"][:, :2] - port[f"{gname}:ctransform_jaxopt"][:, :2]).max(1)
        a, r = _diff(ref[f"{gname}:ctransform"][:, :2], port[f"{gname}:ctransform_jaxopt"][:, :2])
        rows.append(
            Row(
                f"one c-transform solve, {label}",
                "ŷ with the reference's solver re-implemented",
                "",
                a,
                r,
                f"{int((rowwise < 1e-2).sum())} of {len(rowwise)} rows within 1e-2 (median {np.median(rowwise):.1e})",
            )
        )
        a, r = _diff(ref[f"{gname}:objective_at_solution"], port[f"{gname}:objective_at_solution"])
        rows.append(
            Row(
                f"c-transform objective, {label}",
                "c(y, z) − g(z) at the reference's ŷ",
                f"{float(np.abs(ref[f'{gname}:objective_at_solution']).max()):.3g}",
                a,
                r,
            )
        )
        if f"{gname}:objective_at_port" in ref:  # the reference's evaluation of the port's solution
            a, r = _diff(ref[f"{gname}:objective_at_port"], port[f"{gname}:objective_at_port"])
            rows.append(
                Row(
                    f"c-transform objective, {label}",
                    "c(y, z) − g(z) at the port's ŷ",
                    f"{float(np.abs(ref[f'{gname}:objective_at_port']).max()):.3g}",
                    a,
                    r,
                )
            )
    return rows


def markdown(rows: list[Row]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "| component | quantity | largest reference value | max abs diff | max rel diff | note |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {cell(r.component)} | {cell(r.quantity)} | {r.reference} | {r.max_abs:.2e} | {r.max_rel:.2e} | {cell(r.note)} |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference-python", help="Python of the reference's environment (JAX, flax, jaxopt, stochman).")
    p.add_argument("--nlot", help="the NLOT folder of the reference checkout.")
    p.add_argument("--fixture", help="Compare against stored reference outputs instead of running the reference.")
    p.add_argument("--write-fixture", help="Store the inputs and the reference's outputs here (for the tests).")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.fixture:
        stored = dict(np.load(args.fixture))
        inp = {k[4:]: v for k, v in stored.items() if k.startswith("inp:")}
        ref = {k[4:]: v for k, v in stored.items() if k.startswith("ref:")}
    elif args.reference_python and args.nlot:
        inp = make_inputs(args.seed)
        ref = run_reference(args.reference_python, args.nlot, inp)
        port = port_outputs(inp, ref)
        for gname in GEOMETRIES:  # the reference's objective at the port's c-transform solutions
            inp[f"{gname}:port_solution"] = port[f"{gname}:ctransform"]
        ref = run_reference(args.reference_python, args.nlot, inp)
        if args.write_fixture:
            Path(args.write_fixture).parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(
                args.write_fixture, **{f"inp:{k}": v for k, v in inp.items()}, **{f"ref:{k}": v for k, v in ref.items()}
            )
    else:
        p.error("give --reference-python and --nlot, or --fixture")
    rows = compare(ref, port_outputs(inp, ref))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

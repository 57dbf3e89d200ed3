"""The reference half of the CLOT parity check: runs in the HTI authors' own JAX environment.

Not part of hti-bench and never imported by it: ``scripts/parity/clot_parity.py`` runs this file with the
reference environment's Python, in a subprocess, as

    python reference_side.py --nlot PATH/TO/NLOT --inputs in.npz --out ref.npz

It builds the reference modules (lagrangian_ot, from the authors' checkout at ``--nlot``) with fixed
PRNG keys, evaluates each component on the inputs in ``in.npz``, and writes the modules' parameters
(flattened, ``<component>/<flax path>``) and outputs to ``ref.npz``, so the port can load the very
same weights and compare outputs. Only the reference's public functions and modules are called.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import numpy as np


def flatten(prefix: str, tree, out: dict) -> None:
    for key, value in tree.items():
        path = f"{prefix}/{key}"
        if hasattr(value, "items"):
            flatten(path, value, out)
        else:
            out[path] = np.asarray(value)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--nlot", required=True, help="the NLOT folder of the reference checkout")
    p.add_argument("--inputs", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    sys.path.insert(0, os.path.abspath(args.nlot))
    os.environ.setdefault("WANDB_MODE", "disabled")

    import jax
    import jax.numpy as jnp
    from lagrangian_ot import (
        ctransform_solvers,
        geometries,
        lagrangian_potentials,
        metrics,
        models,
        neuraldual,
        splines,
    )
    from lagrangian_ot.spline_amortizer import SplineMLP

    jax.config.update("jax_enable_x64", False)
    inp = dict(np.load(args.inputs))
    out: dict[str, np.ndarray] = {}
    key = jax.random.PRNGKey(int(inp["seed"]))

    def init(module, *example, method=None):
        nonlocal key
        k, key = jax.random.split(key)
        return module.init(k, *example, method=method)["params"]

    # ---- metrics: G(q | x) at points z = [q, x]
    for name, module, points in (
        ("metric_eig_cat", metrics.NeuralNetMetricEig(D=2, C=1, categorical=True, num_categories=2), inp["points_cat"]),
        ("metric_eig_cont3", metrics.NeuralNetMetricEig(D=3, C=2, categorical=False), inp["points_cont3"]),
        ("metric_nlot_cat", metrics.NeuralNetMetric(D=2, C=1, categorical=True, num_categories=2), inp["points_cat"]),
    ):
        params = init(module, jnp.asarray(points[0]))
        flatten(name, params, out)
        out[f"{name}:G"] = np.asarray(jax.vmap(lambda z: module.apply({"params": params}, z))(jnp.asarray(points)))

    # ---- KDE potentials
    kde_cat = lagrangian_potentials.DensityPotentialCircles(
        D=2, C=1, samples=jnp.asarray(inp["support_cat"]), bandwidth=float(inp["h"]), lambda_repel=float(inp["alpha"])
    )
    pk = init(kde_cat, jnp.asarray(inp["points_cat"][0]))
    out["kde_cat:U"] = np.asarray(jax.vmap(lambda z: kde_cat.apply({"params": pk}, z))(jnp.asarray(inp["points_cat"])))
    kde_cont = lagrangian_potentials.DensityPotential(
        D=2,
        C=2,
        samples=jnp.asarray(inp["support_cont"]),
        bandwidth=float(inp["h"]),
        conditional_bandwidth=float(inp["hx"]),
        lambda_repel=float(inp["alpha"]),
    )
    pk = init(kde_cont, jnp.asarray(inp["points_cont"][0]))
    out["kde_cont:U"] = np.asarray(
        jax.vmap(lambda z: kde_cont.apply({"params": pk}, z))(jnp.asarray(inp["points_cont"]))
    )

    # ---- the spline path for given parameters φ
    basis = splines.get_basis(2, int(inp["spline_nodes"]))
    out["spline:basis"] = np.asarray(basis)
    ts = jnp.asarray(inp["spline_ts"])
    out["spline:path"] = np.asarray(
        jax.vmap(lambda a, b, phi: splines.compute_spline(a, b, basis, phi, ts))(
            jnp.asarray(inp["path_y0"]), jnp.asarray(inp["path_y1"]), jnp.asarray(inp["path_phi"])
        )
    )

    # ---- geometries: the discretised energy on given nodes, the spline network, the cost, one c-transform
    spline_mlp = functools.partial(SplineMLP, num_hidden=int(inp["spline_hidden"]))
    solver_kwargs = {"num_spline_nodes": int(inp["spline_nodes"]), "max_iter": 0}
    src, tgt = jnp.asarray(inp["source"]), jnp.asarray(inp["target"])
    for gname, geometry_name, potential in (
        ("geo_eig_pot", "neural_net_metric_eig", True),
        ("geo_eucl_pot", "sq_euclidean_manifold", True),
        ("geo_eucl", "sq_euclidean_manifold", False),
    ):
        pot = (
            lagrangian_potentials.DensityPotentialCircles(
                D=2,
                C=1,
                samples=jnp.asarray(inp["support_cat"]),
                bandwidth=float(inp["h"]),
                lambda_repel=float(inp["alpha"]),
            )
            if potential
            else None
        )
        geo = geometries.get(
            geometry_name,
            {"spline_solver_kwargs": solver_kwargs, "spline_model_initializer_fn": spline_mlp},
            D=2,
            C=1,
            categorical=True,
            num_categories=2,
            lagrangian_potential_initializer_fn=pot,
        )
        geo.bounds = (jnp.asarray(inp["bounds_lo"]), jnp.asarray(inp["bounds_hi"]))
        pg = init(geo, src[0], tgt[0], method=geo.cost)
        flatten(gname, pg, out)
        nodes = jnp.asarray(inp["energy_nodes"])  # (B, P, 3)
        out[f"{gname}:energy"] = np.asarray(
            jax.vmap(lambda xs: geo.apply({"params": pg}, xs, method=geo.curve_energy))(nodes)
        )
        out[f"{gname}:phi"] = np.asarray(
            jax.vmap(lambda a, b: geo.apply({"params": pg}, a, b, method=geo.predict_spline_params))(src, tgt)
        )
        out[f"{gname}:cost"] = np.asarray(
            jax.vmap(lambda a, b: geo.apply({"params": pg}, a, b, method=geo.cost))(src, tgt)
        )

        # one training step's pieces: g_k, T_k, the c-transform by L-BFGS from T_k, the dual objective
        dims = [int(w) for w in inp["potential_hidden"]]
        g = models.MLP(dim_hidden=dims, is_potential=True, D=2, C=1, categorical=True, num_categories=2)
        t = models.MLP(dim_hidden=dims, is_potential=False, D=2, C=1, categorical=True, num_categories=2)
        pgk, ptk = init(g, tgt), init(t, src)
        flatten(f"{gname}_g", pgk, out)
        flatten(f"{gname}_T", ptk, out)
        ctrans = ctransform_solvers.CTransformLBFGS(
            gtol=1e-5, max_iter=int(inp["ctransform_iters"]), linesearch_type="backtracking"
        )
        dual = neuraldual.ManifoldW2NeuralDual(geometry=geo, target_potential=g, source_map=t, ctransform_solver=ctrans)
        init_hat = t.apply({"params": ptk}, src)
        out[f"{gname}:T"] = np.asarray(init_hat)
        solved = jax.vmap(lambda s, z: ctrans.solve(pg, functools.partial(g.apply, {"params": pgk}), s, target_init=z))(
            src, init_hat
        )
        out[f"{gname}:ctransform"] = np.asarray(solved.solution)
        out[f"{gname}:ctransform_value"] = np.asarray(solved.val)
        out[f"{gname}:ctransform_iters"] = np.asarray(solved.num_iter)
        loss, info = dual.loss_fn(pgk, ptk, pg, {"source": src, "target": tgt})
        out[f"{gname}:loss"] = np.asarray(loss)
        out[f"{gname}:dual_loss"] = np.asarray(info.dual_loss)
        out[f"{gname}:amor_loss"] = np.asarray(info.amor_loss)
        out[f"{gname}:target_hat"] = np.asarray(info.target_hat)
        # the objective the c-transform minimises, at its own solution and at the port's (sent back later)
        objective = jax.vmap(
            lambda s, z: (
                geo.apply({"params": pg}, s, geo.project(z), method=geo.cost) - g.apply({"params": pgk}, geo.project(z))
            )
        )
        out[f"{gname}:objective_at_solution"] = np.asarray(objective(src, solved.solution))
        if f"{gname}:port_solution" in inp:
            out[f"{gname}:objective_at_port"] = np.asarray(objective(src, jnp.asarray(inp[f"{gname}:port_solution"])))

    np.savez(args.out, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

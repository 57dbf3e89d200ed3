"""The end-to-end parity script's quantile experiment (scripts/parity/clot_parity_e2e.py): its change of units and
its evaluator must reproduce the harness's own score, or its reference-vs-port table measures nothing."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hti_bench.harness.registry import make_task
from hti_bench.harness.targets import TargetCache
from hti_bench.harness.unit import evaluate

ROOT = Path(__file__).resolve().parents[2]
SMALL = "quantile[epochs=8,hidden=16,n_eval=16,n_fit=16]"


def load_script(name: str):
    """A script under scripts/ (``parity/clot_parity_e2e``, ``studies/clot_decompose``, …) as a module
    (they are not a package)."""
    path = ROOT / "scripts" / f"{name}.py"
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def e2e():
    return load_script("parity/clot_parity_e2e")


def test_quantile_experiment_scores_mccann_as_the_harness_does(e2e):
    data = e2e.load_suite_quantile("quantile", SMALL)
    d = data["y_dim"]
    src = data["eval_source"]
    upper = data["upper"] * data["scale"] + data["shift"]  # the upper anchor's eval rows, in the reference's units
    # Linear interpolation in the reference's units at each held-out time, then the endpoint.
    times = [t for t, _ in data["heldout"]] + [e2e.ENDPOINT_S]
    preds = np.stack([np.concatenate([(1 - t) * src[:, :d] + t * upper, src[:, d:]], 1) for t in times])
    scores = e2e.evaluate("quantile", data, preds)
    assert scores["w2"] == pytest.approx(scores["mccann_w2"], rel=1e-4)
    assert scores["w2_identity"] == pytest.approx(scores["mccann_w2_identity"], rel=1e-4)
    assert scores["endpoint_error"] < 1e-3 * np.abs(upper - src[:, :d]).max() / data["scale"]
    # The harness's mccann on the same task (logit clock): the same number in the suite's units.
    harness = evaluate(make_task(SMALL, cache=TargetCache()), "mccann", 0, clouds=False)
    w2 = np.mean([r["w2"] for r in harness.rows])
    assert scores["mccann_w2"] == pytest.approx(w2, rel=1e-4)
    # The identity clock reads the path at other fractions, so it scores differently.
    assert scores["mccann_w2_identity"] != pytest.approx(scores["mccann_w2"], rel=1e-2)


def test_quantile_experiment_runs_the_port_in_the_reference_units(e2e):
    data = e2e.load_suite_quantile("quantile", SMALL)
    args = e2e.argparse.Namespace(
        port_set=["hidden=(8, 8)", "spline_hidden=16"],
        steps=2,
        lr=1e-3,
        ctransform_iters=1,
        spline_pretrain=1,
        spline_iters=1,
    )
    spec = e2e.port_spec("quantile", "K_I-U", args, data["anchors"].shape[1])
    times = [t for t, _ in data["heldout"]] + [e2e.ENDPOINT_S]
    preds, seconds = e2e.run_port(spec, data, times, seed=0)
    assert preds.shape == (len(times), *data["eval_source"].shape)
    assert np.isfinite(preds).all() and seconds > 0
    assert (preds[..., :3] >= 25 - 1e-4).all() and (preds[..., :3] <= 55 + 1e-4).all()  # the reference's box
    assert np.isfinite(list(e2e.evaluate("quantile", data, preds).values())).all()


def test_decomposition_of_a_straight_untrained_clot_has_known_parts():
    # scripts/studies/clot_decompose.py: without the potential CLOT's path is the straight line, so between the true
    # endpoints it is McCann; one step at a tiny lr leaves T at the identity (zero last layer), so its
    # endpoint error is the anchors' own distance and the straight line to it is the lower anchor.
    module = load_script("studies/clot_decompose")
    row = module.decompose(SMALL, "clot[potential=False,steps=1,lr=1e-12,hidden=(8, 8),ctransform_iters=0]", 0)
    assert row["path_to_true_endpoint"] == pytest.approx(row["mccann_w2"], rel=1e-5)
    task = make_task(SMALL, cache=TargetCache())
    a = module.draw_inputs(task, 0).anchors
    gap = float((a.samples[1][a.eval_mask][:, 0] - a.samples[0][a.eval_mask][:, 0]).norm(dim=-1).mean())
    assert row["endpoint_error"] == pytest.approx(gap, rel=1e-3)
    assert row["w2"] == pytest.approx(row["straight_to_own_endpoint"], rel=1e-3)


def test_reproduce_quantile_scores_mccann_exactly_on_forecasts_linear_in_tau(tmp_path, monkeypatch):
    # scripts/reproduce_quantile.py on a synthetic file in the paper's layout: forecasts that move linearly
    # in τ make McCann exact on the identity clock (MSE 0) and not on the logit clock; repeated histories
    # (as the real file has) are one condition row.
    import pandas as pd
    import torch

    module = load_script("reproduce_quantile")
    g = torch.Generator().manual_seed(0)
    n = 1210
    hist = torch.randn(n, 12, generator=g)
    hist[1205] = hist[3]  # a repeated window
    lo, hi = torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g) + 3
    lo[1205], hi[1205] = lo[3], hi[3]
    taus = torch.tensor(module.TAUS)
    s = ((taus - 0.01) / 0.98)[:, None, None]
    data = torch.cat([hist.expand(7, n, 12), (1 - s) * lo + s * hi], -1)
    path = tmp_path / "q.pt"
    torch.save(data, path)
    out = tmp_path / "rows.csv"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "reproduce_quantile.py",
            str(path),
            "--specs",
            "clot[steps=1,spline_pretrain=1,spline_iters=1,hidden=(8, 8),spline_hidden=16]",
            "--seeds",
            "0",
            "--csv",
            str(out),
        ],
    )
    assert module.main() == 0
    rows = pd.read_csv(out)
    mccann = rows[rows.spec == "mccann"].set_index("clock").mse
    assert mccann["identity"] < 1e-10 and mccann["logit"] > 0.1
    assert len(rows) == 4 and np.isfinite(rows.mse).all()
    assert module.main() == 0  # measured again: rows replaced, not duplicated
    assert len(pd.read_csv(out)) == 4


def test_parity_report_states_the_suites_95_percent_interval(e2e):
    from hti_bench.stats import ci95

    w2sq = [0.23, 0.21, 0.26]
    frame = pd.DataFrame(
        {
            "experiment": "moons",
            "variant": "K_I-U",
            "code": "reference",
            "label": "parity",
            "seed": [0, 1, 2],
            "w2sq": w2sq,
            "train_seconds": 1.0,
        }
    )
    row = e2e.report(frame).splitlines()[-1]
    assert f"| {np.mean(w2sq):.4g} ± {ci95(w2sq):.2g} |" in row, row
    # Student's t with n − 1 = 2 degrees of freedom: t₀.₉₇₅ = 4.3027
    assert ci95(w2sq) == pytest.approx(4.3027 * np.std(w2sq, ddof=1) / np.sqrt(3), rel=1e-4)

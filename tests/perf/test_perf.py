"""The benchmark plumbing: perf rows merge without duplicates, docs/evidence/performance.md's tables render, scripts run."""

import importlib.util
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from hti_bench.errors import ResultsError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "perf"))  # the benchmarks' plumbing lives with them, not in the package
import perftools as perf  # noqa: E402


def _script(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "perf" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_record_replaces_a_remeasured_figure_and_keeps_the_others(tmp_path):
    path = tmp_path / "perf.csv"
    perf.record([perf.row("b", "c1", "seconds", 1.0, "s", goal="≤ 2 s", meets_goal=True)], path)
    perf.record(
        [
            perf.row("b", "c1", "seconds", 3.0, "s", goal="≤ 2 s", meets_goal=False),
            perf.row("b", "c2", "seconds", 5.0, "s"),
        ],
        path,
    )
    df = pd.read_csv(path)
    assert len(df) == 2
    assert df.set_index("case").loc["c1", "value"] == 3.0
    assert list(df.columns) == perf.COLUMNS
    assert {"machine", "torch", "threads", "date"} <= set(df.columns) and df.threads.ge(1).all()


def test_record_refuses_a_file_that_is_not_a_perf_table(tmp_path):
    path = tmp_path / "perf.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ResultsError, match="perf.csv.*not a perf table"):
        perf.record([perf.row("b", "c", "q", 1.0, "s")], path)
    assert path.read_text() == "a,b\n1,2\n"  # untouched


def test_an_upper_bound_goal_is_written_and_judged_like_a_plain_row():
    met = perf.at_most("b", "c", "seconds", 120.0, "s", 120.0, repeats=3)
    plain = perf.row("b", "c", "seconds", 120.0, "s", goal="≤ 120 s", meets_goal=True, repeats=3)
    assert {k: v for k, v in met.items() if k != "date"} == {k: v for k, v in plain.items() if k != "date"}
    missed = perf.at_most("b", "c", "peak_rss_gib", 4.5, "GiB", 4.0)
    assert missed["goal"] == "≤ 4 GiB" and missed["meets_goal"] is False and missed["repeats"] == 1


def test_fitted_exponent_and_timed():
    assert perf.fitted_exponent([250, 500, 1000], [1.0, 4.0, 16.0]) == pytest.approx(2.0)
    assert math.isnan(perf.fitted_exponent([1], [1.0]))
    med, times, out = perf.timed(lambda: 7, repeats=3)
    assert out == 7 and len(times) == 3 and med >= 0


def test_report_writes_between_the_markers_only(tmp_path):
    report = _script("report")
    csv = tmp_path / "perf.csv"
    perf.record(
        [
            perf.row("query_vs_retrain", "taskA", "retrain_seconds", 2.0, "s"),
            perf.row("query_vs_retrain", "taskA/mccann", "speedup", 4000.0, "×", goal="≥ 1000×", meets_goal=True),
            perf.row("query_vs_retrain", "taskA/cfm", "speedup", 20.0, "×", goal="≥ 1000×", meets_goal=False),
            perf.row("fit_cost", "taskA/cfm", "fit_seconds", 9.5, "s"),
            perf.row("scoring", "1000×256, D=2", "seconds", 1.5, "s", goal="≤ 2 s", meets_goal=True),
        ],
        csv,
    )
    doc = tmp_path / "performance.md"
    doc.write_text(f"intro\n{report.START}\nstale\n{report.END}\noutro\n")
    assert report.main(["--csv", str(csv), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "stale" not in text
    assert "| mccann | 4,000× ✓ |" in text and "| cfm | 20× ✗ |" in text and "| ≤ 2 s | ✓ |" in text
    assert report.rendered_part(text) == report.render(report.read(csv))
    doc.write_text("no markers\n")
    assert report.main(["--csv", str(csv), "--doc", str(doc)]) == 2


def test_performance_page_shows_what_perf_csv_holds():
    # docs/evidence/performance.md's tables are rendered from results/perf.csv, never edited by hand: after a
    # benchmark, run `python perf/report.py` and commit both.
    report = _script("report")
    assert report.DOC == Path("docs") / "evidence" / "performance.md"
    text = (ROOT / report.DOC).read_text(encoding="utf-8")
    assert report.rendered_part(text) == report.render(report.read(ROOT / perf.PERF_CSV)), (
        "docs/evidence/performance.md is stale: run perf/report.py"
    )


def test_surrogates_benchmark_writes_query_fit_and_ratio_rows(tmp_path):
    csv = tmp_path / "perf.csv"
    bench = _script("surrogates")
    bench.main(
        [
            "-t",
            "noisy-regression[epochs=2]",
            "-s",
            "mixture",
            "-s",
            "stn[epochs=1]",
            "-s",
            "loss-conditional[epochs=1]",
            "--train-repeats",
            "1",
            "--query-repeats",
            "2",
            "--csv",
            str(csv),
        ]
    )
    df = pd.read_csv(csv)
    got = set(zip(df.benchmark, df.case, df.quantity))
    task = "noisy-regression[epochs=2]"
    assert {
        ("query_vs_retrain", task, "retrain_seconds"),
        ("fit_cost", f"{task}/mixture", "fit_seconds"),
        ("query_vs_retrain", f"{task}/mixture", "speedup"),
        ("query_vs_retrain", f"{task}/stn[epochs=1]", "speedup"),
    } <= got
    assert (df.value > 0).all() and df.value.map(math.isfinite).all()
    ratio = df[(df.quantity == "speedup")].set_index("case")
    assert ratio.loc[f"{task}/mixture", "goal"] == "≥ 1000×"
    assert pd.isna(ratio.loc[f"{task}/stn[epochs=1]", "goal"])  # best response: no goal
    fit = df[df.benchmark == "fit_cost"].set_index("case")
    assert pd.isna(fit.loc[f"{task}/mixture", "goal"])
    # a budget relative to retraining: three times the retrain seconds measured in the same run
    retrain = float(df[df.quantity == "retrain_seconds"].value.iloc[0])
    assert fit.loc[f"{task}/loss-conditional[epochs=1]", "goal"] == f"≤ 3 × retrain ({3 * retrain:.1f} s)"

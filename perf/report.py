"""Render ``results/perf.csv`` as Markdown tables, into docs/evidence/performance.md between the perf markers.

    .venv/bin/python perf/report.py              # rewrite docs/evidence/performance.md's tables
    .venv/bin/python perf/report.py --print      # print them instead

Query-vs-retrain speed-ups and fit costs are pivoted (surrogates × tasks); every other benchmark is
listed row by row with its goal and whether it was met. Nothing here measures anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import perftools as perf

START, END = "<!-- perf:start (perf/report.py writes this part) -->", "<!-- perf:end -->"
DOC = Path("docs") / "evidence" / "performance.md"
ORDER = ["end_to_end", "query_vs_retrain", "scoring", "fit_cost", "clot_fit", "scaling", "startup", "training"]
TITLES = {
    "end_to_end": "End to end: the default `hti-bench run` (`perf/end_to_end.py`)",
    "query_vs_retrain": "Query vs retrain: retrain time ÷ one query for all evaluation conditions (`perf/surrogates.py`)",
    "fit_cost": "Fit cost at the default budget, seconds, seed 0, 2 threads (`perf/surrogates.py`)",
    "scoring": "Scoring throughput: per-condition W₁ and W₂ (`perf/scoring.py`)",
    "clot_fit": "CLOT fit (`perf/clot_fit.py`)",
    "scaling": "Scaling (`perf/scoring.py`, `perf/clot_fit.py`)",
    "startup": "Start-up (`perf/startup.py`)",
    "training": "Target training: Lightning's share and the optimiser step (`perf/training.py`)",
    "closed_loop": "Policy tasks: the closed loop of one surrogate at every held-out λ, and the PPO training of every "
    "target (`perf/closed_loop.py`)",
    "ghaffari": "The cancer model's simulator (`perf/ghaffari.py`)",
}


def _fmt(value: float, unit: str) -> str:
    if unit == "×":
        return f"{value:,.0f}×" if value >= 10 else f"{value:.2f}×"
    if unit == "s":
        return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:,.1f} s"
    if unit == "ms":
        return f"{value:.3f} ms"
    return f"{value:.3g} {unit}".strip()


def _markdown(table: pd.DataFrame, index: bool = True) -> str:
    # pandas' to_markdown needs the tabulate package; a pipe table is four lines of code.
    if index:
        table = table.reset_index()
    cols = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _met(v: object) -> str:
    return {"True": "✓", "False": "✗"}.get(str(v), "")


def _pivot(df: pd.DataFrame, quantity: str, fmt) -> str:  # noqa: ANN001
    d = df[df.quantity == quantity].copy()
    if d.empty:
        return ""
    d[["task", "surrogate"]] = d.case.str.split("/", n=1, expand=True)
    d["cell"] = [fmt(r) for r in d.itertuples()]
    table = d.pivot(index="surrogate", columns="task", values="cell").fillna("–")
    table.columns.name = None
    return _markdown(table)


def render(df: pd.DataFrame) -> str:
    # Every machine and torch the rows come from (most rows first): the last row's alone misdescribes the rest.
    machines = " and ".join(df.machine.value_counts().index)
    torches = " and ".join(df.torch.value_counts().index)
    out = [
        f"Measured on {machines}, torch {torches}; the `date`, `threads` and exact command of every "
        f"figure are in `results/perf.csv`. ✓/✗: goal met or not.",
        "",
    ]
    for bench in [b for b in ORDER if b in set(df.benchmark)] + sorted(set(df.benchmark) - set(ORDER)):
        d = df[df.benchmark == bench]
        out += [f"**{TITLES.get(bench, bench)}**", ""]
        if bench == "query_vs_retrain":
            retrain = d[d.quantity == "retrain_seconds"]
            out.append(
                "Retrain, median: " + ", ".join(f"{r.case} {_fmt(r.value, 's')}" for r in retrain.itertuples()) + "."
            )
            out.append("")
            out.append(_pivot(d, "speedup", lambda r: f"{_fmt(r.value, '×')} {_met(r.meets_goal)}".strip()))
            out += [
                "",
                "Goal ≥ 1000× applies to outputs-only surrogates; best-response ones (hypernetwork, stn, "
                "delta-stn, anchored-delta-stn) are shown without it. Analytic tasks have nothing to retrain; "
                "their query times are in `results/perf.csv`.",
            ]
        elif bench == "fit_cost":
            out.append(_pivot(d, "fit_seconds", lambda r: f"{r.value:,.1f}"))
        else:
            t = pd.DataFrame(
                {
                    "case": d.case,
                    "quantity": d.quantity,
                    "value": [_fmt(v, u) for v, u in zip(d.value, d.unit)],
                    "goal": d.goal.fillna(""),
                    "met": [_met(v) for v in d.meets_goal],
                }
            )
            out.append(_markdown(t, index=False))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def read(csv: str | Path) -> pd.DataFrame:
    """``results/perf.csv`` as :func:`render` expects it (goals and met flags as text)."""
    df = pd.read_csv(csv, keep_default_na=False, dtype={"meets_goal": str, "goal": str})
    df["value"] = pd.to_numeric(df["value"])
    return df


def rendered_part(body: str) -> str | None:
    """The text between the perf markers of a document, or None when it has none."""
    if START not in body or END not in body:
        return None
    return body.split(START, 1)[1].split(END, 1)[0].removeprefix("\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", default=str(perf.PERF_CSV))
    p.add_argument("--doc", default=str(DOC), help="The document whose perf markers enclose the tables.")
    p.add_argument("--print", action="store_true", help="Print the tables instead of editing the document.")
    args = p.parse_args(argv)
    text = render(read(args.csv))
    if args.print:
        print(text)
        return 0
    doc = Path(args.doc)
    body = doc.read_text(encoding="utf-8")
    if rendered_part(body) is None:
        print(f"{doc}: no perf markers ({START} … {END}); add them where the tables should go", file=sys.stderr)
        return 2
    head, rest = body.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + START + "\n" + text + END + tail, encoding="utf-8")
    print(f"{doc}: performance tables rewritten from {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

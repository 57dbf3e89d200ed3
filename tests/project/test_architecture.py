"""The package's architecture as checks: layered imports, no cycles, the layout the README promises."""

import re
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]


def test_the_layers_contract_is_kept():
    # `lint-imports` reads [tool.importlinter] in pyproject.toml: no module imports a layer above it.
    out = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 kept, 0 broken" in out.stdout


def cycles(graph):
    """Every (a, b) with a importing b directly and b reaching a back, with the way back."""
    found = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                found.append((module, *back))
    return found


def test_no_import_cycles_anywhere_in_the_package():
    graph = grimp.build_graph("hti_bench", exclude_type_checking_imports=True)
    assert len(graph.modules) > 40
    assert cycles(graph) == [], "import cycles: " + "; ".join(" → ".join(c) for c in cycles(graph))


def test_the_cycle_check_finds_a_cycle():
    graph = grimp.build_graph("hti_bench", exclude_type_checking_imports=True)
    graph.add_import(importer="hti_bench.clock", imported="hti_bench.task")  # task imports clock: a cycle
    assert ("hti_bench.clock", "hti_bench.task", "hti_bench.clock") in cycles(graph)


def test_the_readme_layout_table_names_real_paths():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    paths = re.findall(r"^\| `([^`]+)`", table, re.M)
    assert {
        "hti_bench/",
        "hti_bench/harness/",
        "hti_bench/toolkit/",
        "hti_bench/tasks/",
        "baselines/",
        "methods/",
        "sweeps/",
        "results/",
        "tests/",
    } <= set(paths)
    for path in paths:
        assert (ROOT / path).exists(), f"README's layout table names {path}, which does not exist"
    harness = {p.stem for p in (ROOT / "hti_bench" / "harness").glob("*.py") if p.stem != "__init__"}
    row = next(line for line in table.splitlines() if line.startswith("| `hti_bench/harness/`"))
    missing = sorted(m for m in harness if f"`{m}.py`" not in row)
    assert not missing, f"README's layout table does not say what harness/{missing} are"

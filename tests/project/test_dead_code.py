"""No dead code in the package and the built-in plugins: vulture finds no unused name in hti_bench/,
baselines/ or methods/, beyond what tests/project/vulture_allowlist.py says a framework uses.

The tests, scripts/ and perf/ are read too, as users: a public helper that only they call (e.g.
``hti_bench.scoring.wasserstein``, the reference the batched scorer is checked against) is used. Unused
code inside them is not reported here.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("hti_bench", "baselines", "methods")
USERS = ("tests", "scripts", "perf")  # the allow-list lives in tests/project/, so it is read with them


def test_vulture_finds_no_unused_code():
    proc = subprocess.run(
        [sys.executable, "-m", "vulture", *CHECKED, *USERS, "--min-confidence", "60"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr  # 3: vulture found something
    dead = [line for line in proc.stdout.splitlines() if line.startswith(tuple(f"{d}/" for d in CHECKED))]
    assert not dead, (
        "unused code (delete it; a hook a framework calls by name goes in tests/project/vulture_allowlist.py):\n"
        + "\n".join(dead)
    )


def test_the_check_sees_dead_code(tmp_path):
    (tmp_path / "plugin.py").write_text("def used():\n    return 1\n\n\ndef forgotten():\n    return 2\n\n\nused()\n")
    proc = subprocess.run(
        [sys.executable, "-m", "vulture", str(tmp_path), "--min-confidence", "60"], capture_output=True, text=True
    )
    assert "unused function 'forgotten'" in proc.stdout and "'used'" not in proc.stdout, proc.stdout

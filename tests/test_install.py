"""Facts about the installation that, when wrong, break Lightning or the README (see README 'Installing')."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_torchvision_is_not_installed():
    # A stray torchvision that does not match torch breaks `import pytorch_lightning` (torchmetrics
    # imports it whenever present); torchdyn/torchcfm must stay installed with --no-deps.
    assert importlib.util.find_spec("torchvision") is None


def test_ci_runs_exactly_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2 and "hti-bench run" in commands[0] and "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci, f".ci/run must run the README command verbatim: {command}"

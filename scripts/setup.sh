#!/usr/bin/env bash
# Create the virtual environment .venv (or $HTI_BENCH_VENV) and install hti-bench into it.
#
# Three pip steps, because two of the declared stack's packages must not resolve their own
# dependencies: torchdyn (needed by torchcfm) declares torchvision, which pip would pick in a version
# that breaks `import pytorch_lightning`, and sweeps pins numpy<2. requirements.txt pins torch with
# everything else so that the CPU build is never swapped for a CUDA one.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${HTI_BENCH_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
echo "hti-bench installed in $venv"

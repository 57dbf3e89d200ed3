"""W&B's sweep engine (the ``sweeps`` package), imported once, quietly; what the controller and tuning share."""

from __future__ import annotations

import warnings
from typing import Any

from hti_bench.errors import HTIBenchError


def import_sweeps() -> Any:
    """The ``sweeps`` package (W&B's sweep engine), quietly: it warns about pydantic at import."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import sweeps
        except ImportError as err:  # pragma: no cover - installed by scripts/setup.sh
            raise HTIBenchError(
                "The offline sweep controller needs W&B's 'sweeps' package: "
                "pip install jsonref jsonschema && pip install --no-deps sweeps==0.3.0 (scripts/setup.sh does)."
            ) from err
    return sweeps

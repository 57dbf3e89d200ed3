"""Self-Tuning Network (MacKay et al. 2019) as an HTI best-response baseline.

Every parameter tensor of the task's own architecture gets STN's structured response
(:class:`hti_bench.toolkit.best_response.StructuredResponse`): P(λ) = P_elem + (V_P s(λ)) ⊙_row P_hyper, each unit
affine in λ's normalised clock position s. It is trained on the task's per-example loss at λ̃, a
perturbation of a centre λ0 with a learned scale σ and an entropy bonus (STN's hyper step with the
hyperparameter itself frozen: HTI does not tune λ). It answers at λ* with the
weights P(λ*) and the task's own output mechanism.

What to expect: the response is fitted where the perturbations land, so it is accurate near λ0 and
degrades with distance; ``entropy_weight`` and ``sigma0`` set how far it reaches. The anchors are
not used (λ0 defaults to the middle of the anchor range on the clock).
"""

from __future__ import annotations

from typing import ClassVar

from hti_bench.toolkit.best_response import StnBase


class STN(StnBase):
    name: ClassVar[str] = "stn"
    description: ClassVar[str] = (
        "Self-Tuning Network: per-layer response affine in λ, trained on the task loss around λ0."
    )
    references: ClassVar[tuple[str, ...]] = (
        "MacKay, Vicol, Lorraine, Duvenaud & Grosse, Self-Tuning Networks, ICLR 2019",
    )

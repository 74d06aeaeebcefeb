"""AttnLRP and CP-LRP on unmodified transformers (torch and JAX)."""

from __future__ import annotations

from typing import Any

from .._attributor import Attributor, GradientNeeds, MethodOutput
from .._errors import argument_error
from .._model import GradientResult
from ..rules import RuleSet, attnlrp_rule_set


class AttnLRP(Attributor):
    """Relevance of each input value for the target logit by AttnLRP (or CP-LRP with ``cp=True``).

    LRP-ε on linear layers and convolutions, the sum rule on residual
    additions, the identity rule on GELU and on LayerNorm's normalisation
    (``1/σ`` constant), the uniform ε-rule on the two matrix products of
    attention and, for AttnLRP, the softmax rule ``R_in = x ⊙ (R − s ⊙ ΣR)``;
    CP-LRP treats the attention as constant (no relevance through the
    softmax). Attention is reached as attention capture reaches it
    (``F.scaled_dot_product_attention``, ``nn.MultiheadAttention``; in JAX the
    products, softmax, LayerNorm and GELU are found in the traced program of a
    Flax linen / nnx model); the model is never edited. With ``epsilon=0`` the map equals lxt's. The map
    ``attribution`` has the input's shape ``(N, ...)`` and is signed.

    Parameters
    ----------
    model, backend, objective, registry
        As for every method (``objective`` must be ``"logit"``).
    cp : bool
        ``True``: CP-LRP (Ali et al. 2022), as lxt 2.1's torchvision ViT map.
    epsilon : float
        ε of every ε-rule.

    References
    ----------
    Achtibat et al. (2024). AttnLRP: attention-aware layer-wise relevance
    propagation for transformers. ICML. Ali et al. (2022). XAI for
    transformers: better explanations through conservative propagation. ICML.
    """

    name = "attnlrp"

    def __init__(self, model: Any, *, cp: bool = False, epsilon: float = 1e-6,
                 backend: str | None = None, objective: str = "logit",
                 registry: Any = None) -> None:
        if not isinstance(cp, bool):
            raise argument_error("cp", "True (CP-LRP) or False (AttnLRP)", cp)
        self.rule_set: RuleSet = attnlrp_rule_set(cp, epsilon)
        super().__init__(model, backend=backend, objective=objective, registry=registry)
        if self.objective != "logit":
            raise argument_error("objective", "'logit' for AttnLRP (relevance starts as the logit)",
                                 self.objective)
        self.cp = cp

    def needs(self) -> GradientNeeds:
        return GradientNeeds(rule=self.rule_set, input_gradient=True)

    def compute(self, result: GradientResult) -> MethodOutput:
        assert result.input_gradient is not None, "the backend returned no input relevance"
        return MethodOutput(attribution=result.input_gradient)

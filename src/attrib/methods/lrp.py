"""Layer-wise relevance propagation with rule composites, on the unmodified model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._attributor import Attributor, GradientNeeds, MethodOutput
from .._errors import argument_error
from .._model import GradientResult
from ..rules import RuleSet, lrp_rule_set


class LRP(Attributor):
    """Relevance of each input value for the target logit, by layer-wise relevance propagation.

    The target logit's value is its relevance; each layer passes relevance to
    its inputs by the rule the composite gives its kind (or its name), and the
    map is the relevance at the input: ``attribution.sum()`` per sample equals
    the logit where the rules conserve (LRP-0 / ε = 0 with zero biases). The
    model is never edited: BatchNorm after a convolution or dense layer is
    merged into it on the fly, exactly (see :mod:`attrib.rules`). The map
    ``attribution`` has the input's shape ``(N, ...)`` and is signed.

    Parameters
    ----------
    model, backend, objective, registry
        As for every method (``objective`` must be ``"logit"``).
    composite : str
        ``"epsilon_plus_flat"`` (default), ``"epsilon_plus"``, ``"epsilon_gamma_box"``
        (needs ``low``/``high``), ``"epsilon_alpha2_beta1"``, ``"epsilon"`` or ``"zero"``
        (see :func:`attrib.rules.lrp_rule_set`).
    rules : mapping, optional
        ``{kind or layer name: rule}`` overriding the composite.
    epsilon, gamma, stabilizer : float
    low, high : float or array, optional
        Input bounds of the zᴮ rule.

    References
    ----------
    Bach, Binder, Montavon, Klauschen, Müller, Samek (2015). On pixel-wise
    explanations for non-linear classifier decisions by layer-wise relevance
    propagation. Montavon et al. (2019). Layer-wise relevance propagation: an
    overview.
    """

    name = "lrp"

    def __init__(self, model: Any, *, composite: str = "epsilon_plus_flat",
                 rules: Mapping[str, Any] | None = None, epsilon: float = 1e-6,
                 gamma: float = 0.25, stabilizer: float = 1e-6, low: Any = None,
                 high: Any = None, backend: str | None = None, objective: str = "logit",
                 registry: Any = None) -> None:
        self.rule_set: RuleSet = lrp_rule_set(composite, rules, epsilon=epsilon, gamma=gamma,
                                              stabilizer=stabilizer, low=low, high=high)
        super().__init__(model, backend=backend, objective=objective, registry=registry)
        if self.objective != "logit":
            raise argument_error("objective", "'logit' for LRP (relevance starts as the logit)",
                                 self.objective)
        self.composite = composite

    def needs(self) -> GradientNeeds:
        return GradientNeeds(rule=self.rule_set, input_gradient=True)

    def compute(self, result: GradientResult) -> MethodOutput:
        assert result.input_gradient is not None, "the backend returned no input relevance"
        return MethodOutput(attribution=result.input_gradient)

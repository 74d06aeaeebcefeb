"""AttnLRP and CP-LRP on unmodified transformers (torch and JAX)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._attention import check_prefix_tokens, token_layout
from .._attributor import Attributor, GradientNeeds, MethodOutput
from .._errors import BackendError, argument_error
from .._model import GradientResult
from ..rules import RuleSet, attnlrp_rule_set
from ._attention_maps import check_reshape, grid_maps, image_size


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
    Flax linen / nnx model); the model is never edited. With ``epsilon=0`` the map equals lxt's.

    Parameters
    ----------
    model, backend, objective, registry
        As for every method (``objective`` must be ``"logit"``).
    cp : bool
        ``True``: CP-LRP (Ali et al. 2022), as lxt 2.1's torchvision ViT map.
    epsilon : float
        ε of every ε-rule.
    prefix_tokens : int, optional
        Tokens before the patch grid (class, distillation, registers); read
        from the model when ``None`` (as the attention methods read it).
    reshape : (h, w), optional
        The patch grid; found from the token count and the input's aspect
        ratio when ``None``.

    Notes
    -----
    ``attribution`` has the input's shape ``(N, ...)``: the signed relevance
    of each input value. The token-level maps are the relevance at the
    tokens entering the first transformer block (patch embedding, prefix
    tokens and position embedding added; the residual stream the first
    block's normalisation and residual connection both read), summed over
    channels: ``parts["tokens"]`` (N, T), prefix tokens included;
    ``layer_attribution`` (N, h, w), the patch tokens on their grid; and
    ``parts["token_map"]`` (N, H, W), that grid upsampled bilinearly to the
    input as the attention methods upsample theirs. Every block passes its
    relevance down to that point, so with CP-LRP and zero biases
    ``parts["tokens"].sum(1)`` is the logit; between it and the pixels the
    position embedding, the prefix-token parameters and the patch
    embedding's bias keep their shares. A post-norm model has no such point:
    its explanation has no token maps and ``stats["token_relevance"]`` says
    why. Never normalised.

    References
    ----------
    Achtibat et al. (2024). AttnLRP: attention-aware layer-wise relevance
    propagation for transformers. ICML. Ali et al. (2022). XAI for
    transformers: better explanations through conservative propagation. ICML.
    """

    name = "attnlrp"

    def __init__(self, model: Any, *, cp: bool = False, epsilon: float = 1e-6,
                 prefix_tokens: int | None = None, reshape: tuple[int, int] | None = None,
                 backend: str | None = None, objective: str = "logit",
                 registry: Any = None) -> None:
        if not isinstance(cp, bool):
            raise argument_error("cp", "True (CP-LRP) or False (AttnLRP)", cp)
        self.rule_set: RuleSet = attnlrp_rule_set(cp, epsilon)
        self._prefix = check_prefix_tokens(prefix_tokens)
        self._reshape = check_reshape(reshape)
        super().__init__(model, backend=backend, objective=objective, registry=registry)
        if self.objective != "logit":
            raise argument_error("objective", "'logit' for AttnLRP (relevance starts as the logit)",
                                 self.objective)
        self.cp = cp

    def needs(self) -> GradientNeeds:
        return GradientNeeds(rule=self.rule_set, input_gradient=True, token_relevance=True)

    def compute(self, result: GradientResult) -> MethodOutput:
        assert result.input_gradient is not None, "the backend returned no input relevance"
        at_tokens = result.token_relevance
        if at_tokens is None:
            if "token_relevance" not in result.stats:
                raise BackendError(f"backend: {self.model.backend!r} returned no token relevance "
                                   "and no reason (stats['token_relevance']) for 'attnlrp'")
            return MethodOutput(attribution=result.input_gradient)
        row = np.asarray(at_tokens).sum(axis=-1)  # (N, T, C) -> (N, T)
        size = image_size(result, self.model.layout, self.name)
        prefix = self._prefix if self._prefix is not None else self.model.prefix_tokens()
        layout = token_layout(row.shape[1], size, prefix, self._reshape, self.name)
        grid, upsampled = grid_maps(row, layout, size)
        return MethodOutput(
            attribution=result.input_gradient, layer_attribution=grid,
            parts={"tokens": row, "token_map": upsampled},
            stats={"prefix_tokens": layout.prefix, "grid": (layout.h, layout.w)})

"""The :class:`Model` interface: a framework model seen through one backend.

A backend adapts a framework model to this interface. Everything a method
needs comes out of one call, :meth:`Model.gradients`, which runs one forward
pass and the backward pass(es) the :class:`GradientRequest` asks for, and
returns NumPy arrays. Methods ask only for what they need: Grad-CAM asks for
no input gradient, so the backend stops its backward pass at the layer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = ["GradientRequest", "GradientResult", "Model", "LAYOUTS", "LayerInfo", "same_batch_groups",
           "check_token_relevance"]

LAYOUTS: tuple[str, ...] = ("NCHW", "NHWC")


@dataclass(frozen=True)
class GradientRequest:
    """What one gradient pass must compute.

    Attributes
    ----------
    inputs : ndarray or framework tensor, shape (N, ...)
        The batch, in the model's layout. Never modified by the backend.
    targets : ndarray of int64, shape (N,), or None
        One class per sample; ``None`` means the arg-max of each sample's
        logits. Backends pass the logits and this through
        :func:`attrib.resolve_targets`.
    objective : str
        ``"logit"``, ``"log_softmax"`` or ``"softmax"`` (see :mod:`attrib._targets`).
    rule : str or attrib.rules.RuleSet
        The rule set of the backward pass to the **input**: ``"vanilla"``,
        ``"guided"`` or ``"deconvnet"`` (rectifier rules), or a
        :class:`attrib.rules.RuleSet` (e.g. an LRP composite; see
        :mod:`attrib.rules`). A hashable value: equal rule sets share a pass.
        A backend that implements only the rectifier rules resolves it with
        :func:`attrib.get_rule`, which raises a clear error for the others.
    input_gradient : bool
        Whether the gradient with respect to ``inputs`` is needed.
    layers : tuple of str
        Names of layers whose output (activation) is captured.
    layer_gradients : bool
        Whether the gradient at each captured layer is needed. Layer
        gradients are always the **true** gradient whatever ``rule`` says;
        when the rule is not vanilla and a rectifier lies between a layer and
        the logits, the backend runs a second backward pass to keep them exact.
    target_weights : ndarray of float, shape (N, classes), or None
        When set, ``targets`` is ignored and the score of sample ``n`` is
        ``sum_k target_weights[n, k] * objective(logits)[n, k]`` (one-hot rows
        give the plain class target). Backends check it with
        :func:`attrib._targets.resolve_target_weights` and return as
        ``GradientResult.targets`` each row's class of largest weight.
    reference : ndarray or framework tensor, shape of ``inputs``, or None
        The reference input of a rule set whose ``nonlinearity`` is
        ``"rescale"`` (DeepLIFT's baseline, one per sample); ``None`` otherwise.
        The input quantity is then the multiplier ``m`` with
        ``sum m * (inputs - reference) = score(inputs) - score(reference)``.
    target : attrib.targets.Target or None
        When set, ``targets`` and ``target_weights`` are ignored: the score of
        each sample is ``target.score`` of the model's output (a mask over a
        dense output, weights, cosine to a reference, boxes), evaluated as
        :mod:`attrib.targets` describes. ``GradientResult.targets`` is then
        ``target.labels(N)`` and ``GradientResult.scores`` the (N,) scores.
    token_relevance : bool
        Under a rule set with ``transformer`` rules (AttnLRP / CP-LRP) only:
        also return the relevance at the token sequence entering the first
        transformer block (``GradientResult.token_relevance``). A backend
        refuses it for any other rule set with an :class:`attrib.AttribError`.
    """

    inputs: Any
    targets: np.ndarray | None = None
    objective: str = "logit"
    rule: Any = "vanilla"
    input_gradient: bool = True
    layers: tuple[str, ...] = ()
    layer_gradients: bool = True
    target_weights: np.ndarray | None = None
    attention: tuple[str, ...] | str = ()
    attention_gradients: bool = False
    reference: Any = None
    target: Any = None
    token_relevance: bool = False


@dataclass(frozen=True)
class GradientResult:
    """What one gradient pass returned, all NumPy.

    Attributes
    ----------
    inputs : ndarray, shape (N, ...)
        The inputs as NumPy, in the model's layout.
    logits : ndarray, shape (N, classes)
        With a :class:`attrib.targets.Target`: the output the target read
        when it is one array (e.g. (N, C, H, W)), else ``scores`` as (N, 1).
    targets : ndarray of int64, shape (N,)
        The class whose score was differentiated for each sample.
    input_gradient : ndarray, shape of ``inputs``, or None
    activations : mapping of layer name to ndarray
        Each captured layer's output, e.g. (N, C, h, w) for a torch conv layer.
    layer_gradients : mapping of layer name to ndarray
        The true gradient of the summed scores at each captured layer's output.
    stats : mapping
        Backend facts about the pass, e.g. ``{"rectifiers": 17, "backward_passes": 1}``.
    attention : mapping of layer name to ndarray, shape (N, heads, T, S)
        The attention probabilities of each captured attention layer, in the
        order the forward pass ran them (``softmax(q k^T * scale + mask)``).
    attention_gradients : mapping of layer name to ndarray, shape (N, heads, T, S)
        The true gradient of the summed scores at each captured attention.
    scores : ndarray, shape (N,), or None
        The explained score of each sample, set when the request had a ``target``.
    token_relevance : ndarray, shape (N, T, C), or None
        When the request asked for it: the relevance (the quantity the rule
        pass carries, seeded with the logit) at the tokens entering the first
        transformer block, i.e. after the patch embedding, the prefix tokens
        and the position embedding, where the first block reads them both
        into its first normalisation and into its residual connection. The
        backends find that tensor as the input of the first normalisation over
        the tokens that runs before the first attention (a pre-norm
        transformer); ``None`` when there is none (a post-norm model), and
        ``stats["token_relevance"]`` then says why.
    """

    inputs: np.ndarray
    logits: np.ndarray
    targets: np.ndarray
    input_gradient: np.ndarray | None = None
    activations: Mapping[str, np.ndarray] = field(default_factory=dict)
    layer_gradients: Mapping[str, np.ndarray] = field(default_factory=dict)
    stats: Mapping[str, Any] = field(default_factory=dict)
    attention: Mapping[str, np.ndarray] = field(default_factory=dict)
    attention_gradients: Mapping[str, np.ndarray] = field(default_factory=dict)
    scores: np.ndarray | None = None
    token_relevance: np.ndarray | None = None


@dataclass(frozen=True)
class LayerInfo:
    """One layer as :meth:`Model.probe_layers` saw it run.

    Attributes
    ----------
    name : str
        The layer's name, as :meth:`Model.layer_names` spells it.
    shape : tuple of int
        The shape of its output for the probed inputs.
    resamples : bool
        Whether the layer only pools, resamples, flattens or passes on an
        earlier output (a pooling module, ``Flatten``, ``Identity``, or a
        container whose output *is* such a module's output). The default
        layer of the CAM methods skips these.
    """

    name: str
    shape: tuple[int, ...]
    resamples: bool = False


class Model(ABC):
    """A framework model seen through one backend.

    Subclasses set :attr:`backend` and implement the abstract members. They
    must leave the user's model exactly as found after every call (also one
    that raised): same modules, no hooks, same flags, same parameters.
    """

    #: name of the backend that made this adapter, e.g. ``"torch"``
    backend: ClassVar[str]
    #: whether each new input shape costs a compilation (jax): methods that batch many
    #: images (integrated gradients, SmoothGrad, occlusion) then pad their last chunk so
    #: every chunk has the same shape
    compiles_per_shape: ClassVar[bool] = False
    #: whether :meth:`gradients` captures attention (``GradientRequest.attention``);
    #: a backend that does not leaves it False and the attention methods say so
    captures_attention: ClassVar[bool] = False
    #: whether the backend runs models that take several inputs, ``model(x1, x2, ...)``:
    #: ``inputs`` may then be a tuple of arrays everywhere (``input_shape`` returns one
    #: shape per input; ``to_numpy``, ``GradientResult.inputs`` and ``input_gradient``
    #: hold one array per input, in order; see :mod:`attrib._inputs`)
    several_inputs: ClassVar[bool] = False

    @property
    @abstractmethod
    def layout(self) -> str:
        """``"NCHW"`` (channels first, torch) or ``"NHWC"`` (channels last, Flax)."""

    @property
    @abstractmethod
    def native(self) -> Any:
        """The user's model object, unchanged."""

    @abstractmethod
    def layer_names(self) -> Sequence[str]:
        """Names a layer method may tap, in the framework's own spelling (``"layer4"``)."""

    @abstractmethod
    def input_shape(self, inputs: Any) -> tuple[int, ...]:
        """Shape of ``inputs`` after checking it is a floating batch (N, ...) this model takes.

        Raises :class:`attrib.AttribError` (naming ``inputs``) otherwise. Cheap:
        no copy, no forward pass.
        """

    @abstractmethod
    def to_numpy(self, inputs: Any) -> np.ndarray:
        """``inputs`` (NumPy or this framework's tensor) as a NumPy array; checks it is a batch."""

    @abstractmethod
    def forward(self, inputs: Any) -> np.ndarray:
        """Logits, shape (N, classes), with no gradient computed."""

    @abstractmethod
    def gradients(self, request: GradientRequest) -> GradientResult:
        """Run one forward pass and the backward pass(es) ``request`` needs."""

    def gradients_many(self, requests: Sequence[GradientRequest]) -> list[GradientResult]:
        """One result per request, each equal to ``gradients(request)`` bit for bit.

        Several methods on one batch (``attrib.explain(method=[...])``) send
        their requests together: the same ``inputs``, ``targets``,
        ``target_weights``, ``objective`` and ``target`` objects, with other
        rule sets and captures. A backend may serve such requests from one
        forward pass (torch: one backward pass per rule set on one autograd
        graph); ``stats["forward_passes"]`` of a result is then 0 when an
        earlier result's forward pass served it (1 when absent). The default
        calls :meth:`gradients` once per request.
        """
        return [self.gradients(request) for request in requests]

    # -- optional members, with defaults (issue 8: the CAM family) -----------------------
    def prefix_tokens(self) -> int | None:
        """How many tokens precede a transformer's patch grid (class, distillation, registers).

        Read from the model's parameters by backends that can (torch, jax:
        the learned token parameters, e.g. timm's ``cls_token``, ``dist_token``
        and ``reg_token``); ``None`` when the model does not say. The
        attention methods take it unless ``prefix_tokens=`` overrides it.
        """
        return None

    def probe_layers(self, inputs: Any) -> list[LayerInfo]:
        """The layers that run on ``inputs``, in the order their outputs are produced.

        Used to find the default layer of the CAM methods (``layer=None``).
        The default implementation captures every layer of
        :meth:`layer_names` in one capture-only :meth:`gradients` request (no
        backward pass) and keeps that order; it knows nothing of pooling, so
        every ``resamples`` is ``False``. Backends override it with a cheaper
        probe that also marks pooling layers (torch: forward hooks scoped to
        the call; jax: an abstract evaluation).
        """
        names = tuple(self.layer_names())
        if not names:
            return []
        result = self.gradients(GradientRequest(
            inputs=inputs, input_gradient=False, layers=names, layer_gradients=False))
        return [LayerInfo(name, tuple(np.shape(result.activations[name])))
                for name in names if name in result.activations]

    def forward_scaled(self, inputs: Any, layer: str, scale: np.ndarray) -> np.ndarray:
        """Logits, shape (N, classes), with ``layer``'s output multiplied by ``scale``.

        ``scale`` broadcasts against the layer's output for this batch, e.g.
        (N, C, 1, 1) for a channels-first convolution: Ablation-CAM zeroes
        one channel per sample this way. No gradient is computed and the
        model is left as found (the multiplication exists only during the
        call: a forward hook scoped to it in torch, the layer-perturbation
        mechanism in jax). The default raises :class:`attrib.BackendError`:
        a backend that cannot do this still runs every other method.
        """
        from ._errors import BackendError

        raise BackendError(
            f"backend: {self.backend!r} does not implement Model.forward_scaled(), which "
            "Ablation-CAM needs (a forward pass with one layer's output multiplied by a mask); "
            "use another CAM method or implement it (see docs/how-to/write-a-backend.md)"
        )

    def forward_substituted(self, inputs: Any, layer: str, activation: np.ndarray) -> np.ndarray:
        """Logits, shape (M, classes), of the model continued from ``activation`` at ``layer``.

        ``layer``'s output is replaced by ``activation`` (M, ...), laid out as
        that output is (e.g. (M, C, h, w) for a channels-first convolution),
        during this call only; the layer's own computation may be skipped.
        ``inputs`` is either the M images whose forward passes lead there
        (row m continues from ``activation[m]``) or one image (1, ...) that
        all M rows continue from: Ablation-CAM's copies of one image's
        activation with one channel ablated each. A backend may then run the
        layers before ``layer`` once (torch and jax do; a model whose later
        layers cannot take the M rows on one image is run on M copies of it).
        No gradient is computed and the model is left as found.

        The default raises :class:`attrib.BackendError`; Ablation-CAM then
        falls back to :meth:`forward_scaled` (zeroing only).
        """
        from ._errors import BackendError

        raise BackendError(
            f"backend: {self.backend!r} does not implement Model.forward_substituted(), which "
            "Ablation-CAM's ablation='pytorch-grad-cam' needs (a forward pass continued from a "
            "given activation of one layer); use ablation='zero' or implement it (see "
            "docs/how-to/write-a-backend.md)"
        )

    # -- randomisation (issue 10): optional, with defaults for backends without it ---------
    def parameter_layers(self) -> Sequence[str]:
        """Names of the layers that own parameters, input side first (forward order).

        :func:`attrib.evaluate.model_randomization` randomises them from the
        logits down. The default raises :class:`attrib.AttribError`: a backend
        that implements :meth:`randomized` overrides it.
        """
        raise self._no_randomization()

    def randomized(self, layers: Sequence[str], seed: int = 0, batchnorm: str = "reset") -> Model:
        """An adapter over an independent copy of the model with ``layers`` re-drawn.

        The parameters of each named layer are replaced by truncated-normal
        draws with each array's own standard deviation (see
        :func:`attrib._randomize.redrawn`, reproducible across backends from
        ``seed``); every other parameter and buffer is kept. The user's model
        is never touched.

        Parameters
        ----------
        layers : sequence of str
            Names from :meth:`parameter_layers`.
        seed : int
            Same seed, same copy.
        batchnorm : {"reset", "redraw"}
            BatchNorm layers among ``layers``: ``"reset"`` (default, as
            Adebayo et al.'s code re-runs the initialisers of the trainable
            variables) sets γ = 1 and β = 0 and keeps the moving mean and
            variance; ``"redraw"`` draws γ and β like any parameter. A backend
            without BatchNorm layers checks the value and ignores it.

        Returns
        -------
        Model
            Of the same backend, over the copy.
        """
        raise self._no_randomization()

    def _no_randomization(self) -> Exception:
        from ._errors import AttribError

        return AttribError(
            f"model: the {self.backend!r} backend ({type(self).__name__}) does not support "
            "randomised copies (Model.randomized / Model.parameter_layers), which the model "
            "randomisation check needs. Use a torch or jax model, or implement them in the backend."
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend={self.backend!r} layout={self.layout!r}>"


def check_layout(layout: object) -> str:
    """``layout`` upper-cased if it is one of :data:`LAYOUTS` in any case, else an AttribValueError.

    >>> check_layout("nhwc")
    'NHWC'
    """
    from ._errors import check_choice

    chosen = layout.upper() if isinstance(layout, str) and layout.upper() in LAYOUTS else layout
    return check_choice("layout", chosen, LAYOUTS, suggestion="torch models use 'NCHW', Flax models 'NHWC'.")


def check_token_relevance(request: GradientRequest, rules: Any) -> None:
    """Refuse ``request.token_relevance`` unless ``rules`` (a :class:`attrib.rules.RuleSet`) has
    transformer rules: the token relevance is defined for AttnLRP / CP-LRP only."""
    if request.token_relevance and getattr(rules, "transformer", None) is None:
        from ._errors import argument_error, shown

        raise argument_error(
            "token_relevance", "a rule set with transformer rules (AttnLRP / CP-LRP)",
            shown(f"rule set {getattr(rules, 'name', rules)!r}"),
            "The relevance at the tokens entering the first transformer block comes from the "
            "AttnLRP rule pass (attrib.rules.attnlrp_rule_set).")


def same_batch_groups(requests: Sequence[GradientRequest],
                      shares: Callable[[GradientRequest], bool]) -> list[list[int]]:
    """Indices of ``requests`` that explain the same scores of the same batch, grouped.

    Only requests for which ``shares(request)`` holds are grouped; two join
    one group when they hold the very same ``inputs``, ``targets``,
    ``target_weights`` and ``target`` objects and the same objective (what
    :meth:`Model.gradients_many` may serve from one forward pass).
    """
    def same_batch(a: GradientRequest, b: GradientRequest) -> bool:
        return (a.inputs is b.inputs and a.targets is b.targets and a.target is b.target
                and a.target_weights is b.target_weights and a.objective == b.objective)

    groups: list[list[int]] = []
    for i, request in enumerate(requests):
        if not shares(request):
            continue
        group = next((g for g in groups if same_batch(requests[g[0]], request)), None)
        if group is None:
            groups.append([i])
        else:
            group.append(i)
    return groups

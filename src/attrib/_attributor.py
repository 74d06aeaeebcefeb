"""The :class:`Attributor` interface: an attribution method on a :class:`Model`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ._attention import merge_attention
from ._checks import check_finite, check_finite_map, warn_zero, zero_gradients
from ._errors import argument_error, did_you_mean, shown
from ._explanation import Explanation
from ._inputs import each, first_shape
from ._model import GradientRequest, GradientResult, Model
from ._targets import check_objective, complete_target_weights, split_target
from .rules import RuleSet, rule_set
from .targets import Target

__all__ = ["Attributor", "GradientNeeds", "MethodOutput"]


@dataclass(frozen=True)
class GradientNeeds:
    """What a method needs from one gradient pass (see :class:`attrib.GradientRequest`)."""

    rule: str | RuleSet = "vanilla"
    input_gradient: bool = False
    layers: tuple[str, ...] = ()
    layer_gradients: bool = False
    #: attention layers to capture (``"all"``: every one; see :mod:`attrib._attention`)
    attention: tuple[str, ...] | str = ()
    attention_gradients: bool = False
    #: the relevance at the tokens entering the first transformer block (AttnLRP)
    token_relevance: bool = False

    def merge(self, other: GradientNeeds) -> GradientNeeds:
        """The needs of two methods served by one pass."""
        if self.input_gradient and other.input_gradient \
                and rule_set(self.rule) != rule_set(other.rule):
            raise argument_error(
                "method",
                "parts that agree on the rectifier rule of the input gradient",
                shown(f"{self.rule!r} and {other.rule!r}"),
            )
        rule = self.rule if self.input_gradient else other.rule
        layers = self.layers + tuple(name for name in other.layers if name not in self.layers)
        return GradientNeeds(
            rule=rule,
            input_gradient=self.input_gradient or other.input_gradient,
            layers=layers,
            layer_gradients=self.layer_gradients or other.layer_gradients,
            attention=merge_attention(self.attention, other.attention),
            attention_gradients=self.attention_gradients or other.attention_gradients,
            token_relevance=self.token_relevance or other.token_relevance,
        )

    def request(self, inputs: Any, targets: np.ndarray | None, objective: str,
                target_weights: np.ndarray | None = None, target: Any = None) -> GradientRequest:
        """The :class:`GradientRequest` of these needs for ``inputs`` and the explained score."""
        rule_set(self.rule)  # a clear error for an unknown rule or rule set
        return GradientRequest(
            inputs=inputs,
            targets=targets,
            objective=objective,
            rule=self.rule,
            input_gradient=self.input_gradient,
            layers=self.layers,
            layer_gradients=self.layer_gradients,
            target_weights=target_weights,
            attention=self.attention,
            attention_gradients=self.attention_gradients,
            target=target,
            token_relevance=self.token_relevance,
        )


@dataclass(frozen=True)
class MethodOutput:
    """What :meth:`Attributor.compute` returns: the map and what goes with it."""

    attribution: np.ndarray
    layer_attribution: np.ndarray | None = None
    parts: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: method facts merged into the Explanation's ``stats`` (e.g. forward passes)
    stats: Mapping[str, Any] = field(default_factory=dict)


#: the attrib.targets.Target of the ``attribute()`` call in progress. Call-local (each thread
#: has its own context, and a nested call restores the outer one), so one method instance can
#: serve several threads at once; never an attribute of the instance.
_CALL_TARGET: ContextVar[Target | None] = ContextVar("attrib_call_target", default=None)


@contextmanager
def call_target(target: Any) -> Iterator[None]:
    """Make ``target`` (kept only if an :class:`attrib.targets.Target`) the current call's target."""
    token = _CALL_TARGET.set(target if isinstance(target, Target) else None)
    try:
        yield
    finally:
        _CALL_TARGET.reset(token)


class Attributor(ABC):
    """An attribution method: a :class:`Model`, options, and the math on NumPy arrays.

    A method states what it needs from the gradient pass (:meth:`needs`) and
    turns the pass's :class:`GradientResult` into a map (:meth:`compute`);
    :meth:`attribute` does the rest. Subclasses set :attr:`name` and, if they
    tap a layer, :attr:`needs_layer`.

    Parameters
    ----------
    model : a framework model or an :class:`attrib.Model`
        Anything a registered backend accepts (see :func:`attrib.wrap`).
    backend : str, optional
        ``"torch"``, ``"jax"`` or another registered backend; detected from
        ``model`` when omitted.
    objective : str
        The score explained: ``"logit"`` (default), ``"log_softmax"``, ``"softmax"``.
    """

    #: the name :func:`attrib.explain` takes as ``method=``
    name: ClassVar[str]
    #: whether the method taps a layer and so needs ``layer=``
    needs_layer: ClassVar[bool] = False
    #: whether the method explains several inputs, ``inputs=(x1, x2, ...)`` (see
    #: :mod:`attrib._inputs`)
    several_inputs: ClassVar[bool] = False

    def __init__(
        self,
        model: Any,
        *,
        backend: str | None = None,
        objective: str = "logit",
        registry: Any = None,
    ) -> None:
        from ._registry import default_registry

        self.registry = registry if registry is not None else default_registry()
        self.model: Model = self.registry.wrap(model, backend=backend)
        self.objective = check_objective(objective)

    @property
    def _target(self) -> Target | None:
        """The :class:`attrib.targets.Target` of the current call (call-local), for methods that
        score more inputs (Score-CAM); ``None`` for class targets."""
        return _CALL_TARGET.get()

    @abstractmethod
    def needs(self) -> GradientNeeds:
        """What this method needs from the gradient pass."""

    @abstractmethod
    def compute(self, result: GradientResult) -> MethodOutput:
        """The map from the pass's NumPy arrays."""

    @property
    def layer(self) -> str | None:
        """The tapped layer, for layer methods."""
        return getattr(self, "_layer", None)

    def _check_layer(self, layer: object) -> str:
        """``layer`` if the model has a layer of that name, else a clear error."""
        names = list(self.model.layer_names())
        no_layers = (
            "This model exposes no named layers (in the jax backend an (apply_fn, params) pair "
            "has none: pass the Flax module, as (module, variables) or an nnx module)."
        )
        if layer is None:
            hint = f"Layers near the output: {names[-5:]}" if names else no_layers
            raise argument_error("layer", f"the name of a layer for {self.name!r}", None, hint)
        if isinstance(layer, str) and layer in names:
            return layer
        hint = did_you_mean(str(layer), names, every=True) or (
            f"Layers near the output: {names[-5:]}" if names else no_layers
        )
        raise argument_error("layer", f"a layer name of this {self.model.backend} model", layer, hint)

    def attribute(self, inputs: Any, target: Any = None) -> Explanation:
        """Explain ``inputs`` for ``target``.

        Parameters
        ----------
        inputs : ndarray or framework tensor, shape (N, ...), or a tuple of them
            A batch in the model's layout (NCHW for torch, NHWC for Flax); a
            tuple for a model that takes several inputs (methods with
            :attr:`several_inputs`; the map is then a tuple, one per input).
        target : None, int, sequence of N ints, target weights, or an attrib.targets.Target
            ``None``: each sample's arg-max class; an int: that class for all;
            a float array (classes,) or (N, classes), or a mapping
            ``{class_index: weight}``: the weighted sum of the class scores;
            :class:`attrib.targets.Mask`, ``Weights``, ``Cosine``, ``Boxes``:
            a score of a dense, embedding or detection output.

        Returns
        -------
        Explanation
        """
        shape = first_shape(self.model, inputs, self.name, self.several_inputs)
        targets, weights = self._split_target(inputs, target, shape[0])
        self._prepare(inputs)
        needs = self.needs()
        with call_target(target):
            request = needs.request(inputs, targets, self.objective, weights, self._target)
            result = self.model.gradients(request)
            check_finite(result)  # never a NaN map (issue 12)
            explanation = self._from_result(result, weights)
        causes = zero_gradients(request, result)
        if causes:
            warn_zero(self.name, causes)
        return explanation

    def _from_result(self, result: GradientResult, weights: np.ndarray | None,
                     stats: Mapping[str, Any] | None = None) -> Explanation:
        """The Explanation of one gradient pass's (checked) ``result`` (also a shared pass's)."""
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below
            output = self.compute(result)
        check_finite_map(self.name, output.attribution)
        return self._explanation(output, targets=result.targets, logits=result.logits,
                                 inputs=result.inputs,
                                 stats={**result.stats, **output.stats, **(stats or {})},
                                 target_weights=weights)

    def _explanation(self, output: MethodOutput, *, targets: np.ndarray, logits: np.ndarray,
                     inputs: np.ndarray | None, stats: Mapping[str, Any],
                     target_weights: np.ndarray | None) -> Explanation:
        """The :class:`Explanation` of ``output`` for explained ``targets`` (every ``attribute``)."""
        return Explanation(
            attribution=output.attribution,
            method=self.name,
            backend=self.model.backend,
            layer=self.layer,
            targets=targets,
            logits=logits,
            layout=self.model.layout,
            objective=self.objective,
            inputs=inputs,
            layer_attribution=output.layer_attribution,
            parts=output.parts,
            stats=stats,
            target_weights=target_weights,
            layers=self.layers,
        )

    def _split_target(self, inputs: Any, target: Any,
                      n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(class indices or None, target weights (n, classes) or None)`` for ``target``.

        A mapping ``{class: weight}`` needs the number of classes: one forward
        pass of the first sample finds it.
        """
        if isinstance(target, Target):
            target.check_objective(self.objective)
            return None, None
        targets, weights = split_target(target, n)
        if isinstance(weights, Mapping):
            classes = int(self.model.forward(each(lambda x: x[:1], inputs)).shape[-1])
            weights = complete_target_weights(weights, n, classes)
        return targets, weights

    def _prepare(self, inputs: Any) -> None:  # noqa: B027 - optional hook, no-op by default
        """Settle what depends on the inputs before :meth:`needs` (the CAM methods' default layer)."""

    @property
    def layers(self) -> tuple[str, ...]:
        """Every tapped layer (several for a CAM method given a list)."""
        return (self.layer,) if self.layer else ()

    def __repr__(self) -> str:
        layer = f", layer={self.layer!r}" if self.layer else ""
        return f"{type(self).__name__}(backend={self.model.backend!r}{layer}, objective={self.objective!r})"

"""Rule sets: what the backward pass does at each kind of operation, as data.

A :class:`RuleSet` names, per kind of operation and per layer name, the rule
the backward pass applies there. The quantity passed backwards is a gradient
under the rectifier-only rule sets and a *relevance* under the LRP rule sets
(Bach et al. 2015); backends apply the rules natively, scoped to one call, on
the unmodified model, and every rule here has a NumPy reference
(:meth:`LinearRule.reference`) that the conformance suite checks backends
against.

Kinds of operation (:data:`KINDS`):

===============  ===============================================================
kind             operations
===============  ===============================================================
rectifier        relu, relu6, hardtanh(0, u): ``vanilla``, ``guided``,
                 ``deconvnet`` (see :mod:`attrib._rules`) or ``pass``
                 (the quantity passes unchanged, LRP's rule for activations)
convolution      convolutions (and BatchNorm merged into them)
dense            fully connected layers (and BatchNorm merged into them)
first            the first convolution or dense layer the input meets
pooling          average pooling (any window, adaptive, a spatial mean)
addition         the sum of two activations (residual connections; never a bias)
normalisation    BatchNorm in eval mode: ``"gradient"`` or ``"merge"`` (folded,
                 eps included, into the convolution / dense layer before it)
===============  ===============================================================

Max pooling always takes its true derivative (the winner of each window gets
everything, the first maximum on ties, as torch and XLA pick it); reshapes,
flattening, concatenation and dropout in eval mode likewise. A rule set with
``strict=True`` (every LRP rule set) makes the backend raise
:class:`attrib.AttribError` naming any other differentiable operation, rather
than return a map the rules do not define.

DeepLIFT's rule set :data:`DEEPLIFT` (``nonlinearity="rescale"``) differs in
kind: its rules compare the network's activations on the input with those on
a **reference input** (the request's ``reference``, the baseline). The
quantity passed backwards is a *multiplier* ``m`` with
``sum m * (x - x0) = f(x) - f(x0)`` (summation-to-delta):

- element-wise nonlinearities ``y = g(z)`` (rectifiers, sigmoid, tanh, SiLU,
  GELU, hardswish, ...): the rescale rule, ``m_in = m_out * Δy/Δz`` where
  ``|Δz| > RESCALE_TINY``, else ``m_out * g'(z0)`` (:func:`rescale`);
- max pooling, one nonlinearity over each window (:func:`max_pool_multipliers`):
  the output's change split between the winners on the input and on the
  reference (the first maximum on ties) and rescaled by their inputs' change;
- the product of two activations ``a * b`` (squeeze-excitation gates): the
  Shapley split ``Δ(ab) = ½(b + b0)Δa + ½(a + a0)Δb`` (:func:`product_multipliers`);
- linear operations (convolutions, dense layers, additions, average pooling,
  BatchNorm in eval mode, reshapes): their true derivative.

Any other operation on an activation raises (``strict``).

``vanilla``, ``guided`` and ``deconvnet`` are the rule sets :data:`VANILLA`,
:data:`GUIDED` and :data:`DECONVNET` (only their rectifier rule differs); a
request may still name them by string. LRP composites come from
:func:`lrp_rule_set`, named as zennit names them.

References
----------
Shrikumar, Greenside, Kundaje (2017). Learning important features through
propagating activation differences (DeepLIFT).
Bach, Binder, Montavon, Klauschen, Müller, Samek (2015). On pixel-wise
explanations for non-linear classifier decisions by layer-wise relevance
propagation. Montavon, Lapuschkin, Binder, Samek, Müller (2017). Explaining
nonlinear classification decisions with deep Taylor decomposition. Montavon,
Binder, Lapuschkin, Samek, Müller (2019). Layer-wise relevance propagation: an
overview. Lapuschkin et al. (2019). Unmasking Clever Hans predictors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ._errors import AttribTypeError, argument_error, check_choice, did_you_mean, shown
from ._rules import RULES, GuidedActivation

__all__ = [
    "KINDS", "RECTIFIER_RULES", "COMPOSITES", "LinearOp", "LinearRule", "Epsilon", "Gamma",
    "ZPlus", "AlphaBeta", "Flat", "WSquare", "ZBox", "Norm", "RuleSet", "VANILLA", "GUIDED",
    "DECONVNET", "rule_set", "get_rule", "lrp_rule_set", "stabilized_divide", "box",
    "NONLINEARITY_RULES", "RESCALE_TINY", "DEEPLIFT", "rescale", "max_pool_multipliers",
    "product_multipliers",
    "TransformerRules", "attnlrp_rule_set",
]

#: kinds of operation a rule set names (see the module docstring)
KINDS: tuple[str, ...] = ("rectifier", "convolution", "dense", "first", "pooling", "addition",
                          "normalisation")
#: rules for rectifiers: the three gradient rules and LRP's pass-through
RECTIFIER_RULES: tuple[str, ...] = ("vanilla", "guided", "deconvnet", "pass")
#: rules for every element-wise nonlinearity: its true derivative, or DeepLIFT's rescale
NONLINEARITY_RULES: tuple[str, ...] = ("gradient", "rescale")
#: the rescale rule falls back to the derivative at the reference where ``|Δz|`` is not above this
RESCALE_TINY: float = 1e-10
#: the LRP composites :func:`lrp_rule_set` builds (zennit's names, plus ``zero`` and ``epsilon``)
COMPOSITES: tuple[str, ...] = ("epsilon_plus", "epsilon_plus_flat", "epsilon_gamma_box",
                               "epsilon_alpha2_beta1", "epsilon", "zero")


def stabilized_divide(numerator: np.ndarray, denominator: np.ndarray, epsilon: float) -> np.ndarray:
    """``numerator / (denominator + epsilon * sign(denominator))``, sign(0) = +1; 0 where that is 0.

    The stabiliser of every LRP rule (zennit's convention). With ``epsilon = 0``
    a zero denominator gives 0 (a neuron whose output is 0 carries no relevance).

    >>> stabilized_divide(np.array([1.0, 1.0, 2.0]), np.array([0.0, -1.0, 0.0]), 0.0)
    array([ 0., -1.,  0.])
    """
    den = denominator + epsilon * np.where(denominator >= 0, 1.0, -1.0)
    safe = np.where(den == 0, 1.0, den)
    return np.where(den == 0, 0.0, numerator / safe)


@dataclass(frozen=True)
class LinearOp:
    """A linear layer ``y = forward(x, weight, bias)`` and its transpose, in NumPy.

    ``transpose(g, weight)`` is ``d<g, forward(x, weight, 0)>/dx`` (the
    vector-Jacobian product at the input); ``bias`` may be ``None`` (no bias).
    The rules' references call these only, so one reference serves a dense
    layer, a convolution, a pooling window and an addition.
    """

    forward: Callable[[np.ndarray, np.ndarray | None, np.ndarray | None], np.ndarray]
    transpose: Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def _pos(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.maximum(a, 0.0)


def _neg(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.minimum(a, 0.0)


@dataclass(frozen=True)
class LinearRule(ABC):
    """A relevance rule for a linear layer (convolution, dense), a pooling window or an addition.

    Frozen and hashable: a :class:`RuleSet` holding rules is a value.
    Subclasses set :attr:`name` and implement :meth:`reference`.
    """

    name: ClassVar[str]

    @abstractmethod
    def reference(self, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                  relevance: np.ndarray, op: LinearOp) -> np.ndarray:
        """Relevance at the layer's input, shape of ``x``, given ``relevance`` at its output.

        Parameters
        ----------
        x : ndarray, shape (N, ...)
            The layer's input.
        weight, bias : ndarray or None
            Its parameters as ``op`` takes them (BatchNorm already merged);
            ``None`` for a parameter-free op (pooling, addition).
        relevance : ndarray, shape of the output
        op : LinearOp
        """


def _proportional(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                  relevance: np.ndarray, op: LinearOp, epsilon: float) -> np.ndarray:
    """``x * f^T(R / stab(f(x)))``: LRP-ε's formula, also the norm rule's (no parameters)."""
    s = stabilized_divide(relevance, op.forward(x, weight, bias), epsilon)
    return x * op.transpose(s, weight)


@dataclass(frozen=True)
class Epsilon(LinearRule):
    """LRP-ε: ``R_in = x * W^T (R / (z + ε sign z))``; ε = 0 is LRP-0 (Bach et al. 2015)."""

    name: ClassVar[str] = "epsilon"
    epsilon: float = 1e-6

    def reference(self, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                  relevance: np.ndarray, op: LinearOp) -> np.ndarray:
        return _proportional(x, weight, bias, relevance, op, self.epsilon)


@dataclass(frozen=True)
class Norm(LinearRule):
    """Relevance split in proportion to each input's share: LRP-ε without parameters.

    The rule of pooling windows and additions: ``R_in = x * f^T(R / stab(f(x)))``.
    """

    name: ClassVar[str] = "norm"
    stabilizer: float = 1e-6

    def reference(self, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                  relevance: np.ndarray, op: LinearOp) -> np.ndarray:
        return _proportional(x, weight, bias, relevance, op, self.stabilizer)


@dataclass(frozen=True)
class ZPlus(LinearRule):
    """z⁺ (α1β0 for signed inputs): positive contributions only (Montavon et al. 2017).

    ``o = W⁺x⁺ + b⁺ + W⁻x⁻``, ``R_in = x⁺ W⁺ᵀ(R/o) + x⁻ W⁻ᵀ(R/o)``.
    """

    name: ClassVar[str] = "zplus"
    stabilizer: float = 1e-6

    def reference(self, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                  relevance: np.ndarray, op: LinearOp) -> np.ndarray:
        xp, xn, wp, wn = _pos(x), _neg(x), _pos(weight), _neg(weight)
        assert xp is not None and xn is not None
        o = op.forward(xp, wp, _pos(bias)) + op.forward(xn, wn, None)
        s = stabilized_divide(relevance, o, self.stabilizer)
        return xp * op.transpose(s, wp) + xn * op.transpose(s, wn)


@dataclass(frozen=True)
class AlphaBeta(LinearRule):
    """αβ: ``α`` times the positive and ``β`` times the negative contributions (Bach et al. 2015).

    Positive part ``o⁺ = W⁺x⁺ + b⁺ + W⁻x⁻``, negative ``o⁻ = W⁻x⁺ + b⁻ + W⁺x⁻``;
    ``R_in = α (x⁺W⁺ᵀ + x⁻W⁻ᵀ)(R/o⁺) − β (x⁺W⁻ᵀ + x⁻W⁺ᵀ)(R/o⁻)``.
    """

    name: ClassVar[str] = "alpha_beta"
    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.beta < 0 or abs(self.alpha - self.beta - 1.0) > 1e-12:
            raise argument_error("rules", "AlphaBeta with alpha, beta >= 0 and alpha - beta = 1",
                                 shown(f"alpha={self.alpha}, beta={self.beta}"),
                                 "alpha2_beta1 and alpha1_beta0 are the usual choices.")

    def reference(self, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                  relevance: np.ndarray, op: LinearOp) -> np.ndarray:
        xp, xn, wp, wn = _pos(x), _neg(x), _pos(weight), _neg(weight)
        assert xp is not None and xn is not None
        sp = stabilized_divide(relevance, op.forward(xp, wp, _pos(bias)) + op.forward(xn, wn, None),
                               self.stabilizer)
        sn = stabilized_divide(relevance, op.forward(xp, wn, _neg(bias)) + op.forward(xn, wp, None),
                               self.stabilizer)
        positive = xp * op.transpose(sp, wp) + xn * op.transpose(sp, wn)
        negative = xp * op.transpose(sn, wn) + xn * op.transpose(sn, wp)
        return self.alpha * positive - self.beta * negative


@dataclass(frozen=True)
class Gamma(LinearRule):
    """γ: positive contributions boosted by ``γ`` (Montavon et al. 2019; signed inputs as zennit).

    With ``W↑ = W + γW⁺``, ``W↓ = W + γW⁻`` (biases likewise): where ``z > 0``
    relevance goes by ``o↑ = W↑x⁺ + b↑ + W↓x⁻``, where ``z < 0`` by
    ``o↓ = W↓x⁺ + b↓ + W↑x⁻``; ``R_in = x⁺W↑ᵀ(R⁺/o↑) + x⁻W↓ᵀ(R⁺/o↑) + x⁺W↓ᵀ(R⁻/o↓) + x⁻W↑ᵀ(R⁻/o↓)``.
    """

    name: ClassVar[str] = "gamma"
    gamma: float = 0.25
    stabilizer: float = 1e-6

    def reference(self, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                  relevance: np.ndarray, op: LinearOp) -> np.ndarray:
        assert weight is not None
        g = self.gamma
        xp, xn = np.maximum(x, 0.0), np.minimum(x, 0.0)
        wu, wd = weight + g * np.maximum(weight, 0.0), weight + g * np.minimum(weight, 0.0)
        bu = None if bias is None else bias + g * np.maximum(bias, 0.0)
        bd = None if bias is None else bias + g * np.minimum(bias, 0.0)
        z = op.forward(x, weight, bias)
        up = stabilized_divide(relevance * (z > 0), op.forward(xp, wu, bu) + op.forward(xn, wd, None),
                               self.stabilizer)
        down = stabilized_divide(relevance * (z < 0),
                                 op.forward(xp, wd, bd) + op.forward(xn, wu, None), self.stabilizer)
        return (xp * op.transpose(up, wu) + xn * op.transpose(up, wd)
                + xp * op.transpose(down, wd) + xn * op.transpose(down, wu))


@dataclass(frozen=True)
class Flat(LinearRule):
    """flat: relevance spread uniformly over each output's receptive field (Lapuschkin et al. 2019).

    ``R_in = 1ᵀ(R / (1·1))``: weights and inputs taken as ones, no bias.
    """

    name: ClassVar[str] = "flat"
    stabilizer: float = 1e-6

    def reference(self, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                  relevance: np.ndarray, op: LinearOp) -> np.ndarray:
        ones_w = None if weight is None else np.ones_like(weight)
        s = stabilized_divide(relevance, op.forward(np.ones_like(x), ones_w, None), self.stabilizer)
        return op.transpose(s, ones_w) * np.ones_like(x)


@dataclass(frozen=True)
class WSquare(LinearRule):
    """w²: ``R_in = (W²)ᵀ(R / (W²·1 + b²))`` (Montavon et al. 2017), for unbounded inputs."""

    name: ClassVar[str] = "wsquare"
    stabilizer: float = 1e-6

    def reference(self, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                  relevance: np.ndarray, op: LinearOp) -> np.ndarray:
        assert weight is not None
        w2 = weight ** 2
        s = stabilized_divide(relevance, op.forward(np.ones_like(x), w2,
                                                    None if bias is None else bias ** 2),
                              self.stabilizer)
        return op.transpose(s, w2) * np.ones_like(x)


@dataclass(frozen=True)
class ZBox(LinearRule):
    """zᴮ: for inputs bounded by ``low <= x <= high`` (Montavon et al. 2017).

    ``o = Wx + b − (W⁺l + b⁺) − (W⁻h + b⁻) = Wx − W⁺l − W⁻h``,
    ``R_in = x Wᵀ(R/o) − l W⁺ᵀ(R/o) − h W⁻ᵀ(R/o)``.

    ``low`` and ``high`` are stored flat with their shape (so the rule is a
    hashable value); each broadcasts against one sample of the layer's input
    in the model's layout: a scalar, ``(C, 1, 1)`` per channel (NCHW) or the
    full ``(C, H, W)``. :func:`box` builds one from arrays.
    """

    name: ClassVar[str] = "zbox"
    low: tuple[float, ...] = (0.0,)
    high: tuple[float, ...] = (1.0,)
    shape: tuple[int, ...] = ()
    stabilizer: float = 1e-6

    def bounds(self, x_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``low`` and ``high`` broadcast to ``x_shape`` (N, ...); AttribError if they cannot be."""
        low = np.asarray(self.low, dtype=np.float64).reshape(self.shape)
        high = np.asarray(self.high, dtype=np.float64).reshape(self.shape)
        try:
            return (np.broadcast_to(low, x_shape[1:])[None].repeat(x_shape[0], 0),
                    np.broadcast_to(high, x_shape[1:])[None].repeat(x_shape[0], 0))
        except ValueError:
            raise argument_error(
                "low/high", f"box bounds that broadcast to one input sample {tuple(x_shape[1:])}",
                shown(f"bounds of shape {self.shape}"),
                "Pass a scalar, one value per channel (C, 1, 1) for NCHW or (C,) for NHWC, "
                "or the full sample shape.") from None

    def reference(self, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                  relevance: np.ndarray, op: LinearOp) -> np.ndarray:
        assert weight is not None
        low, high = self.bounds(x.shape)
        wp, wn = np.maximum(weight, 0.0), np.minimum(weight, 0.0)
        o = op.forward(x, weight, bias) - op.forward(low, wp, _pos(bias)) \
            - op.forward(high, wn, _neg(bias))
        s = stabilized_divide(relevance, o, self.stabilizer)
        return x * op.transpose(s, weight) - low * op.transpose(s, wp) - high * op.transpose(s, wn)


def box(low: Any, high: Any, stabilizer: float = 1e-6) -> ZBox:
    """A :class:`ZBox` rule from array-like bounds of one shape (a scalar, per channel, or full).

    >>> box(0.0, 1.0).bounds((2, 3))[1]
    array([[1., 1., 1.],
           [1., 1., 1.]])
    """
    try:
        lo = np.asarray(low, dtype=np.float64)
        hi = np.asarray(high, dtype=np.float64)
    except (TypeError, ValueError):
        raise argument_error("low/high", "numbers or arrays of numbers",
                             shown(f"{type(low).__name__} and {type(high).__name__}"),
                             kind=AttribTypeError) from None
    try:
        shape = np.broadcast_shapes(lo.shape, hi.shape)
    except ValueError:
        raise argument_error("low/high", "box bounds of one shape",
                             shown(f"low of shape {lo.shape}, high of shape {hi.shape}")) from None
    lo, hi = np.broadcast_to(lo, shape), np.broadcast_to(hi, shape)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()) or (lo > hi).any():
        raise argument_error("low/high", "finite bounds with low <= high",
                             shown("bounds with low > high or a non-finite value"))
    return ZBox(low=tuple(lo.ravel().tolist()), high=tuple(hi.ravel().tolist()), shape=tuple(shape),
                stabilizer=stabilizer)


@dataclass(frozen=True)
class RuleSet:
    """What the backward pass does at each kind of operation and at named layers.

    A frozen, hashable value: two equal rule sets are one pass. ``None`` for
    a kind means its true derivative.

    Attributes
    ----------
    name : str
        For messages and ``stats``: ``"vanilla"``, ``"lrp:epsilon_plus_flat"``...
    rectifier : str
        One of :data:`RECTIFIER_RULES`.
    convolution, dense, first, pooling, addition : LinearRule or None
        ``first`` is the rule of the first convolution or dense layer the input
        meets (``None``: the rule of its kind).
    normalisation : str
        ``"gradient"`` or ``"merge"`` (BatchNorm in eval mode folded into the
        convolution / dense layer whose output it normalises, eps included;
        one that follows none raises :class:`attrib.AttribError`).
    layers : tuple of (str, LinearRule)
        Rules of named convolution / dense layers; they win over the kinds.
    strict : bool
        Raise on differentiable operations no kind covers (see the module docs).
    seed : str
        ``"gradient"``: the backward pass starts from d score / d logits;
        ``"relevance"``: from that times the logits (LRP: each logit's relevance
        is its value), so the input quantity is the relevance itself.
    nonlinearity : str
        ``"gradient"`` or ``"rescale"`` (DeepLIFT: every nonlinearity compares the
        input's activations with the reference's; the request must carry a
        ``reference`` and the input quantity is the multiplier).
    transformer : TransformerRules or None
        Rules of softmax, matrix products of two activations, LayerNorm,
        elementwise non-linearities (GELU, SiLU) and added constants (a
        position embedding): AttnLRP / CP-LRP (:func:`attnlrp_rule_set`).
    """

    name: str
    rectifier: str = "vanilla"
    convolution: LinearRule | None = None
    dense: LinearRule | None = None
    first: LinearRule | None = None
    pooling: LinearRule | None = None
    addition: LinearRule | None = None
    normalisation: str = "gradient"
    layers: tuple[tuple[str, LinearRule], ...] = ()
    strict: bool = False
    seed: str = "gradient"
    nonlinearity: str = "gradient"
    transformer: TransformerRules | None = None
    _layer_rules: Mapping[str, LinearRule] = field(init=False, repr=False, compare=False,
                                                   hash=False)

    def __post_init__(self) -> None:
        check_choice("rectifier", self.rectifier, RECTIFIER_RULES)
        check_choice("normalisation", self.normalisation, ("gradient", "merge"))
        check_choice("seed", self.seed, ("gradient", "relevance"))
        check_choice("nonlinearity", self.nonlinearity, NONLINEARITY_RULES)
        object.__setattr__(self, "_layer_rules", dict(self.layers))

    @property
    def rectifier_only(self) -> bool:
        """Whether only the rectifier rule differs from the true gradient (vanilla/guided/deconvnet)."""
        return (self.rectifier != "pass" and not self.strict and self.seed == "gradient"
                and self.nonlinearity == "gradient" and self.transformer is None
                and self.normalisation == "gradient" and not self.layers
                and all(rule is None for rule in (self.convolution, self.dense, self.first,
                                                   self.pooling, self.addition)))

    def linear_rule(self, kind: str, layer: str | None = None, first: bool = False) -> LinearRule | None:
        """The rule of a convolution or dense layer (``kind``), named ``layer``, first or not."""
        if layer is not None and layer in self._layer_rules:
            return self._layer_rules[layer]
        if first and self.first is not None:
            return self.first
        return self.convolution if kind == "convolution" else self.dense

    def __str__(self) -> str:
        return self.name


VANILLA = RuleSet("vanilla")
GUIDED = RuleSet("guided", rectifier="guided")
DECONVNET = RuleSet("deconvnet", rectifier="deconvnet")
_NAMED = {rules.name: rules for rules in (VANILLA, GUIDED, DECONVNET)}
#: DeepLIFT's rescale rule set (Shrikumar et al. 2017); the request carries the reference input
DEEPLIFT = RuleSet("deeplift", nonlinearity="rescale", strict=True)


def rescale(dz: np.ndarray, dy: np.ndarray, derivative_at_reference: np.ndarray,
            tiny: float = RESCALE_TINY) -> np.ndarray:
    """DeepLIFT's rescale multiplier of ``y = g(z)``: ``Δy/Δz``, or ``g'(z0)`` where ``|Δz| <= tiny``.

    >>> rescale(np.array([2.0, 0.0]), np.array([1.0, 0.0]), np.array([9.0, 0.5]))
    array([0.5, 0.5])
    """
    small = np.abs(dz) <= tiny
    return np.where(small, derivative_at_reference, dy / np.where(small, 1.0, dz))


def max_pool_multipliers(x: np.ndarray, x0: np.ndarray, windows: np.ndarray, m_out: np.ndarray,
                         tiny: float = RESCALE_TINY) -> np.ndarray:
    """DeepLIFT multipliers at the input of a max pooling, given ``m_out`` at its output.

    Each window is one nonlinearity. With ``o = max x_w``, ``o0 = max x0_w`` and
    ``t = max(o, o0)``, the contribution ``m_out (t - o0)`` goes to the window's
    winner on the input and ``m_out (o - t)`` to its winner on the reference (the
    first maximum on ties, as torch and XLA pick it), so the two sum to
    ``m_out Δo``. A position's multiplier is its contributions divided by its
    ``Δx``; where ``|Δx| <= tiny`` (it then receives nothing) it is the gradient
    routed by the reference's winners.

    Parameters
    ----------
    x, x0 : ndarray, shape (N, P)
        The pool's input on the input and on the reference, positions flattened.
    windows : ndarray of int, shape (Q, K)
        The flat positions of each of the Q windows (per sample and channel).
    m_out : ndarray, shape (N, Q)

    Returns
    -------
    ndarray, shape (N, P)
    """
    rows = np.arange(len(x))[:, None]
    q = np.arange(len(windows))[None, :]
    win = windows[q, np.argmax(x[:, windows], axis=2)]  # (N, Q): first maximum on ties
    win0 = windows[q, np.argmax(x0[:, windows], axis=2)]
    o, o0 = x[rows, win], x0[rows, win0]
    top = np.maximum(o, o0)
    contribution, routed = np.zeros_like(x), np.zeros_like(x)
    np.add.at(contribution, (np.broadcast_to(rows, win.shape), win), m_out * (top - o0))
    np.add.at(contribution, (np.broadcast_to(rows, win0.shape), win0), m_out * (o - top))
    np.add.at(routed, (np.broadcast_to(rows, win0.shape), win0), m_out)
    dx = x - x0
    small = np.abs(dx) <= tiny
    return np.where(small, routed, contribution / np.where(small, 1.0, dx))


def product_multipliers(a: np.ndarray, a0: np.ndarray, b: np.ndarray,
                        b0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeepLIFT multipliers of ``a * b`` for ``a`` and ``b``: ``½(b + b0)`` and ``½(a + a0)``.

    The Shapley split of the product's change, exact:
    ``½(b + b0)(a - a0) + ½(a + a0)(b - b0) = ab - a0 b0``.
    """
    return 0.5 * (b + b0), 0.5 * (a + a0)


@dataclass(frozen=True)
class TransformerRules:
    """AttnLRP's rules for the operations of transformers (Achtibat et al. 2024), as data.

    Each rule has a NumPy reference; with ``epsilon = 0`` every one equals
    lxt's gradient-times-input formulation (relevance ``R = x ⊙ g`` at every tensor).

    Attributes
    ----------
    conservative : bool
        ``False`` (AttnLRP): the softmax rule ``R_in = x ⊙ (R − s ⊙ Σ R)``
        (:meth:`softmax`); ``True`` (CP-LRP, Ali et al. 2022): the attention
        is a constant, no relevance enters the softmax, and the values ``v``
        of ``A @ v`` take all of it.
    epsilon : float
        Stabiliser of the product rule, LayerNorm's and added constants' ε-rule.
    """

    conservative: bool = False
    epsilon: float = 1e-6

    def softmax(self, x: np.ndarray, relevance: np.ndarray) -> np.ndarray:
        """Relevance at the logits ``x`` (…, T) of ``s = softmax(x)`` given ``relevance`` at ``s``."""
        if self.conservative:
            return np.zeros_like(x)
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        s = e / e.sum(axis=-1, keepdims=True)
        return x * (relevance - s * relevance.sum(axis=-1, keepdims=True))

    def product(self, a: np.ndarray, b: np.ndarray, relevance: np.ndarray,
                scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Relevance at ``a`` (…, T, K) and ``b`` (…, K, S) of ``z = scale * a @ b``.

        The uniform ε-rule (AttnLRP eq. 7): each operand takes half of LRP-ε's
        relevance; under CP-LRP ``a`` (the attention) takes none, ``b`` all.
        """
        s = stabilized_divide(relevance, scale * (a @ b), self.epsilon)
        share_a, share_b = (0.0, 1.0) if self.conservative else (0.5, 0.5)
        ra = share_a * a * (scale * s @ np.swapaxes(b, -1, -2))
        rb = share_b * b * (scale * np.swapaxes(a, -1, -2) @ s)
        return ra, rb

    def layer_norm(self, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                   relevance: np.ndarray, eps: float = 1e-5) -> np.ndarray:
        """LayerNorm over the last axis with ``1/σ`` held constant (the identity rule on the
        normalisation), then LRP-ε on that linear map ``(x − mean x) / σ * w + b``."""
        sigma = np.sqrt(x.var(axis=-1, keepdims=True) + eps)
        w = np.ones(x.shape[-1]) if weight is None else weight
        z = (x - x.mean(axis=-1, keepdims=True)) / sigma * w + (0.0 if bias is None else bias)
        g = stabilized_divide(relevance, z, self.epsilon) * w / sigma
        return x * (g - g.mean(axis=-1, keepdims=True))

    @staticmethod
    def elementwise(x: np.ndarray, relevance: np.ndarray) -> np.ndarray:
        """The identity rule (AttnLRP eq. 9) of GELU / SiLU: relevance passes unchanged."""
        return relevance

    def constant(self, x: np.ndarray, c: np.ndarray, relevance: np.ndarray) -> np.ndarray:
        """``x + c`` with ``c`` a parameter (a position embedding): LRP-ε, ``c`` as the bias."""
        return x * stabilized_divide(relevance, x + c, self.epsilon)


def attnlrp_rule_set(cp: bool = False, epsilon: float = 1e-6) -> RuleSet:
    """AttnLRP (``cp=False``) or CP-LRP (``cp=True``): LRP-ε on linear layers and
    convolutions, the sum rule on residual additions and :class:`TransformerRules`.

    ``epsilon = 0`` is lxt's gradient-times-input formulation, rule for rule.

    References
    ----------
    Achtibat et al. (2024). AttnLRP: attention-aware layer-wise relevance
    propagation for transformers. ICML. Ali et al. (2022). XAI for transformers:
    better explanations through conservative propagation. ICML.
    """
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon >= 0 \
            or not np.isfinite(epsilon):
        raise argument_error("epsilon", "a finite number >= 0", epsilon)
    eps = float(epsilon)
    return RuleSet(
        name=f"{'cp_lrp' if cp else 'attnlrp'}:epsilon={eps:g}", rectifier="pass",
        convolution=Epsilon(eps), dense=Epsilon(eps), pooling=Norm(eps), addition=Norm(eps),
        normalisation="merge", strict=True, seed="relevance",
        transformer=TransformerRules(conservative=bool(cp), epsilon=eps))


def rule_set(rule: str | RuleSet) -> RuleSet:
    """The rule set a request names: a :class:`RuleSet`, or ``"vanilla"``/``"guided"``/``"deconvnet"``."""
    if isinstance(rule, RuleSet):
        return rule
    if isinstance(rule, GuidedActivation):
        return _NAMED[rule.name]
    return _NAMED[check_choice("rule", rule, sorted(_NAMED),
                               suggestion="Or pass an attrib.rules.RuleSet (lrp_rule_set(...)).")]


def get_rule(rule: Any, backend: str | None = None) -> GuidedActivation:
    """The rectifier rule called ``rule`` (``"vanilla"``, ``"guided"``, ``"deconvnet"``).

    ``rule`` may also be an :class:`attrib.rules.RuleSet` whose only change is
    its rectifier rule. Any other rule set (LRP) raises :class:`attrib.AttribError`
    saying that ``backend`` does not implement it: a backend calls this when it
    implements only the rectifier rules.
    """
    if isinstance(rule, GuidedActivation):
        return rule
    if isinstance(rule, RuleSet):
        if rule.rectifier_only:
            return RULES[rule.rectifier]
        raise argument_error(
            "rule", f"a rule set the {backend or 'this'} backend implements (vanilla, guided, "
            "deconvnet)", shown(f"rule set {rule.name!r}"),
            "LRP and DeepLIFT are implemented by the torch and jax backends "
            "and by the NumPy reference (attrib.testing): use one of them, or see "
            "docs/how-to/write-a-backend.md to implement them.")
    return RULES[check_choice("rule", rule, sorted(RULES))]


# -- LRP composites ------------------------------------------------------------------------
_RULE_NAMES = ("zero", "epsilon", "gamma", "zplus", "alpha2_beta1", "alpha1_beta0", "flat",
               "wsquare", "zbox", "norm", "gradient")
_OVERRIDE_KINDS = ("convolution", "dense", "first", "pooling", "addition")


def _named_rule(name: str, *, epsilon: float, gamma: float, stabilizer: float,
                bounds: ZBox | None, where: str) -> LinearRule | None:
    rule = check_choice(where, name, _RULE_NAMES,
                        suggestion="Or pass a rule object such as attrib.rules.Epsilon(0.25).")
    if rule == "zbox":
        if bounds is None:
            raise argument_error("low/high", "box bounds for the zbox rule", None,
                                 "Pass low= and high= (the smallest and largest input values, "
                                 "e.g. per channel after normalisation).")
        return bounds
    table: dict[str, LinearRule | None] = {
        "zero": Epsilon(0.0), "epsilon": Epsilon(epsilon), "gamma": Gamma(gamma, stabilizer),
        "zplus": ZPlus(stabilizer), "alpha2_beta1": AlphaBeta(2.0, 1.0, stabilizer),
        "alpha1_beta0": AlphaBeta(1.0, 0.0, stabilizer), "flat": Flat(stabilizer),
        "wsquare": WSquare(stabilizer), "norm": Norm(stabilizer), "gradient": None,
    }
    return table[rule]


def lrp_rule_set(composite: str = "epsilon_plus_flat", rules: Mapping[str, Any] | None = None, *,
                 epsilon: float = 1e-6, gamma: float = 0.25, stabilizer: float = 1e-6,
                 low: Any = None, high: Any = None) -> RuleSet:
    """The LRP rule set of ``composite``, with ``rules`` overriding kinds or named layers.

    Composites (zennit's names and defaults): every one passes relevance
    through rectifiers unchanged, splits it in proportion at average pooling
    and additions (:class:`Norm`), gives max pooling to each window's winner,
    merges BatchNorm into the layer before it, and uses LRP-ε on dense layers;
    convolutions get

    - ``epsilon_plus``: z⁺; ``epsilon_plus_flat``: z⁺, the first layer flat;
    - ``epsilon_gamma_box``: γ, the first layer zᴮ (needs ``low``/``high``);
    - ``epsilon_alpha2_beta1``: α2β1;
    - ``epsilon``: ε everywhere; ``zero``: LRP-0 everywhere (ε = 0, pooling
      and additions too): equal to gradient × input on ReLU networks.

    Parameters
    ----------
    composite : str
        One of :data:`COMPOSITES`.
    rules : mapping, optional
        ``{kind or layer name: rule}``; a kind is one of ``"convolution"``,
        ``"dense"``, ``"first"``, ``"pooling"``, ``"addition"``; a rule is a
        name (``"zero"``, ``"epsilon"``, ``"gamma"``, ``"zplus"``,
        ``"alpha2_beta1"``, ``"alpha1_beta0"``, ``"flat"``, ``"wsquare"``,
        ``"zbox"``, ``"norm"``, ``"gradient"``) or a :class:`LinearRule`.
    epsilon, gamma, stabilizer : float
        Parameters of the named rules (ε of LRP-ε; the stabiliser of the others).
    low, high : float or array, optional
        Input bounds of the zᴮ rule (scalar, per channel, or one sample's shape).

    Examples
    --------
    >>> lrp_rule_set("epsilon_plus_flat").first
    Flat(stabilizer=1e-06)
    """
    check_choice("composite", composite, COMPOSITES,
                 suggestion="Or pass rules={kind or layer: rule} to adjust one.")
    for name, value in (("epsilon", epsilon), ("gamma", gamma), ("stabilizer", stabilizer)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 \
                or not np.isfinite(value):
            raise argument_error(name, "a finite number >= 0", value)
    bounds = box(low, high, stabilizer) if low is not None or high is not None else None
    if (low is None) != (high is None):
        raise argument_error("low/high", "both box bounds", shown("only one of them"))
    conv: LinearRule | None = ZPlus(stabilizer)
    first: LinearRule | None = None
    pool: LinearRule | None = Norm(stabilizer)
    dense: LinearRule | None = Epsilon(epsilon)
    if composite == "epsilon_plus_flat":
        first = Flat(stabilizer)
    elif composite == "epsilon_gamma_box":
        conv = Gamma(gamma, stabilizer)
        if bounds is None:
            raise argument_error("low/high", "box bounds for composite 'epsilon_gamma_box'", None,
                                 "Pass low= and high=: the smallest and largest input values "
                                 "(scalars, per channel, or one sample's shape).")
        first = bounds
    elif composite == "epsilon_alpha2_beta1":
        conv = AlphaBeta(2.0, 1.0, stabilizer)
    elif composite == "epsilon":
        conv = Epsilon(epsilon)
    elif composite == "zero":
        conv, dense, pool = Epsilon(0.0), Epsilon(0.0), Norm(0.0)
    kinds: dict[str, LinearRule | None] = {"convolution": conv, "dense": dense, "first": first,
                                           "pooling": pool, "addition": pool}
    layers: list[tuple[str, LinearRule]] = []
    if rules is not None and not isinstance(rules, Mapping):
        raise argument_error("rules", "a mapping {kind or layer name: rule}",
                             shown(type(rules).__name__), kind=AttribTypeError)
    for key, value in (rules or {}).items():
        if not isinstance(key, str):
            raise argument_error("rules", "keys that are kinds or layer names (str)", key,
                                 kind=AttribTypeError)
        where = f"rules[{key!r}]"
        if isinstance(value, LinearRule):
            rule: LinearRule | None = value
        elif isinstance(value, str):
            rule = _named_rule(value, epsilon=epsilon, gamma=gamma, stabilizer=stabilizer,
                               bounds=bounds, where=where)
        else:
            raise argument_error(where, "a rule name or an attrib.rules.LinearRule",
                                 shown(type(value).__name__), kind=AttribTypeError)
        if key in _OVERRIDE_KINDS:
            kinds[key] = rule
        elif rule is None:
            raise argument_error(where, "a relevance rule for a named layer", "gradient",
                                 did_you_mean(key, _OVERRIDE_KINDS))
        else:
            layers.append((key, rule))
    suffix = "" if not rules else "+" + ",".join(f"{k}={_label(v)}" for k, v in rules.items())
    return RuleSet(
        name=f"lrp:{composite}{suffix}", rectifier="pass", convolution=kinds["convolution"],
        dense=kinds["dense"], first=kinds["first"], pooling=kinds["pooling"],
        addition=kinds["addition"], normalisation="merge", layers=tuple(layers), strict=True,
        seed="relevance",
    )


def _label(rule: Any) -> str:
    return rule if isinstance(rule, str) else repr(rule)

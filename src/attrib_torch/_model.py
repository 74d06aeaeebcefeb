"""The torch adapter: an unmodified ``nn.Module`` seen as an :class:`attrib.Model`."""

from __future__ import annotations

import contextlib
import itertools
import sys
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attrib import AttribWarning, GradientRequest, GradientResult, Model, resolve_targets
from attrib._attention import check_attention
from attrib._errors import (
    AttribError,
    AttribTypeError,
    argument_error,
    check_choice,
    did_you_mean,
    shown,
)
from attrib._inputs import as_tuple, each, like, several
from attrib._model import LayerInfo, check_token_relevance, same_batch_groups
from attrib._outputs import check_output, select_output
from attrib._targets import check_objective, resolve_target_weights, weights_targets
from attrib.rules import RuleSet, get_rule, rule_set
from attrib.targets import Target

from ._attention import captured_attention, prefix_tokens
from ._capture import Tap, check_layers, tapped
from ._convert import as_numpy, as_tensor, check_all, check_model_device, shape_hint
from ._deeplift import DeepLiftMode
from ._probe import probe, scaled, substituted
from ._rectifiers import RectifierGraph, RectifierMode, RuleState
from ._relevance import RelevanceMode
from ._state import preserved

__all__ = ["TorchModel"]

_RECTIFIER_PATHS = ("auto", "graph", "mode")


class TorchModel(Model):
    """A torch ``nn.Module`` classifier as an :class:`attrib.Model` (layout NCHW).

    The module is used as it is, on the device and in the dtype of its
    parameters, and is left exactly as found after every call, also one that
    raised: no module is replaced, every hook is removed, ``training`` flags,
    ``requires_grad`` and parameters are untouched (no parameter gradient is
    ever computed) and buffers are restored bit for bit.

    Rectifier rules (guided backprop, deconvnet) are applied, in an eager
    model, by hooks on the rectifier nodes of the autograd graph of the call
    (torch's own backward kernels; ``stats["rectifier_path"] == "graph"``),
    and, in a model running ``torch.compile``'d or TorchScript code whose
    graph hides its rectifiers, by a ``TorchFunctionMode`` scoped to the
    forward pass (``"mode"``); both give the same maps (see
    :mod:`attrib_torch._rectifiers` for the spellings caught). TorchScript
    models and reentrant activation checkpointing are out of reach; a
    :class:`attrib.AttribWarning` says so when a guided rule found no rectifier.

    Threads: any number of threads may call any method on one model (or on
    several) at once and get the maps of sequential calls. Layer taps act only
    on the forward pass of the thread that set them, the rectifier mode is
    per thread, and a buffer is written back only if the call changed it. Not
    safe: a model in training mode (BatchNorm updates its running statistics
    in every forward pass; attrib warns and leaves the mode to you), or a
    model changed by another thread during a call. Inputs of another floating
    dtype or device are converted to the model's; integer images are refused
    (see ``docs/how-to/threads-and-bad-input.md``).

    Parameters
    ----------
    model : torch.nn.Module
        A classifier mapping a batch (N, C, H, W) to logits (N, classes), or
        to a tuple / list (first element), a mapping or an object with
        ``logits`` holding them.
    output : None, str, int or callable
        Where the logits are in the model's output when the rule above does
        not find them: a key or attribute name, an index, or a callable on the
        output (see :mod:`attrib._outputs`).
    rectifier_path : {"auto", "graph", "mode"}, optional
        How rectifier rules are applied: ``"auto"`` (default) hooks the
        autograd graph in eager models and uses the ``TorchFunctionMode`` where
        compiled or scripted code hides the rectifiers; ``"graph"`` and
        ``"mode"`` force one mechanism (``"graph"`` still falls back to the
        mode when the graph holds compiled code). For tests and benchmarks.

    Examples
    --------
    >>> import torch, attrib
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    >>> attrib.explain(net, torch.ones(2, 1, 2, 2), method="saliency", target=1).attribution.shape
    (2, 1, 2, 2)
    """

    backend = "torch"
    captures_attention = True
    several_inputs = True  # inputs=(x1, x2, ...) for model(x1, x2, ...): one gradient each

    def __init__(self, model: nn.Module, *, rectifier_path: str = "auto",
                 output: Any = None) -> None:
        if not isinstance(model, nn.Module):
            raise argument_error(
                "model", "a torch.nn.Module", shown(f"an object of type {type(model).__name__}"),
                kind=AttribTypeError,
            )
        check_choice("rectifier_path", rectifier_path, _RECTIFIER_PATHS,
                     suggestion='Leave it at "auto" unless comparing the two mechanisms.')
        self._model = model
        self._rectifier_path = rectifier_path
        self._output = check_output(output)
        self._substitution_slow: set[str] = set()  # layers forward_substituted runs the safe way

    # -- the Model interface ---------------------------------------------------------
    @property
    def layout(self) -> str:
        return "NCHW"

    @property
    def native(self) -> nn.Module:
        return self._model

    def layer_names(self) -> Sequence[str]:
        return [name for name, _ in self._model.named_modules() if name]

    def input_shape(self, inputs: Any) -> tuple[int, ...]:
        return check_all(inputs)

    def to_numpy(self, inputs: Any) -> np.ndarray:
        check_all(inputs)
        return each(lambda x: as_numpy(x) if isinstance(x, torch.Tensor) else np.array(x, copy=True),
                    inputs)

    def forward(self, inputs: Any) -> np.ndarray:
        check_all(inputs)
        x = self._tensor(inputs)
        with preserved(self._model), torch.no_grad():
            logits = self._logits(x)
        return _numpy(logits)

    def prefix_tokens(self) -> int | None:
        """Class, distillation and register tokens, read from the module (see :func:`prefix_tokens`)."""
        return prefix_tokens(self._model)

    # -- randomised copies (attrib.evaluate) --------------------------------------------------
    def parameter_layers(self) -> Sequence[str]:
        """Modules owning parameters directly, in definition order (``"conv1"``, ..., ``"fc"``)."""
        return [name for name, module in self._model.named_modules()
                if name and any(True for _ in module.parameters(recurse=False))]

    def randomized(self, layers: Sequence[str], seed: int = 0, batchnorm: str = "reset") -> TorchModel:
        """A :class:`TorchModel` over ``copy.deepcopy`` of the module, ``layers`` re-drawn.

        See :meth:`attrib.Model.randomized` for the distribution and
        ``batchnorm`` (BatchNorm layers: any ``nn.modules.batchnorm._BatchNorm``,
        timm's ``BatchNormAct2d`` included; their running statistics are kept).
        The user's module is only read.
        """
        import copy

        from attrib._randomize import check_batchnorm, check_layers, redrawn, reset_batchnorm

        names = check_layers(layers, list(self.parameter_layers()), self.backend)
        reset = check_batchnorm(batchnorm) == "reset"
        with preserved(self._model):
            clone = copy.deepcopy(self._model)
        modules = dict(clone.named_modules())
        with torch.no_grad():
            for layer in names:
                norm = reset and isinstance(modules[layer], nn.modules.batchnorm._BatchNorm)
                for pname, param in modules[layer].named_parameters(recurse=False):
                    value = param.detach().cpu().double().numpy()
                    new = (reset_batchnorm(value, pname) if norm
                           else redrawn(value, seed=seed, layer=layer, name=pname))
                    param.copy_(torch.from_numpy(new))  # copy_ casts to its dtype and device
        return TorchModel(clone)

    def gradients(self, request: GradientRequest) -> GradientResult:
        """One forward pass and the backward pass(es) ``request`` needs.

        ``stats`` holds ``backward_passes`` (0, 1 or 2), ``rule`` and, when a
        rule other than vanilla was applied, ``rectifiers`` (rectifier nodes
        hooked or calls intercepted) and ``rectifier_path`` (``"graph"`` or
        ``"mode"``, the mechanism that applied it).
        """
        check_all(request.inputs)
        check_objective(request.objective)
        rules = rule_set(request.rule)
        check_token_relevance(request, rules)
        if rules.nonlinearity == "rescale":
            return self._deeplift(request, rules)
        if not rules.rectifier_only:
            if not request.input_gradient and not request.token_relevance:
                return self.gradients(replace(request, rule="vanilla"))  # rules act on inputs only
            return self._relevance(request, rules)
        rule = get_rule(rules).name
        layers = tuple(request.layers)
        check_layers(self._model, layers)
        attention = check_attention(request.attention)
        with torch.inference_mode(False):  # also when called under torch.inference_mode()
            x = each(lambda t: t.requires_grad_(request.input_gradient),
                     self._tensor(request.inputs))
        ruled = rule != "vanilla" and request.input_gradient
        state = RuleState(rule)
        stats: dict[str, Any] = {"rule": rule}
        # an attention capture that needs no gradient at all runs without a graph (other
        # capture-only passes keep theirs: their maps must stay bit for bit as they were)
        graph_needed = not attention or request.input_gradient or request.attention_gradients \
            or (bool(layers) and request.layer_gradients)

        with preserved(self._model), torch.inference_mode(False), \
                torch.set_grad_enabled(graph_needed):
            # eager models: the rule hooks the autograd graph's rectifier nodes after
            # the forward pass (torch's own kernels); compiled or scripted code hides
            # its rectifiers from the graph: the rule then goes through the mode
            use_mode = self._rectifier_path == "mode" or (
                self._rectifier_path == "auto" and _hides_rectifiers(self._model))
            mode = RectifierMode(state) if ruled and use_mode else None
            grads = request.attention_gradients
            target = request.target
            scores: np.ndarray | None = None
            logits, taps, attended = self._forward(x, layers, mode, attention, grads, target)
            if target is not None:  # the score's graph holds every output the target reads
                targets, score, scores = _target_score(request, logits)
            root = logits if target is None else score
            graph = RectifierGraph(root, state, (rule,)) if ruled and mode is None else None
            if graph is not None and graph.opaque:  # e.g. a torch.compile'd function inside
                graph, mode = None, RectifierMode(state)
                logits, taps, attended = self._forward(x, layers, mode, attention, grads, target)
                if target is not None:
                    targets, score, scores = _target_score(request, logits)
            if target is None:
                targets, score = _explained(request, logits)
            rectifiers = graph.count if graph is not None else mode.count if mode else 0
            if ruled:
                stats["rectifiers"] = rectifiers
                stats["rectifier_path"] = "graph" if graph is not None else "mode"
                if rectifiers == 0:
                    _warn_no_rectifier(rule, stacklevel=5)
            wanted = [tap for tap in taps if request.layer_gradients] + \
                [tap for tap in attended if grads]
            if graph is not None:
                between = any(graph.rectifier_above(tap.output) for tap in wanted
                              if tap.output is not None)
            else:
                between = mode is not None and any(
                    tap.rectifiers_before < mode.count for tap in wanted)
            with graph if graph is not None else contextlib.nullcontext():
                input_gradient, tap_gradients, passes = self._backward(
                    score, x, wanted, request, state, between
                )
        stats["backward_passes"] = passes
        if attended:
            stats["attention_layers"] = len(attended)
        gradients = dict(zip((id(tap) for tap in wanted), tap_gradients))
        return GradientResult(
            inputs=each(_numpy, x),
            logits=_numpy(logits) if isinstance(logits, torch.Tensor) or scores is None
            else scores[:, None],
            targets=targets,
            input_gradient=input_gradient,
            activations={tap.name: _numpy(tap.activation) for tap in taps
                         if tap.activation is not None},
            layer_gradients={tap.name: gradients[id(tap)] for tap in taps
                             if id(tap) in gradients},
            stats=stats,
            attention={tap.name: _numpy(tap.activation) for tap in attended
                       if tap.activation is not None},
            attention_gradients={tap.name: gradients[id(tap)].reshape(tap.activation.shape)
                                 for tap in attended
                                 if id(tap) in gradients and tap.activation is not None},
            scores=scores,
        )

    def gradients_many(self, requests: Sequence[GradientRequest]) -> list[GradientResult]:
        """:meth:`gradients` of each request; requests on one batch share one forward pass.

        Requests with the same ``inputs``, ``targets``, ``target_weights`` and
        ``target`` objects and objective, under rectifier rules (vanilla,
        guided, deconvnet), without attention, in an eager model (the graph
        path of :class:`RectifierGraph`) run as one forward pass with every
        layer captured once, then one backward pass per rule on that graph:
        the :class:`RuleState` switches between them, so each pass is torch's
        own kernels with the rule's hooks, as in :meth:`gradients`. The true
        layer gradients come from the vanilla pass (one is run for them if no
        request wants the vanilla input gradient). Each result equals
        ``gradients(request)`` bit for bit; ``stats["forward_passes"]`` is 1 on
        the first result of a shared group and 0 on the others. Other
        requests, and a graph holding compiled code, run alone.
        """
        results: dict[int, GradientResult] = {}
        for group in same_batch_groups(requests, self._shares):
            if len(group) > 1:
                shared = self._shared([requests[i] for i in group])
                if shared is not None:
                    results.update(zip(group, shared))
        return [results[i] if i in results else self.gradients(request)
                for i, request in enumerate(requests)]

    def _shares(self, request: GradientRequest) -> bool:
        """Whether ``request`` may share its forward pass (see :meth:`gradients_many`)."""
        rules = rule_set(request.rule)
        return (rules.rectifier_only and rules.nonlinearity != "rescale"
                and not request.attention and not request.attention_gradients
                and not request.token_relevance and request.reference is None
                and self._rectifier_path != "mode"
                and not _hides_rectifiers(self._model))

    def _shared(self, requests: list[GradientRequest]) -> list[GradientResult] | None:
        """One forward pass and one backward pass per rule for ``requests`` (one batch).

        ``None`` when the graph holds compiled code (the caller runs each alone).
        """
        first = requests[0]
        check_all(first.inputs)
        check_objective(first.objective)
        rules = [get_rule(rule_set(r.rule)).name for r in requests]
        layers = tuple(dict.fromkeys(name for r in requests for name in r.layers))
        check_layers(self._model, layers)
        with torch.inference_mode(False):
            x = each(lambda t: t.requires_grad_(any(r.input_gradient for r in requests)),
                     self._tensor(first.inputs))
        xs = list(as_tuple(x))
        ruled = tuple(dict.fromkeys(
            rule for rule, r in zip(rules, requests) if rule != "vanilla" and r.input_gradient))
        state = RuleState("vanilla")
        with preserved(self._model), torch.inference_mode(False), torch.enable_grad():
            logits, taps, _ = self._forward(x, layers, None, target=first.target)
            scores: np.ndarray | None = None
            if first.target is not None:
                targets, score, scores = _target_score(first, logits)
            else:
                targets, score = _explained(first, logits)
            graph = RectifierGraph(logits if first.target is None else score, state, ruled) \
                if ruled else None
            if graph is not None and graph.opaque:  # compiled code inside: the mode, per request
                return None
            for rule in ruled:
                if graph is not None and graph.count == 0:
                    _warn_no_rectifier(rule, stacklevel=5)
            wanted = [tap for tap in taps if tap.output is not None and any(
                r.layer_gradients and tap.name in r.layers for r in requests)]
            vanilla_x = any(rule == "vanilla" and r.input_gradient
                            for rule, r in zip(rules, requests))
            # (rule, tensors): the true pass (vanilla input gradient, every layer), then each rule
            passes = ([("vanilla", (xs if vanilla_x else []) + [tap.output for tap in wanted])]
                      if vanilla_x or wanted else []) + [(rule, xs) for rule in ruled]
            grads: dict[str, list[torch.Tensor]] = {}
            with graph if graph is not None else contextlib.nullcontext():
                for k, (rule, tensors) in enumerate(passes):
                    state.rule = rule
                    grads[rule] = _grad(score, tensors, retain_graph=k < len(passes) - 1)
        layer_grads = dict(zip((tap.name for tap in wanted),
                               grads.get("vanilla", [])[len(xs) if vanilla_x else 0:]))
        activations = {tap.name: tap.activation for tap in taps if tap.activation is not None}
        given: set[int] = set()

        def own(tensor: torch.Tensor) -> np.ndarray:  # each result its own arrays, as alone
            value = _numpy(tensor)
            if id(tensor) in given:
                return value.copy()
            given.add(id(tensor))
            return value

        served: set[str | None] = set()  # each backward pass counted on the first result it serves
        results = []
        for k, (request, rule) in enumerate(zip(requests, rules)):
            stats: dict[str, Any] = {"rule": rule, "forward_passes": int(k == 0)}
            input_rule = rule if request.input_gradient else None
            if input_rule is not None and input_rule != "vanilla":
                stats["rectifiers"] = graph.count if graph is not None else 0
                stats["rectifier_path"] = "graph"
            used: set[str | None] = {input_rule} if input_rule is not None else set()
            if request.layer_gradients and any(name in layer_grads for name in request.layers):
                used.add("vanilla")
            stats["backward_passes"] = len(used - served)
            served |= used
            input_gradient = None if input_rule is None else \
                like(tuple(own(g) for g in grads[input_rule][:len(xs)]), x)
            results.append(GradientResult(
                inputs=each(own, x),
                logits=own(logits) if isinstance(logits, torch.Tensor) or scores is None
                else scores[:, None].copy(),
                targets=targets.copy(),
                input_gradient=input_gradient,
                activations={name: own(activations[name]) for name in request.layers
                             if name in activations},
                layer_gradients={name: own(layer_grads[name]) for name in request.layers
                                 if request.layer_gradients and name in layer_grads},
                stats=stats,
                scores=None if scores is None else scores.copy(),
            ))
        return results

    def _relevance(self, request: GradientRequest, rules: RuleSet) -> GradientResult:
        """One forward pass under :class:`RelevanceMode` and the backward pass(es) of ``rules``.

        Layer gradients, when asked for, are the true ones (a first pass with
        every rule switched off); the input quantity follows ``rules``, seeded
        with the score gradient times the logits when ``rules.seed == "relevance"``.
        """
        if several(request.inputs):
            raise argument_error(
                "inputs", f"one array for the rule set {rules.name!r}",
                shown(f"a tuple of {len(request.inputs)} inputs"),
                "Rule sets beyond rectifiers (LRP) explain models of one input.")
        layers = tuple(request.layers)
        check_layers(self._model, layers)
        if check_attention(request.attention):
            raise argument_error(
                "attention", "no attention capture in a pass under an LRP rule set", request.attention,
                "Ask for the attention in a separate request (rule='vanilla').")
        names = self._rule_layers(rules)
        with torch.inference_mode(False):
            x = self._tensor(request.inputs).requires_grad_(True)
        try:
            return self._relevance_pass(request, rules, names, x, copies=False)
        except RuntimeError as error:  # a term of an addition changed in place after it
            if "modified by an inplace operation" not in str(error):
                raise
        return self._relevance_pass(request, rules, names, x, copies=True)

    def _relevance_pass(self, request: GradientRequest, rules: RuleSet, names: dict[int, str],
                        x: torch.Tensor, copies: bool) -> GradientResult:
        """:meth:`_relevance`'s passes; ``copies``: additions keep copies of their terms."""
        layers = tuple(request.layers)
        state = RuleState(rules)
        state.masks = bool(layers) and request.layer_gradients  # a true pass to come
        state.copies = copies
        with preserved(self._model), torch.inference_mode(False), torch.enable_grad():
            mode = RelevanceMode(state, names)
            logits, taps, _ = self._forward(x, layers, mode, target=request.target)
            mode.check()
            scores: np.ndarray | None = None
            if request.target is not None:
                targets, score, scores = _target_score(request, logits)
                if rules.seed == "relevance" and not isinstance(logits, torch.Tensor):
                    raise argument_error(
                        "rules", "a rule set without relevance seeding for this target",
                        shown(f"{rules.name!r} on an output of type {type(logits).__name__}"))
            else:
                targets, score = _explained(request, logits)
            outputs = [tap.output for tap in taps
                       if request.layer_gradients and tap.output is not None]
            layer_grads: list[torch.Tensor] = []
            passes = 1
            if outputs:
                state.exact, state.rule = True, "vanilla"
                try:
                    layer_grads = _grad(score, outputs, retain_graph=True)
                finally:
                    state.exact, state.rule = False, rules.rectifier
                passes = 2
            token, why = mode.token_input() if request.token_relevance else (None, "")
            wrt = [x] if token is None else [x, token]
            if rules.seed == "relevance" and score.requires_grad:
                seed = torch.autograd.grad(score, logits, retain_graph=True)[0] * logits.detach()
                grads = list(torch.autograd.grad(logits, wrt, seed, allow_unused=True,
                                                 materialize_grads=True))
            else:
                grads = _grad(score, wrt)
            input_grad = grads[0]
        wanted = [tap for tap in taps if request.layer_gradients and tap.output is not None]
        return GradientResult(
            inputs=_numpy(x),
            logits=_numpy(logits) if isinstance(logits, torch.Tensor) or scores is None
            else scores[:, None],
            targets=targets,
            input_gradient=_numpy(input_grad),
            activations={tap.name: _numpy(tap.activation) for tap in taps
                         if tap.activation is not None},
            layer_gradients={tap.name: _numpy(g) for tap, g in zip(wanted, layer_grads)},
            stats={"rule": rules.name, "rules": dict(mode.counts), "rectifiers": mode.count,
                   "rectifier_path": "mode", "backward_passes": passes,
                   **({"token_relevance": why} if why else {})},
            scores=scores,
            token_relevance=None if token is None else _numpy(grads[1]),
        )

    def _deeplift(self, request: GradientRequest, rules: RuleSet) -> GradientResult:
        """DeepLIFT's multipliers: inputs and references in one forward pass under :class:`DeepLiftMode`.

        The score reads the input rows only; the multiplier at the input
        satisfies ``sum m * (x - reference) = score(x) - score(reference)``.
        Layer captures are not served here (DeepLIFT needs none).
        """
        if request.reference is None:
            raise argument_error("reference", f"the reference inputs of rule set {rules.name!r}",
                                 None, "Pass GradientRequest(reference=...) (the baselines)")
        if request.layers:
            raise argument_error("layers", f"no layer captures with rule set {rules.name!r}",
                                 request.layers)
        if several(request.inputs):
            raise argument_error(
                "inputs", f"one array for the rule set {rules.name!r}",
                shown(f"a tuple of {len(request.inputs)} inputs"),
                "DeepLIFT explains models of one input.")
        if request.target is not None:
            raise argument_error("target", f"a class target with rule set {rules.name!r}",
                                 shown(type(request.target).__name__),
                                 "DeepLIFT explains class scores; use integrated gradients for "
                                 "an attrib.targets target.")
        with torch.inference_mode(False):
            x = self._tensor(request.inputs)
            reference = self._tensor(request.reference)
        if reference.shape != x.shape:
            raise argument_error("reference", f"one reference per input, shape {tuple(x.shape)}",
                                 shown(f"shape {tuple(reference.shape)}"))
        n = x.shape[0]
        with preserved(self._model), torch.inference_mode(False), torch.enable_grad():
            both = torch.cat([x, reference]).requires_grad_(True)
            mode = DeepLiftMode(rules)
            with mode:
                logits = self._logits(both)
            targets, score = _explained(request, logits[:n])
            multipliers = _grad(score, [both])[0][:n]
        return GradientResult(
            inputs=_numpy(x), logits=_numpy(logits[:n]), targets=targets,
            input_gradient=_numpy(multipliers),
            stats={"rule": rules.name, "rules": dict(mode.counts), "backward_passes": 1,
                   "reference_logits": _numpy(logits[n:])},
        )

    def _rule_layers(self, rules: RuleSet) -> dict[int, str]:
        """``id(weight) -> name`` of the layers ``rules`` names (convolution / dense modules)."""
        if not rules.layers:
            return {}
        modules = dict(self._model.named_modules())
        out: dict[int, str] = {}
        for name, _ in rules.layers:
            module = modules.get(name)
            if module is None or not name:
                raise argument_error("rules", "layer names of this model (or a kind)", name,
                                     did_you_mean(str(name), [n for n in modules if n]))
            weight = getattr(module, "weight", None)
            if not isinstance(weight, nn.Parameter) or weight.ndim < 2:
                raise argument_error(
                    "rules", "a convolution or dense layer for a layer rule",
                    shown(f"{name!r}, a {type(module).__name__} without a weight matrix"),
                    "Layer rules apply to convolutions and dense layers; pooling and additions "
                    "take the kinds 'pooling' and 'addition'.")
            out[id(weight)] = name
        return out

    # -- the CAM family's primitives (issue 8) ------------------------------------------
    def probe_layers(self, inputs: Any) -> list[LayerInfo]:
        """Every submodule that ran once, in output order, from one ``no_grad`` forward pass.

        Forward hooks on every submodule, removed in ``finally``; pooling,
        ``Flatten``, ``Identity``, dropout and containers passing such a
        module's output on are marked ``resamples``.
        """
        check_all(inputs)
        x = self._tensor(inputs)
        with preserved(self._model), torch.no_grad():
            return probe(self._model, lambda: self._logits(x))

    def forward_scaled(self, inputs: Any, layer: str, scale: np.ndarray) -> np.ndarray:
        """Logits with ``layer``'s output multiplied by ``scale``: a forward hook scoped to the call."""
        check_all(inputs)
        check_layers(self._model, (layer,))
        x = self._tensor(inputs)
        first = as_tuple(x)[0]
        factor = torch.as_tensor(np.asarray(scale), device=first.device, dtype=first.dtype)
        with preserved(self._model), torch.no_grad(), scaled(self._model, layer, factor):
            logits = self._logits(x)
        return as_numpy(logits)

    def forward_substituted(self, inputs: Any, layer: str, activation: np.ndarray) -> np.ndarray:
        """Logits with ``layer``'s output replaced by ``activation``: hooks scoped to the call.

        Fast path: the layer runs on an empty batch (its output is replaced
        anyway) and one input image runs the layers before it once for all M
        rows. A model that raises on that, or returns logits of another batch
        size, is run again on M rows (the image repeated) with the layer run
        as usual, and the layer is remembered on this adapter.
        """
        if several(inputs):
            raise argument_error("inputs", "one array for forward_substituted",
                                 shown(f"a tuple of {len(inputs)} inputs"))
        check_all(inputs)
        check_layers(self._model, (layer,))
        x = self._tensor(inputs)
        values = torch.as_tensor(np.asarray(activation), device=x.device, dtype=x.dtype).clone()
        m = values.shape[0] if values.ndim else 0
        if m < 1 or x.shape[0] not in (1, m):
            raise argument_error(
                "inputs", f"1 image or one per activation row ({m})",
                shown(f"{x.shape[0]} images for an activation of shape {tuple(values.shape)}"))
        slow = self._substitution_slow
        with preserved(self._model), torch.no_grad():
            if layer not in slow:
                try:
                    with substituted(self._model, layer, values, skip=True):
                        logits = select_output(self._model(x), self._output,
                                               lambda v: isinstance(v, torch.Tensor))
                    if isinstance(logits, torch.Tensor) and logits.ndim == 2 \
                            and logits.shape[0] == m and logits.is_floating_point():
                        return as_numpy(logits)
                except AttribError:
                    raise
                except Exception:  # noqa: BLE001 - the model refused the fast path: the safe one
                    pass
                slow.add(layer)
            rows = x.expand(m, *x.shape[1:]).contiguous() if x.shape[0] != m else x
            with substituted(self._model, layer, values, skip=False):
                logits = self._logits(rows)
        return as_numpy(logits)

    # -- helpers -----------------------------------------------------------------------
    def _forward(
        self, x: torch.Tensor, layers: tuple[str, ...], mode: RectifierMode | RelevanceMode | None,
        attention: tuple[str, ...] | str = (), attention_gradients: bool = False,
        target: Target | None = None,
    ) -> tuple[Any, list[Tap], list[Tap]]:
        """Logits (or the output ``target`` reads), the taps of ``layers`` and the captured
        attention of one forward pass."""
        def count() -> int:
            return mode.count if mode is not None else 0

        with tapped(self._model, layers, count) as taps, \
                captured_attention(self._model, attention, count, attention_gradients) as attended:
            if mode is not None:
                with mode:
                    logits = self._logits(x, target)
            else:
                logits = self._logits(x, target)
        return logits, taps, attended.taps if attended is not None else []

    def _backward(
        self, score: torch.Tensor, x: torch.Tensor, wanted_layers: list[Tap],
        request: GradientRequest, state: RuleState, between: bool,
    ) -> tuple[np.ndarray | None, list[np.ndarray], int]:
        """Input and tap gradients (one per ``wanted_layers``); tap gradients are always true.

        ``between`` says that a rectifier whose rule ``state`` applies lies
        between one of ``wanted_layers`` and the logits.
        """
        rule = state.rule
        outputs = [tap.output for tap in wanted_layers if tap.output is not None]
        if not request.input_gradient and not outputs:
            return None, [], 0
        xs = list(as_tuple(x))  # several inputs: one gradient each
        # A rectifier between a layer's output and the logits would corrupt that
        # layer's gradient under the rule: the true pass first, then the ruled one.
        if rule != "vanilla" and outputs and between and request.input_gradient:
            state.rule = "vanilla"
            layer_grads = _grad(score, outputs, retain_graph=True)
            state.rule = rule
            input_grads: list[torch.Tensor] | None = _grad(score, xs)
            passes = 2
        else:
            grads = _grad(score, (xs if request.input_gradient else []) + outputs)
            input_grads = grads[:len(xs)] if request.input_gradient else None
            layer_grads = grads[len(xs):] if request.input_gradient else grads
            passes = 1
        return (
            like(tuple(_numpy(g) for g in input_grads), x) if input_grads is not None else None,
            [_numpy(g) for g in layer_grads],
            passes,
        )

    def _device_dtype(self) -> tuple[torch.device, torch.dtype | None]:
        """Device of the first parameter (or buffer) and dtype of the first floating one."""
        device: torch.device | None = None
        for tensor in itertools.chain(self._model.parameters(), self._model.buffers()):
            device = device or tensor.device
            if tensor.is_floating_point():  # lazily: no walk over every module
                return device, tensor.dtype
        return device or torch.device("cpu"), None

    def _tensor(self, inputs: Any) -> Any:
        """A fresh tensor of ``inputs`` on the model's device and dtype (a tuple for several)."""
        device, dtype = self._device_dtype()
        check_model_device(device)
        return each(lambda x: as_tensor(x, device, dtype), inputs)

    def _logits(self, inputs: Any, target: Target | None = None) -> Any:
        """The logits (N, classes) on a batch, or on several inputs as ``model(x1, x2, ...)``;
        with ``target``, the checked output it reads (any shape)."""
        x = as_tuple(inputs)[0]  # the first input, for the messages and the batch size
        try:
            # a model may rectify its input in place: never in place on the leaf
            args = [a.clone() if a.requires_grad else a for a in as_tuple(inputs)]
            value = self._model(*args)
            if target is not None:
                chosen = target.select(value, self._output, lambda v: isinstance(v, torch.Tensor))
                target.check(chosen, int(x.shape[0]), self.layout)
                return chosen
            logits = select_output(value, self._output, lambda v: isinstance(v, torch.Tensor))
        except AttribError:  # ours, e.g. from a layer tap: already clear
            raise
        except (RuntimeError, IndexError, ValueError, TypeError) as error:  # inputs it rejects
            message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            if isinstance(error, TypeError) and "argument" in message:  # e.g. 2 inputs for 1
                count = len(as_tuple(inputs))
                raise argument_error(
                    "inputs", "as many inputs as the model's forward() takes",
                    shown(f"{count} input{'s' if count > 1 else ''}, on which the model raised "
                          f"TypeError: {message}"),
                    "Pass a tuple (x1, x2, ...) for a model called as model(x1, x2, ...), one "
                    "array for model(x).") from error
            if isinstance(error, TypeError):
                raise argument_error(
                    "model", "a forward pass that runs on these inputs",
                    shown(f"TypeError: {message[:200]} (raised inside the model)"),
                    "The model's own error is chained above; the model was left as found.",
                ) from error
            hint = shape_hint(self._model, tuple(x.shape)) if not several(inputs) else ""
            raise argument_error(
                "inputs",
                "a batch this model accepts",
                shown(f"shape {tuple(x.shape)} ({x.dtype}), on which the model raised "
                      f"{type(error).__name__}: {message}"),
                (hint + " " if hint else "") +
                "Check the batch axis, the number of channels, the image size and the layout "
                "(NCHW); the model's own error is chained above.",
            ) from error
        except Exception as error:  # any other failure inside the user's forward pass
            message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise argument_error(
                "model", "a forward pass that runs on these inputs",
                shown(f"{type(error).__name__}: {message[:200]} (raised inside the model)"),
                "The model's own error is chained above; the model was left as found.",
            ) from error
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            given = (f"an output of shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor)
                     else f"an output of type {type(logits).__name__}")
            hint = shape_hint(self._model, tuple(x.shape)) if isinstance(logits, torch.Tensor) \
                and (logits.ndim < 2 or logits.shape[0] != x.shape[0]) else ""
            if hint:  # e.g. one image (C, H, W), which convolutions take as unbatched
                raise argument_error("inputs", "a batch (N, C, H, W)",
                                     shown(f"shape {tuple(x.shape)}"), hint)
            raise argument_error(
                "model",
                f"a classifier returning one tensor of logits, shape ({x.shape[0]}, classes)",
                shown(given),
                "Tuples/lists (first element), mappings and objects with 'logits' are read "
                "as such; otherwise pass output= (a key, an index or a callable on the "
                "model's output) to attrib.wrap or attrib.explain.",
            )
        if not logits.is_floating_point():
            raise argument_error("model", "floating-point logits", shown(f"dtype {logits.dtype}"))
        return logits


def _hides_rectifiers(model: nn.Module) -> bool:
    """Whether ``model`` is compiled or scripted code whose rectifiers the graph cannot show.

    True for a ``torch.compile``'d model (``OptimizedModule`` or
    ``nn.Module.compile()``) and a TorchScript module. Compiled submodules
    are found after the forward pass instead, as opaque graph nodes
    (:attr:`RectifierGraph.opaque`), so no call walks every module.
    """
    if isinstance(model, torch.jit.ScriptModule) \
            or getattr(model, "_compiled_call_impl", None) is not None:
        return True
    dynamo = sys.modules.get("torch._dynamo.eval_frame")  # imported by any torch.compile
    return dynamo is not None and isinstance(model, dynamo.OptimizedModule)


def _warn_no_rectifier(rule: str, stacklevel: int) -> None:
    """The guided / deconvnet rule found no rectifier: the map is the vanilla gradient."""
    warnings.warn(
        f"rule {rule!r} changed nothing: no rectifier (ReLU, ReLU6, hardtanh "
        "with min 0) ran in the model's forward pass, so the map equals the "
        "vanilla gradient. Smooth activations (GELU, SiLU, ...), "
        "clamp(min=0)/maximum, TorchScript and reentrant checkpointing are not "
        "rectifiers attrib can see.",
        AttribWarning,
        stacklevel=stacklevel,
    )


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """NumPy values of a tensor this call created (shared, not copied; half as float32).

    Only for tensors nothing else holds: the model's input copy, logits,
    gradients, the taps' activation copies.
    """
    tensor = tensor.detach()
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()
    return tensor.cpu().numpy()


def _objective(logits: torch.Tensor, objective: str) -> torch.Tensor:
    """``objective(logits)``, shape (N, classes) (see :mod:`attrib._targets`)."""
    if objective == "log_softmax":
        return F.log_softmax(logits, dim=1)
    if objective == "softmax":
        return F.softmax(logits, dim=1)
    return logits


def _explained(request: GradientRequest, logits: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """The explained class of each sample (N,) and the summed score to differentiate."""
    if request.target_weights is not None:
        weights = resolve_target_weights(request.target_weights, _numpy(logits))
        return weights_targets(weights), _weighted_score(logits, weights, request.objective)
    targets = resolve_targets(request.targets, _numpy(logits))
    return targets, _score(logits, targets, request.objective)


def _target_score(request: GradientRequest,
                  output: Any) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """Labels (N,), the summed score and the (N,) scores of ``request.target`` on ``output``.

    The target's score is written against the array API (see :mod:`attrib.targets`):
    here it runs on torch tensors, so autograd differentiates it.
    """
    target = request.target
    target.check_objective(request.objective)
    n = int(request.inputs.shape[0])
    values = output
    if isinstance(output, torch.Tensor):
        if not output.is_floating_point():
            raise argument_error("model", "a floating-point output", shown(f"dtype {output.dtype}"))
        if request.objective != "logit":
            axis = target.class_axis("NCHW", output.ndim)
            values = (F.log_softmax if request.objective == "log_softmax" else F.softmax)(
                output, dim=axis)
    reference = _first_floating(output)
    data = {name: torch.as_tensor(array, device=reference.device,
                                  dtype=reference.dtype if array.dtype.kind == "f" else None)
            for name, array in target.data(output, n, "NCHW").items()}
    scores = target.score(values, data, torch, "NCHW")
    return target.labels(n), scores.sum(), _numpy(scores).astype(np.float64)


def _first_floating(output: Any) -> torch.Tensor:
    """The first floating tensor in ``output`` (a tensor, or nested sequences / mappings)."""
    stack = [output]
    while stack:
        item = stack.pop(0)
        if isinstance(item, torch.Tensor) and item.is_floating_point():
            return item
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    raise argument_error("model", "an output with floating-point values",
                         shown(f"an output of type {type(output).__name__}"))


def _score(logits: torch.Tensor, targets: np.ndarray, objective: str) -> torch.Tensor:
    """Sum over samples of each sample's score (see :mod:`attrib._targets`)."""
    values = _objective(logits, objective)
    rows = torch.arange(logits.shape[0], device=logits.device)
    index = torch.as_tensor(targets, dtype=torch.long, device=logits.device)
    return values[rows, index].sum()


def _weighted_score(logits: torch.Tensor, weights: np.ndarray, objective: str) -> torch.Tensor:
    """``sum_n sum_k w[n, k] * objective(logits)[n, k]`` (see :mod:`attrib._targets`)."""
    values = _objective(logits, objective)
    w = torch.as_tensor(weights, dtype=values.dtype, device=values.device)
    return (values * w).sum()


def _grad(
    score: torch.Tensor, inputs: list[torch.Tensor], retain_graph: bool = False
) -> list[torch.Tensor]:
    """Gradients of ``score`` at ``inputs`` only (never at parameters); zeros where unused."""
    if not inputs:
        return []
    if not score.requires_grad:  # the score does not depend on anything differentiable
        return [torch.zeros_like(t) for t in inputs]
    grads = torch.autograd.grad(
        score, inputs, retain_graph=retain_graph, allow_unused=True, materialize_grads=True
    )
    return list(grads)

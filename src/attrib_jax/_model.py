"""The jax backend's :class:`attrib.Model`: Flax linen, nnx and plain functions.

Pass a model as one of::

    attrib.explain((module, variables), x_nhwc, method="gradcam", layer="layer4")
    attrib.explain(nnx_module, x_nhwc, method="guided_backprop")
    attrib.explain((apply_fn, params), x_nhwc, method="saliency")  # apply_fn(params, x) -> logits

Call arguments of a linen or nnx module (``train=False``, ``method=``) go to
the backend once through :func:`attrib.wrap`::

    model = attrib.wrap((module, variables), backend="jax", train=False)
    attrib.explain(model, x_nhwc, method="saliency")

Linen modules are applied with ``mutable=False``: BatchNorm must run on its
running statistics (``use_running_average=True``, e.g. through ``train=False``);
put nnx modules in eval mode (``model.eval()``) first.

Layers are named by module path (``"layer4"``, ``"layer4/1"``, nnx attribute
paths such as ``"blocks/0"``). A submodule inside a lifted Flax transform
(``nn.remat``, ``nn.scan``) cannot be tapped: tap the module around it.
Rectifier rules reach everywhere, ``remat`` and ``scan`` included.

Each gradient pass is one jit-compiled program: forward, target selection
(the arg-max when no target is given), the objective, and the backward
pass(es). Programs are cached on the computation (module / graph definition /
function, call options, rule, layers, objective): a second call with the same
shapes does not trace or compile again.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from attrib._attention import ALL, check_attention
from attrib._errors import (
    AttribError,
    AttribTypeError,
    AttribValueError,
    AttribWarning,
    argument_error,
    did_you_mean,
    shown,
)
from attrib._inputs import as_tuple, check_batch, each, several
from attrib._model import (
    GradientRequest,
    GradientResult,
    LayerInfo,
    Model,
    check_token_relevance,
    same_batch_groups,
)
from attrib._outputs import check_output, select_output
from attrib._targets import check_objective, resolve_target_weights, resolve_targets
from attrib.rules import RuleSet, get_rule, rule_set

from ._attention import evaluate as evaluate_attention
from ._attention import find_sites
from ._attention import standard as standard_attention
from ._capture import Forward, _hashable, make_forward
from ._rewrite import analyse, check_supported, trace

__all__ = ["JaxModel", "trace_count", "clear_cache"]

_CACHE_SIZE = 64


@dataclass
class _Entry:
    """One compiled program (jit retraces it per input shape) and facts about it."""

    program: Any
    traces: int = 0


_CACHE: OrderedDict[Any, _Entry] = OrderedDict()
#: (computation, params structure, input shape, dtype, layers) -> (logit shape, layer
#: shapes, the traced forward Program when no layer is tapped, else None)
_SHAPES: OrderedDict[Any, tuple[tuple[int, ...], dict[str, Any], Any]] = OrderedDict()
# Guards both caches: calls from several threads look up, insert and evict at
# once (a lookup followed by move_to_end, or a read after an insert, must not
# meet another thread's eviction). Tracing and compiling run outside it.
_LOCK = threading.RLock()


def clear_cache() -> None:
    """Forget every compiled program."""
    with _LOCK:
        _CACHE.clear()
        _SHAPES.clear()


def trace_count() -> int:
    """How many times the cached programs were traced (for tests of the cache)."""
    with _LOCK:
        return sum(entry.traces for entry in _CACHE.values())


def _cached(key: Any, build: Any) -> _Entry:
    with _LOCK:  # building is cheap (jax.jit traces on the first call, outside the lock)
        entry = _CACHE.get(key)
        if entry is None:
            entry = _Entry(program=None)
            entry.program = build(entry)
            _CACHE[key] = entry
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        else:
            _CACHE.move_to_end(key)
        return entry


def _scores(logits: Any, targets: Any, objective: str) -> Any:
    if objective == "log_softmax":
        logits = jax.nn.log_softmax(logits, axis=-1)
    elif objective == "softmax":
        logits = jax.nn.softmax(logits, axis=-1)
    return jnp.take_along_axis(logits, targets[:, None].astype(jnp.int32), axis=1)[:, 0]


def _weighted_values(logits: Any, objective: str) -> Any:
    """``objective(logits)``, all classes (N, classes), for target weights."""
    if objective == "log_softmax":
        return jax.nn.log_softmax(logits, axis=-1)
    if objective == "softmax":
        return jax.nn.softmax(logits, axis=-1)
    return logits


class JaxModel(Model):
    """A Flax / JAX classifier seen through attrib (inputs NHWC).

    Parameters
    ----------
    model : ``(linen.Module, variables)``, ``nnx.Module`` or ``(apply_fn, params)``
        Left unmodified; ``apply_fn(params, x)`` returns logits (N, classes).
    method : str or callable, optional
        Module method to call instead of ``__call__`` (linen ``apply(method=)``,
        an nnx method name).
    output : None, str, int or callable, optional
        Where the logits are in the model's output. By default a tuple's or
        list's first element, a mapping's ``"logits"`` entry or an object's
        ``logits`` attribute (see :mod:`attrib._outputs`).
    **call_kwargs
        Keyword arguments of every module call, e.g. ``train=False``.
    """

    backend = "jax"
    compiles_per_shape = True
    captures_attention = True
    several_inputs = True  # inputs=(x1, x2, ...): apply(params, x1, x2, ...), one gradient each

    def __init__(self, model: Any, *, method: Any = None, output: Any = None,
                 **call_kwargs: Any) -> None:
        self._native = model
        self._output = check_output(output)
        self._raw: Forward = make_forward(model, method, call_kwargs)
        self._forward: Forward = _selecting(self._raw, self._output)
        self._method = method
        self._call_kwargs = dict(call_kwargs)

    # -- the Model contract ----------------------------------------------------------------
    @property
    def layout(self) -> str:
        return "NHWC"

    @property
    def native(self) -> Any:
        return self._native

    @property
    def kind(self) -> str:
        """``"linen"``, ``"nnx"`` or ``"function"``."""
        return self._forward.kind

    def layer_names(self) -> Sequence[str]:
        """Name paths of the submodules (``"layer4"``, ``"layer4/1"``); empty for a function.

        For linen these are the modules that own variables (parameter-free
        submodules do not appear in ``variables``).
        """
        return self._forward.names

    def input_shape(self, inputs: Any) -> Any:
        shape = _array_shape(inputs)
        # abstract evaluation (no computation, cached per shape): does the model take it?
        try:
            self._out_shape(each(lambda x: jax.ShapeDtypeStruct(tuple(x.shape), x.dtype), inputs))
        except _NotLogits:  # it does; whether its output suits the target is checked later
            pass
        return shape

    def to_numpy(self, inputs: Any) -> Any:
        self.input_shape(inputs)
        array = each(np.asarray, inputs)
        _check_finite(array)
        return array

    def forward(self, inputs: Any) -> np.ndarray:
        x = self._device_inputs(inputs)
        entry = self._entry("forward")
        self._out_shape(x)
        return np.asarray(entry.program(self._forward.params, x))

    # -- randomised copies (attrib.evaluate) --------------------------------------------------
    def parameter_layers(self) -> Sequence[str]:
        """Module paths owning parameters.

        Linen: in the order of ``variables["params"]`` (the order of the
        first calls at init, so input first). nnx: in the order of nnx's
        graph traversal (attribute names sorted; pass ``layers=`` to
        :func:`attrib.evaluate.model_randomization` to choose another). An
        ``(apply_fn, params)`` pair: the paths of the nested dicts of ``params``.
        """
        owners = []
        for layer, _, _ in _parameter_leaves(self._parameter_tree()):
            if layer and layer not in owners:
                owners.append(layer)
        if self._forward.kind == "nnx":
            ordered = [name for name in self._forward.names if name in owners]
            return ordered + [name for name in owners if name not in ordered]
        return owners

    def randomized(self, layers: Sequence[str], seed: int = 0, batchnorm: str = "reset") -> JaxModel:
        """A :class:`JaxModel` over new variables (same module), ``layers`` re-drawn.

        See :meth:`attrib.Model.randomized` for the distribution and
        ``batchnorm``; kernels are drawn output-first and transposed, so the
        Flax twin of a torch model gets the same weights. BatchNorm layers are
        those with batch statistics (linen's ``batch_stats`` collection, nnx's
        ``BatchStat`` variables; kept as they are); an ``(apply_fn, params)``
        pair has none. The user's variables are not modified (JAX arrays are
        immutable; untouched leaves are shared); an nnx module is split and
        merged into a new module.
        """
        from attrib._randomize import check_batchnorm, check_layers, redrawn, reset_batchnorm

        names = set(check_layers(layers, list(self.parameter_layers()), self.backend))
        norms = self._batchnorm_layers() if check_batchnorm(batchnorm) == "reset" else set()

        def rebuild(tree: Any, path: tuple[str, ...]) -> Any:
            if hasattr(tree, "items"):
                return {key: rebuild(value, (*path, str(key))) for key, value in tree.items()}
            layer = "/".join(path[:-1])
            if layer not in names:
                return tree
            value = np.asarray(tree, dtype=np.float64)
            new = (reset_batchnorm(value, path[-1]) if layer in norms else
                   redrawn(value, seed=seed, layer=layer, name=path[-1], channels_last=True))
            return jnp.asarray(new, dtype=tree.dtype)

        params = rebuild(self._parameter_tree(), ())
        kind = self._forward.kind
        if kind == "linen":
            module, variables = self._native
            copy = {key: (params if key == "params" else value) for key, value in variables.items()}
            return JaxModel((module, copy), method=self._method, output=self._output,
                            **self._call_kwargs)
        if kind == "nnx":
            from flax import nnx

            graphdef, state, rest = nnx.split(self._native, nnx.Param, ...)  # type: ignore[misc]
            fresh = jax.tree_util.tree_map(lambda leaf: leaf, state)  # a new State to fill
            nnx.replace_by_pure_dict(fresh, params)
            return JaxModel(nnx.merge(graphdef, fresh, rest), method=self._method,
                            output=self._output, **self._call_kwargs)
        return JaxModel((self._native[0], params), output=self._output)

    def _batchnorm_layers(self) -> set[str]:
        """Paths of the layers with batch statistics (BatchNorm), e.g. ``"blocks/0/0/bn1"``."""
        kind = self._forward.kind
        if kind == "linen":
            stats = self._native[1].get("batch_stats", {})
        elif kind == "nnx":
            from flax import nnx

            stats = nnx.to_pure_dict(nnx.split(self._native, nnx.BatchStat, ...)[1])
        else:
            return set()
        return {layer for layer, _, _ in _parameter_leaves(stats)}

    def _parameter_tree(self) -> Any:
        """The parameters as nested dicts of arrays (linen ``params``, nnx ``Param`` state)."""
        kind = self._forward.kind
        if kind == "linen":
            variables = self._native[1]
            if "params" not in variables:
                raise argument_error("model", "Flax variables with a 'params' collection",
                                     shown(f"collections {sorted(variables)}"))
            return variables["params"]
        if kind == "nnx":
            from flax import nnx

            return nnx.to_pure_dict(nnx.split(self._native, nnx.Param, ...)[1])
        if hasattr(self._native[1], "items"):
            return self._native[1]
        raise AttribError(
            "model: randomised copies (Model.randomized) need named parameters: an "
            "(apply_fn, params) pair whose params are nested dicts, not "
            f"{type(self._native[1]).__name__}.")

    def gradients(self, request: GradientRequest) -> GradientResult:
        check_objective(request.objective)
        check_token_relevance(request, rule_set(request.rule))
        if request.target is not None:
            if isinstance(request.rule, RuleSet) and not request.rule.rectifier_only:
                raise argument_error(
                    "target", f"a class target with rule set {request.rule.name!r} on the jax backend",
                    shown(type(request.target).__name__),
                    "Rule sets beyond rectifiers (LRP, DeepLIFT) explain class scores on the jax "
                    "backend; LRP with an attrib.targets target runs on the torch backend.")
            return self._target_gradients(request)
        if isinstance(request.rule, RuleSet) and request.rule.nonlinearity != "gradient":
            from ._deeplift import deeplift_gradients  # DeepLIFT (jaxpr rewrite)

            return deeplift_gradients(self, request, request.rule)
        if isinstance(request.rule, RuleSet) and not request.rule.rectifier_only:
            from ._relevance import relevance_gradients  # LRP rule sets (jaxpr rewrite)

            return relevance_gradients(self, request, request.rule)
        rule = get_rule(request.rule, "jax").name
        layers = tuple(request.layers)
        if layers:
            self._check_layers(layers)
        numpy_inputs, x = self._batch(request.inputs)
        if rule != "vanilla":
            check_supported()
        entry = self._entry("gradients", rule, layers, request.objective,
                            request.input_gradient, request.layer_gradients)
        targets, weights, eps = self._scored(request, x, layers)
        attention = check_attention(request.attention)
        if attention:
            return self._with_attention(request, attention, numpy_inputs, x, targets, weights)
        try:
            out = entry.program(self._forward.params, x, eps, targets, weights)
        except jax.errors.UnexpectedTracerError as error:
            raise _lifted_layer_error(layers) from error
        out = jax.device_get(out)  # every output to the host in one call (NumPy arrays)
        return self._result(request, rule, numpy_inputs, out, {})

    def gradients_many(self, requests: Sequence[GradientRequest]) -> list[GradientResult]:
        """:meth:`gradients` of each request; requests on one batch run as one compiled program.

        Requests with the same ``inputs``, ``targets`` and ``target_weights``
        objects and objective, under rectifier rules (vanilla, guided,
        deconvnet), with class targets and no attention, are traced into one
        jit-compiled program: each request's computation as :meth:`gradients`
        traces it, side by side, so XLA computes their common forward pass
        once (common-subexpression elimination) and each result equals
        ``gradients(request)`` bit for bit. ``stats["forward_passes"]`` is 1 on
        the first result of such a group and 0 on the others; other requests
        run alone.
        """
        results: dict[int, GradientResult] = {}
        for group in same_batch_groups(requests, _shares):
            if len(group) > 1:
                results.update(zip(group, self._shared([requests[i] for i in group])))
        return [results[i] if i in results else self.gradients(request)
                for i, request in enumerate(requests)]

    def _shared(self, requests: list[GradientRequest]) -> list[GradientResult]:
        """The results of ``requests`` (one batch, see :meth:`gradients_many`) from one program."""
        first = requests[0]
        check_objective(first.objective)
        rules = [get_rule(request.rule, "jax").name for request in requests]
        for request in requests:
            if request.layers:
                self._check_layers(tuple(request.layers))
        numpy_inputs, x = self._batch(first.inputs)
        if any(rule != "vanilla" for rule in rules):
            check_supported()
        configs = tuple((rule, tuple(r.layers), r.objective, r.input_gradient, r.layer_gradients)
                        for rule, r in zip(rules, requests))
        forward = self._forward
        entry = _cached((forward.key, "many", configs),
                        lambda entry: _many_program(forward, entry, configs))
        scored = [self._scored(request, x, tuple(request.layers)) for request in requests]
        targets, weights, _ = scored[0]
        try:
            outs = entry.program(forward.params, x, [eps for _, _, eps in scored], targets, weights)
        except jax.errors.UnexpectedTracerError as error:
            raise _lifted_layer_error(tuple(n for r in requests for n in r.layers)) from error
        outs = jax.device_get(outs)
        return [self._result(request, rule, numpy_inputs if k == 0 else
                             each(np.copy, numpy_inputs), out, {"forward_passes": int(k == 0)})
                for k, (request, rule, out) in enumerate(zip(requests, rules, outs))]

    def _batch(self, inputs: Any) -> tuple[Any, Any]:
        """``inputs`` checked, as NumPy and as a JAX array (tuples for several inputs)."""
        # one check of the inputs and one transfer; the model's acceptance of
        # them is the (cached) abstract evaluation in _scored
        _array_shape(inputs)
        numpy_inputs = each(np.asarray, inputs)
        _check_finite(numpy_inputs)
        return numpy_inputs, each(jnp.asarray, inputs)

    def _scored(self, request: GradientRequest, x: Any,
                layers: tuple[str, ...]) -> tuple[Any, Any, dict[str, Any]]:
        """``(targets, weights, eps)``: the program arguments saying what is explained
        (class targets or target weights, checked against the traced logits' shape) and
        zeros shaped like each of ``layers``' outputs."""
        out_shape, layer_shapes = self._out_shape(x, layers)
        given = None
        if request.targets is not None:
            # class range checked against the class count, known from the traced shape
            given = resolve_targets(np.asarray(request.targets, dtype=np.int64),
                                    np.zeros(out_shape, dtype=np.float32))
        else:
            resolve_targets(None, np.zeros(out_shape, dtype=np.float32))
        targets = None if given is None else jnp.asarray(given, dtype=jnp.int32)
        weights = None
        if request.target_weights is not None:
            # a program argument (not a trace constant): new weights reuse the compiled program
            checked = resolve_target_weights(request.target_weights,
                                             np.zeros(out_shape, dtype=np.float32))
            weights, targets = jnp.asarray(checked), None
        eps = {name: jnp.zeros(a.shape, a.dtype) for name, a in layer_shapes.items()}
        return targets, weights, eps

    def _result(self, request: GradientRequest, rule: str, numpy_inputs: Any,
                out: dict[str, Any], stats: dict[str, Any]) -> GradientResult:
        """The :class:`GradientResult` of one program's (host) outputs ``out``, plus ``stats``."""
        stats = {"rectifiers": int(out["rectifiers"]), "backward_passes": int(out["passes"]),
                 "downstream_rectifiers": int(out["downstream"]), **stats}
        if rule != "vanilla" and request.input_gradient and stats["rectifiers"] == 0:
            warnings.warn(
                f"the {rule!r} rule changed no rectifier: the program calls no "
                "jax.nn.relu / relu6 (flax.linen.relu, nnx.relu) that attrib can rewrite "
                "(a bare jnp.maximum(x, 0) is not treated as one), so the map is the "
                "vanilla gradient", AttribWarning, stacklevel=4)
        input_gradient = out.get("input_gradient")
        return GradientResult(
            inputs=numpy_inputs,
            logits=np.asarray(out["logits"]),
            targets=np.asarray(out["targets"], dtype=np.int64),
            input_gradient=None if input_gradient is None else each(np.asarray, input_gradient),
            activations={name: np.asarray(a) for name, a in out["activations"].items()},
            layer_gradients={name: np.asarray(g) for name, g in out.get("layer_gradients", {}).items()},
            stats=stats,
        )

    def prefix_tokens(self) -> int | None:
        """Tokens before the patch grid, from the learned token parameters (see :func:`prefix_tokens`)."""
        return prefix_tokens(self._forward.params)

    def _with_attention(self, request: GradientRequest, attention: tuple[str, ...] | str,
                        numpy_inputs: np.ndarray, x: Any, targets: Any,
                        weights: Any) -> GradientResult:
        """The request's pass, plus the attention program (see :mod:`attrib_jax._attention`).

        The attention program is one forward pass and, for attention
        gradients, one backward pass to the attention; the rest of the
        request (input and layer gradients) runs as usual in its own program.
        """
        sites = self._attention_sites(x)
        chosen = select_sites(attention, [site.name for site in sites])
        entry = self._entry("attention", request.objective, request.attention_gradients)
        out = jax.device_get(entry.program(self._forward.params, x, targets, weights))
        names = [site.name for site in sites]
        kept = {names[i]: np.asarray(out["attention"][i]) for i in chosen}
        grads = {names[i]: np.asarray(out["gradients"][i]) for i in chosen} \
            if request.attention_gradients else {}
        passes = 1 if request.attention_gradients else 0
        rest = replace(request, attention=(), attention_gradients=False)
        if request.input_gradient or request.layers:
            result = self.gradients(rest)
            stats = {**result.stats, "backward_passes": result.stats["backward_passes"] + passes,
                     "attention_layers": len(kept)}
            return replace(result, attention=kept, attention_gradients=grads, stats=stats)
        return GradientResult(
            inputs=numpy_inputs, logits=np.asarray(out["logits"]),
            targets=np.asarray(out["targets"], dtype=np.int64), attention=kept,
            attention_gradients=grads,
            stats={"rectifiers": 0, "backward_passes": passes, "attention_layers": len(kept)})

    def _attention_sites(self, x: Any) -> list[Any]:
        """The attention sites of the forward program for inputs like ``x`` (cached per shape)."""
        key = ("attention-sites", _shape_key(self._forward, self._forward.params, x, ()))
        with _LOCK:
            known = _SHAPES.get(key)
        if known is not None:
            return list(known[1])
        fn = self._forward.fn
        program = trace(lambda p, x: fn(p, x, None, ())[0], self._forward.params, _abstract(x))
        flat = [_abstract(v) for v in jax.tree_util.tree_leaves((self._forward.params, x))]
        sites = find_sites(program.closed, flat)
        with _LOCK:
            _SHAPES[key] = ((), sites, None)  # type: ignore[assignment]
        return sites

    def _target_gradients(self, request: GradientRequest) -> GradientResult:
        """:meth:`gradients` for an :class:`attrib.targets.Target`: its score, traced with jnp.

        The target's arrays are program arguments: another mask, reference or
        set of boxes of the same shapes reuses the compiled program.
        """
        target = request.target
        target.check_objective(request.objective)
        if request.attention:
            raise argument_error("target", "a class target when attention is captured",
                                 shown(type(target).__name__))
        rule = get_rule(request.rule, "jax").name
        layers = tuple(request.layers)
        if layers:
            self._check_layers(layers)
        _array_shape(request.inputs)
        numpy_inputs = np.asarray(request.inputs)
        _check_finite(numpy_inputs)
        x = jnp.asarray(request.inputs)
        if rule != "vanilla":
            check_supported()
        forward = _targeting(self._raw, self._output, target)
        output, layer_shapes = self._out_shape(x, layers, forward, target)
        n = int(x.shape[0])
        target.check(output, n, self.layout)
        data = target.data(output, n, self.layout)
        entry = _cached((forward.key, "gradients", rule, layers, request.objective,
                         request.input_gradient, request.layer_gradients),
                        lambda entry: _gradient_program(
                            forward, entry, rule, layers, request.objective,
                            request.input_gradient, request.layer_gradients, target))
        eps = {name: jnp.zeros(a.shape, a.dtype) for name, a in layer_shapes.items()}
        try:
            out = entry.program(forward.params, x, eps, None, data)
        except jax.errors.UnexpectedTracerError as error:
            raise _lifted_layer_error(layers) from error
        out = jax.device_get(out)
        scores = np.asarray(out["targets"], dtype=np.float64)
        logits = out["logits"]
        input_gradient = out.get("input_gradient")
        return GradientResult(
            inputs=numpy_inputs,
            logits=np.asarray(logits) if hasattr(logits, "shape") else scores[:, None],
            targets=target.labels(n),
            input_gradient=None if input_gradient is None else np.asarray(input_gradient),
            activations={name: np.asarray(a) for name, a in out["activations"].items()},
            layer_gradients={name: np.asarray(g) for name, g in out.get("layer_gradients", {}).items()},
            stats={"rectifiers": int(out["rectifiers"]), "backward_passes": int(out["passes"]),
                   "downstream_rectifiers": int(out["downstream"])},
            scores=scores,
        )

    # -- the CAM family's primitives (issue 8) -----------------------------------------------
    def probe_layers(self, inputs: Any) -> list[LayerInfo]:
        """Every layer's output shape from one abstract evaluation (no computation), in call order.

        Flax pools with functions, not modules, so no layer is marked ``resamples``.
        """
        x = self._device_inputs(inputs)
        names = tuple(self._forward.names)
        if not names:
            return []
        fn = self._forward.fn
        order: list[str] = []

        def run(p: Any, x: Any) -> Any:
            logits, acts = fn(p, x, None, names)
            order.extend(acts)  # call order (the returned pytree's keys come back sorted)
            return logits, acts

        try:
            _, acts = jax.eval_shape(run, self._forward.params, x)
        except AttribError:  # e.g. a shared submodule: no single output to probe
            return []
        return [LayerInfo(name, tuple(int(d) for d in acts[name].shape)) for name in order]

    def forward_scaled(self, inputs: Any, layer: str, scale: np.ndarray) -> np.ndarray:
        """Logits with ``layer``'s output multiplied by ``scale``, through the layer interception.

        The same mechanism as the layer perturbation of :meth:`gradients`
        (``flax.linen.intercept_methods``; a tap on a merged copy for nnx):
        the user's module and variables are never edited. One jit-compiled
        program per layer, cached.
        """
        self._check_layers((layer,))
        x = self._device_inputs(inputs)
        self._out_shape(x, (layer,))
        forward = self._forward
        entry = _cached((forward.key, "scaled", layer),
                        lambda entry: _scaled_program(forward, entry, layer))
        try:
            return np.asarray(entry.program(forward.params, x, jnp.asarray(scale)))
        except TypeError as error:  # shapes that do not broadcast
            raise argument_error("scale", f"a mask that broadcasts against {layer!r}'s output",
                                 shown(f"shape {np.shape(scale)}")) from error

    def forward_substituted(self, inputs: Any, layer: str, activation: np.ndarray) -> np.ndarray:
        """Logits with ``layer``'s output replaced by ``activation``, through the layer interception.

        One jit-compiled program per layer (and shapes): the replaced layer's
        computation, and with one input image the layers before it for the M
        rows, are dead code that XLA drops. A model whose later layers cannot
        take M rows on one image is run on M copies of it (remembered per
        model and layer).
        """
        self._check_layers((layer,))
        x = self._device_inputs(inputs)
        values = jnp.asarray(activation)
        m = values.shape[0] if values.ndim else 0
        if m < 1 or x.shape[0] not in (1, m):
            raise argument_error(
                "inputs", f"1 image or one per activation row ({m})",
                shown(f"{x.shape[0]} images for an activation of shape {tuple(values.shape)}"))
        self._out_shape(x, (layer,))
        forward = self._forward
        entry = _cached((forward.key, "substituted", layer),
                        lambda entry: _substituted_program(forward, entry, layer))
        slow = (forward.key, layer)
        if x.shape[0] != m and slow not in _SUBSTITUTION_SLOW:
            try:
                logits = entry.program(forward.params, x, values)
                if logits.shape[0] == m:
                    return np.asarray(logits)
            except AttribError:
                raise
            except Exception:  # noqa: BLE001 - the model refused one image for M rows
                pass
            _SUBSTITUTION_SLOW.add(slow)
        rows = jnp.broadcast_to(x, (m, *x.shape[1:])) if x.shape[0] != m else x
        return np.asarray(entry.program(forward.params, rows, values))

    # -- helpers -----------------------------------------------------------------------------
    def _check_layers(self, layers: tuple[str, ...]) -> None:
        if self._forward.kind == "function":
            raise argument_error(
                "layer", "a named layer of a Flax module", layers[0],
                "An (apply_fn, params) model has no layer names; layer methods (gradcam, "
                "guided_gradcam) need a Flax module: pass (module, variables) or an nnx.Module.")
        for name in layers:
            if name not in self._forward.names:
                raise argument_error("layer", "a layer name of this jax model", name,
                                     did_you_mean(str(name), self._forward.names, every=True)
                                     or f"Layers near the output: {list(self._forward.names)[-5:]}")

    def _device_inputs(self, inputs: Any) -> Any:
        self.input_shape(inputs)
        if several(inputs):
            _check_finite(each(np.asarray, inputs))
            return each(jnp.asarray, inputs)
        if isinstance(inputs, np.ndarray):
            _check_finite(inputs)
        x = jnp.asarray(inputs)
        if not isinstance(inputs, np.ndarray) and not bool(jnp.all(jnp.isfinite(x))):
            _check_finite(np.asarray(inputs))
        return x

    def _out_shape(self, inputs: Any, layers: tuple[str, ...] = (), forward: Forward | None = None,
                   target: Any = None) -> tuple[Any, dict[str, Any]]:
        """Logit shape and tapped layer shapes for inputs like ``inputs`` (one ``eval_shape``, cached).

        With ``target`` (and its ``forward``): the output it reads, as
        ``jax.ShapeDtypeStruct`` leaves, checked by ``target.check``.
        """
        forward = self._forward if forward is None else forward
        key = _shape_key(forward, forward.params, inputs, layers)
        x = as_tuple(inputs)[0]  # the first input: the batch size, the messages
        with _LOCK:
            known = _SHAPES.get(key)
        if known is not None:
            return known[0], known[1]
        # one trace, outside the lock (another thread may do the same meanwhile); with
        # no layer it is the very jaxpr the gradient program evaluates, which reuses it
        fn = forward.fn
        try:
            if layers:
                program = None
                logits, acts = jax.eval_shape(lambda p, x: fn(p, x, None, layers),
                                              forward.params, inputs)
            else:
                program = trace(lambda p, x, e: fn(p, x, e, layers),
                                forward.params, _abstract(inputs), {})
                logits, acts = jax.tree_util.tree_unflatten(
                    program.out_tree, list(program.closed.out_avals))
        except AttribError:
            raise
        except jax.errors.UnexpectedTracerError as error:
            raise _lifted_layer_error(layers) from error
        except Exception as error:  # the model rejected these inputs
            if several(inputs):
                shapes = [tuple(a.shape) for a in inputs]
                raise argument_error(
                    "inputs", "inputs this model accepts, one per argument of its call",
                    shown(f"{len(shapes)} inputs of shapes {shapes}, on which the model failed "
                          f"with {type(error).__name__}: {str(error)[:300]}"),
                    "Pass a tuple (x1, x2, ...) for a model called as apply(params, x1, x2, ...).",
                ) from error
            raise argument_error(
                "inputs", "a batch this model accepts (NHWC layout for Flax)",
                shown(f"shape {tuple(x.shape)} {x.dtype}, on which the model failed with "
                      f"{type(error).__name__}: {str(error)[:300]}"),
                _layout_hint(tuple(x.shape)),
            ) from error
        missing = [name for name in layers if name not in acts]
        if missing:
            raise argument_error("layer", "a submodule that is called in the forward pass",
                                 missing[0], "It has variables but its __call__ never ran; "
                                 "tap a module that is called.")
        if target is not None:  # checked by the caller (also when the shapes are cached)
            with _LOCK:
                _SHAPES[key] = (logits, acts, program)
            return logits, acts
        shape = tuple(getattr(logits, "shape", ()))
        if len(shape) != 2:
            raise _NotLogits.of(argument_error(
                "inputs", "a batch (N, ...) on which the model returns logits (N, classes)",
                shown(f"shape {tuple(x.shape)}, on which the model returns shape {shape}"),
                "Inputs are NHWC for Flax; add a batch axis if it is missing."))
        if shape[0] != x.shape[0]:
            raise argument_error(
                "inputs", "a batch (N, H, W, C) in NHWC layout", shown(
                    f"shape {tuple(x.shape)}, which the model maps to logits of shape {shape}"),
                "Add a batch axis, e.g. x[None].")
        with _LOCK:
            _SHAPES[key] = (shape, acts, program)
            while len(_SHAPES) > 4 * _CACHE_SIZE:
                _SHAPES.popitem(last=False)
        return shape, acts

    def _entry(self, *config: Any) -> _Entry:
        forward = self._forward
        key = (forward.key, *config)
        if config[0] == "forward":
            return _cached(key, lambda entry: _forward_program(forward, entry))
        if config[0] == "attention":
            return _cached(key, lambda entry: _attention_program(forward, entry, *config[1:]))
        _, rule, layers, objective, want_input, want_layers = config
        return _cached(key, lambda entry: _gradient_program(
            forward, entry, rule, layers, objective, want_input, want_layers))


class _NotLogits(AttribValueError):
    """The model took the inputs but returned no (N, classes) logits (a target may still fit)."""

    @classmethod
    def of(cls, error: AttribError) -> _NotLogits:
        return cls(str(error))


def _shares(request: GradientRequest) -> bool:
    """Whether ``request`` may join others in one program (see :meth:`JaxModel.gradients_many`)."""
    rules = rule_set(request.rule)
    return (rules.rectifier_only and rules.nonlinearity == "gradient"
            and rules.transformer is None and request.target is None
            and not request.attention and not request.attention_gradients
            and not request.token_relevance and request.reference is None)


def _array_shape(inputs: Any) -> Any:
    """The shape of ``inputs`` after checking it is a non-empty floating array batch.

    Several inputs (a tuple): the shape of each, after checking they share the batch size.
    """
    if several(inputs):
        return check_batch(tuple(_array_shape(x) for x in inputs))
    if not (hasattr(inputs, "shape") and hasattr(inputs, "dtype")):
        raise argument_error("inputs", "a NumPy or JAX array of shape (N, H, W, C)",
                             shown(f"an object of type {type(inputs).__name__}"),
                             kind=AttribTypeError)
    shape = tuple(int(s) for s in inputs.shape)
    if not np.issubdtype(np.dtype(inputs.dtype), np.floating):
        raise argument_error("inputs", "a floating-point array",
                             shown(f"dtype {np.dtype(inputs.dtype)}"),
                             "Convert it, e.g. x.astype(np.float32).", kind=AttribTypeError)
    if len(shape) < 2 or shape[0] == 0:
        raise argument_error("inputs", "a non-empty batch (N, ...) in NHWC layout",
                             shown(f"shape {shape}"),
                             "Add a batch axis, e.g. x[None]." if len(shape) >= 1 else None)
    return shape


def _check_finite(array: Any) -> None:
    if several(array):
        for part in array:
            _check_finite(part)
        return
    if not np.all(np.isfinite(array)):
        raise argument_error("inputs", "finite values", shown(
            f"an array with {int((~np.isfinite(array)).sum())} NaN or infinite values"))


def _abstract(x: Any) -> Any:
    """``x`` as a shape and dtype only (arrays and tracers alike; each of several inputs)."""
    return each(lambda a: jax.ShapeDtypeStruct(tuple(a.shape), a.dtype), x)


def _shape_key(forward: Forward, params: Any, x: Any, layers: tuple[str, ...]) -> Any:
    """The key of :data:`_SHAPES`: the computation and the shapes and dtypes of its inputs.

    Works on arrays and on tracers alike (the gradient program looks its
    forward jaxpr up while being traced).
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    if several(x):
        return (forward.key, treedef, tuple((v.shape, v.dtype) for v in leaves),
                tuple((tuple(a.shape), a.dtype) for a in x), "several", layers)
    return (forward.key, treedef, tuple((v.shape, v.dtype) for v in leaves),
            tuple(x.shape), x.dtype, layers)


def _traced_forward(forward: Forward, params: Any, x: Any, layers: tuple[str, ...]) -> Any:
    """The forward :class:`Program` traced by the shape check for these inputs, if kept."""
    if layers:
        return None
    with _LOCK:
        known = _SHAPES.get(_shape_key(forward, params, x, layers))
    return None if known is None else known[2]


def _parameter_leaves(tree: Any, path: tuple[str, ...] = ()) -> list[tuple[str, str, Any]]:
    """``(layer path, parameter name, array)`` of every leaf of a nested dict of parameters."""
    if not hasattr(tree, "items"):
        return [("/".join(path[:-1]), path[-1] if path else "", tree)]
    out: list[tuple[str, str, Any]] = []
    for key, value in tree.items():
        out += _parameter_leaves(value, (*path, str(key)))
    return out


def _layout_hint(shape: tuple[int, ...]) -> str | None:
    """A hint for an image batch the model rejected: channels-first data, a missing batch axis."""
    if len(shape) == 4 and shape[1] in (1, 3, 4) and shape[3] not in (1, 3, 4):
        return ("This looks like channels-first (NCHW) data; Flax models take NHWC: pass "
                "np.transpose(x, (0, 2, 3, 1)).")
    if len(shape) == 3 and shape[2] in (1, 3, 4):
        return f"This looks like one image without the batch axis: pass x[None] (shape {(1, *shape)})."
    return None


def _selecting(forward: Forward, output: Any) -> Forward:
    """``forward`` returning the logits chosen by ``output`` from the model's output."""
    fn = forward.fn

    def selected(params: Any, x: Any, eps: Any, layers: tuple[str, ...] = (),
                 scales: Any = None) -> tuple[Any, dict[str, Any]]:
        value, acts = fn(params, x, eps, layers, scales=scales)
        return select_output(value, output, lambda v: hasattr(v, "shape")), acts

    return replace(forward, fn=selected, key=(forward.key, "output", _hashable(output)))


def _targeting(forward: Forward, output: Any, target: Any) -> Forward:
    """``forward`` returning the output ``target`` reads (``target.select``)."""
    fn = forward.fn

    def selected(params: Any, x: Any, eps: Any, layers: tuple[str, ...] = (),
                 scales: Any = None) -> tuple[Any, dict[str, Any]]:
        value, acts = fn(params, x, eps, layers, scales=scales)
        return target.select(value, output, lambda v: hasattr(v, "shape")), acts

    return replace(forward, fn=selected,
                   key=(forward.key, "output", _hashable(output), "target", target.key()))


def _target_values(target: Any, logits: Any, data: Any, objective: str) -> Any:
    """Per-sample scores (N,) of ``target`` on the model's output, in jnp (traced)."""
    values = logits
    if objective != "logit" and hasattr(logits, "shape"):
        axis = target.class_axis("NHWC", logits.ndim)
        values = (jax.nn.log_softmax if objective == "log_softmax" else jax.nn.softmax)(
            logits, axis=axis)
    floating = next(leaf for leaf in jax.tree_util.tree_leaves(logits)
                    if jnp.issubdtype(leaf.dtype, jnp.floating))
    cast = {name: a.astype(floating.dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
            for name, a in data.items()}
    return target.score(values, cast, jnp, "NHWC")


def _scaled_program(forward: Forward, entry: _Entry, layer: str) -> Any:
    def run(params: Any, x: Any, scale: Any) -> Any:
        entry.traces += 1
        return forward.fn(params, x, None, (layer,), scales={layer: scale})[0]

    return jax.jit(run)


#: (model key, layer) pairs whose later layers refused one image for M substituted rows
_SUBSTITUTION_SLOW: set[Any] = set()


def _substituted_program(forward: Forward, entry: _Entry, layer: str) -> Any:
    def run(params: Any, x: Any, values: Any) -> Any:
        entry.traces += 1

        def substitute(output: Any) -> Any:
            if tuple(output.shape[1:]) != tuple(values.shape[1:]):
                raise argument_error(
                    "activation", f"an array (M, {', '.join(map(str, output.shape[1:]))}) laid "
                    f"out as {layer!r}'s output", shown(f"shape {tuple(values.shape)}"))
            return values.astype(output.dtype)

        return forward.fn(params, x, None, (layer,), scales={layer: substitute})[0]

    return jax.jit(run)


def _lifted_layer_error(layers: tuple[str, ...]) -> AttribError:
    return argument_error(
        "layer", "a submodule outside Flax's lifted transforms", layers[0] if layers else None,
        "Its output lives inside nn.remat / nn.scan / nn.vmap and cannot be captured; tap the "
        "module that contains the transformed one, or a layer before or after it.")


def _forward_program(forward: Forward, entry: _Entry) -> Any:
    def run(params: Any, x: Any) -> Any:
        entry.traces += 1
        return forward.fn(params, x, None, ())[0]

    return jax.jit(run)


def _gradient_program(forward: Forward, entry: _Entry, rule: str, layers: tuple[str, ...],
                      objective: str, want_input: bool, want_layers: bool,
                      target: Any = None) -> Any:
    """The jitted ``(params, x, eps, targets or None, weights or None) -> dict`` of one request.

    ``eps`` holds zeros shaped like each tapped layer's output; ``weights``
    (N, classes), when given, replaces ``targets`` by the weighted score.
    With ``target`` (an :class:`attrib.targets.Target`), ``weights`` holds its
    data arrays and the ``targets`` output the per-sample scores.
    """

    body = _gradient_body(forward, rule, layers, objective, want_input, want_layers, target)

    def run(params: Any, x: Any, eps: Any, targets: Any, weights: Any) -> dict[str, Any]:
        entry.traces += 1
        return body(params, x, eps, targets, weights)

    return jax.jit(run)


def _many_program(forward: Forward, entry: _Entry,
                  configs: tuple[tuple[str, tuple[str, ...], str, bool, bool], ...]) -> Any:
    """The jitted ``(params, x, [eps per request], targets, weights) -> [dict per request]``.

    Each request's computation is traced as :func:`_gradient_program` traces
    it alone; in one program XLA computes their common forward pass once.
    """
    bodies = [_gradient_body(forward, *config) for config in configs]

    def run(params: Any, x: Any, eps: Any, targets: Any, weights: Any) -> list[dict[str, Any]]:
        entry.traces += 1
        return [body(params, x, e, targets, weights) for body, e in zip(bodies, eps)]

    return jax.jit(run)


def _gradient_body(forward: Forward, rule: str, layers: tuple[str, ...], objective: str,
                   want_input: bool, want_layers: bool, target: Any = None) -> Any:
    """The traceable ``(params, x, eps, targets, weights) -> dict`` of one request."""

    def run(params: Any, x: Any, eps: Any, targets: Any, weights: Any) -> dict[str, Any]:
        program = _traced_forward(forward, params, x, layers)  # from the shape check
        if program is None:
            program = trace(lambda p, x, e: forward.fn(p, x, e, layers), params, x, eps)
        n_params = len(jax.tree_util.tree_leaves(params))
        n_inputs = len(jax.tree_util.tree_leaves(x))  # several inputs: one leaf each
        marked = [False] * (n_params + n_inputs) + [True] * len(jax.tree_util.tree_leaves(eps))
        analysis = analyse(program.closed, marked)

        def score(rule_: str) -> Any:
            def fn(x: Any, eps: Any) -> tuple[Any, Any]:
                logits, acts = program.call(rule_, params, x, eps)
                if target is not None:
                    per = _target_values(target, logits, weights, objective)
                    return jnp.sum(per), (logits, per, acts)
                if weights is not None:
                    chosen = jnp.argmax(weights, axis=1)
                    return (jnp.sum(_weighted_values(logits, objective) * weights.astype(logits.dtype)),
                            (logits, chosen, acts))
                chosen = (jnp.argmax(jax.lax.stop_gradient(logits), axis=1)
                          if targets is None else targets)
                return jnp.sum(_scores(logits, chosen, objective)), (logits, chosen, acts)
            return fn

        out: dict[str, Any] = {"rectifiers": jnp.int32(analysis.rectifiers),
                               "downstream": jnp.int32(analysis.downstream)}
        layer_grads = want_layers and bool(layers)
        passes = 0
        if not want_input and not layer_grads:
            _, (logits, chosen, acts) = score("vanilla")(x, eps)
        elif not layer_grads:
            (gx, (logits, chosen, acts)) = jax.grad(score(rule), has_aux=True)(x, eps)
            out["input_gradient"], passes = gx, 1
        elif not want_input or rule == "vanilla" or analysis.downstream == 0:
            # a rule that touches no rectifier downstream of the layers leaves their gradient exact
            argnums = (0, 1) if want_input else 1
            grads, (logits, chosen, acts) = jax.grad(score(rule if want_input else "vanilla"),
                                                     argnums, has_aux=True)(x, eps)
            if want_input:
                out["input_gradient"], out["layer_gradients"] = grads
            else:
                out["layer_gradients"] = grads
            passes = 1
        else:
            # one forward, two backward passes: the true gradient at the layers, the rule's at x
            (_, (logits, chosen, acts)), true_vjp = _vjp_with_aux(score("vanilla"), x, eps, 1)
            (_, _), rule_vjp = _vjp_with_aux(score(rule), x, eps, 0)
            out["layer_gradients"] = true_vjp
            out["input_gradient"] = rule_vjp
            passes = 2
        out.update(logits=logits, targets=chosen, activations=acts, passes=jnp.int32(passes))
        return out

    return run


def _attention_program(forward: Forward, entry: _Entry, objective: str, want_grads: bool) -> Any:
    """The jitted ``(params, x, targets or None, weights or None) -> dict`` of attention capture.

    Returns logits, targets, every attention site's probabilities (N, heads,
    T, S) and, with ``want_grads``, the true gradient of the score at each.
    """

    def run(params: Any, x: Any, targets: Any, weights: Any) -> dict[str, Any]:
        entry.traces += 1
        program = trace(lambda p, x: forward.fn(p, x, None, ())[0], params, x)
        flat = jax.tree_util.tree_leaves((params, x))
        sites = find_sites(program.closed, [_abstract(v) for v in flat])
        eps = [jnp.zeros(site.shape, x.dtype) for site in sites]

        def score(eps: Any) -> tuple[Any, Any]:
            outs, _, values = evaluate_attention(program.closed, flat, eps)
            logits = jax.tree_util.tree_unflatten(program.out_tree, outs)
            if weights is not None:
                chosen = jnp.argmax(weights, axis=1)
                total = jnp.sum(_weighted_values(logits, objective) * weights.astype(logits.dtype))
            else:
                chosen = (jnp.argmax(jax.lax.stop_gradient(logits), axis=1)
                          if targets is None else targets)
                total = jnp.sum(_scores(logits, chosen, objective))
            return total, (logits, chosen, values)

        out: dict[str, Any] = {}
        if want_grads:
            grads, (logits, chosen, values) = jax.grad(score, has_aux=True)(eps)
            out["gradients"] = [standard_attention(g) for g in grads]
        else:
            _, (logits, chosen, values) = score(eps)
        out.update(logits=logits, targets=chosen,
                   attention=[standard_attention(v) for v in values])
        return out

    return jax.jit(run)


def select_sites(attention: tuple[str, ...] | str, names: list[str]) -> list[int]:
    """Indices of the sites ``attention`` asks for: every one, or those at or under each name."""
    if not names:
        raise argument_error(
            "attention", "a model whose forward pass runs attention",
            shown("a program with no softmax-weighted dot_general (flax dot_product_attention, "
                  "jax.nn.dot_product_attention)"),
            "Attention inside nn.scan / lax.scan bodies is not reached; unroll the blocks.")
    if attention == ALL:
        return list(range(len(names)))
    chosen: list[int] = []
    for name in attention:
        found = [i for i, site in enumerate(names)
                 if site == name or site.split("#")[0] == name or site.startswith(name + "/")]
        if not found:
            raise argument_error("attention", "names of attention layers of this jax model, or "
                                 "'all'", name, did_you_mean(str(name), names, every=True)
                                 or f"Attention layers: {names[:4]}")
        chosen += [i for i in found if i not in chosen]
    return sorted(chosen)


def prefix_tokens(params: Any) -> int | None:
    """Learned tokens before the patch grid: parameters (1, k, C) named ``cls``, ``*token(s)``."""
    total, found = 0, False
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        keys = [str(getattr(k, "key", getattr(k, "name", k))).lower() for k in path]
        name = next((k for k in reversed(keys) if k not in ("value", "params")), "")
        shape = tuple(getattr(leaf, "shape", ()))
        if (name in ("cls", "class_token", "cls_token") or name.endswith(("token", "tokens"))) \
                and "mask" not in name and len(shape) == 3 and shape[0] == 1:
            total, found = total + int(shape[1]), True
    return total if found else None


def _vjp_with_aux(fn: Any, x: Any, eps: Any, argnum: int) -> tuple[Any, Any]:
    """``(fn(x, eps), d fn[0] / d arg[argnum])`` through ``jax.vjp`` with auxiliary outputs."""
    (value, vjp, aux) = jax.vjp(fn, x, eps, has_aux=True)
    grads = vjp(jnp.ones_like(value))
    return (value, aux), grads[argnum]

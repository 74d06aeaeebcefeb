"""The conformance suite: checks a backend against the NumPy reference, case by case.

:func:`check_backend` runs every case and raises one :class:`AssertionError`
listing each failure; :class:`attrib.testing.BackendConformance` runs the same
cases as separate pytest tests.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from .._errors import AttribError, check_choice
from .._model import LAYOUTS, GradientRequest, Model
from ._expected import BUILTIN_METHODS, Expected, expected
from ._reference import (
    ReferenceModel,
    _from_layout,
    _to_layout,
    backward,
    deeplift_backward,
    forward,
    score_gradient,
)
from ._specs import BatchNorm, Conv, Dense, NetSpec, batchnorm_cnn, default_specs, split_inputs

__all__ = ["Conformance", "Case", "cases", "run_case", "check_backend", "OBJECTIVES_CHECKED"]

OBJECTIVES_CHECKED: tuple[str, ...] = ("logit", "log_softmax", "softmax")

#: the checks run on signal (Conv1d) and volume (Conv3d) specs, besides ``cam`` and the layer
#: methods (Grad-CAM, guided Grad-CAM) at each Grad-CAM layer: those whose code depends on the
#: number of spatial axes. The others check the same contract on every spec and run on the
#: image and vector specs; the gradient methods' input gradients are checked by ``capture``.
SPATIAL_KINDS: tuple[str, ...] = ("model", "capture", "multipass", "rule_sets")


@dataclass
class Conformance:
    """How to run the suite against one backend.

    Parameters
    ----------
    backend : str
        The registered backend's name (``backend=`` of :func:`attrib.explain`).
    build : callable(NetSpec) -> native model
        Builds the framework's own model from a spec, keeping the layer names.
    layout : str
        ``"NCHW"`` or ``"NHWC"``: the layout the backend's models take.
    methods : sequence of str, optional
        Methods the backend supports; all six built-ins by default.
    specs : sequence of NetSpec, optional
        Networks to check; :func:`attrib.testing.default_specs` by default.
    to_native : callable(ndarray) -> tensor, optional
        Converts a NumPy batch to the framework's tensor; when given, the suite
        also checks that native inputs work and are left unchanged.
    wrap_options : mapping, optional
        Keyword options for :func:`attrib.wrap` (e.g. the jax backend's).
    registry : attrib.Registry, optional
        Where the backend is registered; the default registry otherwise.
    rule_sets : bool
        Whether the backend implements rule sets beyond rectifiers
        (:mod:`attrib.rules`, LRP): checked against the NumPy reference when
        True; otherwise the suite checks that they raise :class:`attrib.AttribError`.
    deeplift : bool
        Whether the backend implements DeepLIFT's rule set (:data:`attrib.rules.DEEPLIFT`,
        multipliers against ``GradientRequest.reference``): checked against the
        NumPy reference when True; otherwise it must raise :class:`attrib.AttribError`.
    batchnorm : bool
        Whether the backend's models can hold BatchNorm layers (the builder
        builds :class:`attrib.testing.BatchNorm`): ``randomized(batchnorm=...)``
        is then checked on :func:`attrib.testing.batchnorm_cnn` against the
        NumPy reference; otherwise only that the option is checked and, with
        no BatchNorm, changes nothing.
    parameter_free_layers : bool
        Whether layers without weights (rectifiers, pooling) can be tapped.
        Flax linen backends see only modules that own variables: set it to
        ``False`` there, and the suite taps only convolutions and dense layers.
    rtol, atol : float
        Tolerances: ``|actual - expected| <= atol * max|expected| + rtol * |expected|``
        (float32 backends against the float64 reference).
    """

    backend: str
    build: Callable[[NetSpec], Any]
    layout: str = "NCHW"
    methods: Sequence[str] | None = None
    specs: Sequence[NetSpec] | None = None
    to_native: Callable[[np.ndarray], Any] | None = None
    wrap_options: Mapping[str, Any] = field(default_factory=dict)
    registry: Any = None
    parameter_free_layers: bool = True
    rule_sets: bool = False
    deeplift: bool = False
    batchnorm: bool = False
    rtol: float = 1e-4
    atol: float = 1e-5
    dtype: Any = np.float32
    _natives: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        check_choice("layout", self.layout, LAYOUTS)
        if self.methods is None:
            self.methods = BUILTIN_METHODS
        if self.specs is None:
            self.specs = default_specs()
        if self.registry is None:
            from .._registry import default_registry

            self.registry = default_registry()

    def native(self, spec: NetSpec) -> Any:
        """The backend's model of ``spec`` (built once)."""
        if spec.name not in self._natives:
            self._natives[spec.name] = self.build(spec)
        return self._natives[spec.name]

    def model(self, spec: NetSpec) -> Model:
        """The backend's :class:`attrib.Model` of ``spec``."""
        return self.registry.wrap(self.native(spec), backend=self.backend, **dict(self.wrap_options))

    def tapped(self, spec: NetSpec) -> tuple[str, ...]:
        """The spec's layers this backend must expose and capture."""
        return spec.layer_names if self.parameter_free_layers else spec.parametrised_layers()

    def gradcam_layers(self, spec: NetSpec) -> tuple[str, ...]:
        return tuple(name for name in spec.gradcam_layers if name in self.tapped(spec))

    def inputs(self, spec: NetSpec) -> np.ndarray:
        return spec.example_inputs(self.layout, self.dtype)


@dataclass(frozen=True)
class Case:
    """One check: ``kind`` on ``spec`` (and ``method`` at ``layer``)."""

    kind: str
    spec: NetSpec
    method: str | None = None
    layer: str | None = None

    @property
    def id(self) -> str:
        parts = [self.spec.name, self.kind] + [p for p in (self.method, self.layer) if p]
        return "-".join(parts)


def cases(conf: Conformance) -> list[Case]:
    """Every check the suite runs for ``conf``."""
    out: list[Case] = []
    layer_methods = {name for name in conf.methods or () if _needs_layer(conf, name)}
    for spec in conf.specs or ():
        if spec.spatial_dims in (0, 2):
            out += [Case("model", spec), Case("capture", spec), Case("errors", spec),
                    Case("explain", spec), Case("randomized", spec)]
            if conf.to_native is not None:
                out.append(Case("native_inputs", spec))
            if conf.batchnorm and spec.spatial_dims == 2:
                out.append(Case("randomized_batchnorm", spec))
            out += [Case("target_weights", spec), Case("targets", spec), Case("multipass", spec),
                    Case("rule_sets", spec), Case("attention", spec),
                    Case("several_inputs", spec), Case("many", spec)]
        else:  # signals and volumes: what depends on the number of spatial axes
            out += [Case(kind, spec) for kind in SPATIAL_KINDS]
        if spec.spatial_dims and conf.gradcam_layers(spec):
            out.append(Case("cam", spec))
        for method in conf.methods or ():
            if method not in layer_methods:
                if _every_option(spec):  # signals, volumes: their gradients are in "capture"
                    out.append(Case("method", spec, method))
            elif spec.spatial_dims:
                out += [Case("method", spec, method, layer) for layer in conf.gradcam_layers(spec)]
    return out


def _needs_layer(conf: Conformance, method: str) -> bool:
    return bool(conf.registry.method(method).needs_layer)


def run_case(conf: Conformance, case: Case) -> None:
    """Run one check; raises :class:`AssertionError` saying what differs."""
    check = _CHECKS[case.kind]
    check(conf, case)


def check_backend(
    backend: str,
    build: Callable[[NetSpec], Any],
    *,
    layout: str = "NCHW",
    methods: Sequence[str] | None = None,
    specs: Sequence[NetSpec] | None = None,
    to_native: Callable[[np.ndarray], Any] | None = None,
    wrap_options: Mapping[str, Any] | None = None,
    registry: Any = None,
    parameter_free_layers: bool = True,
    rule_sets: bool = False,
    deeplift: bool = False,
    batchnorm: bool = False,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> int:
    """Run the whole conformance suite against ``backend``.

    Parameters are those of :class:`Conformance`. Returns the number of
    cases checked; raises one :class:`AssertionError` that lists every case
    that failed and why (which array, largest difference, where).

    Example (``build`` turns a NumPy network spec into the backend's model)::

        import attrib.testing
        attrib.testing.check_backend("numpy", build_numpy_model, layout="NCHW")
    """
    conf = Conformance(backend, build, layout=layout, methods=methods, specs=specs,
                       to_native=to_native, wrap_options=dict(wrap_options or {}),
                       registry=registry, parameter_free_layers=parameter_free_layers,
                       rule_sets=rule_sets, deeplift=deeplift, batchnorm=batchnorm, rtol=rtol,
                       atol=atol)
    failures = []
    all_cases = cases(conf)
    for case in all_cases:
        try:
            run_case(conf, case)
        except AssertionError as error:
            failures.append(f"[{case.id}] {error}")
        except Exception as error:  # a crash is a failure of that case, not of the run
            tb = traceback.format_exception_only(type(error), error)[-1].strip()
            failures.append(f"[{case.id}] raised {tb}")
    if failures:
        raise AssertionError(
            f"backend {backend!r} failed {len(failures)} of {len(all_cases)} conformance "
            "cases:\n" + "\n".join(failures)
        )
    return len(all_cases)


# -- comparisons -------------------------------------------------------------------
def assert_close(actual: Any, expected_value: Any, what: str, conf: Conformance) -> None:
    """``actual`` equals ``expected_value`` within the suite's tolerances, else a clear diff."""
    if actual is None:
        raise AssertionError(f"{what}: expected an array of shape "
                             f"{np.shape(expected_value)}, got None")
    actual = np.asarray(actual)
    expected_value = np.asarray(expected_value)
    if actual.shape != expected_value.shape:
        raise AssertionError(f"{what}: expected shape {expected_value.shape}, got {actual.shape}")
    if not np.all(np.isfinite(actual)):
        raise AssertionError(f"{what}: contains {int((~np.isfinite(actual)).sum())} non-finite values")
    scale = float(np.abs(expected_value).max()) if expected_value.size else 0.0
    diff = np.abs(actual.astype(np.float64) - expected_value)
    allowed = conf.atol * max(scale, 1e-12) + conf.rtol * np.abs(expected_value)
    bad = diff > allowed
    if bad.any():
        worst = np.unravel_index(int(np.argmax(diff - allowed)), diff.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {diff.size} values differ; largest difference "
            f"{diff.max():.3g} (max |expected| {scale:.3g}); at index {tuple(map(int, worst))} "
            f"expected {expected_value[worst]!r}, got {actual[worst]!r}"
        )


def _every_option(spec: NetSpec) -> bool:
    """Whether every target form, objective and rule set is checked on ``spec``.

    Images and vectors: yes. Signals and volumes: one objective and the rules whose
    code works on the spatial axes, since target forms and objectives act on the
    logits alone and are checked on the image spec (keeps the suite fast).
    """
    return spec.spatial_dims in (0, 2)


def _laid(array: np.ndarray, conf: Conformance, spec: NetSpec) -> np.ndarray:
    """A channels-first array of ``spec``'s input rank in the backend's layout (others unchanged)."""
    return _to_layout(array, conf.layout, spec.inputs.ndim)


def _unlaid(array: np.ndarray, conf: Conformance, spec: NetSpec) -> np.ndarray:
    """The inverse of :func:`_laid`."""
    return _from_layout(array, conf.layout, spec.inputs.ndim)


def _assert_equal(actual: Any, expected_value: Any, what: str) -> None:
    if not np.array_equal(np.asarray(actual), np.asarray(expected_value)):
        raise AssertionError(f"{what}: expected {np.asarray(expected_value).tolist()}, "
                             f"got {np.asarray(actual).tolist()}")


def _targets(spec: NetSpec) -> list[Any]:
    n, classes = len(spec.inputs), spec.classes
    return [None, classes - 1, [(i * 2 + 1) % classes for i in range(n)]]


# -- the checks ----------------------------------------------------------------------
def _check_model(conf: Conformance, case: Case) -> None:
    spec = case.spec
    native = conf.native(spec)
    model = conf.model(spec)
    if not isinstance(model, Model):
        raise AssertionError(f"wrap: expected an attrib.Model, got {type(model).__name__}")
    if model.backend != conf.backend:
        raise AssertionError(f"Model.backend: expected {conf.backend!r}, got {model.backend!r}")
    if model.layout != conf.layout:
        raise AssertionError(f"Model.layout: expected {conf.layout!r}, got {model.layout!r}")
    detected = conf.registry.detect(native).name
    if detected != conf.backend:
        raise AssertionError(f"detection: the model was claimed by {detected!r}, "
                             f"not {conf.backend!r}")
    names = list(model.layer_names())
    missing = [name for name in conf.tapped(spec) if name not in names]
    if missing:
        raise AssertionError(f"layer_names(): missing {missing} of the spec's layers; got {names}")
    x = conf.inputs(spec)
    shape = model.input_shape(x)
    if tuple(shape) != x.shape:
        raise AssertionError(f"input_shape(): expected {x.shape}, got {tuple(shape)}")
    assert_close(model.to_numpy(x), x, "to_numpy(inputs)", conf)
    logits = model.forward(x)
    assert_close(logits, forward(spec, spec.inputs).logits, "forward(inputs) logits", conf)


def _check_capture(conf: Conformance, case: Case) -> None:
    """Every layer's activation and true gradient, with each rule on the input gradient."""
    spec = case.spec
    model = conf.model(spec)
    x = conf.inputs(spec)
    trace = forward(spec, spec.inputs)
    # every rule with the default objective, every objective with the guided rule
    combos = [("logit", rule) for rule in ("vanilla", "guided", "deconvnet")]
    if _every_option(spec):
        combos += [(objective, "guided") for objective in OBJECTIVES_CHECKED[1:]]
    for objective, rule in combos:
        targets = np.array(_targets(spec)[2], dtype=np.int64)
        seed = score_gradient(trace.logits, targets, objective)
        grad, _ = backward(spec, trace, seed, rule)
        _, true_layer_grads = backward(spec, trace, seed, "vanilla")
        result = model.gradients(GradientRequest(
            inputs=x, targets=targets, objective=objective, rule=rule,
            input_gradient=True, layers=conf.tapped(spec), layer_gradients=True,
        ))
        what = f"gradients(objective={objective!r}, rule={rule!r})"
        assert_close(result.logits, trace.logits, f"{what}.logits", conf)
        _assert_equal(result.targets, targets, f"{what}.targets")
        assert_close(result.input_gradient, _laid(grad, conf, spec),
                     f"{what}.input_gradient", conf)
        for name in conf.tapped(spec):
            if name not in result.activations:
                raise AssertionError(f"{what}.activations: no entry for layer {name!r}")
            if name not in result.layer_gradients:
                raise AssertionError(f"{what}.layer_gradients: no entry for layer {name!r}")
            assert_close(result.activations[name],
                         _laid(trace.activations[name], conf, spec),
                         f"{what}.activations[{name!r}]", conf)
            assert_close(result.layer_gradients[name],
                         _laid(true_layer_grads[name], conf, spec),
                         f"{what}.layer_gradients[{name!r}] (always the true gradient)", conf)
    # Grad-CAM's request: no input gradient, layer only; target None is the arg-max
    layer = conf.tapped(spec)[0]
    result = model.gradients(GradientRequest(inputs=x, input_gradient=False, layers=(layer,),
                                             layer_gradients=True))
    _assert_equal(result.targets, np.argmax(trace.logits, axis=1), "gradients(targets=None).targets")
    _, true_layer_grads = backward(spec, trace, score_gradient(trace.logits, result.targets,
                                                               "logit"), "vanilla")
    assert_close(result.layer_gradients.get(layer), _laid(true_layer_grads[layer], conf, spec),
                 f"gradients(input_gradient=False).layer_gradients[{layer!r}]", conf)


def _check_many(conf: Conformance, case: Case) -> None:
    """``Model.gradients_many``: each result equals ``gradients`` of its request, bit for bit.

    The requests of one ``attrib.explain(method=[...])`` call (one batch, the
    three rectifier rules, layers merged or alone), plus one on another batch.
    """
    spec = case.spec
    model = conf.model(spec)
    x = conf.inputs(spec)
    layers = conf.tapped(spec)
    other = np.ascontiguousarray(x[::-1])
    targets = np.array(_targets(spec)[2], dtype=np.int64)
    requests = [
        GradientRequest(inputs=x, targets=targets, rule="vanilla", layers=layers),
        GradientRequest(inputs=x, targets=targets, rule="guided", layers=layers[-1:]),
        GradientRequest(inputs=x, targets=targets, rule="deconvnet"),
        GradientRequest(inputs=x, targets=targets, input_gradient=False, layers=layers[:1]),
        GradientRequest(inputs=x, targets=targets, rule="guided", layers=layers[:1],
                        layer_gradients=False),
        GradientRequest(inputs=other, rule="guided", layers=layers[:1]),  # arg-max targets
    ]
    results = model.gradients_many(requests)
    if len(results) != len(requests):
        raise AssertionError(f"gradients_many: {len(results)} results for {len(requests)} "
                             "requests")
    forwards = [int(r.stats.get("forward_passes", 1)) for r in results]
    if not forwards[0] == 1 or any(f not in (0, 1) for f in forwards):
        raise AssertionError(f"gradients_many: stats['forward_passes'] {forwards}: expected 1 "
                             "on the first result, 0 or 1 on the others")
    for k, (request, result) in enumerate(zip(requests, results)):
        alone = model.gradients(request)
        what = f"gradients_many(...)[{k}]"
        for name in ("inputs", "logits", "targets", "input_gradient"):
            a, b = getattr(result, name), getattr(alone, name)
            if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
                raise AssertionError(f"{what}.{name}: not equal, bit for bit, to "
                                     "gradients(request)")
        for name in ("activations", "layer_gradients"):
            a, b = getattr(result, name), getattr(alone, name)
            if set(a) != set(b) or any(not np.array_equal(a[k_], b[k_]) for k_ in b):
                raise AssertionError(f"{what}.{name}: not equal, bit for bit, to "
                                     f"gradients(request) (layers {sorted(a)} vs {sorted(b)})")


def _compare_explanation(explanation: Any, want: Expected, what: str, conf: Conformance,
                         method: str, layer: str | None) -> None:
    if explanation.method != method:
        raise AssertionError(f"{what}.method: expected {method!r}, got {explanation.method!r}")
    if explanation.backend != conf.backend:
        raise AssertionError(f"{what}.backend: expected {conf.backend!r}, got {explanation.backend!r}")
    if explanation.layout != conf.layout:
        raise AssertionError(f"{what}.layout: expected {conf.layout!r}, got {explanation.layout!r}")
    _assert_equal(explanation.targets, want.targets, f"{what}.targets")
    assert_close(explanation.logits, want.logits, f"{what}.logits", conf)
    assert_close(explanation.attribution, want.attribution, f"{what}.attribution", conf)
    if want.layer_attribution is not None:
        assert_close(explanation.layer_attribution, want.layer_attribution,
                     f"{what}.layer_attribution", conf)
    for name, part in want.parts.items():
        assert_close(explanation.parts.get(name), part, f"{what}.parts[{name!r}]", conf)


def _check_method(conf: Conformance, case: Case) -> None:
    spec, method, layer = case.spec, case.method, case.layer
    assert method is not None
    model = conf.model(spec)
    cls = conf.registry.method(method)
    x = conf.inputs(spec)
    before = x.copy()
    # every target form with the default objective, every objective with a list target
    targets = _targets(spec)
    combos = [("logit", t) for t in targets] + [(o, targets[2]) for o in OBJECTIVES_CHECKED[1:]]
    if not _every_option(spec):
        combos = [("log_softmax", targets[2])]
    for objective, target in combos:
        kwargs: dict[str, Any] = {"objective": objective, "registry": conf.registry}
        if layer is not None:
            kwargs["layer"] = layer
        attributor = cls(model, **kwargs)
        what = f"{method}(objective={objective!r}, target={target!r}" + (
            f", layer={layer!r})" if layer else ")")
        explanation = attributor.attribute(x, target)
        if not np.array_equal(x, before):
            raise AssertionError(f"{what}: the inputs were modified")
        want = expected(spec, method, target=target, objective=objective, layer=layer,
                        layout=conf.layout, registry=conf.registry)
        _compare_explanation(explanation, want, what, conf, method, layer)


def _check_explain(conf: Conformance, case: Case) -> None:
    """The one-call API on the native model, by backend name and by detection."""
    spec = case.spec
    native = conf.native(spec)
    x = conf.inputs(spec)
    method = next(iter(conf.methods or ()), "saliency")
    layer = conf.gradcam_layers(spec)[0] if _needs_layer(conf, method) and \
        conf.gradcam_layers(spec) else None
    if layer is None and _needs_layer(conf, method):
        return
    want = expected(spec, method, layout=conf.layout, registry=conf.registry, layer=layer)
    from .._registry import default_registry

    for backend in (conf.backend, None):
        what = f"explain({method!r}, backend={backend!r})"
        if conf.registry is default_registry() and not conf.wrap_options:
            from .._api import explain

            explanation = explain(native, x, method=method, backend=backend, layer=layer)
        else:
            model = conf.registry.wrap(native, backend=backend, **dict(conf.wrap_options))
            kwargs: dict[str, Any] = {"registry": conf.registry}
            if layer is not None:
                kwargs["layer"] = layer
            explanation = conf.registry.method(method)(model, **kwargs).attribute(x)
        _compare_explanation(explanation, want, what, conf, method, layer)


def _check_native_inputs(conf: Conformance, case: Case) -> None:
    spec = case.spec
    assert conf.to_native is not None
    model = conf.model(spec)
    x = conf.inputs(spec)
    tensor = conf.to_native(x.copy())
    assert_close(model.to_numpy(tensor), x, "to_numpy(native inputs)", conf)
    methods = [m for m in conf.methods or () if not _needs_layer(conf, m)]
    for method in methods[:2]:
        explanation = conf.registry.method(method)(model, registry=conf.registry).attribute(tensor)
        want = expected(spec, method, layout=conf.layout, registry=conf.registry)
        _compare_explanation(explanation, want, f"{method}(native inputs)", conf, method, None)
        assert_close(model.to_numpy(tensor), x, f"{method}: native inputs after the call", conf)


def _expect_error(what: str, call: Callable[[], Any]) -> None:
    try:
        call()
    except AttribError:
        return
    except Exception as error:
        raise AssertionError(f"{what}: expected an attrib.AttribError, got "
                             f"{type(error).__name__}: {error}") from None
    raise AssertionError(f"{what}: expected an attrib.AttribError, nothing was raised")


def _check_errors(conf: Conformance, case: Case) -> None:
    spec = case.spec
    model = conf.model(spec)
    x = conf.inputs(spec)
    before = x.copy()
    n = len(x)
    saliency = conf.registry.method("saliency")(model, registry=conf.registry)
    _expect_error("target out of range", lambda: saliency.attribute(x, spec.classes))
    _expect_error("target -1", lambda: saliency.attribute(x, -1))
    _expect_error("target of the wrong length", lambda: saliency.attribute(x, [0] * (n + 1)))
    _expect_error("target 'cat'", lambda: saliency.attribute(x, "cat"))
    _expect_error("gradients() with a target out of range", lambda: model.gradients(
        GradientRequest(inputs=x, targets=np.full((n,), spec.classes, dtype=np.int64))))
    _expect_error("gradients() with an unknown layer", lambda: model.gradients(
        GradientRequest(inputs=x, layers=("no_such_layer",))))
    _expect_error("integer inputs", lambda: model.input_shape(x.astype(np.int64)))
    _expect_error("explaining inputs without a batch axis", lambda: saliency.attribute(x[0]))
    _expect_error("inputs that are a string", lambda: model.input_shape("image.png"))
    _expect_error("explaining integer inputs", lambda: saliency.attribute(x.astype(np.int64)))
    if conf.gradcam_layers(spec) and "gradcam" in (conf.methods or ()):
        gradcam = conf.registry.method("gradcam")
        _expect_error("gradcam at an unknown layer",
                      lambda: gradcam(model, layer="no_such_layer", registry=conf.registry))
    if not np.array_equal(x, before):
        raise AssertionError("the inputs were modified by a call that raised")
    # the backend still works after all those errors
    assert_close(model.forward(x), forward(spec, spec.inputs).logits,
                 "forward(inputs) after errors", conf)


def _weights(spec: NetSpec) -> np.ndarray:
    """Deterministic target weights (N, classes) with positive and negative entries."""
    rng = np.random.default_rng(5)
    return np.round(rng.normal(size=(len(spec.inputs), spec.classes)), 2)


def _check_target_weights(conf: Conformance, case: Case) -> None:
    """``GradientRequest.target_weights``: the score ``sum_k w[n, k] objective(logits)[n, k]``."""
    from .._targets import weighted_score_gradient

    spec = case.spec
    model = conf.model(spec)
    x = conf.inputs(spec)
    trace = forward(spec, spec.inputs)
    weights = _weights(spec)
    combos = [("logit", rule) for rule in ("vanilla", "guided")] + [
        (objective, "vanilla") for objective in OBJECTIVES_CHECKED[1:]]
    for objective, rule in combos:
        seed = weighted_score_gradient(trace.logits, weights, objective)
        grad, _ = backward(spec, trace, seed, rule)
        _, true_layer_grads = backward(spec, trace, seed, "vanilla")
        result = model.gradients(GradientRequest(
            inputs=x, objective=objective, rule=rule, input_gradient=True,
            layers=conf.tapped(spec), layer_gradients=True, target_weights=weights))
        what = f"gradients(target_weights=..., objective={objective!r}, rule={rule!r})"
        _assert_equal(result.targets, np.argmax(weights, axis=1),
                      f"{what}.targets (the class of largest weight)")
        assert_close(result.input_gradient, _laid(grad, conf, spec),
                     f"{what}.input_gradient", conf)
        for name in conf.tapped(spec):
            assert_close(result.layer_gradients.get(name),
                         _laid(true_layer_grads[name], conf, spec),
                         f"{what}.layer_gradients[{name!r}]", conf)
    # one-hot weights are the class target, exactly
    classes = np.array(_targets(spec)[2], dtype=np.int64)
    one_hot = np.eye(spec.classes)[classes]
    by_class = model.gradients(GradientRequest(inputs=x, targets=classes))
    by_weights = model.gradients(GradientRequest(inputs=x, target_weights=one_hot))
    _assert_equal(by_weights.input_gradient, by_class.input_gradient,
                  "gradients(one-hot target_weights).input_gradient == gradients(targets)")
    # through the API: a (classes,) array and a {class: weight} mapping
    saliency = conf.registry.method("saliency")(model, registry=conf.registry)
    for target in (weights[0], {0: 1.0, spec.classes - 1: -1.0}):
        explanation = saliency.attribute(x, target)
        want = expected(spec, "saliency", target=target, layout=conf.layout,
                        registry=conf.registry)
        _compare_explanation(explanation, want, f"saliency(target={target!r})", conf,
                             "saliency", None)
        if explanation.target_weights is None or explanation.target_weights.shape != (
                len(x), spec.classes):
            raise AssertionError("Explanation.target_weights: expected the (N, classes) weights")
    n = len(x)
    _expect_error("target_weights of the wrong width", lambda: model.gradients(GradientRequest(
        inputs=x, target_weights=np.ones((n, spec.classes + 1)))))
    _expect_error("target weights with NaN", lambda: saliency.attribute(
        x, np.full(spec.classes, np.nan)))
    _expect_error("a weight for a class out of range", lambda: saliency.attribute(
        x, {spec.classes: 1.0}))


def _dense_spec(spec: NetSpec) -> NetSpec:
    """``spec`` cut after its last 4-D layer: a fully convolutional net, output (N, C, h, w)."""
    trace = forward(spec, spec.inputs)
    last = max(i for i, layer in enumerate(spec.layers)
               if trace.activations[layer.name].ndim == 4)
    layers = spec.layers[: last + 1]
    channels = trace.activations[layers[-1].name].shape[1]
    return NetSpec(f"{spec.name}-dense", layers, spec.inputs, classes=channels,
                   gradcam_layers=tuple(n for n in spec.gradcam_layers
                                        if n in {layer.name for layer in layers}))


def _check_targets(conf: Conformance, case: Case) -> None:
    """``GradientRequest.target`` (:mod:`attrib.targets`): each score against its NumPy reference.

    Image specs are cut to a fully convolutional net (:class:`Mask`,
    :class:`Weights` of the output's shape); vector specs check
    :class:`Weights` and :class:`Cosine`. Scores, input gradients under a
    rule and true layer gradients are compared, and a bad target raises.
    """
    from ..targets import Cosine, Mask, Weights, reference_scores

    spec = _dense_spec(case.spec) if case.spec.is_image else case.spec
    model = conf.model(spec)
    x = conf.inputs(spec)
    trace = forward(spec, spec.inputs)
    out = _laid(trace.logits, conf, spec)  # the output as the backend returns it
    n = len(x)
    rng = np.random.default_rng(7)
    if spec.is_image:
        spatial = trace.logits.shape[2:]
        mask = np.zeros(spatial)
        mask[: spatial[0] // 2 + 1, 1:] = 1.0
        per_sample = rng.random((n, *spatial)) > 0.4
        per_sample[:, 0, 0] = True
        categories = list(range(n))
        targets: list[tuple[Any, str]] = [
            (Mask(categories, mask), "log_softmax"), (Mask(1, per_sample, reduce="mean"), "logit"),
            (Weights(np.round(rng.normal(size=out.shape[1:]), 2)), "logit")]
    else:
        targets = [(Weights(np.round(rng.normal(size=(n, spec.classes)), 2)), "log_softmax"),
                   (Cosine(np.round(rng.normal(size=spec.classes), 2)), "logit")]
    layers = conf.tapped(spec)
    for target, objective in targets:
        for rule in ("vanilla", "guided"):
            scores, seed = reference_scores(target, out, objective, conf.layout)
            seed = _unlaid(seed, conf, spec)
            grad, _ = backward(spec, trace, seed, rule)
            _, true_layer_grads = backward(spec, trace, seed, "vanilla")
            result = model.gradients(GradientRequest(
                inputs=x, objective=objective, rule=rule, input_gradient=True,
                layers=layers, layer_gradients=True, target=target))
            what = f"gradients(target={target!r}, objective={objective!r}, rule={rule!r})"
            assert_close(result.scores, scores, f"{what}.scores", conf)
            _assert_equal(result.targets, target.labels(n), f"{what}.targets")
            assert_close(result.input_gradient, _laid(grad, conf, spec),
                         f"{what}.input_gradient", conf)
            for name in layers:
                assert_close(result.layer_gradients.get(name),
                             _laid(true_layer_grads[name], conf, spec),
                             f"{what}.layer_gradients[{name!r}]", conf)
    # through a method, and bad targets
    saliency = conf.registry.method("saliency")(model, registry=conf.registry)
    target = targets[0][0]
    _, seed = reference_scores(target, out, "logit", conf.layout)
    grad, _ = backward(spec, trace, _unlaid(seed, conf, spec), "vanilla")
    assert_close(saliency.attribute(x, target).attribution, _laid(grad, conf, spec),
                 f"saliency(target={target!r})", conf)
    if spec.is_image:
        _expect_error("Mask with a mask of the wrong shape", lambda: saliency.attribute(
            x, Mask(0, np.ones((spatial[0] + 1, spatial[1])))))
        _expect_error("Mask with a category out of range", lambda: saliency.attribute(
            x, Mask(spec.classes)))
    else:
        _expect_error("Mask on (N, classes)", lambda: saliency.attribute(x, Mask(0)))
        _expect_error("Cosine with a reference of the wrong length", lambda: saliency.attribute(
            x, Cosine(np.ones(spec.classes + 1))))
    _expect_error("Weights of the wrong shape", lambda: saliency.attribute(
        x, Weights(np.ones((n + 1, 7)))))


def _check_multipass(conf: Conformance, case: Case) -> None:
    """Integrated gradients, SmoothGrad and occlusion, chunked, against the NumPy reference.

    The same core code runs on :class:`ReferenceModel` (exact float64 passes); the
    backend must match it on batches of interpolated, noisy and occluded images in
    chunks smaller than the work (so the last chunk is partial, or padded).
    """
    from ._reference import ReferenceModel

    spec = case.spec
    registry = conf.registry
    available = registry.methods()
    runs: list[tuple[str, dict[str, Any]]] = [
        ("integrated_gradients", {"steps": 3, "batch_size": 4}),
        ("smoothgrad", {"n_samples": 2, "noise": 0.1, "seed": 3, "batch_size": 4}),
    ]
    if spec.spatial_dims:  # windows of 3 along every spatial axis
        runs.append(("occlusion", {"window": 3, "stride": 2, "batch_size": 5}))
    model = conf.model(spec)
    reference = ReferenceModel(spec, layout=conf.layout)
    x = conf.inputs(spec)
    targets: list[Any] = [None, _weights(spec)]
    for method, options in runs:
        if method not in available:
            continue
        cls = available[method]
        for target in targets:
            what = f"{method}({options}, target={'weights' if target is not None else None})"
            ours = cls(model, registry=registry, **options).attribute(x, target)
            want = cls(reference, registry=registry, **options).attribute(x, target)
            _assert_equal(ours.targets, want.targets, f"{what}.targets")
            assert_close(ours.attribution, want.attribution, f"{what}.attribution", conf)


#: the CAM family (issue 8), checked once per image spec at its first Grad-CAM layer
CAM_METHODS: tuple[str, ...] = ("gradcam_pp", "xgradcam", "layercam", "hirescam", "scorecam",
                                "eigencam", "ablationcam")


def _check_cam(conf: Conformance, case: Case) -> None:
    """The CAM family's needs: capture-only requests, chunked/scaled/substituted forwards, probe."""
    spec = case.spec
    model = conf.model(spec)
    x = conf.inputs(spec)
    trace = forward(spec, spec.inputs)
    tapped = conf.tapped(spec)
    # 1. a capture-only request: activations, no gradient at all
    result = model.gradients(GradientRequest(inputs=x, input_gradient=False, layers=tapped,
                                             layer_gradients=False))
    what = "gradients(input_gradient=False, layer_gradients=False)"
    assert_close(result.logits, trace.logits, f"{what}.logits", conf)
    if result.input_gradient is not None:
        raise AssertionError(f"{what}.input_gradient: expected None (nothing asked)")
    for name in tapped:
        assert_close(result.activations.get(name), _laid(trace.activations[name], conf, spec),
                     f"{what}.activations[{name!r}]", conf)
    if any(g is not None for g in result.layer_gradients.values()) and result.layer_gradients:
        raise AssertionError(f"{what}.layer_gradients: expected none, got "
                             f"{sorted(result.layer_gradients)}")
    # 2. forward on chunks of the batch, as Score-CAM calls it
    chunked = np.concatenate([model.forward(x[:1]), model.forward(x[1:])])
    assert_close(chunked, trace.logits, "forward() on chunks of 1 and N - 1 samples", conf)
    # 3. forward_scaled: one channel zeroed per sample, and a random mask (if implemented)
    layer = conf.gradcam_layers(spec)[0]
    scaled_here = type(model).forward_scaled is not Model.forward_scaled
    activation = trace.activations[layer]                      # NCHW
    n, c = activation.shape[:2]
    rng = np.random.default_rng(0)
    for label, masks in (("zero channel", 1.0 - np.eye(c)[np.arange(n) % c]),
                         ("random mask", rng.uniform(0.0, 2.0, size=(n, c)))):
        scale = masks.reshape((n, c) + (1,) * spec.spatial_dims)
        if not scaled_here:
            laid_out = _laid(scale, conf, spec)
            _expect_error("forward_scaled() of a backend without it",
                          lambda: model.forward_scaled(x, layer, laid_out))  # noqa: B023
            break
        logits = model.forward_scaled(x, layer, _laid(scale, conf, spec).astype(x.dtype))
        assert_close(logits, forward(spec, spec.inputs, {layer: scale}).logits,
                     f"forward_scaled({layer!r}, {label})", conf)
    assert_close(model.forward(x), trace.logits, "forward() after forward_scaled()", conf)
    # 3b. forward_substituted: the layer continued from given activations (if implemented), for
    # M rows of M images and for M rows of one image (Ablation-CAM's copies)
    if type(model).forward_substituted is not Model.forward_substituted:
        rows = activation * rng.uniform(0.0, 2.0, size=(n, c) + (1,) * spec.spatial_dims)
        substitutes = _laid(rows, conf, spec).astype(x.dtype)
        assert_close(model.forward_substituted(x, layer, substitutes),
                     forward(spec, spec.inputs, substitutes={layer: rows}).logits,
                     f"forward_substituted({layer!r}, N images)", conf)
        copies = np.repeat(activation[:1], c, axis=0)
        copies[np.arange(c), np.arange(c)] = -1.5  # one channel of image 0 set per row
        assert_close(model.forward_substituted(x[:1], layer,
                                               _laid(copies, conf, spec).astype(x.dtype)),
                     forward(spec, spec.inputs[:1], substitutes={layer: copies}).logits,
                     f"forward_substituted({layer!r}, one image for {c} rows)", conf)
        assert_close(model.forward(x), trace.logits, "forward() after forward_substituted()", conf)
    else:
        _expect_error("forward_substituted() of a backend without it",
                      lambda: model.forward_substituted(x, layer, _laid(activation, conf, spec)))
    # 4. the probe: names the model exposes, with the layers' output shapes
    infos = model.probe_layers(x)
    names = set(model.layer_names())
    for info in infos:
        if info.name not in names:
            raise AssertionError(f"probe_layers(): {info.name!r} is not in layer_names()")
        if info.name in trace.activations:
            want = _laid(trace.activations[info.name], conf, spec).shape
            if tuple(info.shape) != want:
                raise AssertionError(f"probe_layers(): {info.name!r} has shape {info.shape}, "
                                     f"expected {want}")
    # 5. each CAM method at that layer, and Grad-CAM at the default layer, on the reference's math
    targets = _targets(spec)[2]
    for method in CAM_METHODS + ("gradcam",):
        substituted_here = type(model).forward_substituted is not Model.forward_substituted
        if method not in conf.registry.methods() or (method == "ablationcam" and not (
                scaled_here or substituted_here)):
            continue
        chosen = None if method == "gradcam" else layer
        cls = conf.registry.method(method)
        explanation = cls(model, layer=chosen, registry=conf.registry).attribute(x, targets)
        used = explanation.layer
        if used not in trace.activations or trace.activations[used].ndim != spec.inputs.ndim:
            raise AssertionError(f"{method}(layer={chosen!r}): layer {used!r} is not a spatial "
                                 "layer of the spec")
        reference = expected(spec, method, target=targets, layer=used, layout=conf.layout,
                             registry=conf.registry)
        _compare_explanation(explanation, reference, f"{method}(layer={chosen!r})", conf, method,
                             used)


def _randomized_spec(spec: NetSpec, layers: Sequence[str], seed: int,
                     batchnorm: str = "reset") -> NetSpec:
    """``spec`` with ``layers`` re-drawn as :meth:`attrib.Model.randomized` must draw them.

    A BatchNorm among ``layers``: γ = 1 and β = 0 (``"reset"``) or γ and β drawn as
    ``weight`` and ``bias`` (``"redraw"``); its running statistics are kept.
    """
    from dataclasses import replace

    from .._randomize import redrawn

    new = []
    for layer in spec.layers:
        if isinstance(layer, BatchNorm) and layer.name in layers:
            if batchnorm == "reset":
                layer = replace(layer, weight=np.ones_like(layer.weight),
                                bias=np.zeros_like(layer.bias))
            else:
                layer = replace(
                    layer, weight=redrawn(layer.weight, seed=seed, layer=layer.name, name="weight"),
                    bias=redrawn(layer.bias, seed=seed, layer=layer.name, name="bias"))
        elif isinstance(layer, (Conv, Dense)) and layer.name in layers:
            layer = replace(
                layer,
                weight=redrawn(layer.weight, seed=seed, layer=layer.name, name="weight",
                               channels_last=isinstance(layer, Dense)),
                bias=redrawn(layer.bias, seed=seed, layer=layer.name, name="bias"))
        new.append(layer)
    return replace(spec, layers=tuple(new))


def _check_randomized(conf: Conformance, case: Case) -> None:
    """``Model.randomized`` (optional): exactly the named layers re-drawn, the original untouched.

    A backend whose :meth:`attrib.Model.parameter_layers` raises
    :class:`attrib.AttribError` (the base class default) does not offer
    randomised copies and passes.
    """
    spec = case.spec
    model = conf.model(spec)
    try:
        layers = list(model.parameter_layers())
    except AttribError:
        return
    wanted = list(spec.parametrised_layers())
    if layers != wanted:
        raise AssertionError(f"parameter_layers(): expected {wanted}, got {layers}")
    x = conf.inputs(spec)
    before = model.forward(x)
    for chosen in ([wanted[-1]], wanted[:1], wanted):
        copy = model.randomized(chosen, seed=7)
        if copy is model or copy.native is model.native:
            raise AssertionError("randomized(): returned the original model, not a copy")
        if copy.backend != conf.backend:
            raise AssertionError(f"randomized(): a {copy.backend!r} model, not {conf.backend!r}")
        reference = forward(_randomized_spec(spec, chosen, 7), spec.inputs)
        assert_close(copy.forward(x), reference.logits,
                     f"randomized({chosen}, seed=7).forward logits", conf)
        assert_close(model.randomized(chosen, seed=7).forward(x), reference.logits,
                     f"randomized({chosen}, seed=7) again (same seed, same copy)", conf)
        if np.allclose(model.randomized(chosen, seed=8).forward(x), reference.logits):
            raise AssertionError(f"randomized({chosen}): seeds 7 and 8 gave the same copy")
    # no BatchNorm in these specs: batchnorm="redraw" changes nothing
    assert_close(model.randomized(wanted, seed=7, batchnorm="redraw").forward(x),
                 forward(_randomized_spec(spec, wanted, 7), spec.inputs).logits,
                 f"randomized({wanted}, seed=7, batchnorm='redraw') of a model without BatchNorm",
                 conf)
    _expect_error("randomized(batchnorm='keep')",
                  lambda: model.randomized(wanted, seed=0, batchnorm="keep"))
    assert_close(model.forward(x), before, "forward logits of the original after randomized()", conf)
    assert_close(conf.model(spec).forward(x), forward(spec, spec.inputs).logits,
                 "forward logits of a fresh adapter over the user's model after randomized()", conf)
    _expect_error("randomized(['no_such_layer'])",
                  lambda: model.randomized(["no_such_layer"], seed=0))


def _check_randomized_batchnorm(conf: Conformance, case: Case) -> None:
    """``randomized(batchnorm=...)`` on :func:`batchnorm_cnn`, against the NumPy reference.

    ``"reset"``: γ = 1, β = 0; ``"redraw"``: γ and β drawn like any weight and
    bias; the running statistics kept either way; layers not named untouched.
    """
    spec = batchnorm_cnn()
    model = conf.model(spec)
    wanted = list(spec.parametrised_layers())
    layers = list(model.parameter_layers())
    if layers != wanted:
        raise AssertionError(f"parameter_layers(): expected {wanted}, got {layers}")
    x = conf.inputs(spec)
    before = model.forward(x)
    assert_close(before, forward(spec, spec.inputs).logits, "forward logits", conf)
    for chosen in (["bn"], wanted):
        references = {}
        for mode in ("reset", "redraw"):
            references[mode] = forward(_randomized_spec(spec, chosen, 7, mode), spec.inputs).logits
            assert_close(model.randomized(chosen, seed=7, batchnorm=mode).forward(x),
                         references[mode],
                         f"randomized({chosen}, seed=7, batchnorm={mode!r}).forward logits", conf)
        if np.allclose(references["reset"], references["redraw"]):  # pragma: no cover - the spec
            raise AssertionError("batchnorm_cnn: 'reset' and 'redraw' give the same logits")
    assert_close(model.forward(x), before, "forward logits of the original after randomized()", conf)


def _check_rule_sets(conf: Conformance, case: Case) -> None:
    """Rule sets beyond rectifiers: the input relevance equals the NumPy reference, or a clear error.

    Every LRP composite (zᴮ with box bounds ±5), a layer named in ``rules``, and
    DeepLIFT's multipliers against a reference input.
    """
    from ..rules import DEEPLIFT, lrp_rule_set

    spec = case.spec
    model = conf.model(spec)
    x = conf.inputs(spec)
    trace = forward(spec, spec.inputs)
    targets = np.array(_targets(spec)[2], dtype=np.int64)
    first = spec.parametrised_layers()[0]
    sets = [lrp_rule_set("zero"), lrp_rule_set("epsilon_plus_flat"),
            lrp_rule_set("epsilon_gamma_box", low=-5.0, high=5.0),
            lrp_rule_set("epsilon_alpha2_beta1"), lrp_rule_set("epsilon", {first: "wsquare"})]
    if not _every_option(spec):  # the convolution rules on k axes: z+, flat, zB, alpha-beta
        sets = [sets[1], sets[2], sets[3]]
    for rules in sets:
        request = GradientRequest(inputs=x, targets=targets, rule=rules)
        what = f"gradients(rule={rules.name!r})"
        if not conf.rule_sets:
            _expect_error(what, partial(model.gradients, request))
            continue
        result = model.gradients(request)
        want, _ = backward(spec, trace, score_gradient(trace.logits, targets, "logit"), rules)
        assert_close(result.input_gradient, _laid(want, conf, spec), what, conf)
    # the token relevance belongs to transformer rule sets (AttnLRP): refused, never ignored
    for plain in (sets[0], "vanilla"):
        _expect_error(f"gradients(rule={str(plain)!r}, token_relevance=True)",
                      partial(model.gradients, GradientRequest(
                          inputs=x, targets=targets, rule=plain, token_relevance=True)))
    # DeepLIFT: multipliers against a reference input (half the inputs, shifted)
    reference_nchw = 0.5 * spec.inputs - 0.25
    reference = _laid(reference_nchw, conf, spec).astype(x.dtype)
    request = GradientRequest(inputs=x, targets=targets, rule=DEEPLIFT, reference=reference)
    what = "gradients(rule='deeplift', reference=...)"
    if not conf.deeplift:
        _expect_error(what, partial(model.gradients, request))
        return
    result = model.gradients(request)
    want = deeplift_backward(spec, trace, forward(spec, reference_nchw),
                             score_gradient(trace.logits, targets, "logit"))
    assert_close(result.input_gradient, _laid(want, conf, spec), what, conf)


def _check_attention(conf: Conformance, case: Case) -> None:
    """Attention capture (``GradientRequest.attention``) is implemented or declined clearly.

    The spec networks hold no attention: a backend that captures attention
    (``Model.captures_attention``) must say that none ran, or that a name is
    not an attention layer, with an :class:`attrib.AttribError`; one that does
    not must refuse the request (never ignore it and return no attention), and
    the attention methods must refuse its models.
    """
    spec = case.spec
    model = conf.model(spec)
    x = conf.inputs(spec)
    for attention in ("all", ("no_such_attention",)):
        _expect_error(f"gradients(attention={attention!r}) on a network without attention",
                      partial(model.gradients, GradientRequest(
                          inputs=x, input_gradient=False, attention=attention,
                          attention_gradients=True)))
    if not model.captures_attention:
        rollout = conf.registry.method("attention_rollout")
        _expect_error("attention_rollout on a backend that captures no attention",
                      lambda: rollout(model, registry=conf.registry))
    assert_close(model.forward(x), forward(spec, spec.inputs).logits,
                 "forward(inputs) after attention requests", conf)


def _check_several_inputs(conf: Conformance, case: Case) -> None:
    """Several inputs, ``inputs=(x1, x2, ...)`` for ``model(x1, x2, ...)`` (issue 21).

    A backend with :attr:`attrib.Model.several_inputs` passes a tuple's arrays as
    the model's arguments and returns one array per input: the 1-tuple ``(x,)``
    runs the spec's one-input model as ``x`` does, so ``gradients()`` gives 1-tuples
    of the inputs and input gradients, and saliency, gradient x input and
    integrated gradients give a 1-tuple holding the map of ``x``; a tuple whose
    batch sizes differ is refused. Then the spec as a model of two inputs
    (:func:`_check_two_inputs`) must give each input its part of the reference.
    A backend without it refuses every tuple with a clear :class:`attrib.AttribError`.
    """
    spec = case.spec
    model = conf.model(spec)
    x = conf.inputs(spec)
    n = len(x)
    targets = np.arange(n, dtype=np.int64) % spec.classes
    saliency = conf.registry.method("saliency")(model, registry=conf.registry)
    if not getattr(model, "several_inputs", False):
        _expect_error("several inputs on a backend without Model.several_inputs",
                      lambda: saliency.attribute((x,), targets))
        return
    one = model.gradients(GradientRequest(inputs=x, targets=targets))
    result = model.gradients(GradientRequest(inputs=(x,), targets=targets))
    for what, value, want in (("inputs", result.inputs, one.inputs),
                              ("input_gradient", result.input_gradient, one.input_gradient)):
        if not isinstance(value, tuple) or len(value) != 1:
            raise AssertionError(f"gradients(inputs=(x,)).{what}: expected a 1-tuple, got "
                                 f"{type(value).__name__}")
        assert_close(value[0], want, f"gradients(inputs=(x,)).{what}[0]", conf)
    assert_close(result.logits, one.logits, "gradients(inputs=(x,)).logits", conf)
    for method in ("saliency", "gradient_x_input", "integrated_gradients"):
        if method not in (conf.methods or ()) and method != "saliency":
            continue
        options = {"steps": 4} if method == "integrated_gradients" else {}
        explainer = conf.registry.method(method)(model, registry=conf.registry, **options)
        alone = explainer.attribute(x, targets).attribution
        tupled = explainer.attribute((x,), targets).attribution
        if not isinstance(tupled, tuple) or len(tupled) != 1:
            raise AssertionError(f"{method}(inputs=(x,)): expected a 1-tuple of maps, got "
                                 f"{type(tupled).__name__}")
        assert_close(tupled[0], alone, f"{method}(inputs=(x,))[0]", conf)
    _expect_error("several inputs whose batch sizes differ",
                  lambda: saliency.attribute((x, x[:1]), targets))
    _expect_error("an empty tuple of inputs", lambda: saliency.attribute((), targets))
    _check_two_inputs(conf, spec, targets)


def _check_two_inputs(conf: Conformance, spec: NetSpec, targets: np.ndarray) -> None:
    """``model(x1, x2)`` (:func:`attrib.testing.split_inputs`): one gradient and map per input.

    The model joins its inputs along the channel axis before ``spec``'s layers, so
    the reference for each input is the matching part of ``spec``'s (joined) value:
    logits, input gradients under two rules, true layer gradients, and saliency,
    gradient x input and integrated gradients (whose straight path from zero is
    the joined input's path).
    """
    two = split_inputs(spec)
    model = conf.model(two)
    xs = two.several_example_inputs(conf.layout, conf.dtype)
    before = [x.copy() for x in xs]
    trace = forward(spec, spec.inputs)
    seed = score_gradient(trace.logits, targets, "logit")
    layers = conf.tapped(spec)

    def parts(value: Any, what: str) -> tuple[Any, ...]:
        if not isinstance(value, tuple) or len(value) != 2:
            raise AssertionError(f"{what}: expected a tuple of 2 arrays (one per input), got "
                                 f"{type(value).__name__}")
        return value

    for rule in ("vanilla", "guided"):
        what = f"gradients(inputs=(x1, x2), rule={rule!r})"
        result = model.gradients(GradientRequest(inputs=xs, targets=targets, rule=rule,
                                                 layers=layers, layer_gradients=True))
        assert_close(result.logits, trace.logits, f"{what}.logits", conf)
        grad, _ = backward(spec, trace, seed, rule)
        _, true_layer_grads = backward(spec, trace, seed, "vanilla")
        for i, (ours, want) in enumerate(zip(parts(result.input_gradient, f"{what}.input_gradient"),
                                             two.split(_laid(grad, conf, spec), conf.layout),
                                             strict=True)):
            assert_close(ours, want, f"{what}.input_gradient[{i}]", conf)
        for name in layers:
            assert_close(result.layer_gradients.get(name),
                         _laid(true_layer_grads[name], conf, spec),
                         f"{what}.layer_gradients[{name!r}]", conf)
    joined = conf.inputs(spec)
    for method in ("saliency", "gradient_x_input", "integrated_gradients"):
        if method not in (conf.methods or ()) and method != "saliency":
            continue
        options: dict[str, Any] = ({"steps": 4, "baseline": "zeros"}
                                   if method == "integrated_gradients" else {})
        cls = conf.registry.method(method)
        maps = cls(model, registry=conf.registry, **options).attribute(xs, targets).attribution
        want = cls(ReferenceModel(spec, layout=conf.layout), registry=conf.registry,
                   **options).attribute(joined, targets).attribution
        for i, (ours, part) in enumerate(zip(parts(maps, f"{method}(inputs=(x1, x2))"),
                                             two.split(np.asarray(want), conf.layout),
                                             strict=True)):
            assert_close(ours, part, f"{method}(inputs=(x1, x2))[{i}]", conf)
    if not all(np.array_equal(x, b) for x, b in zip(xs, before, strict=True)):
        raise AssertionError("several inputs: the inputs were modified")
    saliency = conf.registry.method("saliency")(model, registry=conf.registry)
    _expect_error("one array for a model of two inputs",
                  lambda: saliency.attribute(xs[0], targets))


_CHECKS: dict[str, Callable[[Conformance, Case], None]] = {
    "model": _check_model,
    "targets": _check_targets,
    "capture": _check_capture,
    "method": _check_method,
    "explain": _check_explain,
    "native_inputs": _check_native_inputs,
    "errors": _check_errors,
    "target_weights": _check_target_weights,
    "several_inputs": _check_several_inputs,
    "multipass": _check_multipass,
    "cam": _check_cam,
    "randomized": _check_randomized,
    "randomized_batchnorm": _check_randomized_batchnorm,
    "rule_sets": _check_rule_sets,
    "attention": _check_attention,
    "many": _check_many,
}

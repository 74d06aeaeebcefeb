"""The conformance suite itself: its reference is right, and it catches broken backends."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from plugins.backend_builders import build_numpy

import attrib
import attrib.testing as at
from attrib.testing._reference import forward


@pytest.mark.parametrize("spec", at.default_specs(), ids=lambda s: s.name)
@pytest.mark.parametrize("objective", ["logit", "log_softmax", "softmax"])
def test_reference_vanilla_gradient_matches_finite_differences(spec: at.NetSpec, objective: str) -> None:
    x = spec.inputs
    targets = np.array([0, 1, 2])[: len(x)] % spec.classes
    seed = at.score_gradient(forward(spec, x).logits, targets, objective)
    grad, _ = at.backward(spec, forward(spec, x), seed, "vanilla")
    score = lambda z: attrib.objective_scores(forward(spec, z).logits, targets, objective).sum()  # noqa: E731
    rng = np.random.default_rng(0)
    for index in map(tuple, rng.integers(0, x.shape, size=(12, x.ndim))):
        step = np.zeros_like(x)
        step[index] = 1e-6
        numeric = (score(x + step) - score(x - step)) / 2e-6
        assert numeric == pytest.approx(grad[index], rel=1e-5, abs=1e-8)


def test_reference_guided_and_deconvnet_rules_by_hand_on_the_mlp() -> None:
    """The MLP written out as matrices, each rule applied explicitly."""
    spec = at.small_mlp()
    (w1, b1), (w2, b2), (w3, _) = [(lay.weight, lay.bias) for lay in spec.layers
                                   if isinstance(lay, at.Dense)]
    x = spec.inputs
    z1 = x @ w1 + b1
    z2 = np.maximum(z1, 0) @ w2 + b2
    g3 = np.zeros((len(x), spec.classes))
    g3[:, 1] = 1.0
    g2 = g3 @ w3.T
    trace = forward(spec, x)
    for rule, through in {
        "vanilla": lambda g, z, up: g * ((z > 0) & (z < up)),
        "guided": lambda g, z, up: np.maximum(g, 0) * ((z > 0) & (z < up)),
        "deconvnet": lambda g, z, up: np.maximum(g, 0),
    }.items():
        want = through(through(g2, z2, 6.0) @ w2.T, z1, np.inf) @ w1.T
        got, _ = at.backward(spec, trace, g3, rule)
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_specs_exercise_every_rectifier_region() -> None:
    spec = at.small_cnn()
    relu6_in = forward(spec, spec.inputs).layer_inputs["relu2"]
    assert (relu6_in < 0).any() and ((relu6_in > 0) & (relu6_in < 6)).any() and (relu6_in > 6).any()
    assert spec.rectifiers_after("conv1") and not spec.rectifiers_after("conv4")


# -- the suite catches broken backends ----------------------------------------------------------

def _broken_numpy_backend(name: str, mutate: Callable[[Any, attrib.GradientRequest, Any], Any]) -> Any:
    """A registry with the numpy example's adapter, its gradient pass mutated."""
    from attrib_numpy._model import NumpyModel

    class Broken(NumpyModel):
        backend = name

        def gradients(self, request: attrib.GradientRequest) -> attrib.GradientResult:
            return mutate(self, request, super().gradients)

    module = types.ModuleType(f"{name}_adapter")
    module.Broken = Broken  # type: ignore[attr-defined]
    import sys

    sys.modules[module.__name__] = module
    plugin = types.ModuleType(f"{name}_plugin")

    @attrib.hookimpl
    def attrib_register_backends(register):  # type: ignore[no-untyped-def]
        register(attrib.Backend(name=name, frameworks=("attrib_numpy",), detect=lambda m: False,
                                adapter=f"{module.__name__}:Broken"))

    plugin.attrib_register_backends = attrib_register_backends  # type: ignore[attr-defined]
    registry = attrib.Registry(entry_points=False)
    registry.register(plugin)
    return registry


def _vanilla_always(model: Any, request: attrib.GradientRequest, run: Any) -> Any:
    from dataclasses import replace

    return run(replace(request, rule="vanilla"))


def _guided_layer_gradients(model: Any, request: attrib.GradientRequest, run: Any) -> Any:
    """Layer gradients from the guided pass (the one-pass shortcut taken where it is wrong)."""
    from dataclasses import replace

    result = run(request)
    if request.rule == "vanilla" or not request.layers:
        return result
    guided = run(replace(request, layer_gradients=True))
    grads = {}
    for name in request.layers:  # recompute each layer gradient under the rule
        grads[name] = _rule_layer_gradient(model, request, name)
    return replace(guided, layer_gradients=grads)


def _rule_layer_gradient(model: Any, request: attrib.GradientRequest, name: str) -> np.ndarray:
    x = model.to_numpy(request.inputs)
    spec = _SPEC_BY_NET[id(model.native)]
    trace = forward(spec, x)
    targets = attrib.resolve_targets(request.targets, trace.logits)
    _, grads = at.backward(spec, trace, at.score_gradient(trace.logits, targets, request.objective),
                           request.rule)
    return grads[name]


def _modifies_inputs(model: Any, request: attrib.GradientRequest, run: Any) -> Any:
    result = run(request)
    request.inputs[...] = 0.0
    return result


_SPEC_BY_NET: dict[int, at.NetSpec] = {}


def _build_and_remember(spec: at.NetSpec) -> Any:
    net = build_numpy(spec)
    _SPEC_BY_NET[id(net)] = spec
    return net


@pytest.mark.parametrize(("mutate", "failing"), [
    (_vanilla_always, "method-guided_backprop"),
    (_guided_layer_gradients, "method-guided_gradcam-conv1"),
    (_modifies_inputs, "the inputs were modified"),
])
def test_suite_catches_a_broken_backend(mutate: Any, failing: str) -> None:
    name = f"broken_{mutate.__name__.strip('_')}"
    registry = _broken_numpy_backend(name, mutate)
    with pytest.raises(AssertionError) as info:
        at.check_backend(name, _build_and_remember, registry=registry, specs=[at.small_cnn()])
    message = str(info.value)
    assert f"backend {name!r} failed" in message and failing in message, message


def test_suite_passes_the_numpy_example_as_a_function() -> None:
    assert at.check_backend("numpy", build_numpy, rule_sets=True, deeplift=True) == \
        len(at.cases(at.Conformance("numpy", build_numpy)))


def test_attrib_testing_imports_no_framework() -> None:
    import subprocess
    import sys

    code = ("import sys, attrib.testing, attrib.testing.pytest_plugin; "
            "print(sorted(m for m in ('torch', 'jax', 'flax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

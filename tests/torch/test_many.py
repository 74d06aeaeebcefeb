"""Several methods in one ``attrib.explain`` call (issue 19), torch backend.

Every map equals, bit for bit, the same method called alone; ``stats["plan"]``
counts the gradient calls and backward passes that ran; the model is left as found.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torchvision

import attrib

from .conftest import RELU_SPELLINGS, assert_unchanged, batch, snapshot, tiny_net

SEED = ["saliency", "gradient_x_input", "guided_backprop", "deconvnet", "gradcam",
        "guided_gradcam"]


def _assert_same(alone: attrib.Explanation, shared: attrib.Explanation) -> None:
    for name in ("attribution", "layer_attribution", "targets", "logits", "inputs",
                 "target_weights"):
        a, b = getattr(alone, name), getattr(shared, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert alone.parts.keys() == shared.parts.keys()
    for part in alone.parts:
        assert np.array_equal(alone.parts[part], shared.parts[part]), part
    assert (alone.method, alone.layer, alone.layers) == (shared.method, shared.layer, shared.layers)


def _each_alone(model: Any, x: Any, methods: list[str], options: dict[str, dict[str, Any]],
                **shared: Any) -> dict[str, attrib.Explanation]:
    return {name: attrib.explain(model, x, method=name, **shared, **options.get(name, {}))
            for name in methods}


@pytest.mark.parametrize("layer", ["conv2", "conv1"])
def test_six_seed_methods_in_one_call_equal_each_alone(layer: str) -> None:
    # conv1 and conv2 lie below a rectifier: guided Grad-CAM alone needs two backward
    # passes (true layer gradient, then the guided input gradient); in one call its
    # true layer gradient comes from the vanilla pass on the shared forward pass
    net = tiny_net(RELU_SPELLINGS["nn.ReLU(inplace=True)"])
    x = batch(n=3)
    options = {"gradcam": {"layer": layer}, "guided_gradcam": {"layer": layer}}
    before = snapshot(net)
    many = attrib.explain(net, x, method=SEED, options=options, target=[3, 1, 0])
    assert_unchanged(net, before)
    assert list(many) == SEED
    alone = _each_alone(net, x, SEED, options, target=[3, 1, 0])
    for name in SEED:
        _assert_same(alone[name], many[name])
    plan = many["saliency"].stats["plan"]
    assert all(m.stats["plan"] == plan for m in many.values())
    assert (plan["gradient_calls"], plan["forward_passes"], plan["backward_passes"]) == (3, 1, 3)
    assert [(p["rule"], p["methods"], p["forward_passes"], p["backward_passes"])
            for p in plan["passes"]] == [
        ("vanilla", ("saliency", "gradient_x_input", "gradcam"), 1, 1),
        ("guided", ("guided_backprop", "guided_gradcam"), 0, 1),
        ("deconvnet", ("deconvnet",), 0, 1),
    ]
    assert plan["alone"] == ()


def test_resnet_seed_methods_share_three_passes() -> None:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 48, 48)
    options = {"gradcam": {"layer": "layer4"}, "guided_gradcam": {"layer": "layer4"}}
    many = attrib.explain(net, x, method=SEED, options=options)
    alone = _each_alone(net, x, SEED, options)
    for name in SEED:
        _assert_same(alone[name], many[name])
    plan = many["gradcam"].stats["plan"]
    # one forward pass; one backward pass per rule (layer4's gradient in the vanilla one)
    assert (plan["gradient_calls"], plan["forward_passes"], plan["backward_passes"]) == (3, 1, 3)


def test_cam_family_multipass_and_shared_options() -> None:
    net = tiny_net(RELU_SPELLINGS["F.relu"])
    x = batch(n=2)
    methods = ["gradcam_pp", "integrated_gradients", "eigencam", "guided_backprop",
               "smoothgrad", "scorecam"]
    options = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"n_samples": 3},
               "scorecam": {"layer": "conv1"}}
    weights = np.array([0.5, -1.0, 0.0, 2.0, 0.0])
    many = attrib.explain(net, x, method=methods, options=options, layer="conv2",
                          target=weights, objective="log_softmax")
    alone = _each_alone(net, x, methods,
                        {**options, "gradcam_pp": {"layer": "conv2"}, "eigencam": {"layer": "conv2"}},
                        target=weights, objective="log_softmax")
    for name in methods:
        _assert_same(alone[name], many[name])
    plan = many["eigencam"].stats["plan"]
    assert [(p["rule"], p["methods"]) for p in plan["passes"]] == [
        ("guided", ("guided_backprop", "gradcam_pp", "eigencam", "scorecam"))]
    assert plan["alone"] == ("integrated_gradients", "smoothgrad")
    assert many["scorecam"].layer == "conv1" and many["gradcam_pp"].layer == "conv2"


def test_layer_methods_only_share_one_call_with_default_layers() -> None:
    net = tiny_net(RELU_SPELLINGS["torch.relu"])
    x = batch(n=2)
    many = attrib.explain(net, x, method=["gradcam", "xgradcam", "layercam"])
    alone = _each_alone(net, x, ["gradcam", "xgradcam", "layercam"], {})
    for name in many:
        _assert_same(alone[name], many[name])
    plan = many["gradcam"].stats["plan"]
    assert (plan["gradient_calls"], plan["passes"][0]["rule"]) == (1, None)


def test_a_target_shares_the_forward_pass_and_the_mode_path_runs_alone() -> None:
    from attrib_torch._model import TorchModel

    net = tiny_net(RELU_SPELLINGS["F.relu"])
    x = batch(n=2)
    target = attrib.targets.Weights(np.array([0.5, -1.0, 0.0, 2.0, 0.25]))
    methods = ["saliency", "deconvnet", "guided_gradcam", "gradcam"]
    options = {"guided_gradcam": {"layer": "conv1"}, "gradcam": {"layer": "conv2"}}
    for model, forwards in ((TorchModel(net), 1), (TorchModel(net, rectifier_path="mode"), 3)):
        many = attrib.explain(model, x, method=methods, options=options, target=target)
        alone = _each_alone(model, x, methods, options, target=target)
        for name in methods:
            _assert_same(alone[name], many[name])
        plan = many["saliency"].stats["plan"]
        assert (plan["gradient_calls"], plan["forward_passes"]) == (3, forwards)
        # alone, guided Grad-CAM at conv1 (below a rectifier) needs its own true pass
        assert plan["backward_passes"] == (3 if forwards == 1 else 4)

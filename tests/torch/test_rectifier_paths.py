"""The graph-hook fast path and the TorchFunctionMode path give the same maps.

The fast path hooks the autograd graph's rectifier nodes after the forward
pass; the mode routes each rectifier call to an ``autograd.Function``. They
share no code, so equal maps on every torchvision classifier check each
against the other; the mode itself is checked against a hand-built reference
in ``test_rectifiers.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attrib
from attrib_torch._model import TorchModel
from attrib_torch._rectifiers import RectifierGraph, RectifierMode, RuleState

from .conftest import RELU6_SPELLINGS, RELU_SPELLINGS, assert_unchanged, batch, snapshot, tiny_net

torchvision = pytest.importorskip("torchvision")

RULES = ["guided", "deconvnet"]
# Left out, each with a smaller twin of the same module classes in the loop: regnet_y_128gf
# (644M parameters; regnet_y_32gf is in), vit_h_14 (632M), vit_l_16 and vit_l_32 (304M; vit_b_16
# and vit_b_32 are in), convnext_large (198M; convnext_tiny/small/base are in). ViT and ConvNeXt
# have no rectifier (GELU): both paths must find none, which their smaller twins check; building
# the three took 5.6 s of random init and their passes 2.2 s.
TOO_LARGE = {"regnet_y_128gf", "vit_h_14", "vit_l_16", "vit_l_32", "convnext_large"}
# Smallest inputs each architecture accepts (32x32 otherwise); (size, constructor kwargs).
SIZES: dict[str, tuple[int, dict[str, object]]] = {
    "alexnet": (64, {}),
    "inception_v3": (75, {"aux_logits": False, "init_weights": False}),
    "googlenet": (32, {"aux_logits": False, "init_weights": False}),
    "maxvit_t": (224, {}),
    **{name: (32, {"image_size": 32}) for name in ("vit_b_16", "vit_b_32")},
}
CLASSIFIERS = [name for name in torchvision.models.list_models(module=torchvision.models)
               if name not in TOO_LARGE]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Compare the two paths bit for bit with one intra-op thread.

    With two threads, float32 kernels on an AVX-512 Xeon can sum in an order
    that differs between two forward passes of the same model: a
    ``TorchFunctionMode`` that only calls ``func`` moved convnext_base's input
    gradient by 1.9e-8, and 17 to 25 of these architectures differed by ~1e-8
    from run to run. With one thread both paths are bitwise equal; the rules'
    arithmetic, which is what this file checks, does not depend on threads.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# Architectures with an in-place op on a view (CopySlices hides its backward): the
# graph cannot show a rectifier there, so the adapter takes the mode (Swin V2's
# position-bias MLP runs ReLU(inplace=True) on a reshaped Linear output).
FALLS_BACK = {"swin_v2_b", "swin_v2_s", "swin_v2_t"}


def _both_rules(model: nn.Module, x: torch.Tensor, path: str) -> tuple[int, list[np.ndarray]]:
    """Rectifier count and the guided and deconvnet input gradients from ONE forward pass.

    The graph path as the adapter takes it: on an opaque graph, the mode.
    """
    state = RuleState("vanilla")
    leaf = x.clone().requires_grad_()
    with torch.enable_grad():
        if path == "mode":
            with RectifierMode(state) as mode:
                logits = model(leaf.clone())
            count, hooks = mode.count, contextlib.nullcontext()
        else:
            logits = model(leaf.clone())
            hooks = graph = RectifierGraph(logits, state)
            count = graph.count
            if graph.opaque:
                return -1, []
        score = logits[:, 1].sum()
        maps = []
        with hooks:
            for rule in RULES:
                state.rule = rule
                maps.append(torch.autograd.grad(score, leaf, retain_graph=True)[0].numpy())
    return count, maps


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_torchvision_classifier(name: str) -> None:
    size, kwargs = SIZES.get(name, (32, {}))
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    graph_count, graph_maps = _both_rules(model, x, "graph")
    assert (graph_count == -1) == (name in FALLS_BACK), "the graph path falls back to the mode"
    if graph_count == -1:
        return  # the adapter runs the mode path itself: nothing to compare
    mode_count, mode_maps = _both_rules(model, x, "mode")
    assert graph_count == mode_count
    for rule, by_graph, by_mode in zip(RULES, graph_maps, mode_maps):
        np.testing.assert_array_equal(by_graph, by_mode, err_msg=f"{name} {rule}")


def test_torchvision_through_the_adapter() -> None:
    """The adapter's paths on one architecture, with the model's state checked."""
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None).eval()  # ReLU6, in place
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    before = snapshot(model)
    for rule in RULES:
        request = attrib.GradientRequest(inputs=x, targets=np.array([1, 2]), rule=rule)
        graph = TorchModel(model, rectifier_path="graph").gradients(request)
        mode = TorchModel(model, rectifier_path="mode").gradients(request)
        assert_unchanged(model, before)
        assert graph.stats["rectifier_path"] == "graph" and mode.stats["rectifier_path"] == "mode"
        assert graph.stats["rectifiers"] == mode.stats["rectifiers"] == 35
        np.testing.assert_array_equal(graph.input_gradient, mode.input_gradient)


@pytest.mark.parametrize("spelling", [*RELU_SPELLINGS, *RELU6_SPELLINGS])
@pytest.mark.parametrize("rule", RULES)
def test_every_spelling_same_on_both_paths(spelling: str, rule: str) -> None:
    act = {**RELU_SPELLINGS, **RELU6_SPELLINGS}[spelling]
    net = tiny_net(act)
    x = batch(scale=12.0)  # pre-activations above 6 too
    request = attrib.GradientRequest(inputs=x, targets=np.array([3, 1]), rule=rule)
    graph = TorchModel(net, rectifier_path="graph").gradients(request)
    mode = TorchModel(net, rectifier_path="mode").gradients(request)
    assert graph.stats["rectifiers"] == mode.stats["rectifiers"] == 3
    np.testing.assert_array_equal(graph.input_gradient, mode.input_gradient)


def test_auto_takes_the_graph_on_an_eager_model() -> None:
    net = tiny_net(RELU_SPELLINGS["F.relu"])
    e = attrib.explain(net, batch(), method="guided_backprop", target=[3, 1])
    assert e.stats["rectifier_path"] == "graph"
    assert "rectifier_path" not in attrib.explain(net, batch(), method="saliency").stats


def test_hooks_are_removed_and_read_the_rule_when_they_run() -> None:
    x = torch.tensor([-1.0, 0.5, 2.0, 7.0], requires_grad=True)
    y = F.relu6(F.relu(x) - 0.2) * torch.tensor([1.0, 1.0, -2.0, 3.0])
    state = RuleState("vanilla")
    graph = RectifierGraph(y, state)
    assert graph.count == 2
    with graph:
        (true,) = torch.autograd.grad(y.sum(), x, retain_graph=True)
        state.rule = "guided"
        (guided,) = torch.autograd.grad(y.sum(), x, retain_graph=True)
        state.rule = "deconvnet"
        (deconv,) = torch.autograd.grad(y.sum(), x, retain_graph=True)
    # by hand: grad_out of relu6 = w; relu6 passes where 0 < relu(x)-0.2 < 6: x=0.5, 2.0
    np.testing.assert_array_equal(true.numpy(), [0.0, 1.0, -2.0, 0.0])
    np.testing.assert_array_equal(guided.numpy(), [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(deconv.numpy(), [1.0, 1.0, 0.0, 3.0])
    state.rule = "guided"  # hooks gone: the true gradient again
    (after,) = torch.autograd.grad(y.sum(), x)
    np.testing.assert_array_equal(after.numpy(), true.numpy())


def test_hardtanh_other_than_a_rectifier_is_not_hooked() -> None:
    x = torch.randn(5, requires_grad=True)
    y = F.hardtanh(x) + F.hardtanh(x, 0.0, 2.0) + x.clamp(min=0) + F.gelu(x)
    assert RectifierGraph(y, RuleState("guided")).count == 1


def test_layer_gradients_stay_true_with_one_forward() -> None:
    """A rectifier after the layer: two backward passes, the layer's gradient the true one."""
    torch.manual_seed(0)
    net = torchvision.models.vgg11(weights=None).eval()
    x = torch.randn(1, 3, 32, 32)
    request = attrib.GradientRequest(inputs=x, targets=np.array([5]), rule="guided",
                                     layers=("features.15",))
    graph = TorchModel(net, rectifier_path="graph").gradients(request)
    mode = TorchModel(net, rectifier_path="mode").gradients(request)
    vanilla = TorchModel(net).gradients(
        attrib.GradientRequest(inputs=x, targets=np.array([5]), layers=("features.15",)))
    assert graph.stats["backward_passes"] == mode.stats["backward_passes"] == 2
    np.testing.assert_array_equal(graph.layer_gradients["features.15"],
                                  vanilla.layer_gradients["features.15"])
    np.testing.assert_array_equal(graph.input_gradient, mode.input_gradient)
    # ResNet's layer4 ends in its last ReLU, then pool and fc: one pass is exact
    resnet = torchvision.models.resnet18(weights=None).eval()
    request = attrib.GradientRequest(inputs=x, targets=np.array([5]), rule="guided",
                                     layers=("layer4",))
    assert TorchModel(resnet, rectifier_path="graph").gradients(request).stats[
        "backward_passes"] == 1


def test_compiled_model_gives_the_eager_maps() -> None:
    """torch.compile hides the rectifiers from the graph: auto takes the mode there."""
    torch.manual_seed(0)
    net = tiny_net(RELU_SPELLINGS["F.relu"])
    x = batch()
    compiled = torch.compile(net, backend="aot_eager")
    for method in ("guided_backprop", "deconvnet", "saliency"):
        eager = attrib.explain(net, x, method=method, target=[3, 1])
        got = attrib.explain(compiled, x, method=method, target=[3, 1])
        if method != "saliency":
            assert eager.stats["rectifier_path"] == "graph"
            assert got.stats["rectifier_path"] == "mode"
            assert got.stats["rectifiers"] == 3
        np.testing.assert_allclose(got.attribution, eager.attribution, rtol=1e-12, atol=0)


def test_compiled_function_inside_an_eager_model_falls_back_to_the_mode() -> None:
    torch.manual_seed(0)
    net = tiny_net(RELU_SPELLINGS["F.relu"])
    block = torch.compile(lambda t: F.relu(t) * 2.0, backend="aot_eager")

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.net(block(t) - 1.0)

    wrapped = Wrapped().eval()
    x = batch()
    got = attrib.explain(wrapped, x, method="guided_backprop", target=[3, 1])
    assert got.stats["rectifier_path"] == "mode"
    assert got.stats["rectifiers"] == 4
    reference = TorchModel(wrapped, rectifier_path="mode").gradients(
        attrib.GradientRequest(inputs=x, targets=np.array([3, 1]), rule="guided"))
    np.testing.assert_array_equal(got.attribution, reference.input_gradient)


def test_rectifier_path_is_checked() -> None:
    with pytest.raises(attrib.AttribError, match="rectifier_path"):
        TorchModel(tiny_net(RELU_SPELLINGS["F.relu"]), rectifier_path="fast")

"""Each method through the torch backend, against values computed independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attrib

from .conftest import (
    RELU_SPELLINGS,
    TinyNet,
    assert_unchanged,
    batch,
    input_grad,
    reference_act,
    snapshot,
    tiny_net,
    with_act,
)

TARGETS = [3, 1]


def _layer_by_hand(net: nn.Module, layer: str, x: torch.Tensor, targets: list[int],
                   rule_net: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Activation and true gradient at ``layer``, with a hook written here."""
    store: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        store["a"] = output
        return output.clone()

    handle = net.get_submodule(layer).register_forward_hook(hook)
    try:
        logits = net(x)
    finally:
        handle.remove()
    score = logits[torch.arange(len(targets)), torch.tensor(targets)].sum()
    (grad,) = torch.autograd.grad(score, store["a"])
    return store["a"].detach(), grad


def _gradcam_by_hand(net: nn.Module, layer: str, x: torch.Tensor, targets: list[int]) -> np.ndarray:
    activation, grad = _layer_by_hand(net, layer, x, targets)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(dim=1))
    up = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
    return up[:, 0].numpy()


@pytest.fixture
def net() -> TinyNet:
    return tiny_net(RELU_SPELLINGS["nn.ReLU(inplace=True)"])


@pytest.fixture
def x() -> torch.Tensor:
    return batch()


# -- input-space methods -------------------------------------------------------------------------

def test_saliency(net: TinyNet, x: torch.Tensor) -> None:
    expected = input_grad(net, x, TARGETS).numpy()
    by_name = attrib.explain(net, x, method="saliency", target=TARGETS)
    by_class = attrib.Saliency(net).attribute(x, TARGETS)
    for e in (by_name, by_class):
        np.testing.assert_array_equal(e.attribution, expected)
        assert e.backend == "torch" and e.layout == "NCHW" and e.method == "saliency"
        np.testing.assert_array_equal(e.targets, TARGETS)
        np.testing.assert_array_equal(e.logits, net(x).detach().numpy())


def test_gradient_x_input(net: TinyNet, x: torch.Tensor) -> None:
    expected = (input_grad(net, x, TARGETS) * x).numpy()
    for e in (attrib.explain(net, x, method="gradient_x_input", target=TARGETS),
              attrib.GradientXInput(net).attribute(x, TARGETS)):
        np.testing.assert_allclose(e.attribution, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize(("method", "cls", "rule"), [
    ("guided_backprop", attrib.GuidedBackprop, "guided"),
    ("deconvnet", attrib.Deconvnet, "deconvnet"),
])
def test_rule_methods(net: TinyNet, x: torch.Tensor, method: str, cls: type, rule: str) -> None:
    expected = input_grad(with_act(net, reference_act(rule, None)), x, TARGETS).numpy()
    for e in (attrib.explain(net, x, method=method, target=TARGETS), cls(net).attribute(x, TARGETS)):
        np.testing.assert_array_equal(e.attribution, expected)
        assert e.stats["rectifiers"] == 3 and e.stats["backward_passes"] == 1


# -- Grad-CAM -------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer", ["conv1", "conv2", "relus_inplace.1"])
def test_gradcam(net: TinyNet, x: torch.Tensor, layer: str) -> None:
    expected = _gradcam_by_hand(net, layer, x, TARGETS)
    for e in (attrib.explain(net, x, method="gradcam", target=TARGETS, layer=layer),
              attrib.GradCAM(net, layer=layer).attribute(x, TARGETS)):
        assert e.attribution.shape == (2, 8, 8) and e.layer == layer
        np.testing.assert_allclose(e.attribution, expected, rtol=1e-10, atol=1e-12)
        assert e.stats["backward_passes"] == 1
        assert expected.max() > 0


def test_gradcam_needs_no_input_gradient(net: TinyNet, x: torch.Tensor) -> None:
    frozen = tiny_net(RELU_SPELLINGS["nn.ReLU"]).requires_grad_(False)
    expected = _gradcam_by_hand(tiny_net(RELU_SPELLINGS["nn.ReLU"]), "conv2", x, TARGETS)
    before = snapshot(frozen)
    e = attrib.explain(frozen, x, method="gradcam", target=TARGETS, layer="conv2")
    np.testing.assert_allclose(e.attribution, expected, rtol=1e-10, atol=1e-12)
    assert_unchanged(frozen, before)
    result = attrib.wrap(net).gradients(attrib.GradientRequest(
        inputs=x, targets=np.array(TARGETS), input_gradient=False, layers=("conv2",)))
    assert result.input_gradient is None and result.stats["backward_passes"] == 1


@pytest.mark.parametrize(("layer", "passes"), [("conv1", 2), ("conv2", 2), ("pool", 2),
                                                ("fc1", 2), ("relus_inplace.2", 1)])
def test_guided_gradcam_is_exact_with_one_or_two_passes(
    net: TinyNet, x: torch.Tensor, layer: str, passes: int
) -> None:
    guided = input_grad(with_act(net, reference_act("guided", None)), x, TARGETS).numpy()
    activation, grad = _layer_by_hand(net, layer, x, TARGETS)
    if activation.ndim == 4:  # Grad-CAM needs maps; 2-D layers are checked below
        e = attrib.explain(net, x, method="guided_gradcam", target=TARGETS, layer=layer)
        assert e.stats["backward_passes"] == passes
        np.testing.assert_array_equal(e.parts["guided_backprop"], guided)
        cam = _gradcam_by_hand(net, layer, x, TARGETS)
        np.testing.assert_allclose(e.parts["gradcam"], cam, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(e.attribution, cam[:, None] * guided, rtol=1e-10, atol=1e-12)
    # the layer gradient is always the true gradient, whatever the rule
    result = attrib.wrap(net).gradients(attrib.GradientRequest(
        inputs=x, targets=np.array(TARGETS), rule="guided", layers=(layer,)))
    np.testing.assert_array_equal(result.layer_gradients[layer], grad.numpy())
    np.testing.assert_array_equal(result.activations[layer], activation.numpy())
    np.testing.assert_array_equal(result.input_gradient, guided)
    assert result.stats["backward_passes"] == passes


# -- targets and objectives ----------------------------------------------------------------------

def test_targets(net: TinyNet, x: torch.Tensor) -> None:
    argmax = net(x).argmax(1).tolist()
    e = attrib.explain(net, x, method="saliency")
    np.testing.assert_array_equal(e.targets, argmax)
    np.testing.assert_array_equal(e.attribution, input_grad(net, x, argmax).numpy())
    e = attrib.explain(net, x, method="saliency", target=4)
    np.testing.assert_array_equal(e.targets, [4, 4])
    np.testing.assert_array_equal(e.attribution, input_grad(net, x, [4, 4]).numpy())
    e = attrib.explain(net, x, method="saliency", target=torch.tensor([0, 2]))
    np.testing.assert_array_equal(e.attribution, input_grad(net, x, [0, 2]).numpy())


@pytest.mark.parametrize("objective", ["log_softmax", "softmax"])
def test_objectives(net: TinyNet, x: torch.Tensor, objective: str) -> None:
    leaf = x.clone().requires_grad_()
    values = getattr(F, objective)(net(leaf), dim=1)
    (expected,) = torch.autograd.grad(values[torch.arange(2), torch.tensor(TARGETS)].sum(), leaf)
    e = attrib.explain(net, x, method="saliency", target=TARGETS, objective=objective)
    np.testing.assert_allclose(e.attribution, expected.numpy(), rtol=1e-12, atol=1e-15)
    assert e.objective == objective
    e = attrib.Saliency(net, objective=objective).attribute(x, TARGETS)
    np.testing.assert_allclose(e.attribution, expected.numpy(), rtol=1e-12, atol=1e-15)


# -- inputs ---------------------------------------------------------------------------------------

def test_user_tensor_is_untouched(net: TinyNet, x: torch.Tensor) -> None:
    for requires_grad in (False, True):
        user = x.clone().requires_grad_(requires_grad)
        kept = user.detach().clone()
        for method, layer in [("guided_backprop", None), ("gradcam", "conv2"),
                              ("guided_gradcam", "conv1"), ("gradient_x_input", None)]:
            attrib.explain(net, user, method=method, target=TARGETS, layer=layer)
            assert user.grad is None and user.requires_grad == requires_grad
            assert torch.equal(user.detach(), kept)


def test_inplace_relu_on_the_input_does_not_write_into_the_users_array() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu_(x.flatten(1) * 1.0) + x.relu_().flatten(1))

    net = Net().eval()
    array = np.array([[[[-1.0, 2.0], [3.0, -4.0]]]], dtype=np.float32)
    kept = array.copy()
    tensor = torch.from_numpy(array.copy())
    attrib.explain(net, array, method="saliency")
    e = attrib.explain(net, tensor, method="guided_backprop")
    np.testing.assert_array_equal(array, kept)
    np.testing.assert_array_equal(tensor.numpy(), kept)
    assert e.stats["rectifiers"] == 2


def test_numpy_inputs_and_dtypes(net: TinyNet, x: torch.Tensor) -> None:
    expected = input_grad(net, x, TARGETS).numpy()
    e = attrib.explain(net, x.numpy(), method="saliency", target=TARGETS)
    assert e.attribution.dtype == np.float64
    np.testing.assert_array_equal(e.attribution, expected)
    np.testing.assert_array_equal(e.inputs, x.numpy())
    float32 = tiny_net(RELU_SPELLINGS["F.relu"], dtype=torch.float32)
    e = attrib.explain(float32, x.numpy(), method="guided_backprop", target=TARGETS)
    assert e.attribution.dtype == np.float32 and e.inputs.dtype == np.float32
    reference = with_act(float32, reference_act("guided", None))
    np.testing.assert_allclose(
        e.attribution, input_grad(reference, x.float(), TARGETS).numpy(), rtol=1e-6, atol=1e-7)


def test_forward_and_to_numpy(net: TinyNet, x: torch.Tensor) -> None:
    model = attrib.wrap(net)
    assert model.layout == "NCHW" and model.native is net and model.backend == "torch"
    np.testing.assert_array_equal(model.forward(x), net(x).detach().numpy())
    np.testing.assert_array_equal(model.to_numpy(x), x.numpy())
    assert model.input_shape(x.numpy()) == (2, 2, 8, 8)
    assert "conv1" in model.layer_names() and "" not in model.layer_names()


def test_runs_inside_no_grad(net: TinyNet, x: torch.Tensor) -> None:
    with torch.no_grad():
        e = attrib.explain(net, x, method="guided_gradcam", target=TARGETS, layer="conv1")
    assert e.stats["backward_passes"] == 2 and np.abs(e.attribution).sum() > 0


# -- the model's state ----------------------------------------------------------------------------

class _BatchNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1))


def test_training_mode_warns_and_leaves_buffers() -> None:
    torch.manual_seed(0)
    net = _BatchNormNet().double().train()
    before = snapshot(net)
    for method, layer in [("saliency", None), ("guided_gradcam", "conv")]:
        with pytest.warns(attrib.AttribWarning, match="training mode") as record:
            attrib.explain(net, batch(), method=method, target=[0, 1], layer=layer)
        assert len([w for w in record if issubclass(w.category, attrib.AttribWarning)]) == 1
        assert_unchanged(net, before)
    assert net.training and net.bn.training
    net.eval()
    attrib.explain(net, batch(), method="saliency")  # no warning in eval mode


def test_state_after_calls_that_raise(net: TinyNet, x: torch.Tensor) -> None:
    before = snapshot(net)
    model = attrib.wrap(net)
    bad = [
        dict(inputs=x, targets=np.array([0, 9])),
        dict(inputs=x, targets=np.array([0, 1]), rule="guided", layers=("relu_inplace",)),
        dict(inputs=x, targets=np.array([0, 1]), layers=("conv9",)),
        dict(inputs=x[:, :1], targets=np.array([0, 1]), rule="guided", layers=("conv2",)),
    ]
    for fields in bad:
        with pytest.raises(attrib.AttribError):
            model.gradients(attrib.GradientRequest(**fields))
        assert_unchanged(net, before)


# -- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("inputs", "match"), [
    (np.zeros(8), "inputs: expected a batch of shape"),
    (np.zeros((2, 2, 8, 8), dtype=np.uint8), r"floating.*\.astype\(np\.float32\)"),
    (torch.zeros((2, 2, 8, 8), dtype=torch.int64), r"floating.*\.float\(\)"),
    (np.full((2, 2, 8, 8), np.nan), "finite"),
    (torch.full((1, 2, 8, 8), float("inf")), "finite"),
    ([[1.0, 2.0]], "NumPy array or a torch tensor"),
    (np.zeros((0, 2, 8, 8)), "at least one sample"),
    (np.zeros((2, 3, 8, 8)), "inputs: expected a batch this model accepts"),
    (np.zeros((2, 8, 8)), r"a batch this model accepts.*shape \(2, 8, 8\)"),
])
def test_bad_inputs(net: TinyNet, inputs: object, match: str) -> None:
    with pytest.raises(attrib.AttribError, match=match):
        attrib.explain(net, inputs, method="saliency")


def test_bad_arguments(net: TinyNet, x: torch.Tensor) -> None:
    with pytest.raises(attrib.AttribError, match=r"target.*\[0, 4\]"):
        attrib.explain(net, x, method="saliency", target=5)
    with pytest.raises(attrib.AttribError, match="one class per sample"):
        attrib.explain(net, x, method="saliency", target=[1, 2, 3])
    with pytest.raises(attrib.AttribError, match="'conv2'"):
        attrib.explain(net, x, method="gradcam", layer="conv_2")
    with pytest.raises(attrib.AttribError, match="guided_backprop"):
        attrib.explain(net, x, method="guided_backpropp")
    with pytest.raises(attrib.AttribError, match="log_softmax"):
        attrib.explain(net, x, method="saliency", objective="log_sofmax")
    with pytest.raises(attrib.AttribError, match="'conv2'"):
        attrib.wrap(net).gradients(attrib.GradientRequest(inputs=x, layers=("conv_2",)))


class _TupleLayer(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


class _Odd(nn.Module):
    def __init__(self, output: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.split = _TupleLayer()
        self.fc = nn.Linear(3 * 8 * 8, 4)
        self.output = output

    def forward(self, x: torch.Tensor) -> object:
        a, _ = self.split(F.relu(self.conv(x)))
        if self.output == "maps":
            return a
        logits = self.fc(a.flatten(1))
        return (logits, a) if self.output == "tuple" else logits


def test_model_and_layer_output_errors(x: torch.Tensor) -> None:
    torch.manual_seed(0)
    for output, match in [("maps", r"logits, shape \(2, classes\).*shape \(2, 3, 8, 8\)")]:
        net = _Odd(output).double().eval()
        before = snapshot(net)
        with pytest.raises(attrib.AttribError, match=match):
            attrib.explain(net, x, method="saliency")
        assert_unchanged(net, before)
    # issue 8: a tuple's first element is taken as the logits (output= chooses another)
    pair = _Odd("tuple").double().eval()
    plain = _Odd("logits").double().eval()
    plain.load_state_dict(pair.state_dict())
    np.testing.assert_array_equal(attrib.explain(pair, x, method="saliency").attribution,
                                  attrib.explain(plain, x, method="saliency").attribution)
    with pytest.raises(attrib.AttribError, match=r"logits, shape \(2, classes\).*shape \(2, 3"):
        attrib.explain(pair, x, method="saliency", output=1)
    net = _Odd("logits").double().eval()
    before = snapshot(net)
    with pytest.raises(attrib.AttribError, match="'split', which returns a tuple"):
        attrib.explain(net, x, method="guided_gradcam", layer="split")
    assert_unchanged(net, before)
    with pytest.raises(attrib.AttribError, match="not used by the model's forward pass"):
        attrib.explain(tiny_net(RELU_SPELLINGS["F.relu"]), x, method="gradcam", layer="relus.0")
    with pytest.raises(attrib.AttribError, match="ran 3 times"):
        attrib.explain(tiny_net(RELU_SPELLINGS["one nn.ReLU reused"]), x, method="gradcam",
                       layer="relu_inplace")


def test_runs_inside_inference_mode(net: TinyNet, x: torch.Tensor) -> None:
    with torch.inference_mode():
        inputs = x.clone()
        e = attrib.explain(net, inputs, method="guided_backprop", target=TARGETS)
    expected = input_grad(with_act(net, reference_act("guided", None)), x, TARGETS).numpy()
    np.testing.assert_array_equal(e.attribution, expected)

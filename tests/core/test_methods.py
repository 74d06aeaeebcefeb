"""Each method's math on hand-made arrays (no framework), and what it asks the backend for."""

from __future__ import annotations

import numpy as np
import pytest

import attrib
from attrib import GradientResult
from support.array_model import ArrayModel

# One sample, 3 input channels of 4x4, a 'conv' layer of 2 channels of 2x2 (NCHW).
INPUTS = np.arange(48, dtype=np.float64).reshape(1, 3, 4, 4) / 10 - 2
INPUT_GRADIENT = np.sin(np.arange(48, dtype=np.float64)).reshape(1, 3, 4, 4)
ACTIVATION = np.array([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, -1.0]]]])
LAYER_GRADIENT = np.array([[[[1.0, 1.0], [1.0, 1.0]], [[-2.0, -2.0], [-4.0, -4.0]]]])
# weights = spatial means = (1, -3); cam = relu(A0 - 3 A1) = relu([[1, -1], [3, 7]])
EXPECTED_CAM = np.array([[[1.0, 0.0], [3.0, 7.0]]])
LOGITS = np.array([[0.1, 2.0, -1.0]])


def _model(layout: str = "NCHW") -> ArrayModel:
    to_layout = (lambda a: a) if layout == "NCHW" else (lambda a: np.moveaxis(a, 1, -1))
    result = GradientResult(
        inputs=to_layout(INPUTS),
        logits=LOGITS,
        targets=np.array([1]),
        input_gradient=to_layout(INPUT_GRADIENT),
        activations={"conv": to_layout(ACTIVATION)},
        layer_gradients={"conv": to_layout(LAYER_GRADIENT)},
    )
    return ArrayModel(result, layout=layout)


def _inputs(layout: str) -> np.ndarray:
    return INPUTS if layout == "NCHW" else np.moveaxis(INPUTS, 1, -1)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_gradcam_by_hand(layout):
    model = _model(layout)
    explanation = attrib.GradCAM(model, layer="conv").attribute(_inputs(layout))
    np.testing.assert_allclose(explanation.layer_attribution, EXPECTED_CAM)
    np.testing.assert_allclose(explanation.attribution, attrib.resize_bilinear(EXPECTED_CAM, (4, 4)))
    assert explanation.attribution.shape == (1, 4, 4)
    assert explanation.layer == "conv" and explanation.method == "gradcam"
    np.testing.assert_array_equal(explanation.targets, [1])
    (request,) = model.requests
    # Grad-CAM never needs the input gradient: the backend's backward may stop at the layer.
    assert request.input_gradient is False
    assert request.layers == ("conv",) and request.layer_gradients and request.rule == "vanilla"


def test_gradcam_upsampled_corners_keep_the_layer_values():
    explanation = attrib.GradCAM(_model(), layer="conv").attribute(INPUTS)
    # half-pixel centres: output pixel 0 and 3 lie beyond the first/last centre and keep the value
    assert explanation.attribution[0, 0, 0] == 1.0 and explanation.attribution[0, 3, 3] == 7.0
    np.testing.assert_allclose(explanation.attribution[0, 0], [1.0, 0.75, 0.25, 0.0])


@pytest.mark.parametrize(
    ("cls", "rule"),
    [(attrib.Saliency, "vanilla"), (attrib.GuidedBackprop, "guided"), (attrib.Deconvnet, "deconvnet")],
)
def test_input_gradient_methods_return_the_raw_gradient_under_their_rule(cls, rule):
    model = _model()
    explanation = cls(model).attribute(INPUTS, target=1)
    np.testing.assert_array_equal(explanation.attribution, INPUT_GRADIENT)
    (request,) = model.requests
    assert request.rule == rule and request.input_gradient and request.layers == ()
    np.testing.assert_array_equal(request.targets, [1])


def test_gradient_x_input_is_the_elementwise_product():
    explanation = attrib.GradientXInput(_model()).attribute(INPUTS)
    np.testing.assert_allclose(explanation.attribution, INPUT_GRADIENT * INPUTS)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_guided_gradcam_is_cam_times_guided_gradient_in_one_pass(layout):
    model = _model(layout)
    explanation = attrib.GuidedGradCAM(model, layer="conv").attribute(_inputs(layout))
    cam = attrib.resize_bilinear(EXPECTED_CAM, (4, 4))
    expected = INPUT_GRADIENT * cam[:, None]
    if layout == "NHWC":
        expected = np.moveaxis(expected, 1, -1)
    np.testing.assert_allclose(explanation.attribution, expected)
    np.testing.assert_allclose(explanation.parts["gradcam"], cam)
    (request,) = model.requests  # one gradient pass serves both parts
    assert request.rule == "guided" and request.input_gradient and request.layer_gradients
    assert request.layers == ("conv",)


def test_explanation_is_frozen_and_read_only():
    explanation = attrib.Saliency(_model()).attribute(INPUTS)
    with pytest.raises(AttributeError):
        explanation.method = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        explanation.attribution[0, 0, 0, 0] = 1.0
    assert "saliency" in repr(explanation)


def test_objective_is_passed_to_the_backend():
    model = _model()
    attrib.Saliency(model, objective="log_softmax").attribute(INPUTS)
    assert model.requests[0].objective == "log_softmax"


def test_unknown_layer_lists_close_matches():
    model = ArrayModel(_model()._result, layers=["conv1", "conv2", "fc"])
    expected = r"layer: .*got 'conv3'. Did you mean 'conv2' or 'conv1'"
    with pytest.raises(attrib.AttribValueError, match=expected):
        attrib.GradCAM(model, layer="conv3")


def test_layer_none_picks_the_spatial_layer_through_the_model_interface():
    # the base Model.probe_layers (one capture-only request) finds 'conv', the only 4-D layer
    explanation = attrib.GradCAM(_model(), layer=None).attribute(INPUTS)
    assert explanation.layer == "conv" and explanation.stats["default_layer"] is True
    np.testing.assert_allclose(explanation.layer_attribution, EXPECTED_CAM)
    probe = _model().requests
    assert all(not r.layer_gradients or r.layers == ("conv",) for r in probe)


def test_no_spatial_layer_says_which_layers_exist():
    result = GradientResult(inputs=INPUTS, logits=LOGITS, targets=np.array([1]),
                            activations={"fc": np.ones((1, 5))})
    model = ArrayModel(result, layers=["fc"])
    expected = r"layer: expected a layer for 'gradcam', got None.*No layer .*spatial.*'fc'"
    with pytest.raises(attrib.AttribValueError, match=expected):
        attrib.GradCAM(model, layer=None).attribute(INPUTS)
    with pytest.raises(attrib.AttribTypeError, match="layer: expected a layer name, a non-empty"):
        attrib.GradCAM(model, layer=5)  # type: ignore[arg-type]


def test_gradcam_on_a_non_spatial_layer_is_a_clear_error():
    result = GradientResult(inputs=INPUTS, logits=LOGITS, targets=np.array([1]),
                            activations={"fc": np.ones((1, 5))}, layer_gradients={"fc": np.ones((1, 5))})
    model = ArrayModel(result, layers=["fc"])
    with pytest.raises(attrib.AttribValueError, match=r"4-D output.*'fc' with output shape \(1, 5\)"):
        attrib.GradCAM(model, layer="fc").attribute(INPUTS)


def test_explain_dispatches_by_name_and_rejects_misplaced_arguments():
    explanation = attrib.explain(_model(), INPUTS, method="gradcam", layer="conv")
    np.testing.assert_allclose(explanation.layer_attribution, EXPECTED_CAM)
    with pytest.raises(attrib.AttribValueError, match="method: .*Did you mean 'gradcam'"):
        attrib.explain(_model(), INPUTS, method="gradcm")
    with pytest.raises(attrib.AttribValueError, match="layer: expected no layer for 'saliency'"):
        attrib.explain(_model(), INPUTS, method="saliency", layer="conv")
    with pytest.raises(attrib.AttribValueError, match=r"options: .*got \['smooth'\]"):
        attrib.explain(_model(), INPUTS, method="saliency", smooth=3)


def test_public_names_of_the_contract():
    for name in ["explain", "list_backends", "list_methods", "Saliency", "GradientXInput", "Deconvnet",
                 "GuidedBackprop", "GradCAM", "GuidedGradCAM", "Model", "GuidedActivation",
                 "Attributor", "Explanation", "AttribError"]:
        assert name in attrib.__all__ and hasattr(attrib, name)
    assert set(attrib.list_methods()) >= {"saliency", "gradient_x_input", "deconvnet",
                                          "guided_backprop", "gradcam", "guided_gradcam"}
    assert {"torch", "jax"} <= set(attrib.list_backends())


def test_interfaces_are_abstract():
    for cls in (attrib.Model, attrib.Attributor, attrib.GuidedActivation):
        with pytest.raises(TypeError):
            cls()  # type: ignore[abstract]

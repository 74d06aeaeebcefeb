"""Property tests (hypothesis) of the method math in the core: shapes, finiteness, no NaN
ever, linearity of the gradient in the target weights, Grad-CAM under a scaled score.

The gradient passes come from arrays drawn by hypothesis (through
``support.array_model.ArrayModel``: the method math alone) or from the NumPy
reference network ``attrib.testing.ReferenceModel`` (float64, no framework).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import attrib
from attrib import GradientResult
from attrib.testing import Dense, NetSpec, ReferenceModel, small_cnn
from support.array_model import ArrayModel

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
INPUT_METHODS = ["saliency", "gradient_x_input", "guided_backprop", "deconvnet"]
LAYER_METHODS = ["gradcam", "guided_gradcam"]

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
special = st.sampled_from(["random", "zeros", "constant", "tiny", "huge"])


def _array(draw: st.DrawFn, shape: tuple[int, ...], kind: str) -> np.ndarray:
    if kind == "zeros":
        return np.zeros(shape, np.float32)
    if kind == "constant":
        return np.full(shape, draw(finite), np.float32)
    values = draw(hnp.arrays(np.float32, shape, elements=finite))
    scale = {"tiny": 1e-30, "huge": 1e30}.get(kind, 1.0)
    return (values.astype(np.float64) * scale).astype(np.float32)


@st.composite
def passes(draw: st.DrawFn) -> tuple[GradientResult, str]:
    """A gradient pass of a (N, C, H, W) / (N, H, W, C) model with one (N, c, h, w) layer."""
    layout = draw(st.sampled_from(["NCHW", "NHWC"]))
    n, c, h, w = (draw(st.integers(1, 3)), draw(st.sampled_from([1, 3])),
                  draw(st.integers(2, 9)), draw(st.integers(2, 9)))
    k, lh, lw = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    chw = (c, h, w) if layout == "NCHW" else (h, w, c)
    layer = (k, lh, lw) if layout == "NCHW" else (lh, lw, k)
    kinds = [draw(special) for _ in range(4)]
    classes = draw(st.integers(2, 5))
    result = GradientResult(
        inputs=_array(draw, (n, *chw), kinds[0]),
        logits=draw(hnp.arrays(np.float32, (n, classes), elements=finite)),
        targets=np.zeros(n, np.int64),
        input_gradient=_array(draw, (n, *chw), kinds[1]),
        activations={"conv": _array(draw, (n, *layer), kinds[2])},
        layer_gradients={"conv": _array(draw, (n, *layer), kinds[3])},
    )
    return result, layout


@SETTINGS
@given(drawn=passes(), method=st.sampled_from(INPUT_METHODS + LAYER_METHODS))
def test_every_method_gives_a_finite_map_of_the_right_shape(
    drawn: tuple[GradientResult, str], method: str
) -> None:
    result, layout = drawn
    model = ArrayModel(result, layout=layout)
    layer = "conv" if method in LAYER_METHODS else None
    arrays = [result.inputs, result.input_gradient, *result.activations.values(),
              *result.layer_gradients.values()]
    largest = max(float(np.abs(a).max()) for a in arrays if a is not None)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", attrib.AttribWarning)
            e = attrib.explain(model, result.inputs, method=method, layer=layer)
    except attrib.AttribError as error:
        # allowed only where a product of two drawn values can leave float32 (|v| > 1e19)
        assert largest > 1e19, error
        assert str(error).startswith(f"inputs: expected values whose {method} map fits"), error
        return
    # the one warning a drawn pass may earn: a gradient that is zero everywhere (issue 19)
    gradients = [result.input_gradient, *result.layer_gradients.values()]
    for warning in caught:
        assert issubclass(warning.category, attrib.AttribWarning), warning
        assert "is zero everywhere" in str(warning.message), warning.message
        assert any(g is not None and not g.any() for g in gradients), warning.message
    n = result.inputs.shape[0]
    hw = result.inputs.shape[2:] if layout == "NCHW" else result.inputs.shape[1:3]
    expected = (n, *hw) if method == "gradcam" else result.inputs.shape
    assert e.attribution.shape == expected
    assert np.isfinite(e.attribution).all()
    if method == "gradcam":
        assert (e.attribution >= 0).all()
    # and every display of it
    if e.attribution.ndim == 4:
        for shown in (attrib.postprocess.grayscale(e.attribution, layout),
                      attrib.postprocess.positive_saliency(e.attribution, layout),
                      attrib.postprocess.deprocess(e.attribution, layout)):
            assert np.isfinite(shown).all() and shown.min() >= 0 and shown.max() <= 1
    for shown in (attrib.postprocess.minmax(e.attribution),
                  attrib.postprocess.diverging(e.attribution)):
        assert np.isfinite(shown).all() and np.abs(shown).max(initial=0) <= 1


# -- on the NumPy reference network --------------------------------------------------------------

SPEC = small_cnn()


def _with_combined_class(spec: NetSpec, weights: dict[int, float]) -> NetSpec:
    """``spec`` with one more class whose logit is ``sum_k weights[k] * logit_k``."""
    fc = spec.layers[-1]
    assert isinstance(fc, Dense)
    column = sum(wk * fc.weight[:, k] for k, wk in weights.items())
    bias = sum(wk * fc.bias[k] for k, wk in weights.items())
    head = Dense(fc.name, np.concatenate([fc.weight, column[:, None]], axis=1),
                 np.append(fc.bias, bias))
    return dataclasses.replace(spec, layers=(*spec.layers[:-1], head), classes=spec.classes + 1)


def _scaled_head(spec: NetSpec, factor: float) -> NetSpec:
    fc = spec.layers[-1]
    assert isinstance(fc, Dense)
    return dataclasses.replace(
        spec, layers=(*spec.layers[:-1], Dense(fc.name, fc.weight * factor, fc.bias * factor)))


weight = st.floats(-3, 3, allow_nan=False).filter(lambda v: abs(v) > 1e-3)


@settings(max_examples=25, deadline=None)
@given(a=st.integers(0, 3), b=st.integers(0, 3), wa=weight, wb=weight,
       method=st.sampled_from(["saliency", "gradient_x_input"]))
def test_the_gradient_is_linear_in_the_target_weights(
    a: int, b: int, wa: float, wb: float, method: str
) -> None:
    # the map of the score wa*logit_a + wb*logit_b is wa*map(a) + wb*map(b)
    x = SPEC.inputs
    combined = _with_combined_class(SPEC, {a: wa} if a == b else {a: wa, b: wb})
    wb_used = 0.0 if a == b else wb

    def raw(spec: NetSpec, target: int) -> np.ndarray:
        # saliency is |gradient| summed nowhere: take the signed gradient the method computes
        result = ReferenceModel(spec).gradients(attrib.GradientRequest(
            inputs=x, targets=np.full(len(x), target)))
        assert result.input_gradient is not None
        return result.input_gradient * (x if method == "gradient_x_input" else 1.0)

    expected = wa * raw(SPEC, a) + wb_used * raw(SPEC, b)
    np.testing.assert_allclose(raw(combined, SPEC.classes), expected, rtol=1e-10, atol=1e-12)
    e = attrib.explain(ReferenceModel(combined), x, method=method, target=SPEC.classes)
    np.testing.assert_allclose(e.attribution, expected, rtol=1e-10, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(factor=st.floats(1e-3, 1e3), layer=st.sampled_from(list(SPEC.gradcam_layers)),
       target=st.integers(0, 3))
def test_gradcam_under_a_positive_scaling_of_the_score(factor: float, layer: str,
                                                       target: int) -> None:
    # score -> factor * score: the layer gradient scales by factor, so the map is
    # factor * map (degree-1 homogeneous) and the normalised map is unchanged
    x = SPEC.inputs
    base = attrib.explain(ReferenceModel(SPEC), x, method="gradcam", layer=layer, target=target)
    scaled = attrib.explain(ReferenceModel(_scaled_head(SPEC, factor)), x, method="gradcam",
                            layer=layer, target=target)
    np.testing.assert_allclose(scaled.attribution, factor * base.attribution,
                               rtol=1e-9, atol=1e-12 * factor)
    live = base.attribution.reshape(len(x), -1).max(axis=1) > 1e-9
    np.testing.assert_allclose(attrib.postprocess.minmax(scaled.attribution)[live],
                               attrib.postprocess.minmax(base.attribution)[live],
                               rtol=1e-7, atol=1e-9)

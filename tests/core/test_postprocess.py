"""attrib.postprocess: hand-made arrays with exact values, layouts, and properties."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import attrib
from attrib import AttribError, Explanation
from attrib import postprocess as pp

# ----------------------------------------------------------------------------- exact values


def nchw(*channels: list[list[float]]) -> np.ndarray:
    """One sample (1, C, H, W) from per-channel 2-D lists."""
    return np.array([channels], dtype=np.float64)


def test_grayscale_sums_abs_over_channels_and_scales_to_the_percentile():
    g = nchw([[1, -1], [0, 2]], [[0, 1], [-3, 2]])  # sum |g| = [[1, 2], [3, 4]]
    np.testing.assert_allclose(pp.grayscale(g, "NCHW", percentile=100),
                               [[[0, 1 / 3], [2 / 3, 1]]], atol=1e-12)
    # 50th percentile of [1, 2, 3, 4] is 2.5: (s - 1) / 1.5, clipped at 1
    np.testing.assert_allclose(pp.grayscale(g, "NCHW", percentile=50),
                               [[[0, 2 / 3], [1, 1]]], atol=1e-12)


def test_grayscale_of_a_sparse_map_falls_back_to_the_maximum():
    g = np.zeros((1, 1, 4, 4))
    g[0, 0, 1, 2] = -5.0  # the 99th percentile of |g| is 0.8 ... but 50th is 0 = min
    out = pp.grayscale(g, "NCHW", percentile=50)
    expected = np.zeros((1, 4, 4))
    expected[0, 1, 2] = 1.0
    np.testing.assert_array_equal(out, expected)


def test_grayscale_single_sample_and_layouts_agree():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(3, 3, 5, 7))
    batch = pp.grayscale(g, "NCHW")
    assert batch.shape == (3, 5, 7)
    np.testing.assert_allclose(pp.grayscale(g.transpose(0, 2, 3, 1), "NHWC"), batch, atol=1e-12)
    np.testing.assert_allclose(pp.grayscale(g[1], "NCHW"), batch[1], atol=1e-12)
    np.testing.assert_allclose(pp.grayscale(g[1].transpose(1, 2, 0), "nhwc"), batch[1],
                               atol=1e-12)


def test_grayscale_scales_each_sample_on_its_own():
    g = np.stack([nchw([[1, 2], [3, 4]])[0], 1000 * nchw([[4, 3], [2, 1]])[0]])
    out = pp.grayscale(g, "NCHW", percentile=100)
    np.testing.assert_allclose(out[0], [[0, 1 / 3], [2 / 3, 1]], atol=1e-12)
    np.testing.assert_allclose(out[1], [[1, 2 / 3], [1 / 3, 0]], atol=1e-12)


def test_positive_and_negative_saliency_as_the_pytorch_seed():
    g = nchw([[-2, 1], [0, 4]], [[2, -1], [-4, 0]])
    pos = pp.positive_saliency(g, "NCHW")
    neg = pp.negative_saliency(g, "NCHW")
    np.testing.assert_allclose(pos, nchw([[0, 0.25], [0, 1]], [[0.5, 0], [0, 0]]), atol=1e-12)
    np.testing.assert_allclose(neg, nchw([[0.5, 0], [0, 0]], [[0, 0.25], [1, 0]]), atol=1e-12)
    # the seed's own formulas, on the raw values
    np.testing.assert_allclose(pos, np.maximum(0, g) / g.max(), atol=1e-12)
    np.testing.assert_allclose(neg, np.maximum(0, -g) / -g.min(), atol=1e-12)


def test_positive_saliency_keeps_the_layout_and_is_per_sample():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(2, 3, 4, 5))
    g[1] *= 100
    out = pp.positive_saliency(g, "NCHW")
    out_hwc = pp.positive_saliency(g.transpose(0, 2, 3, 1), "NHWC")
    np.testing.assert_allclose(out_hwc, out.transpose(0, 2, 3, 1), atol=1e-12)
    np.testing.assert_allclose(out.max(axis=(1, 2, 3)), [1.0, 1.0])
    np.testing.assert_allclose(out[0], np.maximum(g[0], 0) / g[0].max(), atol=1e-12)


def test_single_signed_maps_give_zeros_on_the_missing_side():
    g = np.abs(np.random.default_rng(2).normal(size=(2, 3, 4, 4))) + 0.1
    np.testing.assert_array_equal(pp.negative_saliency(g, "NCHW"), 0.0)
    np.testing.assert_array_equal(pp.positive_saliency(-g, "NCHW"), 0.0)
    np.testing.assert_allclose(pp.negative_saliency(-g, "NCHW"), pp.positive_saliency(g, "NCHW"))


def test_minmax_and_diverging_exact():
    x = np.array([[2.0, 4.0, 3.0], [-1.0, -1.0, -1.0]])
    np.testing.assert_array_equal(pp.minmax(x), [[0, 1, 0.5], [0, 0, 0]])
    np.testing.assert_array_equal(pp.minmax(x, axis=None), [[0.6, 1, 0.8], [0, 0, 0]])
    np.testing.assert_array_equal(pp.minmax(x, axis=0), [[1, 1, 1], [0, 0, 0]])
    d = pp.diverging(np.array([[-2.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.25, 0.0]]))
    np.testing.assert_array_equal(d, [[-1, 0.5, 0], [0, 0, 0], [1, 0.5, 0]])
    np.testing.assert_array_equal(pp.diverging_to_unit(np.array([-1.0, 0.0, 0.5, 1.0, 3.0])),
                                  [0, 0.5, 0.75, 1, 1])


def test_deprocess_standardises_scales_by_a_tenth_and_centres_on_gray():
    x = nchw([[-1, 1], [-1, 1]], [[1, 1], [-1, -1]], [[0, 0], [0, 0]])
    # mean 0, std sqrt(8/12): out = x / std * 0.1 + 0.5, channels last
    std = np.sqrt(8 / 12)
    out = pp.deprocess(x, "NCHW")
    assert out.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(out, np.clip(x / std * 0.1 + 0.5, 0, 1).transpose(0, 2, 3, 1),
                               atol=1e-12)
    np.testing.assert_allclose(pp.deprocess(x.transpose(0, 2, 3, 1), "NHWC"), out, atol=1e-12)
    np.testing.assert_allclose(pp.deprocess(x[0], "NCHW"), out[0], atol=1e-12)


def test_deprocess_clips_and_repeats_one_channel():
    x = np.zeros((1, 1, 1, 100))
    x[..., 0] = 100.0  # mean 1, std sqrt(99): the spike is 9.9 std above -> clipped to 1
    out = pp.deprocess(x, "NCHW")
    assert out.shape == (1, 1, 100, 3)
    assert out[0, 0, 0].tolist() == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(out[0, 0, 1:], 0.5 - 0.1 / np.sqrt(99), atol=1e-12)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_array_equal(pp.deprocess(np.full((3, 4, 4), 7.0), "NCHW"), 0.5)


def test_deprocess_refuses_channels_it_cannot_show():
    with pytest.raises(AttribError, match="1 or 3 channels"):
        pp.deprocess(np.zeros((1, 2, 4, 4)), "NCHW")


def test_resize_map_uses_height_width_order():
    maps = np.arange(6, dtype=np.float64).reshape(1, 2, 3)
    out = pp.resize_map(maps, (4, 6))
    assert out.shape == (1, 4, 6)
    np.testing.assert_array_equal(out, attrib.resize_bilinear(maps, (4, 6)))
    # a map that varies only along the width keeps doing so after resizing
    along_w = np.tile(np.array([0.0, 1.0]), (3, 1))[None]  # (1, 3, 2)
    wide = pp.resize_map(along_w, (3, 8))
    np.testing.assert_array_equal(wide[0, 0], [0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1])
    np.testing.assert_array_equal(wide[0, 0], wide[0, 2])
    assert pp.resize_map(maps[0], 5).shape == (5, 5)
    assert pp.resize_map(np.ones((2, 2), dtype=np.int64), (3, 3)).dtype == np.float64


@pytest.mark.parametrize("size", [0, (3,), (2, -1), "big", (2.0, 3)])
def test_resize_map_bad_sizes(size):
    with pytest.raises(AttribError, match="size"):
        pp.resize_map(np.zeros((1, 2, 2)), size)


def test_to_hwc():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(pp.to_hwc(x, "NCHW"), x.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(pp.to_hwc(x[0], "NCHW"), x[0].transpose(1, 2, 0))
    np.testing.assert_array_equal(pp.to_hwc(x, "NHWC"), x)
    assert pp.to_hwc(x, "NCHW").dtype == x.dtype


# ----------------------------------------------------------------------------- overlay


def test_overlay_top_of_jet_in_rgb_order():
    image = np.zeros((2, 3, 3))
    out = pp.overlay(image, np.ones((2, 3)), "jet", alpha=1.0)
    top = matplotlib.colormaps["jet"](1.0)[:3]  # dark red (0.5, 0, 0)
    np.testing.assert_allclose(out, np.broadcast_to(top, (2, 3, 3)))
    assert out[0, 0, 0] > 0.4 and out[0, 0, 2] == 0.0  # R first, not BGR
    bottom = pp.overlay(image, np.zeros((2, 3)), "jet", alpha=1.0)
    assert bottom[0, 0, 2] > 0.4 and bottom[0, 0, 0] == 0.0  # jet's bottom is blue


def test_overlay_blends_with_alpha():
    image = np.full((2, 2, 3), 0.2)
    heat = np.array([[0.0, 0.5], [1.0, 0.25]])
    colour = matplotlib.colormaps["viridis"](heat)[..., :3]
    np.testing.assert_allclose(pp.overlay(image, heat, "viridis", alpha=0.3),
                               0.7 * image + 0.3 * colour)
    np.testing.assert_allclose(pp.overlay(image, heat, alpha=0.0), image)
    cmap = matplotlib.colormaps["gray"]
    np.testing.assert_allclose(pp.overlay(image, heat, cmap, alpha=1.0)[..., 0], heat, atol=1e-2)


def test_overlay_uint8_gray_batched_and_resized():
    image = np.full((4, 6), 255, dtype=np.uint8)  # gray, uint8
    out = pp.overlay(image, np.ones((2, 3)), alpha=0.5)  # heat-map resized to (4, 6)
    assert out.shape == (4, 6, 3)
    top = np.array(matplotlib.colormaps["jet"](1.0)[:3])
    np.testing.assert_allclose(out, np.broadcast_to(0.5 + 0.5 * top, out.shape))
    batch = pp.overlay(np.zeros((3, 4, 6, 3)), np.zeros((3, 2, 3)))
    assert batch.shape == (3, 4, 6, 3)
    shared = pp.overlay(np.zeros((4, 6, 3)), np.zeros((3, 4, 6)))
    assert shared.shape == (3, 4, 6, 3)


@pytest.mark.parametrize("kwargs, match", [
    ({"heatmap": np.full((2, 2), 2.0)}, "minmax"),
    ({"image": np.full((2, 2, 3), -1.0)}, "denormalize"),
    ({"colormap": "jett"}, "jet"),
    ({"alpha": 1.5}, "alpha"),
    ({"heatmap": np.full((2, 2), np.nan)}, "NaN"),
    ({"heatmap": np.zeros((5, 2, 2))}, "one per image"),
])
def test_overlay_bad_input(kwargs, match):
    arguments = {"image": np.zeros((3, 2, 2, 3)), "heatmap": np.zeros((3, 2, 2)), **kwargs}
    if "image" in kwargs:
        arguments["image"] = kwargs["image"]
        arguments["heatmap"] = np.zeros((2, 2))
    with pytest.raises(AttribError, match=match):
        pp.overlay(**arguments)


# ----------------------------------------------------------------------------- input checks


def test_layout_is_required_for_arrays_and_checked():
    with pytest.raises(AttribError, match="layout"):
        pp.grayscale(np.zeros((1, 3, 2, 2)))
    with pytest.raises(AttribError, match="layout"):
        pp.grayscale(np.zeros((1, 3, 2, 2)), "CHW")


def test_an_explanation_brings_its_layout():
    rng = np.random.default_rng(3)
    g = rng.normal(size=(2, 4, 4, 3))
    explanation = Explanation(attribution=g, method="saliency", backend="jax", layer=None,
                              targets=np.array([0, 1]), logits=np.zeros((2, 2)), layout="NHWC")
    np.testing.assert_array_equal(pp.grayscale(explanation), pp.grayscale(g, "NHWC"))
    np.testing.assert_array_equal(pp.deprocess(explanation), pp.deprocess(g, "NHWC"))
    cam = Explanation(attribution=np.abs(g[..., 0]), method="gradcam", backend="jax",
                      layer="conv", targets=np.array([0, 1]), logits=np.zeros((2, 2)),
                      layout="NHWC")
    assert pp.grayscale(cam).shape == (2, 4, 4)  # an (N, H, W) CAM is one channel
    np.testing.assert_array_equal(pp.minmax(cam), pp.minmax(cam.attribution))


@pytest.mark.parametrize("bad", [np.array([[np.nan, 1.0]]), np.array([[np.inf, 1.0]])])
def test_non_finite_maps_are_refused(bad):
    for function in (pp.minmax, pp.diverging, pp.positive_saliency):
        with pytest.raises(AttribError, match="finite"):
            function(bad)


def test_wrong_types_and_shapes():
    with pytest.raises(AttribError, match="real numbers"):
        pp.minmax(np.array(["a", "b"]))
    with pytest.raises(AttribError, match="shape"):
        pp.grayscale(np.zeros((1, 1, 1, 2, 2)), "NCHW")
    with pytest.raises(AttribError, match="percentile"):
        pp.grayscale(np.zeros((2, 2)), percentile=0)
    with pytest.raises(AttribError, match="axis"):
        pp.minmax(np.zeros((2, 2)), axis=5)
    with pytest.raises(AttribError, match="non-empty"):
        pp.minmax(np.zeros((0, 3)))


def test_float32_stays_float32_and_ints_become_float64():
    x32 = np.ones((1, 3, 2, 2), dtype=np.float32)
    assert pp.grayscale(x32, "NCHW").dtype == np.float32
    assert pp.deprocess(x32, "NCHW").dtype == np.float32
    assert pp.minmax(np.arange(4)).dtype == np.float64


def test_exported_from_attrib():
    assert attrib.grayscale is pp.grayscale and attrib.overlay is pp.overlay


# ----------------------------------------------------------------------------- properties

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
shapes4 = hnp.array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=5)
maps4 = hnp.arrays(np.float64, shapes4, elements=finite)
layouts = st.sampled_from(["NCHW", "NHWC"])
deprocessable = shapes4.filter(lambda s: s[1] in (1, 3)).flatmap(
    lambda s: hnp.arrays(np.float64, s, elements=finite))
property_settings = settings(max_examples=60, deadline=None)


def special(shape: tuple[int, ...], kind: str, value: float) -> np.ndarray:
    if kind == "zero":
        return np.zeros(shape)
    if kind == "constant":
        return np.full(shape, value)
    rng = np.random.default_rng(abs(int(value * 1000)) % 2**32)
    magnitude = rng.uniform(0.0, 1.0, size=shape) * abs(value)
    return magnitude if kind == "positive" else -magnitude


specials = st.tuples(shapes4, st.sampled_from(["zero", "constant", "positive", "negative"]),
                     st.floats(min_value=-1e300, max_value=1e300).filter(lambda v: v != 0)
                     ).map(lambda t: special(*t))


def check_unit(out: np.ndarray, shape: tuple[int, ...]) -> None:
    assert out.shape == shape
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


@property_settings
@given(x=st.one_of(maps4, specials), layout=layouts, percentile=st.floats(1, 100))
def test_grayscale_properties(x, layout, percentile):
    out = pp.grayscale(x, layout, percentile)
    h_w = x.shape[2:] if layout == "NCHW" else x.shape[1:3]
    check_unit(out, (x.shape[0], *h_w))
    if not x.any() or (x == x.flat[0]).all():
        np.testing.assert_array_equal(out, 0.0)


@property_settings
@given(x=st.one_of(maps4, specials), layout=layouts)
def test_positive_negative_properties(x, layout):
    pos = pp.positive_saliency(x, layout)
    neg = pp.negative_saliency(x, layout)
    check_unit(pos, x.shape)
    check_unit(neg, x.shape)
    assert not (pos > 0)[x <= 0].any() and not (neg > 0)[x >= 0].any()
    if not (x < 0).any():
        np.testing.assert_array_equal(neg, 0.0)
    if not (x > 0).any():
        np.testing.assert_array_equal(pos, 0.0)
    for i in range(len(x)):  # the largest value of each side maps to exactly 1
        if (x[i] > 0).any():
            assert pos[i].max() == 1.0
        if (x[i] < 0).any():
            assert neg[i].max() == 1.0


@property_settings
@given(x=st.one_of(maps4, specials))
def test_minmax_diverging_properties(x):
    m = pp.minmax(x)
    check_unit(m, x.shape)
    d = pp.diverging(x)
    assert d.shape == x.shape and np.isfinite(d).all() and np.abs(d).max() <= 1.0
    assert (d[x == 0] == 0).all() and (np.sign(d) * np.sign(x) >= 0).all()  # 0 stays, no flips
    np.testing.assert_array_equal(np.abs(d).max(axis=(1, 2, 3))[np.abs(x).max(axis=(1, 2, 3)) > 0],
                                  1.0)
    u = pp.diverging_to_unit(d)
    check_unit(u, x.shape)
    np.testing.assert_array_equal(u[x == 0], 0.5)
    if (x == x.flat[0]).all():
        np.testing.assert_array_equal(m, 0.0)


@property_settings
@given(x=st.one_of(deprocessable, specials.filter(lambda a: a.shape[1] in (1, 3))),
       layout=layouts)
def test_deprocess_properties(x, layout):
    if layout == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    out = pp.deprocess(x, layout)
    h_w = x.shape[2:] if layout == "NCHW" else x.shape[1:3]
    check_unit(out, (x.shape[0], *h_w, 3))
    if (x == x.flat[0]).all():
        np.testing.assert_array_equal(out, 0.5)


@property_settings
@given(maps=hnp.arrays(np.float64, hnp.array_shapes(min_dims=3, max_dims=3, max_side=6),
                       elements=st.floats(-1e6, 1e6)),
       size=st.tuples(st.integers(1, 9), st.integers(1, 9)))
def test_resize_map_properties(maps, size):
    out = pp.resize_map(maps, size)
    assert out.shape == (maps.shape[0], *size) and np.isfinite(out).all()
    # bilinear interpolation never leaves the range of the values
    assert (out.min(axis=(1, 2)) >= maps.min(axis=(1, 2)) - 1e-6).all()
    assert (out.max(axis=(1, 2)) <= maps.max(axis=(1, 2)) + 1e-6).all()


@property_settings
@given(heat=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=6),
                       elements=st.floats(0, 1)),
       alpha=st.floats(0, 1))
def test_overlay_properties(heat, alpha):
    image = np.full((*heat.shape, 3), 0.5)
    out = pp.overlay(image, heat, alpha=alpha)
    check_unit(out, (*heat.shape, 3))

"""``signal_figure`` and ``volume_figure``: what they draw, and their errors (no framework)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import attrib  # noqa: E402
from attrib.plotting import save_figure, signal_figure, volume_figure  # noqa: E402


def _explanation(attribution: np.ndarray, inputs: np.ndarray, layout: str = "NCHW",
                 method: str = "saliency") -> attrib.Explanation:
    return attrib.Explanation(attribution=attribution, method=method, backend="numpy", layer=None,
                              targets=np.zeros(len(inputs), np.int64),
                              logits=np.zeros((len(inputs), 2)), layout=layout, inputs=inputs)


def test_signal_figure_draws_one_row_per_channel_with_the_map_as_a_band(tmp_path: object) -> None:
    x = np.random.default_rng(0).normal(size=(2, 3, 40))
    maps = np.zeros_like(x)
    maps[1, 2, 10] = -2.0
    fig = signal_figure(_explanation(maps, x), index=1)
    rows = [ax for ax in fig.axes if ax.images]
    assert len(rows) == 3
    band = rows[2].images[0].get_array()
    assert band.shape == (1, 40) and band[0, 10] == -2.0 and band.sum() == -2.0
    np.testing.assert_array_equal(rows[2].lines[0].get_ydata(), x[1, 2])
    assert rows[2].images[0].get_clim() == (-2.0, 2.0)  # symmetric about 0
    assert save_figure(fig, tmp_path / "s.png").stat().st_size > 0  # type: ignore[operator]


def test_signal_figure_of_a_channels_last_cam_repeats_the_band() -> None:
    x = np.random.default_rng(1).normal(size=(1, 40, 2))  # (N, L, C)
    cam = np.linspace(0, 1, 40)[None]
    fig = signal_figure(_explanation(cam, x, layout="NHWC", method="gradcam"))
    rows = [ax for ax in fig.axes if ax.images]
    assert len(rows) == 2
    for c, ax in enumerate(rows):
        np.testing.assert_array_equal(ax.images[0].get_array()[0], cam[0])
        np.testing.assert_array_equal(ax.lines[0].get_ydata(), x[0, :, c])


def test_volume_figure_slices_through_the_maximum() -> None:
    x = np.random.default_rng(2).normal(size=(1, 1, 5, 6, 7))
    cam = np.zeros((1, 5, 6, 7))
    cam[0, 3, 1, 4] = 1.0
    fig = volume_figure(_explanation(cam, x, method="gradcam"))
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.images[1].get_array().shape for ax in panels] == [(6, 7), (5, 7), (5, 6)]
    assert all(ax.images[1].get_array().max() == 1.0 for ax in panels)  # each slice holds it
    np.testing.assert_array_equal(panels[0].images[0].get_array(), x[0, 0, 3])
    assert "(3, 1, 4)" in fig._suptitle.get_text()


@pytest.mark.parametrize("call, message", [
    (lambda: signal_figure(_explanation(np.zeros((1, 2, 8, 8)), np.zeros((1, 2, 8, 8)))),
     r"data: expected a batch \(N, C, L\)"),
    (lambda: volume_figure(_explanation(np.zeros((1, 2, 8)), np.zeros((1, 2, 8)))),
     r"data: expected a batch \(N, C, D, H, W\)"),
    (lambda: signal_figure(_explanation(np.zeros((1, 2, 8)), np.zeros((1, 2, 8))), index=3),
     r"index: expected a sample index in \[0, 1\)"),
    (lambda: signal_figure(np.zeros((1, 2, 8))), r"explanation: expected an attrib.Explanation"),
    (lambda: signal_figure(_explanation(np.zeros((1, 2, 8)), np.zeros((1, 2, 8))),
                           channel_names=["a"]), r"channel_names: expected 2 names"),
])
def test_bad_arguments_are_clear_errors(call: object, message: str) -> None:
    with pytest.raises(attrib.AttribError, match=message):
        call()  # type: ignore[operator]


def _explained(spec_fn: object, method: str, layout: str) -> attrib.Explanation:
    """``method`` on the conformance suite's Conv1d / Conv3d network (NumPy reference model)."""
    from attrib.testing import ReferenceModel

    spec = spec_fn()  # type: ignore[operator]
    model = ReferenceModel(spec, layout=layout)
    from attrib._registry import default_registry

    cls = default_registry().method(method)
    options = {"layer": "conv1"} if cls.needs_layer else {}
    return cls(model, **options).attribute(spec.example_inputs(layout, np.float64), [0, 1, 2])


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_explanation_plot_draws_signals_with_signal_figure(layout: str, tmp_path: object) -> None:
    from attrib.testing import small_signal_cnn

    explanation = _explained(small_signal_cnn, "saliency", layout)
    fig = explanation.plot(index=2)
    rows = [ax for ax in fig.axes if ax.images]
    maps = explanation.attribution[2] if layout == "NCHW" else explanation.attribution[2].T
    signal = explanation.inputs[2] if layout == "NCHW" else explanation.inputs[2].T
    assert len(rows) == 2  # one per channel
    for c, ax in enumerate(rows):
        np.testing.assert_array_equal(ax.images[0].get_array()[0], maps[c])
        np.testing.assert_array_equal(ax.lines[0].get_ydata(), signal[c])
    assert explanation.save(tmp_path / "signal.png").stat().st_size > 0  # type: ignore[operator]
    assert explanation._repr_png_()[:4] == b"\x89PNG"
    cam = _explained(small_signal_cnn, "gradcam", layout)
    rows = [ax for ax in cam.plot().axes if ax.images]
    assert all(np.array_equal(ax.images[0].get_array()[0], cam.attribution[0]) for ax in rows)
    with pytest.raises(attrib.AttribError, match="ax: expected None for an Explanation of signals"):
        explanation.plot(ax=rows[0])


def test_explanation_plot_draws_volumes_with_volume_figure(tmp_path: object) -> None:
    from attrib.testing import small_volume_cnn

    cam = _explained(small_volume_cnn, "gradcam", "NHWC")
    fig = cam.plot(index=1)
    panels = [ax for ax in fig.axes if ax.images]
    heat = cam.attribution[1]
    d, h, w = np.unravel_index(int(np.argmax(heat)), heat.shape)
    assert len(panels) == 3 and f"({d}, {h}, {w})" in fig._suptitle.get_text()
    np.testing.assert_array_equal(panels[0].images[1].get_array(), heat[d])
    np.testing.assert_array_equal(panels[0].images[0].get_array(),
                                  cam.inputs[1, d].mean(axis=-1))  # channels last: mean over C
    assert cam.save(tmp_path / "volume.png").stat().st_size > 0  # type: ignore[operator]

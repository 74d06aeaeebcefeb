"""attrib.plotting: figures built from synthetic Explanations, saved and read back as PNG."""

from __future__ import annotations

import subprocess
import sys

import matplotlib
import numpy as np
import pytest
from PIL import Image

from attrib import AttribError, Explanation
from attrib import plotting as plots

N, H, W = 2, 24, 32
PEAKS = [(6, 24), (18, 8)]  # (row, col) of each sample's Grad-CAM peak


def blob(peak: tuple[int, int], width: float = 20.0) -> np.ndarray:
    rows, cols = np.mgrid[:H, :W]
    return np.exp(-((rows - peak[0]) ** 2 + (cols - peak[1]) ** 2) / width)


def make(method: str, attribution: np.ndarray, layout: str = "NCHW",
         layer: str | None = None, **extra) -> Explanation:
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(N, 3, H, W) if layout == "NCHW" else (N, H, W, 3))
    return Explanation(attribution=attribution, method=method, backend="numpy", layer=layer,
                       targets=np.array([3, 7]), logits=np.zeros((N, 10)), layout=layout,
                       inputs=inputs, **extra)


@pytest.fixture
def explanations() -> dict[str, Explanation]:
    rng = np.random.default_rng(1)
    cam = np.stack([blob(p) for p in PEAKS])
    gradient = rng.normal(size=(N, 3, H, W)) * np.stack([blob(p, 60) for p in PEAKS])[:, None]
    guided = np.maximum(gradient, 0)
    return {
        "gradcam": make("gradcam", cam, layer="layer4"),
        "saliency": make("saliency", gradient),
        "guided_backprop": make("guided_backprop", guided),
        "guided_gradcam": make("guided_gradcam", guided * cam[:, None], layer="layer4",
                               parts={"gradcam": cam, "guided_backprop": guided}),
        "gradient_x_input": make("gradient_x_input", gradient * rng.normal(size=gradient.shape)),
    }


@pytest.fixture
def images() -> np.ndarray:
    ramp = np.linspace(0.3, 0.7, W)  # a horizontal gray ramp: an image that is not blank
    return np.broadcast_to(ramp[None, None, :, None], (N, H, W, 3)).copy()


def read_png(path) -> np.ndarray:
    with Image.open(path) as png:
        assert png.format == "PNG"
        return np.asarray(png.convert("RGB")).astype(np.float64) / 255.0


def panels(fig) -> list[tuple[str, tuple[int, int, int, int]]]:
    """(title, (top, bottom, left, right) in PNG pixels) of each drawn panel."""
    fig.canvas.draw()
    height = fig.canvas.get_width_height()[1]
    found = []
    for ax in fig.axes:
        if not ax.images:
            continue
        box = ax.get_window_extent()
        found.append((ax.get_title(), (int(height - box.y1) + 2, int(height - box.y0) - 2,
                                       int(box.x0) + 2, int(box.x1) - 2)))
    return found


def save_and_check(fig, path, expected_titles: list[str], blank: tuple[int, ...] = ()
                   ) -> tuple[np.ndarray, dict]:
    """Save, read back, and check every panel shows something (the ``blank`` ones: black)."""
    found = panels(fig)
    assert [title for title, _ in found] == expected_titles
    width, height = fig.canvas.get_width_height()
    written = plots.save_figure(fig, path)
    assert written == path and path.is_file()
    picture = read_png(path)
    assert picture.shape == (height, width, 3)
    crops = {}
    for index, (title, (top, bottom, left, right)) in enumerate(found):
        crop = picture[top:bottom, left:right]
        assert crop.size
        if index in blank:
            assert crop.max() == 0.0, f"panel {index} ({title!r}) should be black"
        else:
            assert crop.std() > 0.01, f"panel {index} ({title!r}) is blank"
        crops[index] = crop
    return picture, crops


def test_seed_figure_layout_titles_and_pixels(tmp_path, explanations, images):
    fig = plots.seed_figure(images, explanations, class_names={3: "cat"})
    row = ["Grad-CAM", "Vanilla gradient", "Guided backprop", "Guided Grad-CAM",
           "Gradient × input"]
    titles = ["Original (cat)", *row, "Original (class 7)", *row]
    assert len(fig.axes) == 2 * 6
    save_and_check(fig, tmp_path / "figs" / "seed.png", titles)


def test_a_class_name_with_synonyms_shows_the_first_so_the_title_fits(tmp_path, explanations,
                                                                       images):
    # ImageNet's names list synonyms after commas: "Original (lampshade, lamp shade 0.24)" ran
    # past its panel and was clipped at the figure's edge
    names = {3: "lampshade, lamp shade", 7: "tabby, tabby cat"}
    fig = plots.seed_figure(images, {"gradcam": explanations["gradcam"]}, class_names=names,
                            probabilities=True)
    logits = np.asarray(explanations["gradcam"].logits, dtype=np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p = p / p.sum(1, keepdims=True)
    save_and_check(fig, tmp_path / "synonyms.png",
                   [f"Original (lampshade {p[0, 3]:.2f})", "Grad-CAM",
                    f"Original (tabby {p[1, 7]:.2f})", "Grad-CAM"])


def test_seed_figure_original_panel_is_the_given_image(tmp_path, explanations):
    checker = np.indices((H, W)).sum(axis=0) % 2
    image = np.repeat(checker[None, ..., None], 3, axis=-1).astype(np.float64).repeat(N, 0)
    fig = plots.seed_figure(image, {"gradcam": explanations["gradcam"]})
    assert fig.axes[0].images[0].get_array().shape == (H, W, 3)
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), image[0])
    save_and_check(fig, tmp_path / "one.png", ["Original (class 3)", "Grad-CAM",
                                               "Original (class 7)", "Grad-CAM"])


def test_gradcam_panel_is_red_on_the_peak_and_blue_away_in_rgb(explanations, images):
    fig = plots.seed_figure(images, {"gradcam": explanations["gradcam"]})
    for sample, peak in enumerate(PEAKS):
        shown = fig.axes[2 * sample + 1].images[0].get_array()
        assert shown.shape == (H, W, 3)
        hot = shown[peak]
        cold = shown[(peak[0] + H // 2) % H, (peak[1] + W // 2) % W]
        jet = matplotlib.colormaps["jet"]
        np.testing.assert_allclose(hot, 0.5 * images[sample][peak] + 0.5 * np.array(jet(1.0)[:3]),
                                   atol=1e-6)
        assert hot[0] > hot[2] and cold[2] > cold[0]  # R at the peak, B away: RGB order
    matplotlib.pyplot.close(fig)


def test_seed_figure_skips_missing_methods_and_uses_guided_gradcam_parts(tmp_path, explanations,
                                                                       images):
    fig = plots.seed_figure(images, {"guided_gradcam": explanations["guided_gradcam"]})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:4] == ["Original (class 3)", "Grad-CAM", "Guided backprop", "Guided Grad-CAM"]
    plots.save_figure(fig, tmp_path / "parts.png")
    fig = plots.seed_figure(None, {"saliency": explanations["saliency"]})
    # no image: the inputs, min-max scaled, are shown as the original
    assert [ax.get_title() for ax in fig.axes][:2] == ["Original (class 3)", "Vanilla gradient"]
    save_and_check(fig, tmp_path / "saliency_only.png",
                   ["Original (class 3)", "Vanilla gradient",
                    "Original (class 7)", "Vanilla gradient"])


def test_saliency_figure(tmp_path, explanations, images):
    gradient = explanations["saliency"]
    fig = plots.saliency_figure(gradient, images)
    row = ["Gray", "Color", "Positive", "Negative"]
    assert fig.get_suptitle() == "Vanilla gradient"
    _, crops = save_and_check(fig, tmp_path / "saliency.png",
                              ["Original (class 3)", *row, "Original (class 7)", *row])
    fig = plots.saliency_figure(explanations["guided_backprop"])
    positive = fig.axes[2].images[0].get_array()
    np.testing.assert_allclose(
        positive, np.maximum(explanations["guided_backprop"].attribution[0], 0).transpose(1, 2, 0)
        / explanations["guided_backprop"].attribution[0].max(), atol=1e-12)
    # guided backprop is never negative: its negative-saliency panels are black
    save_and_check(fig, tmp_path / "guided.png", row + row, blank=(3, 7))


def test_saliency_figure_negative_panel_of_a_positive_map_is_black(explanations):
    fig = plots.saliency_figure(explanations["guided_backprop"])
    np.testing.assert_array_equal(fig.axes[3].images[0].get_array(), 0.0)
    matplotlib.pyplot.close(fig)


def test_grid_figure_methods_by_images(tmp_path, explanations, images):
    fig = plots.grid_figure(explanations, images)
    labels = ["Grad-CAM", "Vanilla gradient", "Guided backprop", "Guided Grad-CAM",
              "Gradient × input"]
    assert len(fig.axes) == (len(explanations) + 1) * N
    found = [title for title, _ in panels(fig)]
    # axes are row-major: row 0 the images, then one row per method
    assert found[:2] == ["Image (class 3)", "Image (class 7)"]
    assert found[2:] == [label for label in labels for _ in range(N)]
    save_and_check(fig, tmp_path / "grid.png", found)


def test_a_long_title_is_wrapped_inside_a_narrow_figure(explanations, images):
    title = "attrib demo: the bundled CNN on generated scenes, every method (torch)"
    fig = plots.grid_figure({"saliency": explanations["saliency"]}, images, title=title)
    renderer = fig.canvas.get_renderer()
    box = fig._suptitle.get_window_extent(renderer)
    assert fig._suptitle.get_text().replace("\n", " ") == title
    assert "\n" in fig._suptitle.get_text()  # two 2-inch panels: one line would not fit
    assert 0 <= box.x0 and box.x1 <= fig.bbox.x1
    matplotlib.pyplot.close(fig)


def test_gradient_x_input_is_diverging_with_zero_at_the_centre(explanations):
    fig = plots.grid_figure({"gradient_x_input": explanations["gradient_x_input"]})
    image = fig.axes[2].images[0]
    assert image.get_cmap().name == "RdBu_r"
    assert image.get_clim() == (-1.0, 1.0)
    matplotlib.pyplot.close(fig)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_layouts_give_the_same_pictures(layout, explanations):
    gradient = explanations["saliency"].attribution
    if layout == "NHWC":
        gradient = gradient.transpose(0, 2, 3, 1)
    picture, kwargs = plots.render(make("saliency", gradient, layout), 1, style="rgb")
    reference, _ = plots.render(explanations["saliency"], 1, style="rgb")
    assert picture.shape == (H, W, 3)
    np.testing.assert_allclose(picture, reference, atol=1e-12)


def test_explanation_plot_and_save(tmp_path, explanations, images):
    cam = explanations["gradcam"]
    fig = cam.plot(images)
    assert [ax.get_title() for ax in fig.axes] == ["Grad-CAM (class 3)", "Grad-CAM (class 7)"]
    matplotlib.pyplot.close(fig)
    path = cam.save(tmp_path / "deep" / "cam", image=images)
    assert path == tmp_path / "deep" / "cam.png"
    picture = read_png(path)
    assert picture.std() > 0.05

    _, ax = matplotlib.pyplot.subplots()
    returned = explanations["saliency"].plot(ax=ax, index=1)
    assert returned is ax.figure and ax.get_title() == "Vanilla gradient (class 7)"
    shown = ax.images[0].get_array()
    assert shown.shape == (H, W) and ax.images[0].get_cmap().name == "gray"
    save_and_check(returned, tmp_path / "ax.png", ["Vanilla gradient (class 7)"])


def test_save_figure_closes_the_figure(tmp_path, explanations):
    plt = matplotlib.pyplot
    before = len(plt.get_fignums())
    fig = explanations["saliency"].plot()
    assert len(plt.get_fignums()) == before + 1
    plots.save_figure(fig, tmp_path / "x.png")
    assert len(plt.get_fignums()) == before


def test_bad_arguments(tmp_path, explanations, images):
    with pytest.raises(AttribError, match="Explanation"):
        plots.seed_figure(images, {"gradcam": np.zeros((N, H, W))})
    with pytest.raises(AttribError, match="non-empty dict"):
        plots.seed_figure(images, {})
    short = make("saliency", np.zeros((N, 3, H, W)))
    one = Explanation(attribution=np.zeros((1, 3, H, W)), method="saliency", backend="numpy",
                      layer=None, targets=np.array([0]), logits=np.zeros((1, 10)),
                      layout="NCHW")
    with pytest.raises(AttribError, match="batch size"):
        plots.grid_figure({"saliency": short, "other": one}, images)
    with pytest.raises(AttribError, match="one per explained sample"):
        plots.seed_figure(np.zeros((3, H, W, 3)), explanations)
    with pytest.raises(AttribError, match="input-space"):
        plots.saliency_figure(explanations["gradcam"])
    with pytest.raises(AttribError, match="style"):
        explanations["saliency"].plot(style="grey")
    with pytest.raises(AttribError, match="index"):
        explanations["saliency"].plot(index=5)
    with pytest.raises(AttribError, match="Figure"):
        plots.save_figure("not a figure", tmp_path / "x.png")
    fig = explanations["saliency"].plot()
    with pytest.raises(AttribError, match="png"):
        plots.save_figure(fig, tmp_path / "x.notaformat")
    matplotlib.pyplot.close(fig)


def test_import_attrib_loads_neither_matplotlib_nor_pil():
    code = ("import sys, attrib, attrib.postprocess, attrib.preprocess\n"
            "bad = [m for m in ('matplotlib', 'PIL', 'torch', 'jax') if m in sys.modules]\n"
            "assert not bad, bad\n"
            "import attrib.plotting\n"
            "assert 'matplotlib' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_built_in_method_has_a_panel_title_and_the_demo_shows_them_by_family():
    from attrib import Registry
    from attrib._cli._demo import _methods

    built_in = [name for name, cls in Registry().methods().items()
                if cls.__module__.split(".")[0] == "attrib"]
    assert sorted(plots.METHOD_LABELS) == sorted(built_in)
    assert len(set(plots.METHOD_LABELS.values())) == len(built_in)
    order = _methods()
    assert order[:4] == ["gradcam", "saliency", "guided_backprop", "guided_gradcam"]
    assert order.index("gradcam_pp") < order.index("ablationcam") < order.index("integrated_gradients")


def test_seed_figure_columns_are_chosen_not_implied_by_the_labels(tmp_path, explanations, images):
    smooth = make("smoothgrad", explanations["saliency"].attribution)
    # every method given has a column by default (a SmoothGrad alone used to raise)
    fig = plots.seed_figure(None, {"smoothgrad": smooth})
    assert [ax.get_title() for ax in fig.axes] == ["Original (class 3)", "SmoothGrad",
                                                    "Original (class 7)", "SmoothGrad"]
    fig = plots.seed_figure(images, {**explanations, "smoothgrad": smooth},
                            columns=["guided_backprop", "smoothgrad", "gradcam"])
    save_and_check(fig, tmp_path / "columns.png",
                   [f"Original (class {k})" if i == 0 else t
                    for k in (3, 7) for i, t in enumerate(["", "Guided backprop", "SmoothGrad",
                                                           "Grad-CAM"])])
    with pytest.raises(AttribError, match=r"columns: expected methods of .* got 'gradcma'. "
                                          r"Did you mean 'gradcam'\?"):
        plots.seed_figure(images, explanations, columns=["gradcma"])
    with pytest.raises(AttribError, match="columns: expected a sequence of method names"):
        plots.seed_figure(images, explanations, columns="gradcam")
    with pytest.raises(AttribError, match="columns: expected at least one of"):
        plots.seed_figure(images, explanations, columns=[])


def test_the_demo_seed_figures_keep_their_columns():
    # the columns the demo's seed figures showed while they were implied by METHOD_LABELS
    from attrib._cli._demo import PHOTO_METHODS, _methods, _seed_columns

    assert _seed_columns(_methods()) == [
        "gradcam", "saliency", "guided_backprop", "guided_gradcam", "gradient_x_input",
        "deconvnet", "lrp", "deeplift", "deeplift_shap"]
    assert _seed_columns(list(PHOTO_METHODS)) == [
        "gradcam", "saliency", "guided_backprop", "guided_gradcam", "deconvnet", "gradient_x_input"]


def test_segmentation_and_detection_figures() -> None:
    from attrib.plotting import detection_figure, segmentation_figure

    image = np.random.default_rng(0).random((16, 20, 3))
    maps = np.random.default_rng(1).random((2, 16, 20))
    mask = np.zeros((16, 20))
    mask[4:10, 5:15] = 1
    fig = segmentation_figure(image, maps, mask)
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 2 and all(ax.collections for ax in axes)  # the mask's outline on both
    fig = detection_figure(image, [[1, 2, 8, 9], [5, 5, 15, 12]], [maps[0], maps[1]],
                           labels=["a", "b"])
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["a", "b"]
    assert all(len(ax.patches) == 1 for ax in fig.axes if ax.images)
    with pytest.raises(AttribError, match=r"^maps: expected one map per box \(2\)"):
        detection_figure(image, [[1, 2, 8, 9], [5, 5, 15, 12]], [maps[0]])

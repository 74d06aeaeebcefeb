"""attrib.preprocess: loading, resize + centre crop, ImageNet normalisation and back."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from attrib import AttribError
from attrib import preprocess as pre


def test_imagenet_constants():
    np.testing.assert_allclose(pre.IMAGENET_MEAN, [0.485, 0.456, 0.406], rtol=1e-6)
    np.testing.assert_allclose(pre.IMAGENET_STD, [0.229, 0.224, 0.225], rtol=1e-6)
    with pytest.raises(ValueError):
        pre.IMAGENET_MEAN[0] = 0.0  # read-only: nobody changes them for everyone


# ----------------------------------------------------------------------------- load_image


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK"])
def test_load_image_from_files_of_any_mode(tmp_path, mode):
    rgb = skimage.data.chelsea()[:40, :50]
    path = tmp_path / f"cat_{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
    Image.fromarray(rgb).convert(mode).save(path)
    image = pre.load_image(path)
    assert image.shape == (40, 50, 3) and image.dtype == np.uint8
    if mode == "RGB":
        np.testing.assert_array_equal(image, rgb)
    if mode == "L":
        np.testing.assert_array_equal(image[..., 0], image[..., 2])
    if mode == "RGBA":
        np.testing.assert_array_equal(image, rgb)
    assert pre.load_image(str(path)).shape == (40, 50, 3)


def test_load_image_from_arrays_and_pil():
    gray = skimage.data.camera()[:8, :9]
    image = pre.load_image(gray)
    assert image.shape == (8, 9, 3)
    np.testing.assert_array_equal(image[..., 1], gray)
    rgba = np.dstack([skimage.data.coffee()[:4, :4], np.zeros((4, 4), np.uint8)])
    np.testing.assert_array_equal(pre.load_image(rgba), rgba[..., :3])
    np.testing.assert_array_equal(pre.load_image(np.array([[[0.0, 0.5, 1.0]]])), [[[0, 128, 255]]])
    np.testing.assert_array_equal(pre.load_image(Image.fromarray(gray)), image)
    original = skimage.data.astronaut()
    assert pre.load_image(original) is not original  # a copy, never the caller's array


def test_load_image_errors(tmp_path):
    with pytest.raises(AttribError, match="existing image file"):
        pre.load_image(tmp_path / "missing.png")
    with pytest.raises(AttribError, match="directory"):
        pre.load_image(tmp_path)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(AttribError, match="PIL can read"):
        pre.load_image(text)
    with pytest.raises(AttribError, match=r"\[0, 1\]"):
        pre.load_image(np.full((2, 2, 3), 2.0))
    with pytest.raises(AttribError, match="shape"):
        pre.load_image(np.zeros((2, 2, 2)))
    with pytest.raises(AttribError, match="path, a PIL image or an array"):
        pre.load_image(42)


# ----------------------------------------------------------------------------- crop geometry


def test_center_crop_geometry_without_resize():
    image = np.arange(6 * 8, dtype=np.uint8).reshape(6, 8)
    crop = pre.resize_and_center_crop(image, (2, 4), resize=None)
    # top = round((6 - 2) / 2) = 2, left = round((8 - 4) / 2) = 2
    np.testing.assert_array_equal(crop[..., 0], image[2:4, 2:6])
    odd = pre.resize_and_center_crop(image, 3, resize=None)
    # top = round(1.5) = 2 (banker's rounding, as torchvision), left = round(2.5) = 2
    np.testing.assert_array_equal(odd[..., 0], image[2:5, 2:5])


def test_resize_keeps_the_aspect_then_crops_the_centre():
    cat = skimage.data.chelsea()  # (300, 451, 3)
    out = pre.resize_and_center_crop(cat, 224, 256)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    resized = np.asarray(Image.fromarray(cat).resize((int(256 * 451 / 300), 256),
                                                     Image.Resampling.BILINEAR))
    assert resized.shape == (256, 384, 3)
    np.testing.assert_array_equal(out, resized[16:240, 80:304])
    tall = pre.resize_and_center_crop(np.zeros((90, 30, 3), np.uint8), (20, 10), 15)
    assert tall.shape == (20, 10, 3)


def test_a_marked_centre_stays_in_the_centre():
    image = np.zeros((120, 200, 3), np.uint8)
    image[55:65, 95:105] = 255  # a white square at the centre
    out = pre.resize_and_center_crop(image, 40, 48)
    rows, cols = np.nonzero(out[..., 0] > 128)
    assert abs(rows.mean() - 19.5) < 1 and abs(cols.mean() - 19.5) < 1


def test_crop_larger_than_the_image_is_refused():
    with pytest.raises(AttribError, match="no larger than"):
        pre.resize_and_center_crop(np.zeros((10, 20, 3), np.uint8), 16, resize=12)
    with pytest.raises(AttribError, match="resize"):
        pre.resize_and_center_crop(np.zeros((10, 20, 3), np.uint8), 4, resize=0)
    with pytest.raises(AttribError, match="size"):
        pre.resize_and_center_crop(np.zeros((10, 20, 3), np.uint8), (4, 4, 4))


# ----------------------------------------------------------------------------- normalisation


def test_normalize_exact_values_and_layouts():
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 0] = (255, 0, 51)
    nchw = pre.normalize(image, "NCHW")
    assert nchw.shape == (1, 3, 2, 3) and nchw.dtype == np.float32
    expected = (np.array([1.0, 0.0, 0.2]) - pre.IMAGENET_MEAN) / pre.IMAGENET_STD
    np.testing.assert_allclose(nchw[0, :, 0, 0], expected, rtol=1e-6)
    nhwc = pre.normalize(image, "NHWC")
    assert nhwc.shape == (1, 2, 3, 3)
    np.testing.assert_array_equal(nhwc, nchw.transpose(0, 2, 3, 1))
    mine = pre.normalize([image, image], "NHWC", mean=0.5, std=0.5)
    np.testing.assert_allclose(mine[1, 0, 0], [1.0, -1.0, -0.6], rtol=1e-6)


def test_normalize_errors():
    with pytest.raises(AttribError, match="layout"):
        pre.normalize(np.zeros((2, 2, 3)), "CHW")
    with pytest.raises(AttribError, match="std"):
        pre.normalize(np.zeros((2, 2, 3)), std=(1.0, 0.0, 1.0))
    with pytest.raises(AttribError, match="3 finite"):
        pre.normalize(np.zeros((2, 2, 3)), mean=(0.5, 0.5))
    with pytest.raises(AttribError, match="one size"):
        pre.normalize([np.zeros((2, 2, 3)), np.zeros((3, 2, 3))])


@settings(max_examples=50, deadline=None)
@given(images=hnp.arrays(np.float64, hnp.array_shapes(min_dims=4, max_dims=4, max_side=6)
                         .map(lambda s: (*s[:3], 3)), elements=st.floats(0, 1)),
       layout=st.sampled_from(["NCHW", "NHWC"]))
def test_normalize_then_denormalize_is_the_identity(images, layout):
    back = pre.denormalize(pre.normalize(images, layout), layout)
    assert back.shape == images.shape
    np.testing.assert_allclose(back, images, atol=1e-6)


def test_denormalize_single_image_and_clipping():
    x = pre.normalize(skimage.data.coffee()[:16, :16], "NCHW")
    single = pre.denormalize(x[0], "NCHW")
    assert single.shape == (16, 16, 3)
    np.testing.assert_allclose(single, skimage.data.coffee()[:16, :16] / 255.0, atol=1e-6)
    out = pre.denormalize(np.full((1, 3, 2, 2), 50.0), "NCHW")
    np.testing.assert_array_equal(out, 1.0)


# ----------------------------------------------------------------------------- prepare


def test_prepare_photos_from_scikit_image():
    photos = [skimage.data.chelsea(), skimage.data.astronaut(), skimage.data.coffee(),
              skimage.data.camera()]
    batch = pre.prepare(photos, "NCHW", size=64)
    assert batch.shape == (4, 3, 64, 64) and batch.dtype == np.float32
    # each is resize (73 = round(64 * 256 / 224)) + centre crop + ImageNet normalisation
    for photo, x in zip(photos, batch):
        expected = pre.normalize(pre.resize_and_center_crop(photo, 64, 73), "NCHW")[0]
        np.testing.assert_array_equal(x, expected)
    nhwc = pre.prepare(photos, "NHWC", size=64)
    np.testing.assert_array_equal(nhwc, batch.transpose(0, 2, 3, 1))
    shown = pre.denormalize(batch, "NCHW")
    assert shown.shape == (4, 64, 64, 3) and 0 <= shown.min() and shown.max() <= 1


def test_prepare_one_photo_a_path_or_a_batch(tmp_path):
    path = tmp_path / "cat.png"
    Image.fromarray(skimage.data.chelsea()).save(path)
    from_path = pre.prepare(path, "NCHW", size=32)
    from_array = pre.prepare(skimage.data.chelsea(), "NCHW", size=32)
    assert from_path.shape == (1, 3, 32, 32)
    np.testing.assert_array_equal(from_path, from_array)
    stacked = pre.prepare(np.stack([skimage.data.chelsea()] * 2), "NHWC", size=32)
    assert stacked.shape == (2, 32, 32, 3)
    assert pre.prepare(skimage.data.chelsea(), size=224).shape == (1, 3, 224, 224)
    with pytest.raises(AttribError, match="at least one"):
        pre.prepare([], "NCHW")

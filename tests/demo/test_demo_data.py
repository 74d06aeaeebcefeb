"""attrib.demo_data: deterministic generated scenes whose masks are the objects' pixels."""

from __future__ import annotations

import numpy as np
import pytest

import attrib
from attrib._demo import CLASS_NAMES, demo_weights_path


def test_same_seed_same_arrays_and_another_seed_others() -> None:
    a, b, c = attrib.demo_data(8, seed=3), attrib.demo_data(8, seed=3), attrib.demo_data(8, seed=4)
    for name in ("images", "labels", "masks"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.images, c.images)


def test_shapes_types_ranges_and_balanced_labels() -> None:
    images, labels, masks, names = attrib.demo_data(12, seed=0)
    assert images.shape == (12, 64, 64, 3) and images.dtype == np.float32
    assert labels.shape == (12,) and labels.dtype == np.int64
    assert masks.shape == (12, 64, 64) and masks.dtype == bool
    assert names == CLASS_NAMES == ("circle", "square", "triangle", "cross")
    assert images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(labels, minlength=4), [3, 3, 3, 3])


def test_masks_are_one_uniformly_coloured_object_inside_the_image() -> None:
    data = attrib.demo_data(40, seed=5)
    for image, mask in zip(data.images, data.masks):
        area = mask.mean()
        assert 0.015 < area < 0.2
        # the object is drawn in one colour (plus pixel noise of sd 0.03) exactly on the mask
        assert image[mask].std(axis=0).max() < 0.05
        # ... and differs from its surroundings
        ring = _dilate(mask, 3) & ~mask
        assert np.abs(image[mask].mean(axis=0) - image[ring].mean(axis=0)).max() > 0.15
        # the object does not touch the border
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def test_shapes_differ_by_class() -> None:
    """Fill ratio of the mask in its bounding box: circle ~pi/4, square 1, triangle ~1/2, cross < 1/2."""
    data = attrib.demo_data(40, seed=6)
    ratios: dict[int, list[float]] = {k: [] for k in range(4)}
    for label, mask in zip(data.labels, data.masks):
        rows, cols = np.nonzero(mask)
        box = (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
        ratios[int(label)].append(mask.sum() / box)
    mean = {k: float(np.mean(v)) for k, v in ratios.items()}
    assert mean[1] > 0.95
    assert 0.72 < mean[0] < 0.85
    assert 0.4 < mean[2] < 0.6
    assert mean[3] < 0.55


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": 2.5}, {"seed": -1}, {"size": 16},
                                    {"n": True}])
def test_bad_arguments_are_attrib_errors(kwargs: dict) -> None:
    with pytest.raises(attrib.AttribError):
        attrib.demo_data(**kwargs)


def test_demo_model_rejects_unknown_backend() -> None:
    with pytest.raises(attrib.AttribError, match="'torch' or 'jax'"):
        attrib.demo_model("tensorflow")


def test_weights_ship_small() -> None:
    path = demo_weights_path()
    assert path.is_file()
    assert len(path.read_bytes()) < 1_000_000


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out

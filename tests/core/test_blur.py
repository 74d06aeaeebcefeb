"""attrib._blur.gaussian_blur against scipy.ndimage, in both padding modes and layouts."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest

from attrib._blur import gaussian_blur


@pytest.mark.parametrize(("mode", "scipy_mode"), [("symmetric", "reflect"), ("reflect", "mirror")])
def test_matches_scipy_gaussian_filter(mode: Literal["symmetric", "reflect"], scipy_mode: str) -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(2).uniform(size=(2, 3, 20, 13))
    want = ndimage.gaussian_filter(x, sigma=(0, 0, 1.5, 1.5), mode=scipy_mode, truncate=3.0)
    radius = int(3.0 * 1.5 + 0.5)  # scipy's truncation
    got = gaussian_blur(x, 1.5, "NCHW", radius, mode=mode)
    np.testing.assert_allclose(got, want, atol=1e-12)
    channels_last = gaussian_blur(x.transpose(0, 2, 3, 1), 1.5, "NHWC", radius, mode=mode)
    np.testing.assert_array_equal(channels_last, got.transpose(0, 2, 3, 1))


def test_a_radius_per_axis_blurs_only_where_it_is_positive() -> None:
    x = np.random.default_rng(3).uniform(size=(1, 1, 6, 6)).astype(np.float32)
    only_h = gaussian_blur(x, 1.0, "NCHW", (2, 0))
    assert only_h.dtype == np.float64
    np.testing.assert_allclose(only_h.sum(axis=2), x.sum(axis=2), rtol=1e-5)  # columns keep their mass
    assert not np.allclose(only_h, x)
    np.testing.assert_array_equal(gaussian_blur(x, 1.0, "NCHW", (0, 0)), x.astype(np.float64))

"""Bilinear resizing with half-pixel centres, against values computed by hand."""

from __future__ import annotations

import numpy as np

from attrib import resize_bilinear


def test_two_by_two_to_four_by_four_by_hand():
    # output x=1 sits at source (1+0.5)/2-0.5 = 0.25: 0.75*a + 0.25*b; x=0 clamps to the first centre
    out = resize_bilinear(np.array([[[0.0, 4.0], [8.0, 12.0]]]), (4, 4))
    np.testing.assert_allclose(out[0, 0], [0, 1, 3, 4])
    np.testing.assert_allclose(out[0, :, 0], [0, 2, 6, 8])
    np.testing.assert_allclose(out[0, 1, 1], 0.75 * 2 + 0.25 * 6)


def test_height_and_width_are_not_swapped():
    out = resize_bilinear(np.zeros((2, 3, 5)), (6, 10))
    assert out.shape == (2, 6, 10)


def test_constant_maps_stay_constant_and_same_size_is_identity():
    np.testing.assert_allclose(resize_bilinear(np.full((1, 3, 3), 2.5), (7, 5)), 2.5)
    m = np.random.default_rng(0).normal(size=(1, 4, 4))
    np.testing.assert_array_equal(resize_bilinear(m, (4, 4)), m)


def test_downsampling_by_two_averages_neighbours():
    # source position of output i is 2i+0.5: the mean of pixels 2i and 2i+1
    m = np.arange(16.0).reshape(1, 4, 4)
    out = resize_bilinear(m, (2, 2))
    np.testing.assert_allclose(out[0], [[2.5, 4.5], [10.5, 12.5]])

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


def test_resized_maps_are_c_ordered_and_equal_an_independent_formula():
    # every later copy (a Zarr store, torch.from_numpy) pays for another memory order
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(3, 5, 4)).astype(np.float32)
    out = resize_bilinear(maps, (9, 11))
    assert out.flags.c_contiguous and out.dtype == np.float32
    # the same bilinear weights, applied as two small matrices (a second mechanism)
    def weights(n_in: int, n_out: int) -> np.ndarray:
        source = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(source).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        matrix = np.zeros((n_out, n_in))
        np.add.at(matrix, (np.arange(n_out), lo), 1 - (source - lo))
        np.add.at(matrix, (np.arange(n_out), hi), source - lo)
        return matrix
    expected = np.einsum("yh,nhw,xw->nyx", weights(5, 9), maps.astype(np.float64), weights(4, 11))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)

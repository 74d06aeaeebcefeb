"""The NumPy metric math of attrib.evaluate against scipy / scikit-image and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

import attrib
from attrib.evaluate import energy_in_mask, pointing_game
from attrib.evaluate._similarity import pearson, ranks, spearman, ssim, unit_scaled
from attrib.evaluate.faithfulness import blurred


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 21, 18))
    b = a + rng.normal(size=a.shape)
    a[0, :6] = 1.0  # ties
    b[1] = np.round(b[1])  # many ties
    return a, b


def test_spearman_and_pearson_match_scipy(pair: tuple[np.ndarray, np.ndarray]) -> None:
    stats = pytest.importorskip("scipy.stats")
    a, b = pair
    for i in range(len(a)):
        assert spearman(a, b)[i] == pytest.approx(stats.spearmanr(a[i].ravel(), b[i].ravel())[0],
                                                  abs=1e-12)
        assert pearson(a, b)[i] == pytest.approx(stats.pearsonr(a[i].ravel(), b[i].ravel())[0],
                                                 abs=1e-12)
        np.testing.assert_allclose(ranks(a[i].ravel()[None])[0], stats.rankdata(a[i].ravel()))


def test_ssim_matches_skimage(pair: tuple[np.ndarray, np.ndarray]) -> None:
    metrics = pytest.importorskip("skimage.metrics")
    a, b = unit_scaled(pair[0]), unit_scaled(pair[1])
    for i in range(len(a)):
        want = metrics.structural_similarity(a[i], b[i], data_range=1.0)
        assert ssim(a, b)[i] == pytest.approx(want, abs=1e-10)
    assert ssim(a, a) == pytest.approx(np.ones(len(a)))


def test_constant_maps_score_zero_not_nan() -> None:
    a = np.zeros((2, 5, 5))
    b = np.arange(50.0).reshape(2, 5, 5)
    assert np.array_equal(spearman(a, b), [0.0, 0.0])
    assert np.array_equal(pearson(b, a), [0.0, 0.0])


def test_pointing_game_by_hand() -> None:
    masks = np.zeros((3, 224, 224), dtype=bool)
    masks[:, 100:120, 100:120] = True
    maps = np.zeros((3, 224, 224))
    maps[0, 110, 110] = 1.0  # inside
    maps[1, 110, 134] = 1.0  # 15 px right of the mask's last column (119): a hit at 224 px
    maps[2, 110, 135] = 1.0  # 16 px: a miss
    result = pointing_game(maps, masks)
    assert result.scores.tolist() == [1.0, 1.0, 0.0]
    # the random-point baseline: share of pixels within 15 px of the square (distance to a box
    # computed in closed form by clamping)
    yy, xx = np.mgrid[0:224, 0:224]
    dy = yy - np.clip(yy, 100, 119)
    dx = xx - np.clip(xx, 100, 119)
    assert result.baseline[0] == pytest.approx(float((dy ** 2 + dx ** 2 <= 225).mean()), abs=1e-12)
    # the tolerance scales with the image: 15 * 64 / 224 px on 64 px images
    small = np.zeros((1, 64, 64), dtype=bool)
    small[0, 10:20, 10:20] = True
    near = np.zeros((1, 64, 64))
    near[0, 15, 23] = 1.0  # 4 px away, within 4.29
    far = np.zeros((1, 64, 64))
    far[0, 15, 24] = 1.0  # 5 px away
    assert pointing_game(near, small).scores.tolist() == [1.0]
    assert pointing_game(far, small).scores.tolist() == [0.0]


def test_energy_in_mask_by_hand() -> None:
    masks = np.zeros((1, 4, 4), dtype=bool)
    masks[0, :2, :2] = True
    maps = np.zeros((1, 4, 4))
    maps[0, 0, 0] = 3.0
    maps[0, 3, 3] = 1.0
    maps[0, 3, 2] = -5.0  # negative attribution does not count
    assert energy_in_mask(maps, masks).scores.tolist() == [0.75]
    assert energy_in_mask(-np.abs(maps), masks).scores.tolist() == [0.0]


def test_bad_masks_and_maps_are_attrib_errors() -> None:
    with pytest.raises(attrib.AttribError, match="masks"):
        pointing_game(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(attrib.AttribError, match="attributions"):
        energy_in_mask(np.full((1, 4, 4), np.nan), np.ones((1, 4, 4), dtype=bool))


def test_blur_matches_scipy() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(1).uniform(size=(2, 3, 16, 16))
    want = ndimage.gaussian_filter(x, sigma=(0, 0, 2.0, 2.0), mode="reflect", truncate=3.0)
    np.testing.assert_allclose(blurred(x, 2.0, "NCHW"), want, atol=1e-12)


def test_ranks_of_every_row_at_once_equal_scipy_exactly() -> None:
    # one sort for all rows; ties (runs of equal values, also -0.0 and 0.0) get their average rank
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    rows = np.round(rng.normal(size=(6, 300)) * 2).astype(np.float32)
    rows[0] = 0.0
    rows[1, :3] = [-0.0, 0.0, -0.0]
    rows[2] = rng.normal(size=300)
    for x in (rows, rows.reshape(2, 3, 300), rows[4]):
        got = ranks(x)
        assert got.dtype == np.float64 and got.shape == x.shape
        assert np.array_equal(got, stats.rankdata(x, axis=-1))

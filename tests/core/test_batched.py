"""The chunking helpers of the multi-pass methods, against plain NumPy references.

``add_rows`` against ``np.add.at``; ``chunks`` covers every row once, in order, with
at most ``batch_size`` rows and one padded size on a backend that compiles per shape.
"""

from __future__ import annotations

import numpy as np
import pytest

from attrib.methods._batched import add_rows, chunks, default_batch_size


class _Backend:
    def __init__(self, compiles_per_shape: bool) -> None:
        self.compiles_per_shape = compiles_per_shape


def test_add_rows_equals_numpy_add_at() -> None:
    rng = np.random.default_rng(0)
    index = rng.integers(0, 5, size=23)
    values = rng.normal(size=(23, 3, 4))
    expected = rng.normal(size=(5, 3, 4))
    total = expected.copy()
    np.add.at(expected, index, values)
    add_rows(total, index, values)
    np.testing.assert_allclose(total, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("compiles", [False, True])
@pytest.mark.parametrize(("total", "batch_size"), [(1, 4), (6, 4), (10, 4), (400, 128),
                                                   (7, 7), (7, 100), (13, 1)])
def test_chunks_cover_every_row_once_within_batch_size(total: int, batch_size: int,
                                                       compiles: bool) -> None:
    parts = list(chunks(total, batch_size, _Backend(compiles)))  # type: ignore[arg-type]
    assert [start for start, _, _ in parts] == [0] + [stop for _, stop, _ in parts[:-1]]
    assert parts[-1][1] == total
    assert all(0 < stop - start <= size <= batch_size for start, stop, size in parts)
    sizes = [stop - start for start, stop, _ in parts]
    assert len(parts) == -(-total // batch_size)  # no more passes than needed
    assert max(sizes) - min(sizes) <= len(parts)  # no small remainder chunk
    if compiles:
        assert len({size for _, _, size in parts}) == 1


def test_default_batch_size_is_at_least_one_row() -> None:
    assert default_batch_size(np.zeros((2, 3, 2000, 2000))) == 1


@pytest.mark.parametrize(("method", "option"), [("smoothgrad", "noise"),
                                                ("gradient_shap", "stdevs")])
def test_noise_scales_share_one_check(method: str, option: str) -> None:
    import attrib
    from attrib import GradientResult
    from support.array_model import ArrayModel

    model = ArrayModel(GradientResult(inputs=np.zeros((1, 1, 2, 2)), logits=np.zeros((1, 2)),
                                      targets=np.zeros(1, np.int64)))
    cls = attrib.Registry().method(method)
    assert getattr(cls(model, **{option: 0.25}), option) == 0.25
    for value, kind in [("big", attrib.AttribTypeError), (True, attrib.AttribTypeError),
                        (-0.1, attrib.AttribValueError), (float("nan"), attrib.AttribValueError),
                        (float("inf"), attrib.AttribValueError)]:
        with pytest.raises(kind, match=f"^{option}: expected a finite float >= 0"):
            cls(model, **{option: value})

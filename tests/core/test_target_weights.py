"""Target weights: parsing and validation in the core, and the weighted score's reference gradient."""

from __future__ import annotations

import numpy as np
import pytest

import attrib
from attrib._targets import (
    complete_target_weights,
    split_target,
    weighted_score_gradient,
    weighted_scores,
)

LOGITS = np.array([[1.0, 3.0, 2.0], [5.0, 0.0, -1.0]])


def test_integer_sequences_stay_classes_and_floats_are_weights() -> None:
    targets, weights = split_target([0, 2], 2)
    np.testing.assert_array_equal(targets, [0, 2])
    assert weights is None
    targets, weights = split_target(np.array([0.0, 1.0, -1.0]), 2)
    assert targets is None
    np.testing.assert_array_equal(weights, [[0, 1, -1], [0, 1, -1]])
    _, weights = split_target([[1, 0, 0], [0, 0, 1]], 2)  # 2-D ints: weights per sample
    assert weights is not None and weights.dtype == np.float64 and weights.shape == (2, 3)
    _, mapping = split_target({2: 1, 0: -0.5}, 2)
    assert isinstance(mapping, dict)
    np.testing.assert_array_equal(complete_target_weights(mapping, 2, 3), [[-0.5, 0, 1]] * 2)


@pytest.mark.parametrize(("target", "message"), [
    (np.ones((3, 3)), r"one row of weights per sample, shape \(2, classes\)"),
    (np.array([1.0, np.nan]), "finite target weights"),
    (np.ones((2, 3, 1)), r"target weights of shape \(classes,\) or \(2, classes\)"),
    ([[1, 2], [3]], "class indices, or target weights"),
    ({}, "a non-empty mapping"),
    ({"cat": 1.0}, "keys are class indices"),
    ({1: "a lot"}, "numeric weights"),
    ({-1: 1.0}, "keys are class indices"),
    ({0: float("inf")}, "finite weights"),
])
def test_bad_weights_name_the_problem(target: object, message: str) -> None:
    with pytest.raises(attrib.AttribError, match=message):
        split_target(target, 2)


def test_out_of_range_class_and_wrong_width() -> None:
    with pytest.raises(attrib.AttribError, match=r"class indices in \[0, 2\].*got 5"):
        complete_target_weights({5: 1.0}, 2, 3)
    with pytest.raises(attrib.AttribError, match="matching the model's logits"):
        attrib.resolve_target_weights(np.ones((2, 4)), LOGITS)


@pytest.mark.parametrize("objective", attrib.OBJECTIVES)
def test_weighted_score_gradient_matches_finite_differences(objective: str) -> None:
    weights = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -0.3]])

    def total(logits: np.ndarray) -> float:
        return float(weighted_scores(logits, np.zeros(2, np.int64), weights, objective).sum())

    numeric = np.zeros_like(LOGITS)
    for index in np.ndindex(LOGITS.shape):
        step = np.zeros_like(LOGITS)
        step[index] = 1e-6
        numeric[index] = (total(LOGITS + step) - total(LOGITS - step)) / 2e-6
    np.testing.assert_allclose(weighted_score_gradient(LOGITS, weights, objective), numeric,
                               rtol=1e-6, atol=1e-9)
    one_hot = np.eye(3)[[1, 0]]
    np.testing.assert_allclose(weighted_scores(LOGITS, np.zeros(2, np.int64), one_hot, objective),
                               attrib.objective_scores(LOGITS, np.array([1, 0]), objective))

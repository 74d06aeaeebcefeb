"""Target and objective validation, and the objectives' NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

import attrib
from attrib import check_target, objective_scores, resolve_targets

LOGITS = np.array([[1.0, 3.0, 2.0], [5.0, 0.0, -1.0]])


def test_none_is_argmax_per_sample_not_over_the_flattened_batch():
    assert check_target(None, 2) is None
    np.testing.assert_array_equal(resolve_targets(None, LOGITS), [1, 0])


def test_int_and_sequences():
    np.testing.assert_array_equal(check_target(2, 2), [2, 2])
    np.testing.assert_array_equal(check_target([0, 2], 2), [0, 2])
    np.testing.assert_array_equal(check_target(np.array([2, 1]), 2), [2, 1])
    np.testing.assert_array_equal(check_target(np.int64(1), 2), [1, 1])


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ([1, 2, 0], r"target: expected one class per sample \(2 ints for a batch of 2\), got 3 ints"),
        ("cat", "target: expected None, an int or a sequence of ints, got 'cat'"),
        ([0.5, 1], "target: expected a sequence of ints"),
        (True, "target: expected None, an int"),
    ],
)
def test_bad_targets_say_what_was_expected(target, message):
    with pytest.raises(attrib.AttribError, match=message):
        check_target(target, 2)


def test_target_out_of_range_names_the_class_count():
    expected = r"class indices in \[0, 2\] \(the model has 3 classes\), got 7"
    with pytest.raises(attrib.AttribValueError, match=expected):
        resolve_targets(np.array([0, 7]), LOGITS)


def test_objective_scores_against_hand_computed_values():
    targets = np.array([1, 0])
    np.testing.assert_allclose(objective_scores(LOGITS, targets, "logit"), [3.0, 5.0])
    e = np.exp(LOGITS)
    softmax = e / e.sum(1, keepdims=True)
    np.testing.assert_allclose(objective_scores(LOGITS, targets, "softmax"), [softmax[0, 1], softmax[1, 0]])
    np.testing.assert_allclose(
        objective_scores(LOGITS, targets, "log_softmax"), np.log([softmax[0, 1], softmax[1, 0]])
    )


def test_unknown_objective():
    from attrib._targets import check_objective

    with pytest.raises(attrib.AttribValueError, match="objective: .*Did you mean 'softmax'"):
        check_objective("sofmax")

"""The rectifier rules' NumPy references, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

import attrib
from attrib import get_rule

X = np.array([-2.0, -0.0, 0.5, 3.0, 7.0])
G = np.array([1.0, 1.0, -1.0, 2.0, -3.0])


def test_vanilla_is_the_true_relu_gradient():
    np.testing.assert_array_equal(get_rule("vanilla").reference(X, G), [0, 0, -1, 2, -3])


def test_guided_drops_negative_gradients_and_negative_inputs():
    np.testing.assert_array_equal(get_rule("guided").reference(X, G), [0, 0, 0, 2, 0])


def test_deconvnet_ignores_the_forward_mask():
    np.testing.assert_array_equal(get_rule("deconvnet").reference(X, G), [1, 1, 0, 2, 0])


def test_relu6_local_gradient_is_zero_above_six():
    np.testing.assert_array_equal(get_rule("vanilla").reference(X, G, upper=6.0), [0, 0, -1, 2, 0])
    np.testing.assert_array_equal(get_rule("guided").reference(X, -G, upper=6.0), [0, 0, 1, 0, 0])


def test_unknown_rule_is_an_attrib_error_with_a_suggestion():
    expected = "rule: expected one of .*'guided'.*Did you mean 'guided'"
    with pytest.raises(attrib.AttribValueError, match=expected):
        get_rule("guidded")


def test_rules_are_guided_activations():
    assert all(isinstance(r, attrib.GuidedActivation) for r in attrib.RULES.values())
    with pytest.raises(TypeError):
        attrib.GuidedActivation()  # abstract

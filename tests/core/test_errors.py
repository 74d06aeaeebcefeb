"""attrib._errors.check_choice / did_you_mean, and the option checks built on them (no framework)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import attrib
from attrib._demo import demo_weights
from attrib._errors import check_choice, did_you_mean
from attrib._registry import default_registry
from attrib.methods.integrated_gradients import quadrature
from attrib.postprocess import grayscale

KINDS = ("mean", "max", "median")


def test_a_valid_value_is_returned_unchanged() -> None:
    value = "max"
    assert check_choice("kind", value, KINDS) is value
    assert check_choice("kind", "mean", iter(KINDS)) == "mean"  # any iterable of choices
    assert check_choice("layout", "NHWC", {"NCHW": 1, "NHWC": 2}) == "NHWC"  # a dict's keys


def test_a_near_miss_says_did_you_mean_the_closest_choice() -> None:
    with pytest.raises(attrib.AttribValueError) as caught:
        check_choice("kind", "maen", KINDS)
    assert str(caught.value) == (
        "kind: expected one of ['mean', 'max', 'median'], got 'maen'. Did you mean 'mean'?")
    assert isinstance(caught.value, ValueError)  # code that catches ValueError keeps working


def test_a_far_miss_lists_the_choices_without_a_guess() -> None:
    with pytest.raises(attrib.AttribValueError) as caught:
        check_choice("kind", "zzzz", KINDS)
    assert str(caught.value) == "kind: expected one of ['mean', 'max', 'median'], got 'zzzz'"


def test_the_suggestion_follows_the_guess_or_stands_alone() -> None:
    with pytest.raises(attrib.AttribValueError, match=r"got 'zzzz'\. Pick a kind\.$"):
        check_choice("kind", "zzzz", KINDS, suggestion="Pick a kind.")
    with pytest.raises(attrib.AttribValueError,
                       match=r"got 'medain'\. Did you mean 'median'\? Pick a kind\.$"):
        check_choice("kind", "medain", KINDS, suggestion="Pick a kind.")


@pytest.mark.parametrize("value", [None, 3, ["mean"], ("mean",), b"mean"])
def test_a_value_that_is_not_a_string_is_never_a_choice(value: object) -> None:
    with pytest.raises(attrib.AttribValueError) as caught:
        check_choice("kind", value, KINDS)
    assert f"got {value!r}" in str(caught.value)
    assert "Did you mean" not in str(caught.value)


def test_did_you_mean_names_the_closest_or_every_close_choice() -> None:
    layers = ["conv1", "conv2", "fc"]
    assert did_you_mean("conv3", layers) == "Did you mean 'conv2'?"  # difflib's order
    assert did_you_mean("conv3", layers, every=True) == "Did you mean 'conv2' or 'conv1'?"
    assert did_you_mean("zzzz", layers) is None
    assert did_you_mean("", layers) is None


def _reference_model(layout: str) -> Any:
    from attrib.testing import ReferenceModel, default_specs

    return ReferenceModel(default_specs()[0], layout=layout)


def _conformance(layout: str) -> Any:
    from attrib.testing import Conformance

    return Conformance(backend="reference", build=lambda spec: spec, layout=layout)


@pytest.mark.parametrize(("call", "argument", "near"), [
    (lambda: attrib.get_rule("guidde"), "rule", "guided"),
    (lambda: default_registry().method("gradcm"), "method", "gradcam"),
    (lambda: grayscale(np.ones((1, 3, 4, 4)), layout="NHWD"), "layout", "NHWC"),
    (lambda: demo_weights("permutd"), "weights", "permuted"),
    (lambda: quadrature("riemann_lft", 1), "rule", "riemann_left"),  # before the steps check
    (lambda: _reference_model("NCHX"), "layout", "NCHW"),
    (lambda: _conformance("NHWCC"), "layout", "NHWC"),
])
def test_option_checks_in_the_core_guess_the_near_choice(call: Callable[[], Any], argument: str,
                                                         near: str) -> None:
    with pytest.raises(attrib.AttribValueError, match=rf"^{argument}: expected one of \[.*\], "
                                                      rf"got .*Did you mean '{near}'\?"):
        call()

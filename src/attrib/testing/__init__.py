"""Conformance suite for attrib backends: tiny NumPy networks and their exact references.

A backend author writes a *builder* that turns a :class:`NetSpec` (layers as
NumPy arrays) into their framework's model, then runs the suite either as a
function::

    import attrib.testing
    attrib.testing.check_backend("mybackend", build, layout="NCHW")

or as pytest tests, by subclassing :class:`BackendConformance`::

    from attrib.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        backend = "mybackend"
        layout = "NCHW"

        @staticmethod
        def build(spec):
            ...

The suite checks the logits, layer names and capture (activations and true
gradients under every rectifier rule), every method the backend supports for
targets ``None`` / int / list and objectives ``logit`` / ``log_softmax`` /
``softmax``, guided Grad-CAM's exactness at layers with and without a
rectifier after them, clear :class:`attrib.AttribError` on bad input, and that
inputs are never modified. The networks are an image CNN, an MLP, a
``Conv1d`` signal network and a ``Conv3d`` volume network
(:func:`default_specs`); on the last two the suite checks what depends on the
number of spatial axes (logits, capture, the rectifier and LRP rules, the CAM
family, Grad-CAM and guided Grad-CAM, the multi-pass methods). Expected values come from a float64 NumPy
reference whose rectifiers use the core's rule references.

This package imports no framework (and not pytest).
"""

from __future__ import annotations

from ._conformance import BackendConformance
from ._expected import BUILTIN_METHODS, Expected, expected
from ._reference import ReferenceModel, backward, deeplift_backward, forward, score_gradient
from ._specs import (
    MARGIN,
    BatchNorm,
    Conv,
    Conv1d,
    Conv2d,
    Conv3d,
    Dense,
    GlobalAvgPool,
    NetSpec,
    ReLU,
    ReLU6,
    batchnorm_cnn,
    default_specs,
    small_cnn,
    small_mlp,
    small_signal_cnn,
    small_volume_cnn,
    split_inputs,
)
from ._suite import Case, Conformance, assert_close, cases, check_backend, run_case

__all__ = [
    "check_backend",
    "BackendConformance",
    "Conformance",
    "Case",
    "cases",
    "run_case",
    "assert_close",
    "NetSpec",
    "Conv",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "Dense",
    "BatchNorm",
    "ReLU",
    "ReLU6",
    "GlobalAvgPool",
    "small_cnn",
    "small_mlp",
    "small_signal_cnn",
    "small_volume_cnn",
    "batchnorm_cnn",
    "split_inputs",
    "default_specs",
    "MARGIN",
    "ReferenceModel",
    "forward",
    "backward",
    "deeplift_backward",
    "score_gradient",
    "expected",
    "Expected",
    "BUILTIN_METHODS",
]

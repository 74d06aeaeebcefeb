"""The one conformance suite, unchanged, for torch, jax (Flax linen) and the attrib-numpy example.

Only the builders differ (``backend_builders.py``). ``ATTRIB_TEST_BACKENDS``
(comma-separated, e.g. ``numpy,torch``) restricts which backends run.
"""

from __future__ import annotations

import os

import pytest
from plugins.backend_builders import build_linen, build_numpy, build_torch, jax_array, torch_tensor

from attrib.testing import BackendConformance

_SELECTED = {name.strip() for name in os.environ.get("ATTRIB_TEST_BACKENDS", "").split(",") if name.strip()}


def _selected(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(bool(_SELECTED) and name not in _SELECTED,
                              reason=f"ATTRIB_TEST_BACKENDS={','.join(sorted(_SELECTED))}")


@_selected("torch")
class TestTorchConformance(BackendConformance):
    backend = "torch"
    layout = "NCHW"
    build = staticmethod(build_torch)
    to_native = staticmethod(torch_tensor)
    rule_sets = True
    deeplift = True
    batchnorm = True


@_selected("jax")
class TestJaxLinenConformance(BackendConformance):
    backend = "jax"
    layout = "NHWC"
    build = staticmethod(build_linen)
    to_native = staticmethod(jax_array)
    # linen lists only modules that own variables: rectifiers and pooling are functions there
    parameter_free_layers = False
    rule_sets = True
    deeplift = True
    batchnorm = True


@_selected("numpy")
class TestNumpyExampleConformance(BackendConformance):
    backend = "numpy"
    layout = "NCHW"
    build = staticmethod(build_numpy)
    rule_sets = True
    deeplift = True

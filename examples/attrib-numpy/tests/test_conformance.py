"""attrib's conformance suite, run against this backend (as a third-party author would)."""

from __future__ import annotations

from typing import Any

import attrib_numpy as an
from attrib.testing import BackendConformance, NetSpec
from attrib.testing import Conv as ConvSpec
from attrib.testing import Dense as DenseSpec
from attrib.testing import GlobalAvgPool as PoolSpec
from attrib.testing import ReLU as ReLUSpec
from attrib.testing import ReLU6 as ReLU6Spec


def build(spec: NetSpec) -> an.Sequential:
    """The attrib_numpy network of a conformance spec, with the spec's layer names."""
    layers: list[tuple[str, Any]] = []
    for layer in spec.layers:
        if isinstance(layer, ConvSpec):  # Conv1d, Conv2d or Conv3d
            conv = {1: an.Conv1d, 2: an.Conv2d, 3: an.Conv3d}[layer.dims]
            native: Any = conv(layer.weight, layer.bias, stride=layer.stride,
                               padding=layer.padding)
        elif isinstance(layer, DenseSpec):
            native = an.Dense(layer.weight, layer.bias)
        elif isinstance(layer, ReLU6Spec):
            native = an.ReLU6()
        elif isinstance(layer, ReLUSpec):
            native = an.ReLU()
        elif isinstance(layer, PoolSpec):
            native = an.GlobalAvgPool()
        else:
            raise TypeError(f"unsupported layer {layer!r}")
        layers.append((layer.name, native))
    if spec.splits:  # a model of several inputs, net(x1, x2): joined along the channels first
        layers.insert(0, ("join", an.Concat(spec.splits)))
    return an.Sequential(layers)


class TestNumpyBackend(BackendConformance):
    backend = "numpy"
    layout = "NCHW"
    build = staticmethod(build)
    rule_sets = True
    deeplift = True

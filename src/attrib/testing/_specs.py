"""Tiny networks defined as NumPy arrays, which every backend rebuilds natively.

A :class:`NetSpec` is a sequence of named layers with their weights; a
backend author's *builder* turns it into the framework's own model (keeping
the layer names), and the conformance suite compares that model against the
NumPy reference in :mod:`attrib.testing._reference`. :func:`forward` runs a
spec in NumPy (float64), keeping every layer's input and output.

Conventions (whatever the backend's layout):

- ``Conv2d.weight`` is (out_channels, in_channels, kh, kw) — torch's OIHW;
  Flax wants ``weight.transpose(2, 3, 1, 0)`` (HWIO). Padding is symmetric
  and explicit (``padding`` zeros on every side), stride is the same on both
  axes. Flax: ``padding=((p, p), (p, p))``, never ``"SAME"``. ``Conv1d``
  (weight (O, I, k)) and ``Conv3d`` (weight (O, I, kd, kh, kw)) follow the
  same rules with one and three spatial axes (:class:`Conv` is their base;
  ``Conv.dims`` says how many).
- ``Dense.weight`` is (in_features, out_features): ``y = x @ weight + bias``
  (torch ``nn.Linear`` wants ``weight.T``).
- ``GlobalAvgPool`` averages over the spatial axes: (N, C, h, w) -> (N, C),
  and (N, C, l) or (N, C, d, h, w) likewise.
- ``ReLU`` is ``max(x, 0)``; ``ReLU6`` is ``min(max(x, 0), 6)``.
- ``NetSpec.inputs`` is an example batch channels first — (N, C, H, W)
  (images), (N, C, L) (signals), (N, C, D, H, W) (volumes) — or (N, D) (MLP);
  :meth:`NetSpec.example_inputs` gives it in a layout (``"NHWC"`` is channels
  last whatever the number of spatial axes).

The weights are drawn from a fixed seed and kept only if every rectifier
input is at least :data:`MARGIN` away from its kinks (0 and 6) and each
sample's top logits are apart, so float32 backends agree with the float64
reference on every mask and arg-max.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Conv",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "Dense",
    "BatchNorm",
    "GlobalAvgPool",
    "ReLU",
    "ReLU6",
    "Layer",
    "NetSpec",
    "small_cnn",
    "small_mlp",
    "small_signal_cnn",
    "small_volume_cnn",
    "batchnorm_cnn",
    "split_inputs",
    "default_specs",
    "MARGIN",
    "Trace",
    "forward",
]

#: smallest distance of any rectifier input from a kink, and of the top-2 logits
MARGIN = 1e-3


@dataclass(frozen=True, eq=False)
class Conv:
    """Convolution with ``dims`` spatial axes, weight (O, I, *kernel), bias (O,).

    The suite's specs use the subclasses :class:`Conv1d`, :class:`Conv2d` and
    :class:`Conv3d`; a builder can test for either.
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray
    stride: int = 1
    padding: int = 0

    @property
    def dims(self) -> int:
        """Number of spatial axes (1, 2 or 3)."""
        return int(self.weight.ndim) - 2


@dataclass(frozen=True, eq=False)
class Conv1d(Conv):
    """1-D convolution of signals (N, C, L), weight (O, I, k), bias (O,)."""


@dataclass(frozen=True, eq=False)
class Conv2d(Conv):
    """2-D convolution, weight (O, I, kh, kw), bias (O,)."""


@dataclass(frozen=True, eq=False)
class Conv3d(Conv):
    """3-D convolution of volumes (N, C, D, H, W), weight (O, I, kd, kh, kw), bias (O,)."""


@dataclass(frozen=True, eq=False)
class Dense:
    """Fully connected layer, weight (in, out), bias (out,): ``x @ weight + bias``."""

    name: str
    weight: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True, eq=False)
class BatchNorm:
    """BatchNorm at inference over the channel axis: ``(x - mean) / sqrt(var + eps) * weight + bias``.

    ``weight`` (γ), ``bias`` (β), ``mean`` and ``var`` (the running statistics)
    have shape (C,). Only :func:`batchnorm_cnn` holds one (the randomisation
    case's ``batchnorm=`` option); a backend's builder needs it only when
    :attr:`attrib.testing.Conformance.batchnorm` is set.
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float = 1e-5


@dataclass(frozen=True)
class ReLU:
    """``max(x, 0)``."""

    name: str


@dataclass(frozen=True)
class ReLU6:
    """``min(max(x, 0), 6)`` (``relu6``, ``hardtanh(0, 6)``)."""

    name: str


@dataclass(frozen=True)
class GlobalAvgPool:
    """Mean over the spatial axes: (N, C, *spatial) -> (N, C)."""

    name: str


Layer = Conv | Dense | BatchNorm | ReLU | ReLU6 | GlobalAvgPool


@dataclass(frozen=True, eq=False)
class NetSpec:
    """A tiny sequential network and an example batch.

    Attributes
    ----------
    name : str
        ``"cnn"``, ``"mlp"``, ``"signal"`` or ``"volume"`` (used in test ids).
    layers : tuple of layers
        Applied in order; every layer has a unique ``name``.
    inputs : ndarray, shape (N, C, H, W), (N, C, L), (N, C, D, H, W) or (N, D), float64
        Example batch (channels first).
    classes : int
        Number of logits.
    gradcam_layers : tuple of str
        Spatial layers the suite runs Grad-CAM and guided Grad-CAM at: some
        with a rectifier between them and the logits, one without.
    splits : tuple of int
        Empty for a model of one input. Otherwise the model takes several
        inputs, ``model(x1, x2, ...)``, and joins them along the channel (or
        feature) axis before its first layer: input ``i`` holds ``splits[i]``
        of the channels of :attr:`inputs` (see :func:`split_inputs`).
    """

    name: str
    layers: tuple[Layer, ...]
    inputs: np.ndarray
    classes: int
    gradcam_layers: tuple[str, ...] = ()
    splits: tuple[int, ...] = ()
    layer_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_names", tuple(layer.name for layer in self.layers))

    @property
    def is_image(self) -> bool:
        """Whether the inputs are images (N, C, H, W) rather than vectors (N, D)."""
        return self.inputs.ndim == 4

    @property
    def spatial_dims(self) -> int:
        """Number of spatial axes of the inputs: 2 (images), 1 (signals), 3 (volumes), 0 (vectors)."""
        return max(self.inputs.ndim - 2, 0)

    def example_inputs(self, layout: str = "NCHW", dtype: type = np.float32) -> np.ndarray:
        """The example batch in ``layout`` (``"NCHW"`` or ``"NHWC"``) and ``dtype``."""
        x = self.inputs
        if self.spatial_dims and layout == "NHWC":
            x = np.moveaxis(x, 1, -1)
        return np.ascontiguousarray(x, dtype=dtype)

    def several_example_inputs(self, layout: str = "NCHW",
                               dtype: type = np.float32) -> tuple[np.ndarray, ...]:
        """The example batch as the model's several inputs (:attr:`splits`), each in ``layout``."""
        if not self.splits:
            raise ValueError(f"NetSpec {self.name!r} takes one input (no splits)")
        return tuple(np.ascontiguousarray(part, dtype=dtype)
                     for part in self.split(self.example_inputs(layout, np.float64), layout))

    def split(self, array: np.ndarray, layout: str = "NCHW") -> tuple[np.ndarray, ...]:
        """An array shaped as :attr:`inputs` (in ``layout``) cut into the inputs' parts."""
        axis = -1 if layout == "NHWC" else 1
        return tuple(np.split(array, np.cumsum(self.splits)[:-1], axis=axis))

    def parametrised_layers(self) -> tuple[str, ...]:
        """Names of the layers with weights (convolutions, dense layers, BatchNorm)."""
        return tuple(layer.name for layer in self.layers
                     if isinstance(layer, (Conv, Dense, BatchNorm)))

    def rectifiers_after(self, layer: str) -> bool:
        """Whether a rectifier lies between ``layer``'s output and the logits."""
        index = self.layer_names.index(layer)
        return any(isinstance(lay, (ReLU, ReLU6)) for lay in self.layers[index + 1:])

    def __repr__(self) -> str:
        return f"NetSpec({self.name!r}, layers={list(self.layer_names)})"


@dataclass
class Trace:
    """A forward pass: the logits and every layer's input and output (channels first, float64)."""

    inputs: np.ndarray
    logits: np.ndarray
    layer_inputs: dict[str, np.ndarray]
    activations: dict[str, np.ndarray]


def _spatial_letters(dims: int) -> str:
    """Einsum letters of ``dims`` spatial axes: ``"w"``, ``"hw"``, ``"dhw"``."""
    return "dhw"[3 - dims:]


def conv_forward(x: np.ndarray, layer: Conv) -> np.ndarray:
    """Convolution as a sum over kernel offsets of strided slices (N, C, *S) -> (N, O, *s)."""
    p, s = layer.padding, layer.stride
    kernel = layer.weight.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0)) + ((p, p),) * len(kernel))
    out_sizes = tuple((size - k) // s + 1 for size, k in zip(xp.shape[2:], kernel, strict=True))
    out = np.zeros((x.shape[0], layer.weight.shape[0], *out_sizes))
    axes = _spatial_letters(len(kernel))
    for offset in itertools.product(*(range(k) for k in kernel)):
        window = xp[(slice(None), slice(None)) + tuple(
            slice(i, i + s * o, s) for i, o in zip(offset, out_sizes, strict=True))]
        out += np.einsum(f"nc{axes},oc->no{axes}", window,
                         layer.weight[(slice(None), slice(None)) + offset])
    return out + layer.bias.reshape((1, -1) + (1,) * len(kernel))


def forward(spec: NetSpec, inputs: np.ndarray,
            scales: dict[str, np.ndarray] | None = None,
            substitutes: dict[str, np.ndarray] | None = None) -> Trace:
    """Run ``spec`` on ``inputs`` (channels first or (N, D)) in float64, keeping every layer's input/output.

    ``scales`` multiplies the named layers' outputs (channels first) by factors, as
    :meth:`attrib.Model.forward_scaled` does; ``substitutes`` replaces them
    (channels first, any batch size), as :meth:`attrib.Model.forward_substituted` does.
    """
    x = np.asarray(inputs, dtype=np.float64)
    trace = Trace(inputs=x, logits=x, layer_inputs={}, activations={})
    for layer in spec.layers:
        trace.layer_inputs[layer.name] = x
        if isinstance(layer, Conv):
            x = conv_forward(x, layer)
        elif isinstance(layer, Dense):
            x = x @ layer.weight + layer.bias
        elif isinstance(layer, BatchNorm):
            shape = (1, -1) + (1,) * (x.ndim - 2)
            x = ((x - layer.mean.reshape(shape)) / np.sqrt(layer.var.reshape(shape) + layer.eps)
                 * layer.weight.reshape(shape) + layer.bias.reshape(shape))
        elif isinstance(layer, ReLU):
            x = np.maximum(x, 0.0)
        elif isinstance(layer, ReLU6):
            x = np.minimum(np.maximum(x, 0.0), 6.0)
        elif isinstance(layer, GlobalAvgPool):
            x = x.mean(axis=tuple(range(2, x.ndim)))
        else:  # pragma: no cover - the spec types are closed
            raise TypeError(f"unknown layer {layer!r}")
        if scales is not None and layer.name in scales:
            x = x * scales[layer.name]
        if substitutes is not None and layer.name in substitutes:
            x = np.asarray(substitutes[layer.name], dtype=np.float64)
        trace.activations[layer.name] = x
    trace.logits = x
    return trace


_CONVS: dict[int, type[Conv]] = {1: Conv1d, 2: Conv2d, 3: Conv3d}


def _conv(rng: np.random.Generator, name: str, cin: int, cout: int, scale: float,
          stride: int = 1, padding: int = 1, dims: int = 2) -> Conv:
    weight = rng.normal(0.0, scale, size=(cout, cin) + (3,) * dims)
    bias = rng.normal(0.0, 0.3, size=(cout,))
    return _CONVS[dims](name, weight, bias, stride=stride, padding=padding)


def _dense(rng: np.random.Generator, name: str, fin: int, fout: int, scale: float) -> Dense:
    return Dense(name, rng.normal(0.0, scale, size=(fin, fout)), rng.normal(0.0, 0.3, size=(fout,)))


def _well_conditioned(spec: NetSpec) -> bool:
    """Whether no rectifier input lies near a kink, ReLU6 clips both ends, and logits are apart."""
    trace = forward(spec, spec.inputs)
    clipped_above = False
    for layer in spec.layers:
        if isinstance(layer, (ReLU, ReLU6)):
            x = trace.layer_inputs[layer.name]
            if np.abs(x).min() < MARGIN:
                return False
            if isinstance(layer, ReLU6):
                if np.abs(x - 6.0).min() < MARGIN:
                    return False
                clipped_above |= bool((x > 6.0).any() and ((x > 0) & (x < 6)).any())
    if any(isinstance(layer, ReLU6) for layer in spec.layers) and not clipped_above:
        return False
    top2 = np.sort(trace.logits, axis=1)[:, -2:]
    if (top2[:, 1] - top2[:, 0]).min() < MARGIN:
        return False
    # the samples' arg-max classes differ, so target=None is not the same as an int
    return len(set(np.argmax(trace.logits, axis=1).tolist())) > 1


def small_cnn(seed: int = 0) -> NetSpec:
    """conv(3→4) relu conv(4→6, stride 2) relu6 conv(6→5) relu conv1x1(5→5) gap dense(5→4).

    Inputs (3, 3, 8, 8). Grad-CAM layers: ``conv1`` and ``conv3`` (rectifiers
    after them), ``relu3`` and ``conv4`` (none after them).
    """
    for attempt in range(seed, seed + 1000):
        rng = np.random.default_rng(attempt)
        layers: tuple[Layer, ...] = (
            _conv(rng, "conv1", 3, 4, 0.5),
            ReLU("relu1"),
            _conv(rng, "conv2", 4, 6, 1.2, stride=2),
            ReLU6("relu2"),
            _conv(rng, "conv3", 6, 5, 0.3),
            ReLU("relu3"),
            Conv2d("conv4", rng.normal(0.0, 0.7, size=(5, 5, 1, 1)), rng.normal(0.0, 0.3, size=(5,))),
            GlobalAvgPool("pool"),
            _dense(rng, "fc", 5, 4, 1.0),
        )
        inputs = rng.normal(0.0, 1.0, size=(3, 3, 8, 8))
        spec = NetSpec("cnn", layers, inputs, classes=4,
                       gradcam_layers=("conv1", "conv3", "relu3", "conv4"))
        if _well_conditioned(spec):
            return spec
    raise RuntimeError("no well-conditioned CNN found")  # pragma: no cover


def small_mlp(seed: int = 0) -> NetSpec:
    """dense(6→8) relu dense(8→8) relu6 dense(8→3), inputs (3, 6)."""
    for attempt in range(seed, seed + 1000):
        rng = np.random.default_rng(10_000 + attempt)
        layers: tuple[Layer, ...] = (
            _dense(rng, "fc1", 6, 8, 0.8),
            ReLU("relu1"),
            _dense(rng, "fc2", 8, 8, 1.5),
            ReLU6("relu2"),
            _dense(rng, "fc3", 8, 3, 0.7),
        )
        inputs = rng.normal(0.0, 1.5, size=(3, 6))
        spec = NetSpec("mlp", layers, inputs, classes=3)
        if _well_conditioned(spec):
            return spec
    raise RuntimeError("no well-conditioned MLP found")  # pragma: no cover


def split_inputs(spec: NetSpec, first: int = 1) -> NetSpec:
    """``spec`` as a model of two inputs: the first ``first`` channels (or features), and the rest.

    The model is called ``model(x1, x2)`` and joins its inputs along the channel
    axis before ``spec``'s first layer, so its logits, layer values and the
    gradients at the joined batch are ``spec``'s (name ``"<name>-2in"``).
    """
    rest = int(spec.inputs.shape[1]) - first
    if not 0 < first < spec.inputs.shape[1]:
        raise ValueError(f"first: expected 1 to {spec.inputs.shape[1] - 1}, got {first}")
    return NetSpec(f"{spec.name}-2in", spec.layers, spec.inputs, spec.classes,
                   gradcam_layers=spec.gradcam_layers, splits=(first, rest))


def _spatial_cnn(name: str, dims: int, size: int, seed: int, scales: tuple[float, ...]) -> NetSpec:
    """conv(2→3) relu conv(3→4, stride 2) relu6 conv(4→3) gap dense(3→3) with ``dims`` axes."""
    for attempt in range(seed, seed + 1000):
        rng = np.random.default_rng(20_000 * dims + attempt)
        layers: tuple[Layer, ...] = (
            _conv(rng, "conv1", 2, 3, scales[0], dims=dims),
            ReLU("relu1"),
            _conv(rng, "conv2", 3, 4, scales[1], stride=2, dims=dims),
            ReLU6("relu2"),
            _conv(rng, "conv3", 4, 3, scales[2], dims=dims),
            GlobalAvgPool("pool"),
            _dense(rng, "fc", 3, 3, 1.0),
        )
        inputs = rng.normal(0.0, 1.0, size=(3, 2) + (size,) * dims)
        spec = NetSpec(name, layers, inputs, classes=3, gradcam_layers=("conv1", "conv3"))
        if _well_conditioned(spec):
            return spec
    raise RuntimeError(f"no well-conditioned {name} network found")  # pragma: no cover


def small_signal_cnn(seed: int = 0) -> NetSpec:
    """A Conv1d network: conv(2→3) relu conv(3→4, stride 2) relu6 conv(4→3) gap dense(3→3).

    Inputs (3, 2, 10) (N, C, L). Grad-CAM layers: ``conv1`` (rectifiers after
    it) and ``conv3`` (none after it).
    """
    return _spatial_cnn("signal", 1, 10, seed, (0.8, 1.5, 0.6))


def small_volume_cnn(seed: int = 0) -> NetSpec:
    """A Conv3d network: conv(2→3) relu conv(3→4, stride 2) relu6 conv(4→3) gap dense(3→3).

    Inputs (3, 2, 5, 5, 5) (N, C, D, H, W). Grad-CAM layers: ``conv1``
    (rectifiers after it) and ``conv3`` (none after it).
    """
    return _spatial_cnn("volume", 3, 5, seed, (0.4, 0.8, 0.4))


def batchnorm_cnn(seed: int = 0) -> NetSpec:
    """conv(3→4) batchnorm relu gap dense(4→3), inputs (2, 3, 6, 6).

    Not in :func:`default_specs`: the randomisation case checks the
    ``batchnorm=`` option of :meth:`attrib.Model.randomized` on it. Its
    BatchNorm is off the identity (γ, β and running statistics drawn).
    """
    rng = np.random.default_rng(20_000 + seed)
    layers: tuple[Layer, ...] = (
        _conv(rng, "conv", 3, 4, 0.5),
        BatchNorm("bn", 0.8 + 0.4 * rng.random(4), rng.normal(0.0, 0.2, size=4),
                  rng.normal(0.0, 0.3, size=4), 0.5 + rng.random(4)),
        ReLU("relu"),
        GlobalAvgPool("pool"),
        _dense(rng, "fc", 4, 3, 1.0),
    )
    return NetSpec("batchnorm", layers, rng.normal(0.0, 1.0, size=(2, 3, 6, 6)), classes=3)


def default_specs() -> tuple[NetSpec, ...]:
    """The networks the suite runs by default.

    :func:`small_cnn` (images), :func:`small_mlp` (vectors),
    :func:`small_signal_cnn` (Conv1d) and :func:`small_volume_cnn` (Conv3d). A
    backend for images only passes ``specs=(small_cnn(), small_mlp())``.
    """
    return (small_cnn(), small_mlp(), small_signal_cnn(), small_volume_cnn())

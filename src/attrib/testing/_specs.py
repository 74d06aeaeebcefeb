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
  axes. Flax: ``padding=((p, p), (p, p))``, never ``"SAME"``.
- ``Dense.weight`` is (in_features, out_features): ``y = x @ weight + bias``
  (torch ``nn.Linear`` wants ``weight.T``).
- ``GlobalAvgPool`` averages over the spatial axes: (N, C, h, w) -> (N, C).
- ``ReLU`` is ``max(x, 0)``; ``ReLU6`` is ``min(max(x, 0), 6)``.
- ``NetSpec.inputs`` is an example batch in NCHW (images) or (N, D) (MLP);
  :meth:`NetSpec.example_inputs` gives it in a layout.

The weights are drawn from a fixed seed and kept only if every rectifier
input is at least :data:`MARGIN` away from its kinks (0 and 6) and each
sample's top logits are apart, so float32 backends agree with the float64
reference on every mask and arg-max.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Conv2d",
    "Dense",
    "GlobalAvgPool",
    "ReLU",
    "ReLU6",
    "Layer",
    "NetSpec",
    "small_cnn",
    "small_mlp",
    "default_specs",
    "MARGIN",
    "Trace",
    "forward",
]

#: smallest distance of any rectifier input from a kink, and of the top-2 logits
MARGIN = 1e-3


@dataclass(frozen=True, eq=False)
class Conv2d:
    """2-D convolution, weight (O, I, kh, kw), bias (O,)."""

    name: str
    weight: np.ndarray
    bias: np.ndarray
    stride: int = 1
    padding: int = 0


@dataclass(frozen=True, eq=False)
class Dense:
    """Fully connected layer, weight (in, out), bias (out,): ``x @ weight + bias``."""

    name: str
    weight: np.ndarray
    bias: np.ndarray


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
    """Mean over the spatial axes: (N, C, h, w) -> (N, C)."""

    name: str


Layer = Conv2d | Dense | ReLU | ReLU6 | GlobalAvgPool


@dataclass(frozen=True, eq=False)
class NetSpec:
    """A tiny sequential network and an example batch.

    Attributes
    ----------
    name : str
        ``"cnn"`` or ``"mlp"`` (used in test ids).
    layers : tuple of layers
        Applied in order; every layer has a unique ``name``.
    inputs : ndarray, shape (N, C, H, W) or (N, D), float64
        Example batch (NCHW for images).
    classes : int
        Number of logits.
    gradcam_layers : tuple of str
        4-D layers the suite runs Grad-CAM and guided Grad-CAM at: some with a
        rectifier between them and the logits, one without.
    """

    name: str
    layers: tuple[Layer, ...]
    inputs: np.ndarray
    classes: int
    gradcam_layers: tuple[str, ...] = ()
    layer_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_names", tuple(layer.name for layer in self.layers))

    @property
    def is_image(self) -> bool:
        """Whether the inputs are images (N, C, H, W) rather than vectors (N, D)."""
        return self.inputs.ndim == 4

    def example_inputs(self, layout: str = "NCHW", dtype: type = np.float32) -> np.ndarray:
        """The example batch in ``layout`` (``"NCHW"`` or ``"NHWC"``) and ``dtype``."""
        x = self.inputs
        if self.is_image and layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(x, dtype=dtype)

    def parametrised_layers(self) -> tuple[str, ...]:
        """Names of the layers with weights (convolutions and dense layers)."""
        return tuple(layer.name for layer in self.layers if isinstance(layer, (Conv2d, Dense)))

    def rectifiers_after(self, layer: str) -> bool:
        """Whether a rectifier lies between ``layer``'s output and the logits."""
        index = self.layer_names.index(layer)
        return any(isinstance(lay, (ReLU, ReLU6)) for lay in self.layers[index + 1:])

    def __repr__(self) -> str:
        return f"NetSpec({self.name!r}, layers={list(self.layer_names)})"


@dataclass
class Trace:
    """A forward pass: the logits and every layer's input and output (NCHW, float64)."""

    inputs: np.ndarray
    logits: np.ndarray
    layer_inputs: dict[str, np.ndarray]
    activations: dict[str, np.ndarray]


def conv_forward(x: np.ndarray, layer: Conv2d) -> np.ndarray:
    """Convolution as a sum over kernel offsets of strided slices (N, C, H, W) -> (N, O, h, w)."""
    p, s = layer.padding, layer.stride
    _, _, kh, kw = layer.weight.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    out_h = (xp.shape[2] - kh) // s + 1
    out_w = (xp.shape[3] - kw) // s + 1
    out = np.zeros((x.shape[0], layer.weight.shape[0], out_h, out_w))
    for i in range(kh):
        for j in range(kw):
            window = xp[:, :, i:i + s * out_h:s, j:j + s * out_w:s]
            out += np.einsum("nchw,oc->nohw", window, layer.weight[:, :, i, j])
    return out + layer.bias[None, :, None, None]


def forward(spec: NetSpec, inputs: np.ndarray,
            scales: dict[str, np.ndarray] | None = None,
            substitutes: dict[str, np.ndarray] | None = None) -> Trace:
    """Run ``spec`` on ``inputs`` (NCHW or (N, D)) in float64, keeping every layer's input/output.

    ``scales`` multiplies the named layers' outputs (NCHW) by factors, as
    :meth:`attrib.Model.forward_scaled` does; ``substitutes`` replaces them
    (NCHW, any batch size), as :meth:`attrib.Model.forward_substituted` does.
    """
    x = np.asarray(inputs, dtype=np.float64)
    trace = Trace(inputs=x, logits=x, layer_inputs={}, activations={})
    for layer in spec.layers:
        trace.layer_inputs[layer.name] = x
        if isinstance(layer, Conv2d):
            x = conv_forward(x, layer)
        elif isinstance(layer, Dense):
            x = x @ layer.weight + layer.bias
        elif isinstance(layer, ReLU):
            x = np.maximum(x, 0.0)
        elif isinstance(layer, ReLU6):
            x = np.minimum(np.maximum(x, 0.0), 6.0)
        elif isinstance(layer, GlobalAvgPool):
            x = x.mean(axis=(2, 3))
        else:  # pragma: no cover - the spec types are closed
            raise TypeError(f"unknown layer {layer!r}")
        if scales is not None and layer.name in scales:
            x = x * scales[layer.name]
        if substitutes is not None and layer.name in substitutes:
            x = np.asarray(substitutes[layer.name], dtype=np.float64)
        trace.activations[layer.name] = x
    trace.logits = x
    return trace


def _conv(rng: np.random.Generator, name: str, cin: int, cout: int, scale: float,
          stride: int = 1, padding: int = 1) -> Conv2d:
    weight = rng.normal(0.0, scale, size=(cout, cin, 3, 3))
    bias = rng.normal(0.0, 0.3, size=(cout,))
    return Conv2d(name, weight, bias, stride=stride, padding=padding)


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


def default_specs() -> tuple[NetSpec, ...]:
    """The networks the suite runs by default: :func:`small_cnn` and :func:`small_mlp`."""
    return (small_cnn(), small_mlp())

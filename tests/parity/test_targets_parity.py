"""attrib.targets across backends: a small segmentation network in torch and its Flax twin.

Float64 (``jax.enable_x64`` scoped to the test): Mask, Weights and Cosine give the same
maps in torch and JAX to 1e-10 relative, for gradient methods, Grad-CAM and occlusion.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
nn = pytest.importorskip("flax.linen")

import attrib  # noqa: E402
from attrib.targets import Boxes, Cosine, Mask, Weights  # noqa: E402


class FlaxSeg(nn.Module):
    """conv3x3(3→6) relu conv3x3(6→4) relu conv1x1(4→3): a dense output (N, H, W, 3)."""

    @nn.compact
    def __call__(self, x: Any) -> Any:
        x = nn.relu(nn.Conv(6, (3, 3), padding=((1, 1), (1, 1)), name="conv1")(x))
        x = nn.relu(nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)), name="conv2")(x))
        return nn.Conv(3, (1, 1), name="head")(x)


def _torch_seg() -> Any:
    torch.manual_seed(7)
    seq = torch.nn.Sequential()
    seq.add_module("conv1", torch.nn.Conv2d(3, 6, 3, padding=1))
    seq.add_module("relu1", torch.nn.ReLU())
    seq.add_module("conv2", torch.nn.Conv2d(6, 4, 3, padding=1))
    seq.add_module("relu2", torch.nn.ReLU())
    seq.add_module("head", torch.nn.Conv2d(4, 3, 1))
    return seq.double().eval()


def _flax_variables(model: Any) -> dict[str, Any]:
    params = {name: {"kernel": np.transpose(getattr(model, name).weight.detach().numpy(),
                                            (2, 3, 1, 0)),
                     "bias": getattr(model, name).bias.detach().numpy()}
              for name in ("conv1", "conv2", "head")}
    return {"params": params}


def test_targets_torch_equals_jax_in_float64() -> None:
    model = _torch_seg()
    x = np.random.default_rng(0).normal(size=(2, 3, 16, 16))
    mask = np.zeros((16, 16))
    mask[3:11, 5:14] = 1.0
    weights = np.random.default_rng(1).normal(size=(3, 16, 16))
    cases = [("saliency", Mask([0, 2], mask), Mask([0, 2], mask), {}),
             ("guided_backprop", Mask(1, mask, reduce="mean"), Mask(1, mask, reduce="mean"), {}),
             ("gradcam", Mask(2, mask), Mask(2, mask), {"layer": "conv2"}),
             ("integrated_gradients", Weights(weights), Weights(weights.transpose(1, 2, 0)),
              {"steps": 4}),
             ("occlusion", Mask(1, mask), Mask(1, mask), {"window": 4, "stride": 4})]
    with jax.enable_x64(True):
        flax_model = (FlaxSeg(), _flax_variables(model))
        x_nhwc = x.transpose(0, 2, 3, 1)
        for method, theirs, ours, options in cases:
            t = attrib.explain(model, x, method=method, target=theirs, **options)
            j = attrib.explain(flax_model, x_nhwc, method=method, target=ours, backend="jax",
                               **options)
            mine = j.attribution if j.attribution.ndim == 3 else j.attribution.transpose(0, 3, 1, 2)
            scale = np.abs(t.attribution).max()
            assert scale > 0, method
            np.testing.assert_allclose(mine, t.attribution, rtol=0, atol=1e-10 * scale,
                                       err_msg=method)
            np.testing.assert_array_equal(j.targets, t.targets)
        # an embedding: the pooled output, cosine to a reference
        reference = np.array([0.3, -1.0, 0.5])
        t = attrib.explain(model, x, method="saliency", target=Cosine(reference),
                           output=lambda out: out.mean(dim=(2, 3)))
        j = attrib.explain(flax_model, x_nhwc, method="saliency", target=Cosine(reference),
                           backend="jax", output=lambda out: out.mean(axis=(1, 2)))
        np.testing.assert_allclose(j.attribution.transpose(0, 3, 1, 2), t.attribution, rtol=0,
                                   atol=1e-10 * np.abs(t.attribution).max())
    assert not jax.config.jax_enable_x64, "x64 must not leak into other tests"


class FlaxDenseDetector(nn.Module):
    """The twin of ``tests/torch/test_targets_detection.py::_DenseDetector``, NHWC."""

    @nn.compact
    def __call__(self, x: Any) -> Any:
        import jax.numpy as jnp

        h = nn.relu(nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)), name="conv")(x))
        out = nn.Conv(7, (4, 4), strides=(4, 4), padding="VALID", name="head")(h)
        out = out.reshape(out.shape[0], -1, 7)  # (N, P, 7), cells row-major as in torch
        cells = jnp.arange(out.shape[1])
        corner = jnp.stack([cells % 4, cells // 4], 1).astype(out.dtype) * 4
        boxes = jnp.concatenate([corner + out[..., :2], corner + 4 + jnp.exp(out[..., 2:4])], -1)
        return boxes, out[..., 4:]


def test_boxes_on_dense_outputs_torch_equals_jax_in_float64() -> None:
    from support.detection import DenseDetector

    model = DenseDetector().double().eval()
    params = {name: {"kernel": np.transpose(getattr(model, name).weight.detach().numpy(),
                                            (2, 3, 1, 0)),
                     "bias": getattr(model, name).bias.detach().numpy()}
              for name in ("conv", "head")}
    x = np.random.default_rng(3).normal(size=(2, 3, 16, 16))
    with torch.no_grad():
        boxes, logits = model(torch.as_tensor(x))
    target = Boxes(boxes[0, [1, 6]].numpy() + 0.25, logits[0, [1, 6]].argmax(-1).tolist(),
                   iou=0.3)
    with jax.enable_x64(True):
        flax_model = (FlaxDenseDetector(), {"params": params})
        for method, options in (("saliency", {}), ("gradcam", {"layer": "conv"})):
            t = attrib.explain(model, x, method=method, target=target, **options)
            j = attrib.explain(flax_model, x.transpose(0, 2, 3, 1), method=method,
                               target=target, backend="jax", **options)
            mine = j.attribution if j.attribution.ndim == 3 else j.attribution.transpose(0, 3, 1, 2)
            assert np.abs(t.attribution).max() > 0, method
            np.testing.assert_allclose(mine, t.attribution, rtol=0,
                                       atol=1e-10 * np.abs(t.attribution).max(), err_msg=method)
            np.testing.assert_allclose(j.logits, t.logits, rtol=1e-12)
    assert not jax.config.jax_enable_x64

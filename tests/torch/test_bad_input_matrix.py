"""The bad-input matrix, torch backend: every case a clear AttribError (or the documented
warning) that names the argument, what was expected and what was given; the model left as found.

Each case builds ``(call, model)``: ``call()`` makes the bad call, ``model`` is the
torch module whose state is compared before and after (hooks of every kind included).
"""

from __future__ import annotations

import re
import tempfile
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attrib
from attrib import Backend, Registry, hookimpl

from .conftest import RELU_SPELLINGS, TinyNet, assert_unchanged, batch, snapshot, tiny_net

Case = Callable[[], tuple[Callable[[], Any], nn.Module]]


def _net() -> TinyNet:
    """(N, 2, 8, 8) -> 5 classes, float32, in-place ReLUs."""
    return tiny_net(RELU_SPELLINGS["nn.ReLU(inplace=True)"], dtype=torch.float32)


def _x(n: int = 2) -> torch.Tensor:
    return batch(n=n, dtype=torch.float32)


def _targets() -> Any:
    import attrib.targets

    return attrib.targets


def _explain(inputs: Any = None, model: nn.Module | None = None, **kwargs: Any) -> Case:
    def build() -> tuple[Callable[[], Any], nn.Module]:
        net = model if model is not None else _net()
        x = _x() if inputs is None else inputs
        kwargs.setdefault("method", "saliency")
        return (lambda: attrib.explain(net, x() if callable(x) else x, **kwargs)), net
    return build


def _vit(fused: bool = True, **options: Any) -> nn.Module:
    """A one-block timm ViT on (N, 3, 32, 32): a class token and a 4x4 grid of 8x8 patches."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2,
                              num_classes=5, **options).eval()
    for block in model.blocks:
        block.attn.fused_attn = fused
    return model


def _attn(fused: bool = True, vit: dict[str, Any] | None = None, **kwargs: Any) -> Case:
    """``_explain`` on a fresh :func:`_vit` (built with ``vit`` options) and a (2, 3, 32, 32)
    batch."""
    def build() -> tuple[Callable[[], Any], nn.Module]:
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        return _explain(inputs=x, model=_vit(fused, **(vit or {})), **kwargs)()
    return build


class _Raising(nn.Module):
    """Conv model whose forward raises ``error`` after its first layer ran."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3, 5)
        self.error = error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.conv(x)
        raise self.error


class _Output(nn.Module):
    """Conv model whose logits go through ``post`` (NaN logits, integer logits, ...)."""

    def __init__(self, post: Callable[[torch.Tensor], Any], act: Callable[..., Any] = F.relu
                 ) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 5)
        self.post, self.act = post, act

    def forward(self, x: torch.Tensor) -> Any:
        a = self.act(self.bn(self.conv(x)))
        return self.post(self.fc(a.mean(dim=(2, 3))))


class _Tuple(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


class _TupleLayerNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.split = _Tuple()
        self.fc = nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, _ = self.split(F.relu(self.conv(x)))
        return self.fc(a.mean(dim=(2, 3)))


def _meta_model() -> nn.Module:
    with torch.device("meta"):
        return _Output(lambda t: t)


def _uninstalled_backend_registry() -> Registry:
    plugin = types.SimpleNamespace()

    @hookimpl
    def attrib_register_backends(register: Callable[[Backend], None]) -> None:
        register(Backend(name="nobackend", frameworks=("no_such_framework_xyz",),
                         detect=lambda m: False, adapter="no_such_framework_xyz:Adapter",
                         install_hint="pip install attrib[nobackend]"))

    plugin.attrib_register_backends = attrib_register_backends
    registry = Registry(entry_points=False)
    registry.register(plugin, name="nobackend-plugin")
    return registry


def _uninstalled() -> tuple[Callable[[], Any], nn.Module]:
    net = _net()
    registry = _uninstalled_backend_registry()
    return (lambda: attrib.Saliency(net, backend="nobackend", registry=registry)), net


def _sqrt_at_zero(t: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(t * 0.0) + t


# id -> (case, argument named, regex on the rest of the message)
ERRORS: dict[str, tuple[Case, str, str]] = {
    # rank, layout, channels
    "one image without batch axis (numpy)": (
        _explain(_x()[0].numpy()), "inputs", r"without the batch axis.*inputs\[None\]"),
    "one image without batch axis (tensor)": (
        _explain(_x()[0]), "inputs", r"without the batch axis.*\(1, 2, 8, 8\)"),
    "one image, a model that takes it unbatched": (
        _explain(np.zeros((3, 8, 8), np.float32),
                 model=nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(36, 2))),
        "inputs", r"a batch \(N, C, H, W\), got shape \(3, 8, 8\).*inputs\[None\]"),
    "2-D array": (_explain(np.zeros((8, 8), np.float32)), "inputs", r"4-D batches"),
    "1-D array": (_explain(np.zeros(8, np.float32)), "inputs", r"batch of shape \(N, \.\.\.\)"),
    "0-D tensor": (_explain(torch.tensor(1.0)), "inputs", r"batch of shape.*shape \(\)"),
    "5-D array": (_explain(np.zeros((2, 1, 2, 8, 8), np.float32)), "inputs",
                  r"accepts.*\(2, 1, 2, 8, 8\)"),
    "channels last (NHWC)": (_explain(_x().permute(0, 2, 3, 1)), "inputs",
                             r"channels-last \(NHWC\).*permute\(0, 3, 1, 2\)"),
    "wrong channel count": (_explain(np.zeros((2, 3, 8, 8), np.float32)), "inputs",
                            r"takes 2 channels.*have 3"),
    "wrong image size": (_explain(np.zeros((2, 2, 12, 12), np.float32)), "inputs",
                         r"a batch this model accepts.*\(2, 2, 12, 12\)"),
    # dtypes and values
    "uint8 array": (_explain(np.zeros((2, 2, 8, 8), np.uint8)), "inputs",
                    r"floating-point.*uint8.*not converted.*astype\(np\.float32\).*/ 255"),
    "uint8 tensor": (_explain(torch.zeros((2, 2, 8, 8), dtype=torch.uint8)), "inputs",
                     r"floating-point.*torch\.uint8.*\.float\(\)"),
    "int64 tensor": (_explain(torch.zeros((2, 2, 8, 8), dtype=torch.int64)), "inputs",
                     r"floating-point.*int64"),
    "bool array": (_explain(np.zeros((2, 2, 8, 8), bool)), "inputs", r"floating-point.*bool"),
    "complex array": (_explain(np.zeros((2, 2, 8, 8), np.complex64)), "inputs",
                      r"floating-point.*complex64"),
    "object array": (_explain(np.empty((2, 2, 8, 8), object)), "inputs", r"floating.*object"),
    "NaN everywhere": (_explain(np.full((2, 2, 8, 8), np.nan, np.float32)), "inputs",
                       r"finite values.*NaN or inf"),
    "one NaN pixel": (_explain(_x().index_put_((torch.tensor(1), torch.tensor(0),
                                                torch.tensor(3), torch.tensor(4)),
                                               torch.tensor(float("nan")))),
                      "inputs", r"finite values"),
    "+inf": (_explain(torch.full((1, 2, 8, 8), float("inf"))), "inputs", r"finite values"),
    "-inf": (_explain(np.full((1, 2, 8, 8), -np.inf, np.float32)), "inputs", r"finite values"),
    "empty batch (numpy)": (_explain(np.zeros((0, 2, 8, 8), np.float32)), "inputs",
                            r"at least one sample.*\(0, 2, 8, 8\)"),
    "empty batch (tensor)": (_explain(torch.zeros((0, 2, 8, 8))), "inputs",
                             r"at least one sample"),
    "a list": (_explain([[1.0, 2.0]]), "inputs", r"NumPy array or a torch tensor.*list"),
    "a file name": (_explain("cat.png"), "inputs", r"NumPy array or a torch tensor.*str"),
    "None": (_explain(lambda: None), "inputs", r"NumPy array or a torch tensor.*NoneType"),
    "meta-device tensor": (_explain(torch.empty((2, 2, 8, 8), device="meta")), "inputs",
                           r"tensor with data.*'meta' device"),
    "sparse tensor": (_explain(lambda: _x().to_sparse()), "inputs", r"dense.*sparse"),
    # targets
    "target out of range": (_explain(target=5), "target", r"\[0, 4\].*got \[5, 5\]"),
    "target far out of range": (_explain(target=10**6), "target", r"\[0, 4\]"),
    "negative target": (_explain(target=-1), "target", r"\[0, 4\].*got \[-1, -1\]"),
    "one negative target": (_explain(target=[0, -3]), "target", r"got -3"),
    "too many targets": (_explain(target=[1, 2, 3]), "target", r"one class per sample.*3 ints"),
    "too few targets": (_explain(target=[1]), "target", r"2 ints for a batch of 2.*1 ints"),
    "float target": (_explain(target=1.5), "target", r"None, an int.*1\.5"),
    "string target": (_explain(target="cat"), "target", r"None, an int.*'cat'"),
    "bool target": (_explain(target=True), "target", r"None, an int.*True"),
    # floats and 2-D arrays are target weights (classes,) / (N, classes): of the wrong width here
    "float targets": (_explain(target=[1.0, 2.0]), "target", r"target weights.*5 classes"),
    "2-D target array": (_explain(target=np.array([[1], [2]])), "target",
                         r"target weights.*\(2, 1\)"),
    "float target tensor": (_explain(target=torch.tensor([1.0, 2.0])), "target",
                            r"target weights.*5 classes"),
    # layers
    "unknown layer": (_explain(method="gradcam", layer="conv_2"), "layer",
                      r"Did you mean 'conv2'"),
    "layer not a string": (_explain(method="gradcam", layer=3), "layer", r"got 3"),
    "no spatial layer for gradcam's default": (
        _explain(model=nn.Sequential(nn.Flatten(), nn.Linear(128, 5)).eval(), method="gradcam"),
        "layer", r"got None.*No layer of this model has a spatial output"),
    "layer for saliency": (_explain(method="saliency", layer="conv2"), "layer",
                           r"no layer for 'saliency'.*Layer methods"),
    "layer never runs": (_explain(method="gradcam", layer="relus.0"), "layer",
                         r"runs exactly once.*ran 0 times.*not used"),
    "layer runs 3 times": (_explain(model=tiny_net(RELU_SPELLINGS["one nn.ReLU reused"],
                                                   dtype=torch.float32),
                                    method="gradcam", layer="relu_inplace"),
                           "layer", r"ran 3 times"),
    "non-spatial layer, gradcam": (_explain(method="gradcam", layer="fc1"), "layer",
                                   r"4-D output.*'fc1' with output shape \(2, 10\)"),
    "non-spatial layer, guided_gradcam": (_explain(method="guided_gradcam", layer="fc1"),
                                          "layer", r"4-D output"),
    "layer returning a tuple": (_explain(model=_TupleLayerNet(), method="gradcam",
                                         layer="split"), "layer", r"one tensor.*tuple"),
    # names and options
    "unknown method": (_explain(method="guided_backpropp"), "method",
                       r"Did you mean 'guided_backprop'"),
    "method not a string": (_explain(method=None), "method", r"None"),
    # several methods in one call (issue 19)
    "unknown method in a list": (_explain(method=["saliency", "gradcamm"]), "method",
                                 r"Did you mean 'gradcam'"),
    "repeated method in a list": (_explain(method=["saliency", "deconvnet", "saliency"]),
                                  "method", r"distinct method names.*\['saliency'\] given more"),
    "empty method list": (_explain(method=[]), "method", r"non-empty list"),
    "method list of non-strings": (_explain(method=["saliency", 3]), "method", r"\['saliency', 3\]"),
    "options for a method not in the list": (
        _explain(method=["saliency", "gradcam"], options={"guided_gradcam": {"layer": "conv2"}}),
        "options", r"methods called.*'guided_gradcam'.*Add 'guided_gradcam' to method="),
    "options misspelt method": (_explain(method=["saliency", "gradcam"],
                                         options={"gradcamm": {"layer": "conv2"}}),
                                "options", r"Did you mean 'gradcam'"),
    "options not a mapping": (_explain(method=["saliency", "gradcam"], options=["gradcam"]),
                              "options", r"a mapping \{method name"),
    "options of a method not a mapping": (
        _explain(method=["saliency", "gradcam"], options={"gradcam": "conv2"}),
        "options['gradcam']", r"a mapping \{option name: value\}, got 'conv2'"),
    "unknown option in a list": (_explain(method=["saliency", "gradcam"],
                                          options={"gradcam": {"layer": "conv2", "lyer": 1}}),
                                 "options", r"options of 'gradcam'.*lyer"),
    "keyword option with a list": (_explain(method=["saliency", "gradcam"], steps=3), "options",
                                   r"options=\{method: .*keyword options \['steps'\]"),
    "layer for a list without layer methods": (
        _explain(method=["saliency", "deconvnet"], layer="conv2"), "layer",
        r"no layer for \['saliency', 'deconvnet'\]"),
    "unknown objective": (_explain(objective="log_sofmax"), "objective",
                          r"Did you mean 'log_softmax'"),
    "objective not a string": (_explain(objective=1), "objective", r"got 1"),
    "unknown backend": (_explain(backend="tensorflow"), "backend", r"'tensorflow'"),
    "backend of another framework": (_explain(backend="jax"), "model", r"Flax.*got TinyNet"),
    "unknown option": (_explain(smoth=3), "options", r"options of 'saliency'.*smoth"),
    "backend not installed": (_uninstalled, "backend",
                              r"not installed.*pip install attrib\[nobackend\]"),
    "not a model": (lambda: ((lambda: attrib.explain("resnet18", _x(), method="saliency")),
                             _net()), "model", r"installed backend's framework.*builtins\.str"),
    # the model
    "model on the meta device": (_explain(model=_meta_model()), "model",
                                 r"parameters hold data.*'meta' device.*to_empty"),
    "model raises RuntimeError": (_explain(model=_Raising(RuntimeError("boom"))), "inputs",
                                  r"model raised RuntimeError: boom"),
    "model raises TypeError": (_explain(model=_Raising(TypeError("bad arg"))), "model",
                               r"forward pass that runs.*TypeError: bad arg"),
    "model raises KeyError": (_explain(model=_Raising(KeyError("k"))), "model", r"KeyError"),
    "model returns NaN logits": (_explain(model=_Output(lambda t: t * float("nan")).eval()),
                                 "model", r"finite logits.*sample\(s\) \[0, 1\]"),
    "model returns NaN logits for one sample": (
        _explain(model=_Output(lambda t: torch.cat([t[:1], t[1:] * float("nan")])).eval(),
                 method="gradcam", layer="conv"), "model", r"finite logits.*\[1\]"),
    "model returns inf logits": (_explain(model=_Output(lambda t: t / 0.0).eval(),
                                          method="guided_backprop"), "model", r"finite logits"),
    "model with an infinite gradient": (_explain(model=_Output(_sqrt_at_zero).eval()), "model",
                                        r"finite gradients.*input gradient"),
    "model returns a mapping without logits": (
        _explain(model=_Output(lambda t: {"features": t}).eval()), "output",
        r"'logits' entry.*keys \['features'\]"),
    "model returns integer logits": (_explain(model=_Output(lambda t: t.argmax(1)[:, None])
                                              .eval()), "model", r"floating-point logits"),
    "model returns 3-D logits": (_explain(model=_Output(lambda t: t[:, :, None]).eval()),
                                 "model", r"shape \(2, classes\).*\(2, 5, 1\)"),
    # attention methods (issue 22)
    "attention: unknown layer": (_attn(method="attention_rollout",
                                          attention="blocks.0.atn"), "attention",
                                 r"Did you mean 'blocks\.0\.attn'"),
    "attention: a layer that runs no attention": (
        _attn(method="generic_attention", attention=["blocks.0.mlp"]),
        "attention", r"'blocks\.0\.mlp', which ran no F\.scaled_dot_product_attention"),
    "attention: names not strings": (_attn(method="attention_rollout",
                                              attention=[0]), "attention", r"got \[0\]"),
    "attention: unfused attention": (_attn(fused=False,
                                              method="attention_rollout"),
                                     "attention", r"explicit matmul \+ softmax"),
    "attention: a CNN": (_explain(method="attention_rollout"), "attention", r"ran no"),
    "attention: negative prefix_tokens": (_attn(method="attention_rollout",
                                                   prefix_tokens=-1), "prefix_tokens", r"got -1"),
    "attention: prefix_tokens leaving no grid": (
        _attn(method="attention_rollout", prefix_tokens=3), "prefix_tokens",
        r"patch grid.*got 3"),
    "attention: reshape not fitting the tokens": (
        _attn(method="attention_rollout", reshape=(3, 3)), "reshape",
        r"h \* w \+ prefix tokens == 17 tokens, got \(3, 3\)"),
    "attention: reshape not a grid": (_attn(method="attention_rollout",
                                               reshape="4x4"), "reshape", r"got '4x4'"),
    "attention: unknown head fusion": (_attn(method="attention_rollout",
                                                head_fusion="median"), "head_fusion",
                                       r"'median'"),
    "attention: discard_ratio 1": (_attn(method="attention_rollout",
                                            discard_ratio=1.0), "discard_ratio", r"\[0, 1\)"),
    # attrib.targets (issue 21): dense, embedding and detection targets
    "Mask on a classifier's (N, classes)": (_explain(target=_targets().Mask(1)), "target",
                                            r"dense output \(N, C, H, W\).*\(2, 5\)"),
    "Mask: mask of the wrong shape": (
        _explain(model=_Output(lambda t: t[:, :, None, None].expand(-1, -1, 4, 4)).eval(),
                 target=_targets().Mask(1, np.ones((3, 4)))), "mask", r"\(4, 4\).*\(3, 4\)"),
    "Mask: category out of range": (
        _explain(model=_Output(lambda t: t[:, :, None, None].expand(-1, -1, 4, 4)).eval(),
                 target=_targets().Mask(7)), "category", r"\[0, 4\].*got 7"),
    "Mask: empty mask": (
        _explain(model=_Output(lambda t: t[:, :, None, None].expand(-1, -1, 4, 4)).eval(),
                 target=_targets().Mask(1, np.zeros((4, 4)))), "mask", r"non-zero.*sample"),
    "Mask: unknown reduce": (lambda: (lambda: _targets().Mask(1, reduce="max"), _net()),
                             "reduce", r"'sum'.*'max'"),
    "Mask: one category per sample": (
        _explain(model=_Output(lambda t: t[:, :, None, None].expand(-1, -1, 4, 4)).eval(),
                 target=_targets().Mask([1, 2, 3])), "category", r"one category per sample"),
    "Weights of the wrong shape": (_explain(target=_targets().Weights(np.ones((2, 6)))),
                                   "weights", r"\(2, 5\) or \(5,\).*\(2, 6\)"),
    "Weights with NaN": (lambda: (lambda: _targets().Weights([1.0, np.nan]), _net()), "weights",
                         r"finite"),
    "Cosine: reference of the wrong length": (_explain(target=_targets().Cosine(np.ones(4))),
                                              "reference", r"\(5,\).*\(4,\)"),
    "Cosine: zero reference": (lambda: (lambda: _targets().Cosine(np.zeros(5)), _net()),
                               "reference", r"non-zero"),
    "Cosine with softmax": (_explain(target=_targets().Cosine(np.ones(5)), objective="softmax"),
                            "objective", r"\['logit'\].*Cosine"),
    "Boxes on a model that returns no boxes": (
        _explain(target=_targets().Boxes(np.array([[0., 0, 4, 4]]), [1])), "target",
        r"detection model's output.*\(2, 5\)"),
    "Boxes: labels and boxes of different lengths": (
        lambda: (lambda: _targets().Boxes(np.array([[0., 0, 4, 4]]), [1, 2]), _net()), "labels",
        r"one label per box \(1 boxes\).*2 labels"),
    "Boxes: boxes not (K, 4)": (lambda: (lambda: _targets().Boxes(np.ones((2, 3)), [1, 2]),
                                         _net()), "boxes", r"\(K, 4\).*\(2, 3\)"),
    "Boxes: x2 < x1": (lambda: (lambda: _targets().Boxes(np.array([[4., 0, 2, 4]]), [1]), _net()),
                       "boxes", r"x2 > x1"),
    "Boxes: IoU threshold out of range": (
        lambda: (lambda: _targets().Boxes(np.array([[0., 0, 4, 4]]), [1], iou=1.5), _net()),
        "iou", r"\[0, 1\).*1\.5"),
    "Ablation-CAM with a Mask": (
        _explain(model=_Output(lambda t: t[:, :, None, None].expand(-1, -1, 4, 4)).eval(),
                 method="ablationcam", layer="conv", target=_targets().Mask(1)), "target",
        r"class index.*Score-CAM"),
    # LRP rule sets (issue 23)
    "lrp: unknown composite": (_explain(method="lrp", composite="epsilon_plus_flatt"),
                               "composite", r"Did you mean 'epsilon_plus_flat'"),
    "lrp: unknown rule name": (_explain(method="lrp", rules={"convolution": "zplush"}),
                               "rules['convolution']", r"Did you mean 'zplus'"),
    "lrp: rule for an unknown layer": (_explain(method="lrp", rules={"conv9": "flat"}),
                                       "rules", r"layer names.*'conv9'"),
    "lrp: box rule without bounds": (_explain(method="lrp", composite="epsilon_gamma_box"),
                                     "low/high", r"low= and high="),
    "lrp: box bounds of the wrong shape": (
        _explain(method="lrp", composite="epsilon_gamma_box", low=np.zeros((3, 1, 1)), high=1.0),
        "low/high", r"broadcast to one input sample \(2, 8, 8\).*\(3, 1, 1\)"),
    "lrp: an operation without a rule": (
        _explain(method="lrp", model=_Output(lambda t: t, act=F.gelu).eval()), "model",
        r"the operation 'gelu' applied to an activation, for which it has no rule"),
    # AttnLRP / CP-LRP (issue 22)
    "attnlrp: cp not a bool": (_attn(method="attnlrp", cp="yes"), "cp", r"True \(CP-LRP\)"),
    "attnlrp: negative epsilon": (_attn(method="attnlrp", epsilon=-1e-6), "epsilon",
                                  r"finite number >= 0.*-1e-06"),
    "attnlrp: objective not the logit": (_attn(method="attnlrp", objective="softmax"),
                                         "objective", r"'logit' for AttnLRP"),
    "attnlrp: a token grid that does not fit": (
        _attn(method="attnlrp", reshape=(3, 3)), "reshape",
        r"h \* w \+ prefix tokens == 17 tokens, got \(3, 3\)"),
    "attnlrp: negative prefix tokens": (_attn(method="attnlrp", prefix_tokens=-1),
                                        "prefix_tokens", r"an int >= 0.*-1"),
    "lrp: a LayerScale whose layer output is also read elsewhere": (
        _explain(method="lrp", model=_Output(lambda t: t * torch.full((5,), 0.5) + t).eval()),
        "model", r"a per-channel constant product \(LayerScale\) that alone reads .*got a "
        r"layer output read by such a product and by another operation"),
    # DeepLIFT, DeepLIFT-SHAP, GradientSHAP (issue 23)
    "deeplift: baseline of the wrong shape": (
        _explain(method="deeplift", baseline=np.zeros((3, 4, 4))), "baseline",
        r"broadcastable to the inputs \(2, 2, 8, 8\).*\(3, 4, 4\)"),
    "deeplift: an operation without a rule": (
        _explain(method="deeplift", model=_Output(lambda t: t, act=lambda t: F.normalize(t))
                 .eval()), "model",
        r"the operation 'normalize' applied to an activation, for which it has no rule"),
    "deeplift: an objective other than the logit": (
        _explain(method="deeplift", objective="softmax"), "objective", r"'logit' for DeepLIFT"),
    "deeplift_shap: baselines of the wrong shape": (
        _explain(method="deeplift_shap", baselines=np.zeros((3, 2, 4, 4))), "baselines",
        r"a set \(B, 2, 8, 8\).*\(3, 2, 4, 4\)"),
    "gradient_shap: baselines of the wrong shape": (
        _explain(method="gradient_shap", baselines=np.zeros((3, 4, 4))), "baselines",
        r"one image of shape \(2, 8, 8\).*\(3, 4, 4\)"),
    "gradient_shap: draws of the wrong shape": (
        _explain(method="gradient_shap", n_samples=2,
                 draws={"baseline_index": np.zeros((2, 3), int), "alpha": np.zeros((2, 2))}),
        "draws.baseline_index", r"shape \(N, n_samples\) = \(2, 2\).*\(2, 3\)"),
}



def _signal(k: int) -> nn.Module:
    from support.signal_nets import torch_net

    return torch_net(k, torch.float32)


def _signal_x(k: int) -> np.ndarray:
    from support.signal_nets import inputs

    return inputs(k).astype(np.float32)


def _two() -> nn.Module:
    from support.two_inputs import torch_two_inputs

    return torch_two_inputs()


def _pair(image_rows: int = 2, table_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    from support.two_inputs import two_inputs

    image, table = two_inputs()
    return image[:image_rows], table[:table_rows]


# signals and volumes, several inputs (issue 21)
ERRORS.update({
    "1-D network given 2-D images": (_explain(np.zeros((2, 2, 8, 8), np.float32), _signal(1)),
                                     "inputs", r"a batch this model accepts.*\(2, 2, 8, 8\)"),
    "3-D network given a signal": (_explain(np.zeros((2, 2, 24), np.float32), _signal(3)),
                                   "inputs", r"a batch this model accepts.*\(2, 2, 24\)"),
    "signal: occlusion window of two sizes": (
        _explain(_signal_x(1), _signal(1), method="occlusion", window=(5, 5)), "window",
        r"1 size, one per spatial axis.*\(5, 5\)"),
    "volume: occlusion stride of one size": (
        _explain(_signal_x(3), _signal(3), method="occlusion", window=(2, 2, 2), stride=(2,)),
        "stride", r"3 sizes, one per spatial axis"),
    "signal: occlusion window longer than the signal": (
        _explain(_signal_x(1), _signal(1), method="occlusion", window=30), "window",
        r"at most the signal size \(24,\)"),
    "signal: gradcam at a dense layer": (
        _explain(_signal_x(1), _signal(1), method="gradcam", layer="fc"), "layer",
        r"3-D output \(n, c, l\).*'fc' with output shape \(2, 4\)"),
    "volume: gradcam with reshape=(h, w)": (
        _explain(_signal_x(3), _signal(3), method="gradcam", layer="conv2", reshape=(2, 2)),
        "reshape", r"None for inputs with 3 spatial axes"),
    "table: blur baseline without spatial axes": (
        _explain(np.zeros((2, 5), np.float32), nn.Sequential(nn.Linear(5, 3)).eval(),
                 method="integrated_gradients", baseline="blur"), "inputs",
        r"signals \(N, C, L\) or volumes.*2 dimensions"),
    "several inputs: batch sizes differ": (_explain(_pair(2, 1), _two()), "inputs",
                                           r"same batch size.*batch sizes \[2, 1\]"),
    "several inputs: one input for a model of two": (
        _explain(_pair()[:1], _two()), "inputs", r"as many inputs.*missing 1 required"),
    "several inputs: two inputs for a model of one": (
        _explain((_x(), _x()), _net()), "inputs", r"as many inputs.*takes 2 positional"),
    "several inputs: occlusion": (_explain(_pair(), _two(), method="occlusion"), "inputs",
                                  r"one array for 'occlusion'.*tuple of 2 inputs"),
    "several inputs: guided grad-cam": (
        _explain(_pair(), _two(), method="guided_gradcam", layer="conv"), "inputs",
        r"one array for 'guided_gradcam'"),
    "several inputs: an empty tuple": (_explain((), _two()), "inputs", r"non-empty tuple"),
    "several inputs: integrated gradients with one baseline array": (
        _explain(_pair(), _two(), method="integrated_gradients", baseline=np.zeros(5)),
        "baseline", r"tuple of 2 arrays, one per input"),
})

def _dataset(resume: dict[str, Any] | None = None, **kwargs: Any) -> Case:
    """``attrib.explain_dataset`` of two batches of the tiny net into a new store (``resume``:
    the arguments of a first run, of one batch, into the same store)."""
    def build() -> tuple[Callable[[], Any], nn.Module]:
        pytest.importorskip("zarr")
        net, x = _net(), _x(4).numpy()
        out = Path(tempfile.mkdtemp()) / "maps.zarr"
        if resume is not None:
            attrib.explain_dataset(net, [x[:2]], out=out, progress=False, **resume)
        kwargs.setdefault("method", ["saliency", "gradcam"])
        return (lambda: attrib.explain_dataset(net, [x[:2], x[2:]], out=out, progress=False,
                                               **kwargs)), net
    return build


# several methods in one dataset run (issue 19)
ERRORS.update({
    "dataset: unknown method in a list": (_dataset(method=["saliency", "gradcamm"]), "method",
                                          r"Did you mean 'gradcam'"),
    "dataset: repeated method in a list": (_dataset(method=["saliency", "deconvnet", "saliency"]),
                                           "method", r"distinct method names.*\['saliency'\] given"),
    "dataset: options for a method not in the list": (
        _dataset(options={"guided_gradcam": {"layer": "conv2"}}), "options",
        r"methods called.*'guided_gradcam'.*Add 'guided_gradcam' to method="),
    "dataset: options of a method not a mapping": (
        _dataset(options={"gradcam": "conv2"}), "options['gradcam']", r"a mapping \{option name"),
    "dataset: keyword option with a list": (_dataset(steps=3), "options",
                                            r"options=\{method: .*keyword options \['steps'\]"),
    "dataset: resuming with another method list": (
        _dataset(resume={"method": ["saliency", "gradcam"], "layer": "conv2"},
                 method=["gradcam", "saliency"], layer="conv2"), "out",
        r"other settings: method=\['saliency', 'gradcam'\] \(this run: \['gradcam', 'saliency'\]\)"),
    "dataset: resuming a store of one method with a list": (
        _dataset(resume={"method": "saliency"}, method=["saliency"]), "out",
        r"format=1 \(this run: 2\); method='saliency' \(this run: \['saliency'\]\)"),
})


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_input_is_a_clear_error(case: str) -> None:
    build, argument, detail = ERRORS[case]
    call, model = build()
    before = snapshot(model) if not _on_meta(model) else None
    with pytest.raises(attrib.AttribError) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{argument}: expected "), message
    assert ", got " in message, message
    assert re.search(detail, message, re.DOTALL), message
    assert "Traceback" not in message and "\n" not in message
    if before is not None:
        assert_unchanged(model, before)


def _on_meta(model: nn.Module) -> bool:
    return any(p.is_meta for p in model.parameters())


# -- the documented warnings, and the documented conversions -------------------------------------

def _gelu_net() -> nn.Module:
    return _Output(lambda t: t, act=F.gelu).eval()


WARNINGS: dict[str, tuple[Callable[[], nn.Module], dict[str, Any], str]] = {
    "no rectifier, guided_backprop": (_gelu_net, {"method": "guided_backprop"},
                                      r"'guided' changed nothing: no rectifier"),
    "no rectifier, deconvnet": (_gelu_net, {"method": "deconvnet"},
                                r"'deconvnet' changed nothing"),
    "no rectifier, guided_gradcam": (_gelu_net, {"method": "guided_gradcam", "layer": "conv"},
                                     r"'guided' changed nothing"),
    "training mode": (lambda: _Output(lambda t: t).train(), {"method": "saliency"},
                      r"training mode.*'bn'.*model\.eval\(\)"),
}


@pytest.mark.parametrize("case", list(WARNINGS))
def test_documented_warning(case: str) -> None:
    build, kwargs, match = WARNINGS[case]
    model = build()
    before = snapshot(model)
    with pytest.warns(attrib.AttribWarning, match=match):
        e = attrib.explain(model, _x(), **kwargs)
    assert np.isfinite(e.attribution).all()
    assert_unchanged(model, before)  # training flags included: the mode is left as it was


def test_float64_inputs_are_converted_to_a_float32_model() -> None:
    net = _net()
    x = _x()
    as32 = attrib.explain(net, x, method="guided_backprop", target=[1, 2])
    as64 = attrib.explain(net, x.double(), method="guided_backprop", target=[1, 2])
    from_numpy = attrib.explain(net, x.double().numpy(), method="guided_backprop", target=[1, 2])
    for e in (as64, from_numpy):
        assert e.attribution.dtype == np.float32 and e.inputs.dtype == np.float32
        np.testing.assert_array_equal(e.attribution, as32.attribution)


def test_keyboard_interrupt_in_the_forward_pass_leaves_the_model_as_found() -> None:
    class Interrupted(Exception):
        pass

    for method, layer in [("saliency", None), ("guided_backprop", None), ("gradcam", "conv"),
                          ("guided_gradcam", "conv")]:
        model = _Raising(KeyboardInterrupt())
        before = snapshot(model)
        x = _x()
        kept = x.clone()
        with pytest.raises(KeyboardInterrupt):
            attrib.explain(model, x, method=method, layer=layer)
        assert_unchanged(model, before)
        assert x.grad is None and torch.equal(x, kept)
        # and the next call on the same model works
        model.error = Interrupted()
        with pytest.raises(attrib.AttribError, match="Interrupted"):
            attrib.explain(model, x, method=method, layer=layer)
        assert_unchanged(model, before)


def test_the_matrix_has_at_least_60_cases() -> None:
    assert len(ERRORS) + len(WARNINGS) + 2 >= 60

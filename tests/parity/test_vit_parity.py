"""timm Vision Transformers in both backends: the Flax twin from ``attrib_jax.from_torch`` (issue 22).

- ``vit_small_patch16_224`` built at 64x64 (a 4x4 grid and the class token,
  12 blocks, random weights), float64, batch 2: logits, saliency, gradient ×
  input, Grad-CAM at the last block's ``norm1`` (the layer the CAM tests use
  on ViTs), attention rollout and generic attention agree within 1e-10
  relative (largest absolute difference / largest absolute value); the
  attention methods find the same 12 attention layers (``blocks.J.attn`` /
  ``blocks/J/attn``). The torch model and its ``fused_attn`` flags are left
  as they were.
- small variants (DeiT's distillation token, 4 registers with the position
  embedding on the patches only, LayerScale and average pooling; no class
  token with a pre-norm, no qkv bias and tanh GELU): logits and attention
  rollout agree, and the prefix tokens are read alike; on the LayerScale one
  AttnLRP agrees too.
- AttnLRP and CP-LRP on the same twin agree with torch within 1e-10 relative
  (the JAX relevance rewrite against the torch function mode).
- what the twin does not mirror is refused with an ``AttribError`` naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
timm = pytest.importorskip("timm")

from timm.models.vision_transformer import ResPostBlock, VisionTransformer  # noqa: E402

import attrib  # noqa: E402
import attrib_jax  # noqa: E402

TARGETS = [3, 7]
METHODS = ["saliency", "gradient_x_input", "gradcam", "attention_rollout", "generic_attention"]


def _rel(a: Any, b: Any) -> float:
    """Largest absolute difference over the largest absolute value of ``b``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert np.abs(b).max() > 0, "an all-zero reference makes a meaningless test"
    return float(np.abs(a - b).max() / np.abs(b).max())


def _inputs(size: int) -> tuple[Any, np.ndarray]:
    x = torch.randn(2, 3, size, size, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(1))
    return x, np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1))


def test_vit_small_float64_parity() -> None:
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", img_size=64, pretrained=False)
    model = model.double().eval()
    flags = [block.attn.fused_attn for block in model.blocks]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, x_nhwc = _inputs(64)
    worst: dict[str, float] = {}
    with jax.enable_x64(True):
        module, variables = attrib_jax.from_torch(model)
        theirs = attrib.explain(model, x, method=METHODS, target=TARGETS,
                                layer="blocks.11.norm1")
        ours = attrib.explain((module, variables), x_nhwc, method=METHODS, target=TARGETS,
                              layer="blocks/11/norm1", backend="jax")
    assert not jax.config.jax_enable_x64, "x64 must not leak into other tests"
    with torch.no_grad():  # the model's own (fused attention) forward
        worst["logits"] = _rel(ours["saliency"].logits, model(x).numpy())
    for method in METHODS:
        a, b = ours[method], theirs[method]
        expected = np.asarray(b.attribution)
        worst[method] = _rel(a.attribution, expected.transpose(0, 2, 3, 1)
                             if expected.ndim == 4 else expected)
        if b.layer_attribution is not None:
            assert np.asarray(b.layer_attribution).shape[1:] == (4, 4)
            worst[f"{method}/layer"] = _rel(a.layer_attribution, b.layer_attribution)
        worst.update({f"{method}/{k}": _rel(a.parts[k], v) for k, v in b.parts.items()})
    for method in ("attention_rollout", "generic_attention"):
        names = ours[method].stats["attention_layers"]
        assert names == tuple(f"blocks/{j}/attn" for j in range(12))
        assert theirs[method].stats["attention_layers"] == tuple(
            n.replace("/", ".") for n in names)
    print(f"\nvit_small float64 worst relative error: {worst}")
    bad = {key: value for key, value in worst.items() if not value < 1e-10}
    assert not bad, f"relative error above 1e-10: {bad}"
    assert [block.attn.fused_attn for block in model.blocks] == flags
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


SMALL = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=5)

VARIANTS: dict[str, tuple[Callable[[], Any], int]] = {
    "deit_distilled": (lambda: timm.create_model(
        "deit_tiny_distilled_patch16_224", img_size=32, depth=1, num_classes=5), 2),
    "registers_layer_scale_avg": (lambda: VisionTransformer(
        **SMALL, reg_tokens=4, no_embed_class=True, init_values=0.1, global_pool="avg"), 5),
    "no_class_token_pre_norm": (lambda: VisionTransformer(
        **SMALL, class_token=False, global_pool="avg", pre_norm=True, qkv_bias=False,
        act_layer="gelu_tanh"), 0),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_agree(name: str) -> None:
    """Rollout on every variant; AttnLRP too on the LayerScale one (γ drawn at random): torch
    merges ``x * γ`` into ``attn.proj`` / ``mlp.fc2`` at rule time as the JAX rewrite merges a
    layer's affine tail (at ε = 1e-6, unlike passing relevance through the product unchanged;
    measured 1.9e-15), and the model is left as found."""
    make, prefix = VARIANTS[name]
    torch.manual_seed(0)
    model = make().double().eval()
    for param_name, param in model.named_parameters():  # timm starts tokens near zero
        if param_name.endswith(("token", "gamma")) or param_name == "pos_embed":
            torch.nn.init.normal_(param, std=0.5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    methods = ["attention_rollout"] + (["attnlrp"] if "layer_scale" in name else [])
    x, x_nhwc = _inputs(32)
    with jax.enable_x64(True):
        ours = attrib.explain(attrib_jax.from_torch(model), x_nhwc, method=methods,
                              backend="jax", target=[1, 3])
    theirs = attrib.explain(model, x, method=methods, target=[1, 3])
    rollout = ours["attention_rollout"], theirs["attention_rollout"]
    assert rollout[0].stats["prefix_tokens"] == rollout[1].stats["prefix_tokens"] == prefix
    assert _rel(rollout[0].logits, rollout[1].logits) < 1e-10
    for method in methods:
        a, b = ours[method], theirs[method]
        expected = np.asarray(b.attribution)
        assert _rel(a.parts["tokens"], b.parts["tokens"]) < 1e-10, method
        assert _rel(a.attribution, expected.transpose(0, 2, 3, 1) if expected.ndim == 4
                    else expected) < 1e-10, method
    if "attnlrp" in methods:
        assert theirs["attnlrp"].stats["rules"]["layer_scale"] == 2
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


UNSUPPORTED: dict[str, tuple[dict[str, Any], str]] = {
    "dynamic_img_size": ({"dynamic_img_size": True}, r"dynamic_img_size=True"),
    "qk_norm": ({"qk_norm": True}, r"blocks\.0\.attn: Attention with q/k normalisation"),
    "attention_pool": ({"global_pool": "map"}, r"global_pool='map' \(attention pooling\)"),
    "post_norm_block": ({"block_fn": ResPostBlock}, r"blocks\.0: a ResPostBlock"),
    "quick_gelu": ({"act_layer": "quick_gelu"}, r"blocks\.0\.mlp\.act: QuickGELU"),
    "rms_norm": ({"norm_layer": "rmsnorm"}, r"RmsNorm as blocks\.0\.norm1"),
    "no_head": ({"num_classes": 0}, r"head Identity \(num_classes=0\)"),
}


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_unsupported_variants_are_refused(name: str) -> None:
    options, message = UNSUPPORTED[name]
    model = VisionTransformer(**{**SMALL, **options})
    with pytest.raises(attrib.AttribError, match=r"torch_model: expected a timm "
                       r"VisionTransformer .*got " + message):
        attrib_jax.from_torch(model)


def test_twin_refuses_another_image_size() -> None:
    module, variables = attrib_jax.from_torch(VisionTransformer(**SMALL).eval())
    with pytest.raises(attrib.AttribError, match=r"inputs: expected images of the model's "
                       r"size 32x32.*got shape \(1, 48, 48, 3\).*img_size="):
        module.apply(variables, np.zeros((1, 48, 48, 3), np.float32))


@pytest.mark.parametrize("cp", [False, True], ids=["attnlrp", "cp_lrp"])
def test_vit_small_attnlrp_float64_parity(cp: bool) -> None:
    """AttnLRP and CP-LRP on the from_torch twin equal torch's (measured 6.4e-13 / 5.5e-13),
    and so do their token maps (class token + 4x4 grid; tokens 4.0e-13 / 1.9e-13, upsampled
    4.8e-13 / 2.0e-13)."""
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", img_size=64, pretrained=False)
    model = model.double().eval()
    x, x_nhwc = _inputs(64)
    theirs = attrib.explain(model, x, method="attnlrp", target=TARGETS, cp=cp)
    with jax.enable_x64(True):
        twin = attrib.wrap(attrib_jax.from_torch(model), backend="jax")
        ours = attrib.explain(twin, x_nhwc, method="attnlrp", target=TARGETS, cp=cp)
    assert not jax.config.jax_enable_x64, "x64 must not leak into other tests"
    assert _rel(np.asarray(ours.attribution).transpose(0, 3, 1, 2), theirs.attribution) < 1e-10
    assert ours.parts["tokens"].shape == theirs.parts["tokens"].shape == (2, 17)
    assert ours.stats["grid"] == theirs.stats["grid"] == (4, 4)
    for got, want in ((ours.parts["tokens"], theirs.parts["tokens"]),
                      (ours.layer_attribution, theirs.layer_attribution),
                      (ours.parts["token_map"], theirs.parts["token_map"])):
        assert _rel(got, want) < 1e-10, _rel(got, want)

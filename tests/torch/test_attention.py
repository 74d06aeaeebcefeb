"""Attention capture and the attention methods on unmodified torch vision transformers (issue 22).

Models are built with random weights from timm's, torchvision's and Hugging Face's own
constructors, at 64x64 inputs (a 4x4 patch grid; 224x224 costs seconds per pass on
CPU) and, where depth does not matter to the check, with fewer blocks.
Every reference is computed independently: attention from timm's unfused path
(``fused_attn=False``) or from torchvision's in-projection weights, the methods
from their formulas written here in torch.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attrib
from attrib import GradientRequest

from .conftest import assert_unchanged, snapshot

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

SIZE = 64


def _rel(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(np.asarray(actual, np.float64) - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_small_patch16_224", pretrained=False, img_size=SIZE).eval()


@pytest.fixture(scope="module")
def tv_vit() -> nn.Module:
    torch.manual_seed(1)
    model = torchvision.models.vit_b_16(image_size=SIZE).eval()
    nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision starts it at zero
    return model


def _unfused(model: nn.Module) -> nn.Module:
    """A copy of a timm ViT on its explicit attention path (the reference vit-explain hooks)."""
    ref = copy.deepcopy(model)
    for block in ref.blocks:
        block.attn.fused_attn = False
    return ref


def _hooked_attention(model: nn.Module, x: torch.Tensor,
                      target: torch.Tensor | None = None) -> tuple[list, list, torch.Tensor]:
    """Attention of an unfused timm ViT from hooks on ``attn_drop``, and its gradient."""
    kept: list[torch.Tensor] = []
    handles = [b.attn.attn_drop.register_forward_hook(lambda m, a, o: kept.append(o))
               for b in model.blocks]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    grads: list[torch.Tensor] = []
    if target is not None:
        score = logits[torch.arange(len(x)), target].sum()
        grads = list(torch.autograd.grad(score, kept))
    return kept, grads, logits


def _tv_attention(model: nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """torchvision ViT attention from each block's input and its in-projection weights."""
    out: list[np.ndarray] = []

    def hook(mha: nn.MultiheadAttention, args: tuple) -> None:
        t = args[0].detach().double()
        q, k, _ = F.linear(t, mha.in_proj_weight.double(), mha.in_proj_bias.double()).chunk(3, -1)
        n, length, dim = q.shape
        heads = mha.num_heads
        q = q.view(n, length, heads, dim // heads).transpose(1, 2)
        k = k.view(n, length, heads, dim // heads).transpose(1, 2)
        out.append(torch.softmax(q @ k.transpose(-2, -1) / (dim // heads) ** 0.5, -1).numpy())

    handles = [layer.self_attention.register_forward_pre_hook(hook)
               for layer in model.encoder.layers]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return out


# -- capture ---------------------------------------------------------------------------------

def test_capture_equals_unfused_attention_and_keeps_logits(vit, x):
    fused = [b.attn.fused_attn for b in vit.blocks]
    assert all(fused)  # timm's default: F.scaled_dot_product_attention, nothing to hook
    before = snapshot(vit)
    result = attrib.wrap(vit).gradients(GradientRequest(inputs=x, input_gradient=False,
                                                        attention="all"))
    assert_unchanged(vit, before)
    assert [b.attn.fused_attn for b in vit.blocks] == fused
    with torch.no_grad():
        kept, _, _ = _hooked_attention(_unfused(vit), x)
        plain = vit(x).numpy()
    assert list(result.attention) == [f"blocks.{i}.attn" for i in range(12)]
    for name, want in zip(result.attention, kept):
        assert result.attention[name].shape == (2, 6, 17, 17)
        assert _rel(result.attention[name], want.numpy()) <= 1e-6, name
    assert _rel(result.logits, plain) <= 1e-5


def test_capture_gradient_equals_unfused_gradient(vit, x):
    result = attrib.wrap(vit).gradients(GradientRequest(
        inputs=x, targets=np.array([3, 7]), input_gradient=False, attention=("blocks.2.attn",
                                                                             "blocks.9.attn"),
        attention_gradients=True))
    _, grads, _ = _hooked_attention(_unfused(vit), x, torch.tensor([3, 7]))
    assert list(result.attention_gradients) == ["blocks.2.attn", "blocks.9.attn"]
    assert _rel(result.attention_gradients["blocks.2.attn"], grads[2].numpy()) <= 1e-5
    assert _rel(result.attention_gradients["blocks.9.attn"], grads[9].numpy()) <= 1e-5


def test_multihead_attention_paths(tv_vit, x):
    """torchvision's nn.MultiheadAttention: captured equal to its in-projection; the frozen
    model (whose eval forward takes the fused fast path) gives the same logits and maps."""
    want = _tv_attention(tv_vit, x)
    result = attrib.wrap(tv_vit).gradients(GradientRequest(inputs=x, input_gradient=False,
                                                           attention="all"))
    for got, ref in zip(result.attention.values(), want):
        assert _rel(got, ref) <= 1e-5
    frozen = copy.deepcopy(tv_vit).requires_grad_(False)
    with torch.no_grad():
        fast = frozen(x).numpy()  # torch._native_multi_head_attention
    assert _rel(result.logits, fast) <= 1e-5
    a = attrib.explain(tv_vit, x, method="generic_attention", target=1)
    b = attrib.explain(frozen, x, method="generic_attention", target=1)
    np.testing.assert_allclose(b.attribution, a.attribution, rtol=1e-5, atol=1e-7)


def test_multihead_attention_weights_returned_to_the_caller():
    """A model that uses the weights nn.MultiheadAttention returns gets them unchanged."""
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, 8, 4, stride=4)
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
            self.fc = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = self.embed(x).flatten(2).transpose(1, 2)
            out, w = self.mha(t, t, t)  # averaged weights, (N, T, T)
            return self.fc(out.mean(1)) + w.amax((1, 2))[:, None]

    net = Net().eval()
    x = torch.randn(2, 3, 8, 8)
    result = attrib.wrap(net).gradients(GradientRequest(inputs=x, input_gradient=False,
                                                        attention="all"))
    with torch.no_grad():
        assert _rel(result.logits, net(x).numpy()) <= 1e-6
    assert result.attention["mha"].shape == (2, 2, 4, 4)


# -- the methods against their formulas ----------------------------------------------------------

def _rollout_reference(attentions: list, head_fusion: str, discard_ratio: float) -> np.ndarray:
    """vit-explain's rollout, per sample, with rows renormalised; (N, T) class-token rows."""
    n, _, t, _ = attentions[0].shape
    result = torch.eye(t, dtype=torch.float64).repeat(n, 1, 1)
    for attention in attentions:
        a = torch.as_tensor(np.asarray(attention), dtype=torch.float64)
        fused = getattr(a, head_fusion)(dim=1)
        fused = fused if head_fusion == "mean" else fused.values
        flat = fused.reshape(n, -1)
        for i in range(n):
            _, indices = flat[i].topk(int(flat.size(-1) * discard_ratio), -1, False)
            flat[i, indices[indices != 0]] = 0
        a = (fused + torch.eye(t, dtype=torch.float64)) / 2
        a = a / a.sum(dim=-1, keepdim=True)
        result = a @ result
    return result[:, 0].numpy()


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard_ratio", [0.0, 0.9])
def test_rollout_equals_reference_timm(vit, x, head_fusion, discard_ratio):
    with torch.no_grad():
        kept, _, _ = _hooked_attention(_unfused(vit), x)
    want = _rollout_reference([k.numpy() for k in kept], head_fusion, discard_ratio)
    e = attrib.explain(vit, x, method="attention_rollout", head_fusion=head_fusion,
                       discard_ratio=discard_ratio)
    assert _rel(e.parts["tokens"], want) <= 1e-6
    assert e.layer_attribution.shape == (2, 4, 4) and e.attribution.shape == (2, SIZE, SIZE)
    np.testing.assert_allclose(e.layer_attribution, want[:, 1:].reshape(2, 4, 4), rtol=1e-6)


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard_ratio", [0.0, 0.9])
def test_rollout_equals_reference_torchvision(tv_vit, x, head_fusion, discard_ratio):
    want = _rollout_reference(_tv_attention(tv_vit, x), head_fusion, discard_ratio)
    e = attrib.explain(tv_vit, x, method="attention_rollout", head_fusion=head_fusion,
                       discard_ratio=discard_ratio)
    assert _rel(e.parts["tokens"], want) <= 1e-6


def test_generic_attention_equals_chefer(vit, x):
    """Chefer et al. 2021, eqs. 5-6: R = I; R += mean_h((grad A * A)^+) @ R; row of the class token."""
    target = torch.tensor([4, 11])
    kept, grads, _ = _hooked_attention(_unfused(vit), x, target)
    r = torch.eye(17, dtype=torch.float64).repeat(2, 1, 1)
    for a, g in zip(kept, grads):
        cam = (g.double() * a.detach().double()).clamp(min=0).mean(dim=1)
        r = r + cam @ r
    want = r[:, 0].numpy()
    e = attrib.explain(vit, x, method="generic_attention", target=[4, 11])
    assert _rel(e.parts["tokens"], want) <= 1e-6
    np.testing.assert_array_equal(e.targets, [4, 11])


# -- token layouts ---------------------------------------------------------------------------------

def _layout(model: nn.Module, x: torch.Tensor, **kwargs) -> tuple[int, tuple[int, int], tuple]:
    e = attrib.explain(model, x, method="attention_rollout", **kwargs)
    return e.stats["prefix_tokens"], e.stats["grid"], e.attribution.shape


def test_prefix_tokens_read_from_the_model(tv_vit, x):
    torch.manual_seed(0)
    deit = timm.create_model("deit_small_distilled_patch16_224", img_size=SIZE, depth=2).eval()
    registers = timm.create_model("vit_small_patch16_224", img_size=SIZE, depth=2,
                                  reg_tokens=4).eval()
    assert _layout(tv_vit, x) == (1, (4, 4), (2, SIZE, SIZE))
    assert _layout(deit, x) == (2, (4, 4), (2, SIZE, SIZE))
    assert _layout(registers, x) == (5, (4, 4), (2, SIZE, SIZE))


def test_prefix_tokens_hugging_face():
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32,
                                    num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, num_labels=5,
                                    attn_implementation="sdpa")
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config).eval()
    assert attrib.wrap(model).prefix_tokens() == 1
    x = torch.randn(2, 3, 32, 32)
    e = attrib.explain(model, x, method="generic_attention")
    assert e.stats["prefix_tokens"] == 1 and e.stats["grid"] == (4, 4)
    assert e.stats["attention_layers"] == ("vit.layers.0.attention",
                                           "vit.layers.1.attention")


@pytest.mark.parametrize("options", [{}, {"no_embed_class": True, "reg_tokens": 2}],
                         ids=["class_token", "registers"])
def test_dynamic_image_size(options):
    """timm ``dynamic_img_size=True`` (built for 32², patches of 8) on a 48x40 batch: the
    position embedding is resampled to the 6x5 grid in the forward pass. Rollout, generic
    attention, AttnLRP and CP-LRP equal those of a copy built for 48x40 with that resampled
    embedding as its parameter (float64; measured bit-identical), the grid reads (6, 5), not
    (5, 6), and the model is left as found."""
    from timm.layers import resample_abs_pos_embed
    from timm.models.vision_transformer import VisionTransformer

    small = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5, **options)
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, dynamic_img_size=True, **small).double().eval()
    for name, p in model.named_parameters():  # timm starts them near zero
        if name.endswith("token") or name == "pos_embed":
            nn.init.normal_(p, std=0.5)
    fixed = VisionTransformer(img_size=(48, 40), **small).double().eval()
    state = dict(model.state_dict())
    state["pos_embed"] = resample_abs_pos_embed(
        model.pos_embed.detach(), new_size=(6, 5), old_size=(4, 4),
        num_prefix_tokens=0 if model.no_embed_class else model.num_prefix_tokens)
    fixed.load_state_dict(state)
    x = torch.randn(2, 3, 48, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    before = snapshot(model)
    for method, extra in (("attention_rollout", {}), ("generic_attention", {}),
                          ("attnlrp", {}), ("attnlrp", {"cp": True})):
        got, want = (attrib.explain(m, x, method=method, target=[1, 3], **extra)
                     for m in (model, fixed))
        assert got.stats["grid"] == want.stats["grid"] == (6, 5), method
        assert got.stats["prefix_tokens"] == 1 + options.get("reg_tokens", 0)
        assert got.layer_attribution.shape == (2, 6, 5)
        for a, b in ((got.attribution, want.attribution), (got.parts["tokens"],
                                                           want.parts["tokens"])):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, err_msg=method)
    assert_unchanged(model, before)


def test_overrides(vit, x):
    a = attrib.explain(vit, x, method="attention_rollout")
    b = attrib.explain(vit, x, method="attention_rollout", prefix_tokens=1, reshape=(4, 4))
    np.testing.assert_array_equal(a.attribution, b.attribution)


def test_swin_has_no_global_token_graph():
    from timm.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    swin = SwinTransformer(img_size=32, patch_size=4, window_size=4, embed_dim=16,
                           depths=(1, 1), num_heads=(1, 2), num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    before = snapshot(swin)
    with pytest.raises(attrib.AttribError, match="explicit matmul"):  # timm's default for Swin
        attrib.explain(swin, x, method="attention_rollout")
    assert_unchanged(swin, before)
    for module in swin.modules():  # as TIMM_FUSED_ATTN=2 sets them
        if hasattr(module, "fused_attn"):
            module.fused_attn = True
    before = snapshot(swin)
    with pytest.raises(attrib.AttribError, match=r"\(8, 1, 16, 16\).*no global token graph"):
        attrib.explain(swin, x, method="attention_rollout")
    assert_unchanged(swin, before)


def test_cam_on_vit_in_one_call_with_rollout(vit, x):
    """The planner serves Grad-CAM and both attention methods from one gradient pass."""
    many = attrib.explain(vit, x, method=["gradcam", "attention_rollout", "generic_attention"],
                          options={"gradcam": {"layer": "blocks.11.norm1"}}, target=2)
    assert many["gradcam"].stats["plan"]["gradient_calls"] == 1
    alone = attrib.explain(vit, x, method="generic_attention", target=2)
    np.testing.assert_allclose(many["generic_attention"].attribution, alone.attribution,
                               rtol=1e-6, atol=1e-9)


def test_threads_on_one_vit(vit, x):
    """Attention hooks act only on their own thread's forward pass: sequential maps, bit for bit."""
    from support.threads import run_in_threads

    def rollout() -> np.ndarray:
        return attrib.explain(vit, x, method="attention_rollout").attribution

    def generic() -> np.ndarray:
        return attrib.explain(vit, x.flip(-1), method="generic_attention", target=3).attribution

    def cam() -> np.ndarray:
        return attrib.explain(vit, x, method="gradcam", layer="blocks.11.norm1",
                              target=3).attribution

    expected = [rollout(), generic(), cam()]
    before = snapshot(vit)
    results = run_in_threads([lambda f=f: [f() for _ in range(2)] for f in (rollout, generic, cam)])
    for maps, want in zip(results, expected):
        for got in maps:
            np.testing.assert_array_equal(got, want)
    assert_unchanged(vit, before)

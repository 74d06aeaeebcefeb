"""AttnLRP and CP-LRP on torchvision's unmodified ``vit_b_16`` against lxt 2.1 (issue 22).

lxt (BSD-3, a test-only dependency) computes relevance as gradient × input on
monkey-patched classes. Its ``lxt.efficient`` package ``__init__`` fails with
transformers 5 (its BERT map imports a removed module), so its rule and ViT
modules are loaded here from their files. CP-LRP is compared with the map
lxt ships for torchvision's ViT (``vit_torch.cp_LRP``); AttnLRP proper with
that map whose attention is lxt's own AttnLRP wrapper (``wrap_attention_forward``:
``divide_gradient`` of query and key by 4, value by 2, the softmax's true
gradient). The patched classes are restored after each reference.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attrib
from attrib.rules import TransformerRules, attnlrp_rule_set

from .conftest import assert_unchanged, snapshot

torchvision = pytest.importorskip("torchvision")
pytest.importorskip("lxt")

TARGETS = [1, 7]


def _rel(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def lxt_modules() -> Iterator[dict[str, Any]]:
    """lxt's ``efficient.rules``, ``efficient.patches`` and ``efficient.models.vit_torch``."""
    import lxt
    root = Path(lxt.__file__).parent / "efficient"
    saved = {k: sys.modules.get(k) for k in ("lxt.efficient", "lxt.efficient.models",
                                             "lxt.efficient.rules", "lxt.efficient.patches",
                                             "lxt.efficient.models.vit_torch")}
    for name, path in (("lxt.efficient", root), ("lxt.efficient.models", root / "models")):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules[name] = package
    loaded = {}
    for name, path in (("rules", root / "rules.py"), ("patches", root / "patches.py"),
                       ("vit_torch", root / "models" / "vit_torch.py")):
        full = "lxt.efficient.models.vit_torch" if name == "vit_torch" else f"lxt.efficient.{name}"
        spec = importlib.util.spec_from_file_location(full, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
        loaded[name] = module
    yield loaded
    for key, value in saved.items():
        if value is None:
            sys.modules.pop(key, None)
        else:
            sys.modules[key] = value


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    """torchvision ``vit_b_16`` at 32² (4 patches + the class token), random weights, float64;
    the head (zeroed by torchvision) and the class token re-initialised."""
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(image_size=32, num_classes=10).double().eval()
    nn.init.normal_(model.heads.head.weight, std=0.05)
    nn.init.normal_(model.heads.head.bias, std=0.05)
    nn.init.normal_(model.class_token, std=0.5)
    return model


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def _torchvision_patches(lxt: dict[str, Any], cp: bool) -> dict[type, Any]:
    """lxt's patches of torchvision's ViT: its CP-LRP map, with lxt's AttnLRP attention
    wrapper on ``nn.MultiheadAttention`` unless ``cp``."""
    patches = lxt["patches"]
    patch_map = dict(lxt["vit_torch"].cp_LRP)
    if not cp:
        def attn_lrp(self: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor,
                     value: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            assert query is key is value and self.batch_first
            n, t, e = query.shape
            h = self.num_heads
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
            q, k, v = (u.reshape(n, t, h, e // h).transpose(1, 2) for u in (q, k, v))
            # lxt's AttnLRP attention wrapper (patches.wrap_attention_forward), verbatim rules
            wrapped = patches.wrap_attention_forward(
                lambda module, q, k, v: F.scaled_dot_product_attention(q, k, v))
            out = wrapped(self, q, k, v).transpose(1, 2).reshape(n, t, e)
            return F.linear(out, self.out_proj.weight, self.out_proj.bias), None

        patch_map[nn.MultiheadAttention] = lambda cls: patches.patch_method(attn_lrp, cls)
    return patch_map


def _timm_patches(lxt: dict[str, Any], cp: bool) -> dict[type, Any]:
    """lxt's rules on a timm ViT, as its torchvision map sets them: identity on GELU, the
    LayerNorm with its σ held constant, and lxt's attention wrapper on the q, k, v of timm's
    ``Attention`` (AttnLRP: ``wrap_attention_forward``; CP-LRP: ``cp_wrap_attention_forward``,
    no gradient through q and k). LayerScale and the linear layers keep their gradient."""
    from timm.layers import LayerNorm
    from timm.models.vision_transformer import Attention

    patches = lxt["patches"]
    wrap = patches.cp_wrap_attention_forward if cp else patches.wrap_attention_forward

    def attention(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.num_heads, c // self.num_heads) \
            .permute(2, 0, 3, 1, 4).unbind(0)
        out = wrap(lambda module, q, k, v: F.scaled_dot_product_attention(q, k, v))(
            self, q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, t, c))

    return {nn.GELU: lambda cls: patches.patch_method(patches.non_linear_forward, cls,
                                                      keep_original=True),
            LayerNorm: lambda cls: patches.patch_method(patches.layer_norm_forward, cls),
            Attention: lambda cls: patches.patch_method(attention, cls)}


@contextlib.contextmanager
def _without_gelu_stabiliser(lxt: dict[str, Any]) -> Iterator[None]:
    """lxt's identity rule on GELU divides by ``x + 1e-10``; inside, by ``x`` (its default
    restored on leaving)."""
    identity = lxt["rules"].identity_rule_implicit_fn.forward
    defaults = identity.__defaults__
    identity.__defaults__ = (0.0,)
    try:
        yield
    finally:
        identity.__defaults__ = defaults


def _lxt_relevance(model: nn.Module, x: torch.Tensor, patch_map: dict[type, Any],
                   tokens_at: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """lxt's relevance (gradient × input) for ``TARGETS`` under ``patch_map``, at the input
    and, summed over channels, at the output of ``tokens_at`` (the tokens entering the first
    block, after the position embedding); the patches are undone afterwards."""
    saved = [(cls, dict(vars(cls))) for cls in patch_map]
    try:
        for cls, patch in patch_map.items():
            assert patch(cls)
        x = x.clone().requires_grad_(True)
        tokens: list[torch.Tensor] = []
        hook = tokens_at.register_forward_hook(lambda module, args, out: tokens.append(out))
        try:
            logits = model(x)
        finally:
            hook.remove()
        (t,) = tokens  # autograd.grad: the parameters' .grad stay as they were
        gx, gt = torch.autograd.grad(logits[torch.arange(len(TARGETS)), TARGETS].sum(), (x, t))
        return (x * gx).detach().numpy(), (t * gt).sum(-1).detach().numpy()
    finally:
        for cls, attributes in saved:
            for name in ("forward", "original_forward"):
                if name in attributes:
                    setattr(cls, name, attributes[name])
                elif name in vars(cls):
                    delattr(cls, name)


@pytest.mark.parametrize("cp", [False, True], ids=["attnlrp", "cp_lrp"])
def test_equals_lxt(vit: nn.Module, images: torch.Tensor, lxt_modules: dict[str, Any],
                    cp: bool) -> None:
    before = snapshot(vit)
    explanation = attrib.explain(vit, images, method="attnlrp", cp=cp, epsilon=0.0,
                                 target=TARGETS)
    ours, tokens = explanation.attribution, explanation.parts["tokens"]
    assert_unchanged(vit, before)
    classes = (nn.GELU, nn.LayerNorm, nn.MultiheadAttention)
    originals = [vars(cls)["forward"] for cls in classes]
    patch_map = _torchvision_patches(lxt_modules, cp)
    expected, expected_tokens = _lxt_relevance(vit, images, patch_map, vit.encoder.dropout)
    assert [vars(cls)["forward"] for cls in classes] == originals  # lxt's patches undone
    assert not any("original_forward" in vars(cls) for cls in classes)
    assert ours.shape == expected.shape == (2, 3, 32, 32)
    # float64: 3.6e-8 / 4.2e-8 measured, all from lxt's identity rule on GELU dividing by
    # x + 1e-10; with that 1e-10 set to 0 the two agree to rounding (4e-12 / 1.1e-11)
    assert _rel(ours, expected) < 1e-7, _rel(ours, expected)
    # the token map (the class token and the 2x2 patch grid) against lxt's gradient x input
    # at encoder.dropout's output: measured 1.0e-8 / 1.8e-8 from the same GELU 1e-10, and
    # 4.3e-13 / 2.8e-12 without it
    assert tokens.shape == expected_tokens.shape == (2, 5)
    assert explanation.stats["prefix_tokens"] == 1 and explanation.stats["grid"] == (2, 2)
    assert _rel(tokens, expected_tokens) < 1e-7, _rel(tokens, expected_tokens)
    np.testing.assert_array_equal(explanation.layer_attribution, tokens[:, 1:].reshape(2, 2, 2))
    token_map = explanation.parts["token_map"]
    assert token_map.shape == (2, 32, 32)  # the corner pixel's centre is clamped to its patch
    np.testing.assert_allclose(token_map[:, 0, 0], tokens[:, 1], rtol=1e-12)
    np.testing.assert_allclose(token_map[:, -1, -1], tokens[:, 4], rtol=1e-12)
    with _without_gelu_stabiliser(lxt_modules):
        exact, exact_tokens = _lxt_relevance(vit, images, patch_map, vit.encoder.dropout)
    assert _rel(ours, exact) < 1e-9, _rel(ours, exact)
    assert _rel(tokens, exact_tokens) < 1e-9, _rel(tokens, exact_tokens)


@pytest.fixture(scope="module")
def layer_scale_vit() -> nn.Module:
    """A timm ViT with LayerScale (``init_values``; γ drawn at random): 2 blocks, width 32,
    patches of 8 on 32² (a class token and a 4x4 grid), float64."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                              num_classes=10, init_values=0.1).double().eval()
    for name, p in model.named_parameters():
        if name.endswith(("token", "pos_embed", "gamma")):
            nn.init.normal_(p, std=0.5)
    return model


@pytest.mark.parametrize("cp", [False, True], ids=["attnlrp", "cp_lrp"])
def test_layer_scale_equals_lxt(layer_scale_vit: nn.Module, lxt_modules: dict[str, Any],
                                cp: bool) -> None:
    """LayerScale (``x * γ`` after ``attn.proj`` and ``mlp.fc2``) merges into its layer: the
    maps equal lxt's (gradient × input through the product) on timm's model, an in-place
    LayerScale gives the same bits, the true gradient of a layer pass stays the true one, and
    the model (``inplace`` flags included) is left as found."""
    pytest.importorskip("timm")
    model = layer_scale_vit
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    before = snapshot(model)
    ours = attrib.explain(model, x, method="attnlrp", cp=cp, epsilon=0.0, target=TARGETS)
    assert ours.stats["rules"]["layer_scale"] == 4
    assert_unchanged(model, before)
    with _without_gelu_stabiliser(lxt_modules):  # without it the two agree to rounding
        expected, tokens = _lxt_relevance(model, x, _timm_patches(lxt_modules, cp),
                                          model.pos_drop)
    # measured 8.4e-15 / 8.3e-15 (input), 2.2e-15 (tokens); 5.6e-9 with lxt's 1e-10
    assert _rel(ours.attribution, expected) < 1e-12, _rel(ours.attribution, expected)
    assert _rel(ours.parts["tokens"], tokens) < 1e-12, _rel(ours.parts["tokens"], tokens)
    scales = [m for m in model.modules() if hasattr(m, "gamma")]
    try:
        for m in scales:
            m.inplace = True  # ``x.mul_(gamma)``
        inplace = attrib.explain(model, x, method="attnlrp", cp=cp, epsilon=0.0, target=TARGETS)
        rule = attnlrp_rule_set(cp, 0.0)
        layer = ("blocks.0.norm1",)  # its gradient comes from a pass with every rule exact
        got, want = (attrib.wrap(model).gradients(attrib.GradientRequest(
            inputs=x, targets=np.array(TARGETS), rule=r, layers=layer, layer_gradients=True))
            .layer_gradients[layer[0]] for r in (rule, "vanilla"))
    finally:
        for m in scales:
            m.inplace = False
    np.testing.assert_array_equal(inplace.attribution, ours.attribution)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert_unchanged(model, before)


def test_attnlrp_differs_from_cp(vit: nn.Module, images: torch.Tensor) -> None:
    full, cp = (attrib.explain(vit, images, method="attnlrp", cp=c, epsilon=0.0,
                               target=TARGETS).attribution for c in (False, True))
    assert _rel(full, cp) > 0.05  # relevance through the softmax changes the map


def test_cp_lrp_conserves(images: torch.Tensor) -> None:
    """CP-LRP with ε = 0, zero biases, zero position embedding and class token: Σ R = logit.

    (AttnLRP's softmax rule does not conserve: Σ x ⊙ (R − s ΣR) ≠ ΣR.)
    """
    torch.manual_seed(2)
    model = torchvision.models.vit_b_16(image_size=32, num_classes=10).double().eval()
    nn.init.normal_(model.heads.head.weight, std=0.05)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or name.endswith("pos_embedding") or name == "class_token":
                p.zero_()
    logits = model(images)[torch.arange(2), TARGETS].detach().numpy()
    explanation = attrib.explain(model, images, method="attnlrp", cp=True, epsilon=0.0,
                                 target=TARGETS)
    np.testing.assert_allclose(explanation.attribution.sum(axis=(1, 2, 3)), logits, rtol=1e-9)
    # and at the tokens entering the first block: every block passes its relevance down
    np.testing.assert_allclose(explanation.parts["tokens"].sum(axis=1), logits, rtol=1e-9)


class _Encoder(nn.Module):
    """Patches of 8 on 16² → one ``nn.TransformerEncoderLayer`` → token mean → head."""

    def __init__(self, norm_first: bool) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 8, stride=8)
        self.layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True,
                                                norm_first=norm_first)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer(self.embed(x).flatten(2).transpose(1, 2)).mean(1))


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre_norm", "post_norm"])
def test_token_relevance_needs_a_pre_norm_stream(norm_first: bool) -> None:
    """A pre-norm block reads the tokens in its LayerNorm and its residual: the token map is
    there (no prefix token, a 2x2 grid); a post-norm block has no such point: no token maps,
    and the stats say why (the input map is returned either way)."""
    torch.manual_seed(0)
    model = _Encoder(norm_first).double().eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    e = attrib.explain(model, x, method="attnlrp", cp=True, target=[0, 2])
    assert e.attribution.shape == (2, 3, 16, 16) and np.isfinite(e.attribution).all()
    if norm_first:
        assert e.parts["tokens"].shape == (2, 4) and e.layer_attribution.shape == (2, 2, 2)
        assert e.stats["prefix_tokens"] == 0 and "token_relevance" not in e.stats
        # prefix_tokens= / reshape= read the token map as the attention methods read theirs
        given = attrib.explain(model, x, method="attnlrp", cp=True, target=[0, 2],
                               prefix_tokens=0, reshape=(2, 2))
        np.testing.assert_array_equal(given.layer_attribution, e.layer_attribution)
        with pytest.raises(attrib.AttribError, match=r"reshape: expected a grid \(h, w\) "
                           r"with h \* w \+ prefix tokens == 4 tokens"):
            attrib.explain(model, x, method="attnlrp", target=[0, 2], reshape=(3, 3))
        with pytest.raises(attrib.AttribError, match="reshape: expected None or the patch grid"):
            attrib.AttnLRP(model, reshape=(2, 0))
    else:
        assert "tokens" not in e.parts and e.layer_attribution is None
        assert "post-norm" in e.stats["token_relevance"]


def test_token_relevance_only_under_transformer_rules(vit: nn.Module,
                                                      images: torch.Tensor) -> None:
    model = attrib.wrap(vit)
    for rule in ("vanilla", attrib.rules.lrp_rule_set("epsilon")):
        with pytest.raises(attrib.AttribError, match="token_relevance: expected a rule set "
                           "with transformer rules"):
            model.gradients(attrib.GradientRequest(inputs=images, rule=rule,
                                                   token_relevance=True))


def test_numpy_references_match_torch_rules() -> None:
    """Each torch rule equals its NumPy reference in attrib.rules (random inputs, float64)."""
    from attrib_torch._rectifiers import RuleState
    from attrib_torch._transformer_rules import Product, Softmax

    g = np.random.default_rng(0)
    a, b, r = g.normal(size=(2, 3, 4)), g.normal(size=(2, 4, 5)), g.normal(size=(2, 3, 5))
    for conservative in (False, True):
        rules = TransformerRules(conservative=conservative, epsilon=1e-3)
        state = RuleState(attnlrp_rule_set(conservative, 1e-3))
        ta, tb = (torch.tensor(u, requires_grad=True) for u in (a, b))
        ra, rb = torch.autograd.grad(Product.apply(ta, tb, 0.5, rules, state), (ta, tb),
                                     torch.tensor(r))
        ea, eb = rules.product(a, b, r, scale=0.5)
        np.testing.assert_allclose(ra.numpy(), ea, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(rb.numpy(), eb, rtol=1e-12, atol=1e-14)
        x = torch.tensor(a, requires_grad=True)
        rs = torch.autograd.grad(Softmax.apply(x, rules, state), x, torch.tensor(a[..., ::-1].copy()))[0]
        np.testing.assert_allclose(rs.numpy(), rules.softmax(a, a[..., ::-1]), rtol=1e-12,
                                   atol=1e-14)


def test_layer_norm_rule_matches_numpy_reference() -> None:
    """LayerNorm under the rules (through the relevance mode) equals TransformerRules.layer_norm."""
    from attrib_torch._rectifiers import RuleState
    from attrib_torch._relevance import RelevanceMode

    g = np.random.default_rng(3)
    x, w, b, r = g.normal(size=(2, 5, 8)), g.normal(size=8), g.normal(size=8), g.normal(size=(2, 5, 8))
    rule_set = attnlrp_rule_set(False, 1e-3)
    tx = torch.tensor(x, requires_grad=True)
    with RelevanceMode(RuleState(rule_set), {}):
        out = F.layer_norm(tx, (8,), torch.tensor(w), torch.tensor(b), 1e-5)
    got = torch.autograd.grad(out, tx, torch.tensor(r))[0].numpy()
    assert rule_set.transformer is not None
    expected = rule_set.transformer.layer_norm(x, w, b, r, eps=1e-5)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


# -- the attention paths: fused (F.scaled_dot_product_attention), written out, Hugging Face --
def _fused_flags(model: nn.Module) -> list[bool]:
    return [block.attn.fused_attn for block in model.blocks]


@pytest.mark.parametrize("cp", [False, True], ids=["attnlrp", "cp_lrp"])
def test_fused_and_written_out_attention_give_one_map(cp: bool) -> None:
    """timm ``vit_small_patch16_224`` (32², 12 blocks, float64): the SDPA route equals the
    operation-by-operation route of ``fused_attn=False``; the flags are left as found."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", img_size=32, pretrained=False)
    model = model.double().eval()
    nn.init.normal_(model.cls_token, std=0.5)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    before = snapshot(model)
    assert _fused_flags(model) == [True] * 12
    fused = attrib.explain(model, x, method="attnlrp", target=[1, 2], epsilon=0.0, cp=cp)
    assert fused.stats["rules"]["attention"] == 12 and "softmax" not in fused.stats["rules"]
    assert_unchanged(model, before)
    for block in model.blocks:
        block.attn.fused_attn = False
    written = attrib.explain(model, x, method="attnlrp", target=[1, 2], epsilon=0.0, cp=cp)
    assert _fused_flags(model) == [False] * 12
    rules = written.stats["rules"]
    assert (rules["softmax"], rules["product"], rules["scale"]) == (12, 24, 12)
    assert "attention" not in rules
    assert _rel(fused.attribution, written.attribution) <= 1e-10
    plain = attrib.explain(model, x, method="gradient_x_input", target=[1, 2])
    assert _rel(fused.attribution, plain.attribution) > 0.1  # the rules are at work


def _timm_copy_of(hf: nn.Module, layers: int) -> nn.Module:
    """The timm ViT computing what a Hugging Face ViT does, with its weights (q, k, v stacked)."""
    timm = pytest.importorskip("timm")
    sd = hf.state_dict()
    config = hf.config
    copy = timm.models.vision_transformer.VisionTransformer(
        img_size=config.image_size, patch_size=config.patch_size, embed_dim=config.hidden_size,
        depth=layers, num_heads=config.num_attention_heads,
        mlp_ratio=config.intermediate_size / config.hidden_size,
        num_classes=config.num_labels).double().eval()
    e = "vit.embeddings."
    new = {"cls_token": sd[e + "cls_token"], "pos_embed": sd[e + "position_embeddings"],
           "patch_embed.proj.weight": sd[e + "patch_embeddings.projection.weight"],
           "patch_embed.proj.bias": sd[e + "patch_embeddings.projection.bias"],
           "norm.weight": sd["vit.layernorm.weight"], "norm.bias": sd["vit.layernorm.bias"],
           "head.weight": sd["classifier.weight"], "head.bias": sd["classifier.bias"]}
    for i in range(layers):
        theirs, ours = f"vit.layers.{i}.", f"blocks.{i}."
        for a, b in (("norm1", "layernorm_before"), ("norm2", "layernorm_after"),
                     ("attn.proj", "attention.o_proj"), ("mlp.fc1", "mlp.fc1"),
                     ("mlp.fc2", "mlp.fc2")):
            for w in ("weight", "bias"):
                new[f"{ours}{a}.{w}"] = sd[f"{theirs}{b}.{w}"]
        for w in ("weight", "bias"):
            new[f"{ours}attn.qkv.{w}"] = torch.cat(
                [sd[f"{theirs}attention.{n}_proj.{w}"] for n in "qkv"])
    copy.load_state_dict(new)
    return copy


@pytest.mark.parametrize("cp", [False, True], ids=["attnlrp", "cp_lrp"])
def test_hugging_face_vit(cp: bool) -> None:
    """A Hugging Face ``ViTForImageClassification`` from a config (random weights, float64):
    its SDPA attention equals a timm ViT with the same weights; its eager attention (softmax in
    float32, as Hugging Face computes it) within float32 rounding."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=5, layer_norm_eps=1e-6, attn_implementation="sdpa")
    torch.manual_seed(0)
    hf = transformers.ViTForImageClassification(config).double().eval()
    embeddings = hf.vit.embeddings
    for token in (embeddings.cls_token, embeddings.position_embeddings):
        nn.init.normal_(token, std=0.5)
    reference = _timm_copy_of(hf, 2)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert _rel(hf(x).logits.numpy(), reference(x).numpy()) <= 1e-12
    expected = attrib.explain(reference, x, method="attnlrp", target=[1, 2], epsilon=0.0, cp=cp)
    sdpa = attrib.explain(hf, x, method="attnlrp", target=[1, 2], epsilon=0.0, cp=cp)
    assert sdpa.stats["rules"]["attention"] == 2
    assert _rel(sdpa.attribution, expected.attribution) <= 1e-10
    hf.config._attn_implementation = "eager"
    try:
        eager = attrib.explain(hf, x, method="attnlrp", target=[1, 2], epsilon=0.0, cp=cp)
    finally:
        hf.config._attn_implementation = "sdpa"
    assert eager.stats["rules"]["softmax"] == 2
    assert _rel(eager.attribution, expected.attribution) <= 1e-6  # measured 5.2e-8

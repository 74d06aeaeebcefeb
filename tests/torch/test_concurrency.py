"""Many threads calling attrib on one torch model, or on several, get the sequential maps.

The reference is the same calls made one after the other in this thread; the
maps must be bit-identical (the same kernels on the same values) and the
models left as found.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

import attrib
from support.threads import run_in_threads

from .conftest import assert_unchanged, snapshot

torchvision = pytest.importorskip("torchvision")

METHODS: list[tuple[str, str | None]] = [
    ("saliency", None),
    ("guided_backprop", None),
    ("gradcam", "layer3"),
    ("guided_gradcam", "layer3"),
    ("lrp", None),
    ("deeplift", None),
]
CALLS = 3


def _resnet(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


@pytest.fixture(scope="module")
def models() -> list[nn.Module]:
    return [_resnet(0), _resnet(1)]


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def _explain(model: nn.Module, x: torch.Tensor, method: str, layer: str | None) -> np.ndarray:
    return attrib.explain(model, x, method=method, layer=layer, target=[1, 7]).attribution


@pytest.mark.parametrize("sharing", ["same model", "different models"])
def test_threads_get_the_sequential_maps(
    models: list[nn.Module], inputs: torch.Tensor, sharing: str
) -> None:
    # thread i runs method i on model 0 ("same model") or model i % 2
    plan = [(models[0] if sharing == "same model" else models[i % 2], *METHODS[i])
            for i in range(len(METHODS))]
    expected = [_explain(model, inputs, method, layer) for model, method, layer in plan]
    before = [snapshot(model) for model in models]

    def job(i: int) -> Callable[[], list[np.ndarray]]:
        model, method, layer = plan[i]
        return lambda: [_explain(model, inputs, method, layer) for _ in range(CALLS)]

    results = run_in_threads([job(i) for i in range(len(plan))])
    for (_, method, _), maps, reference in zip(plan, results, expected):
        for got in maps:
            np.testing.assert_array_equal(got, reference, err_msg=method)
    for model, state in zip(models, before):
        assert_unchanged(model, state)


def test_one_layer_tapped_by_two_threads_at_once(models: list[nn.Module],
                                                 inputs: torch.Tensor) -> None:
    # two threads tap the same module; each must see only its own forward pass
    expected = _explain(models[0], inputs, "gradcam", "layer4")
    other = inputs.flip(-1)
    expected_other = _explain(models[0], other, "gradcam", "layer4")
    results = run_in_threads([
        lambda: [_explain(models[0], inputs, "gradcam", "layer4") for _ in range(CALLS)],
        lambda: [_explain(models[0], other, "gradcam", "layer4") for _ in range(CALLS)],
        lambda: [attrib.wrap(models[0]).forward(inputs) for _ in range(CALLS)],
    ])
    for got in results[0]:
        np.testing.assert_array_equal(got, expected)
    for got in results[1]:
        np.testing.assert_array_equal(got, expected_other)


def test_one_method_instance_shared_by_threads() -> None:
    """A method *instance* serves several threads: the call's target and counters are call-local.

    One Score-CAM instance (which reads the call's :class:`attrib.targets.Target` while it
    scores its masked batches, and counts them) is called by six threads at once, with class
    targets and with ``Weights`` targets interleaved; each thread gets the map and the counts
    of the same call made alone.
    """
    from attrib.targets import Weights

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    method = attrib.ScoreCAM(model, layer="2", batch_size=2)
    rng = np.random.default_rng(0)
    targets = [Weights(rng.normal(size=(2, 5))) if i % 2 else [i % 5, (i + 2) % 5]
               for i in range(6)]
    before = snapshot(model)
    alone = [method.attribute(x, target) for target in targets]
    together = run_in_threads([lambda t=target: method.attribute(x, t) for target in targets])
    pairs = list(zip(together, alone, strict=True))
    wrong = [i for i, (ours, want) in enumerate(pairs)
             if not np.array_equal(ours.attribution, want.attribution)]
    assert not wrong, f"threads {wrong} got another call's map (a target crossed threads)"
    counts = [ours.stats["masked_batches"] for ours, _ in pairs]
    assert counts == [want.stats["masked_batches"] for _, want in pairs] == [8] * 6, counts
    # the class and Weights calls differ, so a target crossing threads would show
    assert not np.allclose(alone[0].attribution, alone[1].attribution)
    assert_unchanged(model, before)


def test_threads_on_one_vit_get_the_sequential_maps(inputs: torch.Tensor) -> None:
    """AttnLRP, CP-LRP and the attention methods from three threads on one timm ViT."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=10).eval()
    x = inputs[:, :, :32, :32].contiguous()
    flags = [block.attn.fused_attn for block in vit.blocks]
    plan: list[tuple[str, dict[str, object]]] = [
        ("attnlrp", {}), ("attnlrp", {"cp": True}), ("generic_attention", {})]

    def run(method: str, options: dict[str, object]) -> np.ndarray:
        return attrib.explain(vit, x, method=method, target=[1, 7], **options).attribution

    expected = [run(method, options) for method, options in plan]
    before = snapshot(vit)
    results = run_in_threads([
        (lambda m=method, o=options: [run(m, o) for _ in range(CALLS)]) for method, options in plan])
    for (method, _), maps, reference in zip(plan, results, expected):
        for got in maps:
            np.testing.assert_array_equal(got, reference, err_msg=method)
    assert_unchanged(vit, before)
    assert [block.attn.fused_attn for block in vit.blocks] == flags

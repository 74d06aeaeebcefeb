"""LRP through explicit zero padding (timm's TF-``SAME`` convolutions): torch ``F.pad`` ↔ jax.

Zero padding is linear and carries no relevance; a convolution of a zero-padded
activation is one layer ``conv(pad(x))``, so every rule, the flat, w² and zᴮ
rules of a first layer included, sees the unpadded input exactly as it sees a
convolution's own padding. Checked in float64 (≤ 1e-10 relative) on a small
network with an asymmetric TF-``SAME`` pad before a stride-2 first layer and a
symmetric pad inside: torch with ``F.pad`` against jax written twice, with
``jnp.pad`` before a ``VALID`` convolution and with the padding inside the
convolution (no ``pad`` at all), for the composites whose first-layer rule
sees the padding and a w² rule on the inner layer by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import attrib  # noqa: E402

TARGETS = [1, 3]
#: (composite, options): flat / zᴮ at the padded first layer, w² at the padded inner one
CASES: list[tuple[str, dict[str, Any]]] = [
    ("epsilon_plus_flat", {}),
    ("epsilon_gamma_box", {"low": -2.0, "high": 2.5}),
    ("epsilon_plus_flat", {"rules": {"conv2": "wsquare"}}),
]
FIRST, INNER = (0, 1, 0, 1), (1, 1, 1, 1)  # F.pad order: (left, right, top, bottom)


class _Padded(nn.Module):
    """TF-SAME stride-2 3×3 convolution, ReLU, zero-padded 3×3, ReLU, average pool, dense."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, stride=2)
        self.conv2 = nn.Conv2d(4, 5, 3)
        self.fc = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(F.pad(x, FIRST)))
        x = torch.relu(self.conv2(F.pad(x, INNER)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class _Seen(nn.Module):
    """``net`` with a copy (``cat``) between each pad and its layer: the rules see padded input."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = torch.relu(net.conv1(torch.cat([F.pad(x, FIRST)])))
        x = torch.relu(net.conv2(torch.cat([F.pad(x, INNER)])))
        return net.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.fixture(scope="module")
def net() -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    model = _Padded().double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return model


def _jax_model(net: nn.Module, explicit: bool) -> tuple[Any, Any]:
    """``(apply_fn, params)``: the same network in jax, padding by ``jnp.pad`` or in the conv."""
    import jax.numpy as jnp

    params = {name: {"kernel": jnp.asarray(m.weight.detach().numpy().transpose(2, 3, 1, 0)),
                     "bias": jnp.asarray(m.bias.detach().numpy())}
              for name, m in (("conv1", net.conv1), ("conv2", net.conv2))}
    params["fc"] = {"kernel": jnp.asarray(net.fc.weight.detach().numpy().T),
                    "bias": jnp.asarray(net.fc.bias.detach().numpy())}

    def conv(p: Any, x: Any, stride: int, pad: tuple[int, ...]) -> Any:
        (left, right, top, bottom) = pad
        spatial = ((top, bottom), (left, right))
        if explicit:
            x = jnp.pad(x, ((0, 0), *spatial, (0, 0)))
        out = jax.lax.conv_general_dilated(x, p["kernel"], (stride, stride),
                                           "VALID" if explicit else spatial,
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return out + p["bias"]

    def apply_fn(params: Any, x: Any) -> Any:
        x = jax.nn.relu(conv(params["conv1"], x, 2, FIRST))
        x = jax.nn.relu(conv(params["conv2"], x, 1, INNER))
        return jnp.mean(x, axis=(1, 2)) @ params["fc"]["kernel"] + params["fc"]["bias"]

    return apply_fn, params


@pytest.mark.parametrize("case", range(len(CASES)))
def test_zero_padding_is_part_of_the_layer_in_both_backends(net: nn.Module, case: int) -> None:
    composite, options = CASES[case]
    x = np.random.default_rng(1).normal(size=(2, 3, 8, 8))
    theirs = attrib.explain(net, torch.from_numpy(x), method="lrp", composite=composite,
                            target=TARGETS, **options)
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    maps = []
    with jax.enable_x64(True):
        for explicit in (True, False):
            ours = attrib.explain(_jax_model(net, explicit), x_nhwc, method="lrp",
                                  composite=composite, target=TARGETS, **options)
            assert ours.stats["rules"] == theirs.stats["rules"]
            maps.append(ours.attribution.transpose(0, 3, 1, 2))
    assert not jax.config.jax_enable_x64, "x64 must not leak into other tests"
    expected = theirs.attribution
    scale = np.abs(expected).max()
    assert scale > 0
    for ours_map in maps:
        assert np.abs(ours_map - expected).max() <= 1e-10 * scale
    # the padding matters: rules that saw the padded input would spread relevance onto it
    if "rules" in options:
        options = {"rules": {"net.conv2": options["rules"]["conv2"]}}
    padded = attrib.explain(_Seen(net), torch.from_numpy(x), method="lrp", composite=composite,
                            target=TARGETS, **options).attribution
    assert np.abs(padded - expected).max() > 1e-2 * scale


def test_padding_with_a_constant_other_than_zero_has_no_rule() -> None:
    class _Reflect(nn.Module):
        def __init__(self, mode: str, value: float) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.mode, self.value = mode, value

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.conv(x))
            if self.mode == "constant":
                x = F.pad(x, (1, 1, 1, 1), value=self.value)
            else:
                x = F.pad(x, (1, 1, 1, 1), mode=self.mode)
            return x.mean(dim=(2, 3))

    x = torch.randn(1, 3, 6, 6)
    for mode, value in (("constant", 1.0), ("reflect", 0.0)):
        with pytest.raises(attrib.AttribError, match="'pad' applied to an activation"):
            attrib.explain(_Reflect(mode, value).eval(), x, method="lrp", target=0)

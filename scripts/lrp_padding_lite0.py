"""LRP on EfficientNet-Lite0 (timm TF-SAME, ``F.pad``) in torch against its jax twin, float64.

Run: ``python scripts/lrp_padding_lite0.py`` (needs attrib[models], timm, jax).
Prints, per composite, the largest difference over the largest value between
the torch map and the jax twin's (whose convolutions pad themselves), and both
backends' rule counts. Numbers are in docs/methods/lrp.md.
"""

from __future__ import annotations

import copy

import jax
import numpy as np
import torch

import attrib
import attrib_jax


def main() -> None:
    model = copy.deepcopy(attrib.models.efficientnet_lite0("torch").model).double().eval()
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32))
    targets = [285, 967]
    with jax.enable_x64(True):
        twin = attrib.wrap(attrib_jax.from_torch(model), backend="jax")
        for composite, options in [("epsilon_plus_flat", {}),
                                   ("epsilon_gamma_box", {"low": -3.0, "high": 3.0}),
                                   ("epsilon_alpha2_beta1", {}), ("zero", {})]:
            theirs = attrib.explain(model, torch.from_numpy(x), method="lrp",
                                    composite=composite, target=targets, **options)
            ours = attrib.explain(twin, np.ascontiguousarray(x.transpose(0, 2, 3, 1)),
                                  method="lrp", composite=composite, target=targets, **options)
            a, b = theirs.attribution, ours.attribution.transpose(0, 3, 1, 2)
            print(f"{composite}: {np.abs(a - b).max() / np.abs(a).max():.1e}",
                  theirs.stats["rules"], ours.stats["rules"])


if __name__ == "__main__":
    main()

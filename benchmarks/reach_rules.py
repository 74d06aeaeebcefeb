"""Reach of the rule family: ``lrp`` and ``deeplift`` on every torchvision classifier.

Run: ``python benchmarks/reach_rules.py [--models resnet18,vgg16] [--size 64] [--markdown]``

For each model of ``torchvision.models.list_models(module=torchvision.models)``
(weights=None, float64, eval mode, seeded biases and BatchNorm scale/shift,
BatchNorm statistics measured on random images: ``tests/torch/lrp_models.py``),
batch 2, targets [1, 7], inputs of ``--size``² (224² where the model needs it,
75² for inception_v3):

- ``lrp``: ``epsilon_plus_flat`` on the model must give a finite map; then the
  same composite with ε = stabiliser = 0 on a copy with every bias, BatchNorm
  shift and running mean set to zero, where every rule conserves exactly
  (z⁺, flat, ε = 0, Norm at pooling and additions, max pooling, rectifiers),
  must sum to the target logit: the column is ``max |ΣR − logit| / max |logit|``.
- ``deeplift``: the map against a per-channel constant baseline (max-pool ties
  everywhere) must sum to ``f(x) − f(x0)`` (a plain forward of the unmodified
  model): the column is ``max |Σ map − Δf| / max |Δf|``.

A model either passes (finite, residual ≤ 1e-8 for lrp, ≤ 1e-6 for deeplift) or
raises ``attrib.AttribError``; the column then names the operation from the
error. A DeepLIFT map whose sum misses the delta by more than rounding must
come with an ``attrib.AttribWarning`` (``warns``). Anything else (another
exception, a NaN map, a residual over the bound without a warning) is a
failure, printed as ``FAIL``. Each model is built, run and freed in turn.
"""

from __future__ import annotations

import argparse
import gc
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

import attrib

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "torch"))
from lrp_models import informative, zero_bias, zplus_dropped  # noqa: E402

TARGETS = [1, 7]
SIZES = {"inception_v3": 75, "maxvit_t": 224, "vit_b_16": 224, "vit_b_32": 224,
         "vit_h_14": 224, "vit_l_16": 224, "vit_l_32": 224}
LRP_BOUND, DEEPLIFT_BOUND = 1e-8, 1e-6


def _refused(error: attrib.AttribError) -> str:
    """The operation an error names, in a few words."""
    text = str(error)
    for pattern in (r"the operation '([^']+)'[^,;.]*", r"(a batch_norm that follows none)",
                    r"(batch_norm in training mode)", r"(dropout in training mode)"):
        found = re.search(pattern, text)
        if found:
            return "refused: " + found.group(0).replace("the operation ", "")[:70]
    return "refused: " + text.splitlines()[0][:70]


def _logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    return out.numpy()[np.arange(len(x)), TARGETS]


def _lrp(model: nn.Module, x: np.ndarray) -> str:
    try:
        out = attrib.explain(model, x, method="lrp", composite="epsilon_plus_flat", target=TARGETS)
    except attrib.AttribError as error:
        return _refused(error)
    if not np.isfinite(out.attribution).all():
        return "FAIL: non-finite map"
    zero = zero_bias(model)
    attribution, dropped = zplus_dropped(zero, lambda: attrib.explain(
        zero, x, method="lrp", composite="epsilon_plus_flat", epsilon=0.0, stabilizer=0.0,
        target=TARGETS).attribution)
    logit = _logits(zero, x)
    total = attribution.reshape(len(x), -1).sum(axis=1)
    residual = float(np.abs(total - (logit - dropped)).max() / np.abs(logit).max())
    share = float(np.abs(dropped).max() / np.abs(logit).max())
    return f"{'ok' if residual <= LRP_BOUND else 'FAIL'} {residual:.1e} (z⁺ drops {share:.1e})"


def _deeplift(model: nn.Module, x: np.ndarray, x0: np.ndarray) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", attrib.AttribWarning)
        try:
            out = attrib.explain(model, x, method="deeplift", target=TARGETS, baseline=x0)
        except attrib.AttribError as error:
            return _refused(error)
    warned = any(issubclass(w.category, attrib.AttribWarning) for w in caught)
    if not np.isfinite(out.attribution).all():
        return "FAIL: non-finite map"
    delta = _logits(model, x) - _logits(model, np.broadcast_to(x0, x.shape).copy())
    total = out.attribution.reshape(len(x), -1).sum(axis=1)
    residual = float(np.abs(total - delta).max() / np.abs(delta).max())
    if residual > DEEPLIFT_BOUND:
        scale = float(np.abs(_logits(model, np.broadcast_to(x0, x.shape).copy())).max())
        return (f"{'warns' if warned else 'FAIL'} {residual:.1e} (|f(x0)| up to {scale:.1e}: "
                "the network amplifies rounding)")
    return f"{'FAIL (warned)' if warned else 'ok'} {residual:.1e}"


def _guard(call: object, *args: object) -> str:
    try:
        return call(*args)  # type: ignore[operator, no-any-return]
    except Exception as error:  # noqa: BLE001 - a failure of attrib is what this looks for
        return f"FAIL: {type(error).__name__}: {str(error).splitlines()[0][:60]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated; default all")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [n for n in args.models.split(",") if n] or \
        torchvision.models.list_models(module=torchvision.models)
    print("| model | input | lrp `epsilon_plus_flat` (conservation at ε = 0, zero biases) "
          "| deeplift (summation-to-delta) | s |")
    print("|---|---|---|---|---|")
    for name in names:
        start = time.perf_counter()
        size = SIZES.get(name, args.size)
        # inception_v3's auxiliary head (run in train mode to measure BatchNorm) needs 299²
        model = informative(name, size=299 if name == "inception_v3" else size)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(2, 3, size, size))
        x0 = 0.3 * rng.normal(size=(1, 3, 1, 1))
        lrp = _guard(_lrp, model, x)
        deeplift = _guard(_deeplift, model, x, x0)
        print(f"| {name} | {size}² | {lrp} | {deeplift} | {time.perf_counter() - start:.0f} |",
              flush=True)
        del model
        gc.collect()


if __name__ == "__main__":
    main()

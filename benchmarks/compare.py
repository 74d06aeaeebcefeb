"""attrib against Captum and pytorch-grad-cam, method by method, measured in one interleaved run.

Run (the full table of ``docs/benchmarks.md``)::

    python benchmarks/compare.py

or a quick run::

    python benchmarks/compare.py --models resnet18 --batches 1 --repeats 3 --no-memory --no-jax

For each torchvision model (``weights=None``, eval mode) and batch size, at
``--size``² pixels, every variant below is called once as a warm-up and then
``--repeats`` rounds in which all variants take turns (so a change in the
machine's load hits them alike); the median seconds are printed with the
ratio to the **floor**: one forward pass plus the gradient of the summed
target logits at the input (``torch.autograd.grad``), measured in the same
rounds. Every attrib call goes through ``attrib.explain`` (the user's path:
input checks, NumPy maps out); Captum's and pytorch-grad-cam's calls are
their documented ones.

=====================  ===================================  =======================================
method                 Captum                               pytorch-grad-cam
=====================  ===================================  =======================================
saliency               ``Saliency(abs=False)``              —
gradient × input       ``InputXGradient``                   —
deconvnet              ``Deconvolution``                    —
guided backprop        ``GuidedBackprop``                   ``GuidedBackpropReLUModel`` (one image
                                                            per call: a loop over the batch)
Grad-CAM at layer4     ``LayerGradCam`` + ``interpolate``   ``GradCAM`` (upsampled by the library)
guided Grad-CAM l4/l3  ``GuidedGradCam``                    —
=====================  ===================================  =======================================

Peak memory (``--memory``, on by default) is measured apart from the timing:
each variant runs in a new process on the same model and batch, once as a
warm-up, then again after the process's peak resident size is reset
(``/proc/self/clear_refs``); the figure is the peak minus the resident size
before that call (MiB), i.e. what one call adds.

Each timed call's minor page faults are counted (median per variant, column
``faults/call``). ``--allocator steady`` re-runs the timing under glibc
settings that keep freed memory in the process (``MALLOC_MMAP_MAX_=0``, no heap
trimming; the memory children keep the default allocator), which removes the
page faults that otherwise make two identical variants differ by a few percent
(see "Page faults" in ``docs/benchmarks.md``).

``--models efficientnet_lite0`` takes the ImageNet EfficientNet-Lite0 of
:func:`attrib.models.efficientnet_lite0` (ReLU6 throughout, depthwise
convolutions) on scikit-image's photographs; its CAM layers are ``bn2`` and
``blocks.5`` (for ResNets ``layer4`` and ``layer3``), and integrated gradients
(16 steps, attrib and Captum) join the table. After each table, "guided vs
plain" gives ``||guided - saliency|| / ||saliency||`` of each library's guided
backprop against the plain gradient of the same input: 0 means the library's
guided rule did not reach the network's rectifiers (Captum's ``GuidedBackprop``
and pytorch-grad-cam's ``GuidedBackpropReLUModel`` override ``nn.ReLU`` only).

JAX (``--jax``, on by default): attrib on the Flax twin of each ResNet
(``attrib_jax.from_torch``) against a bare ``jax.jit(jax.grad(...))`` of the
same function; the first call (trace + compile + run) is reported apart from
the steady-state median. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import (  # noqa: E402 - the benchmarks' one timing loop
    STEADY_MALLOC,
    Variant,
    interleaved,
    steady_allocator,
)

# -- the variants -------------------------------------------------------------------------

def _cam_layers(model: Any) -> tuple[str, str]:
    """The deep and the earlier CAM layer: ResNets' layer4 / layer3, EfficientNets' bn2 / blocks.5."""
    return ("bn2", "blocks.5") if hasattr(model, "conv_head") else ("layer4", "layer3")


def torch_variants(model: Any, x: Any, targets: list[int]) -> dict[str, Variant]:
    """Label -> zero-argument call, for one model and batch."""
    import torch

    import attrib

    deep, early = _cam_layers(model)
    deep_module, early_module = model.get_submodule(deep), model.get_submodule(early)
    ig = deep == "bn2"  # integrated gradients on the real network only

    rows = torch.arange(x.shape[0])
    target_index = torch.tensor(targets)

    def floor() -> object:
        leaf = x.detach().requires_grad_()
        return torch.autograd.grad(model(leaf)[rows, target_index].sum(), leaf)[0]

    def ours(method: str, **kwargs: Any) -> Variant:
        return lambda: attrib.explain(model, x, method=method, target=targets, **kwargs)

    variants: dict[str, Variant] = {"floor": floor}
    variants["saliency/attrib"] = ours("saliency")
    variants["gradient_x_input/attrib"] = ours("gradient_x_input")
    variants["deconvnet/attrib"] = ours("deconvnet")
    variants["guided_backprop/attrib"] = ours("guided_backprop")
    variants[f"gradcam@{deep}/attrib"] = ours("gradcam", layer=deep)
    variants[f"guided_gradcam@{deep}/attrib"] = ours("guided_gradcam", layer=deep)
    variants[f"guided_gradcam@{early}/attrib"] = ours("guided_gradcam", layer=early)
    if ig:
        variants["integrated_gradients/attrib"] = ours("integrated_gradients", steps=16,
                                                       batch_size=16)

    try:
        import captum.attr as ca
    except ImportError:
        print("captum is not installed (pip install 'attrib[dev]'): its columns are left out")
    else:
        size = tuple(x.shape[2:])
        variants["saliency/captum"] = lambda: ca.Saliency(model).attribute(
            x, target=targets, abs=False)
        variants["gradient_x_input/captum"] = lambda: ca.InputXGradient(model).attribute(
            x, target=targets)
        variants["deconvnet/captum"] = lambda: ca.Deconvolution(model).attribute(
            x, target=targets)
        variants["guided_backprop/captum"] = lambda: ca.GuidedBackprop(model).attribute(
            x, target=targets)
        variants[f"gradcam@{deep}/captum"] = lambda: ca.LayerAttribution.interpolate(
            ca.LayerGradCam(model, deep_module).attribute(x, target=targets), size,
            interpolate_mode="bilinear")
        variants[f"guided_gradcam@{deep}/captum"] = lambda: ca.GuidedGradCam(
            model, deep_module).attribute(x, target=targets)
        variants[f"guided_gradcam@{early}/captum"] = lambda: ca.GuidedGradCam(
            model, early_module).attribute(x, target=targets)
        if ig:
            variants["integrated_gradients/captum"] = lambda: ca.IntegratedGradients(
                model).attribute(x, target=targets, n_steps=16, internal_batch_size=16)

    try:
        from pytorch_grad_cam import GradCAM, GuidedBackpropReLUModel
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        print("grad-cam is not installed (pip install 'attrib[dev]'): its columns are left out")
    else:
        cam_targets = [ClassifierOutputTarget(t) for t in targets]

        def gradcam_lib() -> object:
            with GradCAM(model=model, target_layers=[deep_module]) as cam:
                return cam(input_tensor=x, targets=cam_targets)

        def guided_lib() -> object:
            guided = GuidedBackpropReLUModel(model=model, device=x.device)
            return [guided(x[i:i + 1], target_category=t) for i, t in enumerate(targets)]

        variants[f"gradcam@{deep}/grad-cam"] = gradcam_lib
        variants["guided_backprop/grad-cam"] = guided_lib
    return variants


def jax_variants(torch_model: Any, x: Any, targets: list[int]) -> dict[str, Variant]:
    """attrib on the Flax twin against a bare jit(grad) of the same function (NHWC)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import attrib
    import attrib_jax

    module, variables = attrib_jax.from_torch(torch_model)
    xh = np.ascontiguousarray(x.detach().numpy().transpose(0, 2, 3, 1))
    xj = jnp.asarray(xh)
    tj = jnp.asarray(targets)
    rows = jnp.arange(len(targets))

    def score(inputs: Any) -> Any:
        return module.apply(variables, inputs)[rows, tj].sum()

    def score_of(weights: Any, inputs: Any) -> Any:
        return module.apply(weights, inputs)[rows, tj].sum()

    bare = jax.jit(jax.grad(score))  # the weights closed over: compile-time constants
    bare_args = jax.jit(jax.grad(score_of, argnums=1))  # the weights an argument, as in attrib
    model = (module, variables)
    return {
        "floor": lambda: np.asarray(bare(xj)),
        "floor/weights-as-argument": lambda: np.asarray(bare_args(variables, xj)),
        "saliency/attrib": lambda: attrib.explain(model, xh, method="saliency", target=targets),
        "guided_backprop/attrib": lambda: attrib.explain(model, xh, method="guided_backprop",
                                                         target=targets),
    }


# -- timing ---------------------------------------------------------------------------------

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(arch: str, batch: int, size: int, label: str, threads: int) -> None:
    """Print the peak MiB one warm call of ``label`` adds (run in its own process)."""
    fn = _build(arch, batch, size, threads)[label]
    fn()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak resident size (VmHWM) to the current one
    before = _status_kib("VmRSS")
    fn()
    print(json.dumps({"mib": (_status_kib("VmHWM") - before) / 1024}))


def peak_memory(arch: str, batch: int, size: int, label: str, threads: int) -> float | None:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", arch, str(batch), str(size), label,
         str(threads)],
        capture_output=True, text=True,
        # the default allocator: a steady one keeps the warm-up's memory resident
        env={k: v for k, v in os.environ.items() if k not in STEADY_MALLOC},
    )
    if out.returncode != 0:
        print(f"  (memory of {label}: {out.stderr.strip().splitlines()[-1:]})")
        return None
    value: float = json.loads(out.stdout.strip().splitlines()[-1])["mib"]
    return value


def guided_versus_plain(model: Any, x: Any, targets: list[int]) -> dict[str, float]:
    """``||guided - plain|| / ||plain||`` per library, the plain gradient of the same input."""
    import numpy as np
    import torch

    import attrib

    leaf = x.detach().clone().requires_grad_()
    rows = torch.arange(x.shape[0])
    plain = torch.autograd.grad(model(leaf)[rows, torch.tensor(targets)].sum(), leaf)[0].numpy()

    def rel(guided: Any) -> float:
        return float(np.linalg.norm(np.asarray(guided) - plain) / np.linalg.norm(plain))

    out = {"attrib": rel(attrib.explain(model, x, method="guided_backprop",
                                        target=targets).attribution)}
    try:
        import captum.attr as ca

        out["captum"] = rel(ca.GuidedBackprop(model).attribute(x, target=targets).detach())
    except ImportError:
        pass
    try:
        from pytorch_grad_cam import GuidedBackpropReLUModel

        guided = GuidedBackpropReLUModel(model=model, device=x.device)
        maps = [guided(x[i:i + 1], target_category=t) for i, t in enumerate(targets)]
        out["grad-cam"] = rel(np.stack(maps).transpose(0, 3, 1, 2))  # its maps are HWC
    except ImportError:
        pass
    return out


def _model_and_batch(arch: str, batch: int, size: int) -> tuple[Any, Any, list[int]]:
    import torch
    import torchvision

    if arch == "efficientnet_lite0":
        import attrib
        from attrib.models import PHOTOS, photographs

        net = attrib.models.efficientnet_lite0()
        photos = photographs([PHOTOS[i % len(PHOTOS)] for i in range(batch)])
        x = torch.from_numpy(net.preprocess([photos[n] for n in photos] * (
            batch // len(photos) + 1))[:batch])
        with torch.no_grad():
            targets = net.model(x).argmax(1).tolist()
        return net.model, x, targets

    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None).eval()
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    targets = [(7 + 101 * i) % 1000 for i in range(batch)]
    return model, x, targets


def _build(arch: str, batch: int, size: int, threads: int) -> dict[str, Variant]:
    import torch

    torch.set_num_threads(threads)
    return torch_variants(*_model_and_batch(arch, batch, size))


# -- report -----------------------------------------------------------------------------------

def _methods(labels: list[str]) -> list[str]:
    seen: list[str] = []
    for label in labels:
        method = label.split("/")[0]
        if method != "floor" and method not in seen:
            seen.append(method)
    return seen


def print_table(title: str, medians: dict[str, float], memory: dict[str, float | None],
                first: dict[str, float] | None = None,
                faults: dict[str, float] | None = None) -> None:
    floor = medians["floor"]
    print(f"\n{title}: floor {floor:.4f} s")
    header = f"{'method':24} {'library':9} {'seconds':>8} {'x floor':>8} {'x captum':>9}"
    header += f" {'peak MiB':>9}" if memory else ""
    header += f" {'first call s':>12}" if first else ""
    header += f" {'faults/call':>11}" if faults else ""
    print(header)
    floors = [label for label in medians if label.split("/")[0] == "floor"]
    rows = floors + [label for method in _methods(list(medians)) for label in medians
                     if label.split("/")[0] == method]
    for label in rows:
        method, _, library = label.partition("/")
        seconds = medians[label]
        captum = medians.get(f"{method}/captum")
        line = f"{method:24} {library or '-':9} {seconds:8.4f} {seconds / floor:8.3f} "
        line += f"{seconds / captum:9.3f}" if captum else f"{'':9}"
        if memory:
            mib = memory.get(label)
            line += f" {mib:9.1f}" if mib is not None else f" {'':9}"
        if first:
            line += f" {first[label]:12.2f}"
        if faults:
            line += f" {faults[label]:11.0f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", metavar="METHOD",
                        help="only these methods (e.g. guided_backprop gradcam@layer4)")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                        help="measure each variant's peak memory in its own process")
    parser.add_argument("--jax", action=argparse.BooleanOptionalAction, default=True,
                        help="also time attrib on the Flax twin against a bare jit(grad)")
    parser.add_argument("--allocator", choices=["default", "steady"], default="default",
                        help="steady: glibc malloc keeps the memory it frees (MALLOC_MMAP_MAX_=0, "
                        "no heap trimming), so page faults no longer add their own noise")
    parser.add_argument("--memory-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    steady_allocator(args.allocator == "steady")
    if args.memory_child:
        arch, batch, size, label, threads = args.memory_child
        memory_child(arch, int(batch), int(size), label, int(threads))
        return

    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.size}x{args.size}, "
          f"median of {args.repeats} interleaved rounds after a warm-up, {args.allocator} "
          "allocator; faults/call: median minor page faults of a timed call")
    results: dict[tuple[str, int], dict[str, float]] = {}
    for arch in args.models:
        for batch in args.batches:
            model, x, targets = _model_and_batch(arch, batch, args.size)
            variants = torch_variants(model, x, targets)
            if args.methods:
                variants = {label: fn for label, fn in variants.items()
                            if label == "floor" or label.split("/")[0] in args.methods}
            faults: dict[str, float] = {}
            _, medians = interleaved(variants, args.repeats, faults)
            memory: dict[str, float | None] = {}
            if args.memory:
                memory = {label: peak_memory(arch, batch, args.size, label, args.threads)
                          for label in variants}
            results[(arch, batch)] = medians
            print_table(f"{arch}, batch {batch} (torch)", medians, memory, faults=faults)
            print("guided vs plain gradient, ||guided - saliency|| / ||saliency|| (0: the guided "
                  "rule changed nothing): " + ", ".join(
                      f"{lib} {value:.3f}" for lib, value in
                      guided_versus_plain(model, x, targets).items()))
            if args.jax:
                first, jax_medians = interleaved(jax_variants(model, x, targets), args.repeats)
                print_table(f"{arch}, batch {batch} (jax, Flax twin)", jax_medians, {}, first)
    for arch in args.models:
        if (arch, 1) in results and (arch, 8) in results:
            print(f"\n{arch}: seconds per image at batch 8 / at batch 1")
            one, eight = results[(arch, 1)], results[(arch, 8)]
            for label in eight:
                if label in one:
                    print(f"  {label:32} {eight[label] / 8 / one[label]:.3f}")


if __name__ == "__main__":
    main()

"""Memory over many calls: the RSS curve of 100 calls of each method on ResNet-50.

Run: ``python benchmarks/bench_leaks.py [--calls 100] [--batch 1] [--size 224] [--every 10]
[--threads N]``

For each method in turn (saliency, gradient_x_input, deconvnet, guided_backprop,
gradcam and guided_gradcam at ``layer4``) it makes ``--calls`` calls of
``attrib.explain`` on one torchvision ``resnet50(weights=None)`` in eval mode and
prints, every ``--every`` calls, the process's resident set size (RSS, MiB, from
``/proc/self/status``), the number of live ``torch.Tensor`` objects the garbage
collector knows, and on CUDA the bytes torch has allocated. A leak shows as a
curve that keeps rising across the calls of one method; the first calls raise it
once (allocator caches, oneDNN kernels). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import gc
import warnings

import torch

import attrib

METHODS = [("saliency", None), ("gradient_x_input", None), ("deconvnet", None),
           ("guided_backprop", None), ("gradcam", "layer4"), ("guided_gradcam", "layer4")]


def rss_mib() -> float:
    """Resident set size of this process in MiB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on lazy torch attributes may warn
        warnings.simplefilter("ignore")
        return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval().to(args.device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    cuda = args.device.startswith("cuda")
    print(f"resnet50 weights=None, batch {args.batch}, {args.size}x{args.size}, "
          f"device {args.device}, torch {torch.__version__}")
    print(f"start: RSS {rss_mib():.1f} MiB, live tensors {live_tensors()}")
    header = f"{'method':<18}{'calls':>6}{'RSS MiB':>10}{'tensors':>9}"
    print(header + (f"{'cuda MiB':>10}" if cuda else ""))
    for method, layer in METHODS:
        for call in range(1, args.calls + 1):
            attrib.explain(model, x, method=method, layer=layer, target=1)
            if call == 1 or call % args.every == 0:
                row = f"{method:<18}{call:>6}{rss_mib():>10.1f}{live_tensors():>9}"
                if cuda:
                    row += f"{torch.cuda.memory_allocated() / 2**20:>10.1f}"
                print(row, flush=True)


if __name__ == "__main__":
    main()

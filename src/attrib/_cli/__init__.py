"""The ``attrib`` command line: ``explain``, ``demo``, ``backends``, ``methods``.

Bad input (a missing file, an unknown method or backend, missing weights, any
:class:`attrib.AttribError`) exits with status 2 and one line on stderr, no
traceback. ``main(argv)`` runs in-process (tests call it) and returns the
exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from .._errors import AttribError
from ._errors import EXIT_USAGE, CLIError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and no usage block) on stderr."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The ``attrib`` parser with its sub-commands."""
    parser = _Parser(
        prog="attrib",
        description="Gradient-based attribution maps (saliency, gradient x input, deconvnet, "
                    "guided backprop, Grad-CAM, guided Grad-CAM) for PyTorch and JAX/Flax models.",
        epilog="Start with: attrib demo --out attrib-demo",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    explain = commands.add_parser(
        "explain", help="explain images with a model and write the figures",
        description="Explain each IMAGE with one or more methods; write the seed figure "
                    "(original | Grad-CAM | vanilla gradient | guided backprop | guided "
                    "Grad-CAM) and one PNG per method to --out, and print the paths.",
    )
    explain.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    explain.add_argument("--model", required=True, metavar="SPEC",
                         help="'demo' (the bundled CNN; images resized to 64x64), "
                              "'efficientnet_lite0' (ImageNet weights from attrib[models], "
                              "offline; prints the top-5 classes), "
                              "'torchvision:NAME' (needs --weights or torchvision's file in "
                              "torch's hub cache; nothing is downloaded) or 'module:function' "
                              "(a function of no arguments returning a model in eval mode)")
    explain.add_argument("--method", default="gradcam,saliency,guided_backprop,guided_gradcam",
                         metavar="M[,M...]",
                         help="methods, comma-separated (default: the seed figure's four; "
                              "see 'attrib methods')")
    explain.add_argument("--backend", choices=None, metavar="NAME",
                         help="torch (default) or jax (the demo CNN, efficientnet_lite0; "
                              "torchvision ResNets through their Flax twin)")
    explain.add_argument("--target", metavar="CLASS",
                         help="class index or name to explain (default: each image's top class)")
    explain.add_argument("--layer", metavar="NAME",
                         help="layer for the CAM methods (default: the last layer with a "
                              "spatial output that is not pooling, e.g. layer4 of a ResNet)")
    explain.add_argument("--weights", metavar="PATH",
                         help="a saved state dict (torch.save(model.state_dict(), PATH)) for "
                              "torchvision:NAME")
    explain.add_argument("--size", type=int, metavar="PX",
                         help="input side in pixels (default: 64 for demo, else 224)")
    explain.add_argument("--normalize", choices=("imagenet", "none"),
                         help="input normalisation (default: none for demo, else imagenet)")
    explain.add_argument("--out", default="attrib-out", metavar="DIR",
                         help="output folder (default: attrib-out)")

    demo = commands.add_parser(
        "demo", help="run the offline demo: the bundled model on generated scenes",
        description="Explain generated scenes (one shape on a cluttered background) with the "
                    "bundled CNN and every method, in every installed backend; write the seed "
                    "figure and the methods x images grid, and print where. Then explain six of "
                    "scikit-image's photographs with EfficientNet-Lite0 (ImageNet weights from "
                    "attrib[models], offline) the same way. With ImageNet "
                    "ResNet weights (--weights, or torchvision's resnet*.pth in torch's hub "
                    "cache) also explain scikit-image's photographs.",
    )
    demo.add_argument("--out", default="attrib-demo", metavar="DIR",
                      help="output folder (default: attrib-demo)")
    demo.add_argument("--weights", metavar="PATH",
                      help="ImageNet weights of a torchvision ResNet (a saved state dict)")
    demo.add_argument("--backend", metavar="NAME", help="only this backend (torch or jax)")
    demo.add_argument("-n", type=int, default=6, metavar="N",
                      help="number of scenes (default: 6)")
    demo.add_argument("--no-photos", dest="photos", action="store_false",
                      help="skip scikit-image's photographs (EfficientNet-Lite0)")

    from ._evaluate import add_evaluate_parser

    add_evaluate_parser(commands)

    commands.add_parser("backends", help="list the registered backends",
                        description="List the registered backends: name, whether the framework "
                                    "is installed, the distribution that registered it, and what "
                                    "it takes.")
    commands.add_parser("methods", help="list the registered methods",
                        description="List the registered methods: name, whether it needs "
                                    "--layer, and what it computes.")

    # a whole dataset: explain-dataset FOLDER and report STORE (in _dataset.py)
    from ._dataset import add_dataset_commands

    add_dataset_commands(commands)
    return parser


def _check_backend(name: str | None) -> None:
    if name is None:
        return
    from .._registry import default_registry

    backend = default_registry().backend(name)  # unknown -> AttribError with the known ones
    if not backend.is_installed():
        raise CLIError(f"--backend: {name!r} is not installed; run: {backend.install_hint}")


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "backends":
        from ._tables import backends_table

        print(backends_table())
        return 0
    if args.command == "methods":
        from ._tables import methods_table

        print(methods_table())
        return 0
    from ._dataset import DATASET_COMMANDS, run_dataset_command

    if args.command in DATASET_COMMANDS:
        _check_backend(getattr(args, "backend", None))
        return run_dataset_command(args)
    _check_backend(args.backend)
    if args.command == "evaluate":
        from ._evaluate import run_evaluate

        return run_evaluate(args)
    if args.command == "explain":
        if args.size is not None and args.size < 8:
            raise CLIError(f"--size: expected at least 8 pixels, got {args.size}")
        from ._explain import run_explain

        return run_explain(args)
    if args.n < 1:
        raise CLIError(f"-n: expected a positive number of scenes, got {args.n}")
    from ._demo import run_demo

    return run_demo(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``attrib`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        return _dispatch(args)
    except (CLIError, AttribError) as error:
        message = " ".join(str(error).split())  # one line, whatever the library wrote
        print(f"attrib: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exit_:  # --help and --version exit through argparse
        return exit_.code if isinstance(exit_.code, int) else 0
    except KeyboardInterrupt:
        print("attrib: interrupted", file=sys.stderr)
        return 130

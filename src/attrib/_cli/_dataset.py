"""``attrib explain-dataset FOLDER`` and ``attrib report STORE``: a folder of images into a Zarr
store (resumable, in one process or on Ray), and the store into a static HTML gallery."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import CLIError
from ._models import LoadedModel, load_model
from ._run import model_inputs, needs_layer, relative

__all__ = ["add_dataset_commands", "run_dataset_command", "DATASET_COMMANDS", "image_files",
           "folder_labels"]

DATASET_COMMANDS = ("explain-dataset", "report")


def add_dataset_commands(commands: Any) -> None:
    """Add ``explain-dataset`` and ``report`` to the ``attrib`` sub-parsers."""
    run = commands.add_parser(
        "explain-dataset", help="explain every image of a folder into a Zarr store (resumable)",
        description="Explain every image under FOLDER (recursively; any file PIL reads) with one "
                    "method or several (one call per batch, shared passes), in batches, into a "
                    "Zarr store: raw maps, layer maps, targets, logits, "
                    "labels (when the sub-folders are named after the model's classes), thumbnails "
                    "and the run's settings. Run it again to resume: finished batches are skipped.",
    )
    run.add_argument("folder", metavar="FOLDER", help="folder of images (searched recursively)")
    run.add_argument("--model", required=True, metavar="SPEC",
                     help="'demo', 'torchvision:NAME' or 'module:function' (as attrib explain)")
    run.add_argument("--method", required=True, metavar="M[,M...]",
                     help="a method, or several separated by commas (see 'attrib methods')")
    run.add_argument("--out", required=True, metavar="STORE", help="the Zarr store, e.g. maps.zarr")
    run.add_argument("--backend", metavar="NAME", help="torch (default) or jax")
    run.add_argument("--layer", metavar="NAME", help="layer of layer methods (default as attrib explain)")
    run.add_argument("--target", metavar="CLASS",
                     help="class index or name, or 'labels' (the sub-folder names; default: each "
                          "image's top class)")
    run.add_argument("--weights", metavar="PATH", help="state dict for torchvision:NAME")
    run.add_argument("--size", type=int, metavar="PX", help="input side (default: 64 demo, else 224)")
    run.add_argument("--normalize", choices=("imagenet", "none"), help="input normalisation")
    run.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per batch (32)")
    run.add_argument("--thumbnail", type=int, default=112, metavar="PX",
                     help="side of the thumbnails kept for 'attrib report' (default 112)")
    run.add_argument("--ray", action="store_true",
                     help="run on Ray (the cluster in RAY_ADDRESS, else a local one); needs attrib[ray]")
    run.add_argument("--concurrency", default="1", metavar="N|auto",
                     help="Ray actors (with --ray; default 1); 'auto': one per CPU of the cluster, "
                          "fewer where that would leave reading no CPU")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    report = commands.add_parser(
        "report", help="write a static HTML gallery of a store",
        description="Write OUT/index.html (inline CSS and script, no server or network) with "
                    "each image beside its map (one column per method), sortable by confidence, "
                    "by correct vs label and "
                    "by any metric in the store, paginated; the PNGs go to OUT/img and OUT/map.",
    )
    report.add_argument("store", metavar="STORE", help="a store written by explain-dataset")
    report.add_argument("--out", default="report", metavar="DIR", help="output folder (report)")
    report.add_argument("--per-page", type=int, default=50, metavar="N", help="rows per page (50)")


def image_files(folder: str) -> list[Path]:
    """Every file under ``folder`` whose extension PIL reads, sorted by relative path."""
    from PIL import Image

    root = Path(folder)
    if not root.is_dir():
        raise CLIError(f"FOLDER: no such folder {folder!r}")
    extensions = {e.lower() for e in Image.registered_extensions()}
    files = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in extensions),
                   key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise CLIError(f"FOLDER: no image files under {folder!r}")
    return files


def folder_labels(files: Sequence[Path], class_names: Sequence[str] | None) -> np.ndarray | None:
    """Labels from the parent folders' names, when every one is a class name; else None."""
    if not class_names:
        return None
    index = {name: i for i, name in enumerate(class_names)}
    parents = [p.parent.name for p in files]
    if not all(name in index for name in parents):
        return None
    return np.array([index[name] for name in parents], dtype=np.int64)


def _target(text: str | None, loaded: LoadedModel, labels: np.ndarray | None) -> Any:
    if text == "labels":
        if labels is None:
            raise CLIError("--target: 'labels' needs every image in a sub-folder named after one of "
                           "the model's classes" + (f" ({', '.join(loaded.class_names[:8])})"
                                                    if loaded.class_names else ""))
        return "labels"
    from ._explain import parse_target

    return parse_target(text, loaded)


def _pictures(paths: Sequence[Any], size: int, imagenet: bool) -> np.ndarray:
    """The images at ``paths`` resized and centre-cropped, (N, size, size, 3) floats in [0, 1]."""
    from ..preprocess import resize_and_center_crop

    resize = int(round(size * 256 / 224)) if imagenet else size
    try:
        return np.stack([resize_and_center_crop(str(p), size, resize) for p in paths]
                        ).astype(np.float32) / 255.0
    except Exception as error:  # an unreadable file: name it, no traceback
        raise CLIError(f"FOLDER: cannot read an image of {[str(p) for p in paths][:3]}...: "
                       f"{error}") from error


class _FolderBatches:
    """The folder's images in batches of model inputs (and labels); ``dataset`` is the file
    list, as a torch DataLoader's, so the progress bar knows the total."""

    def __init__(self, files: Sequence[Path], labels: np.ndarray | None, loaded: LoadedModel,
                 batch_size: int) -> None:
        self.dataset, self.labels, self.loaded, self.batch_size = files, labels, loaded, batch_size

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        files, labels, size = self.dataset, self.labels, self.batch_size
        for start in range(0, len(files), size):
            pictures = _pictures(files[start:start + size], self.loaded.size, self.loaded.imagenet)
            yield model_inputs(pictures, self.loaded), None if labels is None else labels[start:start + size]


def _model_of(spec: str, backend: str | None, weights: str | None, size: int | None,
              normalize: str | None) -> Any:
    """The model of ``--model`` (the Ray actors' factory: picklable, loads in the actor)."""
    return load_model(spec, backend, weights, size, normalize).model


def _load_rows(batch: dict[str, Any], *, size: int, imagenet: bool, layout: str) -> dict[str, Any]:
    """A Ray batch of file paths (and labels) into model inputs."""
    loaded = LoadedModel(None, "", layout, size, imagenet, None, None, "")
    out = {"image": model_inputs(_pictures(list(batch["path"]), size, imagenet), loaded)}
    if "label" in batch:
        out["label"] = np.asarray(batch["label"], dtype=np.int64)
    return out


def _explain_dataset(args: argparse.Namespace) -> int:
    from .._dataset import explain_dataset
    from ._explain import parse_methods

    methods = parse_methods(args.method)
    # one name: the store of one method (maps at its top level); several: one group per method
    method: str | list[str] = methods[0] if len(methods) == 1 else methods
    layer_methods = [m for m in methods if needs_layer(m)]
    shown = ", ".join(methods)
    if args.batch_size < 1:
        raise CLIError(f"--batch-size: expected a positive number, got {args.batch_size}")
    if args.thumbnail < 8:
        raise CLIError(f"--thumbnail: expected at least 8 pixels, got {args.thumbnail}")
    args.concurrency = _concurrency(args.concurrency, args.ray)
    files = image_files(args.folder)
    loaded = load_model(args.model, args.backend, args.weights, args.size, args.normalize)
    labels = folder_labels(files, loaded.class_names)
    target = _target(args.target, loaded, labels)
    layer = None
    if layer_methods:
        layer = args.layer or loaded.layer
        if layer is None:
            raise CLIError(f"--layer: {', '.join(layer_methods)} needs a layer and none is known "
                           f"for {loaded.name}")
    elif args.layer is not None:
        raise CLIError(f"--layer: {shown} explain{'s' if len(methods) == 1 else ''} the input and "
                       f"take{'s' if len(methods) == 1 else ''} no layer")
    common: dict[str, Any] = dict(method=method, out=args.out, target=target, layer=layer,
                                  backend=loaded.backend, thumbnail=args.thumbnail,
                                  class_names=list(loaded.class_names) if loaded.class_names else None,
                                  progress=not args.quiet)
    if args.ray:
        store = _on_ray(args, files, labels, loaded, common)
    else:
        store = explain_dataset(loaded.model, _FolderBatches(files, labels, loaded, args.batch_size),
                                **common)
    print(f"{relative(Path(args.out))}: {len(store)} images, {shown}"
          + (f" on {layer}" if layer else ""))
    return 0


def _on_ray(args: argparse.Namespace, files: Sequence[Path], labels: np.ndarray | None,
            loaded: LoadedModel, common: dict[str, Any]) -> Any:
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise CLIError("--ray: ray is not installed; run: pip install 'attrib[ray]'") from error
    from .. import ray as attrib_ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    rows = [{"path": str(p), **({} if labels is None else {"label": int(labels[i])})}
            for i, p in enumerate(files)]
    ds = ray.data.from_items(rows).map_batches(
        functools.partial(_load_rows, size=loaded.size, imagenet=loaded.imagenet, layout=loaded.layout),
        batch_size=args.batch_size, batch_format="numpy")
    factory = functools.partial(_model_of, args.model, args.backend, args.weights, args.size,
                                args.normalize)
    return attrib_ray.explain_dataset(ds, factory, batch_size=args.batch_size,
                                      concurrency=args.concurrency, **common)


def _report(args: argparse.Namespace) -> int:
    from .._report import write_report

    if args.per_page < 1:
        raise CLIError(f"--per-page: expected a positive number, got {args.per_page}")
    page = write_report(args.store, args.out, per_page=args.per_page)
    print(relative(page))
    return 0


def run_dataset_command(args: argparse.Namespace) -> int:
    """Run ``explain-dataset`` or ``report``."""
    if args.command == "report":
        return _report(args)
    return _explain_dataset(args)


def _concurrency(given: str, ray: bool) -> int | str:
    """``--concurrency`` as ``attrib.ray.explain_dataset`` takes it: a positive int or ``"auto"``."""
    value: int | str = given.strip().lower()
    if value != "auto":
        try:
            value = int(given)
        except ValueError:
            value = 0
        if value < 1:
            raise CLIError(f"--concurrency: expected a positive number of Ray actors or 'auto', "
                           f"got {given!r}")
    if value != 1 and not ray:
        raise CLIError(f"--concurrency: expected 1 without --ray (actors run on Ray), got {given!r}; "
                       f"add --ray")
    return value

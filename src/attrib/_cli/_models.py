"""Turn the ``--model`` SPEC of ``attrib explain`` into a model, its input convention and names.

SPEC is ``demo`` (the bundled CNN), the name of a pretrained model of
:mod:`attrib.models` (``efficientnet_lite0``: ImageNet weights, offline),
``torchvision:NAME`` (with ``--weights`` or torchvision's file in torch's hub
cache), or ``module:function`` (a function of no arguments that returns a model).
"""

from __future__ import annotations

import glob
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._demo import CLASS_NAMES, GRADCAM_LAYER, IMAGE_SIZE, demo_model
from .._errors import close_matches
from .._registry import default_registry
from ._errors import CLIError

__all__ = ["JAX_RESNETS", "LoadedModel", "load_model", "cached_weights", "hub_checkpoints_dir",
           "torchvision_from_weights", "WEIGHTS_HINT"]

#: torchvision models the jax backend runs through their Flax twin (attrib_jax.from_torch).
JAX_RESNETS: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")

WEIGHTS_HINT = (
    "save them on a machine with a network with torch.save(torchvision.models.{name}("
    "weights='DEFAULT').state_dict(), '{name}.pth') and pass --weights {name}.pth, or copy "
    "torchvision's file ({name}-*.pth) into {cache}"
)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for :func:`attrib.explain`, and how to feed and label it.

    Attributes
    ----------
    model : the object passed to ``attrib.explain``
    backend : str
    layout : "NCHW" or "NHWC"
    size : int
        Side of the square input.
    imagenet : bool
        Whether inputs are normalised with ImageNet's mean and std.
    layer : str or None
        Default layer for the CAM methods; ``None``: the library's default
        (the last spatial layer that is not pooling, see ``attrib.explain``).
    class_names : sequence of str or None
    name : str
        For titles.
    pretrained : attrib.models.Pretrained or None
        For a pretrained model: its own input pipeline (``preprocess``,
        ``deprocess``) and ``decode``.
    """

    model: Any
    backend: str
    layout: str
    size: int
    imagenet: bool
    layer: str | None
    class_names: Sequence[str] | None
    name: str
    pretrained: Any = None


def hub_checkpoints_dir() -> str:
    """torch's hub cache of downloaded weights (``$TORCH_HOME/hub/checkpoints``)."""
    import torch

    return os.path.join(torch.hub.get_dir(), "checkpoints")


def cached_weights(names: Sequence[str]) -> str | None:
    """The first file ``NAME-*.pth`` in torch's hub cache for one of ``names``, else None."""
    directory = hub_checkpoints_dir()
    for name in names:
        found = sorted(glob.glob(os.path.join(directory, f"{name}-*.pth")))
        if found:
            return found[0]
    return None


def _load_state_dict(path: str) -> dict[str, Any]:
    import torch

    if not os.path.isfile(path):
        raise CLIError(f"--weights: no such file {path!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle that is not a state dict, a truncated file, ...
        raise CLIError(f"--weights: {path!r} is not a saved state dict ({type(error).__name__}: "
                       f"{str(error).splitlines()[0] if str(error) else ''})") from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise CLIError(f"--weights: {path!r} does not hold a state dict (name -> tensor)")
    return state


def _classes(state: dict[str, Any]) -> int | None:
    """Outputs of the last 2-D weight of a classifier state dict."""
    for key in reversed(list(state)):
        if key.endswith("weight") and getattr(state[key], "ndim", 0) == 2:
            return int(state[key].shape[0])
    return None


def torchvision_from_weights(name: str, path: str) -> Any:
    """``torchvision.models.NAME`` (no download) holding the state dict at ``path``, in eval mode."""
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        near = close_matches(name, known)
        raise CLIError(f"--model: torchvision has no classification model {name!r}"
                       + (f"; did you mean {near[0]!r}?" if near else ""))
    state = _load_state_dict(path)
    classes = _classes(state) or 1000
    model = torchvision.models.get_model(name, weights=None, num_classes=classes)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        problems = [f"{len(keys)} {what} (e.g. {keys[0]!r})" for keys, what in
                    ((missing, "missing keys"), (unexpected, "unexpected keys"),
                     (wrong, "tensors of another shape")) if keys]
        raise CLIError(f"--weights: {path!r} does not fit torchvision:{name}: "
                       + ", ".join(problems))
    model.load_state_dict(state)
    return model.eval()


def _torchvision_classes(name: str, classes: int) -> Sequence[str] | None:
    if classes != 1000:
        return None
    try:
        import torchvision

        return list(torchvision.models.get_model_weights(name).DEFAULT.meta["categories"])
    except Exception:  # a model without registered weights has no category names
        return None


def load_model(spec: str, backend: str | None, weights: str | None, size: int | None,
               normalize: str | None) -> LoadedModel:
    """Resolve ``--model SPEC`` (see the module docstring)."""
    backend_name = backend or "torch"
    if spec == "demo":
        if weights is not None:
            raise CLIError("--weights: the demo model ships its own weights; drop --weights")
        model: Any = demo_model(backend_name)
        layout = "NCHW" if backend_name == "torch" else "NHWC"
        return LoadedModel(model, backend_name, layout, size or IMAGE_SIZE,
                           normalize == "imagenet", GRADCAM_LAYER, CLASS_NAMES,
                           "demo")
    from ..models import available, load

    if spec in available():
        if weights is not None or normalize is not None or size is not None:
            raise CLIError(f"--model {spec}: ships its weights, input size and normalisation; "
                           "drop --weights, --size and --normalize")
        pretrained = load(spec, backend_name)
        return LoadedModel(pretrained.model, backend_name, pretrained.layout,
                           pretrained.spec.size, True, pretrained.layer, pretrained.classes,
                           pretrained.spec.title, pretrained)
    if spec.startswith("torchvision:"):
        name = spec.split(":", 1)[1]
        if not name:
            raise CLIError("--model: expected torchvision:NAME, e.g. torchvision:resnet18")
        if backend_name == "jax" and name not in JAX_RESNETS:
            raise CLIError(f"--backend: jax runs torchvision ResNets only ({', '.join(JAX_RESNETS)}, "
                           f"through attrib_jax.from_torch), not {name!r}; use --backend torch")
        path = weights or cached_weights([name])
        if path is None:
            raise CLIError(f"--weights: torchvision:{name} needs weights and attrib downloads "
                           "nothing; " + WEIGHTS_HINT.format(name=name, cache=hub_checkpoints_dir()))
        torch_model = torchvision_from_weights(name, path)
        classes = int(_classes(torch_model.state_dict()) or 1000)
        layer = None  # the CAM methods' default layer (attrib.explain(layer=None))
        if backend_name == "jax":
            import attrib_jax

            model = attrib_jax.from_torch(torch_model)
            layout = "NHWC"
        else:
            model, layout = torch_model, "NCHW"
        return LoadedModel(model, backend_name, layout, size or 224, normalize != "none", layer,
                           _torchvision_classes(name, classes), name)
    if ":" in spec:
        return _from_function(spec, backend, weights, size, normalize)
    near = close_matches(spec, ["demo", *available()])
    raise CLIError(f"--model: expected 'demo', a pretrained model ({', '.join(available())}), "
                   f"'torchvision:NAME' or 'module:function', got {spec!r}"
                   + (f"; did you mean {near[0]!r}?" if near else ""))


def _from_function(spec: str, backend: str | None, weights: str | None, size: int | None,
                   normalize: str | None) -> LoadedModel:
    if weights is not None:
        raise CLIError("--weights: only for torchvision:NAME; a module:function loads its own")
    module_name, _, function_name = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does, so ./mymodels.py is found
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise CLIError(f"--model: cannot import module {module_name!r} "
                       f"({type(error).__name__}: {error})") from error
    function = getattr(module, function_name, None)
    if not callable(function):
        raise CLIError(f"--model: module {module_name!r} has no function {function_name!r}")
    try:
        model = function()
    except Exception as error:
        raise CLIError(f"--model: {spec}() raised {type(error).__name__}: {error}") from error
    registry = default_registry()
    chosen = registry.backend(backend) if backend else registry.detect(model)
    layer = None  # the CAM methods' default layer, found through the Model interface
    return LoadedModel(model, chosen.name, chosen.layout, size or 224, normalize != "none", layer,
                       None, spec)

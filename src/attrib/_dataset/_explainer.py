"""The per-batch work of a dataset run: :class:`BatchExplainer`.

A plain class with ``__call__(batch: dict) -> dict`` so that Ray Data runs it
unchanged as a ``map_batches`` actor (the model is built once per actor, in
``__init__``), and :func:`attrib.explain_dataset` runs the very same code in
one process: both paths give the same arrays, bit for bit.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import Any

import numpy as np

from .._errors import AttribTypeError, argument_error, shown
from ._store import map_path
from ._thumbnails import thumbnails

__all__ = ["BatchExplainer", "IMAGE_KEY", "LABEL_KEY", "checksums", "FORMAT_VERSION",
           "SEVERAL_FORMAT_VERSION", "described"]

#: Key of the input batch in the dicts :class:`BatchExplainer` takes.
IMAGE_KEY = "image"
#: Key of the labels (optional) in the dicts :class:`BatchExplainer` takes.
LABEL_KEY = "label"
#: Version of the store layout, kept in the store's settings.
FORMAT_VERSION = 1
#: Version of the layout of a store of several methods (their maps under ``methods/NAME/``).
SEVERAL_FORMAT_VERSION = 2


def described(method: str | Sequence[str]) -> str:
    """``method`` for a progress bar or a message: ``"gradcam"``, ``"saliency, gradcam"``."""
    return method if isinstance(method, str) else ", ".join(str(m) for m in method)


def checksums(inputs: np.ndarray) -> np.ndarray:
    """CRC-32 of each sample's bytes, shape (N,) uint32: how a resumed run recognises its data."""
    array = np.ascontiguousarray(inputs)
    return np.array([zlib.crc32(memoryview(array[i]).cast("B")) for i in range(len(array))],
                    dtype=np.uint32)


def _json_safe(value: Any) -> Any:
    """``value`` as JSON would store it (unknown objects by their repr)."""
    return json.loads(json.dumps(value, default=repr, sort_keys=True))


def _versions(backend: Any) -> dict[str, str]:
    """attrib's version and the backend framework's (and the backend distribution's)."""
    from .._version import __version__

    found = {"attrib": __version__}
    third_party = backend.distribution not in ("", "attrib")
    names = [*backend.frameworks, *([backend.distribution] if third_party else [])]
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


class BatchExplainer:
    """Explain one batch of a dataset: a dict of arrays in, a dict of arrays out.

    Built once (it calls ``model_factory`` once, so a Ray actor loads its
    model once) and called on many batches. ``attrib.explain_dataset`` and
    ``attrib.ray.explain_dataset`` both run it; the dict it returns is what
    the store keeps.

    Parameters
    ----------
    model_factory : callable of no arguments
        Returns the model (a torch ``nn.Module``, a Flax ``(module, variables)``
        pair, an :class:`attrib.Model`, ...). Called once, in ``__init__``.
    method : str or list of str
        One of :func:`attrib.list_methods`, or a list of distinct ones: each
        batch is then explained by every method in one
        :func:`attrib.explain` call (shared gradient passes; each map equals
        the method's own, bit for bit).
    target : None, int or "labels"
        ``None``: each sample's arg-max class; an int: that class for all;
        ``"labels"``: each sample's label (batches must carry ``"label"``).
    layer : str, optional
        The tapped layer of layer methods (Grad-CAM); with several methods,
        of every layer method without its own in ``options``.
    backend : str, optional
        Detected from the model when omitted.
    objective : str
        ``"logit"`` (default), ``"log_softmax"`` or ``"softmax"``.
    thumbnail : int or None
        Longest side, in pixels, of the uint8 RGB thumbnail of each input kept
        for the gallery (``attrib report``); ``None`` keeps none.
    store_inputs : bool
        Also keep the inputs themselves (as given to the model).
    options : mapping of method name to mapping, optional
        Options per method, as :func:`attrib.explain` takes them
        (``{"gradcam": {"layer": "conv4"}}``).
    **method_options
        Further options of the method's class (one method only; with
        several, use ``options``).

    Notes
    -----
    ``__call__`` takes ``{"image": (N, ...) array, "label": (N,) ints (optional)}``
    and returns ``{"attribution", "layer_attribution" (layer methods),
    "targets", "logits", "labels" (when given), "thumbnails" (unless
    ``thumbnail=None``), "inputs" (with ``store_inputs``), "checksums"}``,
    every value an array with N rows. With several methods each one's maps
    are ``"methods/NAME/attribution"`` and ``"methods/NAME/layer_attribution"``.

    Examples
    --------
    >>> import attrib
    >>> explainer = attrib.BatchExplainer(lambda: attrib.demo_model("torch"), method="gradcam",
    ...                                   layer="conv4", thumbnail=None)
    >>> images = attrib.demo_data(2).images.transpose(0, 3, 1, 2)
    >>> out = explainer({"image": images})
    >>> out["attribution"].shape, out["layer_attribution"].shape, out["targets"].shape
    ((2, 64, 64), (2, 16, 16), (2,))
    """

    def __init__(
        self,
        model_factory: Callable[[], Any],
        *,
        method: str | Sequence[str],
        target: Any = None,
        layer: str | None = None,
        backend: str | None = None,
        objective: str = "logit",
        thumbnail: int | None = 112,
        store_inputs: bool = False,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        **method_options: Any,
    ) -> None:
        if not callable(model_factory):
            raise argument_error("model_factory", "a function of no arguments that returns a model",
                                 shown(type(model_factory).__name__),
                                 "Pass e.g. lambda: model; explain_dataset takes the model itself.",
                                 kind=AttribTypeError)
        self._target = _check_dataset_target(target)
        if thumbnail is not None and (isinstance(thumbnail, bool) or not isinstance(thumbnail, int)
                                      or thumbnail < 8):
            raise argument_error("thumbnail", "None or a side in pixels of at least 8", thumbnail)
        if not isinstance(store_inputs, bool):
            raise argument_error("store_inputs", "True or False", store_inputs)
        self._thumbnail = thumbnail
        self._store_inputs = store_inputs
        self._several = not isinstance(method, str)
        if isinstance(method, str):
            from .._api import _check_options

            own = {**method_options, **_check_options(options, [method]).get(method, {})}
            self._methods = [_attributor(model_factory(), method, layer, backend, objective, own)]
            stored_options: Any = own
        else:  # several: checked and built as attrib.explain does
            from .._api import build_methods

            self._methods = build_methods(model_factory(), method, layer=layer, backend=backend,
                                          objective=objective, options=options,
                                          method_options=method_options)
            stored_options = {name: dict(own) for name, own in (options or {}).items()}
        model = self._methods[0].model
        backend_info = self._methods[0].registry.backend(model.backend)
        self.settings: dict[str, Any] = _json_safe({
            "format": SEVERAL_FORMAT_VERSION if self._several else FORMAT_VERSION,
            "method": [m.name for m in self._methods] if self._several else method,
            "options": stored_options,
            "layer": layer,
            "target": target,
            "objective": objective,
            "backend": model.backend,
            "layout": model.layout,
            "thumbnail": thumbnail,
            "store_inputs": store_inputs,
            "versions": _versions(backend_info),
        })
        """The run's settings, as the store's attributes keep them (JSON types)."""

    @property
    def needs_labels(self) -> bool:
        """Whether the batches must carry labels (``target="labels"``)."""
        return self._target == "labels"

    @property
    def layout(self) -> str:
        """The model's input layout, ``"NCHW"`` or ``"NHWC"``."""
        return str(self._methods[0].model.layout)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Explain ``batch["image"]`` (targets from ``batch["label"]`` with ``target="labels"``)."""
        if not isinstance(batch, Mapping) or IMAGE_KEY not in batch:
            given = sorted(batch) if isinstance(batch, Mapping) else shown(type(batch).__name__)
            raise argument_error("batch", f"a dict with the inputs under {IMAGE_KEY!r} (and "
                                          f"optionally the labels under {LABEL_KEY!r})", given)
        inputs = batch[IMAGE_KEY]
        labels = None if batch.get(LABEL_KEY) is None else _labels(batch[LABEL_KEY], len(inputs))
        if self._target == "labels":
            if labels is None:
                raise argument_error("target", f"batches with labels under {LABEL_KEY!r} for "
                                               "target='labels'", shown("a batch without labels"))
            target: Any = labels
        else:
            target = self._target
        explanations: dict[str | None, Any]
        if self._several:  # one call: the methods share its gradient passes
            from .._plan import explain_planned

            explanations = {name: e for name, e in explain_planned(self._methods, inputs, target).items()}
        else:  # the maps at the store's top level
            explanations = {None: self._methods[0].attribute(inputs, target)}
        out: dict[str, np.ndarray] = {}
        for name, explanation in explanations.items():
            out[map_path(name, "attribution")] = np.asarray(explanation.attribution)
            if explanation.layer_attribution is not None:
                out[map_path(name, "layer_attribution")] = np.asarray(explanation.layer_attribution)
        explanation = next(iter(explanations.values()))  # targets and logits: every method's
        out["targets"] = np.asarray(explanation.targets, dtype=np.int64)
        out["logits"] = np.asarray(explanation.logits)
        if labels is not None:
            out["labels"] = labels
        pictures = np.asarray(inputs)
        if self._thumbnail is not None:
            out["thumbnails"] = thumbnails(pictures, self.layout, self._thumbnail)
        if self._store_inputs:
            out["inputs"] = pictures
        out["checksums"] = checksums(pictures)
        return out

    def logits(self, inputs: Any) -> np.ndarray:
        """The model's logits on ``inputs``, shape (N, classes) (a resumed run checks its weights)."""
        return np.asarray(self._methods[0].model.forward(inputs))

    def __repr__(self) -> str:
        s = self.settings
        return f"BatchExplainer(method={s['method']!r}, backend={s['backend']!r}, target={s['target']!r})"


def _check_dataset_target(target: Any) -> Any:
    if target is None or target == "labels":
        return target
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool) and target >= 0:
        return int(target)
    raise argument_error("target", "None (each sample's top class), a class index, or 'labels'",
                         target, "Per-sample targets of a dataset come from its labels: "
                                 "target='labels'.")


def _labels(labels: Any, n: int) -> np.ndarray:
    array = np.asarray(labels)
    if array.shape != (n,) or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise argument_error("labels", f"{n} integer class indices, one per image",
                             shown(f"{array.dtype} array of shape {array.shape}"))
    return array.astype(np.int64)


def _attributor(model: Any, method: str, layer: str | None, backend: str | None, objective: str,
                options: dict[str, Any]) -> Any:
    """The method's attributor, checked as :func:`attrib.explain` checks its arguments."""
    from .._api import _keyword_options
    from .._registry import default_registry

    registry = default_registry()
    cls = registry.method(method)
    kwargs: dict[str, Any] = {"backend": backend, "objective": objective, **options}
    if cls.needs_layer and "layer" not in options:  # options={method: {"layer": ...}} wins
        kwargs["layer"] = layer
    elif layer is not None:
        raise argument_error("layer", f"no layer for {method!r}, which explains the input", layer)
    unknown = sorted(set(options) - _keyword_options(cls))
    if unknown:
        raise argument_error("options", f"options of {method!r}: "
                                        f"{sorted(_keyword_options(cls) - {'registry'})}", unknown)
    return cls(model, **kwargs)

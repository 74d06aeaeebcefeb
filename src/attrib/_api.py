"""The one-call API: :func:`explain`, :func:`wrap`, :func:`list_backends`, :func:`list_methods`."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, overload

from ._attributor import Attributor
from ._errors import AttribTypeError, argument_error, did_you_mean, shown
from ._explanation import Explanation
from ._model import Model
from ._plan import explain_planned
from ._registry import default_registry

__all__ = ["explain", "wrap", "list_backends", "list_methods", "build_methods"]


@overload
def explain(
    model: Any,
    inputs: Any,
    *,
    method: str,
    target: Any = ...,
    layer: Any = ...,
    backend: str | None = ...,
    objective: str = ...,
    output: Any = ...,
    options: Mapping[str, Mapping[str, Any]] | None = ...,
    **method_options: Any,
) -> Explanation: ...


@overload
def explain(
    model: Any,
    inputs: Any,
    *,
    method: Sequence[str],
    target: Any = ...,
    layer: Any = ...,
    backend: str | None = ...,
    objective: str = ...,
    output: Any = ...,
    options: Mapping[str, Mapping[str, Any]] | None = ...,
    **method_options: Any,
) -> dict[str, Explanation]: ...


def explain(
    model: Any,
    inputs: Any,
    *,
    method: str | Sequence[str],
    target: Any = None,
    layer: Any = None,
    backend: str | None = None,
    objective: str = "logit",
    output: Any = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    **method_options: Any,
) -> Explanation | dict[str, Explanation]:
    """Explain ``inputs`` with ``method`` (or several methods) on ``model`` in one call.

    Parameters
    ----------
    model : torch ``nn.Module``, Flax ``(module, variables)``, nnx module,
        ``(apply_fn, params)``, or an :class:`attrib.Model`.
    inputs : ndarray or framework tensor, shape (N, ...)
        A batch in the model's layout (NCHW for torch, NHWC for Flax).
    method : str or list of str
        One of :func:`list_methods`: ``"saliency"``, ``"gradient_x_input"``,
        ``"deconvnet"``, ``"guided_backprop"``, ``"gradcam"``, ``"guided_gradcam"``,
        ``"integrated_gradients"``, ``"smoothgrad"``, ``"occlusion"``, and the CAM family
        (``"gradcam_pp"``, ``"scorecam"``, ...). A list of distinct names
        explains with each of them and shares the gradient passes they can
        (one per rectifier rule; layer captures merged; see :mod:`attrib._plan`):
        each map equals, bit for bit, the map of the method called alone.
    target : None, int, sequence of N ints, or target weights
        Class per sample; ``None`` is each sample's arg-max. Weights over the
        classes, a float array (classes,) or (N, classes) or a mapping
        ``{class_index: weight}``, explain ``sum_k w[n, k] * objective(logits)[n, k]``
        (e.g. ``{cat: 1.0, dog: -1.0}``: "cat rather than dog").
    layer : str, list of str, None or "auto"
        The tapped layer, for layer methods (``"gradcam"``, ``"guided_gradcam"``,
        the CAM family). ``None`` lets a CAM method pick the last spatial layer;
        a list gives one map per layer from one gradient pass. With several
        methods: the layer of every layer method without its own in ``options``.
    backend : str, optional
        ``"torch"``, ``"jax"``, ...; detected from ``model`` when omitted.
    objective : str
        ``"logit"`` (default), ``"log_softmax"`` or ``"softmax"``.
    output : None, str, int or callable
        Where the logits are in the model's output (torch and jax): by default
        a tuple's first element, a mapping's or an object's ``logits``; a key,
        an index or a callable otherwise (see :func:`attrib.wrap`).
    options : mapping of method name to mapping, optional
        Options per method, e.g. ``{"gradcam": {"layer": "layer4"},
        "integrated_gradients": {"steps": 16}}``; each key is a method of ``method``.
    **method_options
        Further options of the method's class (one method only; with several,
        use ``options``).

    Returns
    -------
    Explanation, or dict of str to Explanation
        For a list of methods, one Explanation per method keyed by its name,
        in the order given; each one's ``stats["plan"]`` describes the passes
        that ran for the whole call (``gradient_calls``, ``backward_passes``,
        ``passes``: per call its rule and methods, ``alone``: methods that ran
        their own passes).

    Examples
    --------
    >>> maps = explain(model, x, method=["saliency", "gradcam"],
    ...                options={"gradcam": {"layer": "layer4"}})  # doctest: +SKIP
    >>> maps["gradcam"].attribution.shape                          # doctest: +SKIP
    (2, 224, 224)
    """
    methods = build_methods(model, method, layer=layer, backend=backend, objective=objective,
                            output=output, options=options, method_options=method_options)
    if isinstance(method, str):
        return methods[0].attribute(inputs, target)
    return explain_planned(methods, inputs, target)


def build_methods(model: Any, method: str | Sequence[str], *, layer: Any = None,
                  backend: str | None = None, objective: str = "logit", output: Any = None,
                  options: Mapping[str, Mapping[str, Any]] | None = None,
                  method_options: Mapping[str, Any] | None = None) -> list[Attributor]:
    """The attributors :func:`explain` runs: one per method, all on one :class:`attrib.Model`.

    Every argument is checked as :func:`explain` documents it (the names, the
    per-method ``options``, keyword ``method_options`` only with one method,
    a ``layer`` only with a layer method).
    """
    method_options = dict(method_options or {})
    registry = default_registry()
    single = isinstance(method, str)
    names = _method_names(method)
    per_method = _check_options(options, names)
    if not single and method_options:
        raise argument_error(
            "options", "per-method options in options={method: {...}} when method is a list",
            shown(f"keyword options {sorted(method_options)}"),
            f"e.g. options={{{names[0]!r}: {{{next(iter(sorted(method_options)))!r}: ...}}}}")
    classes = {name: registry.method(name) for name in names}
    if layer is not None and not any(cls.needs_layer for cls in classes.values()):
        layer_methods = sorted(n for n, c in registry.methods().items() if c.needs_layer)
        given = names[0] if single else names
        raise argument_error(
            "layer", f"no layer for {given!r}, which explains the input", layer,
            f"Layer methods: {layer_methods}",
        )
    if output is not None or not single:
        model = wrap(model, backend=backend, **({"output": output} if output is not None else {}))
        backend = None
    methods = []
    for name, cls in classes.items():
        own = {**(method_options if single else {}), **per_method.get(name, {})}
        _check_keywords(name, cls, own)
        kwargs: dict[str, Any] = {"backend": backend, "objective": objective, **own}
        if cls.needs_layer and "layer" not in own:
            kwargs["layer"] = layer
        methods.append(cls(model, **kwargs))
    return methods


def _method_names(method: object) -> list[str]:
    """``method`` as a list of distinct names (a str: one); names are checked by the registry."""
    if isinstance(method, str):
        return [method]
    if (isinstance(method, Sequence) and not isinstance(method, bytes) and method
            and all(isinstance(name, str) for name in method)):
        names = list(method)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise argument_error("method", "distinct method names", names,
                                 f"{repeated} given more than once.")
        return names
    raise argument_error("method", "a method name or a non-empty list of method names",
                         method, "e.g. method=['saliency', 'gradcam']", kind=AttribTypeError)


def _check_options(options: object, names: list[str]) -> dict[str, Mapping[str, Any]]:
    """``options`` checked: a mapping from names of ``names`` to mappings of option names."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise argument_error("options", "a mapping {method name: {option: value}}", options,
                             "e.g. options={'gradcam': {'layer': 'layer4'}}", kind=AttribTypeError)
    for name, own in options.items():
        if name not in names:
            known = isinstance(name, str) and name in default_registry().methods()
            guess = None if known else did_you_mean(str(name), names)
            raise argument_error(
                "options", f"options only for the methods called, {names}",
                shown(f"options for {name!r}"),
                guess or f"Add {name!r} to method= or drop its options.")
        if not isinstance(own, Mapping) or not all(isinstance(k, str) for k in own):
            raise argument_error(
                f"options[{name!r}]", "a mapping {option name: value}", own,
                "e.g. {'layer': 'layer4'}", kind=AttribTypeError)
    return dict(options)


def _check_keywords(name: str, cls: type, options: Mapping[str, Any]) -> None:
    accepted = _keyword_options(cls)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise argument_error(
            "options", f"options of {name!r}: {sorted(accepted - {'registry'})}", unknown,
        )


def wrap(model: Any, *, backend: str | None = None, **options: Any) -> Model:
    """``model`` as an :class:`attrib.Model`, with backend options.

    Useful to pass options to the backend once (the jax backend takes
    ``method=`` and call arguments such as ``train=False``), or to reuse one
    adapter for many methods. The result is accepted wherever a model is.
    """
    return default_registry().wrap(model, backend=backend, **options)


def list_backends() -> list[str]:
    """Names of the registered backends (installed or not), sorted.

    >>> "torch" in list_backends()
    True
    """
    return sorted(default_registry().backends())


def list_methods() -> list[str]:
    """Names of the registered methods, sorted.

    >>> "gradcam" in list_methods()
    True
    """
    return sorted(default_registry().methods())


def _keyword_options(cls: type) -> set[str]:
    parameters = inspect.signature(cls).parameters.values()
    return {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}

"""The one-call API: :func:`explain`, :func:`wrap`, :func:`list_backends`, :func:`list_methods`."""

from __future__ import annotations

import inspect
from typing import Any

from ._errors import argument_error
from ._explanation import Explanation
from ._model import Model
from ._registry import default_registry

__all__ = ["explain", "wrap", "list_backends", "list_methods"]


def explain(
    model: Any,
    inputs: Any,
    *,
    method: str,
    target: Any = None,
    layer: Any = None,
    backend: str | None = None,
    objective: str = "logit",
    output: Any = None,
    **options: Any,
) -> Explanation:
    """Explain ``inputs`` with ``method`` on ``model`` in one call.

    Parameters
    ----------
    model : torch ``nn.Module``, Flax ``(module, variables)``, nnx module,
        ``(apply_fn, params)``, or an :class:`attrib.Model`.
    inputs : ndarray or framework tensor, shape (N, ...)
        A batch in the model's layout (NCHW for torch, NHWC for Flax).
    method : str
        One of :func:`list_methods`: ``"saliency"``, ``"gradient_x_input"``,
        ``"deconvnet"``, ``"guided_backprop"``, ``"gradcam"``, ``"guided_gradcam"``,
        ``"integrated_gradients"``, ``"smoothgrad"``, ``"occlusion"``, and the CAM family
        (``"gradcam_pp"``, ``"scorecam"``, ...).
    target : None, int, sequence of N ints, or target weights
        Class per sample; ``None`` is each sample's arg-max. Weights over the
        classes, a float array (classes,) or (N, classes) or a mapping
        ``{class_index: weight}``, explain ``sum_k w[n, k] * objective(logits)[n, k]``
        (e.g. ``{cat: 1.0, dog: -1.0}``: "cat rather than dog").
    layer : str, list of str, None or "auto"
        The tapped layer, for layer methods (``"gradcam"``, ``"guided_gradcam"``,
        the CAM family). ``None`` lets a CAM method pick the last spatial layer;
        a list gives one map per layer from one gradient pass.
    backend : str, optional
        ``"torch"``, ``"jax"``, ...; detected from ``model`` when omitted.
    objective : str
        ``"logit"`` (default), ``"log_softmax"`` or ``"softmax"``.
    output : None, str, int or callable
        Where the logits are in the model's output (torch and jax): by default
        a tuple's first element, a mapping's or an object's ``logits``; a key,
        an index or a callable otherwise (see :func:`attrib.wrap`).
    **options
        Further options of the method's class.

    Returns
    -------
    Explanation
    """
    cls = default_registry().method(method)
    kwargs: dict[str, Any] = {"backend": backend, "objective": objective, **options}
    if cls.needs_layer:
        kwargs["layer"] = layer
    elif layer is not None:
        layer_methods = sorted(n for n, c in default_registry().methods().items() if c.needs_layer)
        raise argument_error(
            "layer", f"no layer for {method!r}, which explains the input", layer,
            f"Layer methods: {layer_methods}",
        )
    accepted = _keyword_options(cls)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise argument_error(
            "options", f"options of {method!r}: {sorted(accepted - {'registry'})}", unknown,
        )
    if output is not None:
        model = wrap(model, backend=backend, output=output)
    return cls(model, **kwargs).attribute(inputs, target)


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

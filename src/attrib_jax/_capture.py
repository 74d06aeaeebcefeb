"""The three kinds of JAX model attrib takes, as one pure forward function.

Each kind becomes a :class:`Forward`: ``fn(params, x, eps) -> (logits, activations)``
where ``eps`` maps layer names to zero perturbations added to those layers'
outputs (so that the gradient with respect to ``eps[name]`` is the layer
gradient) and ``activations`` maps the same names to the layers' outputs.
An optional ``scales`` maps layer names to factors their outputs are
multiplied by (Ablation-CAM's channel masks), through the same interception,
or to callables that replace them (``Model.forward_substituted``; under
``jax.jit`` the replaced layer's own computation is dead code and dropped).

- linen ``(module, variables)``: ``module.apply(variables, x, mutable=False,
  **call_kwargs)`` under ``flax.linen.intercept_methods``, which taps the
  ``__call__`` of the submodule whose name path (``"layer4"``,
  ``"encoder/block3"``) is asked for;
- nnx module: ``nnx.split`` once; each call merges a fresh copy and replaces
  the tapped submodule *on the copy* by a wrapper, so the user's module is
  never edited;
- ``(apply_fn, params)``: ``apply_fn(params, x)``; no layer names.

Several inputs (``x`` a tuple of arrays) are passed as several arguments:
``module.apply(variables, *x)``, ``model(*x)``, ``apply_fn(params, *x)``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax

from attrib._errors import AttribError, AttribTypeError, argument_error, shown
from attrib._inputs import as_tuple

__all__ = ["Forward", "make_forward"]

ForwardFn = Callable[[Any, Any, "Mapping[str, Any] | None"], "tuple[Any, dict[str, Any]]"]


@dataclass(frozen=True)
class Forward:
    """A model as a pure function of its parameters.

    Attributes
    ----------
    kind : {"linen", "nnx", "function"}
    params : pytree
        Passed to :attr:`fn` as its first argument (linen variables, nnx
        state, or the function's params).
    fn : callable(params, x, eps, layers) -> (logits, activations)
    key : hashable
        Identifies the computation (not the parameter values): the module,
        the nnx graph definition or the function, with the call options.
    names : tuple of str
        The layer names that may be tapped.
    """

    kind: str
    params: Any
    fn: Callable[..., tuple[Any, dict[str, Any]]]
    key: Any
    names: tuple[str, ...] = field(default=())


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return value


def _options_key(method: Any, call_kwargs: Mapping[str, Any]) -> Any:
    return (_hashable(method), tuple(sorted((k, _hashable(v)) for k, v in call_kwargs.items())))


def _check_single(name: str, activations: dict[str, Any], output: Any) -> None:
    if name in activations:
        raise argument_error(
            "layer", "a layer called once per forward pass", name,
            "This submodule is called several times (shared weights); tap a layer that "
            "is called once.",
        )
    if not hasattr(output, "shape"):
        raise argument_error(
            "layer", "a layer whose output is one array", shown(f"{name!r} returning "
                                                                  f"{type(output).__name__}"),
        )


def make_forward(model: Any, method: Any, call_kwargs: Mapping[str, Any]) -> Forward:
    """The :class:`Forward` of ``model`` (see module docs); a clear error if none fits."""
    import flax.linen as nn

    nnx = sys.modules.get("flax.nnx")  # an nnx model means it is imported (a 1 s import)
    if nnx is not None and isinstance(model, nnx.Module):
        return _nnx_forward(model, method, call_kwargs)
    if isinstance(model, tuple) and len(model) == 2:
        first, second = model
        if isinstance(first, nn.Module):
            return _linen_forward(first, second, method, call_kwargs)
        if callable(first) and not isinstance(first, type):
            if method is not None or call_kwargs:
                raise argument_error(
                    "options", "no method= or call arguments for an (apply_fn, params) model",
                    sorted([*call_kwargs, *(["method"] if method is not None else [])]),
                    "Bind them into apply_fn, e.g. functools.partial.",
                )
            return _function_forward(first, second)
    raise argument_error(
        "model",
        "a Flax (module, variables) pair, an nnx.Module, or an (apply_fn, params) pair",
        shown(_describe(model)),
        kind=AttribTypeError,
    )


def _describe(model: Any) -> str:
    if isinstance(model, tuple):
        return "tuple(" + ", ".join(type(m).__name__ for m in model) + ")"
    return type(model).__name__


# -- linen ---------------------------------------------------------------------------------


def _linen_names(variables: Any) -> tuple[str, ...]:
    names: list[str] = []
    seen: set[str] = set()

    def walk(tree: Any, prefix: tuple[str, ...]) -> None:
        for key, value in tree.items():
            if hasattr(value, "items"):
                path = (*prefix, str(key))
                name = "/".join(path)
                if name not in seen:
                    seen.add(name)
                    names.append(name)
                walk(value, path)

    if hasattr(variables, "items"):
        for collection in variables.values():
            if hasattr(collection, "items"):
                walk(collection, ())
    return tuple(names)


def _linen_forward(module: Any, variables: Any, method: Any,
                   call_kwargs: Mapping[str, Any]) -> Forward:
    import flax.linen as nn

    if not hasattr(variables, "items"):
        raise argument_error("model", "a (module, variables) pair with a variables dict",
                             shown(f"variables of type {type(variables).__name__}"),
                             kind=AttribTypeError)
    kwargs = dict(call_kwargs)

    def fn(variables: Any, x: Any, eps: Mapping[str, Any] | None,
           layers: tuple[str, ...] = (), scales: Mapping[str, Any] | None = None,
           ) -> tuple[Any, dict[str, Any]]:
        activations: dict[str, Any] = {}
        wanted = set(layers)

        def tap(next_fun: Callable[..., Any], args: Any, kw: Any, context: Any) -> Any:
            output = next_fun(*args, **kw)
            if context.method_name != "__call__" or not wanted:
                return output
            name = "/".join(str(p) for p in context.module.path)
            if name not in wanted:
                return output
            _check_single(name, activations, output)
            if scales is not None and name in scales:
                output = _rescaled(output, scales[name])
            activations[name] = output
            return output + eps[name] if eps is not None else output

        with nn.intercept_methods(tap):
            logits = module.apply(variables, *as_tuple(x), method=method, mutable=False,
                                  **kwargs)
        return logits, activations

    return Forward("linen", variables, fn, ("linen", _hashable(module),
                                           _options_key(method, kwargs)),
                   _linen_names(variables))


# -- nnx -----------------------------------------------------------------------------------


class _Tap:
    """Stands in for a submodule on the merged copy: calls it, records and perturbs its output."""

    def __init__(self, module: Any, name: str, activations: dict[str, Any],
                 eps: Mapping[str, Any] | None, scales: Mapping[str, Any] | None = None) -> None:
        self.module, self.name, self.activations, self.eps = module, name, activations, eps
        self.scales = scales

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        output = self.module(*args, **kwargs)
        _check_single(self.name, self.activations, output)
        if self.scales is not None and self.name in self.scales:
            output = _rescaled(output, self.scales[self.name])
        self.activations[self.name] = output
        return output + self.eps[self.name] if self.eps is not None else output


def _nnx_names(model: Any) -> tuple[str, ...]:
    from flax import nnx

    names = []
    for path, node in nnx.iter_graph(model):
        if path and isinstance(node, nnx.Module) and callable(node):
            names.append("/".join(str(p) for p in path))
    return tuple(names)


def _child(parent: Any, key: str) -> Any:
    if hasattr(parent, key):
        return getattr(parent, key)
    return parent[int(key)] if key.lstrip("-").isdigit() else parent[key]


def _replace(parent: Any, key: str, value: Any) -> None:
    if hasattr(parent, key):
        setattr(parent, key, value)
    else:
        parent[int(key) if key.lstrip("-").isdigit() else key] = value


def _nnx_forward(model: Any, method: Any, call_kwargs: Mapping[str, Any]) -> Forward:
    from flax import nnx

    graphdef, state = nnx.split(model)
    kwargs = dict(call_kwargs)

    def fn(state: Any, x: Any, eps: Mapping[str, Any] | None,
           layers: tuple[str, ...] = (), scales: Mapping[str, Any] | None = None,
           ) -> tuple[Any, dict[str, Any]]:
        copy = nnx.merge(graphdef, state)
        activations: dict[str, Any] = {}
        for name in layers:
            *parents, last = name.split("/")
            parent = copy
            for key in parents:
                parent = _child(parent, key)
            _replace(parent, last, _Tap(_child(parent, last), name, activations, eps, scales))
        call = copy if method is None else (getattr(copy, method) if isinstance(method, str)
                                            else lambda *a, **k: method(copy, *a, **k))
        return call(*as_tuple(x), **kwargs), activations

    return Forward("nnx", state, fn, ("nnx", graphdef, _options_key(method, kwargs)),
                   _nnx_names(model))


# -- (apply_fn, params) ----------------------------------------------------------------------


def _function_forward(apply_fn: Callable[..., Any], params: Any) -> Forward:
    leaves = jax.tree_util.tree_leaves(params)
    if not all(hasattr(leaf, "shape") and hasattr(leaf, "dtype") for leaf in leaves):
        raise argument_error("model", "an (apply_fn, params) pair whose params are arrays",
                             shown(f"params with leaves {sorted({type(v).__name__ for v in leaves})}"),
                             kind=AttribTypeError)

    def fn(params: Any, x: Any, eps: Mapping[str, Any] | None,
           layers: tuple[str, ...] = (), scales: Mapping[str, Any] | None = None,
           ) -> tuple[Any, dict[str, Any]]:
        if layers:
            raise AttribError(
                "layer: an (apply_fn, params) model has no named layers; layer methods "
                "(gradcam, guided_gradcam) need a Flax module: pass (module, variables) or an "
                "nnx.Module"
            )
        return apply_fn(params, *as_tuple(x)), {}

    return Forward("function", params, fn, ("function", _hashable(apply_fn)), ())


def _rescaled(output: Any, scale: Any) -> Any:
    """``output * scale``, or ``scale(output)`` when ``scale`` is a callable (a substitution)."""
    return scale(output) if callable(scale) else output * scale

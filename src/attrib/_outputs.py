"""Which part of a model's output holds the logits (``output=`` of the torch and jax backends).

A model may return the logits themselves, or a container of them:

- a tuple or list (Inception with auxiliary logits, many detection-style
  heads): the **first** element;
- a mapping (e.g. a ``dict`` or a Hugging Face ``ModelOutput``): its
  ``"logits"`` entry;
- any object with a ``logits`` attribute (Hugging Face outputs, dataclasses).

``output=`` overrides this: a key (mapping key or attribute name), an index,
or a callable taking the model's output and returning the logits.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

from ._errors import AttribTypeError, argument_error, shown

__all__ = ["check_output", "select_output"]


def check_output(output: object) -> Any:
    """``output`` if it is None, a str key, an int index or a callable; else a clear error."""
    if output is None or callable(output) or isinstance(output, str) or (
            isinstance(output, numbers.Integral) and not isinstance(output, bool)):
        return output
    raise argument_error("output", "None, a key (str), an index (int) or a callable on the "
                         "model's output", output, kind=AttribTypeError)


def select_output(value: Any, output: Any, is_array: Callable[[Any], bool]) -> Any:
    """The logits in the model's output ``value``, chosen by ``output`` (see the module's rules)."""
    if output is None:
        if is_array(value):
            return value
        if isinstance(value, (tuple, list)) and value:
            return value[0]
        if isinstance(value, Mapping):
            if "logits" in value:
                return value["logits"]
            raise argument_error(
                "output", "a model output with a 'logits' entry, or output= naming the entry",
                shown(f"a mapping with keys {list(value)[:8]}"),
                "Pass output='<key>' (or an index or a callable) to attrib.wrap / attrib.explain.")
        if hasattr(value, "logits"):
            return value.logits
        return value
    try:
        if callable(output):
            return output(value)
        if isinstance(output, str):
            return value[output] if isinstance(value, Mapping) else getattr(value, output)
        return value[output]
    except (KeyError, IndexError, AttributeError, TypeError) as error:
        raise argument_error(
            "output", "a key, index or callable that finds the logits in the model's output",
            shown(f"{output!r} on an output of type {type(value).__name__} "
                  f"({type(error).__name__}: {error})"),
        ) from error

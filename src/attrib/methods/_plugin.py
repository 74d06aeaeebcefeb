"""Registers the built-in methods through the same hook a third party uses."""

from __future__ import annotations

from collections.abc import Callable

from .._hooks import hookimpl
from . import ATTENTION_METHODS, CAM_METHODS, MULTIPASS_METHODS, RULE_METHODS, SEED_METHODS


@hookimpl
def attrib_register_methods(register: Callable[[type], None]) -> None:
    for method in (*SEED_METHODS, *CAM_METHODS, *MULTIPASS_METHODS, *RULE_METHODS,
                   *ATTENTION_METHODS):
        register(method)

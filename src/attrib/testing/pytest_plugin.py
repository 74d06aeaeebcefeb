"""pytest plugin of :mod:`attrib.testing`: ``pytest_plugins = ["attrib.testing.pytest_plugin"]``.

Fixtures
--------
attrib_registry
    A fresh :class:`attrib.Registry` (built-ins and installed entry points),
    so a test never changes the process-wide one.
attrib_specs
    The suite's default networks (:func:`attrib.testing.default_specs`).
attrib_reference
    ``attrib_reference(spec, layout="NCHW")`` -> :class:`attrib.testing.ReferenceModel`.
attrib_check_backend
    :func:`attrib.testing.check_backend`, for a one-test run of the whole suite.

The conformance tests themselves come from subclassing
:class:`attrib.testing.BackendConformance`, which works with or without this
plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .._registry import Registry
from ._reference import ReferenceModel
from ._specs import NetSpec, default_specs
from ._suite import check_backend


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "attrib_conformance: a test of the attrib backend conformance suite"
    )


@pytest.fixture
def attrib_registry() -> Registry:
    """A fresh registry: built-ins plus installed entry points."""
    return Registry()


@pytest.fixture(scope="session")
def attrib_specs() -> tuple[NetSpec, ...]:
    return default_specs()


@pytest.fixture
def attrib_reference() -> Callable[..., ReferenceModel]:
    def make(spec: NetSpec, layout: str = "NCHW") -> ReferenceModel:
        return ReferenceModel(spec, layout=layout)

    return make


@pytest.fixture
def attrib_check_backend() -> Callable[..., Any]:
    return check_backend

"""Every hookspec has a test and a docs entry (datasette's meta-test)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import attrib
from attrib._hooks import AttribSpecs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "how-to"

#: hook name -> the tests that exercise it (functions in tests/plugins)
HOOK_TESTS = {
    "attrib_register_backends": [
        "test_discovery.py::test_plugin_that_fails_to_import_is_skipped_with_its_distribution_named",
        "test_discovery.py::test_plugin_raising_in_its_hook_is_skipped_and_leaves_nothing_half_registered",
        "test_hooks_meta.py::test_register_backends_hook_registers_a_backend",
    ],
    "attrib_register_methods": [
        "test_docs_examples.py::test_write_a_method_example_runs",
        "test_hooks_meta.py::test_register_methods_hook_registers_a_method",
    ],
}


def _specs() -> list[str]:
    return sorted(name for name, _ in inspect.getmembers(AttribSpecs, inspect.isfunction)
                  if name.startswith("attrib_"))


def test_every_hookspec_has_tests_that_exist() -> None:
    assert set(HOOK_TESTS) == set(_specs())
    here = Path(__file__).parent
    for hook, tests in HOOK_TESTS.items():
        assert tests, hook
        for test in tests:
            file, function = test.split("::")
            assert re.search(rf"^def {function}\(", (here / file).read_text(), re.M), test


def test_every_hookspec_is_documented() -> None:
    docs = (DOCS / "write-a-backend.md").read_text() + (DOCS / "write-a-method.md").read_text()
    for hook in _specs():
        assert f"`{hook}(register)`" in docs, f"{hook} has no docs entry"


def test_every_hookspec_has_a_docstring_saying_when_it_is_called() -> None:
    for hook in _specs():
        doc = " ".join((getattr(AttribSpecs, hook).__doc__ or "").split()).lower()
        assert "called once" in doc and "must not import" in doc, hook


def test_register_backends_hook_registers_a_backend() -> None:
    class Plugin:
        @attrib.hookimpl
        def attrib_register_backends(self, register):  # type: ignore[no-untyped-def]
            register(attrib.Backend(name="meta", frameworks=("numpy",), detect=lambda m: False,
                                    adapter="attrib.testing:ReferenceModel"))

    registry = attrib.Registry(builtins=False, entry_points=False)
    registry.register(Plugin(), distribution="meta-dist")
    assert list(registry.backends()) == ["meta"]
    assert registry.backends()["meta"].distribution == "meta-dist"


def test_register_methods_hook_registers_a_method() -> None:
    class Plugin:
        @attrib.hookimpl
        def attrib_register_methods(self, register):  # type: ignore[no-untyped-def]
            register(attrib.Saliency)

    registry = attrib.Registry(builtins=False, entry_points=False)
    registry.register(Plugin())
    assert registry.methods() == {"saliency": attrib.Saliency}


def test_hook_implementations_may_take_no_arguments_and_specs_only_gain_them() -> None:
    """pluggy passes only the arguments an implementation names (forward compatibility)."""
    calls: list[str] = []

    class Plugin:
        @attrib.hookimpl
        def attrib_register_backends(self):  # type: ignore[no-untyped-def]
            calls.append("called")

    registry = attrib.Registry(builtins=False, entry_points=False)
    registry.register(Plugin())
    assert calls == ["called"]

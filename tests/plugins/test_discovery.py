"""Plugin discovery and its robustness: broken plugins, name clashes, autoload off, detection.

Every test uses a fresh :class:`attrib.Registry` and fake entry points (or a
temporary ``*.dist-info`` on ``sys.path``); the process-wide registry is never
changed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import attrib
import attrib.testing
from attrib import AttribWarning, Backend, BackendError, Registry, _registry, hookimpl


class FakeEntryPoint:
    """What the registry reads from an ``importlib.metadata.EntryPoint``."""

    def __init__(self, name: str, dist: str, load: Callable[[], object]) -> None:
        self.name = name
        self.dist = types.SimpleNamespace(name=dist)
        self._load = load

    def load(self) -> object:
        return self._load()


def _plugin(name: str, backends: Iterable[Backend] = (), *, raise_after: bool = False) -> object:
    """A plugin module registering ``backends`` (and raising afterwards if asked)."""
    module = types.ModuleType(name)

    @hookimpl
    def attrib_register_backends(register: Callable[[Backend], None]) -> None:
        for backend in backends:
            register(backend)
        if raise_after:
            raise RuntimeError("boom inside the hook")

    module.attrib_register_backends = attrib_register_backends  # type: ignore[attr-defined]
    return module


def _backend(name: str, frameworks: tuple[str, ...] = ("numpy",),
             detect: Callable[[object], bool] = lambda m: False, **kwargs: Any) -> Backend:
    return Backend(name=name, frameworks=frameworks, detect=detect,
                   adapter="attrib.testing._reference:ReferenceModel", **kwargs)


def _broken_import() -> object:
    raise ImportError("No module named 'does_not_exist'")


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> list[FakeEntryPoint]:
    """Replace the installed entry points with a list the test fills."""
    points: list[FakeEntryPoint] = []
    monkeypatch.setattr(_registry, "_entry_points", lambda: list(points))
    monkeypatch.delenv(_registry.AUTOLOAD_ENV, raising=False)
    return points


def test_plugin_that_fails_to_import_is_skipped_with_its_distribution_named(
    entry_points: list[FakeEntryPoint],
) -> None:
    good = _plugin("good_plugin", [_backend("good")])
    entry_points += [FakeEntryPoint("bad", "broken-dist", _broken_import),
                     FakeEntryPoint("good", "good-dist", lambda: good)]
    registry = Registry()
    with pytest.warns(AttribWarning, match=r"'bad' from distribution 'broken-dist' failed to load"):
        backends = registry.backends()
    assert {"torch", "jax", "good"} <= set(backends)
    assert backends["good"].distribution == "good-dist"
    assert "saliency" in registry.methods()


def test_plugin_taking_a_used_name_is_ignored_with_both_distributions_named(
    entry_points: list[FakeEntryPoint],
) -> None:
    thief = _plugin("thief_plugin", [_backend("torch", layout="NHWC")])
    entry_points.append(FakeEntryPoint("thief", "thief-dist", lambda: thief))
    registry = Registry()
    with pytest.warns(AttribWarning) as record:
        backends = registry.backends()
    messages = " ".join(str(w.message) for w in record)
    assert "'torch'" in messages and "thief-dist" in messages and "'attrib'" in messages
    assert backends["torch"].layout == "NCHW"           # the built-in one stays
    assert backends["torch"].distribution == "attrib"


def test_plugin_raising_in_its_hook_is_skipped_and_leaves_nothing_half_registered(
    entry_points: list[FakeEntryPoint],
) -> None:
    raiser = _plugin("raiser_plugin", [_backend("half")], raise_after=True)
    good = _plugin("good_plugin", [_backend("good")])
    entry_points += [FakeEntryPoint("raiser", "raising-dist", lambda: raiser),
                     FakeEntryPoint("good", "good-dist", lambda: good)]
    registry = Registry()
    with pytest.warns(AttribWarning, match=r"'raiser' from distribution 'raising-dist' failed to "
                                           r"register.*boom inside the hook"):
        backends = registry.backends()
    assert "half" not in backends
    assert {"torch", "jax", "good"} <= set(backends)
    assert raiser not in registry.plugin_manager.get_plugins()


def test_plugin_registering_something_that_is_not_a_backend_is_skipped(
    entry_points: list[FakeEntryPoint],
) -> None:
    odd = _plugin("odd_plugin", ["not a backend"])  # type: ignore[list-item]
    entry_points.append(FakeEntryPoint("odd", "odd-dist", lambda: odd))
    with pytest.warns(AttribWarning, match="odd-dist"):
        backends = Registry().backends()
    assert {"torch", "jax"} <= set(backends)


def test_autoload_env_var_turns_entry_points_off_but_keeps_builtins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def forbidden() -> list[FakeEntryPoint]:
        raise AssertionError("entry points were read although autoload is off")

    monkeypatch.setattr(_registry, "_entry_points", forbidden)
    monkeypatch.setenv(_registry.AUTOLOAD_ENV, "1")
    registry = Registry()
    assert {"torch", "jax"} <= set(registry.backends())
    assert "numpy" not in registry.backends()
    assert len(registry.methods()) >= 6


def test_real_distribution_on_sys_path_is_discovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ``*.dist-info`` with ``entry_points.txt``, as pip writes it, found through importlib.metadata."""
    monkeypatch.delenv(_registry.AUTOLOAD_ENV, raising=False)
    (tmp_path / "tmp_attrib_plugin.py").write_text(textwrap.dedent("""
        import attrib

        @attrib.hookimpl
        def attrib_register_backends(register):
            register(attrib.Backend(name="tmpbackend", frameworks=("tmp_framework",),
                                    detect=lambda m: False, adapter="tmp_framework:Adapter",
                                    install_hint="pip install tmp-framework"))
    """))
    (tmp_path / "tmp_broken_plugin.py").write_text("raise ImportError('broken on purpose')\n")
    info = tmp_path / "tmp_attrib_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tmp-attrib-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[attrib]\ntmp = tmp_attrib_plugin\nbroken = tmp_broken_plugin\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    with pytest.warns(AttribWarning, match="'broken' from distribution 'tmp-attrib-plugin'"):
        backends = registry.backends()
    assert backends["tmpbackend"].distribution == "tmp-attrib-plugin"
    assert {"torch", "jax"} <= set(backends)
    # registered, framework missing: a clear error with the install hint
    with pytest.raises(BackendError, match=r"'tmpbackend' is registered but its framework "
                                           r"'tmp_framework' is not installed.*pip install tmp-framework"):
        registry.wrap(object(), backend="tmpbackend")


def test_unknown_backend_name_lists_the_installed_ones() -> None:
    registry = Registry(entry_points=False)
    with pytest.raises(BackendError, match=r"expected one of \['jax'.*'torch'.*\], got 'troch'. "
                                           r"Did you mean 'torch'\?"):
        registry.wrap(object(), backend="troch")


def test_two_backends_claiming_one_object_ask_for_backend() -> None:
    class Thing:
        pass

    registry = Registry(builtins=False, entry_points=False)
    claims = lambda model: isinstance(model, Thing)  # noqa: E731
    registry.register(_plugin("a", [_backend("alpha", detect=claims)]), distribution="dist-a")
    registry.register(_plugin("b", [_backend("beta", detect=claims)]), distribution="dist-b")
    with pytest.raises(BackendError, match=r"claimed by several backends \['alpha', 'beta'\]; "
                                           r"pass backend="):
        registry.wrap(Thing())
    assert isinstance(registry.wrap(attrib.testing.small_mlp(), backend="alpha"),
                      attrib.testing.ReferenceModel)


def test_detection_ignores_backends_whose_framework_is_not_imported() -> None:
    seen: list[object] = []

    def detect(model: object) -> bool:
        seen.append(model)
        return True

    registry = Registry(builtins=False, entry_points=False)
    registry.register(_plugin("p", [_backend("ghost", frameworks=("not_imported_framework",),
                                             detect=detect)]))
    with pytest.raises(BackendError, match="no backend recognises"):
        registry.wrap(object())
    assert seen == []


def test_a_detector_that_raises_does_not_break_detection() -> None:
    def angry(model: object) -> bool:
        raise RuntimeError("detector bug")

    registry = Registry(builtins=False, entry_points=False)
    registry.register(_plugin("a", [_backend("angry", detect=angry)]))
    registry.register(_plugin("b", [_backend("calm", detect=lambda m: isinstance(m, int))]))
    assert registry.detect(3).name == "calm"


def test_import_and_detection_import_no_framework() -> None:
    """``import attrib``, listing backends and detecting an object load neither torch nor jax."""
    code = textwrap.dedent("""
        import sys
        import attrib
        names = attrib.list_backends()
        try:
            attrib.wrap(object())
        except attrib.BackendError as error:
            message = str(error)
        else:
            raise SystemExit("wrap(object()) did not raise")
        heavy = sorted(m for m in ("torch", "jax", "flax") if m in sys.modules)
        print(names, heavy, "no backend recognises" in message)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("[] True"), out.stdout + out.stderr
    assert "'torch'" in out.stdout and "'jax'" in out.stdout


# -- the example plugin, installed with `pip install -e examples/attrib-numpy` ------------------

def test_example_plugin_is_discovered_from_its_entry_point() -> None:
    backends = Registry().backends()
    assert "numpy" in backends, "install it: pip install -e examples/attrib-numpy"
    assert backends["numpy"].distribution == "attrib-numpy"
    assert backends["numpy"].frameworks == ("attrib_numpy",)


def test_example_plugin_explains_with_every_method_by_name_and_by_detection() -> None:
    from plugins.backend_builders import build_numpy

    spec = attrib.testing.small_cnn()
    net = build_numpy(spec)
    x = spec.example_inputs("NCHW", np.float64)
    assert "numpy" in attrib.list_backends()
    for method in attrib.testing.BUILTIN_METHODS:
        layer = "conv3" if method in ("gradcam", "guided_gradcam") else None
        by_name = attrib.explain(net, x, method=method, layer=layer, backend="numpy")
        detected = attrib.explain(net, x, method=method, layer=layer)
        want = attrib.testing.expected(spec, method, layer=layer)
        assert by_name.backend == detected.backend == "numpy"
        np.testing.assert_allclose(by_name.attribution, want.attribution, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(by_name.attribution, detected.attribution)


def test_example_backend_stops_at_the_layer_and_runs_a_second_pass_only_when_needed() -> None:
    from plugins.backend_builders import build_numpy

    spec = attrib.testing.small_cnn()
    model = attrib.wrap(build_numpy(spec))
    x = spec.example_inputs("NCHW", np.float64)
    passes = {layer: attrib.explain(model, x, method="guided_gradcam", layer=layer)
              .stats["backward_passes"] for layer in ("conv1", "conv4")}
    assert passes == {"conv1": 2, "conv4": 1}   # a rectifier lies after conv1, none after conv4
    assert attrib.explain(model, x, method="gradcam", layer="conv4").stats["backward_passes"] == 1

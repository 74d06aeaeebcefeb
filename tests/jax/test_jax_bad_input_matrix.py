"""The bad-input matrix, jax backend: every case a clear AttribError (or the documented
warning) naming the argument, what was expected and what was given; variables untouched."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attrib


class Net(nn.Module):
    """(N, 8, 8, 3) NHWC -> 5 classes; ``post`` applied to the logits, ``act`` the rectifier."""

    post: Callable[[Any], Any] = lambda t: t
    act: Callable[[Any], Any] = jax.nn.relu

    @nn.compact
    def __call__(self, x: Any) -> Any:
        x = self.act(nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)), name="conv")(x))
        x = self.act(nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)), name="conv2")(x))
        return self.post(nn.Dense(5, name="fc")(jnp.mean(x, axis=(1, 2))))


def _raise(t: Any) -> Any:
    raise ValueError("boom inside the model")


VARIABLES = Net().init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
X = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype(np.float32)


def _model(post: Callable[[Any], Any] | None = None, act: Any = jax.nn.relu) -> Any:
    return (Net(post or (lambda t: t), act), VARIABLES)


def _function() -> Any:
    module = Net()
    return (lambda p, x: module.apply(p, x), VARIABLES)


def _t() -> Any:
    import attrib.targets

    return attrib.targets


def _dense(t: Any) -> Any:
    """Logits (N, 5) as a dense output (N, 4, 4, 5)."""
    return jnp.broadcast_to(t[:, None, None, :], (t.shape[0], 4, 4, t.shape[1]))


def _explain(inputs: Any = None, model: Any = None, **kwargs: Any) -> Callable[[], Any]:
    kwargs.setdefault("method", "saliency")
    kwargs.setdefault("backend", "jax")
    return lambda: attrib.explain(_model() if model is None else model,
                                  X if inputs is None else inputs, **kwargs)


ERRORS: dict[str, tuple[Callable[[], Any], str, str]] = {
    "one image without batch axis": (_explain(X[0]), "inputs", r"batch axis.*x\[None\]"),
    "channels first (NCHW)": (_explain(np.transpose(X, (0, 3, 1, 2))), "inputs",
                              r"NHWC.*channels-first \(NCHW\).*transpose\(x, \(0, 2, 3, 1\)\)"),
    "wrong channel count": (_explain(np.zeros((2, 8, 8, 5), np.float32)), "inputs",
                            r"a batch this model accepts.*\(2, 8, 8, 5\)"),
    "1-D array": (_explain(np.zeros(8, np.float32)), "inputs", r"non-empty batch.*\(8,\)"),
    "0-D array": (_explain(np.float32(1.0) * np.ones(())), "inputs", r"non-empty batch"),
    "uint8 array": (_explain(np.zeros((2, 8, 8, 3), np.uint8)), "inputs",
                    r"floating-point.*uint8.*astype"),
    "int32 jax array": (_explain(jnp.zeros((2, 8, 8, 3), jnp.int32)), "inputs",
                        r"floating-point.*int32"),
    "bool array": (_explain(np.zeros((2, 8, 8, 3), bool)), "inputs", r"floating-point.*bool"),
    "complex array": (_explain(np.zeros((2, 8, 8, 3), np.complex64)), "inputs",
                      r"floating-point.*complex64"),
    "NaN (numpy)": (_explain(np.full((2, 8, 8, 3), np.nan, np.float32)), "inputs",
                    r"finite values.*NaN or infinite"),
    "inf (jax array)": (_explain(jnp.full((2, 8, 8, 3), jnp.inf)), "inputs", r"finite values"),
    "empty batch": (_explain(np.zeros((0, 8, 8, 3), np.float32)), "inputs",
                    r"non-empty batch.*\(0, 8, 8, 3\)"),
    "a list": (_explain([[1.0]]), "inputs", r"NumPy or JAX array.*list"),
    "target out of range": (_explain(target=5), "target", r"\[0, 4\]"),
    "negative target": (_explain(target=-2), "target", r"\[0, 4\].*-2"),
    "wrong number of targets": (_explain(target=[1, 2, 3]), "target", r"one class per sample"),
    "float target": (_explain(target=0.5), "target", r"None, an int"),
    "string target": (_explain(target="cat"), "target", r"'cat'"),
    "unknown layer": (_explain(method="gradcam", layer="conv_2"), "layer",
                      r"Did you mean 'conv2'"),
    "layer of a plain function": (_explain(model=_function(), method="gradcam", layer="conv"),
                                  "layer", r"no layer names|exposes no named layers"),
    "non-spatial layer for gradcam": (_explain(method="gradcam", layer="fc"), "layer",
                                      r"4-D output.*'fc'"),
    "unknown method": (_explain(method="gradcamm"), "method", r"'gradcam'"),
    "unknown method in a list": (_explain(method=["saliency", "gradcamm"]), "method", r"'gradcam'"),
    "repeated method in a list": (_explain(method=["gradcam", "gradcam"]), "method",
                                  r"distinct method names"),
    "options for a method not in the list": (
        _explain(method=["saliency"], options={"gradcam": {}}), "options", r"'gradcam'"),
    "options of a method not a mapping": (
        _explain(method=["saliency"], options={"saliency": 1}), "options['saliency']",
        r"a mapping \{option name"),
    "unknown objective": (_explain(objective="softmaxx"), "objective", r"'softmax'"),
    "unknown option": (_explain(smooth=2), "options", r"smooth"),
    "model returns NaN logits": (_explain(model=_model(lambda t: t * jnp.nan)), "model",
                                 r"finite logits"),
    "model returns inf logits": (_explain(model=_model(lambda t: t / 0.0),
                                          method="guided_backprop"), "model", r"finite logits"),
    "Mask on a classifier's (N, classes)": (_explain(target=_t().Mask(1)), "target",
                                            r"dense output \(N, H, W, C\).*\(2, 5\)"),
    "Mask: mask of the wrong shape": (_explain(model=_model(_dense), target=_t().Mask(
        1, np.ones((3, 4)))), "mask", r"\(4, 4\).*\(3, 4\)"),
    "Mask: category out of range": (_explain(model=_model(_dense), target=_t().Mask(9)),
                                    "category", r"\[0, 4\].*got 9"),
    "Weights of the wrong shape": (_explain(target=_t().Weights(np.ones(6))), "weights",
                                   r"\(2, 5\) or \(5,\).*\(6,\)"),
    "Cosine: reference of the wrong length": (_explain(target=_t().Cosine(np.ones(3))),
                                              "reference", r"\(5,\).*\(3,\)"),
    "Boxes on a model that returns no boxes": (
        _explain(target=_t().Boxes(np.array([[0., 0, 4, 4]]), [1])), "target",
        r"detection model's output"),
    "model raises inside its forward": (_explain(model=_model(_raise)), "inputs",
                                        r"ValueError: boom inside the model"),
    "lrp: unknown composite": (_explain(method="lrp", composite="epsilon_pluss"), "composite",
                               r"'epsilon_pluss'.*Did you mean 'epsilon_plus'"),
    "lrp: box bounds of the wrong shape": (
        _explain(method="lrp", composite="epsilon_gamma_box", low=np.zeros(5), high=np.ones(5)),
        "low/high", r"broadcast to one input sample \(8, 8, 3\).*shape \(5,\)"),
    "lrp: an operation with no rule": (_explain(model=_model(act=jax.nn.gelu), method="lrp"),
                                       "model", r"primitive 'integer_pow'.* via 'gelu'"),
}



class Signal(nn.Module):
    """(N, L, 2) -> 3 classes, or (N, D, H, W, 2) with ``k=3``: conv, conv, mean, dense."""

    k: int = 1

    @nn.compact
    def __call__(self, x: Any) -> Any:
        x = jax.nn.relu(nn.Conv(4, (3,) * self.k, padding=[(1, 1)] * self.k, name="conv")(x))
        return nn.Dense(3, name="fc")(jnp.mean(x, axis=tuple(range(1, 1 + self.k))))


class Two(nn.Module):
    """``(image (N, 8, 8, 3), table (N, 5)) -> 3 classes``."""

    @nn.compact
    def __call__(self, image: Any, table: Any) -> Any:
        a = jax.nn.relu(nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)), name="conv")(image))
        b = jax.nn.relu(nn.Dense(4, name="table")(table))
        return nn.Dense(3, name="fc")(jnp.concatenate([a.mean(axis=(1, 2)), b], axis=1))


SIGNAL = np.random.default_rng(2).normal(size=(2, 16, 2)).astype(np.float32)
VOLUME = np.random.default_rng(3).normal(size=(2, 4, 6, 6, 2)).astype(np.float32)
TABLE = np.random.default_rng(4).normal(size=(2, 5)).astype(np.float32)


def _signal(k: int) -> Any:
    example = SIGNAL if k == 1 else VOLUME
    return (Signal(k), Signal(k).init(jax.random.key(1), example[:1]))


def _two() -> Any:
    return (Two(), Two().init(jax.random.key(2), X[:1], TABLE[:1]))


# signals and volumes, several inputs (issue 21)
ERRORS.update({
    "1-D network given 2-D images": (_explain(X, _signal(1)), "inputs",
                                     r"a batch this model accepts.*\(2, 8, 8, 3\)"),
    "3-D network given a signal": (_explain(SIGNAL, _signal(3)), "inputs",
                                   r"a batch this model accepts.*\(2, 16, 2\)"),
    "signal: occlusion window of two sizes": (
        _explain(SIGNAL, _signal(1), method="occlusion", window=(5, 5)), "window",
        r"1 size, one per spatial axis"),
    "volume: occlusion window longer than the volume": (
        _explain(VOLUME, _signal(3), method="occlusion", window=(5, 2, 2), stride=2), "window",
        r"at most the volume size \(4, 6, 6\)"),
    "signal: gradcam at a dense layer": (
        _explain(SIGNAL, _signal(1), method="gradcam", layer="fc"), "layer",
        r"3-D output \(n, l, c\).*'fc' with output shape \(2, 3\)"),
    "volume: gradcam with reshape=(h, w)": (
        _explain(VOLUME, _signal(3), method="gradcam", layer="conv", reshape=(2, 2)),
        "reshape", r"None for inputs with 3 spatial axes"),
    "several inputs: batch sizes differ": (_explain((X, TABLE[:1]), _two()), "inputs",
                                           r"same batch size.*batch sizes \[2, 1\]"),
    "several inputs: one input for a model of two": (
        _explain((X,), _two()), "inputs", r"one per argument.*missing 1 required"),
    "several inputs: two inputs for a model of one": (
        _explain((X, X)), "inputs", r"one per argument.*positional arguments"),
    "several inputs: score-cam": (_explain((X, TABLE), _two(), method="scorecam", layer="conv"),
                                  "inputs", r"one array for 'scorecam'"),
    "several inputs: a string among them": (_explain((X, "table.csv"), _two()), "inputs",
                                            r"NumPy or JAX array.*str"),
})

class Attention(nn.Module):
    """(N, 8, 8, 3) -> 5 classes through one pre-norm attention block (AttnLRP cases)."""

    attention_fn: Callable[..., Any] = nn.dot_product_attention
    causal: bool = False

    @nn.compact
    def __call__(self, x: Any) -> Any:
        x = nn.Conv(8, (4, 4), strides=(4, 4), name="embed")(x)
        x = x.reshape(x.shape[0], -1, 8)
        mask = nn.make_causal_mask(x[..., 0]) if self.causal else None
        x = x + nn.MultiHeadDotProductAttention(num_heads=2, attention_fn=self.attention_fn,
                                                name="attn")(nn.LayerNorm()(x), mask=mask)
        return nn.Dense(5, name="fc")(x.mean(axis=1))


ATTENTION = Attention().init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))


def _capped(q: Any, k: Any, v: Any, *args: Any, **kwargs: Any) -> Any:
    """Attention with tanh soft-capped logits (no AttnLRP rule for tanh)."""
    w = jnp.einsum("...qhd,...khd->...hqk", q, k) / jnp.sqrt(q.shape[-1])
    return jnp.einsum("...hqk,...khd->...qhd", jax.nn.softmax(30.0 * jnp.tanh(w / 30.0)), v)


def _causal(q: Any, k: Any, v: Any, *args: Any, **kwargs: Any) -> Any:
    return jax.nn.dot_product_attention(q, k, v, is_causal=True)


ERRORS.update({
    "attnlrp: a masked attention (flax, causal mask)": (
        _explain(model=(Attention(causal=True), ATTENTION), method="attnlrp"), "model",
        r"primitive 'select_n'.*masks, dropout and other operations inside attention"),
    "attnlrp: a causal jax.nn.dot_product_attention": (
        _explain(model=(Attention(_causal), ATTENTION), method="attnlrp"), "model",
        r"primitive 'select_n'"),
    "attnlrp: soft-capped attention logits (tanh)": (
        _explain(model=(Attention(_capped), ATTENTION), method="attnlrp", cp=True), "model",
        r"primitive 'tanh' in module 'Attention/attn' at test_jax_bad_input_matrix.py:\d+"),
    "attnlrp: a bare tanh activation": (
        _explain(model=_model(act=jnp.tanh), method="attnlrp"), "model", r"primitive 'tanh'"),
    "attnlrp: a negative epsilon": (_explain(method="attnlrp", epsilon=-1.0), "epsilon",
                                    r"a finite number >= 0.*-1"),
})


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_input_is_a_clear_error(case: str) -> None:
    call, argument, detail = ERRORS[case]
    kept = jax.tree_util.tree_map(np.array, (VARIABLES, ATTENTION))
    with pytest.raises(attrib.AttribError) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{argument}: expected "), message
    assert ", got " in message, message
    assert re.search(detail, message, re.DOTALL), message
    jax.tree_util.tree_map(np.testing.assert_array_equal, (VARIABLES, ATTENTION), kept)


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_no_rectifier_warns(method: str) -> None:
    with pytest.warns(attrib.AttribWarning, match="changed no rectifier"):
        e = attrib.explain(_model(act=jax.nn.gelu), X, method=method, backend="jax")
    assert np.isfinite(e.attribution).all()


def test_float64_inputs_give_the_float32_map() -> None:
    as32 = attrib.explain(_model(), X, method="guided_backprop", backend="jax", target=[0, 1])
    as64 = attrib.explain(_model(), X.astype(np.float64), method="guided_backprop",
                          backend="jax", target=[0, 1])
    np.testing.assert_allclose(as64.attribution, as32.attribution, rtol=1e-6, atol=1e-7)

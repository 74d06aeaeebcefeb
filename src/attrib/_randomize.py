"""Re-drawing a layer's parameters: the one distribution every backend uses.

:meth:`attrib.Model.randomized` gives a copy of a model whose named layers
hold freshly drawn parameters (the cascading / independent randomisation test
of Adebayo et al., 2018, "Sanity Checks for Saliency Maps"). The paper
re-initialises the weights from a truncated normal distribution; here each
parameter array is replaced by draws from a normal of mean 0 and the
**array's own standard deviation**, truncated at two standard deviations. The
scale of the layer (and so of the activations after it) is kept, the learnt
structure is gone, and the draw does not depend on the framework.

BatchNorm layers are treated as Adebayo et al.'s code treats them
(``adebayoj/sanity_checks_saliency``, ``reinitlayerlist``: it re-runs the
initialisers of a block's *trainable* variables): with ``batchnorm="reset"``
(the default) γ becomes 1 and β 0 (TF's ones / zeros initialisers) and the
moving mean and variance (not trainable) are kept; ``batchnorm="redraw"``
draws γ and β like every other parameter.

The draw is reproducible across backends: the generator is seeded from
``(seed, layer name with "/" read as ".", parameter role)`` and the values are drawn in the
*output-first* layout (torch's ``(out, in, kh, kw)`` / ``(out, in)``);
backends whose kernels are channels-last (Flax ``(kh, kw, in, out)``,
``(in, out)``) transpose the draw. So the torch and Flax twins of a model get
identical randomised copies from the same seed.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["redrawn", "parameter_role", "TRUNCATION", "BATCHNORM_MODES", "check_batchnorm",
           "reset_batchnorm"]

#: What a randomised copy does to a BatchNorm layer's γ and β (see the module docstring).
BATCHNORM_MODES = ("reset", "redraw")

#: draws beyond this many standard deviations are drawn again
TRUNCATION: float = 2.0

_WEIGHT_NAMES = {"weight", "kernel", "scale", "embedding"}


def parameter_role(name: str) -> str:
    """``"weight"`` for a layer's main parameter (``weight``, ``kernel``, ``scale``), else ``name``."""
    return "weight" if name in _WEIGHT_NAMES else name


def redrawn(value: np.ndarray, *, seed: int, layer: str, name: str,
            channels_last: bool = False) -> np.ndarray:
    """A new array like ``value``: truncated normal draws with ``value``'s own standard deviation.

    Parameters
    ----------
    value : ndarray
        The trained parameter (any shape; not modified).
    seed : int
        The randomisation seed.
    layer : str
        The layer's name (part of the generator's seed).
    name : str
        The parameter's name in its layer (``"weight"``, ``"kernel"``, ``"bias"``, ...).
    channels_last : bool
        Whether a kernel of two or more axes is stored ``(..., in, out)``
        (Flax) rather than ``(out, in, ...)`` (torch).

    Returns
    -------
    ndarray, same shape and dtype as ``value``
        All zeros where ``value`` is constant (e.g. a zero bias stays zero).

    Examples
    --------
    >>> w = np.arange(6.0).reshape(2, 3)
    >>> a = redrawn(w, seed=0, layer="fc", name="weight")
    >>> b = redrawn(w.T, seed=0, layer="fc", name="kernel", channels_last=True)
    >>> bool(np.array_equal(a, b.T)), bool(np.abs(a).max() <= 2 * w.std())
    (True, True)
    """
    array = np.asarray(value)
    order = _output_first(array.ndim) if channels_last else tuple(range(array.ndim))
    canonical = array.transpose(order)
    std = float(np.std(canonical.astype(np.float64)))
    # "layer4/1/conv2" (Flax) and "layer4.1.conv2" (torch) name the same layer
    key = layer.replace("/", ".")
    rng = np.random.default_rng(
        [int(seed), zlib.crc32(key.encode()), zlib.crc32(parameter_role(name).encode())])
    draw = rng.standard_normal(canonical.shape)
    outside = np.abs(draw) > TRUNCATION
    while outside.any():
        draw[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(draw) > TRUNCATION
    new = (draw * std).astype(array.dtype)
    return np.ascontiguousarray(new.transpose(np.argsort(order)))


def check_batchnorm(batchnorm: object) -> str:
    """``batchnorm`` if it is one of :data:`BATCHNORM_MODES`, else a clear AttribError."""
    from ._errors import check_choice

    return check_choice("batchnorm", batchnorm, BATCHNORM_MODES,
                        suggestion="'reset': γ = 1, β = 0, moving statistics kept (Adebayo et "
                                   "al.'s code); 'redraw': drawn like the other parameters.")


def reset_batchnorm(value: np.ndarray, name: str) -> np.ndarray:
    """A BatchNorm parameter re-initialised: γ (``weight`` / ``scale``) ones, β (``bias``) zeros."""
    array = np.asarray(value)
    return np.ones_like(array) if parameter_role(name) == "weight" else np.zeros_like(array)


def _output_first(ndim: int) -> tuple[int, ...]:
    """Axes taking a channels-last kernel ``(..., in, out)`` to ``(out, in, ...)``."""
    if ndim < 2:
        return tuple(range(ndim))
    return (ndim - 1, ndim - 2, *range(ndim - 2))


def check_layers(layers: object, available: list[str] | tuple[str, ...], backend: str) -> tuple[str, ...]:
    """``layers`` as a tuple of names from ``available``, else a clear :class:`attrib.AttribError`."""
    from ._errors import argument_error, did_you_mean, shown

    if isinstance(layers, str) or not isinstance(layers, (list, tuple)):
        raise argument_error("layers", "a sequence of layer names", layers,
                             f"e.g. [{layers!r}]" if isinstance(layers, str) else None)
    for name in layers:
        if name not in available:
            hint = (did_you_mean(str(name), available)
                    or f"Layers with parameters: {list(available)[-6:]}")
            raise argument_error("layers", f"names of layers with parameters of this {backend} model",
                                 shown(repr(name)), hint)
    return tuple(layers)

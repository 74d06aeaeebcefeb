"""SmoothGrad, SmoothGrad² and VarGrad around any registered method."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._attributor import Attributor, MethodOutput
from .._errors import argument_error, check_choice
from .._inputs import as_tuple, each, like
from ._batched import (
    Explained,
    Forwarded,
    MultiPassMethod,
    add_rows,
    check_batch_size,
    check_count,
    check_scale,
    chunks,
    default_batch_size,
    padded,
    random_images,
)

__all__ = ["SmoothGrad", "KINDS"]

KINDS: tuple[str, ...] = ("mean", "squared", "variance")


class SmoothGrad(MultiPassMethod):
    """The map of a base method averaged over noisy copies of each image.

    With ``M(x)`` the base method's map and ``n_samples`` noise draws
    ``e_i ~ N(0, sigma^2)`` per image, ``sigma = noise * (max(x) - min(x))``
    over all of the image's values::

        mean      (SmoothGrad):   1/n sum_i M(x + e_i)
        squared   (SmoothGrad²):  1/n sum_i M(x + e_i)^2
        variance  (VarGrad):      1/n sum_i M(x + e_i)^2 - (1/n sum_i M(x + e_i))^2

    The noise is drawn in NumPy from ``numpy.random.default_rng(seed)`` (one
    (N, ...) draw per sample index, whatever ``batch_size``), so the same seed
    gives the same noisy images, hence the same maps, on every backend. The
    explained score is fixed on the clean images (``target=None`` is their
    arg-max). ``noise=0`` returns the base map (squared, zero variance) from
    one call of the base method.

    Parameters
    ----------
    base : str
        Any registered method (default ``"saliency"``): ``"guided_backprop"``,
        ``"integrated_gradients"``, ``"gradcam"``, ...
    base_options : mapping, optional
        Options of the base method, as :func:`attrib.explain` would take them:
        ``{"layer": "layer4"}`` for a CAM, ``{"steps": 16}`` for integrated
        gradients. The objective is SmoothGrad's own.
    n_samples : int
        Noisy copies per image (default 25).
    noise : float
        Standard deviation of the noise as a fraction of each image's value
        range (default 0.15; the paper finds 0.1–0.2 best).
    kind : str
        ``"mean"`` (default), ``"squared"`` or ``"variance"``.
    seed : int or None
        Seed of the noise (default 0); ``None`` draws fresh noise each call.
    batch_size : int or None
        Most noisy images per call of the base method: bounds memory. Default
        ``None``: as many as fit in 3 MiB of model input, 1 to 256
        (:func:`attrib.methods._batched.default_batch_size`; 64 at 3 x 64 x 64,
        5 at 3 x 224 x 224 in float32). ``stats["batch_size"]`` holds the
        images per call used. A multi-pass base (integrated gradients) splits
        each call again by its own ``batch_size``.

    Notes
    -----
    ``layer_attribution`` (CAM bases) is aggregated the same way;
    ``stats["noise_std"]`` holds each image's sigma.

    References
    ----------
    Smilkov, Thorat, Kim, Viégas, Wattenberg (2017). SmoothGrad: removing noise by
    adding noise. Adebayo, Gilmer, Goodfellow, Kim (2018). Local explanation
    methods for deep neural networks lack sensitivity to parameter values (VarGrad).
    """

    name = "smoothgrad"
    #: several inputs: each gets its own noise (sigma from its own range) and map, when the
    #: base method explains several inputs (else the base's clear error)
    several_inputs = True

    def __init__(self, model: Any, *, base: str = "saliency",
                 base_options: Mapping[str, Any] | None = None, n_samples: int = 25,
                 noise: float = 0.15, kind: str = "mean", seed: int | None = 0,
                 batch_size: int | None = None, backend: str | None = None, objective: str = "logit",
                 registry: Any = None) -> None:
        super().__init__(model, backend=backend, objective=objective, registry=registry)
        self.n_samples: int = check_count("n_samples", n_samples)
        self.batch_size: int | None = check_batch_size(batch_size)
        self.noise: float = check_scale("noise", noise, "fraction of each image's value range",
                                        "The paper's best values are 0.1 to 0.2.")
        self.kind: str = check_choice("kind", kind, KINDS)
        self.seed: int | None = seed
        self.base: Attributor = self._make_base(base, dict(base_options or {}))

    @property
    def layer(self) -> str | None:
        """The base method's tapped layer (CAM bases), else ``None``."""
        return self.base.layer

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer the base method taps."""
        return self.base.layers

    def _make_base(self, base: str, options: dict[str, Any]) -> Attributor:
        cls = self.registry.method(base)
        if cls is type(self):
            raise argument_error("base", "a method other than 'smoothgrad'", base)
        parameters = inspect.signature(cls).parameters.values()
        accepted = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
        accepted -= {"backend", "objective", "registry"}
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise argument_error("base_options", f"options of {base!r}: {sorted(accepted)}",
                                 unknown)
        if cls.needs_layer and "layer" not in options:
            raise argument_error("base_options", f"a 'layer' for the layer method {base!r}",
                                 options, "e.g. base_options={'layer': 'layer4'}")
        return cls(self.model, objective=self.objective, registry=self.registry, **options)

    def folds_forward(self, x: np.ndarray) -> bool:
        """With given targets, the clean images join the noisy ones in a single pass.

        When every noisy copy and the clean images fit in one call of a base
        that runs one gradient pass (no layer, not multi-pass), that call
        gives the clean logits too: one model call instead of two (at
        batch 1, a forward call of one image costs about three noisy rows).
        """
        if self.noise == 0 or self.base.needs_layer or isinstance(self.base, MultiPassMethod):
            return False
        return (self.n_samples + 1) * len(as_tuple(x)[0]) <= (self.batch_size
                                                               or default_batch_size(x))

    def run(self, x: Any, logits: np.ndarray | None, explained: Explained,
            extra: Forwarded | None = None) -> tuple[MethodOutput, dict[str, Any]]:
        xs = as_tuple(x)  # several inputs: each with its own sigma and noise
        n = len(xs[0])
        xfs = [xi.astype(np.float64) for xi in xs]
        sigmas = []
        for xf in xfs:
            axes = tuple(range(1, xf.ndim))
            sigmas.append(self.noise * (xf.max(axis=axes) - xf.min(axis=axes)))
        stats: dict[str, Any] = {"noise_std": like(tuple(sigmas), x), "n_samples": self.n_samples,
                                 "kind": self.kind, "base": self.base.name}
        if self.noise == 0:  # every noisy copy is the image itself: one call of the base
            assert logits is not None
            clean = self.base.attribute(x, explained.as_target())
            out = [None if m is None else each(lambda a: self._aggregate(
                       a.astype(np.float64), a.astype(np.float64) ** 2, 1, a.dtype), m)
                   for m in (clean.attribution, clean.layer_attribution)]
            assert out[0] is not None
            return MethodOutput(attribution=out[0], layer_attribution=out[1]), stats
        rng = np.random.default_rng(self.seed)
        scales = [s.reshape((-1,) + (1,) * (xi.ndim - 1)) for s, xi in zip(sigmas, xs)]
        # accumulators per (map, input): map 0 the attribution, 1 the layer attribution
        sums: dict[tuple[int, int], np.ndarray] = {}
        squares: dict[tuple[int, int], np.ndarray] = {}
        dtypes: dict[tuple[int, int], Any] = {}
        drawn: dict[int, tuple[np.ndarray, ...]] = {}
        tupled = False
        batch_size = self.batch_size or default_batch_size(x)
        used = 0
        # rows are (sample index, image) pairs, sample-major; one (N, ...) draw per index,
        # drawn in order, so the noise does not depend on batch_size
        for start, stop, size in chunks(self.n_samples * n, batch_size, self.model):
            rows = np.arange(start, stop)
            draw, image = rows // n, rows % n
            drawn = {d: e for d, e in drawn.items() if d >= int(draw[0])}
            for d in range(int(draw[0]), int(draw[-1]) + 1):
                if d not in drawn:
                    drawn[d] = tuple(random_images(rng, xi.shape, self.model.layout) * scale
                                     for xi, scale in zip(xs, scales))
            batches = [np.stack([xf[i] + drawn[int(d)][j][i] for d, i in zip(draw, image)])
                       for j, xf in enumerate(xfs)]
            folded = n if logits is None and start == 0 else 0  # folds_forward: x first
            used = max(used, size + folded)
            if folded:
                batches = [np.concatenate([xf, b]) for xf, b in zip(xfs, batches)]
                image = np.r_[np.arange(n), image]
            picked = padded(image, size + folded)
            noisy = tuple(padded(b.astype(xi.dtype), size + folded) for b, xi in zip(batches, xs))
            result = self.base.attribute(like(noisy, x), explained.rows(picked).as_target())
            if folded:
                stats["logits"] = np.asarray(result.logits[:n])
                image = image[n:]
            tupled = isinstance(result.attribution, tuple)  # a map per input (else one map)
            for k, maps in enumerate((result.attribution, result.layer_attribution)):
                if maps is None:
                    continue
                for j, m in enumerate(as_tuple(maps)):
                    m64 = np.asarray(m[folded: folded + stop - start], dtype=np.float64)
                    if (k, j) not in sums:
                        sums[k, j] = np.zeros((n,) + m64.shape[1:])
                        squares[k, j] = np.zeros((n,) + m64.shape[1:])
                        dtypes[k, j] = m.dtype
                    add_rows(sums[k, j], image, m64)
                    if self.kind != "mean":  # the mean needs no squares
                        add_rows(squares[k, j], image, m64 ** 2)
        stats["batch_size"] = used
        out = []
        for k in (0, 1):
            parts = tuple(self._aggregate(sums[k, j], squares[k, j], self.n_samples, dtypes[k, j])
                          for j in range(len(xs)) if (k, j) in sums)
            out.append(None if not parts else parts if k == 0 and tupled else parts[0])
        assert out[0] is not None
        return MethodOutput(attribution=out[0], layer_attribution=out[1]), stats

    def _aggregate(self, total: np.ndarray, squares: Any, count: int, dtype: Any) -> np.ndarray:
        mean = total / count
        if self.kind == "mean":
            result = mean
        elif self.kind == "squared":
            result = squares / count
        else:
            result = np.maximum(squares / count - mean ** 2, 0.0) if count > 1 else mean * 0
        return result.astype(dtype)

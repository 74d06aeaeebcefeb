"""GradientSHAP: expected gradients over random baselines and random points on the path."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._attributor import MethodOutput
from .._errors import AttribTypeError, argument_error, shown
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

__all__ = ["GradientSHAP", "Draws", "baseline_set"]


@dataclass(frozen=True)
class Draws:
    """The random draws of one GradientSHAP call, for ``n_samples`` draws of N images.

    Attributes
    ----------
    baseline_index : ndarray of int, shape (N, n_samples)
        Which baseline of the set each draw uses.
    alpha : ndarray of float, shape (N, n_samples)
        The point ``x0 + alpha (x~ - x0)`` on the path, in [0, 1].
    noise : ndarray, shape (N, n_samples, ...) or None
        Gaussian noise added to the image (``x~ = x + noise``, the model's
        layout); ``None``: no noise.
    """

    baseline_index: np.ndarray
    alpha: np.ndarray
    noise: np.ndarray | None = None


def baseline_set(baselines: Any, x: np.ndarray, to_numpy: Any = None) -> np.ndarray:
    """The baselines as an array (B, ...) of one image's shape (dtype of ``x``).

    ``baselines`` is ``"zeros"`` (one black image), one image (``x.shape[1:]``)
    or a set of them (B, ``*x.shape[1:]``), NumPy or a framework tensor.
    """
    if isinstance(baselines, str) and baselines == "zeros":
        return np.zeros((1,) + x.shape[1:], dtype=x.dtype)
    try:
        if hasattr(baselines, "shape") and not isinstance(baselines, np.ndarray) \
                and to_numpy is not None:
            baselines = to_numpy(baselines)
        array = np.asarray(baselines)
        if array.dtype.kind not in "fiu":
            raise TypeError
    except (TypeError, ValueError):
        raise argument_error("baselines", "'zeros' or a numeric array of baseline images",
                             shown(type(baselines).__name__), kind=AttribTypeError) from None
    if array.shape == x.shape[1:]:
        array = array[None]
    if array.ndim != x.ndim or array.shape[1:] != x.shape[1:] or len(array) == 0:
        raise argument_error(
            "baselines", f"one image of shape {x.shape[1:]} or a set (B, {', '.join(map(str, x.shape[1:]))})",
            shown(f"an array of shape {array.shape}"),
            "Pass baseline images in the model's layout, e.g. a few training images.")
    if not np.all(np.isfinite(array)):
        raise argument_error("baselines", "finite values", shown("an array with NaN or inf"))
    return np.array(array, dtype=x.dtype)


class GradientSHAP(MultiPassMethod):
    """SHAP values approximated by expected gradients (GradientSHAP as Captum defines it).

    For each image ``x`` and each of ``n_samples`` draws ``s``: a baseline
    ``x0_s`` from the set (uniformly), a point ``alpha_s ~ U[0, 1]`` on the
    path and, when ``stdevs > 0``, Gaussian noise ``e_s ~ N(0, stdevs^2)`` on
    the image (``x~_s = x + e_s``)::

        GradientSHAP(x) = 1/n sum_s grad f(x0_s + alpha_s (x~_s - x0_s)) * (x~_s - x0_s)

    the expectation of the integrated-gradients integrand over baselines and
    path points. On a linear model it is ``w * (x - E[x0])`` in expectation.
    The draws come from ``numpy.random.default_rng(seed)`` (baseline indices,
    then path points, then one noise image per draw in NCHW order), so a seed
    gives the same numbers on every backend; :meth:`draws` returns them and
    ``draws=`` takes explicit ones (to reproduce another library's run).
    The gradient points run through the backend ``batch_size`` at a time.
    ``stats["score"]``, ``stats["baseline_score"]`` (the mean score of the
    drawn baselines) and ``stats["delta"]`` (``sum GradientSHAP - (score -
    baseline_score)``, zero only in expectation) come with the map.

    Parameters
    ----------
    baselines : ``"zeros"`` (default) or array
        One baseline image or a set (B, ...) in the model's layout.
    n_samples : int
        Draws per image (default 5, as Captum).
    stdevs : float
        Standard deviation of the noise on the image, in input units (default
        0: none; Captum's ``stdevs``).
    seed : int or None
        Seed of the draws (default 0); ``None``: fresh draws each call.
    draws : Draws or mapping, optional
        Explicit draws for the next calls (their N must match the inputs').
    batch_size : int or None
        Most gradient points per pass (default: 3 MiB of input, 1 to 256).

    References
    ----------
    Lundberg, Lee (2017). A unified approach to interpreting model predictions.
    Erion, Janizek, Sturmfels, Lundberg, Lee (2021). Improving performance of deep
    learning models with axiomatic attribution priors and expected gradients.
    """

    name = "gradient_shap"

    def __init__(self, model: Any, *, baselines: Any = "zeros", n_samples: int = 5,
                 stdevs: float = 0.0, seed: int | None = 0, draws: Draws | Mapping[str, Any] | None = None,
                 batch_size: int | None = None, backend: str | None = None,
                 objective: str = "logit", registry: Any = None) -> None:
        super().__init__(model, backend=backend, objective=objective, registry=registry)
        if isinstance(baselines, str) and baselines != "zeros":
            raise argument_error("baselines", "'zeros' or an array of baseline images", baselines)
        self.baselines: Any = baselines
        self.n_samples: int = check_count("n_samples", n_samples)
        self.stdevs: float = check_scale("stdevs", stdevs, "noise std in input units")
        self.seed: int | None = seed
        self.batch_size: int | None = check_batch_size(batch_size)
        if isinstance(draws, Mapping):
            unknown = sorted(set(draws) - {"baseline_index", "alpha", "noise"})
            if unknown:
                raise argument_error("draws", "keys 'baseline_index', 'alpha', 'noise'", unknown)
            draws = Draws(**draws)
        if draws is not None and not isinstance(draws, Draws):
            raise argument_error("draws", "a Draws or a mapping", shown(type(draws).__name__),
                                 kind=AttribTypeError)
        self.given_draws: Draws | None = draws

    def draws(self, x: np.ndarray, n_baselines: int) -> Draws:
        """The draws for images ``x`` (N, ...) and a set of ``n_baselines`` (seeded)."""
        if self.given_draws is not None:
            return self._checked(self.given_draws, x, n_baselines)
        rng = np.random.default_rng(self.seed)
        n = len(x)
        index = rng.integers(n_baselines, size=(self.n_samples, n)).T
        alpha = rng.random((self.n_samples, n)).T
        noise = None
        if self.stdevs > 0:
            noise = np.stack([random_images(rng, x.shape, self.model.layout)
                              for _ in range(self.n_samples)], axis=1) * self.stdevs
        return Draws(index, alpha, noise)

    def _checked(self, draws: Draws, x: np.ndarray, n_baselines: int) -> Draws:
        shape = (len(x), self.n_samples)
        index = np.asarray(draws.baseline_index)
        alpha = np.asarray(draws.alpha, dtype=np.float64)
        if index.shape != shape or index.dtype.kind not in "iu" \
                or (index < 0).any() or (index >= n_baselines).any():
            raise argument_error("draws.baseline_index",
                                 f"ints in [0, {n_baselines}) of shape (N, n_samples) = {shape}",
                                 shown(f"{index.dtype} array of shape {index.shape}"))
        if alpha.shape != shape or not ((alpha >= 0) & (alpha <= 1)).all():
            raise argument_error("draws.alpha", f"values in [0, 1] of shape {shape}",
                                 shown(f"an array of shape {alpha.shape}"))
        noise = draws.noise
        if noise is not None:
            noise = np.asarray(noise, dtype=np.float64)
            if noise.shape != shape + x.shape[1:] or not np.isfinite(noise).all():
                raise argument_error("draws.noise", f"finite values of shape {shape + x.shape[1:]}",
                                     shown(f"an array of shape {noise.shape}"))
        return Draws(index, alpha, noise)

    def extra_inputs(self, x: np.ndarray) -> np.ndarray:
        """The baseline set: its scores go through the model with the inputs'."""
        return baseline_set(self.baselines, x, self.model.to_numpy)

    def run(self, x: np.ndarray, logits: np.ndarray | None, explained: Explained,
            extra: Forwarded | None = None) -> tuple[MethodOutput, dict[str, Any]]:
        assert logits is not None, "folds_forward() is False"
        n = len(x)
        if extra is None:
            base = baseline_set(self.baselines, x, self.model.to_numpy)
            extra = Forwarded(base, self.model.forward(base))
        base = extra.rows
        drawn = self.draws(x, len(base))
        total = np.zeros(x.shape, dtype=np.float64)
        grad_dtype: Any = x.dtype
        batch_size = self.batch_size or default_batch_size(x)
        used = 0
        shape = (-1,) + (1,) * (x.ndim - 1)
        # rows are (draw, image) pairs, draw-major as SmoothGrad's
        for start, stop, size in chunks(self.n_samples * n, batch_size, self.model):
            rows = np.arange(start, stop)
            draw, image = rows // n, rows % n
            x0 = base[drawn.baseline_index[image, draw]]
            noisy = x[image] if drawn.noise is None else \
                (x[image] + drawn.noise[image, draw]).astype(x.dtype)
            diff = noisy - x0  # in the inputs' dtype, as Captum
            alpha = drawn.alpha[image, draw].astype(x.dtype).reshape(shape)
            batch = x0 + alpha * diff
            result = self.model.gradients(explained.rows(padded(image, size)).request(
                padded(batch, size), input_gradient=True, layer_gradients=False))
            assert result.input_gradient is not None, "the backend returned no input gradient"
            grads = result.input_gradient[: stop - start]
            grad_dtype, used = grads.dtype, max(used, size)
            add_rows(total, image, grads.astype(np.float64) * diff.astype(np.float64))
            del x0, noisy
        attribution = total / self.n_samples
        score = explained.scores(logits)
        base_scores = np.stack([explained.rows(np.full(len(base), k)).scores(extra.logits)
                                for k in range(n)])
        baseline_score = np.take_along_axis(base_scores, drawn.baseline_index, axis=1).mean(axis=1)
        delta = attribution.reshape(n, -1).sum(axis=1) - (score - baseline_score)
        stats = {"score": score, "baseline_score": baseline_score, "delta": delta,
                 "n_samples": self.n_samples, "stdevs": self.stdevs, "batch_size": used,
                 "baseline_index": drawn.baseline_index, "alpha": drawn.alpha}
        return MethodOutput(attribution=attribution.astype(grad_dtype)), stats

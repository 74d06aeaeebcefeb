"""Integrated gradients: the path integral of the gradient from a baseline to the input."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._attributor import MethodOutput
from .._blur import gaussian_blur
from .._errors import AttribTypeError, argument_error, check_choice, shown
from .._inputs import as_tuple, like, several
from ._batched import (
    Explained,
    Forwarded,
    MultiPassMethod,
    check_batch_size,
    check_count,
    chunks,
    default_batch_size,
    padded,
    random_images,
    spatial_axes,
)

__all__ = ["IntegratedGradients", "RULES", "quadrature", "blur_baseline", "make_baselines"]

#: the quadrature rules, with Captum's names
RULES: tuple[str, ...] = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
                          "riemann_trapezoid")
BASELINES: tuple[str, ...] = ("zeros", "blur", "uniform")


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``alpha`` in [0, 1] and weights of ``rule`` with ``steps`` points (float64).

    The same nodes and weights as Captum's ``approximation_parameters``:
    Gauss–Legendre from :func:`numpy.polynomial.legendre.leggauss` mapped to
    [0, 1]; the Riemann rules with ``steps`` equal weights ``1 / steps`` at the
    left ends, right ends or midpoints of ``steps`` intervals, and the
    trapezoid rule at ``linspace(0, 1, steps)`` with the end weights halved
    (Captum rounds the Riemann nodes to float32 through ``torch.linspace``;
    here they are exact in float64, a difference below 1e-7).

    >>> alphas, weights = quadrature("riemann_trapezoid", 3)
    >>> alphas.tolist(), weights.tolist()
    ([0.0, 0.5, 1.0], [0.16666666666666666, 0.3333333333333333, 0.16666666666666666])
    """
    rule = check_choice("rule", rule, RULES)
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (1 + nodes), 0.5 * weights
    if steps < 2:
        raise argument_error("steps", f"at least 2 steps for the rule {rule!r}", steps)
    weights = np.full(steps, 1.0 / steps)
    if rule == "riemann_trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
        return np.linspace(0.0, 1.0, steps), weights
    if rule == "riemann_left":
        return np.linspace(0.0, 1.0 - 1.0 / steps, steps), weights
    if rule == "riemann_middle":
        return np.linspace(1.0 / (2 * steps), 1.0 - 1.0 / (2 * steps), steps), weights
    return np.linspace(1.0 / steps, 1.0, steps), weights  # riemann_right


def blur_baseline(x: np.ndarray, layout: str) -> np.ndarray:
    """Each image blurred by a Gaussian of sigma = 1/10 of its shorter side (float64).

    Separable, per channel, truncated at 3 sigma, edges reflected
    (``numpy.pad(mode="reflect")``): the blurred baseline of Kapishnikov et
    al. (2021), which keeps the colours and removes the detail.
    """
    axes = spatial_axes(layout, x.ndim)
    sigma = min(x.shape[axis] for axis in axes) / 10.0
    radii = [min(int(np.ceil(3 * sigma)), x.shape[axis] - 1) for axis in axes]
    return gaussian_blur(x, sigma, layout, radii, mode="reflect")


def make_baselines(baseline: Any, x: np.ndarray, model: Any, seed: int = 0,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """The baseline of each image of ``x`` (shape and dtype of ``x``) for a ``baseline=`` option.

    ``"zeros"``, ``"blur"`` (:func:`blur_baseline`), ``"uniform"`` (noise in each
    image's value range, drawn with ``seed``, or from ``rng`` when given) or an
    array broadcastable to ``x``; ``model`` gives the layout and converts
    framework tensors.
    """
    if isinstance(baseline, str):
        if baseline == "zeros":
            return np.zeros_like(x)
        if baseline == "blur":
            return blur_baseline(x, model.layout).astype(x.dtype)
        rng = np.random.default_rng(seed) if rng is None else rng
        axes = tuple(range(1, x.ndim))
        low, high = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
        noise = random_images(rng, x.shape, model.layout, kind="uniform")
        return (low + (high - low) * noise).astype(x.dtype)
    try:
        array = np.asarray(model.to_numpy(baseline) if hasattr(baseline, "shape")
                           and not isinstance(baseline, np.ndarray) else baseline)
        if array.dtype.kind not in "fiu":
            raise TypeError
        base = np.broadcast_to(array, x.shape)
    except (TypeError, ValueError):
        raise argument_error(
            "baseline", f"'zeros', 'blur', 'uniform' or a numeric array broadcastable to the "
            f"inputs {x.shape}", shown(f"{type(baseline).__name__} of shape "
                                      f"{getattr(baseline, 'shape', '?')}"),
            kind=AttribTypeError) from None
    if not np.all(np.isfinite(base)):
        raise argument_error("baseline", "finite values", shown("an array with NaN or inf"))
    return np.array(base, dtype=x.dtype)


class IntegratedGradients(MultiPassMethod):
    """Integrated gradients with a choice of baseline and quadrature rule.

    With baseline ``x'`` and the quadrature's nodes ``alpha_s`` and weights
    ``w_s`` (``s = 1..steps``)::

        IG(x) = (x - x') * sum_s w_s * grad f(x' + alpha_s (x - x'))

    where ``f`` is the explained score (the target's logit by default, or a
    weighted sum of class scores). The interpolated images run through the
    backend's gradient pass ``batch_size`` at a time. By completeness
    ``sum IG(x) ~= f(x) - f(x')``; ``stats["completeness_error"]`` holds the
    per-sample ``sum IG(x) - (f(x) - f(x'))``, ``stats["score"]`` and
    ``stats["baseline_score"]`` the two scores.

    Parameters
    ----------
    baseline : ``"zeros"`` (default), ``"blur"``, ``"uniform"``, or an array
        ``"zeros"``: the black image; ``"blur"``: each image blurred by a
        Gaussian of sigma one tenth of its shorter side
        (:func:`blur_baseline`); ``"uniform"``: noise uniform in each
        image's value range ``[min, max]``, drawn with ``seed``; an array
        broadcastable to the inputs (model layout); several inputs: a
        tuple of arrays, one per input (the strings apply to each input).
    steps : int
        Number of quadrature points (default 50).
    rule : str
        ``"gausslegendre"`` (default), ``"riemann_left"``, ``"riemann_right"``,
        ``"riemann_middle"``, ``"riemann_trapezoid"``: Captum's rules, same nodes
        and weights (:func:`quadrature`).
    batch_size : int or None
        Most interpolated images per gradient pass: bounds memory. Default
        ``None``: as many as fit in 3 MiB of model input, 1 to 256
        (:func:`attrib.methods._batched.default_batch_size`; 64 at 3 x 64 x 64,
        5 at 3 x 224 x 224 in float32). ``stats["batch_size"]`` holds the
        rows per pass used.
    seed : int
        Seed of the ``"uniform"`` baseline (NumPy ``default_rng``).

    References
    ----------
    Sundararajan, Taly, Yan (2017). Axiomatic attribution for deep networks.
    """

    name = "integrated_gradients"
    several_inputs = True  # one map per input of model(x1, x2, ...), one path for all

    def __init__(self, model: Any, *, baseline: Any = "zeros", steps: int = 50,
                 rule: str = "gausslegendre", batch_size: int | None = None, seed: int = 0,
                 backend: str | None = None, objective: str = "logit",
                 registry: Any = None) -> None:
        super().__init__(model, backend=backend, objective=objective, registry=registry)
        self.steps: int = check_count("steps", steps)
        self.alphas, self.step_weights = quadrature(rule, self.steps)
        self.rule_name: str = rule
        self.batch_size: int | None = check_batch_size(batch_size)
        if isinstance(baseline, str):
            check_choice("baseline", baseline, BASELINES,
                         suggestion="Or pass a numeric array broadcastable to the inputs.")
        self.baseline: Any = baseline
        self.seed: int = seed

    def baselines(self, x: Any) -> Any:
        """The baseline of each image of ``x``, shape of ``x``, dtype of ``x`` (each of several inputs)."""
        if not several(x):
            return make_baselines(self.baseline, x, self.model, self.seed)
        given = self.baseline
        if not isinstance(given, str) and (not isinstance(given, tuple) or len(given) != len(x)):
            raise argument_error(
                "baseline", f"'zeros', 'blur', 'uniform' or a tuple of {len(x)} arrays, one per "
                "input", shown(f"{type(given).__name__}"), kind=AttribTypeError)
        rng = np.random.default_rng(self.seed)  # "uniform": drawn for each input in turn
        return tuple(make_baselines(given if isinstance(given, str) else given[i], xi, self.model,
                                    rng=rng) for i, xi in enumerate(x))

    def extra_inputs(self, x: Any) -> Any:
        """The baselines: their scores go through the model with the inputs' (completeness)."""
        return self.baselines(x)

    def run(self, x: Any, logits: np.ndarray | None, explained: Explained,
            extra: Forwarded | None = None) -> tuple[MethodOutput, dict[str, Any]]:
        assert logits is not None, "folds_forward() is False"
        if extra is None:
            baselines = self.baselines(x)
            extra = Forwarded(baselines, explained.forward(self.model, baselines))
        xs, bases = as_tuple(x), as_tuple(extra.rows)  # several inputs: one path through all
        n = len(xs[0])
        diffs = [xi.astype(np.float64) - b.astype(np.float64) for xi, b in zip(xs, bases)]
        # interpolated images in the inputs' dtype (as Captum)
        steps_in_dtype = [d.astype(xi.dtype) for d, xi in zip(diffs, xs)]
        totals = [np.zeros(xi.shape, dtype=np.float64) for xi in xs]
        flat_totals = [t.reshape(n, -1) for t in totals]
        steps = len(self.alphas)
        grad_dtypes: list[Any] = [xi.dtype for xi in xs]
        batch_size = self.batch_size or default_batch_size(x)
        used = 0
        # rows are (step, sample) pairs, step-major like Captum's expansion
        for start, stop, size in chunks(steps * n, batch_size, self.model):
            rows = np.arange(start, stop)
            step, sample = rows // n, rows % n
            batch = []
            for xi, b, s in zip(xs, bases, steps_in_dtype):
                alpha = self.alphas[step].astype(xi.dtype).reshape((-1,) + (1,) * (xi.ndim - 1))
                batch.append(b[sample] + alpha * s[sample])
            picked = padded(sample, size)
            result = self.model.gradients(explained.rows(picked).request(
                padded(like(tuple(batch), x), size), input_gradient=True, layer_gradients=False))
            assert result.input_gradient is not None, "the backend returned no input gradient"
            used = max(used, size)
            for i, gradient in enumerate(as_tuple(result.input_gradient)):
                grads = gradient[: stop - start]
                grad_dtypes[i] = grads.dtype
                # sum_s w_s * grad per sample: one weighted row sum (gemv) per sample in the
                # chunk, in the gradients' dtype, added to the float64 total
                flat = grads.reshape(len(grads), -1)
                weight = self.step_weights[step].astype(grads.dtype)
                for k in np.unique(sample):
                    mine = sample == k
                    flat_totals[i][k] += weight[mine] @ flat[mine]
        attributions = [t * d for t, d in zip(totals, diffs)]
        score = explained.scores(logits)
        baseline_score = explained.scores(extra.logits)
        summed = attributions[0].reshape(n, -1).sum(axis=1)
        for more in attributions[1:]:
            summed = summed + more.reshape(n, -1).sum(axis=1)
        error = summed - (score - baseline_score)
        stats = {"completeness_error": error, "score": score, "baseline_score": baseline_score,
                 "steps": steps, "rule": self.rule_name, "batch_size": used}
        maps = tuple(a.astype(dt) for a, dt in zip(attributions, grad_dtypes))
        return MethodOutput(attribution=like(maps, x)), stats

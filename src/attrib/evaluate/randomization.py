"""Sanity checks of Adebayo et al. (2018), "Sanity Checks for Saliency Maps".

*Model randomisation*: re-draw the parameters of the layers from the logits
down (cascading) or one layer at a time (independent) and compare the maps
of the randomised model with the original ones. A map that explains the
model must change; one that stays put shows the input more than the model.

*Data randomisation*: compare the maps of a model with those of the same
network trained on permuted labels (for the bundled demo model:
``attrib.demo_model(backend, weights="permuted")``).

Similarities per sample, averaged over the batch:

- ``spearman``: Spearman rank correlation of the signed maps
  (input-space maps summed over channels);
- ``spearman_abs``: Spearman rank correlation of |map| (absolute values
  summed over channels);
- ``ssim``: SSIM of |map|, each min-max scaled to [0, 1];
- ``pearson_abs``: Pearson correlation of |map|.

A randomised copy is one random draw. Its similarities vary from draw to
draw (on the demo model, Grad-CAM's Spearman of |map| after re-drawing only
``fc`` has a standard deviation of about 0.5 between draws: a random
classifier row can happen to point near the trained one, or away from it).
The paper reports one draw per layer; pass several seeds
(``seed=range(5)``) to report the mean over draws and its spread
(:meth:`RandomizationResult.spread`), the estimate a conclusion should rest on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._errors import argument_error
from .._model import Model
from .._randomize import check_batchnorm
from ._maps import explain_all, explain_maps, method_list, two_d
from ._similarity import pearson, ranks, ssim, unit_scaled
from ._table import format_table

__all__ = ["METRICS", "RandomizationResult", "model_randomization", "data_randomization",
           "similarities"]

#: the similarity columns of the randomisation checks, in order
METRICS: tuple[str, ...] = ("spearman", "spearman_abs", "ssim", "pearson_abs")


def similarities(original: Any, other: Any) -> dict[str, np.ndarray]:
    """Per-sample similarities (:data:`METRICS`) of two batches of maps.

    Parameters
    ----------
    original, other : Explanation or ndarray, shape (N, H, W) or input-space (N, C, H, W)

    Returns
    -------
    dict of metric name to ndarray of shape (N,)
    """
    a, b = (x if isinstance(x, _Side) else _side(x) for x in (original, other))
    if a.signed.shape != b.signed.shape:
        raise argument_error("other", f"maps of shape {a.signed.shape}", b.signed.shape)
    return {
        "spearman": pearson(a.signed_ranks, b.signed_ranks),
        "spearman_abs": pearson(a.absolute_ranks, b.absolute_ranks),
        "ssim": ssim(a.unit, b.unit),
        "pearson_abs": pearson(a.absolute, b.absolute),
    }


@dataclass(frozen=True)
class _Side:
    """One batch of maps as :func:`similarities` reads them: computed once for the
    original maps, which every randomisation step compares with."""

    signed: np.ndarray  # (N, H, W), float64
    absolute: np.ndarray
    signed_ranks: np.ndarray  # (N, H * W): Spearman is Pearson of the ranks
    absolute_ranks: np.ndarray
    unit: np.ndarray  # |map| min-max scaled to [0, 1], for SSIM


def _side(maps: Any) -> _Side:
    signed, absolute = two_d(maps), two_d(maps, absolute=True)
    return _Side(signed, absolute, ranks(signed.reshape(len(signed), -1)),
                 ranks(absolute.reshape(len(absolute), -1)), unit_scaled(absolute))


@dataclass(frozen=True)
class RandomizationResult:
    """Similarities of original and randomised maps, per method and randomisation step.

    Attributes
    ----------
    methods : tuple of str
    steps : tuple of str
        Column labels: for a cascading check the layer randomised last (all
        layers from the logits down to it are random), else the one layer.
    cascade : bool or None
        ``None`` for the data randomisation check (one step, ``"permuted labels"``).
    scores : mapping method -> metric -> ndarray of shape (len(steps),)
        Batch means of :data:`METRICS`.
    maps : mapping method -> ndarray of shape (len(steps) + 1, H, W)
        |map| of the first sample: the original, then after each step (first seed).
    image : ndarray (H, W, 3) or None
        The first sample, for the figure.
    seeds : tuple of int
        The seeds of the randomised copies; ``scores`` is the mean over them.
    per_seed : mapping method -> metric -> ndarray of shape (len(seeds), len(steps)), or None
        The batch means for each seed (``None`` for the data randomisation check).
    """

    methods: tuple[str, ...]
    steps: tuple[str, ...]
    cascade: bool | None
    scores: Mapping[str, Mapping[str, np.ndarray]]
    maps: Mapping[str, np.ndarray] = field(repr=False)
    image: np.ndarray | None = field(default=None, repr=False)
    seeds: tuple[int, ...] = (0,)
    per_seed: Mapping[str, Mapping[str, np.ndarray]] | None = field(default=None, repr=False)

    def spread(self, method: str, metric: str = "spearman_abs") -> np.ndarray:
        """Standard deviation over the seeds of each step's batch mean, shape (len(steps),).

        Zeros for a single seed (and for the data randomisation check).
        """
        if self.per_seed is None:
            return np.zeros(len(self.steps))
        return np.asarray(self.per_seed[method][metric]).std(axis=0)

    def final(self, method: str, metric: str = "spearman_abs") -> float:
        """The similarity after the last step (every layer random when cascading)."""
        return float(self.scores[method][metric][-1])

    def table(self) -> str:
        """A plain-text table: one row per method and metric, one column per step.

        With several seeds each cell is ``mean ± standard deviation`` over the seeds.
        """
        header = ["method", "metric", *self.steps]
        several = len(self.seeds) > 1 and self.per_seed is not None

        def cell(method: str, metric: str, k: int) -> str:
            mean = f"{self.scores[method][metric][k]:.3f}"
            return f"{mean} ± {self.spread(method, metric)[k]:.3f}" if several else mean

        rows = [[method, metric, *(cell(method, metric, k) for k in range(len(self.steps)))]
                for method in self.methods for metric in METRICS]
        title = ("cascading model randomisation" if self.cascade else
                 "independent model randomisation" if self.cascade is False else
                 "data randomisation")
        over = f", mean ± std over {len(self.seeds)} seeds" if several else ""
        return (f"{title} (similarity to the original map, batch mean{over})\n"
                + format_table(header, rows))

    def plot(self, panel_size: float = 1.6) -> Any:
        """The figure of Adebayo et al.: a row of |map| per method, one column per step, and the curves.

        Returns a matplotlib ``Figure``.
        """
        from ..plotting import _pyplot

        plt = _pyplot()
        columns = len(self.steps) + 1 + (self.image is not None)
        rows = len(self.methods)
        fig = plt.figure(figsize=(panel_size * columns, panel_size * rows + 2.6), layout="constrained")
        grid = fig.add_gridspec(rows + 1, 1, height_ratios=[panel_size] * rows + [2.4])
        labels = ["original", *self.steps]
        for r, method in enumerate(self.methods):
            axes = grid[r].subgridspec(1, columns).subplots()
            axes = np.atleast_1d(axes)
            offset = 0
            if self.image is not None:
                axes[0].imshow(self.image)
                axes[0].set_title("input" if r == 0 else "", fontsize=8)
                offset = 1
            for c, picture in enumerate(self.maps[method]):
                ax = axes[c + offset]
                ax.imshow(picture, cmap="gray")
                if r == 0:
                    ax.set_title(labels[c], fontsize=8)
            axes[0].set_ylabel(method, fontsize=8)
            for ax in axes:
                ax.set_xticks([])
                ax.set_yticks([])
        curves = np.atleast_1d(grid[rows].subgridspec(1, len(METRICS)).subplots())
        x = np.arange(len(self.steps))
        several = len(self.seeds) > 1 and self.per_seed is not None
        for ax, metric in zip(curves, METRICS):
            for method in self.methods:
                mean = self.scores[method][metric]
                line = ax.plot(x, mean, marker="o", label=method)[0]
                if several:
                    spread = self.spread(method, metric)
                    ax.fill_between(x, mean - spread, mean + spread, color=line.get_color(),
                                    alpha=0.2, lw=0)
            ax.set_title(metric + (f" (mean ± std, {len(self.seeds)} seeds)" if several else ""),
                         fontsize=9)
            ax.set_xticks(x, self.steps, rotation=45, fontsize=7)
            ax.set_ylim(-0.3, 1.05)
            ax.axhline(0.0, color="0.7", lw=0.8)
        curves[0].legend(fontsize=7)
        return fig


def model_randomization(
    model: Any,
    inputs: Any,
    *,
    method: str | Sequence[str],
    target: Any = None,
    layer: str | None = None,
    backend: str | None = None,
    cascade: bool = True,
    seed: int | Sequence[int] = 0,
    layers: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    batchnorm: str = "reset",
    progress: bool = False,
) -> RandomizationResult:
    """The model parameter randomisation test (Adebayo et al., 2018).

    As in the paper (and its code, ``adebayoj/sanity_checks_saliency``):
    per image, the Spearman rank correlation between the original map and
    the randomised model's map (of the signed map and of |map| summed over
    the colour channels), then the mean over the images. BatchNorm layers are
    re-initialised as the paper's code does (γ = 1, β = 0, moving mean and
    variance kept; ``batchnorm="reset"``). Two choices differ from the
    paper's code, both documented: the re-draw of the other parameters
    keeps each array's own scale (:func:`attrib._randomize.redrawn`; the
    paper re-runs the layers' initialisers), and the explained class stays the original
    model's arg-max (the paper's code explains the randomised model's own
    arg-max, which makes the maps of different steps explain different
    classes). The paper's percentile clipping of |map| before the rank
    correlation only ties the top 1 % of pixels and is left out.

    Parameters
    ----------
    model : a framework model or an :class:`attrib.Model`
        Its backend must implement :meth:`attrib.Model.randomized` (torch,
        jax, numpy do). Never modified: every step explains an independent copy.
    inputs : ndarray or framework tensor, shape (N, ...)
    method : str or sequence of str
        Method name(s), e.g. ``["gradcam", "guided_backprop"]``.
    target : None, int or sequence of N ints
        ``None``: the **original** model's arg-max, kept for every randomised copy.
    layer : str, optional
        The layer of the layer methods (Grad-CAM); ignored by the others.
    cascade : bool
        ``True``: step k randomises the k layers nearest the logits;
        ``False``: step k randomises only the k-th layer from the logits.
    seed : int or sequence of int
        Seed(s) of :meth:`attrib.Model.randomized`: same seed, same copies
        (in every backend). With several seeds every step is repeated with
        each; the scores are the means over the seeds and
        :meth:`RandomizationResult.spread` their standard deviation.
    layers : sequence of str, or mapping of str to sequence of str, optional
        The layers to randomise, input side first; default
        :meth:`attrib.Model.parameter_layers`. A mapping randomises by
        **blocks**: each step re-draws one block's layers (a step's label is
        its key), as the paper randomises Inception v3 block by block
        (e.g. :meth:`attrib.models.Pretrained.blocks`).
    batchnorm : {"reset", "redraw"}
        BatchNorm layers of a randomised step: ``"reset"`` (default, the
        paper's code: its ``reinitlayerlist`` re-runs the initialisers of
        the block's trainable variables, so γ = 1 and β = 0 while the moving
        statistics, not trainable, are kept) or ``"redraw"`` (γ and β drawn
        like every other parameter). See :meth:`attrib.Model.randomized`.
    progress : bool
        A tqdm bar over the randomised copies (steps × seeds).

    Returns
    -------
    RandomizationResult
    """
    from .._registry import default_registry

    methods = method_list(method)
    seeds = _seed_list(seed)
    check_batchnorm(batchnorm)
    wrapped: Model = default_registry().wrap(model, backend=backend)
    if isinstance(layers, Mapping):
        blocks = {str(label): list(names) for label, names in layers.items()}
    else:
        blocks = {name: [name] for name in (wrapped.parameter_layers() if layers is None
                                            else layers)}
    if not blocks or not all(blocks.values()):
        raise argument_error("layers", "at least one layer with parameters (no empty block)",
                             layers)
    from_logits = list(blocks)[::-1]
    options = {"batchnorm": batchnorm} if _takes_batchnorm(wrapped) else {}
    originals = explain_all(wrapped, inputs, methods, target=target, layer=layer)
    targets = originals[methods[0]].targets
    sides = {m: _side(originals[m]) for m in methods}  # compared with at every step
    steps = []
    per_seed: dict[str, dict[str, np.ndarray]] = {
        m: {k: np.zeros((len(seeds), len(from_logits))) for k in METRICS} for m in methods}
    maps: dict[str, list[np.ndarray]] = {m: [two_d(originals[m], absolute=True)[0]] for m in methods}
    iterator: Any = [(k, i) for k in range(len(from_logits)) for i in range(len(seeds))]
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="randomising layers", unit="copy", leave=False)
    for k, i in iterator:
        labels = from_logits[:k + 1] if cascade else [from_logits[k]]
        copy = wrapped.randomized([n for label in labels for n in blocks[label]], seed=seeds[i],
                                  **options)
        if i == 0:
            steps.append(from_logits[k])
        explained = explain_all(copy, inputs, methods, target=targets, layer=layer)
        for m in methods:
            randomised = explained[m]
            for key, values in similarities(sides[m], randomised).items():
                per_seed[m][key][i, k] = float(np.mean(values))
            if i == 0:
                maps[m].append(two_d(randomised, absolute=True)[0])
    return RandomizationResult(
        methods=methods, steps=tuple(steps), cascade=bool(cascade),
        scores={m: {k: v.mean(axis=0) for k, v in per_seed[m].items()} for m in methods},
        maps={m: np.stack(v) for m, v in maps.items()},
        image=_first_image(wrapped, inputs), seeds=seeds, per_seed=per_seed,
    )


def _takes_batchnorm(model: Model) -> bool:
    """Whether the backend's ``randomized`` takes ``batchnorm`` (backends written before it do not).

    A backend without it randomises as it always did; its BatchNorm treatment is its own.
    """
    import inspect

    parameters = inspect.signature(model.randomized).parameters.values()
    return any(p.name == "batchnorm" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _seed_list(seed: Any) -> tuple[int, ...]:
    """``seed`` (an int or a non-empty sequence of them) as a tuple of non-negative ints."""
    single = isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)
    values = [seed] if single else (list(seed) if isinstance(seed, (list, tuple, range)) else None)
    if (not values or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                              and v >= 0 for v in values)):
        raise argument_error("seed", "a non-negative int or a non-empty sequence of them", seed,
                             "e.g. seed=0, or seed=range(5) to average over five draws")
    return tuple(int(v) for v in values)


def data_randomization(
    model: Any,
    permuted_model: Any,
    inputs: Any,
    *,
    method: str | Sequence[str],
    target: Any = None,
    layer: str | None = None,
    backend: str | None = None,
) -> RandomizationResult:
    """The data randomisation test (Adebayo et al., 2018).

    Compares the maps of ``model`` with those of ``permuted_model``, the
    same architecture trained on randomly permuted labels (for the demo:
    ``attrib.demo_model(backend, weights="permuted")``), for the same
    targets (``None``: ``model``'s arg-max). A method whose maps stay similar
    does not depend on what the model learnt from its labels.

    Returns
    -------
    RandomizationResult
        One step, ``"permuted labels"``; ``cascade`` is ``None``.
    """
    from .._registry import default_registry

    methods = method_list(method)
    wrapped: Model = default_registry().wrap(model, backend=backend)
    other: Model = default_registry().wrap(permuted_model, backend=backend)
    scores: dict[str, dict[str, np.ndarray]] = {}
    maps: dict[str, np.ndarray] = {}
    for m in methods:
        original = explain_maps(wrapped, inputs, m, target=target, layer=layer)
        permuted = explain_maps(other, inputs, m, target=original.targets, layer=layer)
        values = similarities(original, permuted)
        scores[m] = {k: np.array([float(np.mean(v))]) for k, v in values.items()}
        maps[m] = np.stack([two_d(original, absolute=True)[0], two_d(permuted, absolute=True)[0]])
    return RandomizationResult(methods=methods, steps=("permuted labels",), cascade=None,
                               scores=scores, maps=maps, image=_first_image(wrapped, inputs))


def _first_image(model: Model, inputs: Any) -> np.ndarray | None:
    """The first input as (H, W, C) in [0, 1] for display, or None if it is not an image."""
    x = model.to_numpy(inputs)
    if x.ndim != 4:
        return None
    image = x[0].transpose(1, 2, 0) if model.layout == "NCHW" else x[0]
    low, high = float(image.min()), float(image.max())
    return np.asarray((image - low) / (high - low) if high > low else np.zeros_like(image))

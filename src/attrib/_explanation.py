"""The :class:`Explanation` every method returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = ["Explanation"]


def _frozen(array: Any) -> Any:
    if array is None:
        return None
    if isinstance(array, tuple):  # several inputs: one read-only array per input
        return tuple(_frozen(a) for a in array)
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class Explanation:
    """Raw, signed, un-normalised attribution map(s) and what produced them.

    Attributes
    ----------
    attribution : ndarray, or tuple of ndarray
        The map. Input-space methods: the input's shape and layout, e.g.
        (N, C, H, W) for torch. Grad-CAM: (N, H, W), upsampled to the input.
        Several inputs (``inputs=(x1, x2)``): input-space methods give a tuple
        of maps, one per input, each of its input's shape.
    method, backend : str
        Names as :func:`attrib.list_methods` / :func:`attrib.list_backends` give them.
    layer : str or None
        The tapped layer of layer methods (Grad-CAM), else ``None``.
    targets : ndarray of int64, shape (N,)
        The class explained for each sample; with target weights, each
        sample's class of largest weight.
    logits : ndarray, shape (N, classes)
    layout : str
        ``"NCHW"`` or ``"NHWC"``: the layout of ``inputs`` and input-space maps.
    objective : str
        The score differentiated: ``"logit"``, ``"log_softmax"`` or ``"softmax"``.
    inputs : ndarray, or tuple of ndarray
        The explained inputs, as NumPy, in ``layout`` (a tuple for several inputs).
    layer_attribution : ndarray or None
        Grad-CAM at the layer's own resolution, (N, h, w).
    parts : mapping of str to ndarray
        Maps of the parts of a composite method (guided Grad-CAM keeps its
        ``"gradcam"`` and ``"guided_backprop"`` maps here).
    stats : mapping
        Backend facts about the pass (rectifiers intercepted, backward passes);
        multi-pass methods add theirs (integrated gradients: ``"completeness_error"``).
    target_weights : ndarray, shape (N, classes), or None
        The class weights explained when ``target`` was weights (see
        :func:`attrib.explain`), else ``None``.
        Backend facts about the pass (rectifiers intercepted, backward passes)
        and the method's (forward passes of Score-CAM / Ablation-CAM, whether
        the layer was chosen by default).
    layers : tuple of str
        Every tapped layer: ``(layer,)``, or several for a CAM method given a
        list (then ``layer`` joins them with ``"+"``).

    All arrays are read-only copies.
    """

    attribution: np.ndarray
    method: str
    backend: str
    layer: str | None
    targets: np.ndarray
    logits: np.ndarray
    layout: str
    objective: str = "logit"
    inputs: np.ndarray | None = None
    layer_attribution: np.ndarray | None = None
    parts: Mapping[str, np.ndarray] = field(default_factory=dict)
    stats: Mapping[str, Any] = field(default_factory=dict)
    target_weights: np.ndarray | None = None
    layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("attribution", "targets", "logits", "inputs", "layer_attribution",
                     "target_weights"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        parts = {k: _frozen(v) for k, v in self.parts.items()}
        object.__setattr__(self, "parts", MappingProxyType(parts))
        object.__setattr__(self, "stats", MappingProxyType(dict(self.stats)))
        object.__setattr__(self, "layers", tuple(self.layers))

    @property
    def channel_axis(self) -> int:
        """Axis of the channels in input-space arrays (1 for NCHW, -1 for NHWC)."""
        return 1 if self.layout == "NCHW" else -1

    def plot(self, image: Any = None, ax: Any = None, **kwargs: Any) -> Any:
        """Draw the map and return the matplotlib figure.

        A heat-map over ``image`` for Grad-CAM-shaped maps, grayscale (or
        diverging, for gradient × input) for input-space maps; keywords as
        :func:`attrib.plotting.plot_explanation` (``index``, ``style``, ...).
        Signals (N, C, L) and volumes (N, C, D, H, W) get
        :func:`attrib.plotting.signal_figure` / :func:`~attrib.plotting.volume_figure`
        of sample ``index`` (default 0).
        """
        from .plotting import plot_explanation  # matplotlib only when plotting

        return plot_explanation(self, image, ax, **kwargs)

    def save(self, path: Any, image: Any = None, **kwargs: Any) -> Any:
        """Write :meth:`plot`'s figure as a PNG at ``path``; return the path written."""
        from .plotting import plot_explanation, save_figure

        return save_figure(plot_explanation(self, image, **kwargs), path)

    def _repr_png_(self) -> bytes:
        """PNG bytes for Jupyter: :meth:`plot` (each sample, or the first of more than 8), titled.

        The picture is the explained input min-max scaled (an Explanation
        does not know the normalisation); a figure with the photograph
        itself: ``explanation.plot(image)``.
        """
        import io

        from .plotting import _pyplot, plot_explanation

        figure = plot_explanation(self, None, index=None if len(self) <= 8 else 0)
        layer = f" at {self.layer}" if self.layer else ""
        shown_of = f", sample 1 of {len(self)}" if len(self) > 8 else ""
        figure.suptitle(f"{self.method}{layer} ({self.backend}{shown_of})", fontsize=9)
        buffer = io.BytesIO()
        try:
            figure.savefig(buffer, format="png", dpi=80)
        finally:
            _pyplot().close(figure)
        return buffer.getvalue()

    def __len__(self) -> int:
        first = self.attribution[0] if isinstance(self.attribution, tuple) else self.attribution
        return int(first.shape[0])

    def __repr__(self) -> str:
        layer = f", layer={self.layer!r}" if self.layer else ""
        maps = self.attribution if isinstance(self.attribution, tuple) else (self.attribution,)
        shown = ", ".join(f"<{m.dtype} {tuple(m.shape)}>" for m in maps)
        return (
            f"Explanation(method={self.method!r}, backend={self.backend!r}{layer}, "
            f"attribution={shown if len(maps) == 1 else f'({shown})'}, "
            f"targets={self.targets.tolist()}, layout={self.layout!r})"
        )

"""``Sequential``: named layers applied in order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ._layers import Concat, ConvNd, Dense, Layer

__all__ = ["Sequential"]


class Sequential:
    """Layers applied in order, each with a name.

    Parameters
    ----------
    layers : list of layers, list of (name, layer) pairs, or a mapping name -> layer
        Unnamed layers are called ``"0"``, ``"1"``, ... by position (as torch does).

    >>> import numpy as np
    >>> from attrib_numpy import Dense, ReLU, Sequential
    >>> net = Sequential([("fc", Dense(np.eye(2), np.zeros(2))), ("relu", ReLU())])
    >>> net(np.array([[1.0, -1.0]]))
    array([[1., 0.]])
    """

    def __init__(self, layers: Iterable[Any] | Mapping[str, Layer]) -> None:
        items = list(layers.items()) if isinstance(layers, Mapping) else list(layers)
        named: list[tuple[str, Layer]] = []
        for index, item in enumerate(items):
            name, layer = item if isinstance(item, tuple) else (str(index), item)
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: {name!r} is not a layer: {layer!r}")
            named.append((str(name), layer))
        names = [name for name, _ in named]
        if len(set(names)) != len(names):
            raise ValueError(f"Sequential: layer names must be unique, got {names}")
        if not named:
            raise ValueError("Sequential: needs at least one layer")
        self.layers: tuple[tuple[str, Layer], ...] = tuple(named)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.layers]

    @property
    def input_sizes(self) -> tuple[int, ...] | None:
        """The channels (or features) of each input when the network takes several (a first
        :class:`Concat` layer), else ``None``."""
        first = self.layers[0][1]
        return first.sizes if isinstance(first, Concat) else None

    def input_spec(self) -> tuple[int, int | None]:
        """(ndim, channels or features) the first shape-aware layer expects."""
        for _, layer in self.layers:
            if isinstance(layer, ConvNd):
                return layer.dims + 2, layer.in_channels
            if isinstance(layer, Dense):
                return 2, layer.in_features
        return 2, None

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        """The output of one input, or of several (one array each) for a first :class:`Concat`."""
        x: Any = inputs if self.input_sizes is not None else inputs[0]
        for _, layer in self.layers:
            x, _ = layer.forward(x)
        return x

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={layer!r}" for name, layer in self.layers)
        return f"Sequential({inner})"

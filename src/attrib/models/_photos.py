"""scikit-image's photographs that the demo, the CLI and the checks explain (offline)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import AttribError, check_choice

__all__ = ["PHOTOS", "photographs"]

#: names of the photographs, in the order figures show them
PHOTOS: tuple[str, ...] = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle", "retina")


def _load(name: str) -> np.ndarray:
    import skimage.data

    if name == "motorcycle":  # the left view of the stereo pair
        return np.asarray(skimage.data.stereo_motorcycle()[0])
    return np.asarray(getattr(skimage.data, name)())


def photographs(names: Any = None) -> dict[str, np.ndarray]:
    """RGB uint8 photographs (H, W, 3) of scikit-image by name (default: :data:`PHOTOS`).

    They ship inside scikit-image's wheel: nothing is downloaded.
    """
    try:
        import skimage.data  # noqa: F401
    except ImportError as error:
        raise AttribError("the photographs come with scikit-image: "
                          "pip install 'attrib[models]'") from error
    chosen = PHOTOS if names is None else tuple(names)
    return {name: _load(check_choice("names", name, PHOTOS)) for name in chosen}

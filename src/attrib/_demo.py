"""The bundled demo: generated scenes with known object masks, and a small CNN trained on them.

:func:`demo_data` draws 64×64 RGB scenes: a textured, noisy background with
a few distractor dots and line segments, and **one** object of a class —
circle, square, triangle or cross — of random colour, size and position. The
object's pixel mask comes with each image, so one can judge a map: a good
Grad-CAM puts its mass on the mask.

:func:`demo_model` loads the small CNN that ``scripts/train_demo_model.py``
trained on these scenes (weights shipped as ``attrib/data/demo_cnn.npz``),
in PyTorch or in Flax with identical numerics.

Everything here is NumPy; the framework is imported only by
:func:`demo_model`, when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import argument_error, check_choice

__all__ = [
    "CLASS_NAMES",
    "IMAGE_SIZE",
    "GRADCAM_LAYER",
    "DemoData",
    "demo_data",
    "demo_model",
    "demo_weights",
    "demo_weights_path",
]

#: The classes of the demo scenes, in label order.
CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
#: Height and width of the demo images (and the demo model's input).
IMAGE_SIZE: int = 64
#: The demo CNN's last convolution: the layer Grad-CAM taps.
GRADCAM_LAYER: str = "conv4"

_WEIGHTS_FILE = "demo_cnn.npz"
#: ``weights=`` of :func:`demo_model`: the shipped weight files
_WEIGHTS_FILES = {"trained": _WEIGHTS_FILE, "permuted": "demo_cnn_permuted.npz"}


@dataclass(frozen=True)
class DemoData:
    """A batch of demo scenes.

    Attributes
    ----------
    images : ndarray of float32, shape (N, H, W, 3)
        RGB in [0, 1], channels last (HWC). Torch models want
        ``images.transpose(0, 3, 1, 2)``.
    labels : ndarray of int64, shape (N,)
        Index into ``class_names``.
    masks : ndarray of bool, shape (N, H, W)
        The object's pixels.
    class_names : tuple of str
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __iter__(self) -> Any:
        """Unpack as ``images, labels, masks, class_names = demo_data()``."""
        return iter((self.images, self.labels, self.masks, self.class_names))


def demo_data(n: int = 16, seed: int = 0, *, size: int = IMAGE_SIZE) -> DemoData:
    """Generate ``n`` demo scenes, deterministically from ``seed``.

    Parameters
    ----------
    n : int
        Number of scenes. Labels cycle through the classes in a shuffled
        order, so any ``n`` ≥ 4 holds every class.
    seed : int
        Seed of the NumPy generator: the same ``(n, seed, size)`` gives the
        same arrays on every machine.
    size : int
        Height and width in pixels (at least 32). The demo model was trained
        on ``64``.

    Returns
    -------
    DemoData
        ``images`` (n, size, size, 3) float32 in [0, 1], ``labels`` (n,)
        int64, ``masks`` (n, size, size) bool, ``class_names``.

    Examples
    --------
    >>> images, labels, masks, names = demo_data(4, seed=1)
    >>> images.shape, labels.shape, masks.shape, names[int(labels[0])] in names
    ((4, 64, 64, 3), (4,), (4, 64, 64), True)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise argument_error("n", "a positive int", n)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise argument_error("seed", "a non-negative int", seed)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32:
        raise argument_error("size", "an int of at least 32", size)
    n, size = int(n), int(size)
    rng = np.random.default_rng(int(seed))
    k = len(CLASS_NAMES)
    labels = np.concatenate([rng.permutation(k) for _ in range(-(-n // k))])[:n].astype(np.int64)
    images = np.empty((n, size, size, 3), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=bool)
    for i in range(n):
        images[i], masks[i] = _scene(rng, int(labels[i]), size)
    return DemoData(images=images, labels=labels, masks=masks)


# -- scene drawing ---------------------------------------------------------------------------


def _scene(rng: np.random.Generator, label: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    image = _background(rng, size)
    for _ in range(int(rng.integers(3, 7))):
        _paint(image, _distractor(rng, yy, xx, size), _colour(rng))
    scale = size / 64.0
    radius = rng.uniform(8.0, 13.0) * scale  # half the object's extent
    margin = radius + 2.0 * scale
    cy, cx = rng.uniform(margin, size - margin, size=2)
    mask = _SHAPES[label](yy - cy, xx - cx, radius, rng)
    colour = _colour(rng)
    # keep the object visible: its colour differs from the background under it
    under = image[mask].mean(axis=0) if mask.any() else np.full(3, 0.5)
    if np.abs(colour - under).max() < 0.35:
        colour = np.where(under > 0.5, colour * 0.35, 0.65 + 0.35 * colour)
    _paint(image, mask, colour)
    image += rng.normal(0.0, 0.03, size=image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32), mask


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour field plus a random stripe texture."""
    grid = rng.uniform(0.15, 0.85, size=(5, 5, 3))
    field = _upsample(grid, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(0.0, np.pi)
    period = rng.uniform(5.0, 12.0)
    stripes = np.sin(2.0 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    texture = rng.uniform(0.03, 0.10) * stripes[..., None] * rng.uniform(-1.0, 1.0, size=3)
    return np.asarray(field + texture)


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a (g, g, 3) grid to (size, size, 3)."""
    g = grid.shape[0]
    pos = np.linspace(0.0, g - 1.0, size)
    lo = np.minimum(np.floor(pos).astype(int), g - 2)
    t = pos - lo
    rows = grid[lo] * (1 - t)[:, None, None] + grid[lo + 1] * t[:, None, None]
    return rows[:, lo] * (1 - t)[None, :, None] + rows[:, lo + 1] * t[None, :, None]


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 1.0, size=3)


def _paint(image: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    image[mask] = colour


def _distractor(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: int) -> np.ndarray:
    """A small dot or a thin line segment: clutter that is none of the classes."""
    cy, cx = rng.uniform(0.0, size, size=2)
    if rng.uniform() < 0.5:
        r = rng.uniform(1.0, 2.5) * size / 64.0
        return np.asarray((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)
    angle = rng.uniform(0.0, np.pi)
    length = rng.uniform(6.0, 14.0) * size / 64.0
    dy, dx = yy - cy, xx - cx
    along = dx * np.cos(angle) + dy * np.sin(angle)
    across = -dx * np.sin(angle) + dy * np.cos(angle)
    return np.asarray((np.abs(along) <= length / 2) & (np.abs(across) <= 0.75))


def _circle(dy: np.ndarray, dx: np.ndarray, r: float, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(dy * dy + dx * dx <= r * r)


def _square(dy: np.ndarray, dx: np.ndarray, r: float, rng: np.random.Generator) -> np.ndarray:
    half = 0.85 * r
    return np.asarray((np.abs(dy) <= half) & (np.abs(dx) <= half))


def _triangle(dy: np.ndarray, dx: np.ndarray, r: float, rng: np.random.Generator) -> np.ndarray:
    """An upright or upside-down equilateral-ish triangle."""
    if rng.uniform() < 0.5:
        dy = -dy
    top, bottom = -r, 0.7 * r
    inside_y = (dy >= top) & (dy <= bottom)
    half_width = (dy - top) / (bottom - top) * r
    return np.asarray(inside_y & (np.abs(dx) <= half_width))


def _cross(dy: np.ndarray, dx: np.ndarray, r: float, rng: np.random.Generator) -> np.ndarray:
    arm = 0.3 * r
    return np.asarray(
        ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    )


_SHAPES = (_circle, _square, _triangle, _cross)


# -- the model -------------------------------------------------------------------------------


def demo_weights_path(weights: str = "trained") -> Any:
    """Where the demo CNN's weights ship: ``attrib/data/demo_cnn.npz`` (a Traversable).

    ``weights="permuted"``: ``demo_cnn_permuted.npz``, the same network trained
    on permuted labels (``scripts/train_demo_model.py --permute-labels``).
    """
    from importlib import resources  # on first use: not part of `import attrib`

    weights = check_choice("weights", weights, sorted(_WEIGHTS_FILES))
    return resources.files("attrib").joinpath("data", _WEIGHTS_FILES[weights])


def demo_weights(weights: str = "trained") -> dict[str, np.ndarray]:
    """The demo CNN's weights as NumPy arrays, in torch naming and layout.

    Keys ``conv1.weight`` (O, I, kh, kw), ``conv1.bias`` (O,), ...,
    ``fc.weight`` (classes, features), ``fc.bias`` (classes,).
    ``weights``: ``"trained"`` or ``"permuted"`` (see :func:`demo_model`).
    """
    path = demo_weights_path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"the demo model's weights are missing from the installed package ({path}); "
            "reinstall attrib or run scripts/train_demo_model.py"
        )
    with path.open("rb") as handle, np.load(handle) as archive:
        return {key: np.array(archive[key]) for key in archive.files}


def demo_model(backend: str = "torch", weights: str = "trained") -> Any:
    """The bundled demo CNN, trained on :func:`demo_data` scenes.

    Input: 64×64 RGB in [0, 1] (no normalisation). Four 3×3 convolutions
    ``conv1`` … ``conv4`` with ReLU (max-pooling after the first two), a
    global average pool and a linear layer ``fc`` to the 4 classes of
    :data:`CLASS_NAMES`. Grad-CAM taps ``"conv4"`` (:data:`GRADCAM_LAYER`).

    Parameters
    ----------
    backend : {"torch", "jax"}
        ``"torch"``: an ``nn.Module`` in eval mode, inputs NCHW.
        ``"jax"``: a Flax linen ``(module, variables)`` pair, inputs NHWC.
        Both compute the same logits (float32 rounding apart).
    weights : {"trained", "permuted"}
        ``"trained"``: the model trained on the scenes' labels.
        ``"permuted"``: the same network trained the same way on randomly
        permuted labels (it learns nothing about the shapes: held-out
        accuracy 0.22, chance 0.25) — the model of the data randomisation
        check, :func:`attrib.evaluate.data_randomization`.

    Examples
    --------
    >>> import attrib
    >>> data = attrib.demo_data(4)
    >>> model = attrib.demo_model("torch")
    >>> cam = attrib.explain(model, data.images.transpose(0, 3, 1, 2), method="gradcam",
    ...                      layer="conv4")
    >>> cam.attribution.shape
    (4, 64, 64)
    """
    if backend == "torch":
        from attrib_torch._demo import load_demo_model as load_torch

        return load_torch(demo_weights(weights))
    if backend == "jax":
        from attrib_jax._demo import load_demo_model as load_jax

        return load_jax(demo_weights(weights))
    raise argument_error("backend", "'torch' or 'jax'", backend)

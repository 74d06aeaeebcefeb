"""A folder of demo scenes as PNG files in sub-folders named after their classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import attrib

NAMES = ("circle", "square", "triangle", "cross")


def make_folder(root: Path, n: int = 10) -> tuple[Path, np.ndarray, np.ndarray]:
    """Demo scenes as PNGs in sub-folders named after their class; (folder, pictures, labels)."""
    scenes = attrib.demo_data(n, seed=31)
    pictures = np.round(scenes.images * 255).astype(np.uint8)
    paths = []
    for i, (picture, label) in enumerate(zip(pictures, scenes.labels)):
        path = root / "scenes" / NAMES[label] / f"scene{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(path)
        paths.append(path)
    (root / "scenes" / "notes.txt").write_text("not an image")
    order = np.argsort([p.relative_to(root / "scenes").as_posix() for p in paths], kind="stable")
    return root / "scenes", pictures[order], scenes.labels[order]

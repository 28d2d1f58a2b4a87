"""Example image folders generated on this machine (no download): coloured shapes in class sub-folders.

``python -m nnsearch +study=shapes_cnn command=make_example_data`` writes the shipped study's
folder (``data.path``); the tests and the memory benchmark write folders of any size. Each image
is one filled circle, square or triangle (the class) of random colour, size and place on a random
background, with pixel noise: a task a small CNN learns well but not trivially, and on which flips,
small rotations and padded crops are label-preserving augmentations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPES = ("circle", "square", "triangle")


def draw_shape(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One uint8 RGB image (size, size, 3) of ``shape``."""
    from PIL import Image, ImageDraw

    background, colour = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    while np.abs(colour.astype(int) - background).sum() < 150:  # keep the shape visible
        colour = rng.integers(0, 256, 3)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in background))
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(0.25, 0.45) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    fill = tuple(int(v) for v in colour)
    if shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    elif shape == "square":
        draw.rectangle((cx - radius * 0.85, cy - radius * 0.85, cx + radius * 0.85, cy + radius * 0.85), fill=fill)
    else:
        angle = rng.uniform(0, 2 * np.pi)
        points = [(cx + radius * np.cos(angle + k * 2 * np.pi / 3), cy + radius * np.sin(angle + k * 2 * np.pi / 3)) for k in range(3)]
        draw.polygon(points, fill=fill)
    noisy = np.asarray(image, dtype=np.int16) + rng.normal(0, 12, (size, size, 3)).astype(np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def write_shapes(root: str | Path, *, per_class: int, size: int = 24, seed: int = 0) -> Path:
    """``root/<shape>/<n>.png`` for each of :data:`SHAPES`; files already there are kept (the folder is written once)."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        folder = root / shape
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            path = folder / f"{n:06d}.png"
            image = draw_shape(shape, size, rng)  # drawn even when kept, so the n-th image is the same however far a run got
            if not path.exists():
                Image.fromarray(image).save(path)
    return root

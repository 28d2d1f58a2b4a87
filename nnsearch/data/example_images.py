"""Example image folders made on this machine (no download), in class sub-folders.

- :func:`write_digits`: scikit-learn's bundled 8x8 digits (1797) as PNG files, the shipped
  ``digits_folder_cnn`` study's folder (``python -m nnsearch +study=digits_folder_cnn command=make_example_data``).
- :func:`write_shapes`: generated images of any number and size, for tests and the memory
  benchmark: one filled circle, square or triangle (the class) of random colour, size and place on a
  random background, with pixel noise.
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


def write_digits(root: str | Path) -> Path:
    """scikit-learn's 1797 digits as ``root/<digit>/<n>.png`` (8x8 greyscale); files already there are kept."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = Path(root)
    digits = load_digits()
    for n, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / f"{n:04d}.png").exists():
            Image.fromarray((image * 255 / 16).astype(np.uint8), "L").save(folder / f"{n:04d}.png")
    return root

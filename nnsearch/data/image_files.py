"""Reading an image folder: torchvision ImageFolder's layout rules, image headers, decoding with Pillow.

The pieces :mod:`nnsearch.data.images` builds ``data=image_folder`` from: :func:`scan` (classes and
files, bad layouts refused in one line), :func:`read_headers` (size and channels, without decoding),
:class:`ImageFiles` (the map-style Dataset, from the uint8 cache or the disk) and :func:`decode_all`
(one streaming pass: every file checked, per-image channel sums, the cache when it fits).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnsearch.errors import NNSearchError

log = logging.getLogger("nnsearch")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's IMG_EXTENSIONS
MODES = {1: "L", 3: "RGB", 4: "RGBA"}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


@dataclass(frozen=True)
class Layout:
    """The files of an image folder: relative paths in ImageFolder's order and their class indices."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[str, ...]
    labels: np.ndarray
    skipped: int = 0  # files without an image extension


def scan(path: Any) -> Layout:
    """The classes and image files under ``path`` (ImageFolder's rules); bad layouts end in one line."""
    if path in (None, "", "???"):
        raise NNSearchError("data.path is not set: name the folder of class sub-folders, e.g. data.path=images/ (images/cat/1.png, images/dog/2.png, ...).")
    root = Path(str(path)).expanduser()
    if not root.exists():
        raise NNSearchError(f"data.path {root} does not exist (a shipped image-folder study writes its example folder with command=make_example_data).")
    if not root.is_dir():
        raise NNSearchError(f"data.path {root} is a file; data=image_folder takes a folder of class sub-folders ({root}/CLASS/IMAGE.png).")
    entries = [e for e in os.scandir(root) if not e.name.startswith(".")]
    if not entries:
        raise NNSearchError(f"data.path {root} is empty; it should hold one sub-folder of images per class ({root}/CLASS/IMAGE.png).")
    classes = tuple(sorted(e.name for e in entries if e.is_dir()))
    if not classes:
        raise NNSearchError(f"data.path {root} has no class sub-folders, only {len(entries)} file(s) such as {entries[0].name}: "
                            f"put each class's images in a sub-folder named after it ({root}/CLASS/IMAGE.png).")
    files: list[str] = []
    labels: list[int] = []
    skipped = 0
    for label, name in enumerate(classes):
        found = 0
        for folder, dirs, names in sorted(os.walk(root / name, followlinks=True)):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for fname in sorted(n for n in names if not n.startswith(".")):
                if fname.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.relpath(os.path.join(folder, fname), root))
                    labels.append(label)
                    found += 1
                else:
                    skipped += 1
        if not found:
            raise NNSearchError(f"class folder {root / name} has no image files ({', '.join(IMAGE_EXTENSIONS)}); remove it or add its images.")
    if skipped:
        log.info("data.path %s: %d file(s) without an image extension skipped", root, skipped)
    return Layout(root, classes, tuple(files), np.asarray(labels, dtype=np.int64), skipped)


def _size_setting(image_size: Any) -> tuple[int, int] | None:
    """``data.image_size`` as (height, width): an int for squares or [height, width]."""
    if image_size is None:
        return None
    values = [image_size] if isinstance(image_size, int) else list(image_size) if isinstance(image_size, (list, tuple)) else None
    if not values or len(values) > 2 or not all(isinstance(v, int) and v > 0 for v in values):
        raise NNSearchError(f"data.image_size must be a positive int or [height, width], got {image_size!r}.")
    return (values[0], values[-1])


def read_headers(layout: Layout, image_size: Any, channels: Any) -> tuple[tuple[int, int], int]:
    """The (height, width) and channels every image is read at: from the settings, else from the files' headers.

    Only headers are read (Pillow's ``open`` is lazy). Mixed sizes need ``data.image_size``;
    channels default to 1 when every file is greyscale, else 3 (RGB).
    """
    from PIL import Image, UnidentifiedImageError

    size = _size_setting(image_size)
    if channels is not None and channels not in MODES:
        raise NNSearchError(f"data.channels must be one of {', '.join(map(str, MODES))} (or null to infer), got {channels!r}.")
    seen: dict[tuple[int, int], str] = {}
    grey = True
    for rel in layout.files:
        try:
            with Image.open(layout.root / rel) as image:
                width, height = image.size
                grey = grey and image.mode in GREY_MODES
        except (UnidentifiedImageError, OSError) as err:
            raise NNSearchError(f"{layout.root / rel} is not an image Pillow can read ({type(err).__name__}); remove it or replace it.") from None
        if size is None and (height, width) not in seen:
            seen[(height, width)] = rel
            if len(seen) > 1:
                (h0, w0), first = next(iter(seen.items()))
                raise NNSearchError(f"images of data.path {layout.root} differ in size ({first} is {h0}x{w0}, {rel} is {height}x{width}): "
                                    f"set data.image_size=N (or [height,width]) to resize them all.")
    return size or next(iter(seen)), int(channels) if channels is not None else (1 if grey else 3)


def read_image(path: Path, size: tuple[int, int], mode: str) -> np.ndarray:
    """One image as uint8 (height, width, channels), converted to ``mode`` and resized to ``size`` when it differs."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert(mode)
        if image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        array = np.array(image, dtype=np.uint8)  # a writable copy, as torch.from_numpy wants
    return array.reshape(size[0], size[1], -1)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, C) -> float (C, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float().div_(255.0)


class ImageFiles(torch.utils.data.Dataset):
    """Items ``(float image (C, H, W) in [0, 1], class index)``: from the in-memory uint8 cache, else read from disk."""

    def __init__(self, root: Path, files: tuple[str, ...], labels: np.ndarray, size: tuple[int, int], channels: int,
                 pixels: np.ndarray | None = None) -> None:
        self.root, self.files, self.labels, self.size, self.mode, self.pixels = root, files, labels, size, MODES[channels], pixels

    def __len__(self) -> int:
        return len(self.files)

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        pixels = self.pixels[index] if self.pixels is not None else read_image(self.root / self.files[index], self.size, self.mode)
        return to_tensor(pixels), int(self.labels[index])


class _Decoded(torch.utils.data.Dataset):
    """The load pass's items: (uint8 pixels, per-channel sums and sums of squares in [0, 1] units), or an error line."""

    def __init__(self, files: ImageFiles) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[np.ndarray | None, np.ndarray | None, str]:
        try:
            pixels = read_image(self.files.root / self.files.files[index], self.files.size, self.files.mode)
        except (OSError, ValueError) as err:
            return None, None, f"{self.files.root / self.files.files[index]} cannot be decoded ({type(err).__name__}: {err}); remove it or replace it."
        values = pixels.reshape(-1, pixels.shape[-1]).astype(np.float64) / 255.0
        return pixels, np.stack([values.sum(0), np.square(values).sum(0)]), ""


def decode_all(files: ImageFiles, *, cache: bool, workers: int) -> tuple[np.ndarray, np.ndarray | None]:
    """One streaming pass over every file: per-image channel sums (n, 2, C), and the uint8 pixels when ``cache``."""
    from torch.utils.data import DataLoader

    n, (h, w), c = len(files), files.size, len(files.mode)
    sums = np.zeros((n, 2, c))
    pixels = np.empty((n, h, w, c), dtype=np.uint8) if cache else None
    loader = DataLoader(_Decoded(files), batch_size=256, num_workers=workers, collate_fn=list)
    start = 0
    for batch in loader:
        for offset, (image, stats, error) in enumerate(batch):
            if error:
                raise NNSearchError(error)
            sums[start + offset] = stats
            if pixels is not None:
                pixels[start + offset] = image
        start += len(batch)
    return sums, pixels

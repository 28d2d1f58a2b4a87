"""``data=image_folder``: class sub-folders of image files, read with Pillow, trained through DataLoaders.

The layout is torchvision's ``ImageFolder``: ``DIR/CLASS/.../IMAGE.png``, the classes are the
sub-folder names in sorted order, files are found recursively in each class folder in sorted
order, and only files with an image extension count (``image_files.IMAGE_EXTENSIONS``, any case). Hidden
files and folders (``.DS_Store``, ``.ipynb_checkpoints``) are skipped, which ``ImageFolder`` does not do.

Why not ``torchvision.datasets.ImageFolder`` itself: torchvision's wheels are built against one
exact torch build, and where the two differ (a CPU torch beside a CUDA torchvision, as on the
machines nnsearch is tested on) importing torchvision fails ("operator torchvision::nms does not
exist"). Reading a folder is a few lines of Pillow, so nnsearch does not depend on torchvision;
a torchvision v2 transform still works as a ``data.augment`` entry wherever torchvision imports.

What happens, and where:

- At load (once per study, before any trial): every file's header is read, which fixes the
  classes, the image size and channels and stops on a file that is not an image or on mixed
  sizes without ``data.image_size``; then one streaming pass decodes every file once to check it
  fully and to keep per-image channel sums, from which any fold's normalisation statistics are
  the sums over the fold's training rows alone. When the decoded set (uint8) fits in
  ``data.cache_mb`` (default 256 MB, per training process) it is kept from that pass; above it,
  items are read from disk per item in the DataLoader workers (``data.num_workers``), and memory
  stays flat as the folder grows. The line: an epoch over 3000 cached 24x24 PNGs took 0.45 ms per
  image, read from disk 3.8 ms (no workers, a loaded 2-core machine), so a set that fits is cached.
- Per fold: batches are normalised with the fold's training statistics; ``data.augment``
  (transforms by ``_target_``, applied in order) runs on the training batches only. Kornia's
  augmentations (``kornia.augmentation.RandomHorizontalFlip``...) take a batch and draw
  parameters per image; a transform of one image (C, H, W) runs per image with
  ``data.augment_per_image=true`` (a torchvision v2 transform draws once per call).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnsearch.data.dataset import Task
from nnsearch.data.image_files import ImageFiles, decode_all, read_headers, scan
from nnsearch.data.user import UserData, UserFold
from nnsearch.errors import NNSearchError

KIND = "image_folder"


def channel_stats(sums: np.ndarray, pixels_per_image: int, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over the images ``rows`` (a fold's training rows), shaped (C, 1, 1) for broadcasting."""
    total = sums[rows].sum(0)  # (2, C)
    count = pixels_per_image * len(rows)
    mean = total[0] / count
    std = np.sqrt(np.maximum(total[1] / count - mean**2, 0.0))
    std = np.where(std > 1e-6, std, 1.0)  # a constant channel is centred, not divided by zero
    shape = (-1, 1, 1)
    return torch.tensor(mean, dtype=torch.float32).reshape(shape), torch.tensor(std, dtype=torch.float32).reshape(shape)


class ImageBatches:
    """The collate function of one fold's loader: stack the items, augment (training only), normalise.

    It runs in the DataLoader's workers when there are some, so augmentation is spread over them.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, augment: list[Any] | None = None, *, per_image: bool = False) -> None:
        self.mean, self.std, self.augment, self.per_image = mean, std, augment or [], per_image

    def _augmented(self, x: torch.Tensor) -> torch.Tensor:
        for transform in self.augment:
            out = transform(x)
            x = out.reshape(x.shape) if out.ndim == x.ndim + 1 and out.shape[0] == 1 else out  # kornia returns (1, C, H, W) for one image
        return x

    def __call__(self, items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = [x for x, _ in items]
        if self.augment and self.per_image:
            images = [self._augmented(x) for x in images]
        x = torch.stack(images)
        if self.augment and not self.per_image:
            x = self._augmented(x)
        return (x - self.mean) / self.std, torch.tensor([y for _, y in items], dtype=torch.long)


class Normalized(torch.nn.Module):
    """A trained module with its training rows' normalisation in front: raw images in [0, 1] in (the final model's input)."""

    def __init__(self, module: torch.nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.module = module
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module((x - self.mean) / self.std)


@dataclass(frozen=True)
class ImageFolderData(UserData):
    """A folder of class sub-folders: the rows are file numbers, the labels the class folders (``UserData``'s folds and loaders)."""

    files: tuple[str, ...] = ()
    labels: np.ndarray | None = None  # class index of every file by row number, whichever rows a split holds
    sums: np.ndarray | None = None  # per-image channel sums (n, 2, C) of the load pass, indexed by row number
    pixels: np.ndarray | None = None  # the uint8 cache (n, H, W, C), or None: read from disk

    def describe(self) -> str:
        c, h, w = self.input_shape
        where = "cached in memory" if self.pixels is not None else "read from disk per batch"
        return f"{self.name}: {len(self.rows)} images {c}x{h}x{w} in {len(self.classes)} class folders of {self.source['path']}, {where}"

    def fingerprint(self) -> tuple[np.ndarray, np.ndarray]:
        """Row numbers with a digest of each file's path and size: a changed folder changes the study's data digest."""
        root = Path(str(self.source["path"]))
        marks = [int.from_bytes(hashlib.sha256(f"{rel}:{(root / rel).stat().st_size}".encode()).digest()[:7], "little") for rel in self.files]
        return np.stack([self.rows, np.asarray(marks, dtype=np.int64)[self.rows]], axis=1), self.y

    def dataset(self) -> ImageFiles:
        c, h, w = self.input_shape
        return ImageFiles(Path(str(self.source["path"])), self.files, self.labels, (h, w), c, self.pixels)

    def normaliser(self, train_rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the training rows' images only (validation rows never enter)."""
        _, h, w = self.input_shape
        return channel_stats(self.sums, h * w, np.asarray(train_rows))

    def augmentation(self) -> list[Any]:
        """Fresh transforms of ``data.augment`` (name -> ``_target_`` node), in order."""
        from nnsearch.config.building import instantiate_node

        nodes = self.source.get("augment") or {}
        return [instantiate_node(f"data.augment.{name}", node) for name, node in nodes.items() if node]

    def loaders(self, fold: UserFold, *, seed: int, pin_memory: bool = False) -> tuple[Any, Any]:
        """(train, validation) loaders of ``fold``: both normalised with the training rows' statistics, only training augmented."""
        from torch.utils.data import DataLoader, Subset

        mean, std = self.normaliser(fold.train_rows)
        workers = int(self.source.get("num_workers") or 0)
        common = {"batch_size": int(self.source.get("batch_size") or 64), "num_workers": workers, "pin_memory": pin_memory,
                  "persistent_workers": workers > 0}
        dataset = self.dataset()
        train_batches = ImageBatches(mean, std, self.augmentation(), per_image=bool(self.source.get("augment_per_image")))
        train = DataLoader(Subset(dataset, fold.train_rows.tolist()), shuffle=True, generator=torch.Generator().manual_seed(seed),
                           collate_fn=train_batches, **common)
        val = DataLoader(Subset(dataset, fold.val_rows.tolist()), shuffle=False, collate_fn=ImageBatches(mean, std), **common)
        return train, val

    def inference_module(self, module: torch.nn.Module, train_rows: np.ndarray) -> torch.nn.Module:
        """The final model as logged: raw images in [0, 1] in, normalised with the statistics it trained with."""
        mean, std = self.normaliser(train_rows)
        return Normalized(module, mean, std)


def load_image_folder(**settings: Any) -> ImageFolderData:
    """``data=image_folder``: scan ``data.path``, check every file, keep per-image statistics (and the cache when small)."""
    from omegaconf import OmegaConf

    source = {k: (OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v) for k, v in settings.items()}
    layout = scan(source.get("path"))
    if len(layout.classes) < 2:
        raise NNSearchError(f"data.path {layout.root} has one class folder ({layout.classes[0]}); a classifier needs at least two.")
    (h, w), channels = read_headers(layout, source.get("image_size"), source.get("channels"))
    limit_mb = float(source.get("cache_mb") if source.get("cache_mb") is not None else 256)
    cache = len(layout.files) * h * w * channels <= limit_mb * 2**20
    files = ImageFiles(layout.root, layout.files, layout.labels, (h, w), channels)
    sums, pixels = decode_all(files, cache=cache, workers=int(source.get("num_workers") or 0))
    data = ImageFolderData(name=str(source.get("name") or KIND), kind=KIND, source=source, task=Task.BINARY if len(layout.classes) == 2 else Task.MULTICLASS,
                           rows=np.arange(len(layout.files)), y=layout.labels, classes=layout.classes, input_shape=(channels, h, w),
                           files=layout.files, labels=layout.labels, sums=sums, pixels=pixels)
    _check_augment(data)
    return data


def _check_augment(data: ImageFolderData) -> None:
    """Augmentations must keep the image shape: the network is built for the validation images' shape."""
    x, _ = data.dataset()[0]
    batch = ImageBatches(torch.zeros(1, 1, 1), torch.ones(1, 1, 1), data.augmentation(), per_image=bool(data.source.get("augment_per_image")))
    try:
        out, _ = batch([(x, 0), (x, 0)])
    except Exception as err:  # noqa: BLE001 - the user's transform may raise anything; it is stated in one line
        raise NNSearchError(f"data.augment fails on a batch of two images {tuple(x.shape)}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    if tuple(out.shape[1:]) != tuple(x.shape):
        raise NNSearchError(f"data.augment changes the image shape {tuple(x.shape)} to {tuple(out.shape[1:])}: augmentations must keep the size "
                            "(e.g. kornia.augmentation.RandomCrop with size equal to data.image_size and padding).")


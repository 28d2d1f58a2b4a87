"""Data on disk: digit images as PNG files in one folder per class, read by a Dataset or a k-fold DataModule."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset


def write_digit_pngs(root: str | Path, limit: int | None = None) -> Path:
    """scikit-learn's bundled 8x8 digits as ``root/<digit>/<n>.png`` (written once)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = Path(root)
    if root.is_dir() and any(root.iterdir()):
        return root
    digits = load_digits()
    for n, (image, label) in enumerate(zip(digits.images[:limit], digits.target[:limit])):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).astype(np.uint8)).save(folder / f"{n:04d}.png")
    return root


class DigitImages(Dataset):
    """Items are (1x8x8 float tensor, class index); ``targets`` lets nnsearch stratify without reading images."""

    def __init__(self, root: str, make: bool = True) -> None:
        from PIL import Image  # noqa: F401 - fail here, not in a DataLoader worker

        root_path = write_digit_pngs(root) if make else Path(root)
        self.files = sorted(root_path.glob("*/*.png"))
        if not self.files:
            raise FileNotFoundError(f"no PNG files under {root}")
        self.targets = [int(f.parent.name) for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from PIL import Image

        pixels = np.asarray(Image.open(self.files[i]), dtype=np.float32) / 255.0
        return torch.from_numpy(pixels).unsqueeze(0), self.targets[i]


class KFoldDigits(L.LightningDataModule):
    """A k-fold DataModule: it serves fold ``fold`` of ``n_folds`` (stratified, seeded by ``split_seed``)."""

    def __init__(self, root: str, fold: int = 0, n_folds: int = 5, split_seed: int = 0, batch_size: int = 32) -> None:
        super().__init__()
        self.root, self.fold, self.n_folds, self.split_seed, self.batch_size = root, fold, n_folds, split_seed, batch_size

    def prepare_data(self) -> None:
        write_digit_pngs(self.root)

    def setup(self, stage: str | None = None) -> None:
        from sklearn.model_selection import StratifiedKFold

        self.data = DigitImages(self.root, make=False)
        splits = StratifiedKFold(self.n_folds, shuffle=True, random_state=self.split_seed).split(np.zeros(len(self.data)), self.data.targets)
        train, val = list(splits)[self.fold]
        self.train_set, self.val_set = Subset(self.data, train.tolist()), Subset(self.data, val.tolist())

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=256)

"""Real images that exist offline: scikit-learn's bundled handwritten digits (`--data bundled`).

1,797 8x8 grey-level images (UCI's optical recognition of handwritten digits, 0-16 per pixel),
shipped inside the scikit-learn package, so time-to-accuracy runs need no download. One fixed,
stratified 80/20 split (1,437 train, 360 held out) is the same on every machine and rank. Images
are scaled to [0, 1] and resized (bilinear) to the workload's input.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import TensorDataset

SPLITS = ("train", "heldout")
HELDOUT_SHARE = 0.2
SPLIT_SEED = 0
"""Fixed: the held-out set is part of the experiment, not of the run's seed."""
MAX_PIXEL = 16.0


@functools.cache
def _load_and_split() -> tuple[np.ndarray, np.ndarray, dict[str, list[int]]]:
    """The package's file, read once per process, and the fixed split's indices."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    pixels, labels = load_digits(return_X_y=True)
    train, heldout = train_test_split(range(len(labels)), test_size=HELDOUT_SHARE, stratify=labels,
                                      random_state=SPLIT_SEED)
    return pixels, labels, {"train": train, "heldout": heldout}


def digits_images(split: str, size: int, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [n, channels, size, size] in [0, 1], labels [n]) of one split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    pixels, labels, indices = _load_and_split()
    chosen = indices[split]
    images = torch.as_tensor(pixels[chosen], dtype=torch.float32).reshape(-1, 1, 8, 8) / MAX_PIXEL
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    return images.expand(-1, channels, -1, -1).contiguous(), torch.as_tensor(labels[chosen], dtype=torch.long)


def digits_classification(split: str, size: int, channels: int = 1) -> TensorDataset:
    """Standardised images (the train split's mean and spread) with their labels."""
    images, labels = digits_images(split, size, channels)
    train_images, _ = digits_images("train", size, channels) if split != "train" else (images, labels)
    mean, std = train_images.mean(), train_images.std()
    return TensorDataset((images - mean) / std, labels)


def digits_reconstruction(split: str, size: int) -> TensorDataset:
    """Images in [0, 1] as both input and target (autoencoders)."""
    images, _ = digits_images(split, size)
    return TensorDataset(images, images)

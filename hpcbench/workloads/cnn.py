"""Image classification CNN (hands-on 2): torchvision ResNets or the course's small conv net."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from hpcbench.errors import ConfigError, check_at_least, check_choice
from hpcbench.workloads.base import Batch, Quality, Workload, correct_predictions, register
from hpcbench.workloads.digits import digits_classification

MODELS = ("resnet18", "resnet50", "convnet")
MIN_IMAGE_SIZE = {"resnet18": 32, "resnet50": 32, "convnet": 8}
"""ResNets halve the image five times (stride-2 stem, max-pool, three stages); the conv net twice."""
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@dataclass(kw_only=True)
class CnnOptions:
    model: str = "resnet18"
    """Architecture: torchvision resnet18 / resnet50, or the course's small conv net."""
    image_size: int = 32
    """Square input size in pixels: 32 is CIFAR-shaped, 224 ImageNet-shaped."""
    num_classes: int = 10
    """Classifier outputs."""

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODELS)
        check_at_least("num-classes", self.num_classes, 2)
        minimum = MIN_IMAGE_SIZE[self.model]
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < minimum:
            raise ConfigError("image-size", f"{self.image_size!r} is too small for {self.model} (minimum {minimum})")


class ConvNet(nn.Module):
    """The course's CNN: two conv/ReLU/max-pool blocks, then two fully connected layers."""

    def __init__(self, image_size: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(64 * (image_size // 4) ** 2, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


DIGITS_TARGET = Quality(metric="heldout_accuracy", higher_is_better=True, low=0.0, high=1.0, target=0.95,
                        why="digits (8x8, resized, 3 channels): the course's conv net passes 95 % within ~5 epochs")
CIFAR_TARGETS = {"convnet": 0.70, "resnet18": 0.85, "resnet50": 0.85}
"""CIFAR-10 test accuracy without augmentation: ~70 % for a two-layer conv net, ~85 % for ResNets."""


def cifar10(data_dir: str, image_size: int, train: bool = True) -> Dataset:
    """torchvision's CIFAR-10 from `data_dir/cifar-10-batches-py`; never downloads.

    torchvision checks the official files' MD5 sums; a subset or a site's re-pack would fail
    that check, so only the files' presence is required.
    """
    from torchvision import datasets, transforms

    class LocalCIFAR10(datasets.CIFAR10):
        train_list = [[name, None] for name, _ in datasets.CIFAR10.train_list]  # None: presence check only
        test_list = [[name, None] for name, _ in datasets.CIFAR10.test_list]
        meta = {**datasets.CIFAR10.meta, "md5": None}

    steps = [transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)]
    if image_size != 32:
        steps.insert(0, transforms.Resize(image_size))
    return LocalCIFAR10(data_dir, train=train, download=False, transform=transforms.Compose(steps))


@register
class Cnn(Workload):
    name = "cnn"
    description = "image classification CNN: ResNet-18/50 or the course's small conv net (hands-on 2)"
    sample_unit = "3-channel square image"
    default_batch_size = 32
    real_data = "CIFAR-10 from --data-dir (torchvision layout: cifar-10-batches-py/)"
    Options = CnnOptions
    convolutional = True
    tta_data = "bundled"

    def check_run(self, options: CnnOptions, batch_size: int, data: str, data_dir: str | None) -> None:
        if data in ("bundled", "real", "files") and options.num_classes != 10:
            raise ConfigError("num-classes", f"the {data} data has 10 classes, got {options.num_classes}")

    def build_model(self, options: CnnOptions) -> nn.Module:
        if options.model == "convnet":
            return ConvNet(options.image_size, options.num_classes)
        from torchvision import models

        return getattr(models, options.model)(weights=None, num_classes=options.num_classes)

    def synthetic_batch(self, options: CnnOptions, batch_size: int, generator: torch.Generator) -> Batch:
        images = torch.randn(batch_size, 3, options.image_size, options.image_size, generator=generator)
        labels = torch.randint(0, options.num_classes, (batch_size,), generator=generator)
        return images, labels

    def real_dataset(self, options: CnnOptions, data_dir: str) -> Dataset:
        return cifar10(data_dir, options.image_size)

    def real_heldout_dataset(self, options: CnnOptions, data_dir: str) -> Dataset:
        return cifar10(data_dir, options.image_size, train=False)

    def file_transform(self, options: CnnOptions) -> Callable[[torch.Tensor], torch.Tensor]:
        """ImageNet training's augmentation (random resized crop, horizontal flip), then normalisation."""
        from torchvision.transforms import v2

        return v2.Compose([v2.RandomResizedCrop(options.image_size, scale=(0.25, 1.0), antialias=True),
                           v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                           v2.Normalize(CIFAR_MEAN, CIFAR_STD)])

    def bundled_dataset(self, options: CnnOptions, split: str) -> Dataset:
        return digits_classification(split, size=options.image_size, channels=3)

    def quality(self, options: CnnOptions, data: str) -> Quality | None:
        if data == "bundled":
            return DIGITS_TARGET
        if data == "real":
            return Quality(metric="heldout_accuracy", higher_is_better=True, low=0.0, high=1.0,
                           target=CIFAR_TARGETS[options.model], why="CIFAR-10 test set, no augmentation")
        return None

    def score(self, output: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        return correct_predictions(output, targets)

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, targets)

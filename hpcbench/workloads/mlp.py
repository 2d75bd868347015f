"""The course's fully connected network (hands-on 1): flattened 28x28 images, 10 classes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from hpcbench.errors import check_at_least
from hpcbench.workloads.base import Batch, ModelSplit, Quality, Workload, correct_predictions, register
from hpcbench.workloads.digits import digits_classification

IMAGE_PIXELS = 28 * 28
NUM_CLASSES = 10
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@dataclass(kw_only=True)
class MlpOptions:
    hidden_size: int = 1024
    """Width of every hidden layer."""
    num_hidden_layers: int = 3
    """Depth: number of hidden Linear+ReLU layers."""

    def __post_init__(self) -> None:
        check_at_least("hidden-size", self.hidden_size, 1)
        check_at_least("num-hidden-layers", self.num_hidden_layers, 1)


def mlp(hidden_size: int, num_hidden_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = IMAGE_PIXELS
    for _ in range(num_hidden_layers):
        layers += [nn.Linear(width, hidden_size), nn.ReLU()]
        width = hidden_size
    layers.append(nn.Linear(width, NUM_CLASSES))
    return nn.Sequential(*layers)


def model_split(options: MlpOptions) -> ModelSplit:
    """Tensor parallel: consecutive Linear layers paired, the first split by columns, the second by rows (one
    all-reduce forward per pair, one backward where the pair's input needs a gradient: not the first); an unpaired
    last layer stays whole. Pipeline: blocks of one Linear and its ReLU, Flatten on the first stage."""
    linears = [str(1 + 2 * i) for i in range(options.num_hidden_layers + 1)]  # mlp(): Flatten, then Linear, ReLU...
    pairs = len(linears) // 2
    tensor = {path: "colwise" if i % 2 == 0 else "rowwise" for i, path in enumerate(linears[:2 * pairs])}
    return ModelSplit(tensor=tensor, tensor_divides={"hidden-size": options.hidden_size},
                      megatron={"all_reduce": 2 * pairs - 1},
                      first=["0"], blocks=[[path, str(int(path) + 1)] for path in linears[:-1]] + [[linears[-1]]],
                      last=[], blocks_flag=f"--num-hidden-layers {options.num_hidden_layers} + the output layer")


QUALITY = {
    "bundled": Quality(metric="heldout_accuracy", higher_is_better=True, low=0.0, high=1.0, target=0.95,
                       why="digits: a 3-layer MLP passes 95 % held-out accuracy within ~15 epochs at batch 128"),
    "real": Quality(metric="heldout_accuracy", higher_is_better=True, low=0.0, high=1.0, target=0.98,
                    why="MNIST test set: 98 %, what a plain MLP reaches in a few epochs"),
}


def mnist(data_dir: str, train: bool = True) -> Dataset:
    """torchvision's MNIST (train or test split) from `data_dir/MNIST/raw` (idx files); never downloads."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    return datasets.MNIST(data_dir, train=train, download=False, transform=transform)


@register
class Mlp(Workload):
    name = "mlp"
    description = "fully connected classifier on flattened 28x28 images (course hands-on 1)"
    sample_unit = "28x28 image"
    default_batch_size = 128
    real_data = "MNIST from --data-dir (torchvision layout: MNIST/raw/*-idx*-ubyte)"
    Options = MlpOptions
    tta_data = "bundled"

    def build_model(self, options: MlpOptions) -> nn.Module:
        return mlp(options.hidden_size, options.num_hidden_layers)

    def model_split(self, options: MlpOptions) -> ModelSplit:
        return model_split(options)

    def synthetic_batch(self, options: MlpOptions, batch_size: int, generator: torch.Generator) -> Batch:
        images = torch.randn(batch_size, 1, 28, 28, generator=generator)
        labels = torch.randint(0, NUM_CLASSES, (batch_size,), generator=generator)
        return images, labels

    def real_dataset(self, options: MlpOptions, data_dir: str) -> Dataset:
        return mnist(data_dir)

    def real_heldout_dataset(self, options: MlpOptions, data_dir: str) -> Dataset:
        return mnist(data_dir, train=False)

    def bundled_dataset(self, options: MlpOptions, split: str) -> Dataset:
        return digits_classification(split, size=28)

    def quality(self, options: MlpOptions, data: str) -> Quality | None:
        return QUALITY.get(data)

    def score(self, output: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        return correct_predictions(output, targets)

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, targets)

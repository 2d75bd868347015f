"""CNN fine-tuning (hands-on 3): a torchvision ResNet with a frozen backbone and a new head.

Only the head and the last `trainable_blocks` residual stages learn, so the gradient that DDP
all-reduces each step is a fraction of `cnn`'s — the contrast this workload exists to show.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hpcbench.errors import ConfigError, check_at_least, check_choice
from hpcbench.workloads.base import Quality, register
from hpcbench.workloads.cnn import Cnn

MODELS = ("resnet18", "resnet50")
STAGES = ("layer4", "layer3", "layer2", "layer1")
"""Residual stages from the head backwards: trainable_blocks=2 unfreezes layer4 and layer3."""


@dataclass(kw_only=True)
class FinetuneOptions:
    model: str = "resnet18"
    """Architecture: torchvision resnet18 / resnet50."""
    image_size: int = 128
    """Square input size in pixels (pretrained ResNets expect about 224)."""
    num_classes: int = 10
    """Outputs of the new classification head."""
    trainable_blocks: int = 0
    """Residual stages unfrozen in front of the head (0-4)."""
    weights: str | None = None
    """Pretrained weights (a state_dict file); default: torchvision's local cache, else random init."""

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODELS)
        check_at_least("image-size", self.image_size, 32, "five stride-2 stages")
        check_at_least("num-classes", self.num_classes, 2)
        check_choice("trainable-blocks", self.trainable_blocks, tuple(range(len(STAGES) + 1)))
        if self.weights is not None:
            load_state_dict(self.weights)  # fail before any process starts


def load_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A checkpoint holding tensors only (weights_only=True refuses pickled code)."""
    if not os.path.isfile(path):
        raise ConfigError("weights", f"{path!r} is not a file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a non-checkpoint
        raise ConfigError("weights", f"{path!r} is not a torch checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError("weights", f"{path!r} holds no state_dict of tensors")
    return state


def cached_torchvision_weights(model: str) -> str | None:
    """torchvision's download cache, if this machine already holds the ImageNet weights."""
    from torchvision import models

    url = models.get_model_weights(model).DEFAULT.url
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    return path if os.path.isfile(path) else None


def weights_source(options: FinetuneOptions) -> str | None:
    return options.weights or cached_torchvision_weights(options.model)


@register
class Finetune(Cnn):
    """Same images, labels and loss as `cnn` (inherited); a different model and optimizer."""

    name = "finetune"
    description = "fine-tune a ResNet: frozen backbone, new head, N trainable stages (course hands-on 3)"
    sample_unit = "3-channel square image"
    default_batch_size = 16
    real_data = "CIFAR-10 from --data-dir (torchvision layout: cifar-10-batches-py/), resized"
    Options = FinetuneOptions
    tta_data = None  # no target: how fast a frozen backbone adapts depends on weights a run cannot download

    def quality(self, options: FinetuneOptions, data: str) -> Quality | None:
        return None

    def build_model(self, options: FinetuneOptions) -> nn.Module:
        from torchvision import models

        model = getattr(models, options.model)(weights=None)
        source = weights_source(options)
        if source:
            model.load_state_dict(load_state_dict(source))
        for param in model.parameters():
            param.requires_grad = False
        for stage in STAGES[: options.trainable_blocks]:
            for param in getattr(model, stage).parameters():
                param.requires_grad = True
        model.fc = nn.Linear(model.fc.in_features, options.num_classes)  # new head, trainable
        return model

    def describe(self, options: FinetuneOptions) -> dict[str, Any]:
        source = weights_source(options)
        return {"weights": source or "random initialisation (no --weights, no cached torchvision weights)"}

    def optimizer(self, params: Any, options: FinetuneOptions) -> torch.optim.Optimizer:
        return torch.optim.SGD([p for p in params if p.requires_grad], lr=0.01, momentum=0.9)

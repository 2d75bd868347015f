"""What a workload is: a model, its data and its loss — nothing about ranks, launchers or engines.

Adding a workload is adding one file in this package that subclasses `Workload` and decorates
it with `@register`; the runner, CLI and records pick it up from the registry.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from hpcbench.config import CUDA_ONLY_PRECISIONS, PRECISIONS
from hpcbench.errors import ConfigError
from hpcbench.plugins import Registry, resolve_options

Batch = tuple[Any, Any]
"""(inputs, targets): inputs go to model(...), targets to the workload's loss."""

WORKLOADS: Registry[type[Workload]] = Registry("workload", "workload")


@dataclass(kw_only=True)
class NoOptions:
    """A workload with nothing to configure beyond the run's own fields."""


@dataclass(kw_only=True)
class DataContext:
    """Where a rank's batches come from; handed to `Workload.batches`."""

    device: torch.device
    batch_size: int
    seed: int
    rank: int
    world_size: int
    data: str
    data_dir: str | None
    num_data_workers: int
    model: nn.Module


class Workload:
    """Base class: subclasses set the class attributes and implement the three methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    sample_unit: ClassVar[str]
    """What one sample is, e.g. '28x28 image'; samples/s counts these."""
    default_batch_size: ClassVar[int]
    real_data: ClassVar[str]
    """How --data real is served, for `hpcbench list`."""
    Options: ClassVar[type] = NoOptions
    precisions: ClassVar[tuple[str, ...]] = PRECISIONS
    """The --precision values it trains in (e.g. no bf16 for an LSTM: oneDNN has no bf16 LSTM on CPU)."""
    convolutional: ClassVar[bool] = False
    """Image batches through convolutions: --channels-last applies."""
    compilable: ClassVar[bool] = True
    """--compile applies (not where the step is mostly outside the model)."""

    def build_model(self, options: Any) -> nn.Module:
        raise NotImplementedError

    def synthetic_batch(self, options: Any, batch_size: int, generator: torch.Generator) -> Batch:
        """One batch of the right shapes; the runner generates it once and reuses it."""
        raise NotImplementedError

    def real_dataset(self, options: Any, data_dir: str) -> Dataset:
        raise NotImplementedError

    def loss(self, output: Any, targets: Any) -> torch.Tensor:
        raise NotImplementedError

    def optimizer(self, params: Any, options: Any) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=0.01, momentum=0.9)

    def check_run(self, options: Any, batch_size: int, data: str, data_dir: str | None) -> None:
        """Reject run settings this workload cannot serve, before any process starts."""

    def check_training(self, precision: str, channels_last: bool, compile: bool, device: str) -> None:
        """An option that does not apply to this workload or device is an error, never ignored."""
        if precision not in self.precisions:
            raise ConfigError("precision", f"{precision} does not apply to workload {self.name!r} "
                              f"(it trains in: {', '.join(self.precisions)})")
        if precision in CUDA_ONLY_PRECISIONS and device != "cuda":
            supported = ", ".join(p for p in self.precisions if p not in CUDA_ONLY_PRECISIONS)
            raise ConfigError("precision", f"{precision} needs --device cuda (this run's device: {device}); "
                              f"on {device}: {supported}")
        if channels_last and not self.convolutional:
            raise ConfigError("channels-last", f"applies to the convolutional workloads only, not {self.name!r}")
        if compile and not self.compilable:
            raise ConfigError("compile", f"does not apply to workload {self.name!r} (its step is mostly outside the model)")

    def describe(self, options: Any) -> dict[str, Any]:
        """Workload facts for the record beyond the generic ones (e.g. where weights came from)."""
        return {}

    def extra_metrics(self) -> dict[str, Any]:
        """This rank's workload-specific results after the timed steps; rank 0 averages them."""
        return {}

    def batches(self, options: Any, ctx: DataContext) -> Iterator[Batch]:
        """Endless batches already on the device.

        Synthetic: one batch made once and resident on the device (as Horovod's and tf_cnn's
        benchmarks do), so the input pipeline is not what is measured. Real: a DataLoader with
        a DistributedSampler, cycling epochs.
        """
        if ctx.data == "synthetic":
            generator = torch.Generator().manual_seed(ctx.seed + ctx.rank)
            batch = to_device(self.synthetic_batch(options, ctx.batch_size, generator), ctx.device)
            return itertools.repeat(batch)
        return self._real_batches(options, ctx)

    def _real_batches(self, options: Any, ctx: DataContext) -> Iterator[Batch]:
        assert ctx.data_dir is not None
        dataset = self.real_dataset(options, ctx.data_dir)
        if len(dataset) < ctx.batch_size * ctx.world_size:
            raise ConfigError(
                "batch-size",
                f"{ctx.batch_size} x {ctx.world_size} ranks needs at least that many samples; "
                f"{ctx.data_dir!r} holds {len(dataset)}",
            )
        sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, seed=ctx.seed, drop_last=True)
        loader = DataLoader(
            dataset,
            batch_size=ctx.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=ctx.num_data_workers,
            pin_memory=ctx.device.type == "cuda",
            persistent_workers=ctx.num_data_workers > 0,
        )
        for epoch in itertools.count():
            sampler.set_epoch(epoch)
            for batch in loader:
                yield to_device(batch, ctx.device)

    @classmethod
    def resolve_options(cls, given: dict[str, Any]) -> dict[str, Any]:
        """Validate the options a user gave against this workload's Options and fill defaults."""
        return resolve_options(cls.Options, given, f"workload {cls.name!r}")

    def options(self, values: dict[str, Any]) -> Any:
        return self.Options(**values)


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(item, device) for item in batch)
    return batch


def register(cls: type[Workload]) -> type[Workload]:
    return WORKLOADS.register(cls)


def registry() -> dict[str, type[Workload]]:
    return WORKLOADS.classes()


def get_workload(name: str) -> Workload:
    return WORKLOADS.get(name)()

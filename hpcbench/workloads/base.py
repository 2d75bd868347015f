"""What a workload is: a model, its data and its loss — nothing about ranks, launchers or engines.

Adding a workload is adding one file in this package that subclasses `Workload` and decorates
it with `@register`; the runner, CLI and records pick it up from the registry.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from hpcbench.config import CUDA_ONLY_PRECISIONS, PRECISIONS
from hpcbench.convergence import Quality
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
    data_format: str | None = None
    prefetch_factor: int | None = None
    pin_memory: bool = False


@dataclass(frozen=True, kw_only=True)
class ModelSplit:
    """How a workload's model may be cut for model parallelism, in plain terms (module paths and roles) that the
    tensor- and pipeline-parallel engines translate; a workload without one runs data parallel only."""

    tensor: dict[str, str]
    """Module path (`*` matches one name) -> "colwise" | "rowwise" (Megatron's pairs, column split then row split) |
    "input" (a module whose column splits share one input: one all-reduce of its gradient, not one per split)."""
    tensor_divides: dict[str, int]
    """What the tensor-parallel degree must divide, by flag (heads, widths)."""
    megatron: dict[str, int]
    """Collectives per training step the pairs need (Megatron's f and g: forward and backward), by kind."""
    first: list[str]
    """Pipeline: the modules before the blocks (on the first stage), in order."""
    blocks: list[list[str]]
    """Pipeline: the repeated blocks, each a list of module paths run in order; stages hold whole blocks."""
    last: list[str]
    """Pipeline: the modules after the blocks (on the last stage), in order."""
    blocks_flag: str
    """How a user sets the number of blocks, for messages (e.g. "--layers 2")."""
    sequence: dict[str, str] | None = None
    """Sequence parallel, where it applies: module path -> "scatter" (its input split by sequence), "norm" (runs on
    sequence shards), "end" (its input gathered from them); "input" modules then gather theirs, and rowwise
    outputs leave sequence shards."""
    sequence_divides: dict[str, int] | None = None
    megatron_sequence: dict[str, int] | None = None


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

    def __init__(self) -> None:
        self._datasets: dict[str, Dataset] = {}
        """Real or bundled splits by name ("train", "heldout"), loaded once per process."""
        self._heldout_loader: DataLoader | None = None
        """This rank's shard of the held-out split, built at the first evaluation."""
        self._facts: Any = None
        """--data files: what the data folder holds (datafiles.DataFacts), read once."""

    def build_model(self, options: Any) -> nn.Module:
        raise NotImplementedError

    def meta_model(self, options: Any) -> nn.Module:
        """The model with its shapes and no storage (the meta device): what FLOP counting and an engine's
        checks need, at no memory and before any process starts."""
        with torch.device("meta"):
            return self.build_model(options)

    def synthetic_batch(self, options: Any, batch_size: int, generator: torch.Generator) -> Batch:
        """One batch of the right shapes; the runner generates it once and reuses it."""
        raise NotImplementedError

    def real_dataset(self, options: Any, data_dir: str) -> Dataset:
        raise NotImplementedError

    def file_transform(self, options: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        """--data files: what turns one decoded image (uint8 [3, H, W]) into a model input: the workload's
        augmentation and normalisation, run in the loader's workers."""
        readers = ", ".join(name for name, cls in registry().items() if cls.file_transform is not Workload.file_transform)
        raise ConfigError("data", f"workload {self.name!r} reads no image files (--data files: {readers})")

    def model_split(self, options: Any) -> ModelSplit | None:
        """How tensor and pipeline parallelism may cut the model (None: it cannot be cut; data parallel only)."""
        return None

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

    tta_data: ClassVar[str | None] = None
    """The data --mode tta trains on by default (`bundled` where the workload has such data); None: none."""
    eval_every_steps: ClassVar[int | None] = None
    """--mode tta's default evaluation cadence where a workload has no epochs; None: once per epoch."""

    def quality(self, options: Any, data: str) -> Quality | None:
        """The held-out quality --mode tta trains to on `data`; None where this workload has none."""
        return None

    def bundled_dataset(self, options: Any, split: str) -> Dataset:
        """`--data bundled`: a split ("train" or "heldout") of the data an installed package ships."""
        raise ConfigError("data", f"workload {self.name!r} has no bundled data (its real data: {self.real_data})")

    def real_heldout_dataset(self, options: Any, data_dir: str) -> Dataset:
        """The held-out split of the --data real dataset (its test set)."""
        raise NotImplementedError

    def score(self, output: Any, targets: Any) -> tuple[torch.Tensor, int]:
        """(sum of the quality metric over a held-out batch, items scored): ranks add both up."""
        raise NotImplementedError

    def dataset(self, options: Any, data: str, data_dir: str | None, split: str) -> Dataset:
        """One split of the real or bundled data, loaded once per process."""
        if split not in self._datasets:
            if data == "bundled":
                self._datasets[split] = self.bundled_dataset(options, split)
            else:
                assert data_dir is not None
                self._datasets[split] = self.real_dataset(options, data_dir) if split == "train" else \
                    self.real_heldout_dataset(options, data_dir)
        return self._datasets[split]

    def steps_per_epoch(self, options: Any, ctx: DataContext) -> int | None:
        """Steps in one pass over the training data by every rank (the last partial batch dropped)."""
        if ctx.data == "synthetic":
            return None
        return len(self.dataset(options, ctx.data, ctx.data_dir, "train")) // (ctx.batch_size * ctx.world_size)

    def heldout_score(self, options: Any, ctx: DataContext, model: nn.Module) -> tuple[float, int]:
        """This rank's share of the held-out evaluation: every world_size-th item, none twice, none padded."""
        if self._heldout_loader is None:
            dataset = self.dataset(options, ctx.data, ctx.data_dir, "heldout")
            shard = Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))
            self._heldout_loader = DataLoader(shard, batch_size=max(ctx.batch_size, 256))
        loader = self._heldout_loader
        total, count = torch.zeros((), dtype=torch.float64, device=ctx.device), 0
        with torch.no_grad():
            for batch in loader:
                inputs, targets = to_device(batch, ctx.device)
                value, items = self.score(model(inputs), targets)
                total += value.double()
                count += items
        return float(total), count

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
        if ctx.data == "files":
            return self._file_batches(options, ctx)
        return self._real_batches(options, ctx)

    def _file_facts(self, ctx: DataContext) -> Any:
        """The --data-dir's manifest (or layout), read once per process; its files were checked before any
        process started."""
        if self._facts is None:
            from hpcbench import datafiles

            self._facts = datafiles.inspect(ctx.data_dir, ctx.data_format, verify=False)
        return self._facts

    def data_files(self, ctx: DataContext) -> dict[str, Any] | None:
        """What --data files read (format, samples, bytes a sample), for the record; None for other data."""
        if ctx.data != "files":
            return None
        return self._file_facts(ctx).summary()

    def _file_batches(self, options: Any, ctx: DataContext) -> Iterator[Batch]:
        """Every step fetches its samples from storage: a folder through DistributedSampler, or this rank's shards."""
        from hpcbench import datafiles

        facts = self._file_facts(ctx)
        transform = self.file_transform(options)
        if facts.format == "jpeg-folder":
            dataset = datafiles.FolderImages(facts, transform)
            sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, seed=ctx.seed, drop_last=True)
            return _one_line_errors(_cycle(_loader(dataset, ctx, sampler), sampler, ctx.device))
        dataset = datafiles.ShardSamples(facts, transform, ctx.rank, ctx.world_size, ctx.seed)
        return _one_line_errors(_cycle(_loader(dataset, ctx), None, ctx.device))

    def cached_batches(self, options: Any, ctx: DataContext, batches: int) -> Iterator[Batch]:
        """--data files, DS-Analyzer's cached run: `batches` batches of this rank's samples read into memory
        once, then decoded and augmented every step by the same loader: the input pipeline without fetching."""
        from hpcbench import datafiles

        facts = self._file_facts(ctx)
        samples = datafiles.cache_samples(facts, batches * ctx.batch_size, ctx.rank, ctx.world_size, ctx.seed)
        dataset = datafiles.CachedImages(samples, self.file_transform(options))
        sampler = DistributedSampler(dataset, num_replicas=1, rank=0, seed=ctx.seed, drop_last=True)
        return _one_line_errors(_cycle(_loader(dataset, ctx, sampler), sampler, ctx.device))

    def _real_batches(self, options: Any, ctx: DataContext) -> Iterator[Batch]:
        dataset = self.dataset(options, ctx.data, ctx.data_dir, "train")
        if len(dataset) < ctx.batch_size * ctx.world_size:
            raise ConfigError(
                "batch-size",
                f"{ctx.batch_size} x {ctx.world_size} ranks needs at least that many samples; "
                f"the {ctx.data} data holds {len(dataset)}",
            )
        sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, seed=ctx.seed, drop_last=True)
        yield from _cycle(_loader(dataset, ctx, sampler), sampler, ctx.device)

    @classmethod
    def resolve_options(cls, given: dict[str, Any]) -> dict[str, Any]:
        """Validate the options a user gave against this workload's Options and fill defaults."""
        return resolve_options(cls.Options, given, f"workload {cls.name!r}")

    def options(self, values: dict[str, Any]) -> Any:
        return self.Options(**values)


def _loader(dataset: Dataset, ctx: DataContext, sampler: DistributedSampler | None = None) -> DataLoader:
    """The run's DataLoader settings (--loader-workers, --prefetch-factor, --pin-memory) on one dataset."""
    return DataLoader(dataset, batch_size=ctx.batch_size, sampler=sampler, drop_last=True,
                      num_workers=ctx.num_data_workers, prefetch_factor=ctx.prefetch_factor, pin_memory=ctx.pin_memory,
                      persistent_workers=ctx.num_data_workers > 0)


def _cycle(loader: DataLoader, sampler: DistributedSampler | None, device: torch.device) -> Iterator[Batch]:
    """Endless batches on the device, a new shuffle each epoch (an endless IterableDataset has one epoch)."""
    for epoch in itertools.count():
        if sampler is not None:
            sampler.set_epoch(epoch)
        batch = None
        for batch in loader:
            yield to_device(batch, device)
        if batch is None:  # an epoch of nothing would loop here forever
            raise ConfigError("batch-size", f"{loader.batch_size} is more than this rank's {len(loader.dataset)} samples")


def _one_line_errors(batches: Iterator[Batch]) -> Iterator[Batch]:
    """A sample that cannot be read fails the run with the line that names its file; a DataLoader worker's
    error arrives wrapped in the worker's whole traceback."""
    from hpcbench.datafiles import DataFileError

    try:
        yield from batches
    except DataFileError as exc:
        last = str(exc).strip().splitlines()[-1]
        raise DataFileError(last.split("DataFileError: ", 1)[-1]) from None


def correct_predictions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Classifiers' score: (correct predictions, items), so accuracy adds up over batches and ranks."""
    return (logits.argmax(dim=1) == labels).sum(), labels.numel()


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

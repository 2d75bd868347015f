"""What an engine is: how ranks start, share gradients and talk — the only layer that owns a
communication library.

Adding an engine is adding one module in this package: a subclass of `Engine` decorated with
`@register`, with an `Options` dataclass whose fields become `--<flag_prefix>-<field>` flags
(as workload options do). The runner drives every engine through the methods below, never
through a name, so an engine that owns the backward pass (DeepSpeed) or shards parameters (FSDP)
overrides `backward`, `step` and `replica_digest` instead of editing the runner.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from hpcbench.engines.discovery import Placement
from hpcbench.errors import ConfigError
from hpcbench.plugins import Registry

if TYPE_CHECKING:
    from hpcbench.workloads.base import ModelSplit

ENGINES: Registry[type[Engine]] = Registry("engine", "engine")


@dataclass(kw_only=True)
class NoOptions:
    """An engine with nothing to configure beyond the run's own fields."""


class Engine:
    """One rank's view of the job. Subclasses set the class attributes and implement the collectives."""

    name: ClassVar[str]
    description: ClassVar[str]
    order: ClassVar[int] = 100
    """Position in lists (`hpcbench list`, error messages)."""
    Options: ClassVar[type] = NoOptions
    flag_prefix: ClassVar[str] = ""
    """Options become `--<flag_prefix>-<field>` flags, e.g. Horovod's `--hvd-compression`."""
    needs_model_split: ClassVar[bool] = False
    """It cuts the model (tensor, pipeline parallel): only workloads with a `model_split` run under it."""
    local_launcher: ClassVar[str] = "torchrun"
    """How `hpcbench run` starts this engine's ranks on one machine (a launcher of `hpcbench.launch.local`)."""

    placement: Placement
    device: torch.device
    backend: str
    """The communication library under the collectives (gloo, nccl, horovod): records and netbench name it."""

    def __init__(self, placement: Placement, device_type: str, timeout_s: float, options: Any) -> None:
        raise NotImplementedError

    # --- what a run checks before any process starts
    @classmethod
    def check_available(cls) -> None:
        """Raise a ConfigError naming what is missing when this engine cannot start here."""

    @classmethod
    def library_version(cls) -> str | None:
        """The installed version of this engine's own library beyond torch (None: none, or not installed)."""
        return None

    @classmethod
    def check_training(cls, options: Any, precision: str, device_type: str) -> None:
        """Raise a ConfigError when these engine options cannot run with this precision on this device."""

    @classmethod
    def check_model(cls, build_on_meta: Callable[[], nn.Module], workload: str) -> None:
        """Raise a ConfigError when this engine cannot wrap the workload's model (`build_on_meta` builds it
        without memory, on the meta device: only an engine that looks pays for it)."""

    @classmethod
    def model_parallel_degree(cls, options: Any, world_size: int) -> int:
        """Ranks that share one model replica (its tensor or pipeline split): the world over it reads different data."""
        return 1

    @classmethod
    def check_split(cls, options: Any, world_size: int, split: ModelSplit | None, batch_size: int, workload: str) -> None:
        """Raise a ConfigError when these degrees cannot cut this workload's model at this world size."""

    @classmethod
    def backend_for(cls, device_type: str) -> str:
        """The backend a rank on this device type will use (known before any rank starts)."""
        raise NotImplementedError

    # --- the training step (the course's loop calls these in order)
    def data_shard(self) -> tuple[int, int]:
        """(which data replica this rank is, how many there are): ranks that split one model read the same batch."""
        return self.placement.rank, self.placement.world_size

    def wrap_model(self, model: nn.Module, split: ModelSplit | None = None) -> nn.Module:
        """`split`: how the workload's model may be cut (engines that cut it need it)."""
        return model

    schedules_forward_and_backward: ClassVar[bool] = False
    """A pipeline schedule runs forward, loss and backward per micro-batch: the step calls `forward_backward`."""

    def forward_backward(self, inputs: Any, targets: Any, loss_fn: Callable[[Any, Any], torch.Tensor]) -> torch.Tensor:
        """The whole step's forward and backward as the engine's schedule runs them; the step's mean loss."""
        raise NotImplementedError

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
        return optimizer

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()

    def scaled_step(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        """fp16's step (the loss was scaled before backward): unscale, skip the step on inf/NaN
        gradients, adjust the scale. An engine that reduces gradients in step() unscales after that."""
        scaler.step(optimizer)
        scaler.update()

    def no_sync(self, model: nn.Module) -> contextlib.AbstractContextManager[None]:
        """Steps inside skip gradient synchronisation: a compute-only window's steps."""
        raise NotImplementedError(f"engine {self.name!r} has no window without gradient synchronisation")

    # --- collectives the runner and netbench use
    def barrier(self) -> None:
        raise NotImplementedError

    def all_reduce_max(self, value: float) -> float:
        raise NotImplementedError

    def all_reduce_max_async(self, values: list[float]) -> Callable[[], list[float]]:
        """Start an element-wise MAX over ranks; calling the result waits and returns it."""
        raise NotImplementedError

    def all_reduce_sum_(self, tensor: torch.Tensor) -> None:
        """Sum `tensor` over ranks, in place, on its device (netbench's all-reduce)."""
        raise NotImplementedError

    def all_gather_into_(self, output: torch.Tensor, chunk: torch.Tensor) -> None:
        """Every rank's `chunk`, in rank order, into `output` (world_size x chunk)."""
        raise NotImplementedError

    def reduce_scatter_(self, output: torch.Tensor, full: torch.Tensor) -> None:
        """The sum over ranks of `full`, this rank's 1/world_size slice of it into `output`."""
        raise NotImplementedError

    def broadcast_(self, tensor: torch.Tensor, root: int) -> None:
        """`root`'s `tensor` into every rank's, in place."""
        raise NotImplementedError

    def exchange_(self, send: torch.Tensor, to: int, receive: torch.Tensor, source: int) -> float:
        """Send `send` to rank `to` while receiving `receive` from rank `source`, point to point (the survey's rings:
        every node's link measured at once, without the all-to-all of a collective). Returns the seconds until
        `receive` had arrived: the edge from `source`, whatever this rank's own send to `to` still waits for."""
        raise NotImplementedError(f"engine {self.name!r} has no point-to-point sends")

    def buffer(self, values: np.ndarray) -> torch.Tensor:
        """A communication buffer holding `values` on this engine's device (netbench's buffers)."""
        return torch.from_numpy(values).to(self.device)

    def to_host(self, buffer: torch.Tensor) -> np.ndarray:
        return buffer.cpu().numpy()

    def all_gather_object(self, obj: Any) -> list[Any]:
        raise NotImplementedError

    # --- facts
    def replica_digest(self, model: nn.Module) -> str:
        """A hash of this rank's parameters: data-parallel replicas must agree bit for bit after training."""
        return parameter_digest(getattr(model, "module", model))

    def replica_group(self) -> int:
        """Ranks with the same number hold the same parameters, so their digests must agree (a pipeline's stage)."""
        return 0

    def action_timeline(self) -> Any:
        """The engine's own per-action timestamps (a pipeline's forward and backward per micro-batch); None: none."""
        return None

    def gradient_bucketing(self, model: nn.Module) -> dict[str, Any] | None:
        """How this engine groups gradients into collectives (a rule of hpcbench.buckets) for the
        gradient-ready timeline; None: it does not say, and the timeline keeps only per-gradient times."""
        return None

    def counters(self, model: nn.Module) -> dict[str, Any] | None:
        """The library's own timings of this rank, as it reports them (None: it keeps none)."""
        return None

    def versions(self) -> dict[str, Any]:
        return {"backend": self.backend}

    def close(self) -> None:
        """Leave the job; the caller calls it in a finally block."""


def parameter_digest(model: nn.Module) -> str:
    """A hash of every parameter's name and bytes; a sharded parameter (FSDP's, tp's DTensor) gathered whole first
    (`full_tensor`, a collective every rank joins), so ranks agree exactly when their shards make the same model."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        whole = param.full_tensor() if hasattr(param, "full_tensor") else param
        digest.update(name.encode())
        digest.update(whole.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def split_engines() -> str:
    """The engines a workload without a model split can use: those that need none."""
    return ", ".join(name for name, cls in ENGINES.classes().items() if not cls.needs_model_split)


def check_degree(flag: str, degree: int, world_size: int, divides: dict[str, int]) -> None:
    """A model-parallel degree must divide the world and every size it splits."""
    if world_size % degree:
        raise ConfigError(flag, f"{degree} does not divide the world size {world_size} (processes x nodes)")
    for name, value in divides.items():
        if value % degree:
            raise ConfigError(flag, f"{degree} does not divide --{name} {value}")


def register(cls: type[Engine]) -> type[Engine]:
    return ENGINES.register(cls)


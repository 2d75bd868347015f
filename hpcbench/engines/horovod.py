"""Horovod engine: the only module that imports Horovod (lazily: hpcbench works without it).

Gradients are averaged by hvd.DistributedOptimizer (with named parameters, optional fp16
compression); parameters and optimizer state are broadcast from rank 0; metric reductions go
through Horovod's own collectives. Fusion threshold, cycle time and the timeline file are
Horovod environment variables, set before hvd.init().
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hpcbench.buckets import fusion_cycle_rule
from hpcbench.engines.base import Engine, register
from hpcbench.engines.discovery import Placement
from hpcbench.errors import ConfigError, check_choice, check_in_range

INSTALL_HINT = "python -m hpcbench.install_horovod (builds Horovod against the installed torch; see docs/how-to/horovod.md)"
COMPRESSIONS = ("none", "fp16")
CONTROLLERS = ("gloo", "mpi")


class HorovodMissing(RuntimeError):
    """Horovod is not importable in this environment."""


def import_horovod() -> Any:
    try:
        import horovod.torch as hvd
    except (ImportError, OSError) as exc:  # OSError: a build against another torch (undefined symbols)
        raise HorovodMissing(f"Horovod is not installed ({exc}); install it with: {INSTALL_HINT}") from None
    return hvd


@dataclass(kw_only=True)
class HorovodOptions:
    compression: str = "none"
    """gradient compression: none, fp16"""
    fusion_threshold_mb: float | None = None
    """tensor fusion buffer in MiB (Horovod's default: 128)"""
    cycle_time_ms: float | None = None
    """fusion cycle time in ms (Horovod's default: 1)"""
    timeline: str | None = None
    """write Horovod's timeline (Chrome trace) to this file"""
    controller: str | None = None
    """gloo or mpi; checked after start (default: the launcher's: local horovodrun runs gloo, mpirun and srun run MPI)"""

    def __post_init__(self) -> None:
        check_choice("hvd-compression", self.compression, COMPRESSIONS)
        if self.controller is not None:
            check_choice("hvd-controller", self.controller, CONTROLLERS)
        for flag, value in (("hvd-fusion-threshold-mb", self.fusion_threshold_mb), ("hvd-cycle-time-ms", self.cycle_time_ms)):
            if value is not None:
                check_in_range(flag, value, 0, 1e6)
        if self.timeline is not None and (not isinstance(self.timeline, str) or not self.timeline):
            raise ConfigError("hvd-timeline", f"must be a file path, got {self.timeline!r}")


NO_SYNC_PASSES = 2**30
"""backward_passes_per_step inside no_sync(): Horovod's hooks count down and never reach zero."""


@register
class HorovodEngine(Engine):
    """One device per process, pinned by Horovod's local rank."""

    name = "horovod"
    description = "Horovod: DistributedOptimizer all-reduces fused gradient buffers (gloo or MPI controller)"
    order = 20
    Options = HorovodOptions
    flag_prefix = "hvd"
    local_launcher = "horovodrun"

    def __init__(self, placement: Placement, device_type: str, timeout_s: float, options: HorovodOptions) -> None:
        os.environ.setdefault("HOROVOD_GLOO_TIMEOUT_SECONDS", str(int(timeout_s)))
        if options.fusion_threshold_mb is not None:
            os.environ["HOROVOD_FUSION_THRESHOLD"] = str(int(options.fusion_threshold_mb * 2**20))
        if options.cycle_time_ms is not None:
            os.environ["HOROVOD_CYCLE_TIME"] = str(options.cycle_time_ms)
        if options.timeline:
            os.environ["HOROVOD_TIMELINE"] = options.timeline
        self.hvd = hvd = import_horovod()
        hvd.init()
        running = self.controller()
        if options.controller and options.controller != running:
            hvd.shutdown()
            raise RuntimeError(f"--hvd-controller {options.controller} was asked for, but Horovod started with its "
                               f"{running} controller (MPI built: {hvd.mpi_built()}; start it with horovodrun "
                               f"--{options.controller}{' or mpirun' if options.controller == 'mpi' else ''})")
        # Horovod numbers the ranks itself
        self.placement = Placement(rank=hvd.rank(), local_rank=hvd.local_rank(), world_size=hvd.size(),
                                   local_world_size=hvd.local_size(), launcher=placement.launcher)
        if device_type == "cuda":
            self.device = torch.device("cuda", hvd.local_rank())
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        self.backend = self.backend_for(device_type)
        self.options = options
        self._compression = hvd.Compression.fp16 if options.compression == "fp16" else hvd.Compression.none
        self._counter = 0
        self._syncing = True
        self._optimizer: Any = None

    @classmethod
    def check_available(cls) -> None:
        try:
            import_horovod()
        except HorovodMissing as exc:
            raise ConfigError("engine", str(exc)) from None

    @classmethod
    def backend_for(cls, device_type: str) -> str:
        return "horovod"

    @classmethod
    def library_version(cls) -> str | None:
        from importlib import metadata

        try:
            return metadata.version("horovod")
        except metadata.PackageNotFoundError:
            return None

    def wrap_model(self, model: nn.Module, split: Any = None) -> nn.Module:
        self.hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        return model

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
        self.hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        self._optimizer = self.hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters(),
                                                        compression=self._compression)
        return self._optimizer

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._syncing:
            optimizer.step()
            return
        with optimizer.skip_synchronize():
            optimizer.step()
        optimizer._handles.clear()  # the hooks' no-op entries; zero_grad() refuses to run while any are left

    def scaled_step(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        """Horovod's recipe for a GradScaler: finish the all-reduces, unscale the averaged gradients,
        then step without synchronising again."""
        if self._syncing:
            optimizer.synchronize()
            scaler.unscale_(optimizer)
        with optimizer.skip_synchronize():
            super().scaled_step(optimizer, scaler)
        if not self._syncing:
            optimizer._handles.clear()  # the hooks' no-op entries; zero_grad() refuses to run while any are left

    @contextlib.contextmanager
    def no_sync(self, model: nn.Module) -> Iterator[None]:
        """Horovod's hooks all-reduce a gradient after `backward_passes_per_step` backward passes;
        set out of reach, they never do, and step() skips its synchronize()."""
        if self._optimizer is None:
            raise RuntimeError("no_sync() needs the optimizer wrapped first (wrap_optimizer)")
        self._optimizer.set_backward_passes_per_step(NO_SYNC_PASSES)
        self._syncing = False
        try:
            yield
        finally:
            self._syncing = True
            self._optimizer.set_backward_passes_per_step(1)

    def controller(self) -> str:
        """The controller Horovod coordinates with in this run (it picks it at init from its launcher)."""
        return "mpi" if self.hvd.mpi_enabled() else "gloo"

    def _name(self, what: str) -> str:
        """Horovod matches collectives across ranks by name; every rank calls in the same order."""
        self._counter += 1
        return f"hpcbench.{what}.{self._counter}"

    def gradient_bucketing(self, model: nn.Module) -> dict[str, Any] | None:
        """Horovod's tensor fusion: its threshold and cycle time (defaults 128 MiB and 1 ms, Horovod's docs)."""
        threshold = self.options.fusion_threshold_mb if self.options.fusion_threshold_mb is not None else 128
        cycle_ms = self.options.cycle_time_ms if self.options.cycle_time_ms is not None else 1.0
        return fusion_cycle_rule(int(threshold * 2**20), cycle_ms / 1e3)

    def barrier(self) -> None:
        self.hvd.barrier()

    def all_reduce_max(self, value: float) -> float:
        tensor = torch.tensor([value], dtype=torch.float64)
        return float(self.hvd.allreduce(tensor, op=self.hvd.Max, name="hpcbench.max")[0])

    def all_reduce_max_async(self, values: list[float]) -> Callable[[], list[float]]:
        """One name for every vote (at most one is in flight: the runner reads it before the next),
        so Horovod's response cache knows it; a new name each time sent every vote's cycle through
        the full negotiation."""
        handle = self.hvd.allreduce_async(torch.tensor(values, dtype=torch.float64), op=self.hvd.Max,
                                          name="hpcbench.vote")
        return lambda: self.hvd.synchronize(handle).tolist()

    def all_reduce_sum_(self, tensor: torch.Tensor) -> None:
        self.hvd.allreduce_(tensor, op=self.hvd.Sum, name=self._name("sum"))

    def all_gather_into_(self, output: torch.Tensor, chunk: torch.Tensor) -> None:
        output.copy_(self.hvd.allgather(chunk, name=self._name("allgather")))  # Horovod returns a new tensor

    def reduce_scatter_(self, output: torch.Tensor, full: torch.Tensor) -> None:
        output.copy_(self.hvd.reducescatter(full, op=self.hvd.Sum, name=self._name("reducescatter")))

    def broadcast_(self, tensor: torch.Tensor, root: int) -> None:
        self.hvd.broadcast_(tensor, root_rank=root, name=self._name("broadcast"))

    def all_gather_object(self, obj: Any) -> list[Any]:
        return self.hvd.allgather_object(obj, name=self._name("gather"))

    def versions(self) -> dict[str, Any]:
        import horovod

        hvd = self.hvd
        return {
            "backend": "horovod",
            "horovod": horovod.__version__,
            "horovod_built": {"gloo": hvd.gloo_built(), "mpi": hvd.mpi_built(), "nccl": hvd.nccl_built()},
            "horovod_controller": self.controller(),
            "horovod_options": dataclasses.asdict(self.options),
            "nccl": None,
        }

    def close(self) -> None:
        self.hvd.shutdown()

"""Horovod engine: the only module that imports Horovod (lazily: hpcbench works without it).

Gradients are averaged by hvd.DistributedOptimizer (with named parameters, optional fp16
compression); parameters and optimizer state are broadcast from rank 0; metric reductions go
through Horovod's own collectives. Fusion threshold, cycle time and the timeline file are
Horovod environment variables, set before hvd.init().
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from hpcbench.engines.discovery import Placement

INSTALL_HINT = "python -m hpcbench.install_horovod (builds Horovod against the installed torch; see README)"


class HorovodMissing(RuntimeError):
    """Horovod is not importable in this environment."""


def import_horovod() -> Any:
    try:
        import horovod.torch as hvd
    except (ImportError, OSError) as exc:  # OSError: a build against another torch (undefined symbols)
        raise HorovodMissing(f"Horovod is not installed ({exc}); install it with: {INSTALL_HINT}") from None
    return hvd


class HorovodEngine:
    """One device per process, pinned by Horovod's local rank."""

    name = "horovod"

    def __init__(self, placement: Placement, device_type: str, timeout_s: float, options: dict[str, Any]) -> None:
        os.environ.setdefault("HOROVOD_GLOO_TIMEOUT_SECONDS", str(int(timeout_s)))
        if options.get("fusion_threshold_mb") is not None:
            os.environ["HOROVOD_FUSION_THRESHOLD"] = str(int(options["fusion_threshold_mb"] * 2**20))
        if options.get("cycle_time_ms") is not None:
            os.environ["HOROVOD_CYCLE_TIME"] = str(options["cycle_time_ms"])
        if options.get("timeline"):
            os.environ["HOROVOD_TIMELINE"] = options["timeline"]
        self.hvd = hvd = import_horovod()
        hvd.init()
        self.placement = Placement(rank=hvd.rank(), local_rank=hvd.local_rank(), world_size=hvd.size(),
                                   local_world_size=hvd.local_size(), launcher=placement.launcher)
        if device_type == "cuda":
            self.device = torch.device("cuda", hvd.local_rank())
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        self.backend = "horovod"
        self.options = options
        self._compression = hvd.Compression.fp16 if options.get("compression") == "fp16" else hvd.Compression.none
        self._counter = 0

    def wrap_model(self, model: nn.Module) -> nn.Module:
        self.hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        return model

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
        self.hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        return self.hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters(),
                                             compression=self._compression)

    def _name(self, what: str) -> str:
        """Horovod matches collectives across ranks by name; every rank calls in the same order."""
        self._counter += 1
        return f"hpcbench.{what}.{self._counter}"

    def barrier(self) -> None:
        self.hvd.barrier()

    def all_reduce_max(self, value: float) -> float:
        tensor = torch.tensor([value], dtype=torch.float64)
        return float(self.hvd.allreduce(tensor, op=self.hvd.Max, name=self._name("max"))[0])

    def all_reduce_max_async(self, values: list[float]) -> Callable[[], list[float]]:
        handle = self.hvd.allreduce_async(torch.tensor(values, dtype=torch.float64), op=self.hvd.Max,
                                          name=self._name("vote"))
        return lambda: self.hvd.synchronize(handle).tolist()

    def all_gather_object(self, obj: Any) -> list[Any]:
        return self.hvd.allgather_object(obj, name=self._name("gather"))

    def versions(self) -> dict[str, Any]:
        import horovod

        hvd = self.hvd
        return {
            "backend": "horovod",
            "horovod": horovod.__version__,
            "horovod_built": {"gloo": hvd.gloo_built(), "mpi": hvd.mpi_built(), "nccl": hvd.nccl_built()},
            "horovod_controller": "mpi" if hvd.mpi_enabled() else "gloo",
            "horovod_options": self.options,
            "nccl": None,
        }

    def close(self) -> None:
        self.hvd.shutdown()

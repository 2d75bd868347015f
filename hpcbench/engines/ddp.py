"""PyTorch DDP engine: the only module that owns a torch.distributed process group."""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hpcbench.buckets import size_cap_rule
from hpcbench.engines.base import Engine, register
from hpcbench.engines.discovery import Placement
from hpcbench.engines.mpi import INSTALL_HINT as MPI_INSTALL_HINT
from hpcbench.errors import ConfigError, check_at_least, check_bool, check_choice, check_in_range
from hpcbench.timing import sync

COMM_HOOKS = ("none", "fp16", "bf16", "powersgd")
POWERSGD_START_ITER = 2
"""PowerSGD compresses from this iteration on (DDP's first two all-reduce plainly: buckets are rebuilt after the first)."""


DDP_COUNTERS = {
    "avg_forward_compute_time": "forward_compute_s",
    "avg_backward_compute_time": "backward_compute_s",
    "avg_backward_comm_time": "backward_comm_s",
    "avg_backward_compute_comm_overlap_time": "backward_compute_comm_overlap_s",
}
"""DDP's logging keys (nanoseconds) -> the record's names."""

ALL_GATHER = getattr(dist, "all_gather_single", dist.all_gather_into_tensor)
REDUCE_SCATTER = getattr(dist, "reduce_scatter_single", dist.reduce_scatter_tensor)
"""torch 2.14 renamed them (the old names warn); older torch has only the old ones."""


def rendezvous_over_mpi(placement: Placement) -> dict[str, str]:
    """MASTER_ADDR and MASTER_PORT for ranks an MPI launcher started: rank 0's host name and a port
    free there, broadcast with mpi4py, so `mpirun -np 4 python -m hpcbench.worker` needs nothing set by hand.

    MPI is finalised right after the broadcast: Open MPI's mpirun treats a rank that ends without
    MPI_Finalize as failed, and the workers end with os._exit.
    """
    try:
        from mpi4py import MPI
    except ImportError:
        raise RuntimeError(f"{placement.launcher} started this rank without MASTER_ADDR/MASTER_PORT; hpcbench finds "
                           f"them over MPI with mpi4py: {MPI_INSTALL_HINT} (or export both)") from None
    found = (socket.gethostname(), free_port("")) if MPI.COMM_WORLD.Get_rank() == 0 else None
    host, port = MPI.COMM_WORLD.bcast(found, root=0)
    MPI.Finalize()
    return {"MASTER_ADDR": host, "MASTER_PORT": str(port)}


@dataclass(kw_only=True)
class DdpOptions:
    bucket_cap_mb: float | None = None
    """gradient bucket size in MiB (DDP's default: 25)"""
    static_graph: bool = False
    """the graph is the same every step: DDP may reorder buckets and skip its per-step graph checks"""
    gradient_as_bucket_view: bool = False
    """gradients are views into the all-reduce buckets: no copy between them, less memory"""
    comm_hook: str = "none"
    """gradient communication hook: none, fp16 or bf16 (gradients cast for the all-reduce), powersgd (low rank)"""
    powersgd_rank: int | None = None
    """PowerSGD's matrix approximation rank (with --ddp-comm-hook powersgd; default 1)"""

    def __post_init__(self) -> None:
        check_choice("ddp-comm-hook", self.comm_hook, COMM_HOOKS)
        check_bool("ddp-static-graph", self.static_graph)
        check_bool("ddp-gradient-as-bucket-view", self.gradient_as_bucket_view)
        if self.bucket_cap_mb is not None:
            check_in_range("ddp-bucket-cap-mb", self.bucket_cap_mb, 0, 1e6)
        if self.comm_hook == "powersgd":
            self.powersgd_rank = 1 if self.powersgd_rank is None else self.powersgd_rank
            check_at_least("ddp-powersgd-rank", self.powersgd_rank, 1)
        elif self.powersgd_rank is not None:
            raise ConfigError("ddp-powersgd-rank", "applies with --ddp-comm-hook powersgd only")


def register_comm_hook(model: DistributedDataParallel, hook: str, powersgd_rank: int | None) -> None:
    """DDP's stock hooks (torch.distributed.algorithms.ddp_comm_hooks), the counterpart of Horovod's compression."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

    if hook == "fp16":
        model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif hook == "bf16":
        model.register_comm_hook(None, default_hooks.bf16_compress_hook)
    elif hook == "powersgd":
        state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=powersgd_rank,
                                            start_powerSGD_iter=POWERSGD_START_ITER)
        model.register_comm_hook(state, powerSGD_hook.powerSGD_hook)


@register
class DdpEngine(Engine):
    """gloo on CPU, NCCL on CUDA; one device per process, pinned by local rank."""

    name = "ddp"
    description = "PyTorch DistributedDataParallel: gradients all-reduced in buckets during backward()"
    order = 10
    Options = DdpOptions
    flag_prefix = "ddp"

    def __init__(self, placement: Placement, device_type: str, timeout_s: float, options: DdpOptions | None = None) -> None:
        self.placement = placement
        self.options = options or DdpOptions()
        self.backend = self.backend_for(device_type)
        if device_type == "cuda":
            self.device = torch.device("cuda", placement.local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if placement.launcher == "none":
            # A lone process still gets a process group, so the code path is the same at every scale.
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(free_port()))
        elif placement.mpi and not ("MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ):
            os.environ.update(rendezvous_over_mpi(placement))
        dist.init_process_group(
            self.backend,
            init_method="env://",
            rank=placement.rank,
            world_size=placement.world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
            device_id=self.device if self.device.type == "cuda" else None,
        )
        # Control messages (the stop vote) travel on their own gloo group: CPU tensors, so
        # reading a vote never waits for the GPU, and they never queue behind gradients.
        self._control = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s))

    @classmethod
    def backend_for(cls, device_type: str) -> str:
        return "nccl" if device_type == "cuda" else "gloo"

    def wrap_model(self, model: nn.Module, split: Any = None) -> nn.Module:
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        tuning = {"bucket_cap_mb": self.options.bucket_cap_mb} if self.options.bucket_cap_mb is not None else {}
        wrapped = DistributedDataParallel(model, device_ids=device_ids, static_graph=self.options.static_graph,
                                          gradient_as_bucket_view=self.options.gradient_as_bucket_view, **tuning)
        register_comm_hook(wrapped, self.options.comm_hook, self.options.powersgd_rank)
        return wrapped

    def no_sync(self, model: nn.Module) -> contextlib.AbstractContextManager[None]:
        return model.no_sync()  # DDP's own: backward() accumulates locally, no all-reduce

    def gradient_bucketing(self, model: nn.Module) -> dict[str, Any] | None:
        """DDP's caps as its Reducer uses them when it rebuilds buckets after the first iteration: the
        wrapper's own `_bucket_config` where this torch has one, else derived as torch 2.x derives them."""
        config = getattr(model, "_bucket_config", None)
        if config is not None:
            return size_cap_rule(config.first_bucket_bytes_cap, config.bucket_bytes_cap)
        cap = int((25 if self.options.bucket_cap_mb is None else self.options.bucket_cap_mb) * 2**20)
        return size_cap_rule(dist._DEFAULT_FIRST_BUCKET_BYTES if self.options.bucket_cap_mb is None else cap, cap)

    def counters(self, model: nn.Module) -> dict[str, Any] | None:
        """DDP's runtime statistics (torch >= 1.9), seconds instead of its nanoseconds."""
        getter = getattr(model, "_get_ddp_logging_data", None)
        data = getter() if getter else {}
        found = {name: data[key] / 1e9 for key, name in DDP_COUNTERS.items() if isinstance(data.get(key), (int, float))}
        if not found:
            return None
        buckets = data.get("rebuilt_per_bucket_param_indices")  # "5 4 3 2, 1 0": DDP's own buckets after its rebuild
        if isinstance(buckets, str) and buckets.strip():
            found["bucket_param_indices"] = [[int(i) for i in bucket.split()] for bucket in buckets.split(",")]
        return {**found, "sampled_iteration": data.get("iteration"), "source": "DistributedDataParallel._get_ddp_logging_data()",
                "caveat": "averages over the iterations DDP samples (10, 20, 30, ... then every 100th), warm-up included; "
                          "host timers on CPU, CUDA events on GPU"}

    def barrier(self) -> None:
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def all_reduce_max(self, value: float) -> float:
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor.item())

    def all_reduce_max_async(self, values: list[float]) -> Callable[[], list[float]]:
        """On the control group, so a vote never waits behind gradients."""
        tensor = torch.tensor(values, dtype=torch.float64)
        work = dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self._control, async_op=True)

        def wait() -> list[float]:
            work.wait()
            return tensor.tolist()

        return wait

    def all_reduce_sum_(self, tensor: torch.Tensor) -> None:
        dist.all_reduce(tensor)

    def all_gather_into_(self, output: torch.Tensor, chunk: torch.Tensor) -> None:
        ALL_GATHER(output, chunk)

    def reduce_scatter_(self, output: torch.Tensor, full: torch.Tensor) -> None:
        REDUCE_SCATTER(output, full)

    def broadcast_(self, tensor: torch.Tensor, root: int) -> None:
        dist.broadcast(tensor, src=root)

    def exchange_(self, send: torch.Tensor, to: int, receive: torch.Tensor, source: int) -> float:
        started = time.perf_counter()
        sending, receiving = dist.isend(send, to), dist.irecv(receive, source)
        receiving.wait()
        sync(self.device)
        arrived = time.perf_counter() - started
        sending.wait()
        return arrived

    def all_gather_object(self, obj: Any) -> list[Any]:
        gathered: list[Any] = [None] * self.placement.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def versions(self) -> dict[str, Any]:
        nccl = ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else None
        return {"backend": self.backend, "nccl": nccl}

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now ("" for every interface: other nodes will connect to it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]

"""FSDP engine: PyTorch's fully sharded data parallel (FSDP2, `torch.distributed.fsdp.fully_shard`).

Each rank holds 1/N of every parameter, gradient and optimizer state; a block's parameters are
all-gathered before its forward and backward, and its gradients reduce-scattered after. It runs on
the DDP engine's process group (gloo on CPU, NCCL on CUDA) and an explicit device mesh on the run's
device: without one, a GPU host with a gloo group moves parameters to CUDA and crashes (pytorch#132471).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hpcbench.engines.base import register
from hpcbench.engines.ddp import DdpEngine
from hpcbench.engines.discovery import Placement
from hpcbench.errors import ConfigError, check_bool, check_choice

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
UNSHARDABLE = (nn.RNNBase,)
"""Modules whose kernels take plain tensors, not the sharded DTensors FSDP leaves between steps."""


@dataclass(kw_only=True)
class FsdpOptions:
    reshard_after_forward: bool = True
    """free each block's gathered parameters after its forward (gather them again in backward): less memory, more traffic"""
    param_dtype: str | None = None
    """mixed precision: the dtype parameters are gathered and computed in (fp32, bf16, fp16; default: as stored)"""
    reduce_dtype: str | None = None
    """mixed precision: the dtype gradients are reduce-scattered in (default: the param dtype)"""
    cpu_offload: bool = False
    """keep the sharded parameters, gradients and optimizer state in host memory (CUDA runs)"""

    def __post_init__(self) -> None:
        check_bool("fsdp-reshard-after-forward", self.reshard_after_forward)
        check_bool("fsdp-cpu-offload", self.cpu_offload)
        for flag, value in (("fsdp-param-dtype", self.param_dtype), ("fsdp-reduce-dtype", self.reduce_dtype)):
            if value is not None:
                check_choice(flag, value, tuple(DTYPES))


@register
class FsdpEngine(DdpEngine):
    """DDP's process group and collectives; the model wrapped by fully_shard per block, then at the root."""

    name = "fsdp"
    description = "PyTorch FSDP2 (fully_shard): parameters, gradients and optimizer state sharded over the ranks"
    order = 15
    Options = FsdpOptions
    flag_prefix = "fsdp"

    def __init__(self, placement: Placement, device_type: str, timeout_s: float, options: FsdpOptions | None = None) -> None:
        self.fsdp_options = options or FsdpOptions()
        self._units = Units()
        super().__init__(placement, device_type, timeout_s, None)

    @classmethod
    def check_training(cls, options: FsdpOptions, precision: str, device_type: str) -> None:
        if options.cpu_offload and device_type != "cuda":
            raise ConfigError("fsdp-cpu-offload", "offloads from a GPU to host memory: needs --device cuda")
        if precision == "fp16":
            raise ConfigError("precision", "fp16 with its gradient scaler does not apply to FSDP here; use "
                                           "--fsdp-param-dtype fp16 or bf16 (FSDP's own mixed precision), or --precision bf16")

    @classmethod
    def check_model(cls, build_on_meta: Callable[[], nn.Module], workload: str) -> None:
        if any(isinstance(m, UNSHARDABLE) for m in build_on_meta().modules()):
            raise ConfigError("engine", f"fsdp cannot shard workload {workload!r}: its recurrent layer's fused kernel "
                                        "takes its weights as plain tensors, not FSDP's sharded ones; use --engine ddp")

    def wrap_model(self, model: nn.Module, split: Any = None) -> nn.Module:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

        options = self.fsdp_options
        mesh = init_device_mesh(self.device.type, (self.placement.world_size,))
        policy = MixedPrecisionPolicy(param_dtype=DTYPES.get(options.param_dtype or ""),
                                      reduce_dtype=DTYPES.get(options.reduce_dtype or ""))
        offload = CPUOffloadPolicy() if options.cpu_offload else OffloadPolicy()
        units = shard_units(model)
        for block in units:
            fully_shard(block, mesh=mesh, reshard_after_forward=options.reshard_after_forward, mp_policy=policy,
                        offload_policy=offload)
        self._units = Units.of(model, units)
        return fully_shard(model, mesh=mesh, reshard_after_forward=options.reshard_after_forward, mp_policy=policy,
                           offload_policy=offload)

    @contextlib.contextmanager
    def no_sync(self, model: nn.Module) -> Iterator[None]:
        """FSDP2's own switch: backward keeps each rank's gradients unsharded, with no reduce-scatter, and the
        optimizer sees none, so these steps change no parameter. The all-gathers of parameters still run:
        FSDP's compute-only step includes them, and its exposed communication is the reduce-scatters'.
        zero_grad does not reach the kept gradients (the next synced backward would reduce-scatter them
        too): the runner's compute-only window is its last."""
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)

    def gradient_bucketing(self, model: nn.Module) -> dict[str, Any] | None:
        return None  # reduce-scatters per shard unit: the timeline keeps per-gradient times only

    def counters(self, model: nn.Module) -> dict[str, Any] | None:
        """What FSDP sends per step (facts of the wrapping, not timings): the collectives per shard unit, the
        gradient bytes reduce-scattered and the parameter bytes this rank holds."""
        blocks, root = self._units.blocks, self._units.root
        units = [*blocks, *([] if root is None else [root])]
        regathered = sum(blocks) if self.fsdp_options.reshard_after_forward else 0
        local = [getattr(p, "to_local", lambda: p)() for p in model.parameters()]
        return {"shard_units": len(units), "all_gathers_per_step": len(units) + regathered,
                "reduce_scatters_per_step": sum(units),
                "gradient_bytes_reduce_scattered_per_step": sum(p.numel() * p.element_size() for p in model.parameters()
                                                                if p.requires_grad),
                "parameter_bytes_this_rank": sum(t.numel() * t.element_size() for t in local),
                "source": "the fully_shard wrapping: per unit with parameters one all-gather before forward, again "
                          "before backward when it trains and reshards after forward (the root never does); one "
                          "reduce-scatter per unit with trainable parameters"}

    def versions(self) -> dict[str, Any]:
        return {**super().versions(), "sharding": "fully_shard (FSDP2)"}


def shard_units(model: nn.Module) -> list[nn.Module]:
    """What fully_shard wraps before the root: every module of a ModuleList (transformer blocks), or, in a
    model without one, each child holding parameters (an MLP's layers)."""
    blocks = [m for lst in model.modules() if isinstance(lst, nn.ModuleList) for m in lst]
    if blocks:
        return blocks
    return [child for child in model.children() if any(True for _ in child.parameters())]


@dataclass(frozen=True)
class Units:
    """Per shard unit with parameters, whether it trains (any parameter needing a gradient): the blocks,
    then the root's own parameters (None when it owns none)."""

    blocks: tuple[bool, ...] = ()
    root: bool | None = None

    @classmethod
    def of(cls, model: nn.Module, blocks: list[nn.Module]) -> Units:
        inside = {id(p) for block in blocks for p in block.parameters()}
        own = [p for p in model.parameters() if id(p) not in inside]
        return cls(tuple(any(p.requires_grad for p in block.parameters()) for block in blocks),
                   any(p.requires_grad for p in own) if own else None)

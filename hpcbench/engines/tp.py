"""Tensor-parallel engine: Megatron's column/row split of each layer (torch.distributed.tensor.parallel), on a
device mesh whose other dimension, when there is one, shards the rest with FSDP2 (torchtitan's 2D).

`--tp-degree T` ranks share every layer; the world's other W/T ranks are data-parallel (FSDP over them). The
ranks of one tensor-parallel group read the same batch. The workload says how its model splits
(`Workload.model_split`): which Linear layers are split by columns and which by rows, and, with
`--tp-sequence-parallel`, where activations run on sequence shards (Korthikanti et al. 2022).
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from hpcbench.engines.base import check_degree, register, split_engines
from hpcbench.engines.ddp import DdpEngine
from hpcbench.engines.discovery import Placement
from hpcbench.errors import ConfigError, check_at_least, check_bool

if TYPE_CHECKING:
    from hpcbench.workloads.base import ModelSplit

COUNTED_STEP = 1
"""The step whose collectives are counted (CommDebugMode): the second, a warm-up step, never a timed one."""


@dataclass(kw_only=True)
class TpOptions:
    degree: int | None = None
    """ranks that split every layer (default: all); the other world/degree ranks shard the rest with FSDP (2D)"""
    sequence_parallel: bool = False
    """norms and residuals run on sequence shards: all-gather + reduce-scatter instead of each all-reduce"""

    def __post_init__(self) -> None:
        if self.degree is not None:
            check_at_least("tp-degree", self.degree, 1)
        check_bool("tp-sequence-parallel", self.sequence_parallel)


def matching(model: nn.Module, pattern: str) -> list[str]:
    """Module paths of `model` that `pattern` names (`*` stands for one name: blocks.*.attn)."""
    depth = pattern.count(".")
    return [name for name, _ in model.named_modules() if name.count(".") == depth and fnmatch.fnmatchcase(name, pattern)]


@register
class TpEngine(DdpEngine):
    """DDP's process group; the model split over the mesh's "tp" dimension and FSDP-sharded over "dp"."""

    name = "tp"
    description = "tensor parallel (Megatron column/row split; --tp-degree < world adds FSDP over the rest: 2D)"
    order = 20
    Options = TpOptions
    flag_prefix = "tp"
    needs_model_split = True

    def __init__(self, placement: Placement, device_type: str, timeout_s: float, options: TpOptions | None = None) -> None:
        from torch.distributed.device_mesh import init_device_mesh

        self.tp_options = options or TpOptions()
        super().__init__(placement, device_type, timeout_s, None)
        self.tp = self.tp_options.degree or placement.world_size
        self.mesh = init_device_mesh(self.device.type, (placement.world_size // self.tp, self.tp),
                                     mesh_dim_names=("dp", "tp"))
        self._split: ModelSplit | None = None
        self._counting: Any = None
        self._counted: dict[str, int] | None = None
        self._steps = 0

    @classmethod
    def model_parallel_degree(cls, options: TpOptions, world_size: int) -> int:
        return options.degree or world_size

    @classmethod
    def check_training(cls, options: TpOptions, precision: str, device_type: str) -> None:
        if precision == "fp16":
            raise ConfigError("precision", "fp16's gradient scaler does not apply to tp's sharded parameters here; "
                                           "use --precision bf16 or fp32")

    @classmethod
    def check_split(cls, options: TpOptions, world_size: int, split: ModelSplit | None, batch_size: int,
                    workload: str) -> None:
        if split is None:
            raise ConfigError("engine", f"workload {workload!r} has no tensor-parallel split; it runs under: "
                                        f"{split_engines()}")
        degree = cls.model_parallel_degree(options, world_size)
        check_degree("tp-degree", degree, world_size, split.tensor_divides)
        if options.sequence_parallel:
            if split.sequence is None:
                raise ConfigError("tp-sequence-parallel", f"workload {workload!r} has no sequence to split")
            check_degree("tp-degree", degree, world_size, split.sequence_divides or {})

    def data_shard(self) -> tuple[int, int]:
        return self.mesh["dp"].get_local_rank(), self.mesh["dp"].size()

    def wrap_model(self, model: nn.Module, split: ModelSplit | None = None) -> nn.Module:
        from torch.distributed.tensor.parallel import parallelize_module

        assert split is not None, "the tp engine needs the workload's model split (checked before any process starts)"
        self._split = split
        # every rank built the same weights from the run's seed: each keeps its own slice, nothing is scattered
        parallelize_module(model, self.mesh["tp"], self.plan(model, split), src_data_rank=None)
        if self.mesh["dp"].size() > 1:
            from torch.distributed.fsdp import fully_shard

            from hpcbench.engines.fsdp import shard_units

            for unit in shard_units(model):
                fully_shard(unit, mesh=self.mesh["dp"])
            fully_shard(model, mesh=self.mesh["dp"])
        return model

    def plan(self, model: nn.Module, split: ModelSplit) -> dict[str, Any]:
        """The split's roles as parallel styles, per module path."""
        from torch.distributed.tensor import Replicate, Shard
        from torch.distributed.tensor.parallel import (ColwiseParallel, PrepareModuleInput, RowwiseParallel,
                                                       SequenceParallel)

        sequence = self.tp_options.sequence_parallel
        activations = Shard(1) if sequence else Replicate()  # between the split modules: sequence shards, or whole
        styles = {"colwise": ColwiseParallel, "rowwise": lambda: RowwiseParallel(output_layouts=activations),
                  # one DTensor for all the module's column splits: their gradients add up before one collective
                  "input": lambda: PrepareModuleInput(input_layouts=(activations,), desired_input_layouts=(Replicate(),)),
                  "norm": SequenceParallel,
                  "end": lambda: PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),),
                                                    use_local_output=True),
                  "scatter": lambda: PrepareModuleInput(input_layouts=(Replicate(),), desired_input_layouts=(Shard(1),),
                                                        use_local_output=True)}
        roles = {**split.tensor, **(split.sequence or {} if sequence else {})}
        return {path: styles[role]() for pattern, role in roles.items() for path in matching(model, pattern)}

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer's step; around training step COUNTED_STEP, DTensor's collectives counted (CommDebugMode,
        entered between steps: inside a module's forward its module tracker loses its place)."""
        self._reduce_partial_gradients(optimizer)
        optimizer.step()
        self._steps += 1
        if self._counting is not None:
            self._counting.__exit__(None, None, None)
            counts: Counter[str] = Counter()
            for op, count in self._counting.get_comm_counts().items():
                namespace, name, *_ = str(op).split(".")
                if namespace.lstrip("_") == "c10d_functional":  # DTensor's: not FSDP's, not the run's own votes (c10d ops)
                    counts[name.removesuffix("_").removesuffix("_into_tensor").removesuffix("_tensor")] += count
            self._counted, self._counting = dict(counts), None
        elif self._steps == COUNTED_STEP:
            from torch.distributed.tensor.debug import CommDebugMode

            self._counting = CommDebugMode()
            self._counting.__enter__()

    @staticmethod
    def _reduce_partial_gradients(optimizer: torch.optim.Optimizer) -> None:
        """Sequence parallel leaves the norms' gradients partial sums over sequence shards; reduced here once each
        (Megatron's all-reduce of the norms' gradients), else DTensor reduces them again inside every optimizer op
        that reads them (AdamW: three)."""
        for group in optimizer.param_groups:
            for param in group["params"]:
                grad = param.grad
                if grad is not None and any(p.is_partial() for p in getattr(grad, "placements", ())):
                    param.grad = grad.redistribute(grad.device_mesh, param.placements)

    def no_sync(self, model: nn.Module) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError("tensor parallelism's collectives are inside forward and backward: no step runs "
                                  "without them")

    def counters(self, model: nn.Module) -> dict[str, Any] | None:
        """The collectives of one training step as CommDebugMode counted them, beside the split's Megatron count."""
        split = self._split
        if split is None:
            return None
        sequence = self.tp_options.sequence_parallel
        megatron = (split.megatron_sequence or {}) if sequence else split.megatron
        return {"tp_degree": self.tp, "dp_degree": self.mesh["dp"].size(), "sequence_parallel": sequence,
                "collectives_per_step": self._counted, "megatron_collectives_per_step": megatron,
                "source": f"torch.distributed.tensor.debug.CommDebugMode over training step {COUNTED_STEP + 1} (warm-up), "
                          "DTensor's functional collectives only (FSDP's over dp are c10d calls: not counted)"}

    def versions(self) -> dict[str, Any]:
        return {**super().versions(), "mesh": {"dp": self.mesh["dp"].size(), "tp": self.tp}}


"""Pipeline-parallel engine: the model's blocks cut into stages (torch.distributed.pipelining), micro-batches
flowing through a schedule; the world's other ranks, when there are any, hold data-parallel replicas of the
pipeline (each stage's gradients averaged over the mesh's "dp" dimension after the schedule).

The schedule owns forward, loss and backward per micro-batch, so the runner's step hands them over in one
line (`forward_backward`). Every forward and backward action is timestamped on its rank (`action_timeline`),
so the measured bubble is each stage's idle time inside the schedule, against the analytic (p-1)/(v·m+p-1).
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from hpcbench.engines.base import check_degree, register, split_engines
from hpcbench.engines.ddp import DdpEngine
from hpcbench.engines.discovery import Placement
from hpcbench.errors import ConfigError, check_at_least, check_choice

if TYPE_CHECKING:
    from hpcbench.workloads.base import ModelSplit

SCHEDULES = {"gpipe": ("ScheduleGPipe", 1), "1f1b": ("Schedule1F1B", 1), "interleaved-1f1b": ("ScheduleInterleaved1F1B", 2)}
"""--pp-schedule -> (torch.distributed.pipelining's class, stages per rank)."""


@dataclass(kw_only=True)
class PpOptions:
    degree: int | None = None
    """pipeline stages (ranks per pipeline; default: all); the other world/degree ranks are data-parallel replicas"""
    schedule: str = "1f1b"
    """gpipe (all forwards, then all backwards), 1f1b (one forward, one backward), interleaved-1f1b (2 stages a rank)"""
    microbatches: int | None = None
    """micro-batches each batch is cut into (default: 2 x stages)"""

    def __post_init__(self) -> None:
        check_choice("pp-schedule", self.schedule, tuple(SCHEDULES))
        for flag, value in (("pp-degree", self.degree), ("pp-microbatches", self.microbatches)):
            if value is not None:
                check_at_least(flag, value, 1)


def analytic_bubble(stages: int, microbatches: int, per_rank: int) -> float:
    """The idle share of a schedule whose forwards and backwards take equal time everywhere, communication free:
    (p-1)/(m+p-1) for GPipe and 1F1B (Huang et al. 2019; Narayanan et al. 2019), (p-1)/(v·m+p-1) interleaved with
    v stages a rank (Narayanan et al. 2021, eq. 2, as a share of the whole step)."""
    return (stages - 1) / (per_rank * microbatches + stages - 1)


@dataclass
class ActionTimeline:
    """Per schedule call ("step") and per forward/backward action: (kind, stage, micro-batch, start, end) on this
    rank's clock; CUDA work is bracketed by a device sync at each end of an action."""

    device: torch.device
    stages: int
    microbatches: int
    per_rank: int
    actions: list[tuple[str, int, int, float, float]] = field(default_factory=list)

    def analytic(self) -> float:
        return analytic_bubble(self.stages, self.microbatches, self.per_rank)

    def timed(self, kind: str, stage: int, call: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            microbatch = args[0] if args else next(iter(kwargs.values()), -1)
            start = self.now()
            result = call(*args, **kwargs)
            self.actions.append((kind, stage, int(microbatch), start, self.now()))
            return result

        return run

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


@register
class PpEngine(DdpEngine):
    """DDP's process group; this rank's stages of the pipeline, their gradients averaged over the mesh's "dp"."""

    name = "pp"
    description = "pipeline parallel (GPipe, 1F1B, interleaved 1F1B; --pp-degree < world adds data-parallel replicas)"
    order = 25
    Options = PpOptions
    flag_prefix = "pp"
    needs_model_split = True
    schedules_forward_and_backward = True

    def __init__(self, placement: Placement, device_type: str, timeout_s: float, options: PpOptions | None = None) -> None:
        from torch.distributed.device_mesh import init_device_mesh

        self.pp_options = options or PpOptions()
        super().__init__(placement, device_type, timeout_s, None)
        self.stages = self.pp_options.degree or placement.world_size
        self.per_rank = SCHEDULES[self.pp_options.schedule][1]
        self.microbatches = self.pp_options.microbatches or 2 * self.stages
        self.mesh = init_device_mesh(self.device.type, (placement.world_size // self.stages, self.stages),
                                     mesh_dim_names=("dp", "pp"))
        self.pp_rank = self.mesh["pp"].get_local_rank()
        self.timeline = ActionTimeline(self.device, self.stages, self.microbatches, self.per_rank)
        self._stage_ids = [self.pp_rank + i * self.stages for i in range(self.per_rank)]
        self._stages: list[Any] = []
        self._schedule: Any = None
        self._tied: list[tuple[nn.Parameter, Any]] = []

    @classmethod
    def model_parallel_degree(cls, options: PpOptions, world_size: int) -> int:
        return options.degree or world_size

    @classmethod
    def check_training(cls, options: PpOptions, precision: str, device_type: str) -> None:
        if precision != "fp32":
            raise ConfigError("precision", "the pipeline schedule runs forward and backward itself, outside the "
                                           "step's autocast: pp trains in fp32 here")

    @classmethod
    def check_split(cls, options: PpOptions, world_size: int, split: ModelSplit | None, batch_size: int,
                    workload: str) -> None:
        if split is None:
            raise ConfigError("engine", f"workload {workload!r} has no pipeline split; it runs under: {split_engines()}")
        stages = cls.model_parallel_degree(options, world_size)
        check_degree("pp-degree", stages, world_size, {})
        chunks = stages * SCHEDULES[options.schedule][1]
        if len(split.blocks) % chunks:
            how = f"{stages} ranks x {chunks // stages} stages a rank ({options.schedule})" if chunks != stages else \
                f"{stages} stages"
            raise ConfigError("pp-degree", f"{how} do not divide the model's {len(split.blocks)} blocks "
                                           f"({split.blocks_flag})")
        microbatches = options.microbatches or 2 * stages
        if microbatches < stages:
            raise ConfigError("pp-microbatches", f"{microbatches} is fewer than the {stages} stages: some stage would "
                                                 "never have work in flight")
        if batch_size % microbatches:
            raise ConfigError("pp-microbatches", f"{microbatches} does not divide the batch size {batch_size}")

    def data_shard(self) -> tuple[int, int]:
        return self.mesh["dp"].get_local_rank(), self.mesh["dp"].size()

    def wrap_model(self, model: nn.Module, split: ModelSplit | None = None) -> nn.Module:
        from torch.distributed.pipelining import PipelineStage

        assert split is not None, "the pp engine needs the workload's model split (checked before any process starts)"
        chunks = chunk_paths(split, self.stages * self.per_rank)
        self._tied = self._tied_groups(model, chunks)
        modules = []
        for stage_id in self._stage_ids:
            module = nn.Sequential(OrderedDict((path.replace(".", "/"), model.get_submodule(path))
                                               for path in chunks[stage_id]))
            stage = PipelineStage(module, stage_id, len(chunks), self.device, group=self.mesh["pp"].get_group())
            stage.forward_one_chunk = self.timeline.timed("F", stage_id, stage.forward_one_chunk)
            stage.backward_one_chunk = self.timeline.timed("B", stage_id, stage.backward_one_chunk)
            self._stages.append(stage)
            modules.append(module)
        kept = {id(p) for module in modules for p in module.parameters()}
        for param in model.parameters():  # other stages' weights: freed, so memory per rank is its stages'
            if id(param) not in kept:
                param.data = torch.empty(0, device=param.device, dtype=param.dtype)
        return modules[0] if len(modules) == 1 else nn.ModuleList(modules)

    def _tied_groups(self, model: nn.Module, chunks: list[list[str]]) -> list[tuple[nn.Parameter, Any]]:
        """Parameters held by stages on different ranks (GPT's tied embedding and head): their gradients are summed
        over those ranks before the optimizer steps (Megatron's embedding group). Every rank creates every group."""
        holders: dict[int, tuple[nn.Parameter, set[int]]] = {}
        for stage_id, paths in enumerate(chunks):
            for path in paths:
                for param in model.get_submodule(path).parameters():
                    holders.setdefault(id(param), (param, set()))[1].add(stage_id % self.stages)
        tied = []
        for param, pp_ranks in holders.values():
            if len(pp_ranks) < 2:
                continue
            for dp_index in range(self.mesh["dp"].size()):
                ranks = [int(self.mesh.mesh[dp_index, pp_rank]) for pp_rank in sorted(pp_ranks)]
                group = dist.new_group(ranks)
                if self.placement.rank in ranks:
                    tied.append((param, group))
        return tied

    def forward_backward(self, inputs: Any, targets: Any, loss_fn: Callable[[Any, Any], torch.Tensor]) -> torch.Tensor:
        """The schedule's step: the first stage feeds the inputs, the last computes each micro-batch's loss; the
        mean loss is broadcast from the last stage, so every rank records the step's loss."""
        if self._schedule is None:
            self._schedule = self._build_schedule(loss_fn)
        last = self.stages - 1
        losses: list[torch.Tensor] = []
        start = self.timeline.now()
        args = (inputs,) if 0 in self._stage_ids else ()
        self._schedule.step(*args, target=targets if self.pp_rank == last else None,
                            losses=losses if self.pp_rank == last else None)
        self.timeline.actions.append(("step", self._stage_ids[0], -1, start, self.timeline.now()))
        loss = torch.stack(losses).mean().detach() if losses else torch.zeros((), device=self.device)
        dist.broadcast(loss, group=self.mesh["pp"].get_group(), group_src=last)
        return loss

    def _build_schedule(self, loss_fn: Callable[[Any, Any], torch.Tensor]) -> Any:
        from torch.distributed import pipelining

        schedule = getattr(pipelining, SCHEDULES[self.pp_options.schedule][0])
        stages = self._stages[0] if self.per_rank == 1 else self._stages
        return schedule(stages, n_microbatches=self.microbatches, loss_fn=loss_fn)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Gradients summed where stages share a weight, averaged over the data-parallel replicas (one flat
        all-reduce after the schedule: DDP's hooks fire once per micro-batch and trip over GPipe's all-forwards-
        first order), then the optimizer's step."""
        for param, group in self._tied:
            if param.grad is not None:
                dist.all_reduce(param.grad, group=group)
        if self.mesh["dp"].size() > 1:
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, group=self.mesh["dp"].get_group())
            flat /= self.mesh["dp"].size()
            offset = 0
            for g in grads:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
        optimizer.step()

    def no_sync(self, model: nn.Module) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError("the pipeline's sends between stages are inside its schedule: no step runs "
                                  "without them")

    def replica_group(self) -> int:
        return self.pp_rank

    def action_timeline(self) -> ActionTimeline:
        return self.timeline

    def counters(self, model: nn.Module) -> dict[str, Any] | None:
        return {"pp_degree": self.stages, "dp_degree": self.mesh["dp"].size(), "schedule": self.pp_options.schedule,
                "microbatches": self.microbatches, "stages_per_rank": self.per_rank, "stage_ids": self._stage_ids,
                "bubble_analytic": self.timeline.analytic()}

    def versions(self) -> dict[str, Any]:
        return {**super().versions(), "mesh": {"dp": self.mesh["dp"].size(), "pp": self.stages}}


def chunk_paths(split: ModelSplit, chunks: int) -> list[list[str]]:
    """The module paths of each pipeline chunk, in order: equal numbers of blocks, the first modules on chunk 0,
    the last on the last."""
    per_chunk = len(split.blocks) // chunks
    paths = [[path for block in split.blocks[i * per_chunk:(i + 1) * per_chunk] for path in block]
             for i in range(chunks)]
    paths[0] = [*split.first, *paths[0]]
    paths[-1] = [*paths[-1], *split.last]
    return paths

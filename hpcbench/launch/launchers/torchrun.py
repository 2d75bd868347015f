"""torchrun: one elastic agent per node (started the scheduler's way), c10d rendezvous at the first node."""

from __future__ import annotations

from hpcbench.launch.launchers.base import Launcher, Shape, register
from hpcbench.launch.schedulers import Raw, Scheduler


@register
class Torchrun(Launcher):
    name = "torchrun"
    order = 20

    @classmethod
    def command(cls, shape: Shape, scheduler: type[Scheduler], python: list[str], module_args: list[str]) -> list[str]:
        agents = scheduler.one_process_per_node(shape.nodes, shape.tasks_per_node * shape.threads_per_task)
        return [*agents, *python, "-m", "torch.distributed.run", f"--nnodes={shape.nodes}",
                f"--nproc-per-node={shape.tasks_per_node}", "--rdzv-backend=c10d",
                Raw('--rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT"'), Raw(f"--rdzv-id={scheduler.job_id}"), *module_args]

"""srun: the scheduler starts one task per rank itself; ranks read its task variables (engines/discovery.py)."""

from __future__ import annotations

from hpcbench.launch.launchers.base import Launcher, Shape, register
from hpcbench.launch.schedulers import Scheduler


@register
class Srun(Launcher):
    name = "srun"
    order = 10

    @classmethod
    def command(cls, shape: Shape, scheduler: type[Scheduler], python: list[str], module_args: list[str]) -> list[str]:
        return ["srun", "--kill-on-bad-exit=1", f"--ntasks-per-node={shape.tasks_per_node}",
                f"--cpus-per-task={shape.threads_per_task}", *python, *module_args]

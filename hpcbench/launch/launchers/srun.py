"""srun: the scheduler starts one task per rank itself; ranks read its task variables (engines/discovery.py)."""

from __future__ import annotations

import re

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

    @classmethod
    def failed_tasks(cls, log: str) -> list[tuple[str, str]]:
        """srun's own lines, `srun: error: n2: task 1: Exited with exit code 3` (Slurm 22.05 here; `tasks 0-3` when
        several share the line)."""
        return [(node, f"task{tasks}: {what}") for node, tasks, what in TASK_ERROR.findall(log)]


TASK_ERROR = re.compile(r"^srun: error: (\S+): task(s? [\d,\-]+): (.+)$", re.MULTILINE)

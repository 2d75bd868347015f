"""What a launcher is: a pure function from a job's shape to the tokens of its launch line.

Adding a launcher is adding one module in this package (a `Launcher` subclass decorated with
`@register`). What differs between schedulers (how to reach every node, the node file, the job
id) it asks the scheduler; a scheduler lists the launchers it can use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hpcbench.launch.schedulers import Scheduler
from hpcbench.plugins import Registry

LAUNCHERS: Registry[type[Launcher]] = Registry("launcher", "launcher")


@dataclass(frozen=True, kw_only=True)
class Shape:
    """How many ranks a job starts, and where."""

    nodes: int
    tasks_per_node: int
    threads_per_task: int

    @property
    def num_tasks(self) -> int:
        return self.nodes * self.tasks_per_node


class Launcher:
    name: ClassVar[str]
    order: ClassVar[int] = 100
    needs_rendezvous: ClassVar[bool] = True
    """Whether the job script must export MASTER_ADDR/MASTER_PORT (the scheduler's rendezvous lines)
    before it; False where the ranks find each other themselves."""

    @classmethod
    def command(cls, shape: Shape, scheduler: type[Scheduler], python: list[str], module_args: list[str]) -> list[str]:
        """The launch line as tokens: `python` (with any container wrapper) runs `module_args`
        (`-m hpcbench.worker ...`) once per rank. Literal tokens are quoted at rendering; Raw ones are not."""
        raise NotImplementedError

    @classmethod
    def failed_tasks(cls, log: str) -> list[tuple[str, str]]:
        """(node, what happened) for each task the launcher reported ending badly in a job's `log`, in its order:
        the first is the first to fail (the others mostly the launcher ending the rest). Empty where this
        launcher's output does not say (a survey job that failed then names no node)."""
        return []


def register(cls: type[Launcher]) -> type[Launcher]:
    return LAUNCHERS.register(cls)

"""Torque: PBS Pro's commands and variables, its own resource syntax (nodes=N:ppn) in its template."""

from __future__ import annotations

from hpcbench.launch.schedulers.base import register
from hpcbench.launch.schedulers.pbspro import PbsPro


@register
class Torque(PbsPro):
    name = "torque"
    order = 30
    template = "torque.sh.j2"

    @classmethod
    def leave_out(cls, suspects: list[str], keep: list[str]) -> str:
        """Torque names the hosts it wants in its nodes list."""
        return "qsub -l nodes=" + "+".join(keep)

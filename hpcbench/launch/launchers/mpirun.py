"""mpirun (Open MPI): every rank at once, ranks from OMPI_COMM_WORLD_*; the rendezvous variables forwarded."""

from __future__ import annotations

from hpcbench.launch.launchers.base import Launcher, Shape, register
from hpcbench.launch.schedulers import Scheduler


@register
class Mpirun(Launcher):
    name = "mpirun"
    order = 30
    needs_rendezvous = False  # rank 0 broadcasts its address over MPI (engines.ddp.rendezvous_over_mpi)

    @classmethod
    def command(cls, shape: Shape, scheduler: type[Scheduler], python: list[str], module_args: list[str]) -> list[str]:
        return ["mpirun", "-np", str(shape.num_tasks), *scheduler.mpirun_hosts(), "--map-by",
                f"ppr:{shape.tasks_per_node}:node", "--bind-to", "none", "-x", "OMP_NUM_THREADS", *python, *module_args]

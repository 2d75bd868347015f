"""Rank discovery: one table from launcher environment variables to a Placement.

Training code reads a Placement, never SLURM_* or RANK. A row is used when its rank variable is
set; rows are tried in order, so a torchrun or mpirun started inside an sbatch job is seen as
such. A batch script itself (no srun step: SLURM_STEP_ID unset) is not an srun rank.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """Where this process sits in the job."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    launcher: str
    mpi: bool = False
    """Started by an MPI launcher (mpirun, mpiexec, srun --mpi=pmix): mpi4py can join its ranks."""


@dataclass(frozen=True)
class RankVariables:
    launcher: str
    rank: str
    local_rank: str
    world_size: str
    local_world_size: str


RANK_VARIABLES: tuple[RankVariables, ...] = (
    RankVariables("torchrun", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"),
    RankVariables("horovodrun", "HOROVOD_RANK", "HOROVOD_LOCAL_RANK", "HOROVOD_SIZE", "HOROVOD_LOCAL_SIZE"),
    # MPI before Slurm: mpirun inside an allocation inherits the batch step's SLURM_PROCID=0.
    RankVariables("mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_SIZE",
                  "OMPI_COMM_WORLD_LOCAL_SIZE"),
    RankVariables("mpiexec-pmi", "PMI_RANK", "MPI_LOCALRANKID", "PMI_SIZE", "MPI_LOCALNRANKS"),
    # SLURM_TASKS_PER_NODE reads like "2(x3),1"; the entry for this node is picked below.
    RankVariables("srun", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS", "SLURM_TASKS_PER_NODE"),
)


MPI_LAUNCHERS = ("mpirun", "mpiexec-pmi")
PMI_RANK_VARIABLES = ("PMIX_RANK", "PMI_RANK")
"""Set by a process manager MPI can start from (srun --mpi=pmix or pmi2 sets one of them)."""


def discover(environ: Mapping[str, str] | None = None) -> Placement:
    """The placement from the first matching launcher; a lone process is rank 0 of 1."""
    env = os.environ if environ is None else environ
    for row in RANK_VARIABLES:
        if row.rank in env and (row.launcher != "srun" or "SLURM_STEP_ID" in env):
            try:
                local_world_size = env[row.local_world_size]
                if row.launcher == "srun":
                    local_world_size = slurm_tasks_on_node(local_world_size, int(env["SLURM_NODEID"]))
                return Placement(
                    rank=int(env[row.rank]),
                    local_rank=int(env[row.local_rank]),
                    world_size=int(env[row.world_size]),
                    local_world_size=int(local_world_size),
                    launcher=row.launcher,
                    mpi=row.launcher in MPI_LAUNCHERS or any(name in env for name in PMI_RANK_VARIABLES),
                )
            except (KeyError, ValueError) as exc:
                raise RuntimeError(f"{row.launcher} environment is incomplete or malformed: {exc}") from None
    return Placement(rank=0, local_rank=0, world_size=1, local_world_size=1, launcher="none")


def slurm_tasks_on_node(tasks_per_node: str, node_index: int) -> int:
    """Expand Slurm's compressed list ("2(x3),1" = 2,2,2,1) and take this node's entry."""
    counts: list[int] = []
    for item in tasks_per_node.split(","):
        count, _, repeat = item.partition("(x")
        counts += [int(count)] * (int(repeat.rstrip(")")) if repeat else 1)
    return counts[node_index]

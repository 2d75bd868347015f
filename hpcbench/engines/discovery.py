"""Rank discovery: one table from launcher environment variables to a Placement.

Training code reads a Placement, never SLURM_* or RANK. A row is used when its rank variable is
set; rows are tried in order, so a torchrun started inside an sbatch job is seen as torchrun.
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


@dataclass(frozen=True)
class RankVariables:
    launcher: str
    rank: str
    local_rank: str
    world_size: str
    local_world_size: str


RANK_VARIABLES: tuple[RankVariables, ...] = (
    RankVariables("torchrun", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"),
    # The cluster launchers add their rows here: Slurm srun (SLURM_PROCID, SLURM_LOCALID,
    # SLURM_NTASKS, SLURM_NTASKS_PER_NODE), Open MPI (OMPI_COMM_WORLD_*), PMI (PMI_RANK, PMI_SIZE).
)


def discover(environ: Mapping[str, str] | None = None) -> Placement:
    """The placement from the first matching launcher; a lone process is rank 0 of 1."""
    env = os.environ if environ is None else environ
    for row in RANK_VARIABLES:
        if row.rank in env:
            try:
                return Placement(
                    rank=int(env[row.rank]),
                    local_rank=int(env[row.local_rank]),
                    world_size=int(env[row.world_size]),
                    local_world_size=int(env[row.local_world_size]),
                    launcher=row.launcher,
                )
            except (KeyError, ValueError) as exc:
                raise RuntimeError(f"{row.launcher} environment is incomplete or malformed: {exc}") from None
    return Placement(rank=0, local_rank=0, world_size=1, local_world_size=1, launcher="none")

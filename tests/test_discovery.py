from hpcbench.engines.discovery import Placement, discover

import pytest


def test_torchrun_variables_give_the_placement():
    env = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "2"}
    assert discover(env) == Placement(rank=3, local_rank=1, world_size=8, local_world_size=2, launcher="torchrun")


def test_no_launcher_is_a_single_process():
    assert discover({}) == Placement(rank=0, local_rank=0, world_size=1, local_world_size=1, launcher="none")


def test_incomplete_launcher_environment_is_an_error_naming_the_launcher():
    with pytest.raises(RuntimeError, match="torchrun"):
        discover({"RANK": "0", "WORLD_SIZE": "2"})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8", "SLURM_TASKS_PER_NODE": "4(x2)",
          "SLURM_NODEID": "1", "SLURM_STEP_ID": "0"}, Placement(5, 1, 8, 4, "srun")),
        ({"SLURM_PROCID": "6", "SLURM_LOCALID": "0", "SLURM_NTASKS": "7", "SLURM_TASKS_PER_NODE": "3(x2),1",
          "SLURM_NODEID": "2", "SLURM_STEP_ID": "0"}, Placement(6, 0, 7, 1, "srun")),
        ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_SIZE": "4",
          "OMPI_COMM_WORLD_LOCAL_SIZE": "2", "SLURM_PROCID": "0", "SLURM_STEP_ID": "batch"},
         Placement(3, 1, 4, 2, "mpirun", mpi=True)),  # mpirun inside an sbatch script: MPI wins over the batch step
        ({"PMI_RANK": "2", "MPI_LOCALRANKID": "0", "PMI_SIZE": "4", "MPI_LOCALNRANKS": "2"},
         Placement(2, 0, 4, 2, "mpiexec-pmi", mpi=True)),
        ({"SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_NTASKS": "4", "SLURM_TASKS_PER_NODE": "2(x2)",
          "SLURM_NODEID": "0", "SLURM_STEP_ID": "0", "PMIX_RANK": "1"},
         Placement(1, 1, 4, 2, "srun", mpi=True)),  # srun --mpi=pmix: MPI can join these ranks
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}, Placement(0, 0, 1, 1, "none")),  # the batch script itself
    ],
)
def test_cluster_launchers(env, expected):
    assert discover(env) == expected

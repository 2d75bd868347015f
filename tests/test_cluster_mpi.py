"""Open MPI without a scheduler: DDP bootstrapped from `mpirun -np 2`, and a PBS job script executed
under a PBS-like environment (PBS_NODEFILE, PBS_JOBID, PBS_O_WORKDIR) with Open MPI's mpiexec."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import assert_refused_on_every_rank, read_records, run_cli

pytestmark = pytest.mark.skipif(not shutil.which("mpirun"), reason="Open MPI not installed (Debian openmpi-bin; .ci/run installs it)")

ROOT_OK = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"} if os.geteuid() == 0 else {}


def mpirun_worker(out_dir, env: dict) -> subprocess.CompletedProcess:
    """`mpirun -np 2 python -m hpcbench.worker ...` with no MASTER_ADDR or MASTER_PORT anywhere."""
    clean = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    return subprocess.run(
        ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", sys.executable, "-m", "hpcbench.worker",
         "--workload", "mlp", "--steps", "3", "--batch-size", "8", "--device", "cpu", "--threads", "1",
         "--out", str(out_dir)],
        capture_output=True, text=True, timeout=180, env={**clean, **ROOT_OK, "OMP_NUM_THREADS": "1", **env},
    )


def test_ddp_finds_its_rendezvous_over_mpi(out_dir):
    pytest.importorskip("mpi4py", reason="mpi4py not installed (pip install 'hpcbench[mpi]'; the test extra has it)")
    result = mpirun_worker(out_dir / "new", {})  # a folder that does not exist yet is created
    assert result.returncode == 0, result.stderr[-3000:]
    [record] = read_records(out_dir / "new")
    assert record["status"] == "ok"
    assert record["provenance"]["launcher"] == "mpirun" and record["provenance"]["world_size"] == 2
    assert record["metrics"]["replicas_identical"] is True


def test_mpirun_workers_refuse_an_unwritable_folder_before_training(tmp_path):
    pytest.importorskip("mpi4py", reason="mpi4py not installed (pip install 'hpcbench[mpi]'; the test extra has it)")
    (tmp_path / "a-file").write_text("not a folder")
    result = mpirun_worker(tmp_path / "a-file" / "results", {})
    assert_refused_on_every_rank(result, 2)


def test_without_mpi4py_the_error_says_what_to_install(out_dir, tmp_path):
    blocker = tmp_path / "no-mpi4py" / "mpi4py"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('mpi4py hidden by the test')\n")
    result = mpirun_worker(out_dir, {"PYTHONPATH": str(blocker.parent)})
    assert result.returncode != 0
    assert "pip install 'hpcbench[mpi]' (or export both)" in result.stderr, result.stderr[-3000:]
    assert "started this rank without MASTER_ADDR/MASTER_PORT" in result.stderr


@pytest.mark.parametrize("scheduler", ["pbspro", "torque"])
def test_pbs_script_runs_under_a_pbs_like_environment(tmp_path, scheduler):
    profile = tmp_path / "site.toml"
    profile.write_text(f'scheduler = "{scheduler}"\npartition = "workq"\ncpus_per_node = 2\npython = "{sys.executable}"\n')
    sweep = tmp_path / "sweep"
    rendered = run_cli("render", "--profile", str(profile), "--nodes", "1", "--tasks-per-node", "2", "--threads", "1",
                       "--workload", "mlp", "--steps", "3", "--batch-size", "8", "--device", "cpu",
                       "--sweep-dir", str(sweep), timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    script = sweep / "job_1n.sh"
    directives = [line for line in script.read_text().splitlines() if line.startswith("#PBS")]
    shape = "-l select=1:ncpus=2:mpiprocs=2" if scheduler == "pbspro" else "-l nodes=1:ppn=2"
    assert f"#PBS {shape}" in directives and "#PBS -q workq" in directives and "#PBS -N hpcbench-mlp" in directives

    nodefile = tmp_path / "nodefile"
    nodefile.write_text("localhost\nlocalhost\n")  # one line per MPI slot, as PBS writes it
    env = {**os.environ, **ROOT_OK, "PBS_NODEFILE": str(nodefile), "PBS_JOBID": "4242.pbs-server",
           "PBS_O_WORKDIR": str(tmp_path), "PBS_JOBNAME": "hpcbench-mlp"}
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=180, env=env, cwd="/")
    assert result.returncode == 0, result.stderr[-3000:]
    [record] = read_records(sweep / "records")
    assert record["status"] == "ok" and record["provenance"]["world_size"] == 2
    assert record["provenance"]["launcher"] == "mpirun"
    assert record["provenance"]["scheduler"] == {"scheduler": "pbs", "job_id": "4242.pbs-server", "job_name": "hpcbench-mlp",
                                                 "array_task_id": None, "node_list": "localhost", "num_nodes": 1}

"""Open MPI without a scheduler: DDP bootstrapped from `mpirun -np 2`, and a PBS job script executed
under a PBS-like environment (PBS_NODEFILE, PBS_JOBID, PBS_O_WORKDIR) with Open MPI's mpiexec."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import read_records, run_cli
from hpcbench.engines.ddp import free_port

pytestmark = pytest.mark.skipif(not shutil.which("mpirun"), reason="Open MPI not installed (Debian openmpi-bin; .ci/run installs it)")

ROOT_OK = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"} if os.geteuid() == 0 else {}


def test_ddp_bootstrapped_from_mpirun(out_dir):
    env = {**os.environ, **ROOT_OK, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", "-x", "MASTER_ADDR", "-x", "MASTER_PORT",
         sys.executable, "-m", "hpcbench.worker", "--workload", "mlp", "--steps", "3", "--batch-size", "8",
         "--device", "cpu", "--threads", "1", "--out", str(out_dir)],
        capture_output=True, text=True, timeout=180, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [record] = read_records(out_dir)
    assert record["status"] == "ok"
    assert record["provenance"]["launcher"] == "mpirun" and record["provenance"]["world_size"] == 2
    assert record["metrics"]["replicas_identical"] is True


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

"""Real Slurm (jobs/local-slurm.sh: slurmctld + two slurmd nodes on this machine): submit sweeps with every
launcher, poll, and check records, node lists, the report job's order and the time-limit signal."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import read_records, scontrol_job, submit, wait_for_sweep

pytestmark = pytest.mark.slurm


def test_sweep_over_one_and_two_nodes_with_srun(tmp_path, slurm_env):
    sweep = tmp_path / "sweep"
    job_ids = submit(sweep, slurm_env, "--nodes", "1,2", "--tasks-per-node", "2")
    assert wait_for_sweep(sweep, slurm_env) == ["done", "done", "done"]

    by_size = {r["provenance"]["world_size"]: r for r in read_records(sweep / "records")}
    assert sorted(by_size) == [2, 4]
    big = by_size[4]
    assert big["status"] == "ok" and big["provenance"]["launcher"] == "srun"
    assert [r["rank"] for r in big["ranks"]] == [0, 1, 2, 3]  # every rank measured
    assert [r["host"] for r in big["ranks"]] == ["n1", "n1", "n2", "n2"]
    assert big["provenance"]["hostnames"] == ["n1", "n2"] and big["provenance"]["num_nodes"] == 2
    assert big["provenance"]["scheduler"]["node_list"] == "n[1-2]"
    assert big["provenance"]["scheduler"]["job_id"] == job_ids[1]
    assert by_size[2]["provenance"]["hostnames"] == ["n1"]

    # The aggregation job started only after both points had ended, and wrote the report.
    points = [scontrol_job(job_id, slurm_env) for job_id in job_ids[:2]]
    report = scontrol_job(job_ids[2], slurm_env)
    assert report["StartTime"] >= max(p["EndTime"] for p in points)
    assert f"afterok:{job_ids[0]}" in report.get("Dependency", "") or report["JobState"] == "COMPLETED"
    assert (sweep / "report" / "report.html").is_file() and (sweep / "report" / "scaling.csv").is_file()
    assert json.loads((sweep / "sweep.json").read_text())["aggregate"]["job_id"] == job_ids[2]


@pytest.mark.parametrize("launcher", ["torchrun", "mpirun"])
def test_two_node_sweep_with_other_launchers(tmp_path, slurm_env, launcher):
    if launcher == "mpirun" and not shutil.which("mpirun"):
        pytest.skip("Open MPI not installed (Debian openmpi-bin; .ci/run installs it)")
    sweep = tmp_path / "sweep"
    submit(sweep, slurm_env, "--launcher", launcher, "--nodes", "2", "--tasks-per-node", "2")
    assert wait_for_sweep(sweep, slurm_env) == ["done", "done"], (sweep / "logs").iterdir()
    [record] = read_records(sweep / "records")
    assert record["status"] == "ok" and record["provenance"]["launcher"] == launcher
    assert sorted(r["host"] for r in record["ranks"]) == ["n1", "n1", "n2", "n2"]  # torchrun orders nodes as they join


@pytest.mark.horovod
def test_horovod_over_mpi_from_a_rendered_script(tmp_path, slurm_env):
    """The rendered Slurm script starts Horovod with mpirun across both nodes: its MPI controller runs."""
    if importlib.util.find_spec("horovod") is None or not shutil.which("mpirun"):
        pytest.skip("needs Horovod (python -m hpcbench.install_horovod) and Open MPI; .ci/run installs both")
    sweep = tmp_path / "sweep"
    submit(sweep, slurm_env, "--engine", "horovod", "--hvd-controller", "mpi", "--launcher", "mpirun",
           "--nodes", "2", "--tasks-per-node", "2")
    assert wait_for_sweep(sweep, slurm_env) == ["done", "done"], list((sweep / "logs").iterdir())
    [record] = read_records(sweep / "records")
    assert record["status"] == "ok" and record["provenance"]["horovod_controller"] == "mpi"
    assert sorted(r["host"] for r in record["ranks"]) == ["n1", "n1", "n2", "n2"]


def test_srun_with_pmix_needs_no_rendezvous_variables(tmp_path, slurm_env):
    """srun --mpi=pmix across both nodes, no MASTER_*: rank 0's address reaches the others over MPI."""
    pytest.importorskip("mpi4py", reason="mpi4py not installed (pip install 'hpcbench[mpi]'; the test extra has it)")
    clean = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    result = subprocess.run(
        ["srun", "--mpi=pmix", "-N2", "-n4", "--ntasks-per-node=2", "--cpus-per-task=1", sys.executable, "-m", "hpcbench.worker",
         "--workload", "mlp", "--steps", "3", "--warmup", "1", "--repeats", "1", "--batch-size", "8", "--device", "cpu",
         "--threads", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=240, env={**clean, **slurm_env, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [record] = read_records(tmp_path)
    assert record["status"] == "ok" and record["provenance"]["launcher"] == "srun"
    assert sorted(r["host"] for r in record["ranks"]) == ["n1", "n1", "n2", "n2"]


def test_time_limit_signal_leaves_an_interrupted_record(tmp_path, slurm_env):
    """What `#SBATCH --signal=B:USR1@T` does before the limit, sent now: the batch shell passes it on."""
    sweep = tmp_path / "sweep"
    [job_id, _] = submit(sweep, slurm_env, "--nodes", "1", "--tasks-per-node", "2", "--repeats", "1000000")
    deadline = time.monotonic() + 60
    while scontrol_job(job_id, slurm_env)["JobState"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(10)  # into training
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], env={**os.environ, **slurm_env}, check=True)
    assert wait_for_sweep(sweep, slurm_env) == ["failed", "blocked"]  # interrupted is not afterok
    [record] = read_records(sweep / "records")
    assert record["status"] == "interrupted"
    assert record["reason"].startswith("interrupted by SIGUSR1 after "), record["reason"]
    assert list((sweep / "records").glob(".*")) == []
    report_job = json.loads((sweep / "sweep.json").read_text())["aggregate"]["job_id"]
    subprocess.run(["scancel", report_job], env={**os.environ, **slurm_env})  # it would wait forever


SCRIPT = Path(__file__).resolve().parent.parent / "jobs" / "local-slurm.sh"


def test_up_with_its_ports_taken_says_which_and_leaves_nothing_running(tmp_path, slurm_env):
    """The running test cluster holds the ports: a second cluster in another folder must refuse in one line."""
    second = {**os.environ, "HPCBENCH_SLURM_DIR": str(tmp_path / "second")}
    result = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, env=second, timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "port 16817 is taken" in result.stderr, result.stderr
    mine = subprocess.run(["pgrep", "-f", str(tmp_path / "second")], capture_output=True, text=True)
    assert mine.stdout == "", "a daemon of the refused cluster is still running"


def test_down_without_pid_files_is_quiet(tmp_path):
    empty = {**os.environ, "HPCBENCH_SLURM_DIR": str(tmp_path / "never-up")}
    (tmp_path / "never-up" / "munge").mkdir(parents=True)
    result = subprocess.run(["bash", str(SCRIPT), "down"], capture_output=True, text=True, env=empty, timeout=60)
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "local-slurm: down\n"


def walkthrough_lines() -> list[str]:
    """The commands of jobs/README.md's walk-through, as a participant types them."""
    text = (Path(__file__).resolve().parent.parent / "jobs" / "README.md").read_text()
    block = text.split("<!-- walkthrough:", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_the_jobs_readme_walkthrough_runs_as_written(tmp_path, slurm_env):
    (tmp_path / "jobs").symlink_to(Path(__file__).resolve().parent.parent / "jobs")
    env = {**os.environ, **slurm_env}
    lines = walkthrough_lines()
    assert [line.split()[:2] for line in lines] == [["cp", "jobs/profiles/local-slurm.toml"], ["hpcbench", "render"],
                                                    ["hpcbench", "submit"], ["hpcbench", "status"], ["ls", "results/walkthrough/report"]]
    outputs = []
    for line in lines:
        command = line.replace("hpcbench ", f"{sys.executable} -m hpcbench ", 1) if line.startswith("hpcbench ") else line
        if line.startswith("hpcbench status"):  # "until every job says done"
            wait_for_sweep(tmp_path / "results" / "walkthrough", slurm_env)
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{line}\n{result.stderr}"
        outputs.append(result.stdout)
    assert outputs[1].count(".sh") == 3  # two point jobs and the report job, rendered
    assert all(state == "done" for state in (row.split()[1] for row in outputs[3].splitlines()))
    assert {"report.html", "report.md", "scaling.csv"} <= set(outputs[4].split())


def test_submit_checks_the_nodes_cpus_against_the_running_cluster(tmp_path, slurm_env):
    """A profile that says more CPUs a node than the running cluster's nodes have (the practice cluster brought up
    with `--cpus-per-node 1`, or a site profile gone stale): refused before sbatch, naming the profile and what
    sinfo reports, and nothing is written or submitted."""
    from conftest import run_cli

    shipped = (Path(__file__).resolve().parent.parent / "jobs" / "profiles" / "local-slurm.toml").read_text()
    profile = tmp_path / "stale.toml"
    profile.write_text(shipped.replace("cpus_per_node = 4", "cpus_per_node = 16"))
    sweep = tmp_path / "sweep"
    result = run_cli("submit", "--profile", str(profile), "--threads", "1", "--workload", "mlp", "--steps", "5",
                     "--device", "cpu", "--nodes", "1", "--tasks-per-node", "8", "--sweep-dir", str(sweep),
                     env=slurm_env, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "tasks-per-node: 8 tasks x 1 thread(s) need 8 CPUs a node; the cluster's nodes" in result.stderr
    assert "have 4 (slurm says; the profile says cpus_per_node = 16)" in result.stderr and not sweep.exists()


def test_a_job_after_a_failed_one_runs_when_asked_and_srun_names_the_failed_node(tmp_path, slurm_env, monkeypatch):
    """The survey's diagnosis job depends on the survey job `afterany` (it reports a failure), and reads srun's own
    lines to name the node whose task failed first: both on the real daemons, as Slurm 22.05 writes them."""
    from hpcbench.launch.launchers.srun import Srun
    from hpcbench.launch.schedulers.slurm import Slurm

    failing, after = tmp_path / "failing.sh", tmp_path / "after.sh"
    failing.write_text("#!/bin/bash\n#SBATCH -N2\n#SBATCH --ntasks-per-node=1\n"
                       f"#SBATCH --output={tmp_path}/failing.out\n"
                       "srun --kill-on-bad-exit=1 bash -c '[ \"$SLURM_PROCID\" = 1 ] && exit 3; sleep 20'\n")
    after.write_text(f"#!/bin/bash\n#SBATCH --output={tmp_path}/after.out\necho ran\n")
    for name, value in slurm_env.items():  # the scheduler's commands read SLURM_CONF from this process
        monkeypatch.setenv(name, value)
    first = Slurm.submit(str(failing), [])
    second = Slurm.submit(str(after), [first], whatever_end=True)
    deadline = time.monotonic() + 90
    while {Slurm.state(first), Slurm.state(second)} - {"done", "failed"}:
        assert time.monotonic() < deadline, (Slurm.state(first), Slurm.state(second))
        time.sleep(1)
    assert (Slurm.state(first), Slurm.state(second)) == ("failed", "done")
    failed = Srun.failed_tasks((tmp_path / "failing.out").read_text())
    assert failed[0] == ("n2", "task 1: Exited with exit code 3") and ("n1", "task 0: Terminated") in failed[1:]

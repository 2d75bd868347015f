"""Job scripts: golden files for every scheduler x launcher, and bad input refused before anything is written.

Regenerate the golden files after an intended change with `UPDATE_GOLDEN=1 pytest tests/test_jobs_render.py`.
"""

import os
from pathlib import Path

import pytest

from conftest import cli_in_process
from hpcbench.config import ConfigError, RunConfig
from hpcbench.launch.jobs import LAUNCHERS, SiteProfile, load_profile, plan_sweep, render_sweep

GOLDEN = Path(__file__).parent / "golden"
COMBINATIONS = [(scheduler, launcher) for scheduler, launchers in LAUNCHERS.items() for launcher in launchers]


def site(scheduler: str) -> SiteProfile:
    return SiteProfile(
        scheduler=scheduler, partition="gpu", account="proj-42", qos="normal" if scheduler == "slurm" else None,
        time_limit="01:30:00", cpus_per_node=32, gpus_per_node=4, modules=("cuda/12.4", "openmpi/4.1"),
        setup=("export NCCL_DEBUG=WARN",), container=("apptainer", "exec", "--nv", "/images/hpc bench.sif"),
        python="python3", network="4x HDR200 InfiniBand",
    )


@pytest.mark.parametrize(("scheduler", "launcher"), COMBINATIONS)
def test_rendered_scripts_match_golden_files(scheduler, launcher):
    cfg = RunConfig(workload="cnn", device="cuda", batch_size=64, num_steps=50, options={"model": "resnet50"})
    specs = plan_sweep(cfg, profile=site(scheduler), launcher=launcher, node_counts=[2], tasks_per_node=4,
                       threads_per_task=8, sweep_dir="/scratch/sweeps/cnn", job_name="hpcbench-cnn")
    for path, text in render_sweep(specs).items():
        # The report job does not depend on the launcher: one golden file per scheduler.
        golden = GOLDEN / (f"{scheduler}_{path.name}" if path.name == "aggregate.sh" else f"{scheduler}_{launcher}_{path.name}")
        if os.environ.get("UPDATE_GOLDEN"):
            golden.write_text(text)
        assert text == golden.read_text(), f"{golden.name} differs; if intended, regenerate with UPDATE_GOLDEN=1"


def test_values_are_quoted_not_executed():
    specs = plan_sweep(RunConfig(workload="mlp"), profile=site("slurm"), launcher="srun", node_counts=[1],
                       tasks_per_node=1, threads_per_task=1, sweep_dir="/tmp/sweep", job_name="ok")
    text = next(iter(render_sweep(specs).values()))
    assert "'/images/hpc bench.sif'" in text  # a space in a container path stays one word


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "no-such-site"], "profile: 'no-such-site' is neither a file nor one of: example-gpu-slurm"),
        (["--launcher", "ssh"], "launcher: 'ssh' is not one of: srun, torchrun, mpirun"),
        (["--nodes", "0"], "nodes: must be an integer >= 1, got 0"),
        (["--tasks-per-node", "5"], "tasks-per-node: 5 tasks x 1 threads exceed the profile's 4 CPUs per node"),
        (["--job-name", "x; touch /tmp/pwned"], "job-name: 'x; touch /tmp/pwned' is not a valid name"),
        (["--job-name", "$(reboot)"], "job-name: '$(reboot)' is not a valid name"),
        (["--steps", "0"], "steps: must be an integer >= 1, got 0"),
    ],
)
def test_bad_cluster_input_writes_and_submits_nothing(tmp_path, args, message):
    sweep = tmp_path / "sweep"
    base = {"--profile": "local-slurm", "--nodes": "1,2", "--threads": "1", "--workload": "mlp"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = [token for pair in base.items() for token in pair]
    for command in ("render", "submit"):
        result = cli_in_process(command, *argv, "--sweep-dir", str(sweep))
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
        assert not sweep.exists(), "nothing may be written for bad input"
    assert not Path("/tmp/pwned").exists()


def write_profile(tmp_path, text: str) -> str:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ('scheduler = "lsf"\n', "scheduler: 'lsf' is not one of: slurm, pbspro, torque"),
        ('scheduler = "slurm"\nqueue = "gpu"\n', "unknown key 'queue'; valid keys: scheduler, partition, account"),
        ('scheduler = "slurm"\npartition = "gpu; rm -rf ~"\n', "partition: 'gpu; rm -rf ~' is not a valid name"),
        ('scheduler = "slurm"\ntime_limit = "soon"\n', "time_limit: 'soon' is not [D-]HH[:MM[:SS]]"),
        ('partition = "gpu"\n', "missing key 'scheduler'"),
        ('scheduler = "slurm"\nmodules = ["cuda; id"]\n', "modules: 'cuda; id' is not a module name"),
        ('scheduler = "slurm"\nnetwork = "IB\\nrm -rf ~"\n', "network: 'IB\\nrm -rf ~' is not a one-line description"),
    ],
)
def test_bad_profiles(tmp_path, profile, message):
    with pytest.raises(ConfigError, match=None) as caught:
        load_profile(write_profile(tmp_path, profile))
    assert message in str(caught.value)


def test_unsafe_sweep_dir_is_refused(tmp_path):
    result = cli_in_process("render", "--profile", "local-slurm", "--sweep-dir", str(tmp_path / "a b"))
    assert result.returncode == 2 and "sweep-dir: " in result.stderr
    assert not (tmp_path / "a b").exists()


def test_builtin_profiles_load():
    for name in ("local-slurm", "example-gpu-slurm", "example-pbspro", "example-torque"):
        assert load_profile(name).scheduler in ("slurm", "pbspro", "torque")


def test_the_practice_cluster_says_down_when_it_is(tmp_path):
    """`local-slurm.sh status` of a cluster that is not up: one word and exit 3 (as an init script's status),
    not sinfo's connection or munge error."""
    import subprocess

    script = Path(__file__).resolve().parent.parent / "jobs" / "local-slurm.sh"
    done = subprocess.run(["bash", str(script), "status"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "HPCBENCH_SLURM_DIR": str(tmp_path)})
    assert (done.returncode, done.stdout.strip(), done.stderr) == (3, "local-slurm: down", "")

"""Sweep files: a matrix of experiments in TOML, validated whole before anything runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_in_process, run_cli
from hpcbench import datafiles
from hpcbench.analysis import load_records
from hpcbench.errors import ConfigError
from hpcbench.matrix import builtin_sweeps, load_sweep_file
from hpcbench.sweep import plan_grid


def sweep_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_lists_are_axes_and_the_grid_is_their_product(tmp_path):
    matrix = load_sweep_file(sweep_file(tmp_path, """
workloads = ["mlp", "cnn"]
nproc = [1, 2]
steps = 3
mlp.hidden_size = [64, 128]
cnn.model = ["convnet", "resnet18"]
cnn.image_size = 48
"""))
    grid = plan_grid(matrix)
    points = [(c.workload, c.options.get("hidden_size") or c.options["model"], c.num_procs) for c in grid]
    assert points == [("mlp", 64, 1), ("mlp", 64, 2), ("mlp", 128, 1), ("mlp", 128, 2),
                      ("cnn", "convnet", 1), ("cnn", "convnet", 2), ("cnn", "resnet18", 1), ("cnn", "resnet18", 2)]
    assert {c.num_steps for c in grid} == {3}
    assert {c.options["image_size"] for c in grid if c.workload == "cnn"} == {48}


def test_both_scaling_modes_take_their_own_batch(tmp_path):
    matrix = load_sweep_file(sweep_file(tmp_path, """
workloads = ["mlp"]
nproc = [1, 2]
scaling = ["weak", "strong"]
batch_size = [16, 32]
global_batch_size = 64
"""))
    grid = plan_grid(matrix)
    weak = [(c.batch_size, c.num_procs) for c in grid if c.scaling == "weak"]
    strong = [(c.batch_size, c.num_procs) for c in grid if c.scaling == "strong"]
    assert weak == [(16, 1), (16, 2), (32, 1), (32, 2)]
    assert strong == [(64, 1), (32, 2)]  # the global batch split over the processes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("wrkloads = ['mlp']", "sweep.toml: wrkloads: unknown key; valid keys: workloads, engines, nproc"),
        ("steps = [1, 2]", "sweep.toml: steps: takes one value for the whole sweep (lists are allowed for: "),
        ("workloads = []", "sweep.toml: workloads: is an empty list"),
        ("nproc = [1, 0]", "sweep.toml: nproc: must be an integer >= 1, got 0"),
        ("workloads = ['mlp']\ncnn.model = ['resnet18']", "cnn: options of a workload the sweep does not run (workloads: mlp)"),
        ("workloads = ['mlp']\nmlp.hiden_size = [8]", "hiden-size: not an option of workload 'mlp' (its options: hidden_size"),
        ("workloads = ['mlp']\nmlp = 3", "sweep.toml: mlp: must be a table of mlp's options"),
        ("workloads = ['mlp']\nhorovod.compression = 'fp16'", "horovod: options of an engine the sweep does not run"),
        ("workloads = ['nope']", "workload: 'nope' is not one of"),
        ("workloads = ['mlp']\nseed = 'x'", "seed: must be an integer >= 0, got 'x'"),
        ("steps = ", "sweep file: cannot read"),
    ],
)
def test_bad_sweep_files_are_one_line_errors_before_any_run(tmp_path, text, expected):
    out = tmp_path / "out"
    result = cli_in_process("sweep", str(sweep_file(tmp_path, text)), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() or list(out.iterdir()) == []


def test_a_bad_value_in_the_last_experiment_stops_the_whole_grid(tmp_path):
    """The second image size is invalid: nothing runs, not even the valid first experiment."""
    out = tmp_path / "out"
    path = sweep_file(tmp_path, "workloads = ['cnn']\nnproc = [1]\ncnn.model = 'convnet'\ncnn.image_size = [16, 0]")
    result = cli_in_process("sweep", str(path), "--out", str(out))
    assert result.returncode == 2 and "image-size" in result.stderr, result.stderr
    assert not out.exists() or list(out.iterdir()) == []


def test_a_sweep_file_runs_each_experiment_as_its_own_curve(tmp_path):
    """Flags beside the file override its values; each option value is an experiment of its own."""
    path = sweep_file(tmp_path, "workloads = ['mlp']\nnproc = [1]\nsteps = 50\nwarmup = 0\nrepeats = 1\n"
                                "batch_size = 8\nmlp.hidden_size = [16, 32]\nmlp.num_hidden_layers = 1")
    result = run_cli("sweep", str(path), "--steps", "2", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    runs = load_records([tmp_path / "out"])
    labels = sorted(runs["experiment_label"])
    assert [label.split()[:3] for label in labels] == [["mlp", "hidden_size=16", "num_hidden_layers=1"],
                                                       ["mlp", "hidden_size=32", "num_hidden_layers=1"]]
    assert runs["experiment_id"].nunique() == 2
    assert [len(r) for r in runs["samples_per_s_repeats"]] == [1, 1]
    assert {json.loads(Path(p).read_text())["config"]["num_steps"] for p in runs["path"]} == {2}  # the flag, not the file's 50
    assert "hidden_size=16" in result.stdout and "hidden_size=32" in result.stdout  # the table names both


def test_render_numbers_one_job_per_experiment_and_node_count(tmp_path):
    path = sweep_file(tmp_path, "workloads = ['mlp']\nnodes = [1, 2]\ntasks_per_node = 2\nmlp.hidden_size = [16, 32]")
    result = cli_in_process("render", str(path), "--profile", "local-slurm", "--sweep-dir", str(tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    names = [Path(line).name for line in result.stdout.split()]
    assert names == ["job_01-mlp_1n.sh", "job_01-mlp_2n.sh", "job_02-mlp_1n.sh", "job_02-mlp_2n.sh", "aggregate.sh"]
    second = (tmp_path / "s" / "job_02-mlp_2n.sh").read_text()
    assert "#SBATCH --job-name=hpcbench-mlp-02" in second and "#SBATCH --nodes=2" in second
    assert "--hidden-size 32" in second and "--ntasks-per-node=2" in second


def small_shards(folder: Path) -> Path:
    """Four tar shards of tiny images: enough for the shipped input sweep's 2 nodes x 2 loader workers."""
    datafiles.make(folder, "tar-shards", 8, 16, shard_samples=2)
    return folder


@pytest.mark.parametrize("name", sorted(builtin_sweeps()))
def test_shipped_sweeps_validate_whole(tmp_path, name):
    """Each example renders for a cluster of its kind; the CPU ones also plan locally. A sweep that reads files
    reads the ones this test makes (the shipped path is the README's, on a machine that followed it)."""
    matrix = load_sweep_file(name)
    gpu = matrix.run_values.get("device") == "cuda"
    profile = "example-gpu-slurm" if gpu else "local-slurm"
    data_dir = []
    if matrix.run_values.get("data") == "files":
        data_dir = ["--data-dir", str(small_shards(tmp_path / "shards"))]
        matrix.run_values["data_dir"] = data_dir[1]
    result = cli_in_process("render", name, "--profile", profile, "--sweep-dir", str(tmp_path / name), *data_dir)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no note: the data folder is here and whole
    jobs = len(matrix.experiments()) * len(matrix.node_counts or [1, 2])
    assert len(result.stdout.split()) == jobs + 1  # and the report job
    if not gpu:
        assert plan_grid(matrix)


def test_render_leaves_a_data_folder_it_cannot_see_to_the_job(tmp_path):
    """Cluster data may sit on a file system only the compute nodes mount: render writes the scripts and says
    once that the ranks check the folder when the job starts; a folder that is here is checked here, whole."""
    missing = tmp_path / "only-on-the-nodes"
    flags = ("--profile", "local-slurm", "--workload", "cnn", "--model", "convnet", "--data", "files",
             "--loader-workers", "2", "--nodes", "1,2")
    result = cli_in_process("render", *flags, "--data-dir", str(missing), "--sweep-dir", str(tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == (f"hpcbench render: note: data-dir: {missing} is not on this host; the job's ranks check it "
                             "when it starts (one that cannot read it ends the job with one line)\n")
    assert f"--data-dir {missing}" in (tmp_path / "s" / "job_2n.sh").read_text()

    (small_shards(tmp_path / "here") / "shard-000003.tar").unlink()  # here, but not whole
    result = cli_in_process("render", *flags, "--data-dir", str(tmp_path / "here"), "--sweep-dir", str(tmp_path / "t"))
    assert result.returncode == 2 and "shard-000003.tar is listed in hpcbench-data.json but missing" in result.stderr
    assert not (tmp_path / "t").exists()


def test_a_job_whose_ranks_cannot_see_the_data_folder_ends_with_the_same_line(tmp_path):
    """What render left to the job: the rank checks the folder before any step, one line and exit 2."""
    missing = tmp_path / "only-on-the-nodes"
    result = subprocess.run(
        [sys.executable, "-m", "hpcbench.worker", "--workload", "cnn", "--model", "convnet", "--data", "files",
         "--data-dir", str(missing), "--device", "cpu", "--out", str(tmp_path / "records")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"hpcbench worker: error: data-dir: {missing} does not exist (make one: hpcbench data make "
                             f"--format jpeg-folder|tar-shards ... {missing})\n")
    assert not (tmp_path / "records").exists() or not list((tmp_path / "records").iterdir())


def test_an_unknown_sweep_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="neither a file nor one of: course-demo, cpu-node-study, gpt-engines, gpu-node-scaling"):
        load_sweep_file("nope")


def test_rounds_run_the_whole_grid_again_after_itself(tmp_path):
    """1, 2, 1, 2: drift over the sweep's minutes hits both points alike; the runs of a point pool (same experiment)."""
    matrix = load_sweep_file(sweep_file(tmp_path, "workloads = ['mlp']\nnproc = [1, 2]\nrounds = 2"))
    grid = plan_grid(matrix)
    assert [c.num_procs for c in grid] == [1, 2, 1, 2] and len({c.seed for c in grid}) == 1
    refused = cli_in_process("render", str(sweep_file(tmp_path, "workloads = ['mlp']\nrounds = 2")), "--profile",
                             "local-slurm", "--sweep-dir", str(tmp_path / "s"))
    assert refused.returncode == 2 and "rounds: applies to local sweeps" in refused.stderr

"""Sweep files: a matrix of experiments in TOML, validated whole before anything runs."""

import json
from pathlib import Path

import pytest

from conftest import cli_in_process, run_cli
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


@pytest.mark.parametrize("name", sorted(builtin_sweeps()))
def test_shipped_sweeps_validate_whole(tmp_path, name):
    """Each example renders for a cluster of its kind; the CPU ones also plan locally."""
    matrix = load_sweep_file(name)
    gpu = matrix.run_values.get("device") == "cuda"
    profile = "example-gpu-slurm" if gpu else "local-slurm"
    result = cli_in_process("render", name, "--profile", profile, "--sweep-dir", str(tmp_path / name))
    assert result.returncode == 0, result.stderr
    jobs = len(matrix.experiments()) * len(matrix.node_counts or [1, 2])
    assert len(result.stdout.split()) == jobs + 1  # and the report job
    if not gpu:
        assert plan_grid(matrix)


def test_an_unknown_sweep_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="neither a file nor one of: course-demo, cpu-node-study, gpt-engines, gpu-node-scaling"):
        load_sweep_file("nope")

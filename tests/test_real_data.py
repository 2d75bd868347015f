"""The real-data paths read torchvision's on-disk formats from files the tests write."""

import pytest

from conftest import cli_in_process, read_records, run_cli, write_cifar10, write_mnist


@pytest.mark.parametrize(("workload", "writer"), [("mlp", write_mnist), ("cnn", write_cifar10)])
def test_real_data_on_two_ranks(tmp_path, out_dir, workload, writer):
    data_dir = writer(tmp_path / "data")
    extra = ["--model", "convnet"] if workload == "cnn" else []
    result = run_cli("run", "--workload", workload, "--nproc", "2", "--data", "real", "--data-dir", str(data_dir),
                     "--batch-size", "8", "--steps", "6", "--warmup", "1", "--repeats", "1", "--device", "cpu",
                     "--out", str(out_dir), *extra)
    assert result.returncode == 0, result.stderr
    [record] = read_records(out_dir)
    assert record["status"] == "ok" and record["config"]["data"] == "real"
    assert record["ranks"][0]["param_sha256"] == record["ranks"][1]["param_sha256"]


@pytest.mark.parametrize("where", ["empty", "missing"])
def test_a_missing_dataset_is_one_line_before_anything_runs(tmp_path, out_dir, where):
    """Nothing is downloaded: a folder without the dataset names itself and the layout expected, exit 2, no record
    (it was a 50-line traceback ending in torchvision's "You can use download=True", and a failed record)."""
    data_dir = tmp_path if where == "empty" else tmp_path / "missing"
    result = cli_in_process("run", "--workload", "mlp", "--nproc", "1", "--data", "real", "--data-dir", str(data_dir),
                            "--steps", "1", "--device", "cpu", "--out", str(out_dir))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"data-dir: {data_dir}" in result.stderr and "MNIST/raw/*-idx*-ubyte" in result.stderr
    assert "download=True" not in result.stderr
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_a_data_dir_without_data_is_refused(tmp_path, out_dir):
    result = cli_in_process("run", "--workload", "mlp", "--data-dir", str(tmp_path), "--out", str(out_dir))
    assert result.returncode == 2
    assert "data-dir: applies to --data real or --data files only" in result.stderr


def test_vae_reads_fashion_mnist(tmp_path, out_dir):
    data_dir = tmp_path / "data"
    write_mnist(data_dir)
    (data_dir / "MNIST").rename(data_dir / "FashionMNIST")  # same idx format, other folder
    result = run_cli("run", "--workload", "vae", "--dataset", "fashion-mnist", "--nproc", "1", "--data", "real",
                     "--data-dir", str(data_dir), "--batch-size", "8", "--steps", "3", "--warmup", "1", "--repeats", "1",
                     "--device", "cpu", "--out", str(out_dir))
    assert result.returncode == 0, result.stderr
    assert read_records(out_dir)[0]["status"] == "ok"


def test_rnn_reads_character_level_text(tmp_path, out_dir):
    text = tmp_path / "corpus.txt"
    text.write_text("To be, or not to be, that is the question. " * 40)
    result = run_cli("run", "--workload", "rnn", "--nproc", "2", "--data", "real", "--data-dir", str(text),
                     "--vocab-size", "256", "--seq-len", "16", "--batch-size", "4", "--steps", "4", "--warmup", "1",
                     "--repeats", "1", "--device", "cpu", "--out", str(out_dir))
    assert result.returncode == 0, result.stderr
    [record] = read_records(out_dir)
    assert record["status"] == "ok" and record["metrics"]["replicas_identical"]


def test_text_windows_shift_targets_by_one():
    import torch

    from hpcbench.workloads.text import TextWindows

    windows = TextWindows(torch.arange(10), seq_len=3)
    assert len(windows) == 3
    inputs, targets = windows[1]
    assert inputs.tolist() == [3, 4, 5] and targets.tolist() == [4, 5, 6]

"""Bad input: one line naming the field and what is allowed, exit code 2, no traceback, no record."""

import pytest

from conftest import cli_in_process, run_cli


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--workload", "nope"], "workload: 'nope' is not one of: cnn, "),
        (["--nproc", "0"], "nproc: must be an integer >= 1, got 0"),
        (["--batch-size", "-4"], "batch-size: must be an integer >= 1, got -4"),
        (["--workload", "cnn", "--image-size", "8"], "image-size: 8 is too small for resnet18 (minimum 32)"),
        (["--workload", "cnn", "--model", "vgg"], "model: 'vgg' is not one of: resnet18, resnet50, convnet"),
        (["--device", "tpu"], "device: 'tpu' is not one of: auto, cpu, cuda"),
        (["--steps", "many"], "argument --steps: invalid int value: 'many'"),
        (["--data", "real"], "data-dir: required with --data real"),
        (["--repeats", "often"], "repeats: must be an integer >= 1 (or auto), got 'often'"),
        (["--repeats", "0"], "repeats: must be an integer >= 1 (or auto), got 0"),
        (["--repeats-width", "0.05"], "repeats-width: applies to --repeats auto only"),
    ],
)
def test_bad_run_input(out_dir, args, expected):
    result = cli_in_process("run", *args, "--out", str(out_dir))
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert list(out_dir.iterdir()) == []


def test_unwritable_out_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli("run", "--out", str(blocker / "results"), timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("hpcbench run: error: out: cannot write records to ")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--workloads", "mlp,nope"], "workload: 'nope' is not one of"),
        (["--nproc", "1,x"], "nproc: '1,x' is not a comma-separated list of integers"),
        (["--nproc", "1,0"], "nproc: must be an integer >= 1, got 0"),
        (["--workloads", "mlp", "--model", "resnet18"], "model: is not an option of any swept workload (mlp)"),
        (["--nproc", "1,,2"], "nproc: '1,,2' has an empty item"),
        (["--workloads", "mlp,"], "workloads: 'mlp,' has an empty item"),
        (["--scaling", "strong", "--global-batch-size", "63", "--nproc", "1,2"],
         "global-batch-size: 63 does not split evenly over 2 processes"),
        (["--scaling", "strong", "--nproc", "1,2"], "global-batch-size: required with --scaling strong"),
        (["--global-batch-size", "64"], "global-batch-size: applies to --scaling strong only"),
        (["--scaling", "both"], "scaling: 'both' is not one of: weak, strong"),
    ],
)
def test_bad_sweep_input_fails_before_any_run(out_dir, args, expected):
    result = cli_in_process("sweep", *args, "--out", str(out_dir))
    assert result.returncode == 2
    assert expected in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(out_dir.iterdir()) == []


def test_every_command_prints_its_help():
    """argparse %-formats help texts: one "95 %" in a flag's docstring made `hpcbench run --help` a traceback."""
    from hpcbench import cli

    found = list(cli.command_parsers(cli.build_parser()))
    assert len(found) > 10
    for path, parser in found:
        assert parser.format_help().startswith("usage: hpcbench"), path

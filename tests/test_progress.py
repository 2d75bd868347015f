"""Progress: a bar on a terminal, one plain line per repeat in batch logs, never a bar in a pipe."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from conftest import cli_in_process, run_cli

SMALL = ["--workloads", "mlp", "--nproc", "1,2", "--steps", "6", "--warmup", "1", "--repeats", "2", "--batch-size", "16",
         "--hidden-size", "32"]


def run_on_a_terminal(*args: str) -> tuple[int, str]:
    """`python -m hpcbench ARGS` with stdin, stdout and stderr on a pseudo-terminal 120 columns wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k != "HPCBENCH_PROGRESS"}
    process = subprocess.Popen([sys.executable, "-m", "hpcbench", *args], stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # every slave end closed
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    return process.wait(timeout=60), output.decode(errors="replace")


def test_sweep_on_a_terminal_draws_a_bar_with_the_workers_lines_above_it(tmp_path):
    code, output = run_on_a_terminal("sweep", *SMALL, "--out", str(tmp_path))
    assert code == 0, output
    assert "sweep 0/2 points" in output and "sweep 2/2 points" in output
    assert "now: mlp hidden_size=32 num_hidden_layers=3 ddp 2 proc(s)" in output
    # the workers' stderr is the sweep's pipe, not the terminal: their repeats come as lines
    assert output.count("hpcbench: repeat 2/2 done (6 steps, ") == 2
    assert "\r" in output
    assert "weak scaling:" in output.split("sweep 2/2 points")[-1]  # the table after the bar


def test_run_on_a_terminal_draws_rank_0s_bar_over_warm_up_and_repeats(tmp_path):
    code, output = run_on_a_terminal("run", "--workload", "mlp", "--nproc", "2", "--steps", "6", "--warmup", "1",
                                     "--repeats", "2", "--batch-size", "16", "--out", str(tmp_path))
    assert code == 0, output
    assert "warm-up:" in output and "repeat 2/2:" in output and "/19 steps" in output  # warm-up, 2 repeats, the compute-only window
    assert "repeat 1/2 done" not in output  # the bar replaces the lines
    assert output.count("steps [") >= 2  # redrawn, and by one rank only: other ranks never draw
    assert "hpcbench: warm-up done (1 steps)" in output


def test_in_a_pipe_each_repeat_is_one_plain_line(tmp_path):
    env = {"HPCBENCH_PROGRESS": ""}
    result = run_cli("sweep", *SMALL, "--out", str(tmp_path), env=env)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "%|" not in result.stderr
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("hpcbench sweep: point")] == [
        "hpcbench sweep: point 1/2: mlp hidden_size=32 num_hidden_layers=3 ddp 1 proc(s)",
        "hpcbench sweep: point 2/2: mlp hidden_size=32 num_hidden_layers=3 ddp 2 proc(s)",
    ]
    repeats = [line for line in lines if line.startswith("hpcbench: repeat ")]
    assert [line.split(" (")[0] for line in repeats] == ["hpcbench: repeat 1/2 done", "hpcbench: repeat 2/2 done"] * 2


def test_progress_off_prints_no_progress_lines(tmp_path):
    result = run_cli("run", "--workload", "mlp", "--steps", "2", "--warmup", "0", "--repeats", "1", "--batch-size", "8",
                     "--out", str(tmp_path), env={"HPCBENCH_PROGRESS": "off"})
    assert result.returncode == 0, result.stderr
    assert "repeat" not in result.stderr and "warm-up done" not in result.stderr
    assert "samples/s" in result.stdout  # the run's summary is a result, not progress


def test_a_bad_progress_setting_is_refused_before_any_run(tmp_path):
    result = cli_in_process("run", "--workload", "mlp", "--out", str(tmp_path), env={"HPCBENCH_PROGRESS": "fancy"})
    assert result.returncode == 2
    assert result.stderr.strip() == "hpcbench run: error: HPCBENCH_PROGRESS: 'fancy' is not one of: bar, lines, off"
    assert list(tmp_path.iterdir()) == []

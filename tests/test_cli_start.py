"""What a command costs to start: `status` is polled every few seconds beside running jobs (the tests' and the
benchmarks' wait loops, a user's `watch`), so it must not import torch, pandas or matplotlib (2-4 s of CPU each
time on these VMs: a 1-s poller took most of a core from the ranks it waited on)."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "pandas", "matplotlib")


@pytest.mark.parametrize("command", [["status", "{tmp}/no-sweep"], ["survey", "--help"], ["report", "--help"]])
def test_light_commands_start_without_torch_pandas_or_matplotlib(tmp_path, command):
    args = [arg.format(tmp=tmp_path) for arg in command]
    probe = ("import sys\nfrom hpcbench import cli\ntry:\n    cli.main(%r)\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in %r if m in sys.modules))" % (args, HEAVY))
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr


def test_a_heavy_command_still_gets_its_flags():
    """The other side: `history` named, its defaults (from the analysis modules) are there."""
    from hpcbench import cli

    args = cli.build_parser(["history", "x"]).parse_args(["history", "x"])
    assert args.metric == "samples_per_s" and 0 < args.alpha < 1

"""The fsdp engine: against DDP from the same seed, its compute-only window and memory per rank through the
unchanged runner, and what it refuses."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_in_process, read_records, run_cli

HERE = Path(__file__).parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
MLP_BYTES = 4 * (784 * 2048 + 9 * 2048**2 + 2048 * 10 + 10 * 2048 + 10)
LOSS_RTOL = 1e-5
PARAM_ATOL = 1e-6
"""What float32 rounding allows where FSDP's reduce-scatter and DDP's all-reduce sum in different orders
(more ranks, other backends); 2 gloo ranks agree exactly."""


def test_fsdp_trains_as_ddp_does_from_the_same_seed():
    """10 steps of mlp (SGD) and gpt (AdamW) on 2 gloo ranks, each rank its own batches, through the runner's
    TrainStep: measured bit for bit the same losses and final parameters (at 2 ranks a sum of two is the same
    in any order and halving it is exact). mlp's SGD is what catches a reduce-scatter that sums where it
    should average (pytorch#162338): its updates would double, moving parameters ~1e-2 apart."""
    result = subprocess.run([*TORCHRUN, str(HERE / "engine_parity.py")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))
    for workload, fact in facts.items():
        assert len(fact["fsdp"]) == 10 and fact["fsdp"] == pytest.approx(fact["ddp"], rel=LOSS_RTOL), workload
        assert fact["param_max_abs_diff"] <= PARAM_ATOL < fact["moved"] / 100, workload
    assert facts["gpt"]["fsdp"][-1] < facts["gpt"]["fsdp"][0]


@pytest.mark.slow
def test_fsdp_compute_only_window_and_memory_per_rank_fall_with_the_process_count(tmp_path):
    """A model whose parameters dominate: mlp 10 x 2048 wide, 39.5M parameters (0.15 GiB; with gradients and
    momentum 0.44 GiB, against the ~0.67 GiB of a process with torch and gloo). Each rank holds half of it at
    2 processes. The CPU peak is the process's lifetime RSS, and glibc keeps freed blocks under its dynamic
    mmap threshold (up to 32 MiB: this model's 16 MiB layers) in its heap, where later, differently shaped
    tensors cannot reuse them (16 layers: 1.76 GiB at 1 process, 1.98 at 2). A fixed threshold hands them
    back (16 layers: 1.41 and 1.07 GiB)."""
    peaks = {}
    for nproc in (1, 2):
        out = tmp_path / str(nproc)
        result = run_cli("run", "--workload", "mlp", "--engine", "fsdp", "--hidden-size", "2048", "--num-hidden-layers",
                         "10", "--nproc", str(nproc), "--batch-size", "8", "--steps", "2", "--warmup", "0", "--repeats",
                         "1", "--threads", "1", "--out", str(out), env={"MALLOC_MMAP_THRESHOLD_": str(2**20)})
        assert result.returncode == 0, result.stderr[-3000:]
        [record] = read_records(out)
        metrics = record["metrics"]
        assert metrics["compute_step_time_s"] > 0 and metrics["breakdown_note"] is None  # no_sync ran its window
        peaks[nproc] = metrics["peak_memory_gib"]
        [counters, *_] = metrics["engine_counters_by_rank"]
        assert counters["parameter_bytes_this_rank"] == pytest.approx(MLP_BYTES / nproc, rel=1e-3)
    print("peak memory per rank, GiB:", peaks)
    assert peaks[2] < peaks[1] - 0.1


def test_fsdp_refuses_what_it_cannot_shard_and_its_options_elsewhere():
    rnn = cli_in_process("run", "--workload", "rnn", "--engine", "fsdp", "--nproc", "2")  # before any process starts
    assert rnn.returncode == 2 and "fsdp cannot shard workload 'rnn'" in rnn.stderr
    ddp = cli_in_process("run", "--workload", "mlp", "--engine", "ddp", "--fsdp-reshard-after-forward", "false")
    assert ddp.returncode == 2 and "fsdp" in ddp.stderr
    dtype = cli_in_process("run", "--workload", "mlp", "--engine", "fsdp", "--fsdp-param-dtype", "fp8")
    assert dtype.returncode == 2 and "fsdp-param-dtype" in dtype.stderr

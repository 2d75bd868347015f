"""The gpt workload and the fsdp engine, through the unchanged runner: FLOPs against the counter, FSDP
against DDP from the same seed, the sharded replica digest, memory per rank, and what FSDP refuses."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import cli_in_process, read_records, run_cli
from hpcbench.runner import flops_per_sample
from hpcbench.workloads import get_workload
from hpcbench.workloads.gpt import Gpt, GptOptions, palm_flops_per_token, parameters_without_positions

HERE = Path(__file__).parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
MLP_BYTES = 4 * (784 * 2048 + 15 * 2048**2 + 2048 * 10 + 16 * 2048 + 10)
LOSS_RTOL = 1e-5
PARAM_ATOL = 1e-6
"""What float32 rounding allows where FSDP's reduce-scatter and DDP's all-reduce sum in different orders
(more ranks, other backends); 2 gloo ranks agree exactly."""


@pytest.mark.parametrize("options", [GptOptions(), GptOptions(preset="gpt2-124m"),
                                     GptOptions(layers=3, heads=2, embed=96, seq_len=32, vocab_size=300)])
def test_gpt_parameters_and_flops_against_the_counter(options):
    model = Gpt(options) if options.preset is None else get_workload("gpt").meta_model(options)
    assert parameters_without_positions(options) == sum(p.numel() for p in model.parameters()) - model.positions.weight.numel()
    counted = flops_per_sample(get_workload("gpt"), options) / options.seq_len
    width, layers, tokens = options.embed, options.layers, options.seq_len
    # The counter counts matmuls and attention: 6 x the matmul weights plus the attention term 12·L·H·Q·T exactly
    attention = 12 * layers * width * tokens
    assert counted == 6 * (layers * 12 * width**2 + options.vocab_size * width) + attention
    # The PaLM form adds 6 x the biases and norms, which no matmul holds
    assert palm_flops_per_token(options) == counted + 6 * (layers * 13 * width + 2 * width)
    print(f"{options.layers}x{options.embed}: counter / PaLM = {counted / palm_flops_per_token(options):.5f}")


def test_gpt_presets_and_bad_shapes():
    assert parameters_without_positions(GptOptions(preset="gpt2-124m")) == 123_689_472  # nanoGPT: 123.69M with 50304
    result = cli_in_process("run", "--workload", "gpt", "--embed", "100", "--heads", "3")
    assert result.returncode == 2 and "embed: 100 is not a multiple of --heads 3" in result.stderr


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


def test_fsdp_compute_only_window_and_memory_per_rank_fall_with_the_process_count(tmp_path):
    """A model whose parameters dominate: mlp 16 x 2048 wide, 64.6M parameters (0.24 GiB; with gradients and
    momentum 0.72 GiB, against the ~0.67 GiB of a process with torch and gloo). Each rank holds half of it at
    2 processes. The CPU peak is the process's lifetime RSS, and glibc keeps freed blocks under its dynamic
    mmap threshold (up to 32 MiB: this model's 16 MiB layers) in its heap, where later, differently shaped
    tensors cannot reuse them: 1.76 GiB at 1 process, 1.98 at 2. A fixed threshold hands them back: 1.41 and 1.07."""
    peaks = {}
    for nproc in (1, 2):
        out = tmp_path / str(nproc)
        result = run_cli("run", "--workload", "mlp", "--engine", "fsdp", "--hidden-size", "2048", "--num-hidden-layers",
                         "16", "--nproc", str(nproc), "--batch-size", "8", "--steps", "2", "--warmup", "0", "--repeats",
                         "1", "--threads", "1", "--out", str(out), env={"MALLOC_MMAP_THRESHOLD_": str(2**20)})
        assert result.returncode == 0, result.stderr[-3000:]
        [record] = read_records(out)
        metrics = record["metrics"]
        assert metrics["compute_step_time_s"] > 0 and metrics["breakdown_note"] is None  # no_sync ran its window
        peaks[nproc] = metrics["peak_memory_gib"]
        [counters, *_] = metrics["engine_counters_by_rank"]
        assert counters["parameter_bytes_this_rank"] == pytest.approx(MLP_BYTES / nproc, rel=1e-3)
    print("peak memory per rank, GiB:", peaks)
    assert peaks[2] < peaks[1] - 0.2


def test_fsdp_refuses_what_it_cannot_shard_and_its_options_elsewhere():
    rnn = run_cli("run", "--workload", "rnn", "--engine", "fsdp", "--nproc", "1", "--steps", "1", "--warmup", "0",
                  "--repeats", "1")
    assert rnn.returncode == 2 and "fsdp" in rnn.stderr and "rnn" in rnn.stderr
    ddp = cli_in_process("run", "--workload", "mlp", "--engine", "ddp", "--fsdp-reshard-after-forward", "false")
    assert ddp.returncode == 2 and "fsdp" in ddp.stderr
    dtype = cli_in_process("run", "--workload", "mlp", "--engine", "fsdp", "--fsdp-param-dtype", "fp8")
    assert dtype.returncode == 2 and "fsdp-param-dtype" in dtype.stderr

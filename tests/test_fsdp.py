"""The gpt workload and the fsdp engine, through the unchanged runner: FLOPs against the counter, FSDP
against DDP from the same seed, the sharded replica digest, memory per rank, and what FSDP refuses."""

import pytest
import torch

from conftest import cli_in_process, read_records, run_cli
from hpcbench.runner import flops_per_sample
from hpcbench.workloads import get_workload
from hpcbench.workloads.gpt import Gpt, GptOptions, palm_flops_per_token, parameters_without_positions

PARITY = ["--nproc", "2", "--steps", "10", "--warmup", "0", "--repeats", "1", "--no-breakdown", "--device", "cpu",
          "--threads", "1"]
LOSS_RTOL = 1e-4
"""FSDP's reduce-scatter and DDP's all-reduce sum in different orders: float32 rounding, nothing more."""


@pytest.mark.parametrize("options", [GptOptions(), GptOptions(layers=3, heads=2, embed=96, seq_len=32, vocab_size=300)])
def test_gpt_parameters_and_flops_against_the_counter(options):
    model = Gpt(options)
    assert parameters_without_positions(options) == sum(p.numel() for p in model.parameters()) - model.positions.weight.numel()
    counted = flops_per_sample(get_workload("gpt"), options, model, torch.device("cpu")) / options.seq_len
    width, layers, tokens = options.embed, options.layers, options.seq_len
    # The counter counts matmuls only, and none inside SDPA's fused CPU kernel: exactly 6 x the matmul weights
    assert counted == 6 * (layers * 12 * width**2 + options.vocab_size * width)
    # The PaLM form adds the attention term 12·L·H·Q·T and the biases and norms the counter does not see
    missing = 12 * layers * width * tokens + 6 * (layers * 13 * width + 2 * width)
    assert palm_flops_per_token(options) == counted + missing


def test_gpt_presets_and_bad_shapes():
    assert parameters_without_positions(GptOptions(preset="gpt2-124m")) == 123_689_472  # nanoGPT: 123.69M with 50304
    result = cli_in_process("run", "--workload", "gpt", "--embed", "100", "--heads", "3")
    assert result.returncode == 2 and "embed: 100 is not a multiple of --heads 3" in result.stderr


@pytest.mark.parametrize("workload, extra", [("mlp", ["--hidden-size", "256"]), ("gpt", [])])
def test_fsdp_trains_as_ddp_does_from_the_same_seed(tmp_path, workload, extra):
    """mlp's SGD also catches a reduce-scatter that sums where it should average (pytorch#162338): its
    updates would double at 2 ranks; gpt's AdamW is blind to a gradient's scale."""
    losses = {}
    for engine in ("ddp", "fsdp"):
        out = tmp_path / engine
        result = run_cli("run", "--workload", workload, "--engine", engine, *extra, *PARITY, "--out", str(out))
        assert result.returncode == 0, result.stderr[-3000:]
        [record] = read_records(out)
        assert record["status"] == "ok" and record["metrics"]["replicas_identical"]
        losses[engine] = record["ranks"][0]["loss_per_step"]
    assert len(losses["fsdp"]) == 10
    assert losses["fsdp"] == pytest.approx(losses["ddp"], rel=LOSS_RTOL)
    assert losses["fsdp"][-1] < losses["fsdp"][0]


def test_fsdp_compute_only_window_and_memory_per_rank_fall_with_the_process_count(tmp_path):
    """A model whose parameters dominate (mlp 2048 wide: 13M parameters, 52 MB, with gradients and momentum
    156 MB): each rank holds half of it at 2 processes."""
    peaks = {}
    for nproc in (1, 2):
        out = tmp_path / str(nproc)
        result = run_cli("run", "--workload", "mlp", "--engine", "fsdp", "--hidden-size", "2048", "--nproc", str(nproc),
                         "--batch-size", "8", "--steps", "4", "--warmup", "1", "--repeats", "1", "--threads", "1",
                         "--out", str(out))
        assert result.returncode == 0, result.stderr[-3000:]
        [record] = read_records(out)
        metrics = record["metrics"]
        assert metrics["compute_step_time_s"] > 0 and metrics["breakdown_note"] is None  # no_sync ran its window
        peaks[nproc] = metrics["peak_memory_gib"]
    assert peaks[2] < peaks[1]


def test_fsdp_refuses_what_it_cannot_shard_and_its_options_elsewhere():
    rnn = run_cli("run", "--workload", "rnn", "--engine", "fsdp", "--nproc", "1", "--steps", "1", "--warmup", "0",
                  "--repeats", "1")
    assert rnn.returncode == 2 and "fsdp" in rnn.stderr and "rnn" in rnn.stderr
    ddp = cli_in_process("run", "--workload", "mlp", "--engine", "ddp", "--fsdp-reshard-after-forward", "false")
    assert ddp.returncode == 2 and "fsdp" in ddp.stderr
    dtype = cli_in_process("run", "--workload", "mlp", "--engine", "fsdp", "--fsdp-param-dtype", "fp8")
    assert dtype.returncode == 2 and "fsdp-param-dtype" in dtype.stderr

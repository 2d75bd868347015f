"""--precision, --channels-last, --compile and DDP's tuning options on 2 gloo CPU processes: what
GPU clusters run, with the CPU paths checked here (tf32 and fp16 need CUDA: `gpu` tests)."""

from __future__ import annotations

import pytest
import torch

from conftest import cli_in_process, read_records, run_cli
from hpcbench.experiment import experiment_block
from hpcbench.training import channels_last
from hpcbench.workloads import get_workload, registry

SMALL = {"mlp": ["--hidden-size", "64", "--batch-size", "16"],
         "cnn": ["--model", "convnet", "--batch-size", "8"],
         "finetune": ["--image-size", "32", "--batch-size", "4"],
         "vae": ["--batch-size", "16"],
         "gpt": ["--batch-size", "4", "--engine", "fsdp"]}  # autocast under FSDP's sharded parameters
BF16_LOSS_TOLERANCE = 0.05
"""bf16 keeps 8 bits of mantissa (~3 significant digits): over 10 SGD steps from the same weights,
each step's bf16 loss is within 5 % of the first fp32 loss from that step's fp32 loss (the first loss
sets the scale: finetune's falls near 0, where a per-step ratio would mean nothing)."""


def run(tmp_path, *args: str, timeout: float = 300):
    result = run_cli("run", "--nproc", "2", "--steps", "10", "--warmup", "0", "--repeats", "1", "--no-breakdown",
                     "--out", str(tmp_path), *args, timeout=timeout)
    assert result.returncode == 0, result.stderr
    [record] = read_records(tmp_path)
    assert record["status"] == "ok" and record["metrics"]["replicas_identical"], record["reason"]
    return record


BF16_WORKLOADS = sorted(name for name, cls in registry().items() if "bf16" in cls.precisions)


def test_every_workload_but_the_lstm_and_the_policy_trains_in_bf16():
    assert BF16_WORKLOADS == ["cnn", "finetune", "gpt", "mlp", "vae"]


@pytest.mark.slow
@pytest.mark.parametrize("workload", BF16_WORKLOADS)
def test_bf16_keeps_replicas_identical_and_the_loss_near_fp32(tmp_path, workload):
    fp32 = run(tmp_path / "fp32", "--workload", workload, *SMALL[workload])
    bf16 = run(tmp_path / "bf16", "--workload", workload, "--precision", "bf16", *SMALL[workload])
    assert bf16["workload"]["arithmetic"] == {"precision": "bf16", "autocast_dtype": "bfloat16", "grad_scaler": False,
                                              "tf32": None}
    assert bf16["experiment"]["experiment_id"] != fp32["experiment"]["experiment_id"]
    assert bf16["experiment"]["work_id"] != fp32["experiment"]["work_id"]
    exact_losses = fp32["ranks"][0]["loss_per_step"]
    scale = abs(exact_losses[0])
    for step, (exact, reduced) in enumerate(zip(exact_losses, bf16["ranks"][0]["loss_per_step"], strict=True)):
        assert abs(reduced - exact) <= BF16_LOSS_TOLERANCE * scale, f"step {step}: {reduced} vs {exact}"
    assert fp32["ranks"][0]["loss_per_step"] != bf16["ranks"][0]["loss_per_step"]  # autocast did change the arithmetic


def test_done_when_cnn_bf16_channels_last_records_memory_flops_mfu_and_energy(tmp_path):
    record = run(tmp_path, "--workload", "cnn", "--model", "convnet", "--batch-size", "8", "--precision", "bf16",
                 "--channels-last")
    m = record["metrics"]
    assert record["config"]["precision"] == "bf16" and record["config"]["channels_last"] is True
    assert "bf16 channels-last" in record["experiment"]["label"]
    assert 0.01 < m["peak_memory_gib"] < 64 and m["peak_memory_kind"] == "process_peak_rss"
    flops = record["workload"]["flops_per_sample"]
    assert m["tflops_per_device"] == pytest.approx(flops * m["samples_per_s"] / 2 / 1e12)
    assert m["mfu"] is None and m["mfu_peak_tflops"] is None and "CPUs" in m["mfu_note"]
    if m["energy_j"] is None:
        assert m["energy_note"] and m["energy_j_per_sample"] is None
    else:
        assert m["energy_j_per_sample"] > 0 and m["energy_method"] == "rapl"


def test_channels_last_converts_each_distinct_batch_once():
    image, label = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    flat = torch.randn(2, 5)
    out = list(channels_last(iter([(image, label), (image, label), (flat, label)])))
    assert out[0][0].is_contiguous(memory_format=torch.channels_last) and torch.equal(out[0][0], image)
    assert out[1][0] is out[0][0]  # a resident batch is not copied again every step
    assert out[2][0] is flat


@pytest.mark.slow
def test_compile_happens_in_a_warmup_extended_until_nothing_compiles(tmp_path):
    # mlp only: what is checked is the warm-up's extension, not the model. With inductor's cache empty (every
    # fresh CI machine) the course's conv net took 84-106 s to compile here, ResNet-18 longer.
    record = run(tmp_path, "--workload", "mlp", *SMALL["mlp"], "--compile", timeout=600)
    compiled = record["metrics"]["compile"]
    assert compiled["warmup_extended_by"] >= 1 and compiled["warmup_steps_done"] == compiled["warmup_extended_by"]
    assert compiled["compile_s"] > 0 and not compiled["still_compiling_after_warmup"]
    assert compiled["graphs_compiled_in_timed_repeats"] == 0
    assert "compile" in record["experiment"]["label"]


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    ["--ddp-bucket-cap-mb", "0.01", "--ddp-static-graph", "true", "--ddp-gradient-as-bucket-view", "true"],
    ["--ddp-comm-hook", "fp16"],
    ["--ddp-comm-hook", "bf16"],
    ["--ddp-comm-hook", "powersgd", "--ddp-powersgd-rank", "2"],
])
def test_ddp_options_and_comm_hooks_keep_replicas_identical(tmp_path, options):
    record = run(tmp_path, "--workload", "mlp", *SMALL["mlp"], *options)
    given = dict(zip((o.removeprefix("--ddp-").replace("-", "_") for o in options[::2]), options[1::2]))
    recorded = record["config"]["engine_options"]
    for name, value in given.items():
        assert str(recorded[name]).lower() == value, name
    assert record["experiment"]["experiment_id"] != experiment_block({**record["config"], "engine_options": {}})[
        "experiment_id"]


@pytest.mark.parametrize(("args", "field"), [
    (["--precision", "tf32"], "precision: tf32 needs --device cuda"),
    (["--precision", "fp16"], "precision: fp16 needs --device cuda"),
    (["--precision", "fp8"], "precision"),
    (["--workload", "rnn", "--channels-last"], "channels-last: applies to the convolutional workloads only"),
    (["--workload", "rnn", "--precision", "bf16"], "precision: bf16 does not apply to workload 'rnn'"),
    (["--workload", "rl", "--compile"], "compile: does not apply to workload 'rl'"),
    (["--ddp-comm-hook", "int8"], "ddp-comm-hook"),
    (["--ddp-powersgd-rank", "2"], "ddp-powersgd-rank: applies with --ddp-comm-hook powersgd only"),
    (["--engine", "horovod", "--ddp-static-graph", "true"], "engine"),
])
def test_bad_training_options_are_one_line_exit_2_and_no_record(tmp_path, args, field):
    result = cli_in_process("run", "--device", "cpu", "--out", str(tmp_path / "out"), *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0], lines
    assert not list(tmp_path.rglob("*.json"))


def test_fp32_eager_nchw_keeps_the_ids_of_records_made_before_these_options():
    before = {"workload": "mlp", "options": {"hidden_size": 64}, "engine": "ddp", "engine_options": {},
              "device": "cpu", "batch_size": 16, "num_threads": 1}
    now = {**before, "precision": "fp32", "channels_last": False, "compile": False,
           "engine_options": {"bucket_cap_mb": None, "static_graph": False, "gradient_as_bucket_view": False,
                              "comm_hook": "none", "powersgd_rank": None}}
    assert experiment_block(now)["experiment_id"] == experiment_block(before)["experiment_id"]
    assert experiment_block(now)["label"] == experiment_block(before)["label"]
    for change in ({"precision": "bf16"}, {"channels_last": True}, {"compile": True},
                   {"engine_options": {**now["engine_options"], "comm_hook": "fp16"}}):
        assert experiment_block({**now, **change})["experiment_id"] != experiment_block(now)["experiment_id"], change


def test_each_workload_declares_what_applies_to_it():
    for name, cls in registry().items():
        workload = get_workload(name)
        assert set(cls.precisions) <= {"fp32", "tf32", "bf16", "fp16"} and "fp32" in cls.precisions, name
        workload.check_training("fp32", False, False, "cpu")

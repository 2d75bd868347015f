"""Every CUDA path on the first visible GPU: step timing, TF32, autocast and the fp16 scaler, compile,
peak memory, NVML energy, the peak table, NCCL. `benchmarks/gpu_check.py` runs these first; without a GPU
each skips, saying so."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from conftest import read_records, run_cli
from hpcbench.peaks import find_peak
from hpcbench.timing import StepTimer
from hpcbench.training import Arithmetic, set_tf32

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CUDA = torch.device("cuda")


def test_cuda_event_step_times_add_up_to_the_wall_clock_window():
    """Events time the steps on the GPU; the window is bracketed by syncs on the host. Steps of ~10 ms of
    matmuls add up to the window within 5 % (a timer that measured kernel launches would see ~0)."""
    a = torch.randn(4096, 4096, device=CUDA)
    timer = StepTimer(CUDA, time.perf_counter)
    timer.start()
    for _ in range(20):
        for _ in range(8):
            a = torch.tanh(a @ a / 64)
        timer.step_done()
    elapsed, steps = timer.stop()
    assert min(steps) > 1e-3, steps
    assert sum(steps) == pytest.approx(elapsed, rel=0.05)


def test_tf32_is_off_for_fp32_and_on_for_tf32():
    """A 4096-deep fp32 matmul against float64: IEEE fp32 errs ~1e-6 relative, TF32's 10-bit mantissa ~1e-3."""
    a, b = (torch.randn(1024, 4096, device=CUDA, dtype=torch.float64) for _ in range(2))
    exact = a @ b.T
    errors = {}
    try:
        for precision in ("fp32", "tf32"):
            Arithmetic(precision, CUDA)
            approx = (a.float() @ b.float().T).double()
            errors[precision] = ((approx - exact).norm() / exact.norm()).item()
    finally:
        set_tf32(False)
    assert errors["fp32"] < 1e-5 and errors["tf32"] > 30 * errors["fp32"], errors


def test_bf16_autocasts_without_a_scaler_and_fp16_skips_a_step_with_an_injected_inf():
    bf16 = Arithmetic("bf16", CUDA)
    model = nn.Linear(64, 64).to(CUDA)
    with bf16.autocast():
        assert model(torch.randn(8, 64, device=CUDA)).dtype == torch.bfloat16
    assert bf16.scaler is None

    fp16 = Arithmetic("fp16", CUDA)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with fp16.autocast():
        loss = model(torch.randn(8, 64, device=CUDA)).float().pow(2).mean()
    fp16.scaled(loss).backward()
    model.weight.grad[0, 0] = float("inf")
    before, scale = model.weight.detach().clone(), fp16.scaler.get_scale()
    fp16.scaler.step(optimizer)  # what Engine.scaled_step does
    fp16.scaler.update()
    assert torch.equal(model.weight, before) and fp16.scaler.get_scale() < scale


@pytest.mark.parametrize("precision", ["tf32", "fp16", "bf16"])
def test_cuda_precisions_mfu_and_nvml_energy(tmp_path, precision):
    record = run_cli("run", "--workload", "cnn", "--model", "convnet", "--device", "cuda", "--nproc", "1",
                     "--precision", precision, "--channels-last", "--steps", "20", "--repeats", "1",
                     "--out", str(tmp_path))
    assert record.returncode == 0, record.stderr
    [record] = read_records(tmp_path)
    m = record["metrics"]
    assert record["status"] == "ok" and record["workload"]["arithmetic"]["grad_scaler"] == (precision == "fp16")
    assert m["peak_memory_kind"] == "cuda_max_allocated" and m["peak_memory_gib"] > 0
    assert (m["mfu"] is None) == (m["mfu_peak_tflops"] is None) and (m["mfu"] is not None or m["mfu_note"])
    assert m["energy_j_per_sample"] is None and m["energy_note"] or m["energy_method"] == "nvml"


def test_compile_warm_up_peak_memory_energy_and_the_peak_table_on_this_gpu(tmp_path):
    result = run_cli("run", "--workload", "mlp", "--device", "cuda", "--nproc", "1", "--precision", "bf16", "--compile",
                     "--steps", "20", "--repeats", "2", "--out", str(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    [record] = read_records(tmp_path)
    m = record["metrics"]
    compiled = m["compile"]
    assert compiled["warmup_extended_by"] >= 1 and compiled["compile_s"] > 0
    assert compiled["graphs_compiled_in_timed_repeats"] == 0
    assert m["peak_memory_kind"] == "cuda_max_allocated" and m["peak_memory_gib"] > 0
    if m["energy_method"] == "nvml":
        assert m["energy_j"] > 0 and m["energy_j_per_sample"] > 0  # the counter moved
    else:
        assert m["energy_j"] is None and m["energy_note"]
    name = torch.cuda.get_device_name(0)
    peak, facts = find_peak(name, "bf16")
    assert peak, f"{name!r}: {facts['reason']}"  # a GPU hpcbench is run on belongs in the table
    assert m["mfu_peak_tflops"] == peak and 0 < m["mfu"] < 1


def test_netbench_over_nccl_on_one_gpu(tmp_path):
    result = run_cli("netbench", "--backend", "nccl", "--nproc", "1", "--collectives", "all_reduce", "--sizes",
                     "1M,16M", "-n", "5", "--out", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    [record] = read_records(tmp_path)
    assert record["kind"] == "netbench" and record["status"] == "ok", record.get("reason")

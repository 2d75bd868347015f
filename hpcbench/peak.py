"""`hpcbench peak`: the achievable matmul rate of this device, the measured denominator for MFU.

Like stas00/ml-engineering's mamf-finder: a datasheet peak is never reached, so time large
matmuls over a few shapes and keep the best. Each shape runs warm-up multiplications, then
timed ones between device syncs; TFLOP/s = 2·M·N·K / seconds per multiplication. The record
(kind `peak`) keeps every shape's rate, the best one, and the datasheet peak where one is known,
so a report can show MFU against both.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from hpcbench import records
from hpcbench.config import CUDA_ONLY_PRECISIONS, PRECISIONS
from hpcbench.errors import ConfigError, check_at_least, check_choice
from hpcbench.peaks import find_peak
from hpcbench.provenance import host_facts, provenance
from hpcbench.timing import sync
from hpcbench.training import set_tf32

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SHAPES = {"cuda": [4096, 6144, 8192, 12288, 16384], "cpu": [256, 512, 1024, 2048]}
"""Square M = N = K per device type: large enough to be compute-bound there, small enough to take seconds."""


def matmul_tflops(size: int, dtype: torch.dtype, device: torch.device, iters: int, warmup: int) -> float:
    """TFLOP/s of one size x size x size matmul, timed over `iters` between device syncs."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, dtype=dtype, device=device, generator=generator)
    b = torch.randn(size, size, dtype=dtype, device=device, generator=generator)
    out = torch.empty(size, size, dtype=dtype, device=device)
    for _ in range(warmup):
        torch.mm(a, b, out=out)
    sync(device)
    started = time.perf_counter()
    for _ in range(iters):
        torch.mm(a, b, out=out)
    sync(device)
    seconds = (time.perf_counter() - started) / iters
    return 2 * size**3 / seconds / 1e12


def measure_peak(device: torch.device, precision: str, shapes: list[int], iters: int, warmup: int) -> dict[str, Any]:
    if device.type == "cuda":
        set_tf32(precision == "tf32")
    rows = [{"m": n, "n": n, "k": n, "tflops": matmul_tflops(n, DTYPES[precision], device, iters, warmup)}
            for n in shapes]
    best = max(rows, key=lambda row: row["tflops"])
    gpu_model = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    datasheet, facts = find_peak(gpu_model, precision)
    return {"achievable_tflops": best["tflops"], "best_shape": [best["m"], best["n"], best["k"]], "shapes": rows,
            "datasheet_tflops": datasheet, "datasheet_source": facts.get("source"),
            "datasheet_note": facts.get("reason"),
            "achievable_share_of_datasheet": best["tflops"] / datasheet if datasheet else None}


def check(device: str, precision: str, iters: int, warmup: int) -> None:
    check_choice("device", device, ("cpu", "cuda"))
    check_choice("precision", precision, PRECISIONS)
    if precision in CUDA_ONLY_PRECISIONS and device != "cuda":
        raise ConfigError("precision", f"{precision} needs --device cuda; on {device}: fp32, bf16")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda: no GPU visible here")
    check_at_least("iters", iters, 1)
    check_at_least("warmup", warmup, 0)


def run_peak(device: str, precision: str, out_dir: str, sizes: list[int] | None = None, iters: int = 10,
             warmup: int = 3, threads: int | None = None) -> tuple[dict[str, Any], str]:
    """Measure, write the record atomically, return it and its path."""
    check(device, precision, iters, warmup)
    records.check_out_dir(out_dir)
    if threads:
        torch.set_num_threads(threads)
    started = records.utc_now().isoformat()
    run_id = records.new_run_id()
    shapes = sizes or SHAPES[device]
    metrics = measure_peak(torch.device(device), precision, shapes, iters, warmup)
    config = {"device": device, "precision": precision, "shapes": shapes, "iters": iters, "warmup": warmup,
              "num_threads": torch.get_num_threads()}
    prov = provenance(hosts=[host_facts()["host"]], engine_versions={}, started=started,
                      ended=records.utc_now().isoformat(), launcher="none", engine_libraries={})
    record = records.make_record(run_id=run_id, status="ok", reason=None, config=config, workload=None,
                                 metrics=metrics, ranks=[], provenance=prov, kind="peak")
    path = records.record_path(out_dir, "peak", precision, 1, run_id)
    records.write_atomic(path, record)
    return record, str(path)

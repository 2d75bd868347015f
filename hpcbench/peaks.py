"""Dense peak FLOP rates by accelerator model and precision, from the vendors' datasheets, and the
MFU arithmetic that divides by them.

Dense means without 2:4 sparsity: NVIDIA's datasheets print tensor-core rates with sparsity and
mark them, so the dense rate is half the printed one. fp32 means IEEE fp32 (hpcbench switches TF32
off for it): the CUDA-core rate on NVIDIA, the matrix-core rate on AMD. A model that is not in the
table, or a precision its hardware lacks, gives no MFU and says why; there is no fallback peak.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Peak:
    model: str
    tflops: dict[str, float]
    """precision -> dense TFLOP/s; a precision missing here is one the hardware does not have"""
    source: str


NVIDIA_H100 = "NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100), dense = sparse / 2"
NVIDIA_H200 = "NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200), dense = sparse / 2"
NVIDIA_GH200 = ("NVIDIA GH200 Grace Hopper Superchip datasheet (nvidia.com/en-us/data-center/grace-hopper-superchip): "
                "its Hopper GPU's rates, dense = sparse / 2")
NVIDIA_A100 = "NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/a100), dense = sparse / 2"
NVIDIA_V100 = "NVIDIA Tesla V100 GPU datasheet (nvidia.com/en-us/data-center/v100)"
NVIDIA_L40S = "NVIDIA L40S GPU datasheet (nvidia.com/en-us/data-center/l40s), dense = sparse / 2"
AMD_MI250X = "AMD Instinct MI250X data sheet (amd.com/en/products/accelerators/instinct/mi200/mi250x.html)"
AMD_MI300X = "AMD Instinct MI300X data sheet (amd.com/en/products/accelerators/instinct/mi300/mi300x.html), dense"

PEAKS: list[tuple[str, Peak]] = [
    # (pattern on torch.cuda.get_device_name(), peak); the first match wins, so variants come first
    (r"H100 NVL", Peak("H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}, NVIDIA_H100)),
    (r"H100.*PCIe", Peak("H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5, "fp16": 756.5}, NVIDIA_H100)),
    (r"H100.*(SXM|HBM3)", Peak("H100 SXM", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}, NVIDIA_H100)),
    (r"GH200", Peak("GH200 (Hopper GPU)", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}, NVIDIA_GH200)),
    (r"H200 NVL", Peak("H200 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}, NVIDIA_H200)),
    (r"H200", Peak("H200 SXM", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}, NVIDIA_H200)),
    (r"A100", Peak("A100 (40 GB and 80 GB, SXM and PCIe)", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
                   NVIDIA_A100)),
    (r"V100S", Peak("V100S PCIe", {"fp32": 16.4, "fp16": 130.0}, NVIDIA_V100)),
    (r"V100-SXM", Peak("V100 SXM2", {"fp32": 15.7, "fp16": 125.0}, NVIDIA_V100)),
    (r"V100-PCIE", Peak("V100 PCIe", {"fp32": 14.0, "fp16": 112.0}, NVIDIA_V100)),
    (r"L40S", Peak("L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05}, NVIDIA_L40S)),
    (r"MI250X", Peak("MI250X", {"fp32": 95.7, "bf16": 383.0, "fp16": 383.0}, AMD_MI250X)),
    (r"MI300X", Peak("MI300X", {"fp32": 163.4, "tf32": 653.7, "bf16": 1307.4, "fp16": 1307.4}, AMD_MI300X)),
]


def find_peak(gpu_model: str | None, precision: str) -> tuple[float | None, dict[str, Any]]:
    """(dense peak TFLOP/s, facts about it); the peak is None with a reason when unknown."""
    if not gpu_model:
        return None, {"reason": "no datasheet peak for CPUs in the table (`hpcbench peak` measures an achievable one)"}
    for pattern, peak in PEAKS:
        if re.search(rf"(?<![A-Za-z0-9]){pattern}", gpu_model):  # "GH200" is not an "H200"
            if precision not in peak.tflops:  # the lookbehind: "GH200" is not an "H200", nor "NVIDIA H200NVL"
                return None, {"reason": f"{peak.model} has no {precision} arithmetic in its datasheet",
                              "peak_model": peak.model, "source": peak.source}
            return peak.tflops[precision], {"peak_model": peak.model, "source": peak.source}
    return None, {"reason": f"GPU model {gpu_model!r} is not in hpcbench's peak table (hpcbench.peaks.PEAKS)"}


def flop_metrics(flops_per_sample: float | None, samples_per_s: float, world_size: int, precision: str,
                 gpu_models: list[str | None]) -> dict[str, Any]:
    """Achieved TFLOP/s per device and MFU = achieved / dense datasheet peak, with the denominator beside it."""
    tflops = flops_per_sample * samples_per_s / world_size / 1e12 if flops_per_sample else None
    if len(set(gpu_models)) > 1:
        peak, facts = None, {"reason": f"mixed devices in one run: {sorted(set(map(str, gpu_models)))}"}
    else:
        peak, facts = find_peak(gpu_models[0], precision)
    if tflops is None:
        note = "FLOPs per sample unknown (torch's FLOP counter cannot see this model's kernels)"
    else:
        note = facts.get("reason")
    return {
        "tflops_per_device": tflops,
        "mfu": tflops / peak if tflops is not None and peak else None,
        "mfu_peak_tflops": peak,
        "mfu_peak_precision": precision,
        "mfu_peak_model": facts.get("peak_model"),
        "mfu_peak_source": facts.get("source"),
        "mfu_note": note,
    }

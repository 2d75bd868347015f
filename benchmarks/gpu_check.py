"""One prepared check for the first GPU: every CUDA path, then ResNet-50 and GPT-2 124M beside published numbers.

    python benchmarks/gpu_check.py                          # on a GPU node (~7 min on an H100, budget 8)
    python benchmarks/gpu_check.py --device cpu --dry-run   # the same steps at tiny sizes (CI runs it)

Each step is an `hpcbench` or `pytest` command in its own process with its own time limit; a failed
step is reported and the rest still run; the exit status is 1 if any step failed. The steps:

1. `pytest -m gpu`: CUDA-event timing, TF32 off/on, autocast and the fp16 scaler, compile's warm-up,
   CUDA peak memory, NVML energy, the peak table against this GPU's name, netbench over NCCL.
2. ResNet-50 at 224 px, channels-last, batch 256 (128 if 256 does not fit), eager in fp32, tf32, bf16 and
   fp16, compiled in bf16 only (compiling the other three would add ~3 min: the subset that fits 8).
3. `hpcbench peak --device cuda` in bf16 and fp32: the achievable peak MFU is also measured against.
4. gpt at GPT-2 124M's shape, bf16, compiled.

Then one table of every run: throughput, TFLOP/s, MFU against the datasheet and the measured peak, peak
memory, energy per sample, and the published reference for the nearest GPU with its source. Records and
the table (`gpu_check.txt`) go to results/reference/<gpu-model>/, ready to commit. The dry run trains in
fp32 and bf16 only (tf32 and fp16 need CUDA) and compiles nothing (a cold inductor compile of ResNet-50
costs minutes on a CPU): the commands, the record reading and the table are what it keeps from rotting.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 480
"""What the whole check should take on an H100-class GPU, warm-up and compile included."""
TIME_LIMIT_S = 570
"""Past this no step starts and a running one is stopped: the lent GPU machines stop a command at 600 s."""


@dataclass(frozen=True)
class Reference:
    """A published number for the nearest GPU, and where it is printed."""

    workload: str
    label_has: str
    precisions: tuple[str, ...]
    value: float
    unit: str
    gpu: str
    source: str


REFERENCES = [
    Reference("cnn", "resnet50", ("tf32",), 938, "img/s", "1x A100 80GB, batch 256, TF32",
              "NVIDIA DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5/README.md, 'Training "
              "performance: NVIDIA DGX A100 (8x A100 80GB)', 1 GPU (pytorch-21.03 NGC container, real data via DALI)"),
    Reference("cnn", "resnet50", ("bf16", "fp16"), 2470, "img/s", "1x A100 80GB, batch 256, mixed precision",
              "NVIDIA DeepLearningExamples, same table, 'Throughput - mixed precision' (AMP fp16), 1 GPU"),
    Reference("gpt", "", ("bf16",), 0.3714, "MFU", "1x A100, GPT-2 124M, 100 x 1024 tokens per 755 ms step",
              "nanoGPT transformer_sizing.ipynb, 'fraction of A100 used: 37.14%' (against 312 TFLOP/s bf16)"),
]


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout_s: float
    smaller: list[str] | None = None
    """The same command at a batch that fits, tried once if this one runs out of memory."""
    outcome: str = "not run"
    seconds: float = 0.0
    detail: str = ""
    tries: list[str] = field(default_factory=list)


def plan(device: str, dry_run: bool, out: Path) -> list[Step]:
    """The steps in order. `dry_run`: the same commands at tiny sizes, in the precisions a CPU has."""
    hb = [sys.executable, "-m", "hpcbench"]
    run = [*hb, "run", "--device", device, "--nproc", "1", "--out", str(out)]
    steps = [Step("pytest -m gpu", [sys.executable, "-m", "pytest", "-m", "gpu", "-n", "0", "-q", "-p", "no:cacheprovider",
                                    str(ROOT / "tests" / "test_gpu.py")], 240)]
    if dry_run:
        timing = ["--steps", "1", "--warmup", "1", "--repeats", "1", "--no-breakdown"]
        resnet = ["--workload", "cnn", "--model", "resnet50", "--image-size", "32", "--channels-last", *timing]
        # one precision: the rest differ by a flag other tests cover, and each ResNet-50 costs ~20 s on a loaded CPU
        steps += [Step("resnet50 bf16", [*run, *resnet, "--batch-size", "2", "--precision", "bf16"], 300)]
        steps += [Step("peak fp32", [*hb, "peak", "--device", device, "--precision", "fp32", "--sizes", "64,128",
                                     "-n", "2", "-w", "1", "--out", str(out)], 120)]
        steps += [Step("gpt", [*run, "--workload", "gpt", "--batch-size", "2", *timing], 300)]
        return steps
    timing = ["--steps", "20", "--warmup", "10", "--repeats", "3"]
    resnet = ["--workload", "cnn", "--model", "resnet50", "--image-size", "224", "--num-classes", "1000", "--channels-last",
              *timing]
    for precision, compiled in (("fp32", False), ("tf32", False), ("bf16", False), ("fp16", False), ("bf16", True)):
        argv = [*run, *resnet, "--precision", precision, *(["--compile"] if compiled else [])]
        steps.append(Step(f"resnet50 {precision}{' compiled' if compiled else ''}", [*argv, "--batch-size", "256"],
                          240 if compiled else 150, smaller=[*argv, "--batch-size", "128"]))
    steps += [Step(f"peak {precision}", [*hb, "peak", "--device", device, "--precision", precision, "--out", str(out)], 90)
              for precision in ("bf16", "fp32")]
    gpt = [*run, "--workload", "gpt", "--preset", "gpt2-124m", "--precision", "bf16", "--compile", *timing]
    steps.append(Step("gpt2-124m bf16 compiled", [*gpt, "--batch-size", "16"], 240, smaller=[*gpt, "--batch-size", "8"]))
    return steps


def out_of_memory(text: str) -> bool:
    return bool(re.search(r"out of memory|OutOfMemoryError|CUDA error: out of memory", text))


def run_step(step: Step, deadline: float) -> None:
    """Run it (and its smaller form after an out-of-memory failure) until its own limit or the check's
    deadline, whichever comes first; what happened goes into the step."""
    started = time.monotonic()
    for argv in [step.argv, *([step.smaller] if step.smaller else [])]:
        limit = min(step.timeout_s, deadline - time.monotonic())
        if limit < 1:
            step.outcome, step.detail = "failed", "not run: the check's time limit was reached"
            break
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=limit, cwd=ROOT)
        except subprocess.TimeoutExpired:
            step.outcome, step.detail = "failed", f"stopped after {limit:.0f} s"
            break
        step.tries.append(" ".join(argv[argv.index("--batch-size"):][:2]) if "--batch-size" in argv else "")
        if done.returncode == 0:
            step.outcome, step.detail = "ok", last_line(done.stdout)
            break
        step.outcome, step.detail = "failed", f"exit {done.returncode}: {last_line(done.stderr or done.stdout)}"
        if not out_of_memory(done.stderr + done.stdout):
            break
    step.seconds = time.monotonic() - started


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def reference_for(workload: str, label: str, precision: str) -> Reference | None:
    return next((r for r in REFERENCES if r.workload == workload and r.label_has in label and precision in r.precisions),
                None)


def summary(out: Path) -> str:
    """Every run in `out` as one table beside its reference; the references' sources after it."""
    import pandas as pd

    from hpcbench.analysis.efficiency import efficiency_table, peaks_frame
    from hpcbench.analysis.load import read_valid, runs_frame

    found = read_valid([out])
    runs, peaks = runs_frame(found), peaks_frame(found)
    if runs.empty:
        return "no training records"
    table = efficiency_table(runs, peaks)
    references = [reference_for(label.split()[0], label, precision)  # a label starts with its workload
                  for label, precision in zip(table["experiment_label"], table["precision"])]
    table["reference"] = [f"{r.value:g} {r.unit} ({r.gpu})" if r else "" for r in references]
    shown = table[["experiment_label", "compile", "samples_per_s", "tokens_per_s", "tflops_per_device", "mfu",
                   "mfu_measured_peak", "achievable_tflops", "peak_memory_gib", "energy_j_per_sample", "reference"]]
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 60):
        text = shown.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
    sources = sorted({f"  {r.unit} {r.value:g}: {r.source}" for r in references if r})
    notes = sorted({f"  {label}: {note}" for label, note in zip(table["experiment_label"], table["note"]) if note})
    return "\n".join([text, "references:", *sources, *(["why a value is missing:", *notes] if notes else [])])


def gpu_name(device: str) -> str:
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    import platform

    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--dry-run", action="store_true", help="the same steps at tiny sizes (a CPU is enough)")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT_S, help="seconds after which no step starts "
                                                                                 f"and a running one stops (default {TIME_LIMIT_S})")
    parser.add_argument("--out", default=None, help="records and gpu_check.txt (default: results/reference/<gpu-model>/; "
                                                    "a temporary folder for a dry run)")
    args = parser.parse_args()
    name = gpu_name(args.device)
    if args.out:
        out = Path(args.out)
    elif args.dry_run:
        out = Path(tempfile.mkdtemp(prefix="gpu-check-dry-run-"))
    else:
        out = ROOT / "results" / "reference" / re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-").lower()
    out.mkdir(parents=True, exist_ok=True)
    print(f"gpu_check: {name} ({args.device}{', dry run' if args.dry_run else ''}) -> {out}", flush=True)
    started = time.monotonic()
    steps = plan(args.device, args.dry_run, out)
    for step in steps:
        run_step(step, started + args.time_limit)
        print(f"  {step.outcome:6s} {step.seconds:6.1f} s  {step.name}  {step.detail}", flush=True)
    total = time.monotonic() - started
    lines = [f"gpu_check on {name} ({args.device}{', dry run' if args.dry_run else ''}): {total:.0f} s "
             f"(budget {BUDGET_S} s on an H100-class GPU)",
             *[f"  {s.outcome:6s} {s.seconds:6.1f} s  {s.name}  {' then '.join(t for t in s.tries if t)}  {s.detail}"
               for s in steps],
             "", summary(out)]
    text = "\n".join(lines) + "\n"
    from hpcbench.files import write_atomic

    write_atomic(out / "gpu_check.txt", text)
    print("\n" + text)
    return 1 if any(step.outcome != "ok" for step in steps) else 0


if __name__ == "__main__":
    sys.exit(main())

"""How a step computes, beside what it computes: --precision, --channels-last and --compile.

The runner's loop stays the course's (zero_grad, forward, loss, backward, step); this module
supplies what wraps it: the autocast context and gradient scaler, NHWC batches, and a watch
that keeps warm-up going until torch.compile has nothing left to compile.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from hpcbench.convergence import lr_factor, lr_multiplier
from hpcbench.timing import sync
from hpcbench.workloads.base import Batch

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Arithmetic:
    """One precision for a rank: TF32 switched on for tf32 only (off for fp32, cuDNN's convolutions
    included, whose default is on), autocast for bf16 and fp16, and fp16's gradient scaler."""

    def __init__(self, precision: str, device: torch.device) -> None:
        self.precision = precision
        self.device = device
        self.tf32 = set_tf32(precision == "tf32") if device.type == "cuda" else None
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = AUTOCAST_DTYPES.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    def scaled(self, loss: torch.Tensor) -> torch.Tensor:
        """fp16: the loss times the scaler's scale, so small gradients survive in fp16."""
        return self.scaler.scale(loss) if self.scaler else loss

    def settings(self) -> dict[str, Any]:
        """What the record says about the arithmetic: enough to redo it and to pick the peak it ran against."""
        dtype = AUTOCAST_DTYPES.get(self.precision)
        return {"precision": self.precision, "autocast_dtype": str(dtype).removeprefix("torch.") if dtype else None,
                "grad_scaler": self.scaler is not None, "tf32": self.tf32}


def set_tf32(enabled: bool) -> dict[str, Any]:
    """TF32 for matmuls and cuDNN convolutions, through torch's newer fp32_precision switches where
    they exist (mixing them with the older allow_tf32 ones is an error there)."""
    matmul, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and hasattr(conv, "fp32_precision"):
        value = "tf32" if enabled else "ieee"
        matmul.fp32_precision = value
        conv.fp32_precision = value
        return {"matmul": value, "cudnn_conv": value, "switch": "fp32_precision"}
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    return {"matmul": enabled, "cudnn_conv": enabled, "switch": "allow_tf32"}


def channels_last(batches: Iterator[Batch]) -> Iterator[Batch]:
    """Image inputs in NHWC, converted once per distinct batch (a resident synthetic batch: once)."""
    seen, converted = None, None
    for inputs, targets in batches:
        if inputs is not seen:
            seen = inputs
            converted = inputs.contiguous(memory_format=torch.channels_last) if inputs.dim() == 4 else inputs
        yield converted, targets


def compiled_graphs() -> int:
    """Frames torch.compile has converted in this process (dynamo's counter: it grows on a cache miss
    only; its `unique_graphs` stat stays 0 around DistributedDataParallel in torch 2.14)."""
    from torch._dynamo.utils import counters

    return int(counters["frames"]["total"])


class CompileWatch:
    """Warm-up with --compile: goes on until a step on every rank compiled nothing new.

    Each warm-up step is timed between device syncs; the steps that compiled add up to
    `compile_s` (their own compute included: small beside compiling). All ranks decide together
    (a max over their "compiled" flags), so all of them run the same number of steps.
    """

    MAX_EXTRA_STEPS = 20

    def __init__(self, device: torch.device, agree: Callable[[float], float],
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.device = device
        self.agree = agree
        self.clock = clock
        self.compile_s = 0.0
        self.steps = 0
        self.compiling = True  # nothing compiled yet
        self._graphs_at_warmup_end: int | None = None

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        graphs = compiled_graphs()
        started = self.clock()
        yield
        sync(self.device)
        compiled = compiled_graphs() > graphs
        if compiled:
            self.compile_s += self.clock() - started
        self.steps += 1
        self.compiling = self.agree(float(compiled)) > 0

    def wants_more(self, planned_steps: int) -> bool:
        """After the planned warm-up: one more step while the last one compiled (up to MAX_EXTRA_STEPS)."""
        if self.steps < planned_steps:
            return True
        return self.compiling and self.steps < planned_steps + self.MAX_EXTRA_STEPS

    def warmup_done(self) -> None:
        self._graphs_at_warmup_end = compiled_graphs()

    def result(self, planned_steps: int) -> dict[str, Any]:
        """Call right after the timed repeats: a graph compiled inside them would have been timed."""
        later = compiled_graphs() - self._graphs_at_warmup_end if self._graphs_at_warmup_end is not None else None
        return {"compile_s": self.compile_s, "warmup_steps_done": self.steps,
                "warmup_extended_by": max(0, self.steps - planned_steps),
                "still_compiling_after_warmup": self.compiling, "graphs_compiled_in_timed_repeats": later}


def compile_metrics(per_rank: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """--compile: the slowest rank's compile seconds; the warm-up every rank ran (they agree on it)."""
    if not all(per_rank):
        return None
    first = per_rank[0]
    return {**first, "compile_s": max(r["compile_s"] for r in per_rank),
            "graphs_compiled_in_timed_repeats": max(r["graphs_compiled_in_timed_repeats"] or 0 for r in per_rank)}


class LrSchedule:
    """--lr-scaling and --lr-warmup-steps: each param group's rate is its workload's rate times
    convergence.lr_multiplier, set before every optimizer step (Horovod's optimizer wraps the same groups)."""

    def __init__(self, optimizer: torch.optim.Optimizer, scaling: str, warmup_steps: int, k: float) -> None:
        self.optimizer = optimizer
        self.base = [group["lr"] for group in optimizer.param_groups]
        self.factor = lr_factor(scaling, k)
        self.warmup_steps = warmup_steps
        self.active = self.factor != 1.0

    def set(self, step: int) -> None:
        if not self.active:
            return
        multiplier = lr_multiplier(step, self.factor, self.warmup_steps)
        for group, base in zip(self.optimizer.param_groups, self.base):
            group["lr"] = base * multiplier

    def settings(self) -> dict[str, Any]:
        return {"base_lr": self.base[0] if self.base else None, "factor": self.factor,
                "peak_lr": self.base[0] * self.factor if self.base else None, "warmup_steps": self.warmup_steps}

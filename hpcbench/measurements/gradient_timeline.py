"""The gradient-ready timeline: when, within backward, each parameter's gradient is ready, and the
collectives the engine builds from them (hpcbench.buckets) — what the scaling predictor replays
over another network (hpcbench.analysis.predict).

Taken in the compute-only window only, so the throughput windows carry no hook: each step is
stamped where it starts, where backward starts and ends and where the optimizer step ends, and
every gradient as it is accumulated (`register_post_accumulate_grad_hook`). On CUDA the stamps are
events (no sync inside the steps); on a CPU, the run's clock. Per parameter the median over the
window's steps, then the slowest rank. The hooks cost 3.6-5.3 us per gradient on the 2-core VM
(benchmarks/timeline_cost.py): ~0.6 ms of a ResNet-50 step's 161 gradients, inside the compute-only
window only.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch

from hpcbench.buckets import Gradient, buckets
from hpcbench.measurements.base import COMPUTE_ONLY, SYNCED_WARMUP, Measurement, RankContext, RunFacts, register
from hpcbench.timing import sync

BOUNDARIES = ("start", "forward", "backward", "optimizer")
"""The step's marks (runner.TrainStep) kept: step start, backward start (forward and loss done), backward end,
optimizer step end."""


@register
class GradientTimeline(Measurement):
    name = "gradient_timeline"
    order = 900  # inside every other window measurement but step timing's

    def __init__(self, ctx: RankContext) -> None:
        super().__init__(ctx)
        self._handles: list[Any] = []
        self._bytes: dict[int, int] = {}
        self._steps: list[dict[Any, Any]] = []
        self.result: dict[str, Any] | None = None
        self.synced_last_ready_s: float | None = None
        """Median over the synchronised warm-up steps of the last gradient's ready time: backward's compute
        with the engine's communication running beside it (the forecast's interference measure)."""

    def _stamp(self) -> Any:
        if self.ctx.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return self.ctx.clock()

    def start(self, window: str) -> None:
        if window not in (COMPUTE_ONLY, SYNCED_WARMUP) or self.ctx.model is None:
            return
        self._steps = []
        trainable = [(i, p) for i, p in enumerate(self.ctx.model.parameters()) if p.requires_grad]
        self._bytes = {i: p.numel() * p.element_size() for i, p in trainable}
        self._handles = [p.register_post_accumulate_grad_hook(self._hook(i)) for i, p in trainable]

    def _hook(self, index: int) -> Callable[[torch.Tensor], None]:
        def ready(_: torch.Tensor) -> None:
            if self._steps:
                self._steps[-1].setdefault(index, self._stamp())  # a parameter used twice: its gradient is ready once
        return ready

    def marks(self, window: str) -> Callable[[str], None] | None:
        if window not in (COMPUTE_ONLY, SYNCED_WARMUP) or not self._handles:
            return None

        def mark(boundary: str) -> None:
            if boundary == "start":
                self._steps.append({})
            if boundary in BOUNDARIES and self._steps:
                self._steps[-1][boundary] = self._stamp()
        return mark

    def stop(self, window: str, complete: bool) -> None:
        if window not in (COMPUTE_ONLY, SYNCED_WARMUP) or not self._handles:
            return
        for handle in self._handles:
            handle.remove()
        self._handles = []
        sync(self.ctx.device)
        steps = [s for s in self._steps if all(b in s for b in BOUNDARIES)]
        if window == SYNCED_WARMUP:
            self.synced_last_ready_s = self._last_ready(steps) if complete and steps else None
        else:
            self.result = self._summary(steps) if complete and steps else None
            if self.result:
                self.result["last_ready_s"] = self._last_ready(steps)
        self._steps = []

    def _last_ready(self, steps: list[dict[Any, Any]]) -> float | None:
        """Median over steps of the last gradient's ready time after backward began: backward's compute."""
        last = [max(self._seconds(s["forward"], s[i]) for i in self._bytes if i in s) for s in steps
                if any(i in s for i in self._bytes)]
        return statistics.median(last) if last else None

    def _seconds(self, a: Any, b: Any) -> float:
        return a.elapsed_time(b) / 1e3 if self.ctx.device.type == "cuda" else b - a

    def _summary(self, steps: list[dict[Any, Any]]) -> dict[str, Any]:
        """Medians over the steps: forward (data included), backward, optimizer, and each gradient's ready time."""
        def median(values: list[float]) -> float:
            return statistics.median(values)

        ready = {}
        for index in self._bytes:
            times = [self._seconds(s["forward"], s[index]) for s in steps if index in s]
            ready[index] = median(times) if len(times) == len(steps) else None  # unused in some step: not a gradient we can place
        return {
            "forward_s": median([self._seconds(s["start"], s["forward"]) for s in steps]),
            "backward_s": median([self._seconds(s["forward"], s["backward"]) for s in steps]),
            "optimizer_s": median([self._seconds(s["backward"], s["optimizer"]) for s in steps]),
            "param_bytes": [self._bytes.get(i) for i in range(max(self._bytes, default=-1) + 1)],
            "param_ready_s": [ready.get(i) for i in range(max(self._bytes, default=-1) + 1)],
            "steps": len(steps),
            "clock": "CUDA events" if self.ctx.device.type == "cuda" else "host clock",
            "bucketing": self.ctx.bucketing,
        }

    def rank_result(self) -> dict[str, Any]:
        return {"gradient_timeline": self.result, "synced_last_ready_s": self.synced_last_ready_s}

    @classmethod
    def merge(cls, ranks: list[dict[str, Any]], run: RunFacts) -> dict[str, Any]:
        """The slowest rank per parameter and per phase; the engine's collectives from those ready times.
        Null when any rank has no timeline (no compute-only window)."""
        timelines = [r.get("gradient_timeline") for r in ranks]
        if not timelines or not all(timelines):
            return {"gradient_timeline": None}
        first = timelines[0]
        ready = [None if any(t["param_ready_s"][i] is None for t in timelines) else max(t["param_ready_s"][i] for t in timelines)
                 for i in range(len(first["param_ready_s"]))]
        gradients = [Gradient(i, first["param_bytes"][i], r) for i, r in enumerate(ready) if r is not None]
        rule = first["bucketing"]
        return {"gradient_timeline": {
            **{key: max(t[key] for t in timelines) for key in ("forward_s", "backward_s", "optimizer_s")},
            "param_bytes": first["param_bytes"], "param_ready_s": ready,
            "buckets": buckets(gradients, rule) if rule else None,
            "bucketing": rule, "steps": first["steps"], "clock": first["clock"],
            "source": "compute-only window: median over its steps per rank, then the slowest rank",
        }}

"""Step timing: each window's elapsed time and every step's time, on every rank; global throughput;
from the compute-only window, exposed communication and stragglers."""

from __future__ import annotations

from typing import Any

from hpcbench.measurements.base import COMPUTE_ONLY, THROUGHPUT, Measurement, RankContext, RunFacts, register
from hpcbench.timing import StepTimer, compute_only_metrics, straggler_metrics, throughput_metrics


@register
class StepTiming(Measurement):
    """Times the throughput and compute-only windows, bracketed by device syncs (timing.StepTimer)."""

    name = "step_timing"
    order = 1000  # innermost: started last, stopped first

    def __init__(self, ctx: RankContext) -> None:
        super().__init__(ctx)
        self._timer = StepTimer(ctx.device, ctx.clock)
        self.elapsed_s: list[float] = []
        self.step_times_s: list[list[float]] = []
        self.compute_step_times_s: list[float] | None = None

    def start(self, window: str) -> None:
        self._timer.start()

    def step_done(self, window: str) -> None:
        self._timer.step_done()

    def stop(self, window: str, complete: bool) -> None:
        elapsed, steps = self._timer.stop()
        if not complete:  # a partial window is not a measurement
            return
        if window == THROUGHPUT:
            self.elapsed_s.append(elapsed)
            self.step_times_s.append(steps)
        elif window == COMPUTE_ONLY:
            self.compute_step_times_s = steps

    def rank_result(self) -> dict[str, Any]:
        return {"elapsed_s": self.elapsed_s, "step_times_s": self.step_times_s,
                "compute_step_times_s": self.compute_step_times_s}

    @classmethod
    def merge(cls, ranks: list[dict[str, Any]], run: RunFacts) -> dict[str, Any]:
        """Global samples over the slowest rank's time, per repeat (timing.throughput_metrics); the
        breakdown when every rank timed the compute-only window, else nulls and the reason."""
        metrics = throughput_metrics([r["elapsed_s"] for r in ranks], [r["step_times_s"] for r in ranks],
                                     run.global_batch_size)
        compute = [r.get("compute_step_times_s") for r in ranks]
        if all(compute):
            metrics.update(compute_only_metrics(metrics["step_time_s_mean"], compute))
            metrics["stragglers"] = straggler_metrics(compute)
            metrics["breakdown_note"] = None
        else:
            metrics.update({"compute_step_time_s": None, "compute_step_time_s_by_rank": None, "exposed_comm_s": None,
                            "exposed_comm_share": None, "stragglers": None,
                            "breakdown_note": run.breakdown_note or "the compute-only window did not complete"})
        return metrics

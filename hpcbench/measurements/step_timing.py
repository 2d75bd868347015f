"""Step timing: each window's elapsed time and every step's time, on every rank; global throughput."""

from __future__ import annotations

from typing import Any

from hpcbench.measurements.base import THROUGHPUT, Measurement, RankContext, RunFacts, register
from hpcbench.timing import StepTimer, throughput_metrics


@register
class StepTiming(Measurement):
    """Times the throughput windows, bracketed by device syncs (timing.StepTimer)."""

    name = "step_timing"
    order = 1000  # innermost: started last, stopped first

    def __init__(self, ctx: RankContext) -> None:
        super().__init__(ctx)
        self._timer = StepTimer(ctx.device, ctx.clock)
        self.elapsed_s: list[float] = []
        self.step_times_s: list[list[float]] = []

    def start(self, window: str) -> None:
        self._timer.start()

    def step_done(self, window: str) -> None:
        self._timer.step_done()

    def stop(self, window: str, complete: bool) -> None:
        elapsed, steps = self._timer.stop()
        if complete and window == THROUGHPUT:  # a partial repeat is not a measurement
            self.elapsed_s.append(elapsed)
            self.step_times_s.append(steps)

    def rank_result(self) -> dict[str, Any]:
        return {"elapsed_s": self.elapsed_s, "step_times_s": self.step_times_s}

    @classmethod
    def merge(cls, ranks: list[dict[str, Any]], run: RunFacts) -> dict[str, Any]:
        """Global samples over the slowest rank's time, per repeat (timing.throughput_metrics)."""
        return throughput_metrics([r["elapsed_s"] for r in ranks], [r["step_times_s"] for r in ranks],
                                  run.global_batch_size)

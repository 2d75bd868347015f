"""Phases (--phases): each step of the phases window cut into data, forward, backward and optimizer,
with a device sync at every boundary (timing.PhaseTimer), on every rank."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hpcbench.measurements.base import PHASES_WINDOW, Measurement, RankContext, RunFacts, register
from hpcbench.timing import PhaseTimer, phase_metrics


@register
class Phases(Measurement):
    """Marks the steps of the phases window only: its syncs would serialise any other window's overlap."""

    name = "phases"

    def __init__(self, ctx: RankContext) -> None:
        super().__init__(ctx)
        self._timer: PhaseTimer | None = None
        self.seconds: dict[str, list[float]] | None = None

    def start(self, window: str) -> None:
        if window == PHASES_WINDOW:
            self._timer = PhaseTimer(self.ctx.device, self.ctx.clock)

    def marks(self, window: str) -> Callable[[str], None] | None:
        return self._timer.mark if window == PHASES_WINDOW and self._timer else None

    def stop(self, window: str, complete: bool) -> None:
        if window == PHASES_WINDOW and self._timer:
            self.seconds = self._timer.seconds if complete else None  # a partial window is not a measurement
            self._timer = None

    def rank_result(self) -> dict[str, Any]:
        return {"phase_times_s": self.seconds}

    @classmethod
    def merge(cls, ranks: list[dict[str, Any]], run: RunFacts) -> dict[str, Any]:
        """Each phase at its slowest rank, when every rank timed the whole window; else null."""
        phases = [r.get("phase_times_s") for r in ranks]
        return {"phases": phase_metrics(phases) if all(phases) else None}

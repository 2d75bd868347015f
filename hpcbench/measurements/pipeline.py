"""The pipeline bubble, measured on every stage: inside each schedule call of the timed repeats, the share of time
the stage ran no forward and no backward (waiting for its neighbours, or sending to them), from the engine's own
timestamps, beside the analytic bubble of the same schedule. Engines without a schedule keep no timeline: null."""

from __future__ import annotations

import statistics
from typing import Any

from hpcbench.measurements.base import THROUGHPUT, Measurement, RankContext, RunFacts, register

MAX_ACTIONS = 4000
"""Actions of the last repeat kept per rank for the schedule figure."""


def idle_share(actions: list[tuple[str, int, int, float, float]]) -> float | None:
    """1 - (forward + backward time) / (schedule call time), over the calls in `actions`."""
    calls = sum(end - start for kind, *_, start, end in actions if kind == "step")
    busy = sum(end - start for kind, *_, start, end in actions if kind in ("F", "B"))
    return 1 - busy / calls if calls > 0 else None


@register
class PipelineBubble(Measurement):
    name = "pipeline"
    order = 900  # inside every measurement but step timing

    def __init__(self, ctx: RankContext) -> None:
        super().__init__(ctx)
        self.timeline = ctx.actions
        self._first = 0
        self._origin = 0.0
        self.idle_shares: list[float] = []
        self.actions: list[list[Any]] = []

    def start(self, window: str) -> None:
        if self.timeline is not None and window == THROUGHPUT:
            self._first = len(self.timeline.actions)
            self._origin = self.timeline.now()

    def stop(self, window: str, complete: bool) -> None:
        if self.timeline is None or window != THROUGHPUT or not complete:
            return
        actions = self.timeline.actions[self._first:]
        share = idle_share(actions)
        if share is not None:
            self.idle_shares.append(share)
        self.actions = [[kind, stage, microbatch, start - self._origin, end - self._origin]
                        for kind, stage, microbatch, start, end in actions[:MAX_ACTIONS]]

    def rank_result(self) -> dict[str, Any]:
        if self.timeline is None:
            return {}
        return {"pipeline": {"idle_share_by_repeat": self.idle_shares, "actions_last_repeat": self.actions,
                             "stages": self.timeline.stages, "microbatches": self.timeline.microbatches,
                             "stages_per_rank": self.timeline.per_rank, "analytic": self.timeline.analytic()}}

    @classmethod
    def merge(cls, ranks: list[dict[str, Any]], run: RunFacts) -> dict[str, Any]:
        found = [r.get("pipeline") for r in ranks]
        if not all(found):
            return {"pipeline": None}
        by_rank = [statistics.median(p["idle_share_by_repeat"]) if p["idle_share_by_repeat"] else None for p in found]
        measured = [share for share in by_rank if share is not None]
        first = found[0]
        return {"pipeline": {
            "stages": first["stages"], "microbatches": first["microbatches"], "stages_per_rank": first["stages_per_rank"],
            "bubble_analytic": first["analytic"],
            "bubble_measured_by_rank": by_rank,
            "bubble_measured": statistics.mean(measured) if measured else None,
            "bubble_measured_max": max(measured) if measured else None,
            "definition": "per rank, the median over timed repeats of 1 - (forward + backward time) / (time inside the "
                          "schedule's step), which counts waiting for neighbours and sending to them as idle; analytic: "
                          "(p-1)/(v*m+p-1), equal stage times and free communication"}}

"""Measurements taken around windows of steps. Importing the package registers every module in it."""

from __future__ import annotations

from typing import Any

from collections.abc import Callable

from hpcbench.measurements.base import (
    COMPUTE_ONLY, INPUT_CACHED, INPUT_SYNTHETIC, MEASUREMENTS, PHASES_WINDOW, SYNCED_WARMUP, THROUGHPUT, Measurement,
    RankContext, RunFacts, no_mark,
)
from hpcbench.plugins import import_submodules

import_submodules(__name__, __path__)


class Meters:
    """Every registered measurement on this rank, started and stopped together around each window."""

    def __init__(self, ctx: RankContext) -> None:
        self._all: list[Measurement] = [cls(ctx) for cls in sorted(MEASUREMENTS.classes().values(), key=lambda c: c.order)]
        # Only those that look at single steps sit in the step loop.
        self._per_step = [m.step_done for m in self._all if type(m).step_done is not Measurement.step_done]

    def start(self, window: str) -> None:
        for measurement in self._all:
            measurement.start(window)

    def step_done(self, window: str) -> None:
        for step_done in self._per_step:
            step_done(window)

    def stop(self, window: str, complete: bool) -> None:
        for measurement in reversed(self._all):
            measurement.stop(window, complete)

    def marker(self, window: str) -> Callable[[str], None]:
        """The step's phase-boundary call inside `window`: the one measurement's that looks inside
        steps there (the phases window's timer), else a no-op."""
        found = [mark for mark in (m.marks(window) for m in self._all) if mark is not None]
        if len(found) > 1:
            raise RuntimeError(f"two measurements mark the steps of window {window!r}")
        return found[0] if found else no_mark

    def rank_results(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for measurement in self._all:
            merged.update(measurement.rank_result())
        return merged


def merge_metrics(ranks: list[dict[str, Any]], run: RunFacts) -> dict[str, Any]:
    """The one place measurements become the record's metrics."""
    metrics: dict[str, Any] = {}
    for cls in MEASUREMENTS.classes().values():
        metrics.update(cls.merge(ranks, run))
    return metrics


__all__ = ["COMPUTE_ONLY", "INPUT_CACHED", "INPUT_SYNTHETIC", "MEASUREMENTS", "PHASES_WINDOW", "SYNCED_WARMUP", "THROUGHPUT", "Measurement", "Meters", "RankContext", "RunFacts",
           "merge_metrics", "no_mark"]

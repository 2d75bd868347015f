"""Input stalls: how long each step of the timed windows waits for its batch (`next(batches)`), on every
rank; and with --data files, DS-Analyzer's split (Mohan et al., VLDB 2021) from three windows of one run:

    storage     the timed repeats: every sample fetched from --data-dir, decoded, augmented
    cached      the same steps from samples read into memory once: decoded and augmented, never fetched
    synthetic   the same steps from one batch resident on the device: compute alone

    prep stall  = cached - synthetic      (decode, augmentation, collation, the copy to the device)
    fetch stall = storage - cached        (reading from storage)

each the mean over steps of the slowest rank's step (a mean, as throughput is: a loader that falls behind
makes every few steps wait long, which a median would not see). The data stall is DS-Analyzer's, (storage - synthetic)
/ storage, where the split was measured; else the waits' share. The two differ where reading slows the step
without making it wait (reads that share a link with the gradients, or cores with compute): the waits
see only a batch that is late. A run is input-bound when its data stall is above INPUT_BOUND_SHARE.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from typing import Any

from hpcbench.measurements.base import (INPUT_CACHED, INPUT_SYNTHETIC, THROUGHPUT, Measurement, RankContext, RunFacts,
                                        register)
from hpcbench.timing import StepTimer

INPUT_BOUND_SHARE = 0.10
"""A data stall above a tenth of the step: the input pipeline, not compute or network, sets the pace (a
prefetching loader that keeps up leaves a wait of microseconds and a split within noise)."""
SPLIT_WINDOWS = {INPUT_CACHED: "cached", INPUT_SYNTHETIC: "synthetic"}


class TimedBatches:
    """The step's batches with each `next` timed (two clock reads): a batch that was prefetched in time costs
    nothing; one the loader had not finished is the stall. The source may be swapped between windows."""

    def __init__(self, source: Iterator[Any], clock: Callable[[], float]) -> None:
        self.source, self.clock = source, clock
        self.waited_s = 0.0
        """The last `next`'s wait."""

    def __iter__(self) -> TimedBatches:
        return self

    def __next__(self) -> Any:
        started = self.clock()
        batch = next(self.source)
        self.waited_s = self.clock() - started
        return batch


@register
class InputStalls(Measurement):
    """Each timed step's wait for its batch; the cached and synthetic windows' step times (device-synced)."""

    name = "input_stalls"
    order = 900  # inside every other measurement but step timing

    def __init__(self, ctx: RankContext) -> None:
        super().__init__(ctx)
        self.waits_s: list[list[float]] = []
        self._current: list[float] = []
        self._timer: StepTimer | None = None
        self.split_step_times_s: dict[str, list[float]] = {}

    def start(self, window: str) -> None:
        self._current = []
        if window in SPLIT_WINDOWS:
            self._timer = StepTimer(self.ctx.device, self.ctx.clock)
            self._timer.start()

    def step_done(self, window: str) -> None:
        if window == THROUGHPUT and self.ctx.batches is not None:
            self._current.append(self.ctx.batches.waited_s)
        elif self._timer:
            self._timer.step_done()

    def stop(self, window: str, complete: bool) -> None:
        if self._timer:
            _, steps = self._timer.stop()
            self._timer = None
            if complete:
                self.split_step_times_s[SPLIT_WINDOWS[window]] = steps
        elif window == THROUGHPUT and complete and self._current:
            self.waits_s.append(self._current)

    def rank_result(self) -> dict[str, Any]:
        return {"data_wait_s": self.waits_s, "input_split_step_times_s": self.split_step_times_s or None}

    @classmethod
    def merge(cls, ranks: list[dict[str, Any]], run: RunFacts) -> dict[str, Any]:
        waits = [r.get("data_wait_s") or [] for r in ranks]
        steps = [r.get("step_times_s") or [] for r in ranks]
        if not all(waits) or any(len(w) != len(s) for w, s in zip(waits, steps)):
            return {"input": None}
        shares = [sum(map(sum, w)) / sum(map(sum, s)) for w, s in zip(waits, steps)]
        slowest = max(range(len(ranks)), key=lambda i: shares[i])
        metrics: dict[str, Any] = {
            "data_wait_s_median": statistics.median(t for window in waits[slowest] for t in window),
            "data_wait_share": shares[slowest],
            "data_wait_share_by_rank": shares,
        }
        metrics.update(split(ranks, steps))
        measured = metrics["split"]
        stall = measured["prep_stall_share"] + measured["fetch_stall_share"] if measured else shares[slowest]
        metrics.update({"data_stall_share": stall, "data_stall_share_repeats": stall_repeats(waits[slowest], steps[slowest], measured),
                        "data_stall_from": "split: (storage - synthetic) / storage" if measured else "waits for batches",
                        "input_bound": stall > INPUT_BOUND_SHARE, "input_bound_share": INPUT_BOUND_SHARE})
        return {"input": metrics}


def stall_repeats(waits: list[list[float]], steps: list[list[float]], measured: dict[str, Any] | None) -> list[float]:
    """The stall share of each timed repeat (the slowest rank's): its spread is the stall's uncertainty. From the
    split: the repeat's mean step against the synthetic window's; else the repeat's waits over its steps."""
    if measured:
        synthetic = measured["synthetic_step_s"]
        return [1 - synthetic / (sum(s) / len(s)) for s in steps if s]
    return [sum(w) / sum(s) for w, s in zip(waits, steps) if sum(s) > 0]


def split(ranks: list[dict[str, Any]], steps: list[list[list[float]]]) -> dict[str, Any]:
    """DS-Analyzer's split where every rank timed the cached and synthetic windows, else nulls and why."""
    windows = [r.get("input_split_step_times_s") or {} for r in ranks]
    if not all(set(w) == set(SPLIT_WINDOWS.values()) for w in windows):
        return {"split": None, "split_note": run_note(ranks)}
    means = {"storage": slowest_mean([[t for window in s for t in window] for s in steps])}
    means.update({name: slowest_mean([w[name] for w in windows]) for name in SPLIT_WINDOWS.values()})
    storage = means["storage"]
    prep, fetch = means["cached"] - means["synthetic"], storage - means["cached"]
    return {"split": {**{f"{name}_step_s": value for name, value in means.items()},
                      "prep_stall_s": prep, "fetch_stall_s": fetch,
                      "prep_stall_share": prep / storage, "fetch_stall_share": fetch / storage},
            "split_note": None}


def run_note(ranks: list[dict[str, Any]]) -> str:
    return ("not measured: the run read no files (--data files), ran with --no-breakdown, or was stopped first"
            if not any(r.get("input_split_step_times_s") for r in ranks) else "a split window did not complete")


def slowest_mean(per_rank: list[list[float]]) -> float:
    """The mean over steps of the slowest rank's time at each step."""
    return statistics.fmean(max(times) for times in zip(*per_rank))

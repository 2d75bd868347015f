"""Step timing bracketed by device syncs, and the throughput arithmetic over all ranks.

GPU kernels run asynchronously: without a sync a timer measures kernel launches. The timed
window starts after a sync and ends after one. On CUDA, per-step times come from events so the
steps themselves are not serialised by host syncs; on CPU every op is synchronous.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the arithmetic below is the read side's too (records.upgrade): it needs no torch
    import torch

WINDOW_STATISTIC = "mean"
"""The one statistic of a window's step, for every term derived from it (throughput, compute-only step, exposed
communication, framework): its elapsed time over its steps, slowest rank. The terms of a step then add up to the
step the throughput implies; a median of one window beside a mean of another did not (on a loaded VM a report said
the engine cost 50.5 % from medians and the forecast 3.5 % from means, of the same run)."""


def sync(device: torch.device) -> None:
    """Wait for all queued work on the device (a no-op on CPU)."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


class StepTimer:
    """Times one window of steps: call start(), step_done() after each step, then stop()."""

    def __init__(self, device: torch.device, clock: Callable[[], float]) -> None:
        self.device = device
        self.clock = clock
        self._marks: list[Any] = []
        self._t0 = 0.0

    def _mark(self) -> Any:
        if self.device.type == "cuda":
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return self.clock()

    def start(self) -> None:
        sync(self.device)
        self._t0 = self.clock()
        self._marks = [self._mark()]

    def step_done(self) -> None:
        self._marks.append(self._mark())

    def stop(self) -> tuple[float, list[float]]:
        """(elapsed seconds of the whole window, seconds of each step)."""
        sync(self.device)
        elapsed = self.clock() - self._t0
        if self.device.type == "cuda":
            steps = [a.elapsed_time(b) / 1e3 for a, b in zip(self._marks, self._marks[1:])]
        else:
            steps = [b - a for a, b in zip(self._marks, self._marks[1:])]
        return elapsed, steps


def throughput_metrics(
    elapsed_s: Sequence[Sequence[float]],
    step_times_s: Sequence[Sequence[Sequence[float]]],
    global_batch_size: int,
) -> dict[str, Any]:
    """Global throughput from every rank's times: elapsed_s[rank][repeat], step_times_s[rank][repeat][step].

    Each repeat's throughput is the global samples over the slowest rank's elapsed time — the
    job is only as fast as its slowest rank — never world_size times one rank's rate.
    """
    world_size = len(elapsed_s)
    num_repeats = len(elapsed_s[0])
    num_steps = len(step_times_s[0][0])
    slowest = [max(rank[repeat] for rank in elapsed_s) for repeat in range(num_repeats)]
    per_repeat = [num_steps * global_batch_size / t for t in slowest]
    # Each step's time as the job saw it: the slowest rank at that step.
    job_steps = np.max(np.asarray(step_times_s, dtype=float), axis=0).ravel()
    samples_per_s = float(np.median(per_repeat))
    return {
        "samples_per_s": samples_per_s,
        "samples_per_s_per_proc": samples_per_s / world_size,
        "samples_per_s_repeats": per_repeat,
        "elapsed_s_repeats": slowest,
        "step_time_s_mean": global_batch_size / samples_per_s,  # each repeat's window / steps; median over repeats
        "step_time_s_median": float(np.median(job_steps)),
        "step_time_s_p95": float(np.percentile(job_steps, 95)),
        "global_batch_size": global_batch_size,
        "num_steps_timed": num_steps * num_repeats,
    }


def repeats_settled(elapsed_s: Sequence[float], width: float, budget_s: float, min_repeats: int,
                    max_repeats: int) -> dict[str, Any] | None:
    """--repeats auto: whether to stop after these repeats (each the slowest rank's window, so every rank decides
    alike). Stops when the 95 % Student-t interval of the mean throughput over repeats is within ±width of it
    ("width"), else when the windows have taken budget_s or max_repeats ("budget"); None: repeat again."""
    n = len(elapsed_s)
    if n < min_repeats:
        return None
    rates = 1 / np.asarray(elapsed_s, dtype=float)  # each repeat's throughput, up to the samples per window
    from scipy.stats import t  # only here: the workers of a fixed repeat count never import it

    half_width = float(t.ppf(0.975, n - 1) * rates.std(ddof=1) / np.sqrt(n) / rates.mean())
    stopped_by = "width" if half_width <= width else "budget" if sum(elapsed_s) >= budget_s or n >= max_repeats else None
    if stopped_by is None:
        return None
    return {"stopped_by": stopped_by, "repeats": n, "half_width": half_width, "target_width": width,
            "budget_s": budget_s, "timed_s": float(sum(elapsed_s))}


def compute_only_metrics(step_time_s_mean: float, compute_step_times_s: Sequence[Sequence[float]]) -> dict[str, Any]:
    """What the step waited for: the throughput's step minus the compute-only step, one statistic (WINDOW_STATISTIC).

    compute_step_times_s[rank][step] come from a window without gradient synchronisation; the
    compute-only step is the slowest rank's mean step (the job cannot step faster than it).
    """
    per_rank = [float(np.mean(steps)) for steps in compute_step_times_s]
    compute = max(per_rank)
    exposed = step_time_s_mean - compute
    return {
        "window_statistic": WINDOW_STATISTIC,
        "compute_step_time_s": compute,
        "compute_step_time_s_by_rank": per_rank,
        "exposed_comm_s": exposed,
        "exposed_comm_share": exposed / step_time_s_mean if step_time_s_mean > 0 else None,
    }


def straggler_metrics(step_times_s: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Who held the others back, from per-step times taken without synchronisation (step_times_s[rank][step]).

    Per step the slowest rank; per rank its share of steps slowest and its total wait (the
    slowest rank's time minus its own, summed over steps). A rank is named when its share is
    more than twice its fair share 1/N (at most 75 %, so that two ranks can name one).
    """
    times = np.asarray(step_times_s, dtype=float)
    world_size, num_steps = times.shape
    slowest = np.argmax(times, axis=0)
    share = np.bincount(slowest, minlength=world_size) / num_steps
    wait = (times.max(axis=0) - times).sum(axis=1)
    threshold = min(2 / world_size, 0.75)
    return {
        "slowest_share_by_rank": share.tolist(),
        "wait_s_by_rank": wait.tolist(),
        "named_threshold_share": threshold,
        "named_ranks": [int(r) for r in np.flatnonzero(share > threshold)] if world_size > 1 else [],
    }


PHASES = ("data", "forward", "backward", "optimizer")
"""A step's phases: fetching the batch (on the device: the host-to-device copy included); zero_grad,
forward and loss; backward (DDP's all-reduce runs inside it); the optimizer step (Horovod waits
for its all-reduces there)."""


class PhaseTimer:
    """Seconds of each phase of each step, with a device sync at every boundary.

    The syncs serialise what would overlap (DDP's all-reduce with the backward pass, queued
    kernels with the host), so phases are timed in a window of their own, never in a throughput one.
    """

    def __init__(self, device: torch.device, clock: Callable[[], float]) -> None:
        self.device = device
        self.clock = clock
        self.seconds: dict[str, list[float]] = {phase: [] for phase in PHASES}
        self._last = 0.0

    def mark(self, boundary: str) -> None:
        """`start` at a step's beginning, then each phase's name at its end."""
        sync(self.device)
        now = self.clock()
        if boundary != "start":
            self.seconds[boundary].append(now - self._last)
        self._last = now


def phase_metrics(per_rank: Sequence[dict[str, Sequence[float]]]) -> dict[str, Any]:
    """Per rank each phase's mean seconds (WINDOW_STATISTIC: the phases add up to the window's step) and share of
    their sum; for the job, each phase at its slowest rank."""
    by_rank = [{phase: float(np.mean(steps[phase])) for phase in PHASES} for steps in per_rank]
    share_by_rank = [{phase: s / sum(rank.values()) for phase, s in rank.items()} for rank in by_rank]
    seconds = {phase: max(rank[phase] for rank in by_rank) for phase in PHASES}
    total = sum(seconds.values())
    return {
        "seconds": seconds,
        "share": {phase: s / total for phase, s in seconds.items()},
        "seconds_by_rank": by_rank,
        "share_by_rank": share_by_rank,
        "note": "a separate window with a device sync between phases: it serialises the overlap of "
                "communication with the backward pass, so these shares are not the throughput windows' steps",
    }

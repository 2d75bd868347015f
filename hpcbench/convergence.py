"""Time to accuracy (`--mode tta`): the quality curve, the target, the budget and the learning-rate rule.

As MLPerf Training counts it, the clock runs from the first training step to the end of the
evaluation that first meets the target, evaluations included (their seconds are also kept apart).
Every decision here is taken from numbers all ranks share (reduced quality, the slowest rank's
elapsed time, the step count), so every rank stops after the same evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


def lr_factor(scaling: str, k: float) -> float:
    """The learning rate's multiplier for a global batch k times the 1-process one: linear (Goyal et
    al. 2017) or square-root scaling (Krizhevsky 2014, Hoffer et al. 2017); none keeps it."""
    return {"none": 1.0, "linear": k, "sqrt": math.sqrt(k)}[scaling]


def lr_multiplier(step: int, factor: float, warmup_steps: int) -> float:
    """The multiplier at `step` (0-based): from 1 (the 1-process rate) up to `factor` over the warm-up's
    steps, linearly (Goyal et al.'s gradual warm-up), then `factor`."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return factor
    return 1.0 + (factor - 1.0) * (step + 1) / warmup_steps


@dataclass(frozen=True, kw_only=True)
class Quality:
    """What `--mode tta` trains to: a held-out metric, its direction and range, a default target and why."""

    metric: str
    """Its name in the record, with the unit where it has one (`heldout_accuracy`, `heldout_neg_elbo_nats`)."""
    higher_is_better: bool
    low: float
    high: float
    """The metric's range: a target outside it is an error."""
    target: float
    why: str
    """Where the default target comes from."""
    min_count: int = 1
    """Scored items needed before the metric means anything (e.g. 100 episodes for CartPole's criterion)."""


@dataclass(kw_only=True)
class TargetWatch:
    """The quality curve of one run and whether the target or the budget ended it."""

    quality: Quality
    """The workload's held-out metric: its name, direction and the items it needs."""
    target: float
    """The run's target (the workload's default unless --target gave another)."""
    max_epochs: int | None
    max_time_s: float
    global_batch_size: int
    steps_per_epoch: int | None
    curve: list[dict[str, Any]] = field(default_factory=list)
    reached_at: dict[str, Any] | None = None
    ended_by: str | None = None

    def evaluated(self, *, step: int, seconds: float, eval_s: float, total: float, count: int) -> bool:
        """One evaluation's reduced (sum, count) after `step` steps and `seconds` since the first step;
        True when the run ends here (target met or budget spent)."""
        quality = total / count if count >= self.quality.min_count and count > 0 else None
        point = {"step": step, "epoch": self.epochs(step), "samples": step * self.global_batch_size,
                 "seconds": seconds, "eval_s": eval_s, "quality": quality, "items": count}
        self.curve.append(point)
        if quality is not None and self.met(quality):
            self.reached_at, self.ended_by = point, "target"
        elif self.max_epochs is not None and self.steps_per_epoch and step >= self.max_epochs * self.steps_per_epoch:
            self.ended_by = "max_epochs"
        elif seconds >= self.max_time_s:
            self.ended_by = "max_time"
        return self.ended_by is not None

    def met(self, quality: float) -> bool:
        return quality >= self.target if self.quality.higher_is_better else quality <= self.target

    def epochs(self, step: int) -> float | None:
        return step / self.steps_per_epoch if self.steps_per_epoch else None

    def best(self) -> float | None:
        values = [p["quality"] for p in self.curve if p["quality"] is not None]
        if not values:
            return None
        return max(values) if self.quality.higher_is_better else min(values)

    def result(self, train_s: float, eval_s_total: float) -> dict[str, Any]:
        """The record's `metrics.tta`: null 'to target' fields when the target was not reached."""
        at = self.reached_at
        return {
            "metric": self.quality.metric, "higher_is_better": self.quality.higher_is_better, "target": self.target,
            "reached": at is not None, "ended_by": self.ended_by or "stopped",
            "time_to_target_s": at["seconds"] if at else None,
            "steps_to_target": at["step"] if at else None,
            "epochs_to_target": at["epoch"] if at else None,
            "samples_to_target": at["samples"] if at else None,
            "best_quality": self.best(), "evaluations": len(self.curve),
            "train_s": train_s, "eval_s": eval_s_total,
            "steps_per_epoch": self.steps_per_epoch, "max_epochs": self.max_epochs, "max_time_s": self.max_time_s,
            "curve": self.curve,
        }

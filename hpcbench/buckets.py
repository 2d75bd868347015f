"""How an engine groups gradients into collectives, as arithmetic on (bytes, ready time) per gradient.

The gradient-ready timeline (measurements.gradient_timeline) measures when each gradient is ready;
these rules turn that into the all-reduces the engine really issues, so the predictor
(hpcbench.analysis.predict) can replay them over another network. No torch here: the analysis and
the published cases use the same rules.

    size_cap      DistributedDataParallel's Reducer after its first iteration: gradients in the order they
                  became ready, filled greedily into a bucket until it holds at least the cap (so the last
                  gradient may take it past the cap); the first bucket's cap is 1 MiB when bucket_cap_mb is
                  left at its default (torch.distributed._DEFAULT_FIRST_BUCKET_BYTES), else the same cap.
    fusion_cycle  Horovod's background loop: every cycle time it takes the gradients that became ready in
                  that cycle and fuses them into buffers of at most the fusion threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

RULES = ("size_cap", "fusion_cycle", "single")
"""single: one collective for every gradient after the whole backward (an all-reduce after gradient accumulation)."""


@dataclass(frozen=True)
class Gradient:
    index: int
    """The parameter's position in model.parameters()."""
    num_bytes: int
    ready_s: float
    """Seconds after backward began."""


def size_cap_rule(first_bucket_bytes: int, bucket_bytes: int) -> dict[str, Any]:
    return {"rule": "size_cap", "first_bucket_bytes": int(first_bucket_bytes), "bucket_bytes": int(bucket_bytes)}


def fusion_cycle_rule(threshold_bytes: int, cycle_time_s: float) -> dict[str, Any]:
    return {"rule": "fusion_cycle", "fusion_threshold_bytes": int(threshold_bytes), "cycle_time_s": float(cycle_time_s)}


def buckets(gradients: list[Gradient], rule: dict[str, Any]) -> list[dict[str, Any]]:
    """The collectives in the order they are issued: each with its parameters, bytes and ready time
    (the last of its gradients; for fusion, the end of the cycle that collected it)."""
    ordered = sorted(gradients, key=lambda g: (g.ready_s, -g.index))
    if rule["rule"] == "size_cap":
        groups = _greedy(ordered, [rule["first_bucket_bytes"], rule["bucket_bytes"]])
        return [_bucket(group, max(g.ready_s for g in group)) for group in groups]
    if rule["rule"] == "fusion_cycle":
        cycle = max(rule["cycle_time_s"], 1e-9)
        found = []
        by_cycle: dict[int, list[Gradient]] = {}
        for gradient in ordered:
            by_cycle.setdefault(math.floor(gradient.ready_s / cycle), []).append(gradient)
        for tick, group in sorted(by_cycle.items()):
            for fused in _capped(group, rule["fusion_threshold_bytes"]):
                found.append(_bucket(fused, (tick + 1) * cycle))
        return found
    if rule["rule"] == "single":
        return [_bucket(ordered, max(g.ready_s for g in ordered))] if ordered else []
    raise ValueError(f"bucketing rule {rule['rule']!r} is not one of {', '.join(RULES)}")


def _greedy(ordered: list[Gradient], caps: list[int]) -> list[list[Gradient]]:
    """DDP's compute_bucket_assignment_by_size: add, and close the bucket once it reaches its cap."""
    groups: list[list[Gradient]] = []
    current: list[Gradient] = []
    size = 0
    for gradient in ordered:
        current.append(gradient)
        size += gradient.num_bytes
        if size >= caps[min(len(groups), len(caps) - 1)]:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def _capped(group: list[Gradient], threshold: int) -> list[list[Gradient]]:
    """Fusion buffers of at most `threshold` bytes (a larger gradient goes alone)."""
    fused: list[list[Gradient]] = []
    current: list[Gradient] = []
    size = 0
    for gradient in group:
        if current and size + gradient.num_bytes > threshold:
            fused.append(current)
            current, size = [], 0
        current.append(gradient)
        size += gradient.num_bytes
    if current:
        fused.append(current)
    return fused


def _bucket(group: list[Gradient], ready_s: float) -> dict[str, Any]:
    return {"params": [g.index for g in group], "bytes": sum(g.num_bytes for g in group), "ready_s": ready_s}

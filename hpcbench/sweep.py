"""Local sweeps: a grid of workloads x engines x process counts, validated whole, then run point by point.

Engines run side by side (the same workload and scale, one after the other), so their numbers
come from the same minutes of the same machine.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcbench.config import RunConfig
from hpcbench.errors import ConfigError
from hpcbench.flags import check_engine_options_apply
from hpcbench.launch import local
from hpcbench.resolve import resolve
from hpcbench.workloads import get_workload


def default_process_counts() -> list[int]:
    """1, 2, 4, … up to the number of cores: the CPU demo sweep."""
    cores = os.cpu_count() or 1
    counts = [1]
    while counts[-1] * 2 <= cores:
        counts.append(counts[-1] * 2)
    return counts


def plan_grid(
    base: dict[str, Any], *, workloads: list[str], engines: list[str], process_counts: list[int],
    options: dict[str, Any], engine_options: dict[str, dict[str, Any]],
) -> list[RunConfig]:
    """Every point of the sweep, resolved, before any of it runs.

    `base` holds the run fields given for every point; a workload option goes to the swept
    workloads that have it (an option none of them has is an error), an engine's options to that
    engine's points (options of an engine not swept are an error).
    """
    if not workloads:
        raise ConfigError("workloads", "needs at least one workload")
    if not engines:
        raise ConfigError("engine", "needs at least one engine")
    owners = {name: [w for w in workloads if name in get_workload(w).resolve_options({})] for name in options}
    for name, found in owners.items():
        if not found:
            raise ConfigError(name.replace("_", "-"), f"is not an option of any swept workload ({', '.join(workloads)})")
    check_engine_options_apply(engine_options, engines)
    grid = []
    for workload in workloads:
        mine = {name: value for name, value in options.items() if workload in owners[name]}
        for engine in engines:
            for num_procs in process_counts:
                cfg = RunConfig(**{**base, "workload": workload, "engine": engine, "num_procs": num_procs, "options": mine,
                                   "engine_options": engine_options.get(engine, {})})
                grid.append(resolve(cfg, sweep_max_procs=max(process_counts)))
    return grid


@dataclass
class SweepOutcome:
    paths: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    interrupted: local.RunInterrupted | None = None


def run_grid(grid: list[RunConfig]) -> SweepOutcome:
    """Run each point; a failed point is reported and skipped, an interrupted one ends the sweep."""
    outcome = SweepOutcome()
    for cfg in grid:
        try:
            outcome.paths.append(local.run_local(cfg))
        except local.RunInterrupted as exc:
            outcome.interrupted = exc
            print(f"hpcbench sweep: {cfg.workload} on {cfg.num_procs} proc(s): {exc}; the rest of the sweep is skipped",
                  file=sys.stderr)
            break
        except local.RunFailed as exc:
            outcome.failures.append(f"{cfg.workload} on {cfg.num_procs} proc(s): {exc}")
            print(f"hpcbench sweep: failed: {outcome.failures[-1]}", file=sys.stderr)
    return outcome

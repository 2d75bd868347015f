"""Local sweeps: a matrix of experiments x process counts, validated whole, then run point by point.

The points of one experiment run one after the other (1, 2, 4, … processes), so each scaling
curve comes from the same minutes of the same machine.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hpcbench.config import RunConfig
from hpcbench.errors import check_at_least
from hpcbench.launch import local
from hpcbench.matrix import SweepMatrix
from hpcbench.progress import sweep_progress
from hpcbench.resolve import resolve


def default_process_counts() -> list[int]:
    """1, 2, 4, … up to the number of cores: the CPU demo sweep."""
    cores = os.cpu_count() or 1
    counts = [1]
    while counts[-1] * 2 <= cores:
        counts.append(counts[-1] * 2)
    return counts


def plan_grid(matrix: SweepMatrix) -> list[RunConfig]:
    """Every point of the sweep (each experiment, each seed, at each process count), resolved before any of it runs.

    A seed's points run one after the other, so each seed's curve comes from the same minutes; with rounds the whole
    grid runs again after itself (1, 2, 1, 2, …), so drift over the sweep's minutes hits every point alike."""
    counts = matrix.process_counts or default_process_counts()
    for count in counts:
        check_at_least("nproc", count, 1)
    check_at_least("seeds", matrix.seeds, 1)
    check_at_least("rounds", matrix.rounds, 1)
    grid = [resolve(dataclasses.replace(experiment, num_procs=count, seed=experiment.seed + offset),
                    sweep_max_procs=max(counts))
            for experiment in matrix.experiments() for offset in range(matrix.seeds) for count in counts]
    return grid * matrix.rounds


@dataclass
class SweepOutcome:
    paths: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    interrupted: local.RunInterrupted | None = None


def run_grid(grid: list[RunConfig]) -> SweepOutcome:
    """Run each point; a failed point is reported and skipped, an interrupted one ends the sweep."""
    outcome = SweepOutcome()
    with sweep_progress(len(grid)) as progress:
        for cfg in grid:
            progress.point_started(describe_point(cfg))
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
            progress.point_done()
    return outcome


def describe_point(cfg: RunConfig) -> str:
    """The point in a few words: what runs and on how many processes (the record has the rest)."""
    options = " ".join(f"{k}={v}" for k, v in sorted(cfg.options.items()) if v is not None)
    return f"{cfg.workload} {options} {cfg.engine} {cfg.num_procs} proc(s)".replace("  ", " ")

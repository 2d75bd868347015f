"""Weak-scaling table: throughput against the 1-process run of the same configuration."""

from __future__ import annotations

import pandas as pd

GROUP = ["workload", "engine", "device", "batch_size"]
"""What must match for two runs to be points of one scaling curve (batch_size is per process)."""


def scaling_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and process count: median samples/s over runs, speedup and efficiency.

    Weak scaling (fixed per-process batch): speedup = samples_per_s(N) / samples_per_s(1),
    efficiency = speedup / N. Without a 1-process run both are left empty, not guessed.
    """
    if runs.empty:
        return pd.DataFrame(columns=[*GROUP, "world_size", "num_runs", "samples_per_s", "samples_per_s_per_proc", "speedup", "efficiency"])
    points = (
        runs.groupby([*GROUP, "world_size"], as_index=False)
        .agg(num_runs=("run_id", "count"), samples_per_s=("samples_per_s", "median"))
        .sort_values([*GROUP, "world_size"])
    )
    points["samples_per_s_per_proc"] = points["samples_per_s"] / points["world_size"]
    baseline = points[points["world_size"] == 1].set_index(GROUP)["samples_per_s"]
    base = points.set_index(GROUP).index.map(lambda key: baseline.get(key, float("nan")))
    points["speedup"] = points["samples_per_s"].to_numpy() / base.to_numpy(dtype=float)
    points["efficiency"] = points["speedup"] / points["world_size"]
    return points.reset_index(drop=True)


def format_scaling_table(table: pd.DataFrame) -> str:
    shown = table.rename(columns={"world_size": "procs", "batch_size": "batch/proc"})
    return shown.to_string(
        index=False,
        formatters={
            "samples_per_s": "{:.1f}".format,
            "samples_per_s_per_proc": "{:.1f}".format,
            "speedup": "{:.2f}".format,
            "efficiency": "{:.1%}".format,
        },
    )

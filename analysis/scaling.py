"""Scaling tables: throughput, speedup, efficiency and Karp-Flatt per point; Amdahl fits per curve.

A curve is the runs that differ only in how many processes ran them:
- weak scaling keeps the per-process batch fixed (what `hpcbench sweep` measures);
- strong scaling keeps the global batch fixed (per-process batch = global / N).
In both, with throughput X: speedup S(N) = X(N) / X(1) and efficiency = S(N) / N; at a fixed
global batch this equals the textbook T(1) / (N x T(N)) for the time per step T. The baseline is
the 1-process, 1-node point of the same curve, named in the table; without it nothing is guessed.

Two baselines, because "1" means two things. `efficiency` divides by the engine's own 1-process
run: DDP at world size 1 still buckets and all-reduces every gradient with nobody, so that run is
slower than training without it. `bare_efficiency` divides by single-process training as a user
would run it, the answer to "how much faster is N than 1?": the same 1-process run's throughput
scaled by its median step over the median step of its compute-only window (the same steps without
the engine's gradient synchronisation). `engine_cost_at_1` = 1 - the engine's baseline / the bare
one, which is the 1-process point's exposed_comm share: the engine's own cost with nothing to
send. Above ENGINE_COST_NOTED the sweep and the report name it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hpcbench.analysis.curves import MODES, POINT_KEYS, curve_keys, legend_labels, runs_in_mode
from hpcbench.analysis.stats import bootstrap_median_ci, coefficient_of_variation

CURVE_KEYS = {mode: curve_keys(mode) for mode in MODES}
TABLE_COLUMNS = [
    "num_runs", "samples_per_s", "ci95_low", "ci95_high", "cv", "samples_per_s_per_proc", "tokens_per_s",
    "peak_memory_gib", "step_time_s_median",
    "compute_step_time_s", "exposed_comm_s", "exposed_comm_share", "baseline_samples_per_s", "baseline_runs", "speedup",
    "efficiency", "bare_baseline_samples_per_s", "bare_efficiency", "engine_cost_at_1", "karp_flatt",
    "data_stall_share", "input_bound",
]
ENGINE_COST_NOTED = 0.03
"""A gap between the two 1-process baselines above this share is the engine's own cost, said in the report."""


def scaling_table(runs: pd.DataFrame, mode: str = "weak") -> pd.DataFrame:
    """One row per point of each curve; all repeats of all runs of a point are pooled."""
    if mode not in CURVE_KEYS:
        raise ValueError(f"mode {mode!r} is not one of: {', '.join(CURVE_KEYS)}")
    curve = CURVE_KEYS[mode]
    other = "global_batch_size" if mode == "weak" else "batch_size"
    columns = [*curve, *POINT_KEYS, other, *TABLE_COLUMNS]
    runs = runs_in_mode(runs, mode) if not runs.empty else runs
    if runs.empty:
        return pd.DataFrame(columns=columns)
    if mode == "strong":  # a strong curve needs at least two process counts at the same global batch
        runs = runs[runs.groupby(curve)["world_size"].transform("nunique") > 1]
        if runs.empty:
            return pd.DataFrame(columns=columns)
    rows = []
    for key, group in runs.groupby([*curve, *POINT_KEYS], sort=True, dropna=False):
        pooled = [x for repeats, rate in zip(group["samples_per_s_repeats"], group["samples_per_s"])
                  for x in (repeats if isinstance(repeats, list) and repeats else [rate])]
        low, high = bootstrap_median_ci(pooled)
        median = float(np.median(pooled))
        rows.append({
            **dict(zip([*curve, *POINT_KEYS], key)),
            other: group[other].iloc[0],
            "num_runs": len(group),
            "samples_per_s": median,
            "ci95_low": low,
            "ci95_high": high,
            "cv": coefficient_of_variation(pooled),
            "samples_per_s_per_proc": median / key[-1],
            "tokens_per_s": median * _median_or_nan(group.get("tokens_per_sample", pd.Series(dtype=float))),
            "peak_memory_gib": _median_or_nan(group.get("peak_memory_gib", pd.Series(dtype=float))),
            "step_time_s_median": float(group["step_time_s_median"].median()),
            "compute_step_time_s": _median_or_nan(group["compute_step_time_s"]),
            "exposed_comm_s": _median_or_nan(group["exposed_comm_s"]),
            "data_stall_share": _median_or_nan(group.get("data_stall_share", pd.Series(dtype=float))),
            "input_bound": _input_bound(group),
            "run_ids": ",".join(group["run_id"]),
        })
    table = pd.DataFrame(rows)
    baseline = table[(table["world_size"] == 1) & (table["num_nodes"] == 1)].set_index(curve)
    keys = list(table[curve].itertuples(index=False, name=None))
    table["baseline_samples_per_s"] = [baseline["samples_per_s"].get(k, np.nan) for k in keys]
    table["baseline_runs"] = [baseline["run_ids"].get(k, "") for k in keys]
    table["speedup"] = table["samples_per_s"] / table["baseline_samples_per_s"]
    table["efficiency"] = table["speedup"] / table["world_size"]
    # The engine's 1-process throughput with its synchronisation taken out of each step, by the ratio of
    # median steps with and without it: the same robust medians as exposed_comm, the same windows as samples_per_s.
    without_sync = baseline["samples_per_s"] * baseline["step_time_s_median"] / baseline["compute_step_time_s"]
    table["bare_baseline_samples_per_s"] = [without_sync.get(k, np.nan) for k in keys]
    table["bare_efficiency"] = table["samples_per_s"] / (table["world_size"] * table["bare_baseline_samples_per_s"])
    table["engine_cost_at_1"] = 1 - table["baseline_samples_per_s"] / table["bare_baseline_samples_per_s"]
    table["exposed_comm_share"] = table["exposed_comm_s"] / table["step_time_s_median"]
    table["karp_flatt"] = karp_flatt(table["speedup"].to_numpy(float), table["world_size"].to_numpy(float))
    return table[columns].reset_index(drop=True)


def _median_or_nan(values: pd.Series) -> float:
    """Median of the runs that measured it (older records and --no-breakdown runs did not)."""
    found = pd.to_numeric(values, errors="coerce").dropna()
    return float(found.median()) if not found.empty else np.nan


def karp_flatt(speedup: np.ndarray, workers: np.ndarray) -> np.ndarray:
    """Experimentally determined serial fraction e = (1/S - 1/N) / (1 - 1/N); undefined at N = 1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        serial = (1 / speedup - 1 / workers) / (1 - 1 / workers)
    return np.where(workers > 1, serial, np.nan)


def amdahl_serial_fraction(workers: np.ndarray, speedup: np.ndarray) -> float:
    """Least-squares s in S(N) = 1 / (s + (1 - s) / N), fitted as 1/S - 1/N = s (1 - 1/N); within [0, 1]."""
    x = 1 - 1 / np.asarray(workers, float)
    y = 1 / np.asarray(speedup, float) - 1 / np.asarray(workers, float)
    if not np.any(x > 0):
        return float("nan")
    return float(np.clip(np.dot(x, y) / np.dot(x, x), 0.0, 1.0))


def amdahl_efficiency(serial_fraction: float, workers: float) -> float:
    return 1 / (serial_fraction * workers + (1 - serial_fraction))


def amdahl_fits(table: pd.DataFrame, mode: str = "weak") -> pd.DataFrame:
    """Per curve with a baseline and at least one larger point: the fitted serial fraction and
    PREDICTED efficiency at 2x and 4x the largest measured process count (not measurements)."""
    curve = CURVE_KEYS[mode]
    rows = []
    measured = table.dropna(subset=["speedup"])
    for key, group in measured.groupby(curve, sort=True):
        if group["world_size"].max() < 2:
            continue
        largest = int(group["world_size"].max())
        serial = amdahl_serial_fraction(group["world_size"].to_numpy(), group["speedup"].to_numpy())
        rows.append({
            **dict(zip(curve, key)),
            "largest_measured_procs": largest,
            "amdahl_serial_fraction": serial,
            f"predicted_efficiency_at_{2}x": amdahl_efficiency(serial, 2 * largest),
            f"predicted_efficiency_at_{4}x": amdahl_efficiency(serial, 4 * largest),
        })
    return pd.DataFrame(rows, columns=[*curve, "largest_measured_procs", "amdahl_serial_fraction",
                                       "predicted_efficiency_at_2x", "predicted_efficiency_at_4x"])


COMPACT_HIDDEN = ["system_name", "system_id", "experiment_id", "experiment_label", "ci95_low", "ci95_high", "cv",
                  "samples_per_s_per_proc", "step_time_s_median", "compute_step_time_s", "exposed_comm_s",
                  "baseline_samples_per_s", "bare_baseline_samples_per_s", "engine_cost_at_1", "karp_flatt"]
"""A local sweep is one system, its curves differ by workload and engine: the ids only crowd the terminal."""


def _input_bound(group: pd.DataFrame) -> str:
    """"input-bound" where most runs of the point waited for batches above measurements.input's share, else ""."""
    flags = group.get("input_bound", pd.Series(dtype=object)).dropna()
    return "input-bound" if len(flags) and flags.astype(bool).mean() > 0.5 else ""


def format_scaling_table(table: pd.DataFrame, compact: bool = False) -> str:
    """The table as text; compact (a sweep's terminal) names each experiment only by what sets it apart."""
    hidden = ["baseline_runs", "global_batch_size", "procs_per_node"] + (COMPACT_HIDDEN if compact else [])
    shown = table.drop(columns=hidden, errors="ignore")
    shown = shown.drop(columns=[c for c in ("tokens_per_s", "peak_memory_gib", "data_stall_share") if c in shown
                                and shown[c].isna().all()])
    if "input_bound" in shown and not shown["input_bound"].astype(bool).any():
        shown = shown.drop(columns="input_bound")
    if compact and table["experiment_id"].nunique() > 1:
        labels = list(dict.fromkeys(table["experiment_label"]))
        short = dict(zip(labels, legend_labels(labels)))
        shown.insert(0, "experiment", table["experiment_label"].map(short))
    shown = shown.rename(
        columns={"world_size": "procs", "batch_size": "batch/proc", "num_nodes": "nodes", "num_runs": "runs",
                 "exposed_comm_share": "exposed_comm", "peak_memory_gib": "peak_mem_gib", "data_stall_share": "data_stall",
                 "input_bound": "input"}
    )
    specs = {
        "samples_per_s": ".1f", "tokens_per_s": ".0f", "peak_mem_gib": ".2f", "ci95_low": ".1f", "ci95_high": ".1f", "samples_per_s_per_proc": ".1f",
        "baseline_samples_per_s": ".1f", "cv": ".1%", "step_time_s_median": ".4f", "speedup": ".2f",
        "efficiency": ".1%", "karp_flatt": ".3f", "compute_step_time_s": ".4f", "exposed_comm_s": ".4f",
        "exposed_comm": ".1%", "data_stall": ".1%", "bare_baseline_samples_per_s": ".1f", "bare_efficiency": ".1%", "engine_cost_at_1": ".1%",
    }
    return shown.to_string(index=False, formatters={
        column: (lambda value, spec=spec: "-" if pd.isna(value) else format(value, spec)) for column, spec in specs.items()
    })


BASELINES_NOTE = ("efficiency: against the engine's own 1-process run; bare_efficiency: against single-process "
                  "training without the engine's gradient synchronisation (that run's step without its exposed_comm)")


def baselines_note(table: pd.DataFrame) -> list[str]:
    """What the two efficiencies divide by, then each curve whose engine alone costs more than
    ENGINE_COST_NOTED of the 1-process throughput, with nothing to communicate."""
    lines = [BASELINES_NOTE]
    ones = table[(table["world_size"] == 1) & (table["engine_cost_at_1"] > ENGINE_COST_NOTED)] if not table.empty else table
    for _, row in ones.iterrows():
        lines.append(f"engine_cost_at_1: {row['engine']} costs {row['workload']} {row['engine_cost_at_1']:.1%} of its "
                     f"1-process throughput with nothing to communicate ({row['baseline_samples_per_s']:.1f} vs "
                     f"{row['bare_baseline_samples_per_s']:.1f} samples/s without it)")
    return lines

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
would run it, the answer to "how much faster is N than 1?": the 1-process point's global batch over
its compute-only step (the same steps without the engine's gradient synchronisation). `engine_cost_at_1`
= 1 - the engine's baseline / the bare one, which is the 1-process point's exposed_comm share: the
engine's own cost with nothing to send. Above ENGINE_COST_NOTED the sweep and the report name it.

One statistic per window (hpcbench.timing.WINDOW_STATISTIC): every step term is a window's mean step,
so that compute + exposed communication = the step the throughput implies.

Every derived number carries a 95 % interval (`_low`, `_high`): throughput's from its repeats (Student t
of the mean), the compute-only step's from its window's steps; a difference of the two takes both
half-widths in quadrature (independent windows), a ratio takes the far ends of both. A value whose
interval crosses a bound no measurement can cross is nulled with the reason (not_measurable).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hpcbench.analysis.curves import MODES, POINT_KEYS, curve_keys, legend_labels, runs_in_mode
from hpcbench.analysis.stats import bootstrap_median_ci, coefficient_of_variation, t_mean_ci

CURVE_KEYS = {mode: curve_keys(mode) for mode in MODES}
TABLE_COLUMNS = [
    "num_runs", "samples_per_s", "ci95_low", "ci95_high", "cv", "samples_per_s_per_proc", "tokens_per_s",
    "peak_memory_gib", "step_time_s_median", "step_time_s_mean",
    "compute_step_time_s", "exposed_comm_s", "exposed_comm_share", "exposed_comm_share_low", "exposed_comm_share_high",
    "baseline_samples_per_s", "baseline_runs", "speedup", "speedup_low", "speedup_high",
    "efficiency", "efficiency_low", "efficiency_high", "bare_baseline_samples_per_s", "bare_efficiency",
    "bare_efficiency_low", "bare_efficiency_high", "engine_cost_at_1", "engine_cost_at_1_low", "engine_cost_at_1_high",
    "karp_flatt", "data_stall_share", "data_stall_share_low", "data_stall_share_high", "input_bound", "warnings",
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
        mean_low, mean_high = t_mean_ci(pooled)
        median = float(np.median(pooled))
        # a synthetic batch is made once and stays on the device: only runs that read data can stall on it
        reads_data = group.get("data", pd.Series(dtype=object)).fillna("synthetic").ne("synthetic").any()
        stalls = [x for repeats in group.get("data_stall_share_repeats", pd.Series(dtype=object))
                  if reads_data and isinstance(repeats, list) for x in repeats]
        stall_low, stall_high = t_mean_ci(stalls)
        rows.append({
            **dict(zip([*curve, *POINT_KEYS], key)),
            other: group[other].iloc[0],
            "num_runs": len(group),
            "samples_per_s": median,
            "ci95_low": low,
            "ci95_high": high,
            "mean_low": mean_low,
            "mean_high": mean_high,
            "cv": coefficient_of_variation(pooled),
            "samples_per_s_per_proc": median / key[-1],
            "tokens_per_s": median * _median_or_nan(group.get("tokens_per_sample", pd.Series(dtype=float))),
            "peak_memory_gib": _median_or_nan(group.get("peak_memory_gib", pd.Series(dtype=float))),
            "step_time_s_median": float(group["step_time_s_median"].median()),
            "step_time_s_mean": float(group["global_batch_size"].iloc[0] / median),
            "compute_step_time_s": _median_or_nan(group["compute_step_time_s"]),
            # the widest of the runs' windows: pooling runs does not narrow what one window could tell
            "compute_half_width_s": _max_or_nan(group.get("compute_step_time_s_half_width", pd.Series(dtype=float))),
            "data_stall_share": _median_or_nan(group.get("data_stall_share", pd.Series(dtype=float))) if reads_data
            else np.nan,
            "data_stall_share_low": max(stall_low, 0.0) if stalls else np.nan,
            "data_stall_share_high": min(stall_high, 1.0) if stalls else np.nan,
            "input_bound": _input_bound(group),
            "warnings": point_warnings(group),
            "run_ids": ",".join(group["run_id"]),
        })
    table = pd.DataFrame(rows)
    # The step's terms: exposed = step - compute-only step, each window's mean; its noise, both half-widths.
    step_half = (table["global_batch_size"] / table["mean_low"] - table["global_batch_size"] / table["mean_high"]) / 2
    table["exposed_comm_s"] = (table["step_time_s_mean"] - table["compute_step_time_s"]).where(
        table["compute_step_time_s"].notna())
    table["exposed_comm_share"] = table["exposed_comm_s"] / table["step_time_s_mean"]
    exposed_half = np.sqrt(step_half.fillna(0) ** 2 + table["compute_half_width_s"].fillna(0) ** 2).where(
        step_half.notna() | table["compute_half_width_s"].notna())
    table["exposed_comm_share_low"] = table["exposed_comm_share"] - exposed_half / table["step_time_s_mean"]
    table["exposed_comm_share_high"] = (table["exposed_comm_share"] + exposed_half / table["step_time_s_mean"]).clip(upper=1)
    baseline = table[(table["world_size"] == 1) & (table["num_nodes"] == 1)].set_index(curve)
    keys = list(table[curve].itertuples(index=False, name=None))

    def at_baseline(column: str) -> np.ndarray:
        return np.asarray([baseline[column].get(k, np.nan) for k in keys], dtype=float)

    table["baseline_samples_per_s"] = at_baseline("samples_per_s")
    table["baseline_runs"] = [baseline["run_ids"].get(k, "") for k in keys]
    table["speedup"] = table["samples_per_s"] / table["baseline_samples_per_s"]
    table["efficiency"] = table["speedup"] / table["world_size"]
    # Efficiency's interval: the point's and its baseline's 95 % t intervals of the mean throughput (stats.t_mean_ci),
    # taken at their far ends, and holding the efficiency itself (a ratio of medians).
    low = table["mean_low"] / (table["world_size"] * at_baseline("mean_high"))
    high = table["mean_high"] / (table["world_size"] * at_baseline("mean_low"))
    table["efficiency_low"] = np.fmin(low.clip(lower=0), table["efficiency"]).where(low.notna())
    table["efficiency_high"] = np.fmax(high.where(high > 0, np.inf), table["efficiency"]).where(high.notna())
    table["speedup_low"] = table["efficiency_low"] * table["world_size"]
    table["speedup_high"] = table["efficiency_high"] * table["world_size"]
    # The bare baseline: the 1-process global batch over its compute-only step; its interval, that step's.
    compute_1, compute_half_1 = at_baseline("compute_step_time_s"), at_baseline("compute_half_width_s")
    batch_1 = at_baseline("step_time_s_mean") * at_baseline("samples_per_s")  # the 1-process global batch
    table["bare_baseline_samples_per_s"] = batch_1 / compute_1
    table["bare_efficiency"] = table["samples_per_s"] / (table["world_size"] * table["bare_baseline_samples_per_s"])
    bare_low = table["mean_low"] * (compute_1 - compute_half_1) / (table["world_size"] * batch_1)
    bare_high = table["mean_high"] * (compute_1 + compute_half_1) / (table["world_size"] * batch_1)
    table["bare_efficiency_low"] = np.fmin(bare_low.clip(lower=0), table["bare_efficiency"]).where(bare_low.notna())
    table["bare_efficiency_high"] = np.fmax(bare_high, table["bare_efficiency"]).where(bare_high.notna())
    table["engine_cost_at_1"] = 1 - table["baseline_samples_per_s"] / table["bare_baseline_samples_per_s"]
    table["engine_cost_at_1_low"] = at_baseline("exposed_comm_share_low")
    table["engine_cost_at_1_high"] = at_baseline("exposed_comm_share_high")
    table["karp_flatt"] = karp_flatt(table["speedup"].to_numpy(float), table["world_size"].to_numpy(float))
    table["warnings"] = [
        "; ".join(filter(None, [w, missing_baseline(runs, row, mode) if n > 1 and np.isnan(b) else ""]))
        for w, n, b, row in zip(table["warnings"], table["world_size"], table["baseline_samples_per_s"],
                                table.itertuples())]
    contended_baseline = baseline["warnings"].str.contains("contended")
    table["warnings"] = [
        "; ".join(filter(None, [w, "baseline contended" if contended_baseline.get(k, False) and n > 1 else ""]))
        for w, k, n in zip(table["warnings"], keys, table["world_size"])]
    return not_measurable(table)[columns].reset_index(drop=True)


def not_measurable(table: pd.DataFrame) -> pd.DataFrame:
    """Values whose interval crosses a bound no measurement can cross become null, with the reason in `warnings`,
    never printed bare:
    - exposed communication whose interval reaches below 0 (the window without communication was slower than
      the timed steps, or as fast within noise), with the engine's cost at 1 process and the bare baseline and
      efficiency that divide by it (it would make bare_efficiency above 100 %);
    - efficiency whose whole interval lies above 100 %, is kept but named (superlinear: caches, or a baseline
      slowed by something else)."""
    table = table.copy()
    notes = [[w] if w else [] for w in table["warnings"]]
    share, low, high = (table[c].to_numpy(float) for c in ("exposed_comm_share", "exposed_comm_share_low",
                                                           "exposed_comm_share_high"))
    noise = (high - low) / 2
    hidden = (share < 0) | (low < 0)
    for i in np.flatnonzero(hidden):
        why = (" (the compute-only steps were slower than the timed ones)" if share[i] < 0 else
               f" (measured {share[i]:.0%}, within the noise of 0)")
        notes[i].append(f"exposed_comm not measurable here: noise ±{np.nanmax([noise[i], -share[i]]):.0%} exceeds it{why}")
    table.loc[hidden, ["exposed_comm_s", "exposed_comm_share", "exposed_comm_share_low", "exposed_comm_share_high"]] = np.nan
    cost, cost_low = table["engine_cost_at_1"].to_numpy(float), table["engine_cost_at_1_low"].to_numpy(float)
    bare_hidden = (cost < 0) | (cost_low < 0)
    for i in np.flatnonzero(bare_hidden):
        said = (f"the compute-only steps were {-cost[i]:.0%} slower than the timed ones" if cost[i] < 0 else
                f"the engine's cost ({cost[i]:.0%}) is within the noise (±{cost[i] - cost_low[i]:.0%})")
        notes[i].append(f"bare_efficiency not measurable here: at 1 process {said}")
    table.loc[bare_hidden, ["bare_baseline_samples_per_s", "bare_efficiency", "bare_efficiency_low",
                            "bare_efficiency_high", "engine_cost_at_1", "engine_cost_at_1_low",
                            "engine_cost_at_1_high"]] = np.nan
    for i in np.flatnonzero((table["efficiency_low"] > 1).to_numpy()):
        notes[i].append(f"efficiency above 100 % beyond noise ({table['efficiency_low'].iloc[i]:.0%} at least): "
                        "superlinear (caches) or a slowed baseline")
    table["warnings"] = ["; ".join(n) for n in notes]
    return table


def missing_baseline(runs: pd.DataFrame, point, mode: str) -> str:
    """Why a point has no speedup, in words: the 1-process runs of the same work on this system used another thread
    count (separate `hpcbench run`s divide the cores by their own process count), or there is none."""
    scale = "batch_size" if mode == "weak" else "global_batch_size"
    same = runs[(runs["system_id"] == point.system_id) & (runs["workload"] == point.workload)
                & (runs["engine"] == point.engine) & (runs[scale] == getattr(point, scale))
                & (runs["world_size"] == 1) & (runs["num_nodes"] == 1)]
    threads = sorted({int(t) for t in same["num_threads"].dropna()})
    mine = sorted({int(t) for t in runs[runs["run_id"].isin(point.run_ids.split(","))]["num_threads"].dropna()})
    if threads and mine and threads != mine:
        return (f"no baseline: the 1-process runs of this work used {'/'.join(map(str, threads))} thread(s) a process, "
                f"this point {'/'.join(map(str, mine))} (separate runs divide the cores by their own process count: "
                "give both the same --threads, or run them as one `hpcbench sweep`)")
    return "no baseline: no 1-process run of this experiment on this system"


def point_warnings(group: pd.DataFrame) -> str:
    """Why a point's numbers are not this workload's alone: other processes or steal took the run's CPUs
    (measurements.system_load), or its own ranks had more threads than cores. Empty: none known."""
    warnings = []
    contended = group.get("contended", pd.Series(dtype=object)).fillna(False).astype(bool)
    if contended.any():
        shares = pd.to_numeric(group.get("others_share", pd.Series(dtype=float)), errors="coerce")[contended]
        runs = f"{int(contended.sum())} of {len(group)} runs" if len(group) > 1 else "others"
        warnings.append(f"contended ({runs}: up to {shares.max():.0%} of the CPUs)" if shares.notna().any()
                        else "contended")
    if group.get("oversubscribed", pd.Series(dtype=object)).map(lambda o: isinstance(o, str)).any():
        warnings.append("oversubscribed")
    return "; ".join(warnings)


def _max_or_nan(values: pd.Series) -> float:
    found = pd.to_numeric(values, errors="coerce").dropna()
    return float(found.max()) if not found.empty else np.nan


def _median_or_nan(values: pd.Series) -> float:
    """Median of the runs that measured it (older records and --no-breakdown runs did not)."""
    found = pd.to_numeric(values, errors="coerce").dropna()
    return float(found.median()) if not found.empty else np.nan


def karp_flatt(speedup: np.ndarray, workers: np.ndarray) -> np.ndarray:
    """Experimentally determined serial fraction e = (1/S - 1/N) / (1 - 1/N); undefined at N = 1 and where the
    point is no faster than its baseline (e >= 1 says only that something else than a serial part is at work)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        serial = (1 / speedup - 1 / workers) / (1 - 1 / workers)
    return np.where((workers > 1) & (speedup > 1), serial, np.nan)  # a speedup <= 1 has no serial fraction


def amdahl_serial_fraction(workers: np.ndarray, speedup: np.ndarray) -> float:
    """Least-squares s in S(N) = 1 / (s + (1 - s) / N), fitted as 1/S - 1/N = s (1 - 1/N); within [0, 1]."""
    x = 1 - 1 / np.asarray(workers, float)
    y = 1 / np.asarray(speedup, float) - 1 / np.asarray(workers, float)
    if not np.any(x > 0):
        return float("nan")
    return float(np.clip(np.dot(x, y) / np.dot(x, x), 0.0, 1.0))


def amdahl_efficiency(serial_fraction: float, workers: float) -> float:
    return 1 / (serial_fraction * workers + (1 - serial_fraction))


def amdahl_fits(table: pd.DataFrame, mode: str = "weak", include_contended: bool = False) -> pd.DataFrame:
    """Per curve with a baseline and at least one larger point: the fitted serial fraction and
    PREDICTED efficiency at 2x and 4x the largest measured process count (not measurements).

    Amdahl's law describes a speedup between 1 and N: a point slower than its baseline (speedup <= 1) says
    that something other than a serial fraction is at work (contention, a network slower than the compute),
    and a fit through it reads serial fraction 1.0. Such points, and contended ones unless
    `include_contended`, are left out; a curve left without a point above 1 process gets no fit."""
    curve = CURVE_KEYS[mode]
    rows = []
    measured = table.dropna(subset=["speedup"])
    usable = (measured["speedup"] > 1) | (measured["world_size"] == 1)
    if not include_contended and "warnings" in measured:
        usable &= ~measured["warnings"].fillna("").str.contains("contended")
    measured = measured[usable]
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
                  "samples_per_s_per_proc", "step_time_s_median", "step_time_s_mean", "compute_step_time_s", "exposed_comm_s",
                  "baseline_samples_per_s", "bare_baseline_samples_per_s", "engine_cost_at_1", "karp_flatt"]
"""A local sweep is one system, its curves differ by workload and engine: the ids only crowd the terminal."""


def _input_bound(group: pd.DataFrame) -> str:
    """"input-bound" where most runs of the point waited for batches above measurements.input's share, else ""."""
    flags = group.get("input_bound", pd.Series(dtype=object)).dropna()
    return "input-bound" if len(flags) and flags.astype(bool).mean() > 0.5 else ""


INTERVALS = {"speedup": ".2f", "efficiency": ".1%", "bare_efficiency": ".1%", "exposed_comm_share": ".1%",
             "engine_cost_at_1": ".1%", "data_stall_share": ".1%"}
"""The derived numbers that carry a 95 % interval (`_low`, `_high` columns), and how they are printed."""


def with_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """Each INTERVALS column as one text cell, "61.2%[55.0,67.9]", its bounds' columns dropped: a value and its
    uncertainty read together, in one word (a terminal table stays split by whitespace). "-": not measured, or not
    measurable (the reason is in `warnings`)."""
    shown = table.copy()
    for column, spec in INTERVALS.items():
        if column not in shown:
            continue
        low, high = shown.pop(f"{column}_low"), shown.pop(f"{column}_high")
        unit = "%" if spec.endswith("%") else ""
        bound = spec.replace("%", "f")  # the bounds without their unit: ".1%" -> ".1f" (of 100 x the share)
        shown[column] = [
            "-" if pd.isna(v) else format(v, spec) if pd.isna(lo) or pd.isna(hi) else
            f"{format(v, spec)}[{format(100 * lo if unit else lo, bound)},{format(100 * hi if unit else hi, bound)}]"
            for v, lo, hi in zip(shown[column], low, high)]
    return shown


def format_scaling_table(table: pd.DataFrame, compact: bool = False) -> str:
    """The table as text; compact (a sweep's terminal) names each experiment only by what sets it apart."""
    hidden = ["baseline_runs", "global_batch_size", "procs_per_node"] + (COMPACT_HIDDEN if compact else [])
    shown = table.drop(columns=hidden, errors="ignore")
    empty = [c for c in ("tokens_per_s", "peak_memory_gib", "data_stall_share") if c in shown and shown[c].isna().all()]
    shown = shown.drop(columns=[*empty, *(f"{c}{end}" for c in empty if c in INTERVALS for end in ("_low", "_high"))],
                       errors="ignore")
    for flags in ("input_bound", "warnings"):
        if flags in shown and not shown[flags].astype(bool).any():
            shown = shown.drop(columns=flags)
    if compact and table["experiment_id"].nunique() > 1:
        labels = list(dict.fromkeys(table["experiment_label"]))
        short = dict(zip(labels, legend_labels(labels)))
        shown.insert(0, "experiment", table["experiment_label"].map(short))
    shown = with_intervals(shown).rename(
        columns={"world_size": "procs", "batch_size": "batch/proc", "num_nodes": "nodes", "num_runs": "runs",
                 "exposed_comm_share": "exposed_comm", "peak_memory_gib": "peak_mem_gib", "data_stall_share": "data_stall",
                 "input_bound": "input"}
    )
    specs = {
        "samples_per_s": ".1f", "tokens_per_s": ".0f", "peak_mem_gib": ".2f", "ci95_low": ".1f", "ci95_high": ".1f",
        "samples_per_s_per_proc": ".1f", "baseline_samples_per_s": ".1f", "cv": ".1%", "step_time_s_median": ".4f",
        "step_time_s_mean": ".4f", "karp_flatt": ".3f", "compute_step_time_s": ".4f", "exposed_comm_s": ".4f",
        "bare_baseline_samples_per_s": ".1f",
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


COMMUNICATION_BOUND_SHARE = 0.25
"""Exposed communication above this share of the step: the step waits for its gradients more than a quarter of
the time, the point's first limit."""
NOISY_CV = 0.10
"""Repeats spread wider than this (coefficient of variation): the point's numbers move more between windows than
most effects this table compares."""
CORES_CONTENDED_GROWTH = 1.3
"""The compute-only step (no communication) grown by more than this from the 1-process point: the ranks compete
for something they share on a node (cores, memory bandwidth), which no network explains."""


def verdicts(table: pd.DataFrame) -> list[str]:
    """One line per point that has something to say, in words, from its measured terms: what limits it (communication,
    shared cores, input) and whether its numbers can be trusted here (contended, noisy, past a bound)."""
    lines = []
    if table.empty:
        return lines
    baseline_compute = {key: row["compute_step_time_s"] for key, row in table[table["world_size"] == 1].set_index(
        ["experiment_id", "system_id"]).iterrows()} if "experiment_id" in table else {}
    for row in table.itertuples():
        said = []
        if "contended" in row.warnings and "baseline contended" != row.warnings:
            said.append(f"not this workload's alone: {row.warnings.split(';')[0]}")
        elif "baseline contended" in row.warnings:
            said.append("its 1-process baseline was contended: speedup and efficiency are not this workload's")
        if pd.notna(row.cv) and row.cv > NOISY_CV:
            said.append(f"noisy: ±{row.cv:.0%} between repeats (rerun with more --repeats, on a quieter machine)")
        if pd.notna(row.exposed_comm_share) and row.exposed_comm_share >= COMMUNICATION_BOUND_SHARE and row.world_size > 1:
            said.append(f"communication-bound: {row.exposed_comm_share:.0%} of the step waits for the gradient all-reduce")
        one = baseline_compute.get((row.experiment_id, row.system_id), np.nan) if baseline_compute else np.nan
        if row.world_size > 1 and pd.notna(one) and pd.notna(row.compute_step_time_s) \
                and row.compute_step_time_s > CORES_CONTENDED_GROWTH * one:
            said.append(f"cores contended: the compute-only step grew x{row.compute_step_time_s / one:.1f} from 1 to "
                        f"{row.world_size} processes (the ranks share the node's cores or memory bandwidth)")
        if row.input_bound:
            said.append("input-bound: the step waits for its batches")
        said += [w.strip() for w in row.warnings.split(";") if "not measurable" in w or "no baseline" in w]
        if said:
            lines.append(f"{row.workload} at {row.world_size} process(es): " + "; ".join(said))
    return lines

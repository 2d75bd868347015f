"""Time to accuracy: per system and experiment, time and samples to target against process count,
beside the throughput speedup of the same runs (statistical vs hardware efficiency).

Seeds of one point pool into MLPerf's olympic mean; a run that never reached its target is
counted and shown as such, never averaged in.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

KEYS = ["system_name", "system_id", "experiment_id", "experiment_label", "workload", "world_size"]


def olympic_mean(values: list[float]) -> float | None:
    """MLPerf Training's score over seeds: drop the fastest and the slowest, average the rest
    (a plain mean below 3 values; None for none)."""
    ordered = sorted(values)
    if not ordered:
        return None
    kept = ordered[1:-1] if len(ordered) >= 3 else ordered
    return sum(kept) / len(kept)


def tta_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (system, experiment, process count) of --mode tta runs, with both speedups against the
    curve's smallest process count: time to target (olympic means of the runs that reached it) and throughput."""
    columns = [*KEYS, "global_batch_size", "target", "quality_metric", "seeds", "reached", "time_to_target_s",
               "times_to_target_s", "samples_to_target", "epochs_to_target", "best_quality", "samples_per_s",
               "tta_speedup", "throughput_speedup"]
    tta = runs[runs["mode"] == "tta"] if not runs.empty else runs
    if tta.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, group in tta.groupby(KEYS, sort=True):
        hit = group[group["reached"] == True]  # noqa: E712 (None where a run has no tta block)
        best = group["best_quality"].dropna()
        higher = bool(group["higher_is_better"].iloc[0])
        rows.append({
            **dict(zip(KEYS, key)),
            "global_batch_size": group["global_batch_size"].iloc[0], "target": group["target"].iloc[0],
            "quality_metric": group["quality_metric"].iloc[0], "seeds": len(group),
            "reached": f"{len(hit)}/{len(group)}",
            "time_to_target_s": olympic_mean(hit["time_to_target_s"].tolist()),
            "times_to_target_s": [round(t, 3) if t is not None and t == t else "not reached"
                                  for t in group.sort_values("seed")["time_to_target_s"]],
            "samples_to_target": olympic_mean(hit["samples_to_target"].tolist()),
            "epochs_to_target": olympic_mean(hit["epochs_to_target"].dropna().tolist()),
            "best_quality": (best.max() if higher else best.min()) if not best.empty else None,
            "samples_per_s": group["samples_per_s"].median(),
        })
    table = pd.DataFrame(rows)
    for _, curve in table.groupby(["system_id", "experiment_id"]):
        base = curve.loc[curve["world_size"].idxmin()]
        table.loc[curve.index, "tta_speedup"] = base["time_to_target_s"] / curve["time_to_target_s"]
        table.loc[curve.index, "throughput_speedup"] = curve["samples_per_s"] / base["samples_per_s"]
    return table[columns]


def format_tta_table(table: pd.DataFrame) -> str:
    """The sweep's printout: time and samples to target with both speedups, per experiment."""
    if table.empty:
        return "(no time-to-accuracy runs)"
    shown = table[["workload", "world_size", "global_batch_size", "reached", "time_to_target_s", "samples_to_target",
                   "tta_speedup", "samples_per_s", "throughput_speedup", "best_quality", "target"]]
    lines = []
    for label, rows in table.groupby("experiment_label", sort=False):
        lines += [label, shown.loc[rows.index].drop(columns="workload").to_string(index=False, float_format=lambda v: f"{v:.4g}")]
    return "\n".join(lines)


def quality_figure(runs: pd.DataFrame) -> Figure | None:
    """Held-out quality against seconds, one line per run, a panel per experiment, colour per process count."""
    tta = runs[(runs["mode"] == "tta") & runs["quality_curve"].notna()] if not runs.empty else runs
    if tta.empty:
        return None
    experiments = list(dict.fromkeys(tta["experiment_label"]))
    fig = Figure(figsize=(6.5, 3.6 * len(experiments)), layout="constrained")
    counts = sorted(tta["world_size"].unique())
    colours = {count: f"C{i}" for i, count in enumerate(counts)}
    for panel, label in enumerate(experiments, start=1):
        ax = fig.add_subplot(len(experiments), 1, panel)
        mine = tta[tta["experiment_label"] == label]
        for count in counts:
            for i, (_, run) in enumerate(mine[mine["world_size"] == count].iterrows()):
                points = [p for p in run["quality_curve"] if p.get("quality") is not None]
                ax.plot([p["seconds"] for p in points], [p["quality"] for p in points], color=colours[count],
                        marker=".", alpha=0.8, label=f"{count} proc(s)" if i == 0 else None)
        ax.axhline(mine["target"].iloc[0], color="grey", linestyle="--", linewidth=1, label="target")
        ax.set_xlabel("seconds since the first training step (evaluations included)")
        ax.set_ylabel(mine["quality_metric"].iloc[0])
        ax.set_title(label, fontsize=8)
        ax.legend(fontsize=7)
    return fig

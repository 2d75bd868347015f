"""The input pipeline, read side: per run that read files, DS-Analyzer's split (synthetic / cached / storage
steps, prep and fetch stalls) and whether it was input-bound; and iobench's storage rates beside netbench's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

INPUT_HEADING = ("Input pipeline (--data files): the step from storage, from memory (cached: decoded every step) and "
                 "from one batch on the device (synthetic: compute alone), DS-Analyzer's split; input-bound where the "
                 "data stall ((storage - synthetic) / storage) is above the share its record states (10 %)")
IOBENCH_HEADING = ("Storage: iobench (what the data path delivers, undecoded; the slowest rank's rate is what a run's "
                   "ranks can be fed at)")
SYSTEM = ["system_name", "system_id", "network"]


def input_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run that read files: where its step went, the slowest rank per step, means over steps."""
    columns = [*SYSTEM, "workload", "data_format", "loader_workers", "batch_size", "num_nodes", "world_size",
               "samples_per_s", "storage_step_ms", "cached_step_ms", "synthetic_step_ms", "prep_stall_ms",
               "fetch_stall_ms", "prep_stall_share", "fetch_stall_share", "data_stall_share", "input_bound", "run_id"]
    if runs.empty or "data" not in runs:
        return pd.DataFrame(columns=columns)
    rows = []
    for _, run in runs[runs["data"] == "files"].iterrows():
        split: dict[str, Any] = run["input_split"] if isinstance(run["input_split"], dict) else {}
        rows.append({**{c: run.get(c) for c in columns if c in run},
                     **{f"{name}_step_ms": _ms(split.get(f"{name}_step_s")) for name in ("storage", "cached", "synthetic")},
                     "prep_stall_ms": _ms(split.get("prep_stall_s")), "fetch_stall_ms": _ms(split.get("fetch_stall_s")),
                     "prep_stall_share": split.get("prep_stall_share"), "fetch_stall_share": split.get("fetch_stall_share"),
                     "input_bound": "input-bound" if run.get("input_bound") else ""})
    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(rows)[columns].sort_values([*SYSTEM[:2], "workload", "data_format", "num_nodes", "world_size"])


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def iobench_frame(found: list[tuple[Path, dict[str, Any]]]) -> pd.DataFrame:
    """One row per iobench record: its pattern, shape and rates."""
    columns = [*SYSTEM, "pattern", "data_format", "num_nodes", "ranks_per_node", "workers", "aggregate_mb_per_s",
               "aggregate_samples_per_s", "node_mb_per_s_min", "rank_samples_per_s_min", "bytes_per_sample", "run_id"]
    rows = []
    for _, record in found:
        if record.get("kind") != "iobench" or record["status"] != "ok":
            continue
        m, system = record["metrics"], record["system"]
        rows.append({"system_name": system["name"], "system_id": system["system_id"], "network": system.get("network"),
                     "pattern": m["pattern"], "data_format": record["config"].get("data_format"),
                     "num_nodes": m["num_nodes"], "ranks_per_node": m["ranks_per_node"],
                     "workers": record["config"].get("workers"), "aggregate_mb_per_s": m["aggregate_bytes_per_s"] / 1e6,
                     "aggregate_samples_per_s": m["aggregate_samples_per_s"],
                     "node_mb_per_s_min": min(n["bytes_per_s"] for n in m["per_node"].values()) / 1e6,
                     "rank_samples_per_s_min": m["rank_samples_per_s_min"], "bytes_per_sample": m["bytes_per_sample"],
                     "run_id": record["run_id"]})
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values([*SYSTEM[:2], "data_format", "num_nodes", "ranks_per_node"]) if rows else frame

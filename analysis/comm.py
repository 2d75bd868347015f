"""The communication model: how much of the scaling loss the all-reduce of gradients explains.

For a weak-scaling point at N processes, the measured exposed communication (step time minus the
compute-only step time, both from the run) is set beside the ring all-reduce lower bound,
2(N-1)/N x gradient bytes / busbw, where busbw is the all-reduce bandwidth `hpcbench netbench`
measured with the run's own backend (gloo, NCCL, Horovod) at that process count and node count, interpolated (log-log) at the gradient size. DDP overlaps the
all-reduce with the backward pass: overlap = 1 - exposed / bound is the share of the bound it
hid (negative when the step waited longer than the bound: stragglers, cores contended by
threads, synchronisation). The step-time growth over the 1-process step stays beside them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from hpcbench.analysis.curves import curve_keys
from hpcbench.analysis.load import read_valid
from hpcbench.records import netbench_rows

PROVENANCE = ["cpu_model", "gpu_model", "torch", "hpcbench", "started"]
NETBENCH_COLUMNS = ["run_id", "system_name", "system_id", "network", "device", "world_size", "num_nodes", "backend", "collective",
                    "size_bytes", "time_s", "algbw_gbps", "busbw_gbps", "wrong", *PROVENANCE, "path"]


def load_netbench(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per (netbench run, collective, message size)."""
    return netbench_frame(read_valid(paths))


def netbench_frame(found: list[tuple[Path, dict]]) -> pd.DataFrame:
    rows = []
    for path, record in found:
        if record.get("kind") != "netbench" or record["status"] != "ok":
            continue
        prov = record["provenance"]
        for collective, measured in netbench_rows(record["metrics"]).items():
            for row in measured:
                rows.append({"run_id": record["run_id"], "system_name": record["system"]["name"],
                             "system_id": record["system"]["system_id"], "network": record["system"].get("network"),
                             "device": record["config"].get("device"),
                             "world_size": prov["world_size"], "num_nodes": prov.get("num_nodes", 1),
                             "backend": prov.get("backend"), "collective": collective,
                             **{k: row.get(k) for k in ("size_bytes", "time_s", "algbw_gbps", "busbw_gbps", "wrong")},
                             **{k: prov.get(k) for k in PROVENANCE}, "path": str(path)})
    return pd.DataFrame(rows, columns=NETBENCH_COLUMNS)


def ring_allreduce_lower_bound_s(gradient_bytes: float, world_size: int, busbw_gbps: float) -> float:
    """2(n-1)/n x bytes / busbw: the time a ring all-reduce needs at the measured bus bandwidth."""
    if world_size < 2:
        return 0.0
    return 2 * (world_size - 1) / world_size * gradient_bytes / (busbw_gbps * 1e9)


def busbw_at(netbench: pd.DataFrame, size_bytes: float) -> float:
    """Bus bandwidth at a message size, interpolated log-log between measured sizes (clamped at the ends)."""
    rows = netbench.groupby("size_bytes")["busbw_gbps"].median().sort_index()
    rows = rows[rows > 0]
    if rows.empty:
        return float("nan")
    x, y = np.log(rows.index.to_numpy(float)), np.log(rows.to_numpy(float))
    return float(np.exp(np.interp(np.log(size_bytes), x, y)))


def communication_table(table: pd.DataFrame, runs: pd.DataFrame, netbench: pd.DataFrame) -> pd.DataFrame:
    """Per weak-scaling point with N > 1: the communication the step waited for (measured: step time
    minus compute-only step time), the ring all-reduce lower bound at netbench's bandwidth, the
    overlap that their ratio implies (1 - exposed / bound), and the step-time growth over N = 1."""
    curve = curve_keys("weak")
    identity = [*curve, "num_nodes", "world_size"]
    columns = [*identity, "gradient_bytes_per_step", "busbw_gbps", "step_time_s_mean", "compute_step_time_s",
               "exposed_comm_s", "allreduce_bound_s", "overlap", "step_time_growth_s", "bound_share_of_growth"]
    if table.empty or netbench.empty:
        return pd.DataFrame(columns=columns)
    gradient_bytes = runs.groupby(curve)["gradient_bytes_per_step"].first()
    backends = runs.groupby(curve)["backend"].first()  # the bound uses the all-reduce of the library the run used
    baselines = table[table["world_size"] == 1].set_index(curve)["step_time_s_mean"]
    rows = []
    for _, point in table.iterrows():
        key = tuple(point[k] for k in curve)
        bench = netbench[(netbench["world_size"] == point["world_size"]) & (netbench["num_nodes"] == point["num_nodes"])
                         & (netbench["device"] == point["device"]) & (netbench["system_id"] == point["system_id"])
                         & (netbench["collective"] == "all_reduce") & (netbench["backend"] == backends.get(key))]
        grad = gradient_bytes.get(key)
        if point["world_size"] < 2 or key not in baselines.index or bench.empty or not grad:
            continue
        busbw = busbw_at(bench, grad)
        growth = point["step_time_s_mean"] - baselines.loc[key]
        bound = ring_allreduce_lower_bound_s(grad, int(point["world_size"]), busbw)
        exposed = point.get("exposed_comm_s", np.nan)
        rows.append({**{k: point[k] for k in identity}, "gradient_bytes_per_step": grad, "busbw_gbps": busbw,
                     "step_time_s_mean": point["step_time_s_mean"],
                     "compute_step_time_s": point.get("compute_step_time_s", np.nan), "exposed_comm_s": exposed,
                     "allreduce_bound_s": bound, "overlap": 1 - exposed / bound if bound > 0 else np.nan,
                     "step_time_growth_s": growth, "bound_share_of_growth": bound / growth if growth > 0 else np.nan})
    return pd.DataFrame(rows, columns=columns)

"""The forecast's input term: a point whose ranks cannot be fed as fast as they compute is input-bound, and
its step is the input's.

A run reading files (--data files) with W loader workers per rank, at N nodes x P ranks a node, is fed at
the rate iobench measured for the same data format, W readers a rank and the same N x P (its slowest rank's
samples/s): storage shared by every node divides its bandwidth among them, which only a measurement at that
node count knows. With prefetching, the input overlaps compute and communication, so

    input step     = per-rank batch / the slowest iobench rank's samples/s
    predicted step = max(model step, input step);  input term = max(0, input step - model step)

iobench reads without decoding: decoding runs in the loader's workers beside the reads (the run's cached
window measures it; at 1 node it is inside the measured step the model starts from).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpcbench.analysis.load import read_valid
from hpcbench.errors import ConfigError


def iobench_records(folder: str) -> list[dict[str, Any]]:
    if not Path(folder).exists():
        raise ConfigError("iobench", f"no such file or folder: {folder}")
    found = [r for _, r in read_valid([folder]) if r.get("kind") == "iobench" and r["status"] == "ok"]
    if not found:
        raise ConfigError("iobench", f"no ok iobench records in {folder}")
    return found


def input_rates(base: dict[str, Any], found: list[dict[str, Any]]) -> dict[str, Any]:
    """The iobench points that can feed `base`'s ranks: same system, data format and readers a rank, keyed
    "NxP" (nodes x ranks a node); or why none can."""
    config = base["config"]
    if config.get("data") != "files":
        return {"rates": {}, "note": f"the run reads {config.get('data')} data, nothing from storage: no input term"}
    workers = max(1, int(config.get("num_data_workers") or 0))
    system = base["system"]["system_id"]
    mine = [r for r in found if r["system"]["system_id"] == system and r["config"].get("data_format") == config.get("data_format")
            and r["config"].get("workers") == workers]
    if not mine:
        seen = sorted({f"{r['system']['name']} ({r['system']['system_id']}) {r['config'].get('data_format')} "
                       f"{r['config'].get('workers')} worker(s)" for r in found})
        raise ConfigError("iobench", f"no iobench record of {base['system']['name']} ({system}) reading "
                                     f"{config.get('data_format')} with {workers} reader(s) a rank, as the run's loader "
                                     f"(found: {', '.join(seen)})")
    rates: dict[str, Any] = {}
    for record in sorted(mine, key=lambda r: r["run_id"]):  # the newest of each shape wins
        m = record["metrics"]
        rates[f"{m['num_nodes']}x{m['ranks_per_node']}"] = {"samples_per_s": m["rank_samples_per_s_min"],
                                                           "run_id": record["run_id"], "pattern": m["pattern"]}
    return {"rates": rates, "note": None}


def input_term(model: dict[str, Any], rates: dict[str, Any], num_nodes: int, procs_per_node: int,
               batch_size: int) -> dict[str, Any]:
    """The point's input step and term beside the model's step (which it may replace), or why there is none."""
    if rates["note"]:
        return {"input_s": 0.0, "input_step_time_s": None, "input_note": rates["note"]}
    rate = rates["rates"].get(f"{num_nodes}x{procs_per_node}")
    if rate is None:
        return {"input_s": None, "input_step_time_s": None,
                "input_note": f"no iobench at {num_nodes} node(s) x {procs_per_node} rank(s) (measured: "
                              f"{', '.join(sorted(rates['rates']))}): input not forecast"}
    step = batch_size / rate["samples_per_s"]
    return {"input_s": max(0.0, step - model["step_time_s"]), "input_step_time_s": step,
            "input_note": f"iobench {rate['run_id']}: {rate['samples_per_s']:.0f} samples/s a rank ({rate['pattern']})"}

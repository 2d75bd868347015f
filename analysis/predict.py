"""`hpcbench predict`: the step time, efficiency and limiting term at scales not run, from one measured
run's gradient-ready timeline and a network model (hpcbench.analysis.netmodel).

The overlap model (MG-WFBP's recurrence, Shi et al., INFOCOM 2019): bucket k's all-reduce starts when
its gradients are ready (r_k, measured within backward) and the previous bucket's all-reduce is done,

    f_k = max(r_k, f_(k-1)) + c_k          c_k: the network model's all-reduce time for bucket k's bytes

and the optimizer step waits for the last. With B the backward time, the step waits max(0, f_K - B)
beyond its compute, so

    predicted step = compute-only step + max(0, f_K - B)

Weak scaling keeps the measured per-process compute (the compute-only window: the engine's own cost
at one process is not compute). Strong scaling needs the compute at each point's smaller per-process
batch: a run at that batch among the records, or the point is refused with the reason.

The interval spans the compute-only steps' 10th to 90th percentile (slowest rank per step) and, per
bucket, the network fit's relative residual at the measured size nearest the bucket's (a fabric file
states no spread: its interval is compute's alone).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpcbench import records
from hpcbench.analysis.comm import netbench_frame
from hpcbench.analysis.load import read_valid
from hpcbench.analysis.netmodel import ALGORITHMS, Fit, Links, fabric_links, load_fabric, netbench_fits, netbench_links
from hpcbench.errors import ConfigError
from hpcbench.experiment import short_hash

MODEL_VERSION = 1
"""Bumped whenever a formula changes: a prediction record names the model that made it."""
COMPUTE_BOUND_SHARE = 0.05
"""Exposed communication below this share of the step: the point is limited by compute."""
SPREAD_QUANTILES = (10, 90)


@dataclass(frozen=True)
class Timeline:
    """What the model needs from one measured run."""

    compute_step_s: float
    backward_s: float
    buckets: list[tuple[float, int]]
    """(ready seconds into backward, bytes) in the order the engine issues them."""
    spread: tuple[float, float]
    """The compute-only step's 10th and 90th percentile over its median."""
    batch_size: int
    run_id: str
    path: str


@dataclass(frozen=True)
class PathResult:
    finish_s: float
    exposed_s: float
    chain_start: int
    """The first bucket of the back-to-back run of all-reduces that ends last (the critical chain)."""


def critical_path(ready_s: list[float], comm_s: list[float], backward_s: float) -> PathResult:
    """The recurrence f_k = max(r_k, f_(k-1)) + c_k; exposed = max(0, f_K - B)."""
    finish, chain_start = 0.0, 0
    for k, (ready, comm) in enumerate(zip(ready_s, comm_s)):
        if ready >= finish:  # the link was idle: a new chain starts here
            chain_start = k
        finish = max(ready, finish) + comm
    return PathResult(finish, max(0.0, finish - backward_s), chain_start)


def timeline_of(path: Path | str, record: dict[str, Any]) -> Timeline:
    """A run's timeline, or a ConfigError saying why the record cannot be predicted from."""
    metrics = record.get("metrics") or {}
    if metrics.get("compute_step_time_s") is None:
        raise ConfigError("RECORDS", f"{path}: no compute-only window ({metrics.get('breakdown_note') or 'not measured'}); "
                                     "predict needs it: rerun without --no-breakdown")
    timeline = metrics.get("gradient_timeline")
    if not timeline:
        raise ConfigError("RECORDS", f"{path}: no gradient-ready timeline (recorded before hpcbench measured it, or "
                                     "without a compute-only window): rerun it")
    if not timeline.get("buckets"):
        engine = (record.get("config") or {}).get("engine")
        raise ConfigError("RECORDS", f"{path}: engine {engine!r} does not group gradients into all-reduce buckets, and "
                                     "the overlap model replays all-reduces: predict from a run of an all-reduce engine")
    per_step = np.max(np.asarray([r["compute_step_times_s"] for r in record["ranks"]], dtype=float), axis=0)
    median = float(np.median(per_step))
    low, high = (float(np.percentile(per_step, q)) / median for q in SPREAD_QUANTILES)
    return Timeline(compute_step_s=float(metrics["compute_step_time_s"]), backward_s=float(timeline["backward_s"]),
                    buckets=[(float(b["ready_s"]), int(b["bytes"])) for b in timeline["buckets"]], spread=(low, high),
                    batch_size=int(record["config"]["batch_size"]), run_id=record["run_id"], path=str(path))


def predict_point(timeline: Timeline, links: Links, num_nodes: int, procs_per_node: int, algorithm: str,
                  compute_scale: float = 1.0, comm_scale: float = 1.0, residual_sign: int = 0) -> dict[str, Any]:
    """One point: step, exposed communication, the limiting term. For the interval, compute is scaled and
    each all-reduce moved by the fit's residual at its size (residual_sign -1 or +1)."""
    ready = [r * compute_scale for r, _ in timeline.buckets]
    comm = [links.allreduce_s(n, num_nodes, procs_per_node, algorithm) * comm_scale
            * (1 + residual_sign * links.relative_error_at(n)) for _, n in timeline.buckets]
    backward = timeline.backward_s * compute_scale
    path = critical_path(ready, comm, backward)
    compute = timeline.compute_step_s * compute_scale
    step = compute + path.exposed_s
    return {"step_time_s": step, "compute_step_time_s": compute, "exposed_comm_s": path.exposed_s,
            "comm_total_s": sum(comm), "limit": limiting_term(timeline, links, num_nodes, procs_per_node, algorithm,
                                                              path, comm, step, backward)}


def limiting_term(timeline: Timeline, links: Links, num_nodes: int, procs_per_node: int, algorithm: str,
                  path: PathResult, comm: list[float], step_s: float, backward_s: float) -> str:
    """compute; a bucket that cannot hide (only the last all-reduce is exposed); else latency or bandwidth,
    whichever is the larger part of the critical chain's all-reduces."""
    if path.exposed_s <= COMPUTE_BOUND_SHARE * step_s:
        return "compute"
    last = len(comm) - 1
    chain = range(path.chain_start, len(comm))
    latency = len(chain) * links.latency_part_s(num_nodes, procs_per_node, algorithm)
    mostly = "latency" if latency > sum(comm[k] for k in chain) - latency else "bandwidth"
    if path.chain_start == last:
        ready, num_bytes = timeline.buckets[last]
        return (f"a bucket that cannot hide: the last ({num_bytes / 2**20:.1f} MiB, mostly {mostly}) is ready "
                f"{ready * 1e3:.1f} ms into a {backward_s * 1e3:.1f} ms backward and takes {comm[last] * 1e3:.1f} ms")
    return mostly


@dataclass(frozen=True)
class Inputs:
    """What a prediction is made of, resolved and checked."""

    base: dict[str, Any]
    """The measured run the compute comes from."""
    timelines: dict[int, Timeline]
    """Per-process batch -> timeline (one entry for weak scaling)."""
    network: dict[str, Any]
    """How the network is modelled: a fabric (with its sources) or netbench fits (with residuals)."""
    links_for: Callable[[int, int], Links]
    """(num_nodes, procs_per_node) -> the links a point runs over."""


def resolve_inputs(paths: Iterable[str], *, fabric: str | None, netbench: str | None, scaling: str) -> list[Inputs]:
    """One Inputs per (experiment, system) among the records; bad input is a ConfigError naming it."""
    if (fabric is None) == (netbench is None):
        raise ConfigError("fabric", "give exactly one of --fabric NAME|FILE or --netbench DIR")
    found = read_valid(paths)
    runs = [(path, r) for path, r in found if r.get("kind", "train") == "train" and r["status"] == "ok"]
    if not runs:
        raise ConfigError("RECORDS", f"no ok training records in {', '.join(map(str, paths))}")
    groups: dict[tuple[str, str], list[tuple[Path, dict[str, Any]]]] = {}
    for path, record in runs:
        work = _work_at_any_batch(record["experiment"]) if scaling == "strong" else record["experiment"]["experiment_id"]
        groups.setdefault((work, record["system"]["system_id"]), []).append((path, record))
    fabric_data = load_fabric(fabric) if fabric else None
    if netbench:
        if not Path(netbench).exists():
            raise ConfigError("netbench", f"no such file or folder: {netbench}")
        frame = netbench_frame(read_valid([netbench]))
        if frame.empty:
            raise ConfigError("netbench", f"no ok netbench records in {netbench}")
    found_inputs = []
    for members in groups.values():
        members.sort(key=lambda item: (item[1]["provenance"]["world_size"], item[1]["run_id"]))
        base_path, base = members[0]
        timelines = {}
        for path, record in members:
            if record["provenance"]["world_size"] == base["provenance"]["world_size"]:
                timelines.setdefault(int(record["config"]["batch_size"]), timeline_of(path, record))
        if fabric_data:
            links = fabric_links(fabric_data)
            network = {"kind": "fabric", "fabric": fabric_data}
            links_for = _fixed(links)
        else:
            system = base["system"]["system_id"]
            mine = frame[frame["system_id"] == system]
            if mine.empty:
                others = ", ".join(sorted(set(frame["system_name"] + " (" + frame["system_id"] + ")")))
                raise ConfigError("netbench", f"no netbench record of the run's system {base['system']['name']} ({system}) "
                                              f"in {netbench} (found: {others}); measure the network of the system you predict")
            backend = base["provenance"].get("backend")
            fits = netbench_fits(mine, backend)
            if not any(f.collective == "all_reduce" for f in fits):
                raise ConfigError("netbench", f"no {backend} all-reduce among the netbench records of {base['system']['name']}")
            network = {"kind": "netbench", "backend": backend, "fits": [dataclasses.asdict(f) for f in fits]}
            links_for = _measured(fits)
        found_inputs.append(Inputs(base={"path": str(base_path), **base}, timelines=timelines, network=network,
                                   links_for=links_for))
    return found_inputs


BATCH_FIELDS = ("batch_size", "global_batch_size", "scaling", "experiment_id", "work_id", "label")


def _work_at_any_batch(experiment: dict[str, Any]) -> str:
    """The experiment without its batch: strong scaling draws each point's compute from a run at that point's batch."""
    return short_hash({k: v for k, v in experiment.items() if k not in BATCH_FIELDS})


def _fixed(links: Links) -> Callable[[int, int], Links]:
    def links_for(num_nodes: int, procs_per_node: int) -> Links:
        if procs_per_node > links.gpus_per_node:
            raise ConfigError("gpus-per-node", f"{procs_per_node} is more than this fabric's {links.gpus_per_node} GPUs per node")
        return links
    return links_for


def _measured(fits: list[Fit]) -> Callable[[int, int], Links]:
    def links_for(num_nodes: int, procs_per_node: int) -> Links:
        return netbench_links(fits, num_nodes, procs_per_node)
    return links_for


def check_shape(nodes: list[int], gpus_per_node: int) -> None:
    if not nodes or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in nodes):
        raise ConfigError("nodes", f"{nodes!r}: give node counts as positive integers, e.g. 1,2,4,8")
    if len(set(nodes)) != len(nodes) or nodes != sorted(nodes):
        raise ConfigError("nodes", f"{nodes!r}: node counts must be increasing, each once")
    if isinstance(gpus_per_node, bool) or not isinstance(gpus_per_node, int) or gpus_per_node < 1:
        raise ConfigError("gpus-per-node", f"must be a positive integer, got {gpus_per_node!r}")


def predict(inputs: Inputs, *, nodes: list[int], gpus_per_node: int, algorithms: list[str], scaling: str,
            global_batch_size: int | None) -> list[dict[str, Any]]:
    """Every point x algorithm: the median prediction, its interval and efficiency against the first point."""
    for algorithm in algorithms:
        if algorithm not in ALGORITHMS:
            raise ConfigError("algorithm", f"{algorithm!r} is not one of: {', '.join(ALGORITHMS)}")
    points = []
    for algorithm in algorithms:
        first: dict[str, Any] | None = None
        for num_nodes in nodes:
            procs = num_nodes * gpus_per_node
            point: dict[str, Any] = {"algorithm": algorithm, "num_nodes": num_nodes, "procs_per_node": gpus_per_node,
                                     "world_size": procs}
            timeline, refusal = _timeline_at(inputs, procs, scaling, global_batch_size)
            if timeline is None:
                points.append({**point, "refused": refusal})
                continue
            links = inputs.links_for(num_nodes, gpus_per_node)
            median = predict_point(timeline, links, num_nodes, gpus_per_node, algorithm)
            low = predict_point(timeline, links, num_nodes, gpus_per_node, algorithm, timeline.spread[0], residual_sign=-1)
            high = predict_point(timeline, links, num_nodes, gpus_per_node, algorithm, timeline.spread[1], residual_sign=1)
            point.update({**median, "step_time_s_low": low["step_time_s"], "step_time_s_high": high["step_time_s"],
                          "batch_size": timeline.batch_size, "from_run": timeline.run_id,
                          "samples_per_s": procs * timeline.batch_size / median["step_time_s"]})
            first = first or point
            point["efficiency"] = (point["samples_per_s"] / procs) / (first["samples_per_s"] / first["world_size"])
            points.append(point)
    return points


def _timeline_at(inputs: Inputs, procs: int, scaling: str, global_batch_size: int | None) -> tuple[Timeline | None, str | None]:
    if scaling == "weak":
        return next(iter(inputs.timelines.values())), None
    if global_batch_size is None:
        raise ConfigError("global-batch-size", "strong scaling needs the global batch to split over the processes")
    if global_batch_size % procs:
        return None, f"global batch {global_batch_size} does not split evenly over {procs} processes"
    batch = global_batch_size // procs
    if batch not in inputs.timelines:
        return None, (f"no measured compute at {batch} samples per process (measured: "
                      f"{', '.join(map(str, sorted(inputs.timelines)))}): run it at 1 process with --batch-size {batch}")
    return inputs.timelines[batch], None


def prediction_record(inputs: Inputs, points: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    """A record of kind `prediction`: never a measurement (the report draws it apart, compare never reads it)."""
    base = inputs.base
    return {
        "schema_version": records.SCHEMA_VERSION,
        "kind": "prediction",
        "run_id": records.new_run_id(),
        "status": "ok",
        "reason": None,
        "experiment": base["experiment"],
        "system": base["system"],
        "config": {**config, "model_version": MODEL_VERSION},
        "workload": base.get("workload"),
        "metrics": {"points": points},
        "ranks": [],
        "provenance": {"created": records.utc_now().isoformat(), "from_runs": sorted({t.run_id for t in inputs.timelines.values()}),
                       "from_paths": sorted({t.path for t in inputs.timelines.values()}), "network_model": inputs.network,
                       "world_size": base["provenance"]["world_size"]},
    }


def format_points(points: list[dict[str, Any]], title: str) -> str:
    """The table `hpcbench predict` prints."""
    lines = [title, f"{'algorithm':<13}{'nodes':>6}{'procs':>7}{'step ms':>10}{'interval ms':>18}{'efficiency':>12}"
                    f"{'exposed ms':>12}  limiting term"]
    for p in points:
        if "refused" in p:
            lines.append(f"{p['algorithm']:<13}{p['num_nodes']:>6}{p['world_size']:>7}  refused: {p['refused']}")
            continue
        interval = f"{p['step_time_s_low'] * 1e3:.1f}-{p['step_time_s_high'] * 1e3:.1f}"
        lines.append(f"{p['algorithm']:<13}{p['num_nodes']:>6}{p['world_size']:>7}{p['step_time_s'] * 1e3:>10.1f}{interval:>18}"
                     f"{p['efficiency']:>12.1%}{p['exposed_comm_s'] * 1e3:>12.1f}  {p['limit']}")
    return "\n".join(lines)


def synthetic_timeline(*, compute_step_s: float, backward_s: float, gradient_bytes: int, rule: dict[str, Any],
                       num_gradients: int = 100, ready_at_end: bool = False, name: str = "published") -> Timeline:
    """A timeline from published inputs, where none was measured: `num_gradients` equal gradients ready
    evenly over backward (or all at its end: an all-reduce after gradient accumulation), bucketed by `rule`."""
    from hpcbench.buckets import Gradient, buckets

    size = gradient_bytes // num_gradients
    gradients = [Gradient(num_gradients - 1 - k, size, backward_s if ready_at_end else backward_s * (k + 1) / num_gradients)
                 for k in range(num_gradients)]
    made = buckets(gradients, rule)
    return Timeline(compute_step_s=compute_step_s, backward_s=backward_s,
                    buckets=[(b["ready_s"], b["bytes"]) for b in made], spread=(1.0, 1.0), batch_size=0, run_id=name, path=name)


PREDICTION_COLUMNS = ["system_name", "system_id", "experiment_id", "experiment_label", "workload", "network_model",
                      "algorithm", "num_nodes", "procs_per_node", "world_size", "step_time_s", "step_time_s_low",
                      "step_time_s_high", "efficiency", "exposed_comm_s", "limit", "refused", "from_run", "prediction_id",
                      "model_version", "path"]


def predictions_frame(found: list[tuple[Path, dict[str, Any]]]) -> Any:
    """One row per point of every prediction record: what the report draws apart from the measurements."""
    import pandas as pd

    rows = []
    for path, record in found:
        if record.get("kind") != "prediction" or record["status"] != "ok":
            continue
        model = record["provenance"].get("network_model") or {}
        network = (f"fabric {model['fabric']['name']}" if model.get("kind") == "fabric"
                   else f"netbench {model.get('backend')}" if model.get("kind") == "netbench" else "unknown")
        for point in record["metrics"]["points"]:
            rows.append({"system_name": record["system"]["name"], "system_id": record["system"]["system_id"],
                         "experiment_id": record["experiment"]["experiment_id"],
                         "experiment_label": record["experiment"]["label"], "workload": record["config"].get("workload")
                         or (record.get("workload") or {}).get("name"), "network_model": network,
                         **{k: point.get(k) for k in ("algorithm", "num_nodes", "procs_per_node", "world_size", "step_time_s",
                                                      "step_time_s_low", "step_time_s_high", "efficiency", "exposed_comm_s",
                                                      "limit", "refused", "from_run")},
                         "prediction_id": record["run_id"], "model_version": record["config"].get("model_version"),
                         "path": str(path)})
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)


def write_plot(record: dict[str, Any], record_path: Path, run_paths: list[str]) -> Path:
    """The prediction's figure (measured step times of its runs, the predicted curves) as a PNG beside its record."""
    import io

    from hpcbench.analysis import plots
    from hpcbench.analysis.load import runs_frame
    from hpcbench.analysis.scaling import scaling_table
    from hpcbench.files import write_atomic

    runs = runs_frame(read_valid(run_paths))
    figure = plots.prediction_figure(predictions_frame([(record_path, record)]), scaling_table(runs, "weak"), runs)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    path = record_path.with_suffix(".png")
    write_atomic(path, buffer.getvalue())
    return path

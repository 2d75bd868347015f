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

That is the communication-only ceiling, printed beside every forecast. The forecast adds the terms
real clusters lose scaling to (hpcbench.analysis.terms), each a named line of every predicted step:

    predicted step = compute + stragglers(N, k) + interference + exposed communication + framework

stragglers: the slowest of N ranks' compute, persistent and per step (k synchronisations per optimizer
step); interference: backward slowed while an all-reduce runs beside it (in the recurrence);
framework: the residual that makes the model reproduce the measured point (the measured step, from the
run's throughput, over everything else the model gives at the run's own shape).

The interval takes every term's uncertainty to the same side: the compute-only steps' 10th and 90th
percentile (slowest rank per step), the network fit's relative residual at each bucket's size (a
fabric file states none), the fleet spread's range and the interference's range.
"""

from __future__ import annotations

import dataclasses
import json
import math
from importlib import resources
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcbench import records
from hpcbench.analysis.comm import netbench_frame
from hpcbench.analysis.inputmodel import input_rates, input_term, iobench_records
from hpcbench.analysis.load import read_valid
from hpcbench.analysis.netmodel import ALGORITHMS, Fit, Links, fabric_links, load_fabric, netbench_fits, netbench_links
from hpcbench.analysis.terms import (FLEET_SOURCE, FLEET_SPREAD, FLEET_SPREAD_HIGH, GPU_INTERFERENCE, GPU_INTERFERENCE_RANGE,
                                     INTERFERENCE_SOURCE, Jitter, expected_max_without_replacement, overlap_path)
from hpcbench.errors import ConfigError
from hpcbench.experiment import short_hash

if TYPE_CHECKING:
    from hpcbench.analysis.survey import SurveyedFleet

MODEL_VERSION = 2
"""Bumped whenever a formula changes: a prediction record names the model that made it."""
CALIBRATION = Path(str(resources.files("hpcbench.jobs"))) / "calibration" / "published.json"
"""The forecast's misses on the published cases (benchmarks/predict_published.py --write-calibration): how wide a
fabric forecast's interval must be to hold a published figure 9 times in 10."""
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
    jitter: Jitter | None = None
    """Every rank's compute-only steps (of every run pooled at this batch): the straggler term's input."""
    run_jitter: Jitter | None = None
    """This run's own ranks only: what its measured step (and so the framework residual) was taken with."""
    measured_step_s: float | None = None
    """The step the run's throughput implies (global batch over samples/s): what the framework residual closes on."""
    world_size: int = 1
    num_nodes: int = 1
    interference: float | None = None
    """Measured compute slowdown while communication ran (metrics.forecast_terms), None: not measurable."""
    interference_note: str = "not measured"
    device: str = "cpu"


@dataclass(frozen=True)
class Terms:
    """The forecast's settings beyond the measured run, each with where it comes from."""

    fleet_spread: float = 0.0
    fleet_range: tuple[float, float] = (0.0, 0.0)
    fleet_source: str = "none"
    interference: float = 0.0
    interference_range: tuple[float, float] = (0.0, 0.0)
    interference_source: str = "none"
    comm_slowdown: float = 0.0
    """psi: all-reduces slowed while backward runs beside them (measured by netbench only; 0 elsewhere)."""
    syncs_per_step: int = 1
    """k: global synchronisations per optimizer step (a per-micro-step barrier with accumulation): the per-step
    straggler part is paid k times, and each of the k - 1 extra ones costs a zero-byte all-reduce."""
    sync_wait_s: float = 0.0
    """What each extra synchronisation waits beyond the all-reduce itself (e.g. half a Horovod cycle)."""
    no_overlap: bool = False
    """Gradients all-reduced after the whole backward (clipped by global norm first, one bucket for the model)."""
    compute_scale: float = 1.0
    compute_source: str = "the run's compute-only window"
    stragglers: bool = True
    framework: bool = True
    step_deviations: tuple[float, ...] | None = None
    """Per-step jitter relative to a device's median step, from a survey of the target devices: replaces the run's own
    per-step part (None: the run's)."""
    link_slowdowns: tuple[float, ...] = ()
    """Per surveyed node, the typical link's rate over its own: a job over n of them all-reduces at the slowest of
    its n nodes' links (empty: every node's link is the fabric's or the netbench fit's)."""
    survey_source: str = ""
    calibration_points: float | None = None
    """Efficiency points the calibrated interval lies around the forecast (None: no calibration applies)."""
    calibration_source: str = ""


CEILING = Terms(stragglers=False, framework=False, fleet_source="", interference_source="")
"""Gradient communication and its overlap only: the model before the forecast's terms (an upper bound)."""
BOUNDS = {"mid": (1, 0), "low": (0, -1), "high": (1, 1)}


def _pick(value: float, value_range: tuple[float, float], bound: str) -> float:
    return value if bound == "mid" else value_range[0] if bound == "low" else value_range[1]


@dataclass(frozen=True)
class PathResult:
    finish_s: float
    exposed_s: float
    chain_start: int
    """The first bucket of the back-to-back run of all-reduces that ends last (the critical chain)."""


def critical_path(ready_s: list[float], comm_s: list[float], backward_s: float) -> PathResult:
    """The recurrence f_k = max(r_k, f_(k-1)) + c_k; exposed = max(0, f_K - B) (no interference)."""
    path = overlap_path(ready_s, comm_s, backward_s)
    return PathResult(path.finish_s, path.exposed_s, path.chain_start)


def timeline_of(path: Path | str, record: dict[str, Any]) -> Timeline:
    """A run's timeline, or a ConfigError saying why the record cannot be predicted from."""
    metrics = record.get("metrics") or {}
    engine = (record.get("config") or {}).get("engine")
    mesh = (record.get("provenance") or {}).get("mesh") or {}
    if any(size > 1 for dim, size in mesh.items() if dim != "dp"):
        raise ConfigError("RECORDS", f"{path}: engine {engine!r} cuts the model over {mesh} (tensor or pipeline "
                                     "parallelism); "
                                     "hpcbench predict models data parallelism only (gradient all-reduces over a "
                                     "replicated model): it does not forecast the pipeline bubble or the per-layer "
                                     "collectives. Measure it: the report's engines table has both")
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
    steps = [r["compute_step_times_s"] for r in record["ranks"]]
    per_step = np.max(np.asarray(steps, dtype=float), axis=0)
    median = float(np.median(per_step))
    low, high = (float(np.percentile(per_step, q)) / median for q in SPREAD_QUANTILES)
    measured = (metrics["global_batch_size"] / metrics["samples_per_s"]) if metrics.get("samples_per_s") else None
    terms = metrics.get("forecast_terms") or {}
    interference = (terms.get("interference") or {})
    return Timeline(compute_step_s=float(metrics["compute_step_time_s"]), backward_s=float(timeline["backward_s"]),
                    buckets=[(float(b["ready_s"]), int(b["bytes"])) for b in timeline["buckets"]], spread=(low, high),
                    batch_size=int(record["config"]["batch_size"]), run_id=record["run_id"], path=str(path),
                    jitter=Jitter.from_steps(steps), run_jitter=Jitter.from_steps(steps), measured_step_s=measured,
                    world_size=int(record["provenance"]["world_size"]),
                    num_nodes=int(record["provenance"].get("num_nodes") or 1),
                    interference=interference.get("factor"), interference_note=interference.get("note") or "not recorded",
                    device=str(record["config"].get("device") or "cpu"))


def predict_point(timeline: Timeline, links: Links, num_nodes: int, procs_per_node: int, algorithm: str,
                  terms: Terms = CEILING, bound: str = "mid", framework_s: float = 0.0) -> dict[str, Any]:
    """One point: the step as named terms, and the limiting one. `bound` low/high moves every uncertain
    input to the same side (compute spread, each all-reduce by the fit's residual at its size, fleet
    spread, interference) for the interval."""
    spread_side, sign = BOUNDS[bound]
    scale = terms.compute_scale * (1.0 if bound == "mid" else timeline.spread[spread_side])
    backward = timeline.backward_s * scale
    ready = [backward if terms.no_overlap else r * scale for r, _ in timeline.buckets]
    comm = [links.allreduce_s(n, num_nodes, procs_per_node, algorithm)
            * (1 + sign * links.relative_error_at(n)) for _, n in timeline.buckets]
    if terms.no_overlap and comm:  # one bucket for the whole model, after backward
        comm = [links.allreduce_s(sum(n for _, n in timeline.buckets), num_nodes, procs_per_node, algorithm)
                * (1 + sign * links.relative_error_at(sum(n for _, n in timeline.buckets)))]
        ready = [backward]
    if num_nodes > 1 and terms.link_slowdowns:  # a ring or tree is as fast as its slowest link
        comm = [c * link_slowdown(terms.link_slowdowns, num_nodes) for c in comm]
    path = overlap_path(ready, comm, backward, _pick(terms.interference, terms.interference_range, bound), terms.comm_slowdown)
    compute = timeline.compute_step_s * scale
    world = num_nodes * procs_per_node
    stragglers = 0.0
    if terms.stragglers and timeline.jitter:
        fleet = _pick(terms.fleet_spread, terms.fleet_range, bound)
        # compute from another device: this one's rank and step variation says nothing about it, the fleet's does
        jitter = timeline.jitter if terms.compute_scale == 1.0 else Jitter(timeline.compute_step_s, (1.0,), ())
        if terms.step_deviations is not None:  # the surveyed devices' per-step jitter, at this step's scale
            jitter = Jitter(jitter.typical_step_s, jitter.rank_factors,
                            tuple(d * jitter.typical_step_s for d in terms.step_deviations))
        # a loss, never a gain: the slowest of `world` ranks is no faster than the measured slowest rank's median
        stragglers = max(0.0, jitter.step_s(world, terms.syncs_per_step, fleet) * scale - compute)
    interference = path.backward_s - backward
    framework = framework_s if terms.framework else 0.0
    barriers = (terms.syncs_per_step - 1) * (links.latency_part_s(num_nodes, procs_per_node, algorithm) + terms.sync_wait_s)
    exposed = path.exposed_s + (barriers if world > 1 else 0.0)
    step = compute + stragglers + interference + exposed + framework
    lines = {"compute_step_time_s": compute, "stragglers_s": stragglers, "interference_s": interference,
             "exposed_comm_s": exposed, "framework_s": framework}
    chain = PathResult(path.finish_s, path.exposed_s, path.chain_start)
    return {"step_time_s": step, **lines, "comm_total_s": sum(comm),
            "limit": limiting_term(timeline, links, num_nodes, procs_per_node, algorithm, chain, comm, step, backward, lines,
                                   ready)}


def link_slowdown(slowdowns: tuple[float, ...], num_nodes: int) -> float:
    """E[the slowest link of num_nodes nodes drawn from the surveyed ones] over the typical link (all of them, and
    so the slowest, when the job is larger than the survey)."""
    if num_nodes >= len(slowdowns):
        return max(slowdowns)
    return expected_max_without_replacement(slowdowns, num_nodes)


LOSSES = {"stragglers_s": "stragglers", "interference_s": "interference", "exposed_comm_s": "communication",
          "framework_s": "framework"}


def limiting_term(timeline: Timeline, links: Links, num_nodes: int, procs_per_node: int, algorithm: str,
                  path: PathResult, comm: list[float], step_s: float, backward_s: float,
                  lines: dict[str, float] | None = None, ready_s: list[float] | None = None) -> str:
    """compute, when no loss term reaches COMPUTE_BOUND_SHARE of the step; else the largest one, and for
    communication which part: a bucket that cannot hide (only the last all-reduce is exposed), latency or
    bandwidth (whichever is the larger part of the critical chain's all-reduces). `ready_s`: each bucket's ready
    time on the compute source's clock, as the recurrence used it (compute from another device scales the run's
    timeline: beside the GPU's backward, the CPU's ready times read "276 ms into a 3.1 ms backward")."""
    losses = {k: v for k, v in (lines or {"exposed_comm_s": path.exposed_s}).items() if k in LOSSES}
    largest = max(losses, key=lambda k: losses[k])
    if losses[largest] <= COMPUTE_BOUND_SHARE * step_s:
        return "compute"
    if largest != "exposed_comm_s":
        return LOSSES[largest]
    last = len(comm) - 1
    chain = range(path.chain_start, len(comm))
    latency = len(chain) * links.latency_part_s(num_nodes, procs_per_node, algorithm)
    mostly = "latency" if latency > sum(comm[k] for k in chain) - latency else "bandwidth"
    if path.chain_start == last and len(timeline.buckets) > last:
        ready, num_bytes = timeline.buckets[last]
        ready = ready_s[last] if ready_s and len(ready_s) > last else ready
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
    input_rates: dict[str, Any] | None = None
    """The storage rates that feed the run's ranks (analysis.inputmodel), None: not given (--iobench)."""


def resolve_inputs(paths: Iterable[str], *, fabric: str | None, netbench: str | None, scaling: str,
                   iobench: str | None = None) -> list[Inputs]:
    """One Inputs per (experiment, system) among the records; bad input is a ConfigError naming it."""
    io_records = iobench_records(iobench) if iobench else None
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
        found_net = read_valid([netbench])
        net_records = [r for _, r in found_net if r.get("kind") == "netbench" and r["status"] == "ok"]
        frame = netbench_frame(found_net)
        if frame.empty:
            raise ConfigError("netbench", f"no ok netbench records in {netbench}")
    found_inputs = []
    for members in groups.values():
        members.sort(key=lambda item: (item[1]["provenance"]["world_size"], item[1]["run_id"]))
        base_path, base = members[0]
        timelines, pooled = {}, {}
        for path, record in members:
            if record["provenance"]["world_size"] == base["provenance"]["world_size"]:
                batch = int(record["config"]["batch_size"])
                timelines.setdefault(batch, timeline_of(path, record))
                pooled.setdefault(batch, []).extend(r["compute_step_times_s"] for r in record["ranks"])
        # every rank of every run at this batch is a sample of the devices: the straggler term draws from all
        timelines = {b: dataclasses.replace(t, jitter=Jitter.from_steps(pooled[b])) for b, t in timelines.items()}
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
            network = {"kind": "netbench", "backend": backend, "fits": [dataclasses.asdict(f) for f in fits],
                       "interference": _netbench_interference(net_records, system, backend)}
            links_for = _measured(fits)
        found_inputs.append(Inputs(base={"path": str(base_path), **base}, timelines=timelines, network=network,
                                   links_for=links_for,
                                   input_rates=input_rates(base, io_records) if io_records is not None else None))
    return found_inputs


def _netbench_interference(found: list[dict[str, Any]], system: str, backend: str | None) -> dict[str, Any] | None:
    """The compute slowdown netbench measured beside all-reduces on this system (most nodes first), if any."""
    measured = [r for r in found if r["system"]["system_id"] == system and r["config"].get("backend") == backend
                and (r["metrics"].get("interference") or {}).get("factor") is not None]
    if not measured:
        return None
    best = max(measured, key=lambda r: (r["provenance"].get("num_nodes") or 1, r["provenance"]["world_size"]))
    return {**best["metrics"]["interference"], "run_id": best["run_id"]}


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


def resolve_terms(inputs: Inputs, *, fleet_spread: float | None = None, interference: float | None = None,
                  syncs_per_step: int = 1, no_overlap: bool = False, compute_step_ms: float | None = None,
                  compute_samples_per_s: float | None = None, surveyed: SurveyedFleet | None = None) -> Terms:
    """The forecast's settings: each measured where the run shows it, else given on the command line, else
    the shared sourced default (GPU targets) or nothing (CPU), and always with where it came from. A GPU
    fabric with compute measured on another device needs a compute source."""
    timeline = next(iter(inputs.timelines.values()))
    fabric = inputs.network["kind"] == "fabric"
    gpu_target = fabric or timeline.device == "cuda"
    for name, value in (("fleet-spread", fleet_spread), ("interference", interference)):
        if value is not None and not 0 <= value < 1:
            raise ConfigError(name, f"must be a fraction in [0, 1), got {value!r}")
    if isinstance(syncs_per_step, bool) or not isinstance(syncs_per_step, int) or syncs_per_step < 1:
        raise ConfigError("syncs-per-step", f"must be a positive integer, got {syncs_per_step!r}")
    if compute_step_ms is not None and compute_samples_per_s is not None:
        raise ConfigError("compute", "give one compute source: --compute-step-ms or --compute-samples-per-s, not both")
    for name, value in (("compute-step-ms", compute_step_ms), ("compute-samples-per-s", compute_samples_per_s)):
        if value is not None and not 0 < value < math.inf:
            raise ConfigError(name, f"must be a positive number, got {value!r}")
    scale, source = 1.0, f"run {timeline.run_id}'s compute-only window ({timeline.device})"
    if compute_step_ms is not None:
        scale, source = compute_step_ms / 1e3 / timeline.compute_step_s, f"--compute-step-ms {compute_step_ms:g}"
    elif compute_samples_per_s is not None:
        scale = timeline.batch_size / compute_samples_per_s / timeline.compute_step_s
        source = f"--compute-samples-per-s {compute_samples_per_s:g} at batch {timeline.batch_size}"
    elif fabric and timeline.device != "cuda":
        raise ConfigError("compute", f"fabric {inputs.network['fabric']['name']} is a GPU cluster, and run {timeline.run_id} "
                                     f"computed on {timeline.device} ({timeline.compute_step_s * 1e3:.1f} ms a step): that says "
                                     "nothing about a GPU's step. Give a compute source: a run on that GPU, "
                                     "--compute-samples-per-s N (a published single-GPU throughput at the run's batch "
                                     f"{timeline.batch_size}) or --compute-step-ms T")
    if fleet_spread is not None:
        fleet = (fleet_spread, (fleet_spread, fleet_spread), "--fleet-spread (given)")
    elif surveyed is not None:
        fleet = (surveyed.spread, (surveyed.spread, surveyed.spread), f"measured: {surveyed.source}")
    elif gpu_target:
        fleet = (FLEET_SPREAD, (0.0, FLEET_SPREAD_HIGH), f"assumed: {FLEET_SOURCE}")
    else:
        fleet = (0.0, (0.0, 0.0), "none: the shared default is GPUs' (arXiv 2208.11035); give --fleet-spread for CPU nodes")
    if interference is not None:
        slowdown = (interference, (interference, interference), "--interference (given)")
    elif timeline.interference is not None and scale == 1.0:
        slowdown = (timeline.interference, (timeline.interference, timeline.interference), f"measured: {timeline.interference_note}")
    elif (inputs.network.get("interference") or {}).get("factor") is not None and scale == 1.0:
        net = inputs.network["interference"]
        slowdown = (net["factor"], (net["factor"], net["factor"]), f"measured by netbench {net['run_id']}: {net['note']}")
    elif gpu_target:
        slowdown = (GPU_INTERFERENCE, GPU_INTERFERENCE_RANGE, f"assumed: {INTERFERENCE_SOURCE}")
    else:
        slowdown = (0.0, (0.0, 0.0), f"none: {timeline.interference_note}; give --interference")
    calibration_points, calibration_source = calibration(fabric)
    measured_beside = inputs.network.get("interference") or {}
    comm_slowdown = float(measured_beside.get("comm_slowdown") or 0.0) if scale == 1.0 else 0.0
    return Terms(fleet_spread=fleet[0], fleet_range=fleet[1], fleet_source=fleet[2], interference=slowdown[0],
                 interference_range=slowdown[1], interference_source=slowdown[2], comm_slowdown=comm_slowdown,
                 syncs_per_step=syncs_per_step,
                 no_overlap=no_overlap, compute_scale=scale, compute_source=source,
                 step_deviations=surveyed.step_deviations if surveyed else None,
                 link_slowdowns=surveyed.link_slowdowns if surveyed else (),
                 survey_source=f"measured: {surveyed.source}" if surveyed else "",
                 calibration_points=calibration_points, calibration_source=calibration_source)


def calibration(fabric: bool) -> tuple[float | None, str]:
    """The calibrated interval's half-width in efficiency points, and where it came from; None and why where the
    published cases do not calibrate this forecast (they are GPU clusters with fabric files, of this model)."""
    if not fabric:
        return None, ("none: the published cases calibrate fabric forecasts; a netbench forecast is checked on the "
                      "emulated cluster (benchmarks/predict_emulated.py)")
    try:
        found = json.loads(CALIBRATION.read_text())
    except FileNotFoundError:
        return None, f"none: no calibration file ({CALIBRATION}); python benchmarks/predict_published.py --write-calibration"
    if found["model_version"] != MODEL_VERSION:
        return None, (f"none: the calibration is of model v{found['model_version']}, this is v{MODEL_VERSION}; "
                      f"{found['produced_by']}")
    return found["half_width_points"], (f"{found['coverage']:.0%} of {len(found['cases'])} published cases' figures "
                                        f"within it ({found['method']}; {found['produced_by']}, {found['written']})")


def framework_residual(inputs: Inputs, timeline: Timeline, algorithm: str, terms: Terms) -> tuple[float, str]:
    """The measured step minus everything else the model gives at the run's own shape: with it the model
    reproduces the measured point. Zero, and why, where it cannot be known."""
    if not terms.framework:
        return 0.0, "not modelled"
    if timeline.measured_step_s is None:
        return 0.0, "unknown: the run has no throughput"
    if terms.compute_scale != 1.0:
        return 0.0, "unknown on the target device (compute from another source); the run's own is not transferable"
    procs = timeline.world_size // timeline.num_nodes
    try:
        links = inputs.links_for(timeline.num_nodes, procs)
    except ConfigError as exc:
        return 0.0, f"unknown: the network model cannot place the run's own shape ({exc.message})"
    own = dataclasses.replace(timeline, jitter=timeline.run_jitter or timeline.jitter)  # the run's own ranks, not the pool
    at = predict_point(own, links, timeline.num_nodes, procs, algorithm, terms)
    residual = timeline.measured_step_s - at["step_time_s"]
    said = (f"residual at the measured point ({timeline.world_size} process(es) on {timeline.num_nodes} node(s)): "
            f"measured {timeline.measured_step_s * 1e3:.2f} ms - modelled {at['step_time_s'] * 1e3:.2f} ms")
    if residual < 0:  # no term is negative: the model's other terms already exceed the measured step
        return 0.0, f"{said} < 0: taken as 0 (the forecast is {-residual * 1e3:.2f} ms slower than measured there)"
    return residual, said


def predict(inputs: Inputs, *, nodes: list[int], gpus_per_node: int, algorithms: list[str], scaling: str,
            global_batch_size: int | None, terms: Terms | None = None) -> list[dict[str, Any]]:
    """Every point x algorithm: the forecast as named terms, its interval, the communication-only ceiling
    beside it, and efficiency against the first point (both for the forecast and the ceiling)."""
    for algorithm in algorithms:
        if algorithm not in ALGORITHMS:
            raise ConfigError("algorithm", f"{algorithm!r} is not one of: {', '.join(ALGORITHMS)}")
    terms = terms or resolve_terms(inputs)
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
            framework, framework_note = framework_residual(inputs, timeline, algorithm, terms)
            links = inputs.links_for(num_nodes, gpus_per_node)
            at = {bound: predict_point(timeline, links, num_nodes, gpus_per_node, algorithm, terms, bound, framework)
                  for bound in BOUNDS}
            ceiling = predict_point(timeline, links, num_nodes, gpus_per_node, algorithm,
                                    dataclasses.replace(CEILING, compute_scale=terms.compute_scale))
            if inputs.input_rates is not None:  # the input's step replaces the model's where it is longer
                for bound, values in at.items():
                    at[bound] = with_input(values, input_term(values, inputs.input_rates, num_nodes, gpus_per_node,
                                                              timeline.batch_size))
            low, high = sorted((at["low"]["step_time_s"], at["high"]["step_time_s"]))
            samples = procs * timeline.batch_size
            point.update({**at["mid"], "step_time_s_low": min(low, at["mid"]["step_time_s"]),
                          "step_time_s_high": max(high, at["mid"]["step_time_s"]),
                          "ceiling_step_time_s": ceiling["step_time_s"], "framework_note": framework_note,
                          "batch_size": timeline.batch_size, "from_run": timeline.run_id,
                          "samples_per_s": samples / at["mid"]["step_time_s"]})
            first = first or point
            per_proc = first["samples_per_s"] / first["world_size"]
            point["efficiency"] = (point["samples_per_s"] / procs) / per_proc
            # the interval's efficiency: each end's step against the first point's same end (the compute spread moves
            # every point alike; against the first point's mid forecast its own interval read 91-111 %), ordered,
            # holding the forecast, and never above 100 %
            ends = [samples / point[f"step_time_s_{end}"] / procs / (first["batch_size"] / first[f"step_time_s_{end}"])
                    for end in ("high", "low")]
            point["efficiency_low"] = min(*ends, point["efficiency"])
            point["efficiency_high"] = min(1.0, max(*ends, point["efficiency"]))
            point.update(calibrated(point, terms.calibration_points, point is first))
            # The ceiling's efficiency against the same first point as the forecast's: the first point's other losses
            # (stragglers, interference, framework) held fixed, only communication growing with scale. Against its own
            # first point a forecast whose terms weighed more at the first point read above it (56.8 % over 55.9 %).
            # Interference can still cost less at scale than at the first point (a stretched backward hides an
            # all-reduce the ceiling exposes): there the forecast is its own ceiling, never above it.
            first_losses = first["step_time_s"] - first["ceiling_step_time_s"]
            point["ceiling_efficiency"] = max(point["efficiency"],
                                              samples / (ceiling["step_time_s"] + first_losses) / procs / per_proc)
            points.append(point)
    return points


def calibrated(point: dict[str, Any], half_points: float | None, baseline: bool) -> dict[str, Any]:
    """The efficiency interval calibrated on the published cases' misses, joined with the model's own bounds (as
    benchmarks/predict_published.py checks it), within [0, 1] unless the model itself says more; the first point is
    the baseline (100 % by definition). Nulls where no calibration applies (Terms.calibration_source says why)."""
    if half_points is None:
        return {"efficiency_calibrated_low": None, "efficiency_calibrated_high": None}
    if baseline:
        return {"efficiency_calibrated_low": point["efficiency"], "efficiency_calibrated_high": point["efficiency"]}
    half = half_points / 100
    return {"efficiency_calibrated_low": max(0.0, min(point["efficiency_low"], point["efficiency"] - half)),
            "efficiency_calibrated_high": min(max(1.0, point["efficiency_high"]),
                                              max(point["efficiency_high"], point["efficiency"] + half))}


def with_input(point: dict[str, Any], term: dict[str, Any]) -> dict[str, Any]:
    """A point's forecast with the input term: the step grows to the input's, which then limits it."""
    extra = term["input_s"] or 0.0
    limit = (f"input: {term['input_step_time_s'] * 1e3:.1f} ms a batch from storage" if extra > COMPUTE_BOUND_SHARE * point["step_time_s"]
             else point["limit"])
    return {**point, **term, "step_time_s": point["step_time_s"] + extra, "limit": limit}


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


def prediction_record(inputs: Inputs, points: list[dict[str, Any]], config: dict[str, Any],
                      terms: Terms | None = None) -> dict[str, Any]:
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
        "config": {**config, "model_version": MODEL_VERSION, "terms": terms_record(terms) if terms else None},
        "workload": base.get("workload"),
        "metrics": {"points": points},
        "ranks": [],
        "provenance": {"created": records.utc_now().isoformat(), "from_runs": sorted({t.run_id for t in inputs.timelines.values()}),
                       "from_paths": sorted({t.path for t in inputs.timelines.values()}), "network_model": inputs.network,
                       "world_size": base["provenance"]["world_size"]},
    }


TERM_LINES = (("compute_step_time_s", "compute"), ("stragglers_s", "stragglers"), ("interference_s", "interference"),
              ("exposed_comm_s", "exposed comm"), ("framework_s", "framework"), ("input_s", "input"))


def terms_record(terms: Terms) -> dict[str, Any]:
    """The forecast's inputs beyond the run, as the prediction record keeps them."""
    return dataclasses.asdict(terms)


def format_points(points: list[dict[str, Any]], title: str, terms: Terms | None = None) -> str:
    """What `hpcbench predict` prints: per point the forecast, its interval, the ceiling beside it, the
    limiting term, then each term of the step as a named line."""
    lines = [title]
    if terms:
        lines += [f"  compute from {terms.compute_source}",
                  f"  fleet spread {terms.fleet_spread:.0%} (interval {terms.fleet_range[0]:.0%}-{terms.fleet_range[1]:.0%}): "
                  f"{terms.fleet_source}",
                  f"  interference {terms.interference:.1%} (interval {terms.interference_range[0]:.0%}-"
                  f"{terms.interference_range[1]:.0%}): {terms.interference_source}; all-reduces beside compute "
                  f"{terms.comm_slowdown:+.1%}" + (" (netbench)" if terms.comm_slowdown else ""),
                  *([f"  per-step jitter and each node's link from the survey (a job waits for its slowest node's "
                     f"link: {max(terms.link_slowdowns, default=1.0):.2f}x the typical one at worst): "
                     f"{terms.survey_source}"] if terms.survey_source else []),
                  f"  calibrated interval: " + (f"the forecast +-{terms.calibration_points:.1f} efficiency points, "
                                                 if terms.calibration_points is not None else "") + terms.calibration_source,
                  f"  {terms.syncs_per_step} global synchronisation(s) per optimizer step; gradients "
                  f"{'all-reduced after backward, one bucket' if terms.no_overlap else 'all-reduced during backward'}"]
    lines.append(f"{'algorithm':<13}{'nodes':>6}{'procs':>7}{'step ms':>10}{'interval ms':>18}{'efficiency':>12}"
                 f"{'interval':>16}{'ceiling':>9}  limiting term")
    for p in points:
        if "refused" in p:
            lines.append(f"{p['algorithm']:<13}{p['num_nodes']:>6}{p['world_size']:>7}  refused: {p['refused']}")
            continue
        interval = f"{p['step_time_s_low'] * 1e3:.1f}-{p['step_time_s_high'] * 1e3:.1f}"
        efficiency = f"{p['efficiency_low']:.1%}-{p['efficiency_high']:.1%}"
        lines.append(f"{p['algorithm']:<13}{p['num_nodes']:>6}{p['world_size']:>7}{p['step_time_s'] * 1e3:>10.1f}{interval:>18}"
                     f"{p['efficiency']:>12.1%}{efficiency:>16}{p['ceiling_efficiency']:>9.1%}  {p['limit']}")
        named = "  ".join(f"{label} {p[key] * 1e3:.2f}" if key == "compute_step_time_s" else f"{label} {p[key] * 1e3:+.2f}"
                          for key, label in TERM_LINES if p.get(key) is not None)
        lines.append(f"{'':<13}ms: {named}")
        if p.get("efficiency_calibrated_low") is not None and p is not points[0]:
            lines.append(f"{'':<13}efficiency calibrated on the published cases: {p['efficiency_calibrated_low']:.1%}-"
                         f"{p['efficiency_calibrated_high']:.1%}")
    notes = sorted({p["framework_note"] for p in points if p.get("framework_note")})
    lines += [f"  framework: {note}" for note in notes]
    lines += [f"  input: {note}" for note in sorted({p["input_note"] for p in points if p.get("input_note")})]
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
                    buckets=[(b["ready_s"], b["bytes"]) for b in made], spread=(1.0, 1.0), batch_size=0, run_id=name, path=name,
                    jitter=Jitter(compute_step_s, (1.0,), ()), device="cuda")


PREDICTION_COLUMNS = ["system_name", "system_id", "experiment_id", "experiment_label", "workload", "network_model",
                      "algorithm", "num_nodes", "procs_per_node", "world_size", "step_time_s", "step_time_s_low",
                      "step_time_s_high", "efficiency", "ceiling_step_time_s", "ceiling_efficiency", "exposed_comm_s",
                      "stragglers_s", "interference_s", "framework_s", "limit", "refused", "from_run", "prediction_id",
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
                                                      "step_time_s_low", "step_time_s_high", "efficiency", "ceiling_step_time_s",
                                                      "ceiling_efficiency", "exposed_comm_s", "stragglers_s", "interference_s",
                                                      "framework_s", "limit", "refused", "from_run")},
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

"""The survey's probes, run on every node of an allocation at once: each device's matmul rate, each node's links
in two rings, each node's reads from the shared storage (alone and all together). Rank 0 writes one record of kind
`survey` that also carries the per-rank compute-only and step times of the short training run before it (the
reference workload, timed by the runner: `--train-record`); `hpcbench survey` reads it and names what holds a
job back (hpcbench.analysis.survey).

Links, in O(N) probes (never the N^2 pairs): the nodes form a ring (by first rank) and every node sends a message
to its successor while receiving from its predecessor, all at once; then a second ring in another order. A node's
link rate is the best of its four edges (a link is as fast as its slower end, so a node whose own link is slow has
no fast edge), and an edge slower than both of its ends' best is the link between them. Two rounds of sends per
ring, whatever N: a 1,000-node survey takes as many rounds as a 4-node one (each as long as the slowest edge).

A node's own probes (its matmul, its storage reads) run each with a deadline (`--probe-timeout`, below the
collective timeout): one that raises or gives no answer in time is recorded with its reason (the node's
`problems`) and the survey goes on for every node; the diagnosis names it. Tests inject such a fault with
HPCBENCH_INJECT_SURVEY_FAULT (HPCBENCH_INJECT_FAULT's form, hpcbench.guard, apart from the training run's), its
step counting the node's probes: 0 matmul, 1 storage alone, 2 storage together (`hang:rank=1:step=0`: rank 1's
matmul never answers).

    srun python -m hpcbench.probes survey --train-record records/mlp_ddp_4p_ID.json --out records/
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpcbench import datafiles, records
from hpcbench.config import MAX_TIMEOUT_S
from hpcbench.engines import discover, netbench_backends, start_collectives
from hpcbench.errors import ConfigError, check_at_least, check_in_range
from hpcbench.guard import Fault, injected_fault
from hpcbench.probes.base import PROBES, Probe, add_record_flags, write_probe_record
from hpcbench.probes.iobench import reader
from hpcbench.provenance import host_facts
from hpcbench.timing import sync

MATMUL_SIZE = {"cpu": 512, "cuda": 8192}
"""Square matmul per device type: compute-bound there, many of them a repeat."""
SUSTAINED_S = 0.5
"""Each matmul repeat's length: five periods of the CFS quota (100 ms), so a capped CPU shows its cap."""


@dataclass(kw_only=True)
class SurveyConfig:
    train_record: str | None = None
    """The training run's record (the same ranks, just before): its per-rank compute-only and step times."""
    device: str = "cpu"
    link_bytes: int = 16 * 2**20
    """Each ring message: large enough that the link's rate, not its latency or a shaper's burst, sets its time
    (4 MiB read 1.15 Gbit/s on a 1gbit tbf link, whose bucket passes 10 ms of traffic at once)."""
    repeats: int = 3
    """Rounds of each probe; a metric is their median, its spread their range."""
    data_dir: str | None = None
    """The shared data folder every node reads from (none: no storage probe)."""
    io_seconds: float = 1.0
    alone_nodes: int = 16
    """Nodes that also run their matmul and their reads alone, one at a time (a seeded sample beyond that many): the
    probes whose time grows with N; every node runs them in the round all together."""
    timeout_s: float = 120.0
    probe_timeout_s: float = 60.0
    """A node's own probe (matmul, storage) that has not answered by then is named hung, and the survey goes on."""
    out_dir: str = "results"

    def __post_init__(self) -> None:
        check_at_least("link-bytes", self.link_bytes, 4)
        check_at_least("repeats", self.repeats, 1)
        check_in_range("io-seconds", self.io_seconds, 0, 600, "seconds")
        check_at_least("alone-nodes", self.alone_nodes, 0)
        check_in_range("timeout", self.timeout_s, 0, MAX_TIMEOUT_S, "seconds")
        if not 0 < self.probe_timeout_s < self.timeout_s:
            raise ConfigError("probe-timeout", f"must be above 0 and below --timeout ({self.timeout_s:g} s: the other "
                              f"nodes wait that long for a hung one), got {self.probe_timeout_s:g}")


SURVEY_FAULT_VARIABLE = "HPCBENCH_INJECT_SURVEY_FAULT"
NODE_PROBES = ("matmul", "storage alone", "storage together", "matmul alone")
"""A node's own probes, in order (an injected fault's step counts them)."""


def bounded(probe: str, measure: Callable[[], Any], timeout_s: float, rank: int,
            fault: Fault | None) -> tuple[Any, dict[str, str] | None]:
    """(value, None), or (None, the problem) where `measure` raised or gave no answer within `timeout_s`: it runs in a
    thread of its own, which a hung call (a stuck mount, a wedged device) cannot take this rank down with."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            if fault:
                fault.maybe_fire(rank, NODE_PROBES.index(probe))
            out["value"] = measure()
        except Exception as exc:  # noqa: BLE001 - any failure of a node's probe is a finding, not the survey's end
            out["error"] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=target, name=f"survey {probe}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return None, {"probe": probe, "reason": f"no answer after {timeout_s:g} s (hung)"}
    if "error" in out:
        return None, {"probe": probe, "reason": out["error"]}
    return out["value"], None


def rings(num_nodes: int, seed: int = 0) -> list[list[int]]:
    """The node orders of the two rings: by first rank, then a shuffle that shares as few edges with it as a few
    tries find (with 3 nodes or fewer every order has the same edges)."""
    first = list(range(num_nodes))
    edges = {(a, b) for a, b in ring_edges(first)} | {(b, a) for a, b in ring_edges(first)}
    generator = random.Random(seed)
    best = first
    for _ in range(64):
        order = [0, *generator.sample(range(1, num_nodes), num_nodes - 1)]
        if sum(edge in edges for edge in ring_edges(order)) < sum(edge in edges for edge in ring_edges(best)):
            best = order
    return [first, best]


def ring_edges(order: list[int]) -> list[tuple[int, int]]:
    return [(order[i], order[(i + 1) % len(order)]) for i in range(len(order))] if len(order) > 1 else []


def compute_rates(device: torch.device, repeats: int, seconds: float = SUSTAINED_S) -> list[float]:
    """This device's matmul GFLOP/s, `repeats` times, each sustained for `seconds` (every device of the job at
    once, as a job computes). Sustained, not a burst: a CPU quota (CFS) lets a burst of a few tens of ms run at
    full speed inside one 100 ms period, and a GPU throttles only once it is hot."""
    size = MATMUL_SIZE[device.type]
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, generator=generator)
    b = torch.randn(size, size, device=device, generator=generator)
    out = torch.empty(size, size, device=device)
    torch.mm(a, b, out=out)  # warm-up: kernels chosen, memory touched
    rates = []
    for _ in range(repeats):
        sync(device)
        started, count = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            torch.mm(a, b, out=out)
            count += 1
            if device.type == "cuda" and count % 16:
                continue  # a GPU queues work: sync every 16 multiplications, not each
            sync(device)
        sync(device)
        rates.append(2 * size**3 * count / (time.perf_counter() - started) / 1e9)
    return rates


def ring_round(comm: Any, order: list[int], leaders: list[int], nbytes: int) -> dict[str, float] | None:
    """One ring, every edge at once: this leader's receive from its predecessor, timed from a common start (a
    barrier), its own send apart: that is the next node's edge.
    Returns {"from": node, "to": node, "seconds": s} for the edge into this node (None for non-leaders)."""
    me = comm.placement.rank
    node = leaders.index(me) if me in leaders else None
    count = nbytes // 4
    comm.barrier()
    if node is None:
        return None
    position = order.index(node)
    successor, predecessor = order[(position + 1) % len(order)], order[position - 1]
    send = comm.buffer(np.ones(count, dtype=np.float32))
    receive = comm.buffer(np.zeros(count, dtype=np.float32))
    seconds = comm.exchange_(send, leaders[successor], receive, leaders[predecessor])
    return {"from": predecessor, "to": node, "seconds": seconds}


def storage_reads(facts: datafiles.DataFacts, part: int, parts: int, seconds: float) -> float:
    """Bytes/s of one reader streaming this node's share of the files for `seconds`."""
    out: dict[str, float] = {}
    reader(facts, facts.files[part::parts], seconds, time.perf_counter(), out)
    return out["bytes"] / out["elapsed_s"] if out["elapsed_s"] else 0.0


def run(cfg: SurveyConfig, run_id: str, path: Path | None) -> int:
    """One rank's part; rank 0 writes the survey record."""
    started = records.utc_now().isoformat()
    backend = "nccl" if cfg.device == "cuda" else "gloo"
    comm = start_collectives(netbench_backends()[backend], discover(), cfg.device, cfg.timeout_s)
    placement = comm.placement
    try:
        records.check_out_dir_on_every_rank(str(path.parent if path else cfg.out_dir), placement.rank,
                                            comm.all_gather_object)
        hosts = comm.all_gather_object(host_facts()["host"])
        nodes = list(dict.fromkeys(hosts))
        leaders = [hosts.index(host) for host in nodes]
        comm.barrier()
        device = comm.device
        fault, problems = injected_fault(variable=SURVEY_FAULT_VARIABLE), []

        def probe(name: str, measure: Callable[[], Any]) -> Any:
            value, problem = bounded(name, measure, cfg.probe_timeout_s, placement.rank, fault)
            if problem:
                problems.append(problem)
            return value
        gflops = probe("matmul", lambda: compute_rates(device, cfg.repeats))
        mine = nodes.index(hosts[placement.rank])
        turns = sorted(random.Random(0).sample(range(len(nodes)), min(cfg.alone_nodes, len(nodes))))
        alone_gflops = None
        for turn in turns:  # then one node at a time (all its devices, the other nodes idle): what the others cost it
            comm.barrier()
            if mine == turn:
                alone_gflops = probe("matmul alone", lambda: compute_rates(device, 1))
        edges = []
        for ring, order in enumerate(rings(len(nodes))):
            for attempt in range(cfg.repeats if len(nodes) > 1 else 0):
                for size, label in ((4, "latency"), (cfg.link_bytes, "bandwidth")):
                    edge = ring_round(comm, order, leaders, size)
                    if edge:
                        edges.append({**edge, "ring": ring, "repeat": attempt, "bytes": size, "kind": label})
        storage = {}
        if cfg.data_dir:
            reader_node = mine if placement.rank in leaders else None  # one reader a node: its leader

            def reads() -> float:  # the data folder looked at from this node: a missing mount is this node's finding
                facts = datafiles.inspect(cfg.data_dir, verify=False)
                return storage_reads(facts, mine, len(nodes), cfg.io_seconds)
            alone = []
            for turn in turns:  # one node at a time: its own path to the storage
                comm.barrier()
                if reader_node == turn:
                    alone.append(probe("storage alone", reads))
            comm.barrier()  # then every node at once: the storage's share of each
            together = probe("storage together", reads) if reader_node is not None else None
            storage = {"alone_bytes_per_s": alone[0] if alone else None, "together_bytes_per_s": together}
        mine_all = {"rank": placement.rank, "local_rank": placement.local_rank, "host": hosts[placement.rank],
                    "matmul_gflops": gflops, "matmul_alone_gflops": alone_gflops, "edges_in": edges, "storage": storage,
                    "problems": problems}
        everyone = comm.all_gather_object(mine_all)
        if placement.rank == 0:
            metrics = {"nodes": nodes, "rings": rings(len(nodes)), "ranks": everyone,
                       "matmul_size": MATMUL_SIZE[device.type], "link_bytes": cfg.link_bytes,
                       "training": _training(cfg.train_record)}
            config = {"device": cfg.device, "link_bytes": cfg.link_bytes, "repeats": cfg.repeats,
                      "data_dir": cfg.data_dir, "io_seconds": cfg.io_seconds, "alone_nodes": cfg.alone_nodes,
                      "train_record": cfg.train_record,
                      "timeout_s": cfg.timeout_s, "probe_timeout_s": cfg.probe_timeout_s}
            path = write_probe_record(kind="survey", label=f"{len(nodes)}n", comm=comm, run_id=run_id, path=path,
                                      out_dir=cfg.out_dir, config=config, metrics=metrics, hosts=hosts,
                                      started=started)
            print(f"hpcbench survey: {len(nodes)} node(s), {placement.world_size} rank(s) -> {path}", flush=True)
        comm.barrier()
    finally:
        comm.close()
    return 0


def _training(path: str | None) -> dict[str, Any] | None:
    """What the survey keeps of the training run: per rank, its host and its compute-only and step times."""
    if not path:
        return None
    record = json.loads(Path(path).read_text())
    return {"record": str(path), "run_id": record["run_id"], "status": record["status"], "reason": record.get("reason"),
            "workload": record["config"]["workload"], "batch_size": record["config"].get("batch_size"),
            "gradient_bytes_per_step": (record.get("workload") or {}).get("gradient_bytes_per_step"),
            "ranks": [{"rank": r["rank"], "host": r["host"], "compute_step_times_s": r.get("compute_step_times_s"),
                       "step_times_s": r.get("step_times_s")} for r in record.get("ranks", [])]}


def to_args(cfg: SurveyConfig) -> list[str]:
    return [*(["--train-record", cfg.train_record] if cfg.train_record else []), "--device", cfg.device,
            "--link-bytes", str(cfg.link_bytes), "--repeats", str(cfg.repeats),
            *(["--data-dir", cfg.data_dir] if cfg.data_dir else []), "--io-seconds", str(cfg.io_seconds),
            "--alone-nodes", str(cfg.alone_nodes),
            "--timeout", str(cfg.timeout_s), "--probe-timeout", str(cfg.probe_timeout_s)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hpcbench.probes survey", description=__doc__.splitlines()[0])
    defaults = SurveyConfig()
    p.add_argument("--train-record", default=None)
    p.add_argument("--device", default=defaults.device)
    p.add_argument("--link-bytes", type=int, default=defaults.link_bytes)
    p.add_argument("--repeats", type=int, default=defaults.repeats)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--io-seconds", type=float, default=defaults.io_seconds)
    p.add_argument("--alone-nodes", type=int, default=defaults.alone_nodes)
    p.add_argument("--timeout", dest="timeout_s", type=float, default=defaults.timeout_s)
    p.add_argument("--probe-timeout", dest="probe_timeout_s", type=float, default=defaults.probe_timeout_s)
    add_record_flags(p)
    return p


@PROBES.register
class Survey(Probe):
    name = "survey"
    config = SurveyConfig
    args = staticmethod(to_args)
    parser = staticmethod(parser)
    measure = staticmethod(run)

    @staticmethod
    def launcher(cfg: SurveyConfig) -> str:
        return netbench_backends()["gloo"].local_launcher

    @staticmethod
    def label(cfg: SurveyConfig) -> str:
        return cfg.device

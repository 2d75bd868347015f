"""The storage baseline, as netbench is the network's: read bandwidth and samples/s from a data folder, per rank,
per node and in aggregate, the way training reads it (IOR's and DLIO's measure, small: seconds).

    jpeg-folder   random small files: each reader opens and reads whole files, its rank's part in random order
    tar-shards    sequential shards: each reader streams whole shards front to back in 1 MiB reads

Every rank reads its own part (rank r: files r, r+R, ...; its `workers` reader threads split those, as a
training run's DataLoader workers do), all ranks start after one barrier and stop after `seconds`; a rank's
time is its last read's end. Aggregate = every byte / the slowest rank's time; a node's = its ranks' bytes over
the same. Nothing is decoded: this is what the storage path delivers, which decoding can only lower. On a local
disk the page cache answers repeated reads (the rate of memory, said in the record's note); a network mount
without a client cache reads every byte over the link.

    torchrun --nproc-per-node 2 -m hpcbench.probes iobench --data-dir DATA --out results/
    srun python -m hpcbench.probes iobench --data-dir /shared/DATA --out results/
    hpcbench iobench --data-dir /shared/DATA --profile local-slurm --nodes 1,2 --sweep-dir sweeps/io
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcbench import datafiles, records
from hpcbench.config import MAX_TIMEOUT_S
from hpcbench.engines import discover, netbench_backends, start_collectives
from hpcbench.errors import check_at_least, check_in_range
from hpcbench.probes.base import PROBES, Probe, add_record_flags, write_probe_record
from hpcbench.provenance import host_facts

PATTERNS = {"jpeg-folder": "random small files", "tar-shards": "sequential shards"}
READ_BYTES = 2**20
BACKEND = "gloo"
"""The collectives that start and gather the ranks (CPU-only, no data moves through them)."""


@dataclass(kw_only=True)
class IobenchConfig:
    data_dir: str
    workers: int = 1
    """Reader threads per rank (a training run's --loader-workers)."""
    seconds: float = 3.0
    timeout_s: float = 120.0
    out_dir: str = "results"

    def __post_init__(self) -> None:
        check_at_least("workers", self.workers, 1)
        check_in_range("seconds", self.seconds, 0, 3600, "seconds")
        check_in_range("timeout", self.timeout_s, 0, MAX_TIMEOUT_S, "seconds")


def reader(facts: datafiles.DataFacts, paths: list[str], seconds: float, started: float, out: dict[str, float]) -> None:
    """One reader: whole files (or shards, streamed) in a loop until `seconds` after `started`."""
    files = read = 0
    ended = started
    buffer = bytearray(READ_BYTES)
    while paths and time.perf_counter() - started < seconds:
        for rel in paths:
            path = os.path.join(facts.root, rel)
            with open(path, "rb", buffering=0) as f:
                while (n := f.readinto(buffer)) and (facts.format == "jpeg-folder" or time.perf_counter() - started < seconds):
                    read += n
            files += 1
            ended = time.perf_counter()
            if ended - started >= seconds:
                break
    out.update(bytes=read, files=files, elapsed_s=ended - started)


def measure(facts: datafiles.DataFacts, rank: int, world_size: int, workers: int, seconds: float,
            barrier: Any) -> dict[str, Any]:
    """This rank's reads: bytes, files, samples and the time until its last read ended."""
    mine = facts.files[rank::world_size]
    if facts.format == "jpeg-folder":
        random.Random(rank).shuffle(mine)
    parts: list[dict[str, float]] = [{} for _ in range(workers)]
    barrier()
    started = time.perf_counter()
    threads = [threading.Thread(target=reader, args=(facts, mine[w::workers], seconds, started, parts[w]))
               for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    read = sum(p["bytes"] for p in parts)
    elapsed = max(p["elapsed_s"] for p in parts)
    per_sample = facts.bytes / facts.samples
    return {"rank": rank, "host": host_facts()["host"], "bytes": read, "files": sum(p["files"] for p in parts),
            "elapsed_s": elapsed, "bytes_per_s": read / elapsed if elapsed else None,
            "samples_per_s": read / per_sample / elapsed if elapsed else None}


def summarise(ranks: list[dict[str, Any]], facts: datafiles.DataFacts) -> dict[str, Any]:
    """Aggregate and per-node rates over the slowest rank's time; the slowest rank's own rate."""
    slowest = max(r["elapsed_s"] for r in ranks)
    per_sample = facts.bytes / facts.samples
    nodes: dict[str, list[dict[str, Any]]] = {}
    for r in ranks:
        nodes.setdefault(r["host"], []).append(r)
    per_node = {host: {"ranks": len(here), "bytes_per_s": sum(r["bytes"] for r in here) / slowest,
                       "samples_per_s": sum(r["bytes"] for r in here) / per_sample / slowest}
                for host, here in nodes.items()}
    total = sum(r["bytes"] for r in ranks)
    rates = [r["samples_per_s"] or 0.0 for r in ranks]
    return {"pattern": PATTERNS[facts.format], "num_nodes": len(nodes), "ranks_per_node": max(len(h) for h in nodes.values()),
            "aggregate_bytes_per_s": total / slowest, "aggregate_samples_per_s": total / per_sample / slowest,
            "aggregate_files_per_s": sum(r["files"] for r in ranks) / slowest,
            "rank_samples_per_s_min": min(rates), "rank_bytes_per_s_min": min(r["bytes_per_s"] or 0.0 for r in ranks),
            "per_node": per_node, "per_rank": ranks, "bytes_per_sample": per_sample}


def run(cfg: IobenchConfig, run_id: str, path: Path | None) -> int:
    """One rank's part; rank 0 writes the record."""
    started = records.utc_now().isoformat()
    facts = datafiles.inspect(cfg.data_dir, verify=False)
    comm = start_collectives(netbench_backends()[BACKEND], discover(), "cpu", cfg.timeout_s)
    placement = comm.placement
    try:
        records.check_out_dir_on_every_rank(str(path.parent if path else cfg.out_dir), placement.rank,
                                            comm.all_gather_object)
        mine = measure(facts, placement.rank, placement.world_size, cfg.workers, cfg.seconds, comm.barrier)
        ranks = sorted(comm.all_gather_object(mine), key=lambda r: r["rank"])
        if placement.rank == 0:
            metrics = summarise(ranks, facts)
            config = {"data_dir": cfg.data_dir, "data_format": facts.format, "data": facts.summary(),
                      "workers": cfg.workers, "seconds": cfg.seconds, "timeout_s": cfg.timeout_s}
            path = write_probe_record(kind="iobench", label=facts.format, comm=comm, run_id=run_id, path=path,
                                      out_dir=cfg.out_dir, config=config, metrics=metrics, started=started,
                                      hosts=[r["host"] for r in ranks])
            print(f"hpcbench iobench: {metrics['pattern']}, {placement.world_size} rank(s) on {metrics['num_nodes']} "
                  f"node(s): {metrics['aggregate_bytes_per_s'] / 1e6:.1f} MB/s, {metrics['aggregate_samples_per_s']:.0f} "
                  f"samples/s in all, slowest rank {metrics['rank_samples_per_s_min']:.0f} samples/s -> {path}", flush=True)
        comm.barrier()
    finally:
        comm.close()
    return 0


def to_args(cfg: IobenchConfig) -> list[str]:
    return ["--data-dir", cfg.data_dir, "--workers", str(cfg.workers), "--seconds", str(cfg.seconds),
            "--timeout", str(cfg.timeout_s)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hpcbench.probes iobench", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--timeout", dest="timeout_s", type=float, default=120.0)
    add_record_flags(p)
    return p


@PROBES.register
class Iobench(Probe):
    name = "iobench"
    config = IobenchConfig
    args = staticmethod(to_args)
    parser = staticmethod(parser)
    measure = staticmethod(run)

    @staticmethod
    def launcher(cfg: IobenchConfig) -> str:
        return netbench_backends()[BACKEND].local_launcher

    @staticmethod
    def label(cfg: IobenchConfig) -> str:
        return Path(cfg.data_dir).name or "data"

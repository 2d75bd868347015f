"""All-reduce bandwidth across message sizes, with nccl-tests' definitions, written as a record.

    algbw = message bytes / time per all-reduce
    busbw = algbw x 2(n-1)/n   (what each link carries in a ring: comparable across rank counts)

Every rank times itself; the slowest rank's time counts. The analysis compares a workload's
step-time growth with the ring lower bound 2(n-1)/n x gradient bytes / busbw.

    torchrun --nproc-per-node 2 -m hpcbench.engines.netbench --out results/
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.distributed as dist

from hpcbench import records
from hpcbench.engines.ddp import DdpEngine
from hpcbench.engines.discovery import Placement, discover
from hpcbench.timing import sync

DEFAULT_SIZES = [1024 * 4**k for k in range(9)]
"""1 KiB to 64 MiB, a factor of 4 apart: from latency-bound to bandwidth-bound messages."""


def bus_bandwidth(algbw: float, world_size: int) -> float:
    """nccl-tests' bus bandwidth for all-reduce: algbw x 2(n-1)/n (0 for one rank: no traffic)."""
    return algbw * 2 * (world_size - 1) / world_size


def measure(engine: DdpEngine, sizes: list[int], num_iters: int, num_warmup: int) -> list[dict[str, float]]:
    rows = []
    n = engine.placement.world_size
    for size in sizes:
        tensor = torch.ones(max(1, size // 4), dtype=torch.float32, device=engine.device)
        for _ in range(num_warmup):
            dist.all_reduce(tensor)
        engine.barrier()
        sync(engine.device)
        start = time.perf_counter()
        for _ in range(num_iters):
            dist.all_reduce(tensor)
        sync(engine.device)
        time_s = engine.all_reduce_max((time.perf_counter() - start) / num_iters)  # the slowest rank's
        algbw = tensor.numel() * 4 / time_s / 1e9
        rows.append({"size_bytes": tensor.numel() * 4, "time_s": time_s, "algbw_gbps": algbw,
                     "busbw_gbps": bus_bandwidth(algbw, n)})
    return rows


def run(placement: Placement, args: argparse.Namespace) -> None:
    started = records.utc_now().isoformat()
    engine = DdpEngine(placement, args.device, args.timeout)
    try:
        rows = measure(engine, args.sizes, args.iters, args.warmup)
        hosts = engine.all_gather_object(records.host_facts()["host"])
        if placement.rank == 0:
            config = {"engine": "ddp", "device": args.device, "iters": args.iters, "warmup": args.warmup,
                      "sizes": args.sizes, "timeout_s": args.timeout}
            prov = records.provenance(hosts=hosts, engine_versions=engine.versions(), started=started,
                                      ended=records.utc_now().isoformat(), launcher=placement.launcher)
            record = records.make_record(run_id=args.run_id, status="ok", reason=None, config=config, workload=None,
                                         metrics={"allreduce": rows}, ranks=[], provenance=prov, kind="netbench")
            path = records.record_path(args.out, "netbench", engine.backend, placement.world_size, args.run_id)
            records.write_atomic(path, record)
            print(f"hpcbench netbench: {placement.world_size} proc(s), {engine.backend}: busbw "
                  f"{rows[-1]['busbw_gbps']:.2f} GB/s at {rows[-1]['size_bytes']} bytes -> {path}", flush=True)
        engine.barrier()
    finally:
        engine.close()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hpcbench.engines.netbench", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=lambda text: [int(x) for x in text.split(",")], default=DEFAULT_SIZES)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--out", default="results")
    p.add_argument("--run-id", default=None)
    return p


if __name__ == "__main__":
    arguments = parser().parse_args()
    arguments.run_id = arguments.run_id or records.new_run_id()
    run(discover(), arguments)
    sys.stdout.flush()
    os._exit(0)  # as the training worker: skip finalization (pytorch/pytorch#179291)

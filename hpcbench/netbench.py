"""All-reduce bandwidth across message sizes, with nccl-tests' definitions, written as a record.

    algbw = message bytes / time per all-reduce
    busbw = algbw x 2(n-1)/n   (what each link carries in a ring: comparable across rank counts)

Every rank times itself; the slowest rank's time counts. The collectives are the engine's (the
same interface the training runner uses), so the numbers are those of the library a run used.
The analysis compares a workload's step-time growth with the ring lower bound
2(n-1)/n x gradient bytes / busbw.

    torchrun --nproc-per-node 2 -m hpcbench.netbench --out results/
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hpcbench import records
from hpcbench.config import MAX_TIMEOUT_S, RunConfig
from hpcbench.engines import Engine, discover, engine_libraries, start_engine
from hpcbench.errors import ConfigError, check_at_least, check_choice, check_in_range
from hpcbench.provenance import host_facts, provenance
from hpcbench.timing import sync

DEFAULT_SIZES = [1024 * 4**k for k in range(9)]
"""1 KiB to 64 MiB, a factor of 4 apart: from latency-bound to bandwidth-bound messages."""


@dataclass(kw_only=True)
class NetbenchConfig:
    """One netbench run (every process count of `hpcbench netbench` is one)."""

    engine: str = RunConfig.engine
    device: str = "cpu"
    sizes: list[int] = field(default_factory=lambda: list(DEFAULT_SIZES))
    """Message sizes in bytes."""
    num_iters: int = 20
    """Timed all-reduces per size."""
    num_warmup: int = 5
    timeout_s: float = 120.0
    out_dir: str = "results"

    def __post_init__(self) -> None:
        if not self.sizes:
            raise ConfigError("sizes", "needs at least one value")
        if min(self.sizes) < 4:
            raise ConfigError("sizes", f"must be at least 4 bytes (one float32), got {min(self.sizes)}")
        check_choice("device", self.device, ("cpu", "cuda"))
        check_at_least("iters", self.num_iters, 1)
        check_at_least("warmup", self.num_warmup, 0)
        check_in_range("timeout", self.timeout_s, 0, MAX_TIMEOUT_S, "seconds")


def check_process_counts(process_counts: list[int]) -> None:
    for count in process_counts:
        check_at_least("nproc", count, 1)


def bus_bandwidth(algbw: float, world_size: int) -> float:
    """nccl-tests' bus bandwidth for all-reduce: algbw x 2(n-1)/n (0 for one rank: no traffic)."""
    return algbw * 2 * (world_size - 1) / world_size


def measure(engine: Engine, sizes: list[int], num_iters: int, num_warmup: int) -> list[dict[str, float]]:
    rows = []
    n = engine.placement.world_size
    for size in sizes:
        tensor = torch.ones(max(1, size // 4), dtype=torch.float32, device=engine.device)
        for _ in range(num_warmup):
            engine.all_reduce_sum_(tensor)
        engine.barrier()
        sync(engine.device)
        start = time.perf_counter()
        for _ in range(num_iters):
            engine.all_reduce_sum_(tensor)
        sync(engine.device)
        time_s = engine.all_reduce_max((time.perf_counter() - start) / num_iters)  # the slowest rank's
        algbw = tensor.numel() * 4 / time_s / 1e9
        rows.append({"size_bytes": tensor.numel() * 4, "time_s": time_s, "algbw_gbps": algbw,
                     "busbw_gbps": bus_bandwidth(algbw, n)})
    return rows


def run(cfg: NetbenchConfig, run_id: str, path: Path | None) -> None:
    """One rank's part; rank 0 writes the record (to `path`, or named by the world size the engine sees)."""
    started = records.utc_now().isoformat()
    engine = start_engine(cfg.engine, discover(), cfg.device, cfg.timeout_s, {})
    placement = engine.placement
    try:
        rows = measure(engine, cfg.sizes, cfg.num_iters, cfg.num_warmup)
        hosts = engine.all_gather_object(host_facts()["host"])
        if placement.rank == 0:
            path = path or records.record_path(cfg.out_dir, "netbench", engine.backend, placement.world_size, run_id)
            config = {"engine": cfg.engine, "device": cfg.device, "iters": cfg.num_iters, "warmup": cfg.num_warmup,
                      "sizes": cfg.sizes, "timeout_s": cfg.timeout_s}
            prov = provenance(hosts=hosts, engine_versions=engine.versions(), started=started,
                              ended=records.utc_now().isoformat(), launcher=placement.launcher,
                              engine_libraries=engine_libraries())
            record = records.make_record(run_id=run_id, status="ok", reason=None, config=config, workload=None,
                                         metrics={"allreduce": rows}, ranks=[], provenance=prov, kind="netbench")
            records.write_atomic(path, record)
            print(f"hpcbench netbench: {placement.world_size} proc(s), {engine.backend}: busbw "
                  f"{rows[-1]['busbw_gbps']:.2f} GB/s at {rows[-1]['size_bytes']} bytes -> {path}", flush=True)
        engine.barrier()
    finally:
        engine.close()


def to_args(cfg: NetbenchConfig) -> list[str]:
    """The flags that reproduce `cfg` for this module's command line."""
    return ["--engine", cfg.engine, "--device", cfg.device, "--sizes", ",".join(map(str, cfg.sizes)),
            "--iters", str(cfg.num_iters), "--warmup", str(cfg.num_warmup), "--timeout", str(cfg.timeout_s),
            "--out", cfg.out_dir]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hpcbench.netbench", description=__doc__.splitlines()[0])
    defaults = NetbenchConfig()
    p.add_argument("--engine", default=defaults.engine)
    p.add_argument("--sizes", type=lambda text: [int(x) for x in text.split(",")], default=defaults.sizes)
    p.add_argument("--iters", dest="num_iters", type=int, default=defaults.num_iters)
    p.add_argument("--warmup", dest="num_warmup", type=int, default=defaults.num_warmup)
    p.add_argument("--device", default=defaults.device)
    p.add_argument("--timeout", dest="timeout_s", type=float, default=defaults.timeout_s)
    p.add_argument("--out", dest="out_dir", default=defaults.out_dir)
    p.add_argument("--run-id", default=None)
    p.add_argument("--record", default=None, help="record file (default: OUT/netbench_<backend>_<N>p_<run id>.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = vars(parser().parse_args(argv))
    run_id, record = args.pop("run_id") or records.new_run_id(), args.pop("record")
    try:
        cfg = NetbenchConfig(**args)
    except ConfigError as exc:
        print(f"hpcbench netbench: error: {exc}", file=sys.stderr)
        return 2
    run(cfg, run_id, Path(record) if record else None)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # as the training worker: skip finalization (pytorch/pytorch#179291)

"""Collective bandwidth across message sizes, per backend, with nccl-tests' definitions, as records.

    algbw = size / time per collective        (size: the whole buffer, as nccl-tests counts it)
    busbw = algbw x factor                    (what each link carries: comparable across rank counts)
            all_reduce 2(n-1)/n, all_gather (n-1)/n, reduce_scatter (n-1)/n, broadcast 1

Every rank times itself; the slowest rank's time counts. After the timed iterations, one more
untimed call on known values is checked element by element (nccl-tests' `#wrong`). The gloo,
NCCL and Horovod legs use the engines' collectives (the library a training run uses); the MPI leg
uses mpi4py, started by mpirun. The analysis compares a workload's exposed communication with the
ring lower bound 2(n-1)/n x gradient bytes / all-reduce busbw of the backend the run used.

    torchrun --nproc-per-node 2 -m hpcbench.probes netbench --backend gloo --out results/
    mpirun -np 2 python -m hpcbench.probes netbench --backend mpi --out results/
    hpcbench netbench --profile local-slurm --nodes 2 --sweep-dir sweeps/net     # one job per node count
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpcbench import records
from hpcbench.config import MAX_TIMEOUT_S, RunConfig
from hpcbench.engines import ENGINES, NetbenchBackend, check_collectives_available, discover, netbench_backends, start_collectives
from hpcbench.errors import ConfigError, check_at_least, check_choice, check_in_range
from hpcbench.probes.base import PROBES, Probe, add_record_flags, write_probe_record
from hpcbench.provenance import host_facts
from hpcbench.timing import sync

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")
DEFAULT_MIN_BYTES, DEFAULT_MAX_BYTES, DEFAULT_FACTOR = 8, 256 * 2**20, 2
"""nccl-tests' usual sweep: -b 8 -e 256M -f 2."""
UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}


def parse_size(text: str) -> int:
    """Bytes from nccl-tests' notation: 8, 64K, 256M, 1G (binary units)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ConfigError("sizes", f"{text!r} is not a size (e.g. 8, 64K, 256M, 1G)")
    return int(match.group(1)) * UNITS[match.group(2).upper()]


def size_range(min_bytes: int, max_bytes: int, factor: int) -> list[int]:
    """min, min x factor, ... up to max (inclusive), as nccl-tests steps."""
    check_at_least("factor", factor, 2)
    sizes, size = [], min_bytes
    while size <= max_bytes:
        sizes.append(size)
        size *= factor
    return sizes


def default_backend() -> str:
    """The default engine's backend on a CPU: the library `hpcbench run` uses out of the box."""
    return ENGINES.get(RunConfig.engine).backend_for("cpu")


@dataclass(kw_only=True)
class NetbenchConfig:
    """One netbench run: one backend at one process count."""

    backend: str = field(default_factory=default_backend)
    device: str | None = None
    """cpu or cuda (default: the backend's first device: gloo cpu, NCCL cuda, MPI cpu)."""
    collectives: list[str] = field(default_factory=lambda: list(COLLECTIVES))
    sizes: list[int] = field(default_factory=lambda: size_range(DEFAULT_MIN_BYTES, DEFAULT_MAX_BYTES, DEFAULT_FACTOR))
    """Message sizes in bytes (the whole buffer)."""
    num_iters: int = 20
    """Timed iterations per size (nccl-tests' -n)."""
    num_warmup: int = 5
    """Untimed iterations first (nccl-tests' -w)."""
    check: bool = True
    """Verify one result per size against the expected values (nccl-tests' -c)."""
    timeout_s: float = 120.0
    out_dir: str = "results"

    def __post_init__(self) -> None:
        backends = netbench_backends()
        check_choice("backend", self.backend, tuple(backends))
        supported = backends[self.backend].device_types
        self.device = self.device or supported[0]
        check_choice("device", self.device, ("cpu", "cuda"))
        if self.device not in supported:
            raise ConfigError("device", f"backend {self.backend} runs on {' or '.join(supported)}, not {self.device}")
        if not self.collectives:
            raise ConfigError("collectives", f"needs at least one of {', '.join(COLLECTIVES)}")
        for name in self.collectives:
            check_choice("collectives", name, COLLECTIVES)
        if not self.sizes:
            raise ConfigError("sizes", "needs at least one value")
        if min(self.sizes) < 4:
            raise ConfigError("sizes", f"must be at least 4 bytes (one float32), got {min(self.sizes)}")
        check_at_least("iters", self.num_iters, 1)
        check_at_least("warmup", self.num_warmup, 0)
        check_in_range("timeout", self.timeout_s, 0, MAX_TIMEOUT_S, "seconds")

    @property
    def backend_entry(self) -> NetbenchBackend:
        return netbench_backends()[self.backend]


def check_available(cfg: NetbenchConfig) -> None:
    """Before any process starts: the backend's library, its launcher and the device are here."""
    import torch

    check_collectives_available(cfg.backend_entry)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda: no CUDA device is visible here")


def check_process_counts(process_counts: list[int]) -> None:
    for count in process_counts:
        check_at_least("nproc", count, 1)


def bus_factor(collective: str, world_size: int) -> float:
    """nccl-tests' busbw / algbw per collective (0 for one rank where data moves nowhere)."""
    n = world_size
    if n < 2:
        return 0.0
    return {"all_reduce": 2 * (n - 1) / n, "all_gather": (n - 1) / n, "reduce_scatter": (n - 1) / n,
            "broadcast": 1.0}[collective]


def bus_bandwidth(algbw: float, world_size: int) -> float:
    """nccl-tests' bus bandwidth for all-reduce: algbw x 2(n-1)/n (0 for one rank: no traffic)."""
    return algbw * bus_factor("all_reduce", world_size)


# --- known values: rank r's element i is (r + 1) + i mod 7, exact in float32 for any sum we make
def pattern(rank: int, count: int, first: int = 0) -> np.ndarray:
    return ((rank + 1) + np.arange(first, first + count) % 7).astype(np.float32)


def element_count(collective: str, size_bytes: int, world_size: int) -> int:
    """float32 elements of the whole buffer; split evenly over ranks where the collective splits it."""
    count = max(1, size_bytes // 4)
    if collective in ("all_gather", "reduce_scatter"):
        count = max(1, count // world_size) * world_size
    return count


def summed(count: int, world_size: int, first: int = 0) -> np.ndarray:
    """The sum over ranks of pattern(r, ...) for r in 0..n-1."""
    n = world_size
    return (n * (n + 1) / 2 + n * (np.arange(first, first + count) % 7)).astype(np.float32)


def expected(collective: str, rank: int, world_size: int, count: int) -> np.ndarray:
    """What this rank's output buffer must hold after the collective on pattern() inputs."""
    chunk = count // world_size
    if collective == "all_reduce":
        return summed(count, world_size)
    if collective == "all_gather":
        return np.concatenate([pattern(r, chunk) for r in range(world_size)])
    if collective == "reduce_scatter":
        return summed(chunk, world_size, first=rank * chunk)
    return pattern(0, count)  # broadcast from rank 0


def count_wrong(result: np.ndarray, want: np.ndarray) -> int:
    """Elements that differ (nccl-tests' #wrong); a shape mismatch makes every element wrong."""
    if result.shape != want.shape:
        return max(result.size, want.size)
    return int(np.count_nonzero(result != want))


def operation(comm: Any, collective: str, rank: int, world_size: int, count: int,
              values: bool) -> tuple[Callable[[], None], Any]:
    """The call to time (or check) and its output buffer; with `values`, inputs follow pattern()."""
    chunk = count // world_size

    def host(n: int, fill: float = 0.0) -> np.ndarray:
        return np.full(n, fill, dtype=np.float32)

    if collective == "all_reduce":
        buf = comm.buffer(pattern(rank, count) if values else host(count))
        return (lambda: comm.all_reduce_sum_(buf)), buf
    if collective == "all_gather":
        out, part = comm.buffer(host(count, -1)), comm.buffer(pattern(rank, chunk) if values else host(chunk))
        return (lambda: comm.all_gather_into_(out, part)), out
    if collective == "reduce_scatter":
        out, full = comm.buffer(host(chunk, -1)), comm.buffer(pattern(rank, count) if values else host(count))
        return (lambda: comm.reduce_scatter_(out, full)), out
    buf = comm.buffer(pattern(0, count) if values and rank == 0 else host(count, -1))
    return (lambda: comm.broadcast_(buf, 0)), buf


def measure(comm: Any, collective: str, sizes: list[int], num_iters: int, num_warmup: int,
            check: bool) -> list[dict[str, Any]]:
    """One row per size: the slowest rank's time per call, algbw, busbw and #wrong (None unchecked)."""
    rows = []
    rank, n = comm.placement.rank, comm.placement.world_size
    for size in sizes:
        count = element_count(collective, size, n)
        call, _ = operation(comm, collective, rank, n, count, values=False)
        for _ in range(num_warmup):
            call()
        comm.barrier()
        sync(comm.device)
        start = time.perf_counter()
        for _ in range(num_iters):
            call()
        sync(comm.device)
        time_s = comm.all_reduce_max((time.perf_counter() - start) / num_iters)
        wrong = None
        if check:
            call, out = operation(comm, collective, rank, n, count, values=True)
            call()
            sync(comm.device)
            wrong = sum(comm.all_gather_object(count_wrong(comm.to_host(out), expected(collective, rank, n, count))))
        algbw = count * 4 / time_s / 1e9
        rows.append({"size_bytes": count * 4, "count": count, "time_s": time_s, "algbw_gbps": algbw,
                     "busbw_gbps": algbw * bus_factor(collective, n), "wrong": wrong})
    return rows


INTERFERENCE_BYTES = 4 * 2**20
"""The all-reduce size run beside compute for the interference measure (a typical gradient bucket)."""
INTERFERENCE_BACKENDS = ("gloo", "nccl")
"""Backends whose collectives may run on a thread beside the compute (MPI may lack MPI_THREAD_MULTIPLE)."""


def measure_interference(comm: Any, backend: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How much slower compute runs while all-reduces run beside it, and they beside it, as arXiv 2507.03114
    measures it: a matmul loop alone, then the same loop while a thread issues back-to-back all-reduces
    (of the measured size nearest 4 MiB), then alone again; three rounds, medians, slowest rank. The loop
    lasts at least 5 all-reduces, so their pace beside it is measured too. On a CPU the collective's
    threads and the matmul share the rank's cores; on a GPU they share the device."""
    import threading

    import torch

    if backend not in INTERFERENCE_BACKENDS or comm.placement.world_size < 2 or not rows:
        return {"factor": None, "note": f"not measured: needs 2+ processes of {' or '.join(INTERFERENCE_BACKENDS)}"}
    row = min(rows, key=lambda r: abs(np.log(r["size_bytes"] / INTERFERENCE_BYTES)))
    side = 4096 if comm.device.type == "cuda" else 256
    a = torch.randn(side, side, device=comm.device)
    buf = comm.buffer(np.zeros(row["count"], dtype=np.float32))

    def compute(repeats: int) -> float:
        sync(comm.device)
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, a)
        sync(comm.device)
        return time.perf_counter() - start

    compute(5)
    one = comm.all_reduce_max(compute(10) / 10)
    window = max(0.3, 5 * row["time_s"])
    repeats = max(10, int(window / max(one, 1e-7)))
    calls = int(np.ceil(2 * window / row["time_s"]))  # outlast the loop: the same count on every rank

    def beside() -> tuple[float, float | None]:
        done: list[float] = []

        def all_reduces() -> None:
            for _ in range(calls):
                comm.all_reduce_sum_(buf)
                sync(comm.device)
                done.append(time.perf_counter())

        comm.barrier()
        started = time.perf_counter()
        thread = threading.Thread(target=all_reduces, daemon=True)
        thread.start()
        took = compute(repeats)
        thread.join()
        within = [t for t in done if t <= started + took]
        return took, ((within[-1] - started) / len(within) if len(within) >= 2 else None)

    alone, together, paces = [], [], []
    for _ in range(3):
        comm.barrier()
        alone.append(compute(repeats))
        took, pace = beside()
        together.append(took)
        paces.append(pace)
    comm.barrier()
    alone.append(compute(repeats))
    alone_s = comm.all_reduce_max(float(np.median(alone)))
    beside_s = comm.all_reduce_max(float(np.median(together)))
    measured = [p for p in paces if p is not None]
    # every rank takes part in the collective, measured or not (-1: none finished inside the loop here)
    slowest = comm.all_reduce_max(float(np.median(measured)) if measured else -1.0)
    pace = slowest if slowest > 0 else None
    return {"factor": max(0.0, beside_s / alone_s - 1), "compute_alone_s": alone_s, "compute_beside_s": beside_s,
            "comm_slowdown": max(0.0, pace / row["time_s"] - 1) if pace else None, "all_reduce_alone_s": row["time_s"],
            "all_reduce_beside_s": pace, "all_reduce_bytes": row["size_bytes"],
            "kernel": f"{side}x{side} float32 matmul x {repeats}",
            "note": f"a matmul loop alone and beside back-to-back {row['size_bytes'] / 2**20:.1f} MiB all-reduces, "
                    f"3 rounds, medians ({'the device shared' if comm.device.type == 'cuda' else 'the rank cores shared with the collective threads'})"}


def run(cfg: NetbenchConfig, run_id: str, path: Path | None) -> int:
    """One rank's part; rank 0 writes the record. Returns 1 when a result was wrong."""
    started = records.utc_now().isoformat()
    comm = start_collectives(cfg.backend_entry, discover(), cfg.device, cfg.timeout_s)
    placement = comm.placement
    try:
        records.check_out_dir_on_every_rank(str(path.parent if path else cfg.out_dir), placement.rank,
                                            comm.all_gather_object)
        measured = {name: measure(comm, name, cfg.sizes, cfg.num_iters, cfg.num_warmup, cfg.check)
                    for name in cfg.collectives}
        interference = measure_interference(comm, cfg.backend, measured.get("all_reduce", []))
        hosts = comm.all_gather_object(host_facts()["host"])
        wrong = sum(row["wrong"] or 0 for rows in measured.values() for row in rows)
        if placement.rank == 0:
            config = {"backend": cfg.backend, "engine": cfg.backend_entry.engine, "device": cfg.device,
                      "collectives": cfg.collectives, "iters": cfg.num_iters, "warmup": cfg.num_warmup,
                      "check": cfg.check, "sizes": cfg.sizes, "timeout_s": cfg.timeout_s}
            reason = f"{wrong} element(s) differed from the expected result (#wrong)" if wrong else None
            path = write_probe_record(kind="netbench", label=cfg.backend, comm=comm, run_id=run_id, path=path,
                                      out_dir=cfg.out_dir, config=config, hosts=hosts, started=started, reason=reason,
                                      metrics={"collectives": measured, "interference": interference})
            print(f"hpcbench netbench: {cfg.backend}, {placement.world_size} proc(s): "
                  f"{', '.join(measured)} -> {path}" + (f" ({reason})" if wrong else ""), flush=True)
        comm.barrier()
    finally:
        comm.close()
    return 1 if wrong else 0


def side_by_side(found: list[dict[str, Any]]) -> str:
    """nccl-tests-like tables, one per (collective, process count): a row per size, busbw and time per backend."""
    lines = []
    keyed: dict[tuple[str, int], dict[str, dict[int, dict[str, Any]]]] = {}
    for record in found:
        for collective, rows in record["metrics"]["collectives"].items():
            by_backend = keyed.setdefault((collective, record["provenance"]["world_size"]), {})
            by_backend[record["config"]["backend"]] = {row["size_bytes"]: row for row in rows}
    for (collective, world_size), by_backend in sorted(keyed.items(), key=lambda item: (COLLECTIVES.index(item[0][0]), item[0][1])):
        backends = list(by_backend)
        lines.append(f"\n{collective}, {world_size} processes: busbw GB/s | time us | #wrong")
        lines.append(f"{'size (B)':>12}  " + "  ".join(f"{b:>28}" for b in backends))
        for size in sorted({s for rows in by_backend.values() for s in rows}):
            cells = []
            for backend in backends:
                row = by_backend[backend].get(size)
                cells.append(f"{row['busbw_gbps']:10.3f} {row['time_s'] * 1e6:11.1f} {_wrong(row):>5}" if row else f"{'-':>28}")
            lines.append(f"{size:>12}  " + "  ".join(cells))
    return "\n".join(lines)


def _wrong(row: dict[str, Any]) -> str:
    return "n/a" if row.get("wrong") is None else str(row["wrong"])


def to_args(cfg: NetbenchConfig) -> list[str]:
    """The flags that reproduce `cfg` for this module's command line (the record's folder apart)."""
    return ["--backend", cfg.backend, "--device", str(cfg.device), "--collectives", ",".join(cfg.collectives),
            "--sizes", ",".join(map(str, cfg.sizes)), "--iters", str(cfg.num_iters), "--warmup", str(cfg.num_warmup),
            "--check" if cfg.check else "--no-check", "--timeout", str(cfg.timeout_s)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hpcbench.probes netbench", description=__doc__.splitlines()[0])
    defaults = NetbenchConfig()
    p.add_argument("--backend", default=defaults.backend)
    p.add_argument("--device", default=None)
    p.add_argument("--collectives", type=lambda text: text.split(","), default=defaults.collectives)
    p.add_argument("--sizes", type=lambda text: [parse_size(x) for x in text.split(",")], default=defaults.sizes)
    p.add_argument("--iters", dest="num_iters", type=int, default=defaults.num_iters)
    p.add_argument("--warmup", dest="num_warmup", type=int, default=defaults.num_warmup)
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=defaults.check)
    p.add_argument("--timeout", dest="timeout_s", type=float, default=defaults.timeout_s)
    add_record_flags(p)
    return p


@PROBES.register
class Netbench(Probe):
    name = "netbench"
    config = NetbenchConfig
    args = staticmethod(to_args)
    parser = staticmethod(parser)
    measure = staticmethod(run)

    @staticmethod
    def launcher(cfg: NetbenchConfig) -> str:
        return cfg.backend_entry.local_launcher

    @staticmethod
    def label(cfg: NetbenchConfig) -> str:
        return cfg.backend

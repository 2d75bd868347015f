"""Harness overhead: hpcbench vs a bare hand-written DDP loop, same model, batch and process count.

Runs both side by side in one invocation, alternating their order each round so drift on the
machine hits both, and prints hpcbench / bare per workload (target: >= 0.99).

    python benchmarks/overhead.py --workloads mlp,cnn --nproc 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from hpcbench import records
from hpcbench.config import RunConfig
from hpcbench.resolve import resolve
from hpcbench.launch.local import run_local
from hpcbench.workloads import get_workload


def bare_worker(rank: int, world: int, port: int, cfg: RunConfig, results) -> None:
    """The loop a user would write by hand: DDP, SGD, one resident synthetic batch, timed with a barrier."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(cfg.num_threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    workload = get_workload(cfg.workload)
    torch.manual_seed(cfg.seed)
    options = workload.options(cfg.options)
    model = DistributedDataParallel(workload.build_model(options))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = workload.synthetic_batch(options, cfg.batch_size, torch.Generator().manual_seed(cfg.seed + rank))

    def step() -> None:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    for _ in range(cfg.num_warmup_steps):
        step()
    rates = []
    for _ in range(cfg.num_repeats):
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(cfg.num_steps):
            step()
        elapsed = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        rates.append(cfg.num_steps * cfg.batch_size * world / elapsed.item())
    if rank == 0:
        results.put(statistics.median(rates))
    dist.barrier()  # as hpcbench's workers do: leave together, then skip finalization (pytorch#179291)
    dist.destroy_process_group()
    os._exit(0)


def bare_samples_per_s(cfg: RunConfig) -> float:
    from hpcbench.engines.ddp import free_port

    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    mp.start_processes(bare_worker, args=(cfg.num_procs, free_port(), cfg, results), nprocs=cfg.num_procs, start_method="spawn")
    return results.get()


def hpcbench_samples_per_s(cfg: RunConfig) -> float:
    return records.load(run_local(cfg))["metrics"]["samples_per_s"]


def interleaved(sides: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each side measured once per round, the order reversed every other round, so drift on the
    machine hits every side alike."""
    measured: dict[str, list[float]] = {name: [] for name in sides}
    for round_index in range(rounds):
        for name in list(sides) if round_index % 2 == 0 else list(reversed(sides)):
            measured[name].append(sides[name]())
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="mlp,cnn")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="bare/hpcbench pairs per workload, order alternating")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        print(f"{'workload':10s} {'bare samples/s':>16s} {'hpcbench samples/s':>20s} {'ratio':>7s}")
        for workload in args.workloads.split(","):
            cfg = resolve(RunConfig(workload=workload, num_procs=args.nproc, device="cpu", num_steps=args.steps,
                                    num_warmup_steps=args.warmup, num_repeats=args.repeats, out_dir=out))
            measured = interleaved({"bare": lambda: bare_samples_per_s(cfg), "ours": lambda: hpcbench_samples_per_s(cfg)},
                                   args.rounds)
            bare, ours = measured["bare"], measured["ours"]
            b, o = statistics.median(bare), statistics.median(ours)
            print(f"{workload:10s} {b:16.1f} {o:20.1f} {o / b:7.3f}   (rounds: bare {[round(x) for x in bare]}, hpcbench {[round(x) for x in ours]})", flush=True)


if __name__ == "__main__":
    main()

"""Harness overhead: hpcbench vs a bare hand-written DDP loop, same model, batch and process count.

Runs the sides in one invocation, alternating their order each round so drift on the machine hits
all alike, and prints hpcbench / bare per workload (target: >= 0.99) as the median of the per-round ratios
with their range. A third side runs hpcbench with its progress bar drawn on a pseudo-terminal, for
the cost of the bar (bar / no bar, target: >= 0.99).

    python benchmarks/overhead.py --workloads mlp,cnn --nproc 2
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import pty
import struct
import termios
import threading
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
from hpcbench.progress import ENV as PROGRESS_ENV
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


def hpcbench_samples_per_s(cfg: RunConfig, progress: str = "off") -> float:
    """One hpcbench run; with progress="bar" its ranks' stderr is a terminal, so rank 0 draws its bar."""
    os.environ[PROGRESS_ENV] = progress
    with stderr_on_a_terminal() if progress == "bar" else contextlib.nullcontext():
        return records.load(run_local(cfg))["metrics"]["samples_per_s"]


@contextlib.contextmanager
def stderr_on_a_terminal():
    """fd 2 (which the workers inherit) on a pseudo-terminal whose output a thread reads and drops."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    saved = os.dup(2)
    os.dup2(slave, 2)
    os.close(slave)
    drain = threading.Thread(target=_drain, args=(master,), daemon=True)
    drain.start()
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        drain.join(timeout=2)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except OSError:  # the last slave end closed
        pass
    os.close(fd)


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
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all sides per workload, order alternating")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        print(f"{'workload':10s} {'bare samples/s':>16s} {'hpcbench samples/s':>20s} {'with bar':>10s} "
              f"{'hpcbench/bare':>22s} {'bar/no bar':>22s}")
        for workload in args.workloads.split(","):
            cfg = resolve(RunConfig(workload=workload, num_procs=args.nproc, device="cpu", num_steps=args.steps,
                                    num_warmup_steps=args.warmup, num_repeats=args.repeats, out_dir=out))
            measured = interleaved({"bare": lambda: bare_samples_per_s(cfg), "ours": lambda: hpcbench_samples_per_s(cfg),
                                    "bar": lambda: hpcbench_samples_per_s(cfg, "bar")}, args.rounds)
            b, o, w = (statistics.median(measured[side]) for side in ("bare", "ours", "bar"))
            rounds = ", ".join(f"{side} {[round(x) for x in values]}" for side, values in measured.items())
            print(f"{workload:10s} {b:16.1f} {o:20.1f} {w:10.1f} {paired(measured['ours'], measured['bare']):>22s} "
                  f"{paired(measured['bar'], measured['ours']):>22s}   (rounds: {rounds})", flush=True)


def paired(new: list[float], old: list[float]) -> str:
    """The median of the per-round ratios, [min, max]: pairs from the same round share the machine's drift."""
    ratios = [n / o for n, o in zip(new, old)]
    return f"{statistics.median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}]"

if __name__ == "__main__":
    main()

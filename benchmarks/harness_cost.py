"""The harness's own cost per step, in microseconds, measured in isolation.

benchmarks/overhead.py compares whole runs against a bare loop; on a 2-core VM whose rounds differ
by several per cent it cannot resolve a 1 % difference. This script removes the training from the
question: one process, a DDP-wrapped model of one parameter (a step of ~100 us), so what is left
is what wraps the step. It prints

1. end to end: the median step of hpcbench's own loop (`runner.measure`: the TrainStep in the
   session's windows, every measurement, the watchdog, the stop vote, the loss list) minus the
   median step of a bare DDP loop on the same model, interleaved over rounds;
2. piece by piece: each per-step call of the runner's loop timed alone (best of several rounds);
3. both as a share of the real steps, from `--step-ms` (default: mlp and resnet18-32 px on 2
   processes here, as overhead.py measures them).

    python benchmarks/harness_cost.py
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hpcbench.config import RunConfig
from hpcbench.engines import Placement, start_engine
from hpcbench.guard import AgreedStop, StepWatchdog, StopSignals
from hpcbench.measurements import THROUGHPUT, Meters, RankContext, no_mark
from hpcbench.progress import RunProgress
from hpcbench.resolve import resolve
from hpcbench.runner import measure
from hpcbench.training import Arithmetic, LrSchedule
from hpcbench.workloads.base import Workload, register


@register
class NullWorkload(Workload):
    """One parameter: the step is DDP's and the harness's fixed cost, nothing else. Registered only
    inside this script."""

    name = "null-benchmark"
    description = "one-parameter model (benchmarks/harness_cost.py only)"
    sample_unit = "number"
    default_batch_size = 1
    real_data = "none"

    def build_model(self, options: object) -> nn.Module:
        return nn.Linear(1, 1, bias=False)

    def synthetic_batch(self, options: object, batch_size: int, generator: torch.Generator):
        return torch.randn(batch_size, 1, generator=generator), torch.randn(batch_size, 1, generator=generator)

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return ((output - targets) ** 2).mean()


def hpcbench_step_s(cfg: RunConfig, engine) -> float:
    """Median step of the runner's loop (its own per-step times, every rank-side piece included)."""
    result = measure(cfg, engine, time.perf_counter, StopSignals())
    return statistics.median(itertools.chain.from_iterable(result["measured"]["step_times_s"]))


def bare_step_s(cfg: RunConfig, model: nn.Module, optimizer: torch.optim.Optimizer) -> float:
    """Median step of the loop a user writes by hand, timed the same way (a clock read per step)."""
    workload = NullWorkload()
    x, y = workload.synthetic_batch(None, cfg.batch_size, torch.Generator().manual_seed(0))
    times = []
    for repeat in range(cfg.num_warmup_steps + cfg.num_repeats * cfg.num_steps):
        t0 = time.perf_counter()
        optimizer.zero_grad()
        loss = workload.loss(model(x), y)
        loss.backward()
        optimizer.step()
        if repeat >= cfg.num_warmup_steps:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def per_call_us(call: Callable[[], object], repeat: int = 20_000, rounds: int = 5) -> float:
    """Best of `rounds` of the mean time of one call, in microseconds (best: the machine's noise only adds)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeat):
            call()
        best = min(best, (time.perf_counter() - t0) / repeat)
    return best * 1e6


def pieces_us(engine) -> dict[str, float]:
    """Each per-step piece of the runner's loop (runner.TrainStep in modes.Session.window), as the loop
    calls it at the defaults (fp32, no
    LR scaling, no fault, no phases window, progress off on ranks > 0 and in batch logs)."""
    model = nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    arithmetic = Arithmetic("fp32", engine.device)
    schedule = LrSchedule(optimizer, "none", 0, k=1)
    meters = Meters(RankContext(device=engine.device, clock=time.perf_counter))
    meters.start(THROUGHPUT)
    progress = RunProgress(0, 1, 1, "off")
    agreed = AgreedStop(engine.all_reduce_max_async, StopSignals(), time.perf_counter)
    batches = itertools.repeat((torch.zeros(1), torch.zeros(1)))
    loss = torch.zeros((), requires_grad=True) * 1
    losses: list[torch.Tensor] = []

    def autocast() -> None:
        with arithmetic.autocast():
            pass

    def loss_kept() -> None:
        losses.append(loss.detach())
        if len(losses) > 1000:
            losses.clear()

    with StepWatchdog(120.0) as watchdog:
        found = {
            "watchdog.step_started": per_call_us(watchdog.step_started),
            "mark() x5 (outside --phases)": 5 * per_call_us(lambda: no_mark("start")),
            "next(batches)": per_call_us(lambda: next(batches)),
            "schedule.set": per_call_us(lambda: schedule.set(0)),
            "arithmetic.autocast() enter+exit": per_call_us(autocast),
            "arithmetic.scaled": per_call_us(lambda: arithmetic.scaled(loss)),
            "losses.append(loss.detach())": per_call_us(loss_kept),
            "meters.step_done": per_call_us(lambda: meters.step_done(THROUGHPUT)),
            "progress.step": per_call_us(progress.step),
            "agreed.poll (vote every ~0.5 s)": per_call_us(agreed.poll, repeat=2_000),
        }
    agreed.drain()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--step-ms", default="mlp=22,cnn=230",
                        help="real step times to relate the cost to (ms; default: 2 processes here, overhead.py)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out:
        cfg = resolve(RunConfig(workload=NullWorkload.name, num_procs=1, device="cpu", num_steps=args.steps,
                                num_warmup_steps=50, num_repeats=1, breakdown=False, out_dir=out, num_threads=1))
        engine = start_engine("ddp", Placement(0, 0, 1, 1, "none"), "cpu", cfg.timeout_s, cfg.engine_options)
        try:
            model = DistributedDataParallel(NullWorkload().build_model(None))
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            ours, bare = [], []
            for round_index in range(args.rounds):  # interleaved, order alternating: drift hits both alike
                sides = [lambda: ours.append(hpcbench_step_s(cfg, engine)),
                         lambda: bare.append(bare_step_s(cfg, model, optimizer))]
                for side in sides if round_index % 2 == 0 else reversed(sides):
                    side()
            pieces = pieces_us(engine)
        finally:
            engine.close()
    differences = [(o - b) * 1e6 for o, b in zip(ours, bare)]
    harness_us = statistics.median(differences)
    print(f"one-parameter DDP step, 1 process, {args.steps} steps x {args.rounds} interleaved rounds:")
    print(f"  bare loop      {statistics.median(bare) * 1e6:8.1f} us   (rounds: {[round(b * 1e6, 1) for b in bare]})")
    print(f"  hpcbench loop  {statistics.median(ours) * 1e6:8.1f} us   (rounds: {[round(o * 1e6, 1) for o in ours]})")
    print(f"  harness per step: {harness_us:.1f} us median [{min(differences):.1f}, {max(differences):.1f}]")
    print("\nper-step pieces of the runner's loop (TrainStep in Session.window), each timed alone (best of 5 rounds):")
    for name, us in pieces.items():
        print(f"  {name:36s} {us:7.2f} us")
    print(f"  {'sum':36s} {sum(pieces.values()):7.2f} us")
    print("\nas a share of a real step (target: below 0.5 %):")
    for entry in args.step_ms.split(","):
        name, ms = entry.split("=")
        print(f"  {name:6s} {float(ms):7.1f} ms step: end to end {harness_us / (float(ms) * 1e3):.3%}, "
              f"pieces {sum(pieces.values()) / (float(ms) * 1e3):.3%}")


if __name__ == "__main__":
    main()

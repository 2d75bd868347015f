"""Engines side by side: DDP vs Horovod and DDP vs FSDP throughput per workload, and hpcbench-Horovod vs
a minimal Horovod loop written like Horovod's own synthetic benchmark (fixed batch, SGD, cross-entropy).

Everything is measured in one invocation, alternating the order each round so drift on the
machine hits all sides; ratios are paired per round (the median of the per-round ratios, with
their min and max). Target: hpcbench-Horovod / minimal loop >= 0.99. Both Horovod sides start
under `horovodrun --gloo` with the same environment (horovodrun exports no OMP_NUM_THREADS, and
since this benchmark found a 3 % cost in it, neither does hpcbench's horovodrun launch).

    python benchmarks/engines.py --workloads mlp --steps 100 --rounds 10 --no-ddp   # the parity check
    python benchmarks/engines.py --workloads cnn --steps 20 --rounds 10 --no-ddp
    python benchmarks/engines.py --workloads mlp,cnn,vae --nproc 2 --rounds 3        # DDP vs Horovod too
    python benchmarks/engines.py --workloads gpt,mlp --fsdp --no-horovod --rounds 5   # DDP vs FSDP
    python benchmarks/engines.py --workloads cnn --image-size 224 --batch-size 8 --no-ddp --rounds 6   # Horovod's
        # own script's shape; also prints the bare loop's windows read with that script's metric (rank 0 x size)
        # (--bare-twice: the bare loop a second time each round, its process-to-process spread beside the ratio)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time

from hpcbench.analysis.stats import bootstrap_median_ci
from hpcbench.config import RunConfig
from hpcbench.resolve import resolve
from overhead import hpcbench_samples_per_s, interleaved, paired  # benchmarks/ is on sys.path when run as a script

CLASSIFIERS = ("mlp", "cnn")
"""Workloads whose loss is plain cross-entropy: the minimal Horovod loop is written for those."""


def bare_horovod_worker(cfg_json: str) -> None:
    """The loop of Horovod's pytorch_synthetic_benchmark.py: no harness, rank 0 prints the result."""
    import horovod.torch as hvd
    import torch
    from torch.nn import functional as F

    from hpcbench.workloads import get_workload

    cfg = RunConfig(**json.loads(cfg_json))
    hvd.init()
    torch.set_num_threads(cfg.num_threads)
    workload = get_workload(cfg.workload)
    options = workload.options(cfg.options)
    torch.manual_seed(cfg.seed)
    model = workload.build_model(options)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)
    optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
    x, y = workload.synthetic_batch(options, cfg.batch_size, torch.Generator().manual_seed(cfg.seed + hvd.rank()))

    def step() -> None:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    for _ in range(cfg.num_warmup_steps):
        step()
    rates, script_rates = [], []
    for _ in range(cfg.num_repeats):
        hvd.barrier()
        start = time.perf_counter()
        for _ in range(cfg.num_steps):
            step()
        own = time.perf_counter() - start
        slowest = hvd.allreduce(torch.tensor([own]), op=hvd.Max, name=f"t{len(rates)}")
        rates.append(cfg.num_steps * cfg.batch_size * hvd.size() / float(slowest[0]))
        # Horovod's pytorch_synthetic_benchmark.py metric on the same windows: this rank's own rate x size, the
        # mean over iterations (its "Total img/sec on N GPU(s)"), printed by rank 0
        script_rates.append(cfg.num_steps * cfg.batch_size / own * hvd.size())
    if hvd.rank() == 0:
        print(f"BARE_SAMPLES_PER_S {statistics.median(rates)}", flush=True)
        print(f"SCRIPT_SAMPLES_PER_S {statistics.mean(script_rates)}", flush=True)
    hvd.shutdown()


SCRIPT_METRIC: dict[str, list[float]] = {}
"""Per workload, each bare run's windows read as Horovod's own script reads them (rank 0's rate x size, mean)."""


def bare_samples_per_s(cfg: RunConfig) -> float:
    n = cfg.num_procs
    out = subprocess.run([sys.executable, "-m", "horovod.runner.launch", "--gloo", "-np", str(n), "-H", f"localhost:{n}",
                          sys.executable, __file__, "--bare-worker", json.dumps(dataclasses.asdict(cfg))],
                         capture_output=True, text=True, check=True).stdout
    SCRIPT_METRIC.setdefault(cfg.workload, []).append(
        float(next(line.split()[-1] for line in out.splitlines() if "SCRIPT_SAMPLES_PER_S" in line)))
    return float(next(line.split()[-1] for line in out.splitlines() if "BARE_SAMPLES_PER_S" in line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="mlp,cnn")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="per process (default: the workload's)")
    parser.add_argument("--image-size", type=int, default=None, help="cnn's image size (default: the workload's)")
    parser.add_argument("--ddp", action=argparse.BooleanOptionalAction, default=True, help="measure DDP too")
    parser.add_argument("--horovod", action=argparse.BooleanOptionalAction, default=True, help="measure Horovod")
    parser.add_argument("--fsdp", action=argparse.BooleanOptionalAction, default=False, help="measure FSDP too")
    parser.add_argument("--bare-twice", action="store_true",
                        help="run the bare Horovod loop twice a round: its own process-to-process spread, the floor "
                             "under any hpcbench-hvd / bare ratio")
    parser.add_argument("--bare-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_worker:
        bare_horovod_worker(args.bare_worker)
        return
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for workload in args.workloads.split(","):
            # no breakdown window: it runs after the timed repeats and would only lengthen each round
            options = {"image_size": args.image_size} if args.image_size and workload == "cnn" else {}
            base = resolve(RunConfig(workload=workload, num_procs=args.nproc, num_steps=args.steps, device="cpu",
                                     num_warmup_steps=args.warmup, num_repeats=args.repeats, out_dir=out, breakdown=False,
                                     batch_size=args.batch_size, options=options))
            # resolved again: the engine's own options (DDP's --ddp-*, Horovod's --hvd-*) are its own
            sides = {}
            if args.horovod:
                horovod = resolve(dataclasses.replace(base, engine="horovod", engine_options={}))
                sides["horovod"] = lambda c=horovod: hpcbench_samples_per_s(c)
            if args.ddp:
                sides["ddp"] = lambda c=base: hpcbench_samples_per_s(c)
            if args.fsdp:
                fsdp = resolve(dataclasses.replace(base, engine="fsdp", engine_options={}))
                sides["fsdp"] = lambda c=fsdp: hpcbench_samples_per_s(c)
            if args.horovod and workload in CLASSIFIERS:
                sides["bare_horovod"] = lambda c=base: bare_samples_per_s(c)
                if args.bare_twice:
                    sides["bare_horovod_again"] = lambda c=base: bare_samples_per_s(c)
            measured = interleaved(sides, args.rounds)
            rows.append((workload, measured))
            print(f"{workload}: {({k: [round(v, 1) for v in vs] for k, vs in measured.items()})}", flush=True)
    print(f"\n{'workload':10s} {'horovod':>10s} {'ddp':>10s} {'fsdp':>10s} {'bare hvd':>10s} "
          f"{'hpcbench-hvd/bare [min, max]':>60s} {'hvd/ddp [min, max]':>24s} {'fsdp/ddp [min, max]':>24s}"
          f"  (samples/s: medians of {args.rounds} rounds; ratios paired per round)")
    for workload, measured in rows:
        m = {name: statistics.median(values) for name, values in measured.items()}
        bare = paired(measured["horovod"], measured["bare_horovod"]) if "bare_horovod" in m else "n/a"
        if "bare_horovod" in m:
            ratios = [h / b for h, b in zip(measured["horovod"], measured["bare_horovod"])]
            low, high = bootstrap_median_ci(ratios)
            bare += f" CI95 of the median [{low:.3f}, {high:.3f}]"
        if "bare_horovod" in m:
            script = SCRIPT_METRIC[workload]
            print(f"{workload}: the bare loop's windows read as Horovod's script reads them (rank 0 x size, mean): "
                  f"{statistics.median(script):.1f} samples/s, {statistics.median(script) / m['bare_horovod']:.3f} of the "
                  f"slowest-rank reading; hpcbench-hvd / script metric {paired(measured['horovod'], script)}")
        if "bare_horovod_again" in m:
            print(f"{workload}: the bare loop against itself, another process (the floor under the ratio above): "
                  f"{paired(measured['bare_horovod_again'], measured['bare_horovod'])}")
        ddp = paired(measured["horovod"], measured["ddp"]) if "ddp" in m and "horovod" in m else "n/a"
        fsdp = paired(measured["fsdp"], measured["ddp"]) if "ddp" in m and "fsdp" in m else "n/a"
        nan = float("nan")
        print(f"{workload:10s} {m.get('horovod', nan):10.1f} {m.get('ddp', nan):10.1f} {m.get('fsdp', nan):10.1f} "
              f"{m.get('bare_horovod', nan):10.1f} {bare:>60s} {ddp:>24s} {fsdp:>24s}")


if __name__ == "__main__":
    main()

"""fp32 vs bf16 and eager vs compiled, side by side in one invocation on this machine.

Each side is an hpcbench run of the same workload, batch and process count, differing in one
option; the sides alternate their order each round (as overhead.py's do) and each ratio is the
median of the per-round ratios with its range. Compilation happens in warm-up, never in the timed
windows; its seconds are printed beside the ratio.

    python benchmarks/precision.py --workloads mlp,cnn --nproc 2
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile

from overhead import interleaved, paired

from hpcbench import records
from hpcbench.config import RunConfig
from hpcbench.launch.local import run_local
from hpcbench.resolve import resolve

SIDES = {"fp32": {}, "bf16": {"precision": "bf16"}, "compiled": {"compile": True}}
"""Each side's change from fp32 eager; compiled is fp32 too, so compiled / fp32 is the compile speedup alone."""


COMPILE_TIMEOUT_S = 900.0
"""A compiling step can outlast the default 120 s collective timeout (resnet18, 2 processes on 2 cores: more
than that while the other rank waits in the all-reduce), so every side gets this one (it changes no timing)."""


def measure(cfg: RunConfig, found: dict[str, float]) -> float:
    record = records.load(run_local(cfg))
    if cfg.compile:
        found["compile_s"] = max(found.get("compile_s", 0.0), record["metrics"]["compile"]["compile_s"])
    return record["metrics"]["samples_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="mlp,cnn")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        print(f"{'workload':10s} {'fp32 samples/s':>15s} {'bf16':>10s} {'compiled':>10s} {'bf16/fp32':>22s} "
              f"{'compiled/eager':>22s} {'compile s':>10s}")
        for workload in args.workloads.split(","):
            base = RunConfig(workload=workload, num_procs=args.nproc, device="cpu", num_steps=args.steps,
                             num_warmup_steps=args.warmup, num_repeats=args.repeats, out_dir=out, breakdown=False,
                             timeout_s=COMPILE_TIMEOUT_S)
            found: dict[str, float] = {}
            configs = {side: resolve(dataclasses.replace(base, **change)) for side, change in SIDES.items()}
            measured = interleaved({side: (lambda c=cfg: measure(c, found)) for side, cfg in configs.items()},
                                   args.rounds)
            fp32, bf16, compiled = (statistics.median(measured[side]) for side in SIDES)
            print(f"{workload:10s} {fp32:15.1f} {bf16:10.1f} {compiled:10.1f} "
                  f"{paired(measured['bf16'], measured['fp32']):>22s} "
                  f"{paired(measured['compiled'], measured['fp32']):>22s} {found.get('compile_s', 0):10.1f}", flush=True)


if __name__ == "__main__":
    main()

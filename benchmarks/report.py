"""Report speed: time `hpcbench report` over many generated records (target: 10,000 in <= 5 s).

Records are realistic in shape: 6 workloads x 2 engines x 1..64 processes, 3 repeats of 20 steps
per rank, written with hpcbench's own writer. Prints the load, analysis and total times.

    python benchmarks/report.py --records 10000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from hpcbench import records
from hpcbench.analysis.load import load_records
from hpcbench.analysis.report import build_report

WORKLOADS = ["mlp", "cnn", "finetune", "vae", "rnn", "rl"]
ENGINES = ["ddp", "horovod"]
WORLD_SIZES = [1, 2, 4, 8, 16, 32, 64]


def generate(folder: Path, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(count):
        workload, engine = WORKLOADS[i % 6], ENGINES[(i // 6) % 2]
        world = WORLD_SIZES[(i // 12) % len(WORLD_SIZES)]
        nodes = max(1, world // 8)
        step = 0.05 * (1 + 0.1 * np.log2(world)) * rng.lognormal(0, 0.05, size=(min(world, 8), 3, 20))
        repeats = (20 * 32 * world / step.sum(axis=2).max(axis=0)).tolist()
        record = records.make_record(
            run_id=f"gen{i:06d}", status="ok", reason=None,
            config={"workload": workload, "engine": engine, "device": "cuda", "batch_size": 32},
            workload={"gradient_bytes_per_step": 44_726_568, "sample_unit": "image"},
            metrics={"samples_per_s": float(np.median(repeats)), "samples_per_s_repeats": repeats,
                     "global_batch_size": 32 * world, "step_time_s_median": float(np.median(step))},
            ranks=[{"rank": r, "step_times_s": step[r].tolist()} for r in range(step.shape[0])],
            provenance={"world_size": world, "num_nodes": nodes, "started": "2026-11-24T00:00:00+00:00",
                        "cpu_model": "generated", "gpu_model": "generated", "torch": "2.14.1", "hpcbench": "0.1.0"},
        )
        records.write_atomic(folder / f"{workload}_{engine}_{world}p_gen{i:06d}.json", record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results, out = Path(tmp) / "results", Path(tmp) / "report"
        results.mkdir()
        generate(results, args.records)
        started = time.perf_counter()
        runs = load_records([results])
        loaded = time.perf_counter()
        build_report([results], out)
        finished = time.perf_counter()
    print(f"{len(runs)} records: load {loaded - started:.2f} s; whole report (load again + tables + plots + "
          f"HTML) {finished - loaded:.2f} s; target <= 5 s for 10,000")


if __name__ == "__main__":
    main()

"""The pipeline bubble measured against the formula: gpt cut into 2 and 4 stages at 2, 4 and 8 micro-batches,
under GPipe, 1F1B and interleaved 1F1B (2 stages a rank), one `hpcbench run` each on this machine; prints, per run,
the measured bubble (each stage's idle share inside the schedule, mean and worst stage) beside (p-1)/(v*m+p-1).

    python benchmarks/pipeline_bubble.py [--out DIR] [--layers 8]   # ~4 min on 2 cores

4 ranks on 2 cores are oversubscribed (the records say so): a stage descheduled by the OS idles its neighbours,
which the measured bubble counts. Micro-batches fewer than stages are refused, as hpcbench refuses them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from hpcbench.analysis.efficiency import pipeline_table
from hpcbench.analysis.load import read_valid, runs_frame

STAGES = (2, 4)
MICROBATCHES = (2, 4, 8)
SCHEDULES = ("gpipe", "1f1b", "interleaved-1f1b")


def run(out: Path, stages: int, microbatches: int, schedule: str, layers: int) -> str | None:
    """One run; None when it ran, else why not (the refusal's line)."""
    result = subprocess.run([sys.executable, "-m", "hpcbench", "run", "--workload", "gpt", "--layers", str(layers),
                             "--engine", "pp", "--nproc", str(stages), "--pp-schedule", schedule,
                             "--pp-microbatches", str(microbatches), "--steps", "8", "--warmup", "4", "--repeats", "3",
                             "--threads", "1", "--no-breakdown", "--out", str(out)], capture_output=True, text=True)
    return None if result.returncode == 0 else result.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep the records here (default: a temporary folder)")
    parser.add_argument("--layers", type=int, default=8, help="gpt blocks (divisible by 4 stages x 2 a rank)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="hpcbench-bubble-"))
    refused = []
    for stages in STAGES:
        for schedule in SCHEDULES:
            for microbatches in MICROBATCHES:
                why = run(out, stages, microbatches, schedule, args.layers)
                if why:
                    refused.append(f"p={stages} m={microbatches} {schedule}: {why}")
    table = pipeline_table(runs_frame(read_valid([out])))
    table["measured_minus_analytic"] = table["bubble_measured"] - table["bubble_analytic"]
    print(table.drop(columns=["workload"]).round(3).to_string(index=False))
    for line in refused:
        print("refused:", line)
    print(f"records: {out}")


if __name__ == "__main__":
    main()

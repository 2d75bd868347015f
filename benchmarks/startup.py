"""Start-up cost of local runs, cold (a new interpreter per rank, torch's elastic agent) against warm (ranks
forked from the preloaded zygote), measured side by side in one run, alternating so both see the same machine.

    python benchmarks/startup.py [--trials 3]

Two things are timed, each `--trials` times per start mode, medians printed with their range:
- one 5-step 2-process mlp run (`hpcbench run`): its wall time, the worker's own run (the record's
  `started` -> `ended`: engine start, model, steps, gather, record) and the rest, start-up and teardown;
- a 4-point sweep (mlp and the course's conv net at 1 and 2 processes): per point, the gap before its own
  run (from the previous point's `ended`, or from the command's start for the first) and its own run.

Targets (issue 36): a 5-step run spends <= 3.5 s outside the worker's own run; each sweep point after the
first <= 1.5 s beyond its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

RUN = ["run", "--workload", "mlp", "--nproc", "2", "--steps", "5", "--warmup", "1", "--repeats", "1", "--device", "cpu"]
SWEEP = ["sweep", "--workloads", "mlp,cnn", "--model", "convnet", "--nproc", "1,2", "--steps", "5", "--warmup", "1",
         "--repeats", "1", "--device", "cpu"]


def timed(args: list[str], start: str, out: Path) -> tuple[float, float, list[dict]]:
    """(command start, command end, records by start time) of `hpcbench ARGS --out OUT`, epoch seconds."""
    began = time.time()
    result = subprocess.run([sys.executable, "-m", "hpcbench", *args, "--out", str(out)], capture_output=True, text=True,
                            env={**os.environ, "HPCBENCH_START": start, "HPCBENCH_PROGRESS": "off"})
    ended = time.time()
    if result.returncode != 0:
        sys.exit(f"startup.py: {' '.join(args)} failed with HPCBENCH_START={start}:\n{result.stderr[-2000:]}")
    records = [json.loads(p.read_text()) for p in out.glob("*.json")]
    return began, ended, sorted(records, key=lambda r: r["provenance"]["started"])


def own_run(record: dict) -> tuple[float, float]:
    provenance = record["provenance"]
    return (datetime.fromisoformat(provenance["started"]).timestamp(),
            datetime.fromisoformat(provenance["ended"]).timestamp())


def single_run(start: str, folder: Path) -> dict[str, float]:
    began, ended, [record] = timed(RUN, start, folder)
    run_began, run_ended = own_run(record)
    return {"wall_s": ended - began, "own_s": run_ended - run_began, "outside_s": ended - began - (run_ended - run_began)}


def sweep_points(start: str, folder: Path) -> dict[str, float]:
    began, ended, records = timed(SWEEP, start, folder)
    found, previous_end = {}, began
    for index, record in enumerate(records, 1):
        run_began, run_ended = own_run(record)
        found[f"point {index} gap_s"] = run_began - previous_end
        found[f"point {index} own_s"] = run_ended - run_began
        previous_end = run_ended
    found["after last_s"] = ended - previous_end
    found["wall_s"] = ended - began
    return found


def summary(samples: list[dict[str, float]], key: str) -> str:
    values = [sample[key] for sample in samples]
    return f"{statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3, help="runs per start mode and measurement (default 3)")
    args = parser.parse_args()
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="hpcbench-startup-") as tmp:
        for trial in range(args.trials):
            for start in ("cold", "warm"):  # alternating: a slow minute of the machine hits both
                for name, measure in (("run", single_run), ("sweep", sweep_points)):
                    folder = Path(tmp) / f"{name}-{start}-{trial}"
                    samples.setdefault((name, start), []).append(measure(start, folder))
    print(f"median (min-max) over {args.trials} trials, seconds; cold = a new interpreter per rank, warm = forked "
          f"from the preloaded zygote")
    print(f"\n5-step 2-process mlp run        {'cold':>19} {'warm':>19}")
    for key in ("wall_s", "own_s", "outside_s"):
        print(f"  {key:<30}{summary(samples['run', 'cold'], key):>19} {summary(samples['run', 'warm'], key):>19}")
    print(f"\n4-point sweep (mlp, convnet x 1, 2 procs)")
    for key in samples["sweep", "cold"][0]:
        print(f"  {key:<30}{summary(samples['sweep', 'cold'], key):>19} {summary(samples['sweep', 'warm'], key):>19}")
    outside = statistics.median(s["outside_s"] for s in samples["run", "warm"])
    later_gaps = [statistics.median(s[f"point {i} gap_s"] for s in samples["sweep", "warm"]) for i in (2, 3, 4)]
    print(f"\ntargets: run outside its own {outside:.2f} s (<= 3.5: {'met' if outside <= 3.5 else 'NOT met'}); "
          f"sweep points 2-4 beyond their own {max(later_gaps):.2f} s at most (<= 1.5: "
          f"{'met' if max(later_gaps) <= 1.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

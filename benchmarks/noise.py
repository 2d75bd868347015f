"""Numbers on a machine that is not ours: the demo sweep quiet, with one core kept busy by another process, and
with every core kept busy, interleaved (quiet, one busy, all busy, quiet, ...), for several rounds.

Each burner is a Python process spinning without end; it logs its CPU time against the monotonic clock, so
what it used during each record's timed steps (system_load's intervals, on the same clock) is known exactly.
Prints, per round, condition and point: efficiency with its interval, the share of the run's CPUs that other
processes took as hpcbench measured it, what the burners alone took in the same windows, and the flags. Then
the targets of issue 46:
- every loaded point flagged contended, its measured share within 10 points of the burners' share;
- no quiet point flagged;
- no impossible value printed bare (exposed_comm < 0, bare_efficiency from a negative engine cost);
- the quiet rounds' efficiency intervals overlap, per point.

    python benchmarks/noise.py --rounds 3 --out /tmp/noise
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hpcbench.analysis import load_records, scaling_table

BURNER = """
import sys, time
out = open(sys.argv[1], "w", buffering=1)
last = 0.0
while True:
    now = time.perf_counter()
    if now - last > 0.02:
        out.write(f"{now} {time.process_time()}\\n")
        last = now
"""
CONDITIONS = {"quiet": 0, "one core busy": 1, "all cores busy": os.cpu_count() or 2}


def start_burners(count: int, folder: Path) -> list[tuple[subprocess.Popen, Path]]:
    burners = []
    for i in range(count):
        log = folder / f"burner-{i}.log"
        burners.append((subprocess.Popen([sys.executable, "-c", BURNER, str(log)]), log))
    time.sleep(0.5 if count else 0)
    return burners


def burner_seconds(log: Path, start: float, end: float) -> float:
    """CPU seconds a burner used between two instants of the monotonic clock (linear between its samples)."""
    samples = np.loadtxt(log, ndmin=2)
    if len(samples) < 2:
        return 0.0
    clock, cpu = samples[:, 0], samples[:, 1]
    return float(np.interp(end, clock, cpu) - np.interp(start, clock, cpu))


def burners_share(record: dict, logs: list[Path]) -> float:
    """The burners' CPU time over the record's timed intervals, as a share of the CPUs the run could use."""
    rank = record["ranks"][0]["system_load"]
    windows = rank["windows"]["throughput"]
    used = sum(burner_seconds(log, a, b) for log in logs for a, b in windows["intervals"])
    return used / (windows["wall_s"] * len(rank["cpus"]))


def run_sweep(out: Path, args: argparse.Namespace) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "hpcbench", "sweep", "--workloads", args.workloads, "--nproc", args.nproc,
               "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HPCBENCH_PROGRESS": "off"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workloads", default="mlp,cnn")
    parser.add_argument("--nproc", default="1,2")
    parser.add_argument("--out", default=None, help="keep the records here (default: a temporary folder)")
    args = parser.parse_args()
    top = Path(args.out or tempfile.mkdtemp(prefix="hpcbench-noise-"))
    rows, printed = [], []
    for round_number in range(1, args.rounds + 1):
        for condition, count in CONDITIONS.items():
            folder = top / f"round{round_number}" / condition.replace(" ", "-")
            folder.mkdir(parents=True, exist_ok=True)
            burners = start_burners(count, folder)
            try:
                result = run_sweep(folder / "records", args)
            finally:
                for process, _ in burners:
                    process.kill()
                    process.wait()
            printed.append(result.stdout)
            if result.returncode != 0:
                print(result.stdout, result.stderr, file=sys.stderr)
                return 1
            runs = load_records([folder / "records"])
            table = scaling_table(runs, "weak")
            by_path = {p: json.loads(Path(p).read_text()) for p in runs["path"]}
            for point in table.itertuples():
                ids = set(runs[(runs["workload"] == point.workload) & (runs["world_size"] == point.world_size)]["run_id"])
                [record] = [r for r in by_path.values() if r["run_id"] in ids]
                rows.append({"round": round_number, "condition": condition, "workload": point.workload,
                             "procs": point.world_size, "efficiency": point.efficiency, "low": point.efficiency_low,
                             "high": point.efficiency_high, "exposed_comm": point.exposed_comm_share,
                             "measured_others": record["metrics"]["others_share"],
                             "burners": burners_share(record, [log for _, log in burners]),
                             "contended": bool(record["metrics"]["contended"]), "warnings": point.warnings})
    print(f"{'round':>5} {'condition':<15} {'point':<8} {'efficiency [interval]':<24} {'others':>7} {'burners':>8}  flags")
    for r in rows:
        interval = f"{r['efficiency']:.1%} [{r['low']:.1%}, {r['high']:.1%}]" if r["procs"] > 1 else "baseline"
        print(f"{r['round']:>5} {r['condition']:<15} {r['workload']}@{r['procs']:<4} {interval:<24} "
              f"{r['measured_others']:>7.1%} {r['burners']:>8.1%}  {r['warnings'] or '-'}")
    loaded = [r for r in rows if r["condition"] != "quiet"]
    quiet = [r for r in rows if r["condition"] == "quiet"]
    misses = [r for r in loaded if not r["contended"] or abs(r["measured_others"] - r["burners"]) > 0.10]
    false_alarms = [r for r in quiet if r["contended"]]
    bare = [line for text in printed for line in text.splitlines() if "-" in line and "%" in line
            and any(tok.startswith("-") and tok.endswith("%") and tok != "-" for tok in line.split())]
    overlap = {}
    for key in {(r["workload"], r["procs"]) for r in quiet if r["procs"] > 1}:
        # a quiet point that something else disturbed is flagged above (a false alarm or not); it is not quiet here
        intervals = [(r["low"], r["high"]) for r in quiet if (r["workload"], r["procs"]) == key and not r["contended"]
                     and "baseline contended" not in r["warnings"]]
        overlap[key] = max(low for low, _ in intervals) <= min(high for _, high in intervals)
    print(f"\nloaded points flagged contended, measured share within 10 points of the burners': "
          f"{len(loaded) - len(misses)} of {len(loaded)}")
    print(f"quiet points flagged contended: {len(false_alarms)} of {len(quiet)}")
    print(f"negative percentages printed in the sweeps' tables: {len(bare)}")
    print("quiet rounds' efficiency intervals overlap: " + ", ".join(f"{w}@{n} {'yes' if ok else 'NO'}"
                                                                    for (w, n), ok in sorted(overlap.items())))
    print(f"records: {top}")
    return 0 if not misses and not false_alarms and not bare and all(overlap.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

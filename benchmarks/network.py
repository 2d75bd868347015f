"""The network study side by side: mlp and cnn weak-scaling efficiency from 1 to 2 nodes (one rank per
node) on the emulated cluster at each link rate, and on the loopback cluster, in one invocation.

Each network is a cluster of its own (jobs/local-slurm.sh up [--link RATE] in a private folder, on a
controller port apart from the test cluster's), running the shipped sweep `network-study` through
`hpcbench submit`; the numbers are the report's own (analysis.scaling_table over the records: global
samples/s from the slowest rank, efficiency against the same system's 1-node point). Needs root.

    python benchmarks/network.py                         # loopback, 1gbit, 100mbit
    python benchmarks/network.py --links 10gbit,200mbit --keep results/network-study
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from hpcbench.analysis import load_records, scaling_table

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "jobs" / "local-slurm.sh"
PORT = 16920  # apart from the test cluster (16817) and the network tests' (16900)


def cluster(command: str, folder: Path, *args: str) -> None:
    env = {**os.environ, "HPCBENCH_SLURM_DIR": str(folder), "HPCBENCH_SLURM_PORT": str(PORT)}
    subprocess.run(["bash", str(SCRIPT), command, *args], env=env, check=True, stdout=subprocess.DEVNULL)


def study(link: str | None, sweep_dir: Path, state: Path) -> None:
    """Bring the cluster up, submit the study, wait for its report job, take the cluster down."""
    # One CPU per node: this machine's 2 cores are the 2 nodes, so no two ranks ever share a core (with 4
    # per node, Slurm ran a sweep's 1- and 2-node jobs side by side and the 1-node points varied 2.4x).
    cluster("up", state, "--cpus-per-node", "1", *(["--link", link] if link else []))
    try:
        env_lines = (state / "env").read_text().splitlines()
        env = {**os.environ, **dict(line.removeprefix("export ").split("=", 1) for line in env_lines)}
        hpcbench = [sys.executable, "-m", "hpcbench"]
        subprocess.run([*hpcbench, "submit", "network-study", "--profile", "local-slurm", "--sweep-dir", str(sweep_dir)],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        while True:
            states = [line.split()[1] for line in subprocess.run([*hpcbench, "status", str(sweep_dir)], env=env,
                                                                  capture_output=True, text=True).stdout.splitlines()]
            if states and all(s in ("done", "failed", "blocked") for s in states):
                break
            time.sleep(2)
        if any(s != "done" for s in states):
            raise SystemExit(f"{link or 'loopback'}: jobs ended {states}; logs in {sweep_dir / 'logs'}")
    finally:
        cluster("down", state)


def summary(folders: list[Path]) -> pd.DataFrame:
    """The report's scaling table, one row per workload, network and node count."""
    runs = load_records(folders)
    table = scaling_table(runs).merge(runs.groupby("system_id", as_index=False)["network"].first(), on="system_id")
    table["network"] = table["network"].fillna("loopback")
    columns = ["workload", "network", "num_nodes", "samples_per_s", "efficiency", "step_time_s_median",
               "compute_step_time_s", "exposed_comm_share"]
    return table[columns].sort_values(["workload", "num_nodes", "network"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--links", default="1gbit,100mbit", help="comma-separated tc rates (default 1gbit,100mbit)")
    parser.add_argument("--no-loopback", action="store_true", help="skip the loopback cluster")
    parser.add_argument("--keep", default=None, help="folder to keep the sweeps in (default: a temporary one)")
    args = parser.parse_args()
    links = ([None] if not args.no_loopback else []) + [link for link in args.links.split(",") if link]
    top = Path(args.keep or tempfile.mkdtemp(prefix="hpcbench-network-"))
    state = Path(tempfile.mkdtemp(prefix="hpcbench-network-state-", dir="/tmp"))
    state.chmod(0o755)  # munged's socket folder must be traversable by all
    try:
        for link in links:
            started = time.monotonic()
            study(link, top / (link or "loopback"), state / "cluster")
            print(f"{link or 'loopback'}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    print(summary([top / (link or "loopback") / "records" for link in links]).to_string(
        index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"\nsweeps and reports in {top}")


if __name__ == "__main__":
    main()

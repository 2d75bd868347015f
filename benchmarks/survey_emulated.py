"""The survey measured against faults we inject: on the emulated cluster (jobs/local-slurm.sh up --link 1gbit
--nodes 4 --storage sshfs:DATA), a healthy cluster and one cluster per fault kind, each fault on a node picked at
random (printed), each cluster surveyed twice. Prints the table: injected fault, node, what the survey named, what
it costs. Target: every fault named with its node and kind, nothing named on the healthy cluster, both repeats.
Needs root; about 2 minutes a cluster.

    python benchmarks/survey_emulated.py                 # healthy, link, cpu, storage; seeds from the clock
    python benchmarks/survey_emulated.py --seed 3 --kinds cpu --keep results/survey-emulated
    python benchmarks/survey_emulated.py --keep results/survey-emulated --reuse     # diagnose the kept records again

The faults: link = the node's link at 100mbit (the others 1gbit); cpu = the node's slurmd and its tasks capped at
20 % of its one CPU by the cgroup cpu controller (the healthy nodes share this machine's 2 cores four ways: ~50 %
each); storage = the node's traffic with the storage server at 40mbit (its link to the other nodes at 1gbit).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import network  # noqa: E402  (benchmarks/network.py: the study's cluster)
from predict_emulated import cluster_env, wait  # noqa: E402

from hpcbench.analysis.survey import cost, diagnose, load_survey  # noqa: E402

NODES = 4
LINK = "1gbit"
FAULTS = {"healthy": None, "link": "link=100mbit", "cpu": "cpu=0.2", "storage": "storage=40mbit"}
NAMED_AS = {"link": "link", "cpu": "compute", "storage": "storage"}
"""What the survey must call each injected fault."""
PROFILE = """scheduler = "slurm"
cpus_per_node = 1
time_limit = "00:10:00"
"""


def survey(env: dict[str, str], folder: Path, profile: Path, data: Path) -> dict:
    hpcbench = [sys.executable, "-m", "hpcbench"]
    subprocess.run([*hpcbench, "survey", "--profile", str(profile), "--nodes", str(NODES), "--tasks-per-node", "1",
                    "--threads", "1", "--data-dir", str(data), "--sweep-dir", str(folder)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    wait(env, folder)
    return load_survey(str(folder / "records"))


def surveys(args: argparse.Namespace, top: Path, kind: str, node: str, profile: Path, data: Path):
    """(repeat, survey record, how long it took) for one cluster: measured on a cluster of its own, or read back."""
    if args.reuse:
        for repeat in range(1, args.repeats + 1):
            yield repeat, load_survey(str(top / kind / f"repeat-{repeat}" / "records")), "kept"
        return
    fault = ["--fault", f"{node}:{FAULTS[kind]}"] if FAULTS[kind] else []
    state = top / f"state-{kind}"
    started = time.perf_counter()
    network.cluster("up", state, "--nodes", str(NODES), "--cpus-per-node", "1", "--link", LINK,
                    "--storage", f"sshfs:{data}", *fault)
    try:
        env = cluster_env(state)
        for repeat in range(1, args.repeats + 1):
            record = survey(env, top / kind / f"repeat-{repeat}", profile, data)
            yield repeat, record, f"{time.perf_counter() - started:.0f} s"
            started = time.perf_counter()
    finally:
        network.cluster("down", state)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default=",".join(FAULTS), help=f"comma-separated: {', '.join(FAULTS)}")
    parser.add_argument("--seed", type=int, default=None, help="picks the faulty nodes (default: from the clock)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep", default=None, help="keep the sweeps and records here")
    parser.add_argument("--reuse", action="store_true", help="no cluster: diagnose the surveys kept in --keep again")
    args = parser.parse_args()
    if args.reuse and not args.keep:
        parser.error("--reuse needs --keep")
    seed = args.seed if args.seed is not None else int(time.time())
    generator = random.Random(seed)
    top = Path(args.keep or tempfile.mkdtemp(prefix="survey-emulated-")).resolve()
    data = top / "data"
    if not data.exists() and not args.reuse:
        subprocess.run([sys.executable, "-m", "hpcbench", "data", "make", str(data), "--format", "tar-shards",
                        "--samples", "4000", "--image-size", "64"], check=True, stdout=subprocess.DEVNULL)
    profile = top / "profile.toml"
    profile.write_text(PROFILE)
    print(f"seed {seed}; {NODES} nodes at {LINK}, storage sshfs:{data}; records under {top}")
    rows, hits = [], 0
    for kind in args.kinds.split(","):
        if args.reuse:
            node = json.loads((top / kind / "fault.json").read_text())["node"]
        else:
            node = f"n{generator.randint(1, NODES)}" if FAULTS[kind] else "-"
            (top / kind).mkdir(parents=True, exist_ok=True)
            (top / kind / "fault.json").write_text(json.dumps({"kind": kind, "node": node, "fault": FAULTS[kind]}))
        for repeat, record, took in surveys(args, top, kind, node, profile, data):
            findings = diagnose(record)
            named = sorted({(f["kind"], f["node"]) for f in findings if f["kind"] != "unconfirmed"})
            unconfirmed = sorted({f["node"] for f in findings if f["kind"] == "unconfirmed"})
            right = named == ([] if not FAULTS[kind] else [(NAMED_AS[kind], node)])
            hits += right
            priced = cost(record, findings)
            rows.append((kind, node, repeat, (", ".join(f"{k}@{n}" for k, n in named) or "nothing")
                         + (f" (unconfirmed: {', '.join(unconfirmed)})" if unconfirmed else ""), "yes" if right else "NO",
                         f"{priced['efficiency_points']:.1f} pts, {priced['node_hours_per_day']:.1f} node-h/day"
                         if priced else "-", took))
    header = ("injected", "node", "repeat", "the survey named", "right", "cost at 4 nodes", "took")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
    print(f"{hits} of {len(rows)} surveys named exactly the injected fault (target: all)")
    return 0 if hits == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())

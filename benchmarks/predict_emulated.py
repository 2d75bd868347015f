"""The predictor measured: on the emulated cluster (jobs/local-slurm.sh up --link RATE), predict the
2-node step time of mlp and cnn from their 1-node runs plus netbench across the link, then compare
with the 2-node runs measured in the same sweep. Needs root; about 3 minutes a link rate.

Per link rate: the shipped `network-study` sweep (mlp and the course's conv net, 1 and 2 nodes, one
rank per node: benchmarks/network.py's procedure) and a gloo all-reduce netbench across the two
nodes; the prediction uses only the 1-node records and the netbench records (hpcbench predict's
own functions, ring: gloo's all-reduce is a ring), never the 2-node record it is compared with.

    python benchmarks/predict_emulated.py                     # 1gbit and 100mbit
    python benchmarks/predict_emulated.py --links 200mbit --keep results/predict-emulated
    python benchmarks/predict_emulated.py --keep results/predict-emulated --reuse   # predict again, no cluster
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import network  # noqa: E402  (benchmarks/network.py: the study's cluster and sweep)

from hpcbench.analysis.load import read_valid  # noqa: E402
from hpcbench import records  # noqa: E402
from hpcbench.analysis.predict import predict, prediction_record, resolve_inputs  # noqa: E402
from hpcbench.launch.schedulers.slurm import Slurm  # noqa: E402

TARGET = 0.10
"""Within 10 % of the measured 2-node step time (issue 25's target for the measured half)."""
NETBENCH_SIZES = ",".join(str(2**k) for k in range(14, 25))  # 16 KiB .. 16 MiB: every bucket of both workloads
NETBENCH_JOB = "#!/bin/bash\n" + Slurm.rendezvous + """
srun --kill-on-bad-exit=1 {python} -m hpcbench.netbench --backend gloo --collectives all_reduce \\
    --sizes {sizes} --iters 5 --warmup 2 --out {out}
"""


def netbench(env: dict[str, str], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "netbench.sh"
    script.write_text(NETBENCH_JOB.format(python=sys.executable, sizes=NETBENCH_SIZES, out=folder / "records"))
    subprocess.run(["sbatch", "--wait", "-N2", "--ntasks-per-node=1", "-o", str(folder / "log"), str(script)],
                   env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL, timeout=600)


def measure(link: str, top: Path, state: Path) -> None:
    """The study and the netbench on one cluster (network.study brings it up and down around the sweep;
    netbench runs inside the same cluster, before it goes down)."""
    original = network.cluster

    def cluster(command: str, folder: Path, *args: str) -> None:
        if command == "down":
            env_lines = (folder / "env").read_text().splitlines()
            netbench({**dict(line.removeprefix("export ").split("=", 1) for line in env_lines)}, top / "netbench")
        original(command, folder, *args)

    network.cluster = cluster
    try:
        network.study(link, top / "sweep", state)
    finally:
        network.cluster = original


def compare(link: str, top: Path) -> list[dict]:
    rows = []
    found = [(p, r) for p, r in read_valid([top / "sweep" / "records"]) if r.get("kind", "train") == "train"]
    for workload in ("mlp", "cnn"):
        one = [p for p, r in found if r["config"]["workload"] == workload
               and r["provenance"]["num_nodes"] == 1]
        two = [r for _, r in found if r["config"]["workload"] == workload
               and r["provenance"]["num_nodes"] == 2]
        [inputs] = resolve_inputs([str(p) for p in one], fabric=None, netbench=str(top / "netbench" / "records"),
                                  scaling="weak")
        points = predict(inputs, nodes=[1, 2], gpus_per_node=1, algorithms=["ring"], scaling="weak", global_batch_size=None)
        predicted = points[-1]
        measured = two[0]["metrics"]
        error = predicted["step_time_s"] / measured["step_time_s_median"] - 1
        # The network model alone: the 2-node run's own compute-only step plus the predicted exposed communication
        # (the emulated nodes share one machine's cores, memory and cache, so compute itself moves between 1 and 2 nodes).
        network_error = (measured["compute_step_time_s"] + predicted["exposed_comm_s"]) / measured["step_time_s_median"] - 1
        rows.append({"link": link, "workload": workload, "predicted_ms": predicted["step_time_s"] * 1e3,
                     "interval_ms": f"{predicted['step_time_s_low'] * 1e3:.0f}-{predicted['step_time_s_high'] * 1e3:.0f}",
                     "measured_ms": measured["step_time_s_median"] * 1e3, "error": error,
                     "network_error": network_error,
                     "predicted_exposed_ms": predicted["exposed_comm_s"] * 1e3,
                     "measured_exposed_ms": measured["exposed_comm_s"] * 1e3,
                     "compute_1node_ms": predicted["compute_step_time_s"] * 1e3,
                     "compute_2node_ms": measured["compute_step_time_s"] * 1e3,
                     "fit_rms": max(f["rms_relative_residual"] for f in inputs.network["fits"] if f["collective"] == "all_reduce"), "limit": predicted["limit"]})
        record = prediction_record(inputs, points, {"nodes": [1, 2], "gpus_per_node": 1, "algorithms": ["ring"],
                                                    "scaling": "weak", "netbench": str(top / "netbench" / "records")})
        records.write_atomic(top / "sweep" / "records" / f"prediction_netbench_{workload}_{record['run_id']}.json", record)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--links", default="1gbit,100mbit", help="comma-separated tc rates (default 1gbit,100mbit)")
    parser.add_argument("--keep", default=None, help="folder to keep the records in (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="predict again from the records already in --keep (no cluster)")
    args = parser.parse_args()
    if args.reuse and not args.keep:
        parser.error("--reuse needs --keep")
    top = Path(args.keep or tempfile.mkdtemp(prefix="hpcbench-predict-emulated-"))
    state = Path(tempfile.mkdtemp(prefix="hpcbench-predict-state-", dir="/tmp"))
    state.chmod(0o755)  # munged's socket folder must be traversable by all
    rows = []
    try:
        for link in [link for link in args.links.split(",") if link]:
            if not args.reuse:
                measure(link, top / link, state / "cluster")
            rows += compare(link, top / link)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    print(f"{'link':<9}{'workload':<9}{'predicted ms':>13}{'interval':>12}{'measured ms':>13}{'error':>8}{'net. only':>10}"
          f"{'exp. pred':>11}{'exp. meas':>11}{'compute 1n':>12}{'compute 2n':>12}{'fit rms':>9}  limiting term")
    for r in rows:
        print(f"{r['link']:<9}{r['workload']:<9}{r['predicted_ms']:>13.1f}{r['interval_ms']:>12}{r['measured_ms']:>13.1f}"
              f"{r['error']:>+8.1%}{r['network_error']:>+10.1%}{r['predicted_exposed_ms']:>11.1f}{r['measured_exposed_ms']:>11.1f}"
              f"{r['compute_1node_ms']:>12.1f}{r['compute_2node_ms']:>12.1f}{r['fit_rms']:>9.1%}  {r['limit']}")
    hits = sum(abs(r["error"]) <= TARGET for r in rows)
    print(f"\n{hits} of {len(rows)} within {TARGET:.0%} of the measured 2-node step time; records in {top}")
    print("net. only: the 2-node run's own compute-only step + the predicted exposed communication, against its step: "
          "the network model's error alone (compute moves between 1 and 2 emulated nodes on one machine)")


if __name__ == "__main__":
    main()

"""The predictor measured: on the emulated cluster (jobs/local-slurm.sh up --link RATE), predict the
2-node step of mlp, cnn and gpt from 1-node runs plus netbench across the link, then compare with the
2-node run measured on the same cluster. Needs root; about 5 minutes a link rate.

Per link rate, one job at a time (one rank per node, one core each, --threads 1):
  alone      a 1-node run with the other node idle;
  neighbour  two independent 1-node runs in one job, one per node, started together: the compute that
             two emulated nodes share on this machine (cores' caches, memory bandwidth), measured. The prediction's compute comes from
             these two runs (both ranks pooled), and the table names the difference from `alone` as the
             host-sharing term instead of leaving it as the reason for a miss;
  2 nodes    the run the prediction is compared with (never an input to it);
and a gloo all-reduce netbench across the two nodes (ring: gloo's all-reduce is a ring). The forecast is
hpcbench predict's own functions: measured stragglers (both 1-node ranks, per-step jitter), the
framework residual at 1 node, interference not measurable at 1 process (0, said so).

The straggler run (first link only): one rank slowed by HPCBENCH_INJECT_FAULT=slow:rank=R:ms=T (T ms of
sleep at the start of each of its steps, guard.py's documented straggler). Its 1-node runs (one normal,
one slowed) are the fleet the forecast draws 2 ranks from; the 2-node run slows rank 1.

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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import network  # noqa: E402  (benchmarks/network.py: the study's cluster)

from hpcbench import records  # noqa: E402
from hpcbench.analysis.load import read_valid  # noqa: E402
from hpcbench.analysis.predict import predict, prediction_record, resolve_inputs, resolve_terms  # noqa: E402
from hpcbench.launch.schedulers.slurm import Slurm  # noqa: E402
from hpcbench.launch.submit import sweep_status  # noqa: E402

TARGET = 0.10
"""Within 10 % of the measured 2-node step (the issue's target for the measured half)."""
WORKLOADS = {"mlp": [], "cnn": ["--model", "convnet"], "gpt": []}
RUN = ["--engine", "ddp", "--device", "cpu", "--threads", "1", "--steps", "20", "--warmup", "4", "--repeats", "3"]
SLOW_MS = 40
POLL_S = 2.0
NETBENCH_SIZES = ",".join(str(2**k) for k in range(14, 25))  # 16 KiB .. 16 MiB: every bucket of the workloads
NETBENCH_JOB = "#!/bin/bash\n" + Slurm.rendezvous + """
export OMP_NUM_THREADS=1  # as the training runs (--threads 1): netbench's interference matmul uses the same threads
srun --kill-on-bad-exit=1 {python} -m hpcbench.probes netbench --backend gloo --collectives all_reduce \\
    --sizes {sizes} --iters 5 --warmup 2 --out {out}
"""


NEIGHBOUR_JOB = """#!/bin/bash
# two independent 1-rank runs, one per node, started together: each rank's compute shares the host with the other's
srun --kill-on-bad-exit=1 --ntasks-per-node=1 --cpus-per-task=1 bash -c \\
    'RANK=0 LOCAL_RANK=0 WORLD_SIZE=1 LOCAL_WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29511 \\
     exec {python} -m hpcbench.worker --workload {workload} {options} --out {out}'
"""


def neighbours(env: dict[str, str], folder: Path, workload: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "neighbours.sh"
    script.write_text(NEIGHBOUR_JOB.format(python=sys.executable, workload=workload, options=" ".join([*WORKLOADS[workload], *RUN]),
                                           out=folder / "records"))
    subprocess.run(["sbatch", "--wait", "-N2", "--ntasks-per-node=1", "-o", str(folder / "log"), str(script)],
                   env=env, check=True, stdout=subprocess.DEVNULL, timeout=600)


def cluster_env(state: Path) -> dict[str, str]:
    lines = (state / "env").read_text().splitlines()
    return {**os.environ, **dict(line.removeprefix("export ").split("=", 1) for line in lines)}


def submit(env: dict[str, str], folder: Path, workload: str, nodes: int, fault: str | None = None) -> Path:
    """One job through hpcbench submit; returns its folder (waited on by wait())."""
    job_env = {**env, **({"HPCBENCH_INJECT_FAULT": fault} if fault else {})}
    subprocess.run([sys.executable, "-m", "hpcbench", "submit", "--profile", "local-slurm", "--nodes", str(nodes),
                    "--tasks-per-node", "1", "--workload", workload, *WORKLOADS[workload], *RUN, "--sweep-dir", str(folder)],
                   env=job_env, check=True, stdout=subprocess.DEVNULL)
    return folder


def wait(env: dict[str, str], *folders: Path) -> None:
    """Until every job of the sweeps has ended. The jobs share this machine's two cores with this process, so it
    asks the scheduler from here (`scontrol`, a few ms) every POLL_S, never by starting `hpcbench status` (a Python
    start, 0.1 s of CPU: a rank's step stalled beside it in the 2-node runs' compute-only window)."""
    os.environ.update(env)  # the cluster's SLURM_CONF for the scheduler's commands
    while True:
        states = [job["state"] for folder in folders for job in sweep_status(folder)]
        if states and all(s in ("done", "failed", "blocked") for s in states):
            break
        time.sleep(POLL_S)
    if any(s != "done" for s in states):
        raise SystemExit(f"jobs ended {states}; logs in {', '.join(map(str, folders))}")


def netbench(env: dict[str, str], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "netbench.sh"
    script.write_text(NETBENCH_JOB.format(python=sys.executable, sizes=NETBENCH_SIZES, out=folder / "records"))
    subprocess.run(["sbatch", "--wait", "-N2", "--ntasks-per-node=1", "-o", str(folder / "log"), str(script)],
                   env=env, check=True, stdout=subprocess.DEVNULL, timeout=600)


def measure(link: str, top: Path, state: Path, straggler: bool) -> None:
    """Every run of one link rate, one job (or one pair) at a time, on a cluster of its own."""
    network.cluster("up", state, "--cpus-per-node", "1", "--link", link)
    try:
        env = cluster_env(state)
        for workload in WORKLOADS:
            wait(env, submit(env, top / workload / "alone", workload, 1))
            neighbours(env, top / workload / "neighbours", workload)
            wait(env, submit(env, top / workload / "two", workload, 2))
        netbench(env, top / "netbench")
        if straggler:
            wait(env, submit(env, top / "straggler" / "slowed", "mlp", 1, f"slow:rank=0:ms={SLOW_MS}"))
            wait(env, submit(env, top / "straggler" / "two", "mlp", 2, f"slow:rank=1:ms={SLOW_MS}"))
    finally:
        network.cluster("down", state)


def train_records(*folders: Path) -> list[tuple[Path, dict]]:
    return [(p, r) for p, r in read_valid(list(folders)) if r.get("kind", "train") == "train" and r["status"] == "ok"]


def forecast(name: str, link: str, inputs_paths: list[Path], two: dict, netbench_dir: Path, keep: Path,
             alone: dict | None = None) -> dict:
    """Predict the 2-node step from `inputs_paths` (1-node runs) and netbench; compare with `two`."""
    [inputs] = resolve_inputs([str(p) for p in inputs_paths], fabric=None, netbench=str(netbench_dir), scaling="weak")
    terms = resolve_terms(inputs)
    points = predict(inputs, nodes=[1, 2], gpus_per_node=1, algorithms=["ring"], scaling="weak", global_batch_size=None,
                     terms=terms)
    predicted, measured = points[-1], two["metrics"]
    step = two["metrics"]["global_batch_size"] / two["metrics"]["samples_per_s"]
    record = prediction_record(inputs, points, {"nodes": [1, 2], "gpus_per_node": 1, "algorithms": ["ring"],
                                                "scaling": "weak", "netbench": str(netbench_dir)}, terms)
    slug = name if name in WORKLOADS else "mlp-straggler"
    records.write_atomic(keep / f"prediction_{slug}_{record['run_id']}.json", record)
    timeline = next(iter(inputs.timelines.values()))
    sharing = (timeline.jitter.typical_step_s - alone["metrics"]["compute_step_time_s"]) if alone else None
    return {"link": link, "case": name, "predicted_ms": predicted["step_time_s"] * 1e3,
            "interval_ms": f"{predicted['step_time_s_low'] * 1e3:.0f}-{predicted['step_time_s_high'] * 1e3:.0f}",
            "ceiling_ms": predicted["ceiling_step_time_s"] * 1e3, "measured_ms": step * 1e3,
            "error": predicted["step_time_s"] / step - 1, "ceiling_error": predicted["ceiling_step_time_s"] / step - 1,
            "inside": predicted["step_time_s_low"] <= step <= predicted["step_time_s_high"],
            "host_sharing_ms": sharing * 1e3 if sharing is not None else None,
            **{f"{k}_ms": predicted[k] * 1e3 for k in ("compute_step_time_s", "stragglers_s", "interference_s",
                                                       "exposed_comm_s", "framework_s")},
            "measured_exposed_ms": measured["exposed_comm_s"] * 1e3, "limit": predicted["limit"]}


def compare(link: str, top: Path) -> list[dict]:
    rows = []
    keep = top / "predictions"
    keep.mkdir(parents=True, exist_ok=True)
    for workload in WORKLOADS:
        [(_, alone)] = train_records(top / workload / "alone" / "records")
        pair = [p for p, _ in train_records(top / workload / "neighbours" / "records")]
        [(_, two)] = train_records(top / workload / "two" / "records")
        rows.append(forecast(workload, link, pair, two, top / "netbench" / "records", keep, alone))
    if (top / "straggler").exists():
        normal = [p for p, _ in train_records(top / "mlp" / "alone" / "records")]
        slowed = [p for p, _ in train_records(top / "straggler" / "slowed" / "records")]
        [(_, two)] = train_records(top / "straggler" / "two" / "records")
        rows.append(forecast(f"mlp, rank 1 +{SLOW_MS} ms", link, normal + slowed, two, top / "netbench" / "records", keep))
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
        for index, link in enumerate(link for link in args.links.split(",") if link):
            if not args.reuse:
                measure(link, top / link, state / "cluster", straggler=index == 0)
            rows += compare(link, top / link)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    print(f"{'link':<9}{'case':<20}{'forecast ms':>12}{'interval':>12}{'measured ms':>12}{'error':>8}{'ceiling':>9}"
          f"{'host sharing':>13}{'compute':>9}{'stragglers':>11}{'interf.':>9}{'exposed':>9}{'framework':>10}{'exp. meas':>10}  limiting term")
    for r in rows:
        sharing = f"{r['host_sharing_ms']:+.1f}" if r["host_sharing_ms"] is not None else "-"
        print(f"{r['link']:<9}{r['case']:<20}{r['predicted_ms']:>12.1f}{r['interval_ms']:>12}{r['measured_ms']:>12.1f}"
              f"{r['error']:>+8.1%}{r['ceiling_error']:>+9.1%}{sharing:>13}{r['compute_step_time_s_ms']:>9.1f}"
              f"{r['stragglers_s_ms']:>+11.1f}{r['interference_s_ms']:>+9.1f}{r['exposed_comm_s_ms']:>+9.1f}{r['framework_s_ms']:>+10.1f}"
              f"{r['measured_exposed_ms']:>10.1f}  {r['limit']}")
    main_rows = [r for r in rows if r["case"] in WORKLOADS]
    hits = sum(abs(r["error"]) <= TARGET for r in main_rows)
    print(f"\n{hits} of {len(main_rows)} within {TARGET:.0%} of the measured 2-node step (the ceiling: "
          f"{sum(abs(r['ceiling_error']) <= TARGET for r in main_rows)} of {len(main_rows)}); inside the interval: "
          f"{sum(r['inside'] for r in main_rows)} of {len(main_rows)}")
    for r in rows:
        if r["case"] not in WORKLOADS:
            print(f"straggler run ({r['link']}, {r['case']}): forecast {r['predicted_ms']:.1f} ms, measured {r['measured_ms']:.1f} ms, "
                  f"error {r['error']:+.1%} ({'within' if abs(r['error']) <= TARGET else 'outside'} {TARGET:.0%}); "
                  f"ceiling {r['ceiling_error']:+.1%}")
    print(f"records in {top}; measured step = global batch / samples/s (what the throughput implies); host sharing: "
          "the 1-node compute-only step beside a neighbour minus alone (the prediction's compute includes it)")


if __name__ == "__main__":
    main()

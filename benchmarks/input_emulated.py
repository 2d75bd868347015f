"""The input pipeline measured and forecast on the emulated cluster: cnn (the course's conv net) trained from
JPEG images in tar shards on shared storage (jobs/local-slurm.sh up --link RATE --storage sshfs:FOLDER), at
1 and 2 nodes, one rank and one core each; iobench on the same path at 1 and 2 nodes; netbench across the
2 nodes. Then `hpcbench predict` from the 1-node run, netbench and iobench, against the measured 2-node run.
Needs root; about 6 minutes.

    python benchmarks/input_emulated.py                     # 100mbit, shards of 176 px images
    python benchmarks/input_emulated.py --keep results/input-emulated
    python benchmarks/input_emulated.py --keep results/input-emulated --reuse   # predict again, no cluster
    python benchmarks/input_emulated.py --format jpeg-folder    # one file a sample: random small reads

Prints DS-Analyzer's split per node count (synthetic / cached / storage step, prep and fetch stall, the data
stall and whether the point is input-bound), iobench's rates, and the forecast's error at 2 nodes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import network  # noqa: E402  (benchmarks/network.py: the study's cluster)
from predict_emulated import NETBENCH_JOB, NETBENCH_SIZES, cluster_env, train_records, wait  # noqa: E402

from hpcbench import datafiles  # noqa: E402
from hpcbench.analysis.predict import predict, resolve_inputs, resolve_terms  # noqa: E402
from hpcbench.launch.schedulers.slurm import Slurm  # noqa: E402

TARGET = 0.15
"""The issue's bar: the 2-node forecast within 15 % of the measured step."""
SAMPLES, IMAGE_SIZE, WORKERS = 4096, 176, 2
IOBENCH_JOB = "#!/bin/bash\n" + Slurm.rendezvous + """
srun --kill-on-bad-exit=1 {python} -m hpcbench.probes iobench --data-dir {data} --workers {workers} --seconds 5 --out {out}
"""


def job(env: dict[str, str], folder: Path, text: str, nodes: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "job.sh"
    script.write_text(text)
    subprocess.run(["sbatch", "--wait", f"-N{nodes}", "--ntasks-per-node=1", "-o", str(folder / f"log-{nodes}n"),
                    str(script)], env=env, check=True, stdout=subprocess.DEVNULL, timeout=600)


def measure(link: str, data: Path, top: Path, state: Path) -> None:
    network.cluster("up", state, "--cpus-per-node", "1", "--link", link, "--storage", f"sshfs:{data.parent}")
    try:
        env = cluster_env(state)
        for nodes in (1, 2):
            job(env, top / "iobench", IOBENCH_JOB.format(python=sys.executable, data=data, workers=WORKERS,
                                                         out=top / "iobench" / "records"), nodes)
        job(env, top / "netbench", NETBENCH_JOB.format(python=sys.executable, sizes=NETBENCH_SIZES,
                                                       out=top / "netbench" / "records"), 2)
        subprocess.run([sys.executable, "-m", "hpcbench", "submit", "input-pipeline", "--profile", "local-slurm",
                        "--data-dir", str(data), "--loader-workers", str(WORKERS), "--sweep-dir", str(top / "sweep")],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        wait(env, top / "sweep")
    finally:
        network.cluster("down", state)


def compare(top: Path) -> None:
    runs = {r["provenance"]["num_nodes"]: (p, r) for p, r in train_records(top / "sweep" / "records")}
    print(f"{'nodes':>5}{'samples/s':>11}{'storage ms':>12}{'cached ms':>11}{'synthetic ms':>14}{'prep stall':>12}"
          f"{'fetch stall':>13}{'data stall':>12}{'waits':>8}  input-bound")
    for nodes, (_, record) in sorted(runs.items()):
        found = record["metrics"]["input"]
        split = found["split"]
        print(f"{nodes:>5}{record['metrics']['samples_per_s']:>11.1f}{split['storage_step_s'] * 1e3:>12.1f}"
              f"{split['cached_step_s'] * 1e3:>11.1f}{split['synthetic_step_s'] * 1e3:>14.1f}"
              f"{split['prep_stall_s'] * 1e3:>+9.1f} ms{split['fetch_stall_s'] * 1e3:>+10.1f} ms"
              f"{found['data_stall_share']:>12.1%}{found['data_wait_share']:>8.1%}  {'yes' if found['input_bound'] else 'no'}")
    print("\niobench (the same path):")
    for path in sorted((top / "iobench" / "records").glob("*.json")):
        m = json.loads(path.read_text())["metrics"]
        print(f"  {m['pattern']}, {m['num_nodes']} node(s): {m['aggregate_bytes_per_s'] / 1e6:.2f} MB/s in all, slowest node "
              f"{min(n['bytes_per_s'] for n in m['per_node'].values()) / 1e6:.2f} MB/s, slowest rank "
              f"{m['rank_samples_per_s_min']:.0f} samples/s")
    [inputs] = resolve_inputs([str(runs[1][0])], fabric=None, netbench=str(top / "netbench" / "records"), scaling="weak",
                              iobench=str(top / "iobench" / "records"))
    terms = resolve_terms(inputs)
    points = predict(inputs, nodes=[1, 2], gpus_per_node=1, algorithms=["ring"], scaling="weak", global_batch_size=None,
                     terms=terms)
    two = runs[2][1]["metrics"]
    measured = two["global_batch_size"] / two["samples_per_s"]
    point = points[-1]
    error = point["step_time_s"] / measured - 1
    print(f"\nforecast at 2 nodes: {point['step_time_s'] * 1e3:.1f} ms ({point['limit']}; model without input "
          f"{(point['step_time_s'] - point['input_s']) * 1e3:.1f} ms, input step {point['input_step_time_s'] * 1e3:.1f} ms)"
          f"\nmeasured at 2 nodes: {measured * 1e3:.1f} ms (global batch / samples/s)"
          f"\nerror: {error:+.1%} ({'within' if abs(error) <= TARGET else 'outside'} {TARGET:.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--link", default="100mbit", help="tc rate of every link, the storage server's too")
    parser.add_argument("--format", default="tar-shards", choices=datafiles.FORMATS, help="how the images are stored")
    parser.add_argument("--keep", default=None, help="folder to keep the records in (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="compare again from the records in --keep (no cluster)")
    args = parser.parse_args()
    if args.reuse and not args.keep:
        parser.error("--reuse needs --keep")
    top = Path(args.keep or tempfile.mkdtemp(prefix="hpcbench-input-emulated-")).resolve()
    if not args.reuse:
        state = Path(tempfile.mkdtemp(prefix="hpcbench-input-state-", dir="/tmp"))
        state.chmod(0o755)  # munged's socket folder must be traversable by all
        shared = Path(tempfile.mkdtemp(prefix="hpcbench-input-data-", dir="/tmp"))
        data = shared / f"{args.format}-{IMAGE_SIZE}"
        try:
            datafiles.make(data, args.format, SAMPLES, IMAGE_SIZE)
            measure(args.link, data, top, state / "cluster")
        finally:
            shutil.rmtree(state, ignore_errors=True)
            shutil.rmtree(shared, ignore_errors=True)
    compare(top)


if __name__ == "__main__":
    main()

"""Two revisions of hpcbench side by side: did a change cost throughput?

Checks out both revisions into temporary git worktrees (so edits in progress never leak into
either side) and runs `hpcbench run` from each, alternating the order every round so drift on
the machine hits both, on the same workloads, engines and process counts; each side writes its
own folder. Prints each side's median samples/s, their ratio (new / base) and each side's spread
(max/min over rounds): a ratio within the spread is no measurable change.

    python benchmarks/revisions.py --base HEAD~1 --new HEAD --workloads mlp,cnn --engines ddp,horovod --rounds 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))
from overhead import interleaved  # noqa: E402  (benchmarks/ share the interleaving)


def samples_per_s(source: Path, out: Path, args: list[str]) -> float:
    """One `hpcbench run` with the package imported from `source`; its record's samples/s."""
    before = set(out.glob("*.json"))
    env = {**os.environ, "PYTHONPATH": str(source)}
    done = subprocess.run([sys.executable, "-m", "hpcbench", "run", *args, "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"hpcbench run failed from {source}: {done.stderr[-2000:]}")
    [record] = set(out.glob("*.json")) - before
    return json.loads(record.read_text())["metrics"]["samples_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="the revision to compare against (git rev)")
    parser.add_argument("--new", default="HEAD", help="the revision under test (git rev)")
    parser.add_argument("--workloads", default="mlp,cnn")
    parser.add_argument("--engines", default="ddp")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        trees = {side: Path(tmp) / side for side in ("base", "new")}
        for side, tree in trees.items():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), getattr(args, side)],
                           check=True)
        try:
            shas = {side: subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                                         text=True, check=True).stdout.strip() for side, tree in trees.items()}
            print(f"new {args.new} ({shas['new']}) vs base {args.base} ({shas['base']}); {args.nproc} procs, "
                  f"{args.steps} steps x {args.repeats} repeats, {args.rounds} rounds, order alternating")
            print(f"{'workload':10s} {'engine':8s} {'base':>9s} {'new':>9s} {'new/base':>9s}  spread (max/min) base, new")
            for workload in args.workloads.split(","):
                for engine in args.engines.split(","):
                    run_args = ["--workload", workload, "--engine", engine, "--nproc", str(args.nproc), "--device", "cpu",
                                "--steps", str(args.steps), "--repeats", str(args.repeats)]
                    outs = {side: Path(tmp) / f"{side}-{workload}-{engine}" for side in trees}
                    for out in outs.values():
                        out.mkdir()
                    measured = interleaved({side: (lambda s=side: samples_per_s(trees[s], outs[s], run_args))
                                            for side in trees}, args.rounds)
                    base, new = (statistics.median(measured[side]) for side in ("base", "new"))
                    spread = {side: max(v) / min(v) for side, v in measured.items()}
                    print(f"{workload:10s} {engine:8s} {base:9.1f} {new:9.1f} {new / base:9.3f}  "
                          f"{spread['base']:.3f}, {spread['new']:.3f}   (rounds: base {[round(x) for x in measured['base']]}, "
                          f"new {[round(x) for x in measured['new']]})", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


if __name__ == "__main__":
    main()

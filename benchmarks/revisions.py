"""Two revisions of hpcbench side by side: did a change cost throughput?

Checks out REV into a temporary git worktree and runs `hpcbench run` from it and from this tree,
alternating the order every round so drift on the machine hits both, on the same workloads,
engines and process counts. Prints each side's median samples/s, their ratio (this tree / REV)
and each side's spread (max/min over rounds): a ratio within the spread is no measurable change.

    python benchmarks/revisions.py --base HEAD~1 --workloads mlp,cnn --engines ddp,horovod --rounds 4
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
    parser.add_argument("--workloads", default="mlp,cnn")
    parser.add_argument("--engines", default="ddp")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base_tree), args.base], check=True)
        try:
            sha = subprocess.run(["git", "-C", str(base_tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, check=True).stdout.strip()
            print(f"this tree vs {args.base} ({sha}); {args.nproc} procs, {args.steps} steps x {args.repeats} repeats, "
                  f"{args.rounds} rounds, order alternating")
            print(f"{'workload':10s} {'engine':8s} {'base':>9s} {'this':>9s} {'this/base':>9s}  spread (max/min) base, this")
            for workload in args.workloads.split(","):
                for engine in args.engines.split(","):
                    run_args = ["--workload", workload, "--engine", engine, "--nproc", str(args.nproc), "--device", "cpu",
                                "--steps", str(args.steps), "--repeats", str(args.repeats)]
                    out = Path(tmp) / f"{workload}-{engine}"
                    out.mkdir()
                    measured = interleaved({"base": lambda: samples_per_s(base_tree, out, run_args),
                                            "this": lambda: samples_per_s(ROOT, out, run_args)}, args.rounds)
                    base, this = (statistics.median(measured[side]) for side in ("base", "this"))
                    spread = {side: max(v) / min(v) for side, v in measured.items()}
                    print(f"{workload:10s} {engine:8s} {base:9.1f} {this:9.1f} {this / base:9.3f}  "
                          f"{spread['base']:.3f}, {spread['this']:.3f}   (rounds: base {[round(x) for x in measured['base']]}, "
                          f"this {[round(x) for x in measured['this']]})", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)], check=False)


if __name__ == "__main__":
    main()

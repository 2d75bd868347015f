"""Time from a fault to a clean end of the job, over many trials: the bound issue 7 promises.

Faults: `kill` (SIGKILL one worker mid-training), `sigint` (Ctrl-C to the launcher: stop after the
agreed step, write an interrupted record). Prints every trial and the worst case.

    python benchmarks/fault_latency.py --trials 10 --faults kill,sigint
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

from hpcbench.launch.local import worker_pids

RUN = ["run", "--workload", "mlp", "--nproc", "2", "--steps", "5", "--repeats", "1000000", "--batch-size", "8",
       "--device", "cpu", "--timeout", "60"]


def one_trial(fault: str, settle_s: float) -> float:
    with tempfile.TemporaryDirectory() as out:
        launcher = subprocess.Popen([sys.executable, "-m", "hpcbench", *RUN, "--out", out],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(workers := worker_pids(launcher.pid)) < 2:
            if time.monotonic() > deadline:
                launcher.kill()
                raise RuntimeError("workers never started")
            time.sleep(0.1)
        time.sleep(settle_s)  # into training
        if fault == "kill":
            os.kill(workers[-1], signal.SIGKILL)
        else:
            launcher.send_signal(signal.SIGINT)
        faulted_at = time.monotonic()
        code = launcher.wait(timeout=300)
        took = time.monotonic() - faulted_at
        leftovers = [pid for pid in workers if os.path.exists(f"/proc/{pid}")]
        if code == 0 or leftovers or len(os.listdir(out)) != 1:
            raise RuntimeError(f"{fault}: exit {code}, leftover workers {leftovers}, files {os.listdir(out)}")
        return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--faults", default="kill,sigint")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds of training before the fault")
    args = parser.parse_args()
    for fault in args.faults.split(","):
        times = [one_trial(fault, args.settle) for _ in range(args.trials)]
        print(f"{fault:7s} trials={len(times)} to clean exit: " + " ".join(f"{t:.2f}" for t in times)
              + f"  worst {max(times):.2f} s", flush=True)


if __name__ == "__main__":
    main()

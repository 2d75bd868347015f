"""Fault test: SIGKILL one worker mid-run; the job must end promptly, leave a failed record and no workers."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import read_records

BOUND_S = 30.0
"""Generous for CI; the elastic agent polls its workers every 0.1 s."""


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_killed_rank_ends_the_job(out_dir):
    launcher = subprocess.Popen(
        [sys.executable, "-m", "hpcbench", "run", "--workload", "mlp", "--nproc", "2", "--steps", "100000",
         "--batch-size", "8", "--device", "cpu", "--timeout", "60", "--out", str(out_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while len(workers := children(launcher.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(workers) == 2, "workers never started"
    time.sleep(8)  # past start-up, into training
    os.kill(workers[1], signal.SIGKILL)
    killed_at = time.monotonic()
    _, stderr = launcher.communicate(timeout=120)
    took = time.monotonic() - killed_at
    print(f"killed rank -> job ended in {took:.2f} s")

    assert launcher.returncode == 1
    assert took < BOUND_S, f"job took {took:.1f} s to end after a rank was killed"
    assert not any(alive(pid) for pid in workers), "a worker outlived the job"
    [record] = read_records(out_dir)
    assert record["status"] == "failed"
    assert "killed by SIGKILL" in record["reason"], record["reason"]
    assert "failed, killed by SIGKILL" in stderr

"""Fault test: SIGKILL one worker mid-run; the job must end promptly, leave a failed record and no workers."""

import importlib.util
import os
import signal
import time

import pytest

from conftest import LaunchedRun, alive, read_records

BOUND_S = 30.0
"""Generous for CI; the elastic agent polls its workers every 0.1 s (measured here: under 1 s)."""


HOROVOD = pytest.param("horovod", marks=[pytest.mark.horovod, pytest.mark.skipif(
    importlib.util.find_spec("horovod") is None, reason="Horovod not installed: python -m hpcbench.install_horovod")])


@pytest.mark.parametrize("engine", ["ddp", HOROVOD])
def test_killed_rank_ends_the_job(out_dir, engine):
    run = LaunchedRun("run", "--engine", engine, "--workload", "mlp", "--nproc", "2", "--steps", "100000",
                      "--batch-size", "8", "--device", "cpu", "--timeout", "60", "--out", str(out_dir))
    workers = run.wait_for_workers(2)
    run.wait_for_stderr("warm-up done")
    time.sleep(2)  # into the timed steps
    os.kill(workers[1], signal.SIGKILL)
    killed_at = time.monotonic()
    code, stderr = run.finish()
    took = time.monotonic() - killed_at
    print(f"killed rank -> job ended in {took:.2f} s")

    assert code == 1
    assert took < BOUND_S, f"job took {took:.1f} s to end after a rank was killed"
    assert not any(alive(pid) for pid in workers), "a worker outlived the job"
    [record] = read_records(out_dir)
    assert record["status"] == "failed"
    if engine == "ddp":
        assert "killed by SIGKILL" in record["reason"], record["reason"]
        assert "failed, killed by SIGKILL" in stderr
    else:  # Horovod runs each rank under a shell, which reports SIGKILL as exit code 128 + 9
        assert record["reason"].startswith("rank ") and "exit code 137" in record["reason"], record["reason"]
    assert list(out_dir.glob(".*")) == [], "a temp file was left behind"

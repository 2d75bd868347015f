"""Fault tests: stop signals. The ranks agree on a step, stop there and write an `interrupted` record
atomically; a second signal ends everything at once, still without a partial file."""

import os
import signal
import time

import pytest

from conftest import LaunchedRun, alive, read_records


def endless_run(out_dir, env: dict | None = None) -> LaunchedRun:
    return LaunchedRun("run", "--workload", "mlp", "--nproc", "2", "--steps", "5", "--repeats", "100000",
                       "--batch-size", "8", "--device", "cpu", "--timeout", "60", "--out", str(out_dir), env=env)


def assert_clean_end(out_dir, workers: list[int]) -> dict:
    assert not any(alive(pid) for pid in workers), "a worker outlived the job"
    assert list(out_dir.glob(".*")) == [], "a temp file was left behind"
    [record] = read_records(out_dir)
    assert record["status"] == "interrupted"
    return record


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_the_launcher_writes_an_interrupted_record(out_dir, sig):
    run = endless_run(out_dir)
    workers = run.wait_for_workers(2)
    run.wait_for_stderr("warm-up done")
    time.sleep(2)  # into the timed repeats
    run.process.send_signal(sig)
    signalled_at = time.monotonic()
    code, stderr = run.finish()
    print(f"{sig.name} -> job ended in {time.monotonic() - signalled_at:.2f} s")

    assert code == 128 + sig, stderr[-2000:]
    record = assert_clean_end(out_dir, workers)
    assert record["reason"].startswith(f"interrupted by {sig.name} after "), record["reason"]
    steps = [rank["steps_done"] for rank in record["ranks"]]
    assert steps[0] == steps[1] > 5, "ranks must stop after the same step"
    # Whole repeats measured before the signal are kept; the partial one is not a measurement.
    repeats = len(record["ranks"][0]["elapsed_s"])
    assert repeats >= 1 and record["metrics"]["samples_per_s"] > 0
    assert steps[0] >= 5 + 5 * repeats
    assert f"hpcbench run: interrupted by {sig.name}" in stderr


def test_slurm_style_signal_to_every_worker(out_dir):
    """Slurm's `--signal=USR1@T` (without B:) signals every task of the step: here, each worker."""
    run = endless_run(out_dir)
    workers = run.wait_for_workers(2)
    run.wait_for_stderr("warm-up done")
    time.sleep(2)
    for pid in workers:
        os.kill(pid, signal.SIGUSR1)
    code, stderr = run.finish()
    assert code == 128 + signal.SIGUSR1, stderr[-2000:]
    record = assert_clean_end(out_dir, workers)
    assert record["reason"].startswith("interrupted by SIGUSR1 after "), record["reason"]


def test_second_signal_exits_at_once(out_dir):
    """A rank stuck in a step cannot honour the first signal; the second one kills the job."""
    run = endless_run(out_dir, env={"HPCBENCH_INJECT_FAULT": "hang:rank=1:step=3"})
    workers = run.wait_for_workers(2)
    run.wait_for_stderr("hangs at step 3")
    run.process.send_signal(signal.SIGINT)
    time.sleep(2)
    assert run.process.poll() is None, "the stuck job should still be waiting after the first signal"
    run.process.send_signal(signal.SIGINT)
    second_at = time.monotonic()
    code, stderr = run.finish(timeout=60)
    took = time.monotonic() - second_at
    print(f"second SIGINT -> job ended in {took:.2f} s")

    assert code == 128 + signal.SIGINT, stderr[-2000:]
    assert took < 5
    record = assert_clean_end(out_dir, workers)
    assert record["reason"] == "interrupted by SIGINT; no step timings were saved"

"""Whose machine was it: other processes' and steal's share of the run's CPUs, per host and window, and the
contended flag (hpcbench/measurements/system_load.py)."""

import os
import subprocess
import sys

import pytest

from conftest import read_records
from hpcbench.measurements.base import RunFacts
from hpcbench.measurements.system_load import CONTENDED_SHARE, SystemLoad, host_loads

RUN = RunFacts(global_batch_size=8, world_size=2)


def rank_load(host: str, cpus: list[int], own_cpu_s: float, busy_s: list[float], steal_s: list[float] | None = None,
              window: str = "throughput", wall_s: float = 1.0) -> dict:
    return {"system_load": {"host": host, "cpus": cpus, "windows": {window: {
        "wall_s": wall_s, "own_cpu_s": own_cpu_s, "busy_s": busy_s, "steal_s": steal_s or [0.0] * len(cpus),
        "throttled_s": None}}}}


def test_other_processes_share_is_the_busy_time_the_ranks_did_not_use():
    """Two ranks on one 2-CPU host used 1.2 s of CPU in a 1 s window while the CPUs were busy 1.9 s: others took 35 %."""
    ranks = [rank_load("a", [0, 1], 0.6, [0.95, 0.95]), rank_load("a", [0, 1], 0.6, [0.95, 0.95])]
    merged = SystemLoad.merge(ranks, RUN)
    load = merged["system_load"]["hosts"]["a"]["throughput"]
    assert load["own_share"] == pytest.approx(0.6) and load["others_share"] == pytest.approx(0.35)
    assert merged["contended"] and merged["others_share"] == pytest.approx(0.35)
    assert merged["contended_note"] == ("other processes used 35% of the CPU time of a (2 CPUs this run may use) "
                                        "during the timed steps")


def test_a_quiet_host_and_a_neighbour_on_other_cores_are_not_contention():
    """Each rank counts only the CPUs it may run on: a job pinned to CPUs 2-3 of the same host is not seen."""
    ranks = [rank_load("a", [0], 0.97, [0.99]), rank_load("a", [1], 0.97, [0.99])]
    merged = SystemLoad.merge(ranks, RUN)
    assert merged["system_load"]["hosts"]["a"]["throughput"]["cpus"] == [0, 1]
    assert merged["others_share"] == pytest.approx(0.02) and not merged["contended"]
    assert merged["contended_note"] is None


def test_steal_is_named_apart_and_hosts_are_judged_apart():
    ranks = [rank_load("a", [0, 1], 1.9, [0.96, 0.96]), rank_load("b", [0, 1], 1.5, [0.76, 0.76], [0.2, 0.2])]
    merged = SystemLoad.merge(ranks, RUN)
    assert set(merged["system_load"]["hosts"]) == {"a", "b"}
    assert merged["contended"] and merged["contended_note"].startswith("steal used 20% of the CPU time of b")


def test_windows_that_decide_nothing_are_recorded_but_not_judged():
    ranks = [rank_load("a", [0], 0.1, [1.0], window="synced_warmup")]
    merged = SystemLoad.merge(ranks, RUN)
    assert merged["system_load"]["hosts"]["a"]["synced_warmup"]["others_share"] == pytest.approx(0.9)
    assert merged["contended"] is False


def test_a_record_without_the_measurement_gives_nulls():
    assert SystemLoad.merge([{}], RUN) == {"system_load": None, "contended": None, "contended_note": None,
                                           "others_share": None}


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_a_process_spinning_on_the_runs_only_cpu_is_measured_and_flagged(tmp_path):
    """A real run pinned to one CPU that another process spins on: the scheduler shares the CPU between them, so
    others took about half of it; the run says so in its record and on screen."""
    cpu = min(os.sched_getaffinity(0))
    burner = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"])
    try:
        result = subprocess.run(
            ["taskset", "-c", str(cpu), sys.executable, "-m", "hpcbench", "run", "--workload", "mlp", "--nproc", "1",
             "--threads", "1", "--batch-size", "64", "--steps", "30", "--warmup", "2", "--repeats", "2", "--device",
             "cpu", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    finally:
        burner.kill()
        burner.wait()
    assert result.returncode == 0, result.stderr
    [record] = read_records(tmp_path)
    metrics = record["metrics"]
    load = metrics["system_load"]["hosts"][record["ranks"][0]["system_load"]["host"]]["throughput"]
    assert load["cpus"] == [cpu]
    # A fair share would be 50 %; the scheduler's wake-up credit and other load on the machine move it either way.
    assert CONTENDED_SHARE < load["others_share"] < 0.9 and load["own_share"] + load["others_share"] <= 1.01, load
    assert metrics["contended"] and metrics["others_share"] >= load["others_share"]
    assert 0.1 < load["waited_share"] < 1.0, load  # from the run's side: its thread queued for the shared CPU
    rank = record["ranks"][0]["system_load"]  # a frequency where cpufreq reports one, else null and why
    readable = os.path.exists(f"/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq")
    assert (rank["cpu_mhz_note"] is None) == readable
    assert (rank["windows"]["throughput"]["cpu_mhz"][0] is None) != readable
    assert "hpcbench: warning: contended: other processes used" in result.stdout

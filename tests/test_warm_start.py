"""Warm starts (hpcbench.launch.warm): ranks forked from a preloaded zygote keep what a new interpreter per
rank guaranteed: their own environment, directory and threads; one failure ends the job; nothing outlives it."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from conftest import LaunchedRun, alive, cli_in_process, read_records, run_cli
from hpcbench.launch import local, warm

PROBE = '''
import json, os, sys, time
import torch
from threadpoolctl import threadpool_info
from torch.distributed.elastic.multiprocessing.errors import record

out, action = sys.argv[1], sys.argv[2]
rank = int(os.environ["RANK"])
name = open("/proc/self/comm").read().strip()
parent = open(f"/proc/{os.getppid()}/comm").read().strip()
blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
facts = {"env": dict(os.environ), "cwd": os.getcwd(), "torch_threads": torch.get_num_threads(), "blas_threads": blas,
         "name": name, "parent": parent, "argv": sys.argv, "main": __name__, "zygote": os.getppid(), "pid": os.getpid(),
         "zygote_threads": len(os.listdir(f"/proc/{os.getppid()}/task"))}
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump(facts, f)


@record  # as hpcbench.worker: the error file the launcher reads the reason from
def main():
    if action == "raise" and rank == 1:
        raise RuntimeError("probe failed on purpose")
    if action in ("raise", "sleep"):
        time.sleep(600)


main()
'''


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A module the ranks run, importable from PYTHONPATH (a change of environment: a zygote of its own)."""
    (tmp_path / "warm_probe.py").write_text(PROBE)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("HPCBENCH_PROBE_MARK", "seen")
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    yield out
    warm.shutdown()


def facts(out: Path, rank: int) -> dict:
    return json.loads((out / f"rank{rank}.json").read_text())


def test_ranks_get_their_own_environment_directory_and_threads(probe):
    failures = warm.launch(2, 30, ["warm_probe", str(probe), "exit"], 10)
    assert failures == {}
    ranks = [facts(probe, rank) for rank in (0, 1)]
    for rank, seen in enumerate(ranks):
        assert seen["env"]["RANK"] == str(rank) and seen["env"]["LOCAL_RANK"] == str(rank)
        assert seen["env"]["WORLD_SIZE"] == seen["env"]["LOCAL_WORLD_SIZE"] == "2"
        assert seen["env"]["HPCBENCH_PROBE_MARK"] == "seen" and seen["env"]["HPCBENCH_START"] == "warm"
        # The zygote imported with OMP_NUM_THREADS=1; the rank reads the launcher's 2, as a new interpreter would.
        assert seen["env"]["OMP_NUM_THREADS"] == "2" and seen["torch_threads"] == 2 and seen["blas_threads"] == [2]
        assert seen["cwd"] == str(probe) and seen["main"] == "__main__" and seen["argv"][1:] == [str(probe), "exit"]
        assert seen["name"] == "hpcbench-rank" and seen["parent"] == "hpcbench-zygote"
        assert seen["zygote_threads"] == 1  # it forks from one thread: no pool, no store, no process group
    assert ranks[0]["env"]["MASTER_PORT"] == ranks[1]["env"]["MASTER_PORT"]


def test_the_zygote_is_reused_until_the_environment_changes(probe, monkeypatch):
    warm.launch(1, 30, ["warm_probe", str(probe), "exit"], 10)
    first = facts(probe, 0)["zygote"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # set per run: not a reason to restart
    warm.launch(1, 30, ["warm_probe", str(probe), "exit"], 10)
    assert facts(probe, 0)["zygote"] == first and facts(probe, 0)["torch_threads"] == 1
    monkeypatch.setenv("HPCBENCH_PROBE_MARK", "changed")
    warm.launch(1, 30, ["warm_probe", str(probe), "exit"], 10)
    assert facts(probe, 0)["zygote"] != first and facts(probe, 0)["env"]["HPCBENCH_PROBE_MARK"] == "changed"
    assert not alive(first)


def test_a_failing_rank_ends_the_others_and_is_named(probe):
    started = time.monotonic()
    failures = warm.launch(2, 30, ["warm_probe", str(probe), "raise"], 10)
    assert time.monotonic() - started < 20, "rank 0 sleeps 600 s: it must have been ended"
    assert list(failures) == [1]
    reason = local.failure_reason(ChildFailedError("warm_probe", failures))
    assert reason.startswith("rank 1 failed, exit code 1: RuntimeError: probe failed on purpose"), reason
    assert not alive(facts(probe, 0)["pid"])


def test_ranks_die_with_the_zygote(probe):
    server = warm.zygote()
    server.wait_ready()
    os.kill(server.pid, signal.SIGKILL)
    server.process.wait()
    # The next launch sees a dead zygote and starts another; ranks of a killed one were killed with it (PDEATHSIG).
    failures = warm.launch(1, 30, ["warm_probe", str(probe), "exit"], 10)
    assert failures == {} and facts(probe, 0)["zygote"] != server.pid


def test_a_killed_launcher_takes_the_zygote_and_the_ranks_with_it(out_dir):
    run = LaunchedRun("run", "--workload", "mlp", "--nproc", "2", "--steps", "100000", "--batch-size", "8",
                      "--device", "cpu", "--out", str(out_dir))
    ranks = run.wait_for_workers(2)
    zygote = {int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in ranks}
    assert len(zygote) == 1
    run.wait_for_stderr("warm-up done")
    run.process.kill()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in [*ranks, *zygote]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in [*ranks, *zygote]), "a rank or the zygote outlived its launcher"
    assert read_records(out_dir) == []  # nobody was left to write one, and nothing half-written either
    assert list(out_dir.glob(".*")) == []


def test_cold_and_warm_starts_write_the_same_run(tmp_path):
    """Same seed, same losses on every rank; the record says how its ranks started."""
    seen = {}
    for start in ("cold", "warm"):
        out = tmp_path / start
        result = run_cli("run", "--workload", "mlp", "--nproc", "2", "--steps", "3", "--warmup", "1", "--repeats", "1",
                         "--batch-size", "16", "--device", "cpu", "--out", str(out), env={"HPCBENCH_START": start})
        assert result.returncode == 0, result.stderr[-2000:]
        [record] = read_records(out)
        assert record["provenance"]["environment"]["HPCBENCH_START"] == start
        seen[start] = record
    assert [r["loss_per_step"] for r in seen["cold"]["ranks"]] == [r["loss_per_step"] for r in seen["warm"]["ranks"]]
    assert seen["cold"].keys() == seen["warm"].keys() and seen["cold"]["metrics"].keys() == seen["warm"]["metrics"].keys()
    assert seen["cold"]["experiment"] == seen["warm"]["experiment"]


def test_a_bad_start_mode_is_refused_before_any_rank_starts():
    result = cli_in_process("run", "--workload", "mlp", env={"HPCBENCH_START": "tepid"})
    assert result.returncode == 2
    assert result.stderr.strip().endswith("HPCBENCH_START: 'tepid' is not one of: warm, cold"), result.stderr

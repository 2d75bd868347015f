"""An emulated cluster with a real network (jobs/local-slurm.sh up --link RATE): each node its own network
namespace and hostname, joined by tbf-shaped veth links. The link must really be in the path (netbench at
the link rate, the loopback cluster many times faster), every launcher must cross it, records must name it,
and the script must leave nothing behind. Needs root; where namespaces cannot be made the tests skip, except
under CI (CI=true), which can make them and so must run them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import read_records, run_cli, submit, wait_for_sweep
from hpcbench import datafiles
from hpcbench.experiment import system_block
from hpcbench.launch.schedulers.slurm import Slurm

pytestmark = pytest.mark.slurm

SCRIPT = Path(__file__).resolve().parent.parent / "jobs" / "local-slurm.sh"
RATE, RATE_BYTES_PER_S = "200mbit", 200e6 / 8
NETWORK = f"emulated:tbf:{RATE}+storage:sshfs"
"""What the module's cluster's tasks see: its links, and a storage server behind a link of its own."""
LINKED_PORT = 16900  # the loopback test cluster holds 16817


def local_slurm(command: str, folder: Path, port: int, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HPCBENCH_SLURM_DIR": str(folder), "HPCBENCH_SLURM_PORT": str(port)}
    return subprocess.run(["bash", str(SCRIPT), command, *args], capture_output=True, text=True, env=env, timeout=120)


def up_linked(folder: Path, port: int, rate: str, *more: str) -> subprocess.CompletedProcess:
    """`up --link RATE`; a machine that cannot make namespaces skips with the script's line, except under CI."""
    if not shutil.which("slurmctld"):
        pytest.skip("Slurm not installed (apt-get install slurm-wlm munge; .ci/run does)")
    result = local_slurm("up", folder, port, "--link", rate, *more)
    if result.returncode == 3:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI can make network namespaces, yet: {result.stderr.strip()}")
        pytest.skip(result.stderr.strip())
    return result


@pytest.fixture
def cluster_dir() -> Path:
    """A state folder munged accepts: every folder above its socket must be traversable by all, which
    pytest's tmp_path (0700) is not; the suite's own TMPDIR is (tests/conftest.py)."""
    folder = Path(tempfile.mkdtemp(prefix="hpcbench-slurm-test-"))
    folder.chmod(0o755)
    yield folder / "cluster"
    shutil.rmtree(folder, ignore_errors=True)


def leftovers(folder: Path) -> dict[str, str]:
    """What an emulated cluster could leave: namespaces, links (veths, the bridge), daemons of that folder."""
    return {
        "netns": subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.strip(),
        "links": "\n".join(line for line in subprocess.run(["ip", "-br", "link"], capture_output=True, text=True)
                           .stdout.splitlines() if line.startswith("hpcbench-")),
        "processes": subprocess.run(["pgrep", "-af", str(folder)], capture_output=True, text=True).stdout.strip(),
    }


def test_up_twice_down_twice_and_a_taken_port_leave_nothing_behind(no_linked_cluster, cluster_dir):
    """One emulated cluster per machine (the names are fixed): the module's is down while this runs."""
    folder = cluster_dir
    before = leftovers(folder)
    for _ in range(2):  # a second `up` takes the first one down, then starts again
        result = up_linked(folder, LINKED_PORT, "1gbit")
        assert result.returncode == 0 and "linked at 1gbit" in result.stdout, result.stderr
    assert "hpcbench-n1" in leftovers(folder)["netns"] and "hpcbench-br" in leftovers(folder)["links"]
    for _ in range(2):
        assert local_slurm("down", folder, LINKED_PORT).stdout == "local-slurm: down\n"
    assert leftovers(folder) == before

    subprocess.run(["ip", "link", "add", "hpcbench-v2", "type", "bridge"], check=True)  # not ours: n2's veth cannot be made
    try:
        halfway = up_linked(folder, LINKED_PORT, "1gbit")
        assert halfway.returncode == 1 and "failed: ip link add" in halfway.stderr, halfway.stderr
        left = leftovers(folder)  # n1's namespace, the bridge and the daemons gone; the link that was not ours kept
        assert left["netns"] == before["netns"] and left["processes"] == before["processes"]
        assert [line.split()[0] for line in left["links"].splitlines()] == ["hpcbench-v2"]
    finally:
        subprocess.run(["ip", "link", "del", "hpcbench-v2"], check=True)
    assert leftovers(folder) == before

    with socket.socket() as taken:  # anything listening on the controller's port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = local_slurm("up", folder, port, "--link", "1gbit")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and f"port {port} is taken" in refused.stderr
    assert leftovers(folder) == before


@pytest.mark.parametrize(("args", "message"), [(["--link", "fast"], "--link must be a rate such as 100mbit"),
                                               (["--nodes", "0"], "--nodes must be 1..99"),
                                               (["--speed", "1gbit"], "unknown option '--speed'"),
    (["--storage", "sshfs:/tmp"], "--storage needs --link"),
    (["--link", "1gbit", "--storage", "nfs:/tmp"], "--storage must be sshfs:/absolute/folder")])
def test_bad_options_are_one_line_and_start_nothing(tmp_path, args, message):
    result = local_slurm("up", tmp_path / "cluster", LINKED_PORT, *args)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "cluster").exists()


class LinkedCluster:
    """The module's 2-node cluster linked at RATE with a storage server (sshfs) holding SHARED, brought up when a test
    needs it and down when a test needs none (the namespaces' names are fixed: one emulated cluster per machine), so
    no test depends on the order the module's tests run in (pytest-randomly found two that did)."""

    def __init__(self) -> None:
        self.top = Path(tempfile.mkdtemp(prefix="hpcbench-slurm-linked-"))
        self.top.chmod(0o755)  # munged's socket folder must be traversable by all
        self.folder, self.shared = self.top / "cluster", self.top / "shared"
        datafiles.make(self.shared / "shards", "tar-shards", 64, 64, shard_samples=8)  # 8 shards of ~5 KB images
        self.env: dict | None = None

    def up(self) -> dict:
        """Its env file (SLURM_CONF, Open MPI's interface) as a dict, and SHARED's path under "shared"."""
        if self.env is None:
            if not shutil.which("sshfs"):
                pytest.skip("sshfs not installed (apt-get install sshfs openssh-server; .ci/run does)")
            result = up_linked(self.folder, LINKED_PORT, RATE, "--storage", f"sshfs:{self.shared}")
            assert result.returncode == 0, result.stderr
            env = dict(line.removeprefix("export ").split("=", 1) for line in (self.folder / "env").read_text().splitlines())
            if os.geteuid() == 0:  # Open MPI refuses root unless told
                env |= {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
            self.env = {**env, "shared": str(self.shared)}
        return self.env

    def down(self) -> None:
        if self.env is not None:
            local_slurm("down", self.folder, LINKED_PORT)
            self.env = None


@pytest.fixture(scope="module")
def linked_cluster() -> LinkedCluster:
    cluster = LinkedCluster()
    yield cluster
    cluster.down()
    shutil.rmtree(cluster.top, ignore_errors=True)


@pytest.fixture
def linked(linked_cluster: LinkedCluster) -> dict:
    """The module's cluster, up (again, if a test took it down)."""
    return linked_cluster.up()


@pytest.fixture
def no_linked_cluster(linked_cluster: LinkedCluster) -> None:
    """No emulated cluster with namespaces on this machine: the module's goes down first."""
    linked_cluster.down()


def netbench_across_two_nodes(env: dict, folder: Path) -> dict:
    """gloo all-reduce between 2 nodes x 1 rank, submitted as users do (`hpcbench netbench --profile`); the record,
    and the report job's table of it."""
    result = run_cli("netbench", "--profile", "local-slurm", "--nodes", "2", "--tasks-per-node", "1", "--threads", "1",
                     "--collectives", "all_reduce", "--sizes", "1M,16M", "-n", "3", "-w", "1", "--sweep-dir", str(folder),
                     env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert wait_for_sweep(folder, env) == ["done", "done"], [p.read_text()[-2000:] for p in (folder / "logs").iterdir()]
    assert "Collective bandwidth" in (folder / "report" / "report.md").read_text()
    [record] = read_records(folder / "records")
    return record


def busbw_at_16_mib(record: dict) -> float:
    return next(row["busbw_gbps"] for row in record["metrics"]["collectives"]["all_reduce"]
                if row["size_bytes"] == 16 * 2**20) * 1e9


def test_netbench_across_the_link_runs_at_the_link_rate(linked, slurm_env, tmp_path):
    """2 ranks: busbw = what each direction of the link carries, so about the rate (tbf holds ~95 %)."""
    shaped = netbench_across_two_nodes(linked, tmp_path / "shaped")
    assert shaped["provenance"]["hostnames"] == ["n1", "n2"] and shaped["provenance"]["num_nodes"] == 2
    assert 0.6 * RATE_BYTES_PER_S <= busbw_at_16_mib(shaped) <= 1.05 * RATE_BYTES_PER_S, busbw_at_16_mib(shaped)
    loopback = netbench_across_two_nodes(slurm_env, tmp_path / "loopback")
    assert busbw_at_16_mib(loopback) >= 5 * busbw_at_16_mib(shaped)  # the link, not the machine, set the pace
    assert shaped["system"]["network"] == NETWORK and loopback["system"]["network"] is None
    assert shaped["system"]["system_id"] != loopback["system"]["system_id"]


@pytest.mark.parametrize("launcher", ["srun", "torchrun", "mpirun"])
def test_two_node_training_crosses_the_link_and_names_it(linked, tmp_path, launcher):
    sweep = tmp_path / "sweep"
    submit(sweep, linked, "--launcher", launcher, "--nodes", "2", "--tasks-per-node", "1", "--hidden-size", "256")
    assert wait_for_sweep(sweep, linked) == ["done", "done"], [p.read_text()[-2000:] for p in (sweep / "logs").iterdir()]
    [record] = read_records(sweep / "records")
    assert record["status"] == "ok" and record["provenance"]["launcher"] == launcher
    assert sorted(r["host"] for r in record["ranks"]) == ["n1", "n2"]
    assert record["system"]["network"] == NETWORK
    over_loopback = system_block({**record["provenance"], "system_facts": {
        **record["provenance"]["system_facts"], "network": None}})  # the same machine, its nodes on loopback
    assert record["system"]["system_id"] != over_loopback["system_id"]
    assert record["metrics"]["exposed_comm_s"] > 0  # 2.6 MB of gradients per step over 25 MB/s


IOBENCH_JOB = "#!/bin/bash\n" + Slurm.rendezvous + """
srun --kill-on-bad-exit=1 stat -f -c '%n %T' {data}
srun --kill-on-bad-exit=1 {python} -m hpcbench.probes iobench --data-dir {data} --seconds 1 --out {out}
"""


def test_shared_storage_is_mounted_on_every_node_and_read_over_its_link(linked, tmp_path):
    """Every node sees the host's folder at the same path through sshfs (FUSE), and reads cross the storage server's
    link: both nodes together read at most its rate (the local disk would give GB/s)."""
    script = tmp_path / "iobench.sh"
    data = Path(linked["shared"]) / "shards"
    script.write_text(IOBENCH_JOB.format(python=sys.executable, data=data, out=tmp_path / "records"))
    done = subprocess.run(["sbatch", "--wait", "-N2", "--ntasks-per-node=1", "-o", str(tmp_path / "log"), str(script)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **linked})
    log = (tmp_path / "log").read_text()
    assert done.returncode == 0, log[-3000:]
    assert log.count(f"{data} fuse") == 2, log[-2000:]  # stat names a FUSE mount "fuseblk"
    [record] = read_records(tmp_path / "records")
    metrics = record["metrics"]
    assert record["kind"] == "iobench" and record["system"]["network"] == NETWORK
    assert metrics["num_nodes"] == 2 and set(metrics["per_node"]) == {"n1", "n2"}
    assert 0 < metrics["aggregate_bytes_per_s"] <= 1.05 * RATE_BYTES_PER_S, metrics["aggregate_bytes_per_s"]


def test_a_mount_that_goes_away_fails_the_rank_with_the_reason(linked_cluster, linked, tmp_path):
    """n1's storage mount is killed mid-run; the rank reading it fails within its step timeout, the record says which
    file and why, and the job ends. The cluster goes down after it: a test after this one gets a whole one."""
    try:
        mount_goes_away(linked, tmp_path)
    finally:
        linked_cluster.down()


def mount_goes_away(linked: dict, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    submit(sweep, linked, "--workload", "cnn", "--model", "convnet", "--data", "files", "--data-dir",
           str(Path(linked["shared"]) / "shards"), "--batch-size", "8", "--steps", "400", "--repeats", "1",
           "--timeout", "30", "--nodes", "1", "--tasks-per-node", "1")
    deadline = time.monotonic() + 120
    while not any("warm-up done" in p.read_text() for p in (sweep / "logs").glob("*.out")):
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.5)
    in_n1 = set(subprocess.run(["ip", "netns", "pids", "hpcbench-n1"], capture_output=True, text=True).stdout.split())
    mounts = [pid for pid in subprocess.run(["pgrep", "-x", "sshfs"], capture_output=True, text=True).stdout.split()
              if pid in in_n1]
    assert len(mounts) == 1
    killed_at = time.monotonic()
    os.kill(int(mounts[0]), signal.SIGKILL)
    states = wait_for_sweep(sweep, linked)
    assert states[0] == "failed" and time.monotonic() - killed_at < 60, states
    [record] = read_records(sweep / "records")
    assert record["status"] == "failed" and "DataFileError" in record["reason"], record["reason"]
    assert "shards/shard-" in record["reason"], record["reason"]
    # the read under way sees the connection aborted, the next one the mount gone
    assert "Software caused connection abort" in record["reason"] or "Transport endpoint is not connected" in record["reason"]

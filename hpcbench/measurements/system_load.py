"""Whose machine was it: during every window, the CPU time this run's processes used against what the CPUs
they may run on did (psutil, which reads /proc/stat per CPU and each process's times).

A benchmark on a laptop with a browser open, a shared login node or a VM with neighbours measures them too:
with one other process spinning on one of 2 cores, the demo's efficiencies at 2 processes halved and every
run still said `ok`. So each rank reads, at the start and end of each window:
- the busy and steal time of the CPUs in its affinity mask (its cpuset on a shared cluster node: another
  job pinned to other cores is not contention, a neighbour on the run's own cores is);
- the CPU time of its own process and its children (loader workers, compile workers), and how long their
  threads waited, runnable, for a CPU (the scheduler's run_delay: contention seen from the run's side);
- its cgroup's throttled time, where it sits in a CPU-limited cgroup.

Merging groups ranks by physical host (two Slurm nodes on one machine share its CPUs): other processes'
share = (busy - the ranks' own CPU time) / (CPUs x wall time), steal's share = steal / (CPUs x wall time).
A run is *contended* when either, in a timed or compute-only window on any host, reaches CONTENDED_SHARE.
The reads are a few system calls at each window's start and end, outside the step timer (this measurement's
order puts them outside every other measurement's): nothing runs per step.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import psutil

from hpcbench.measurements.base import COMPUTE_ONLY, THROUGHPUT, Measurement, RankContext, RunFacts, register

CONTENDED_SHARE = 0.10
"""Other processes' (or steal's) share of the run's CPUs at or above which a run is flagged contended. On a 2-core VM
(benchmarks/noise.py, results/reference/cpu-2core-vm-noise/) quiet runs measured 0.0-2.3 % (the shell, the kernel's
threads), one process spinning 49-52 %, one per core 31-58 %. 10 % is four times the quiet background, and a tenth
of the CPUs taken moves a throughput by more than a quiet machine's repeat-to-repeat spread (cv 1-6 % there)."""
JUDGED_WINDOWS = {THROUGHPUT: "the timed steps", COMPUTE_ONLY: "the compute-only steps"}
"""Windows whose load decides `contended`: every throughput and breakdown number comes from them."""


def _allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(psutil.cpu_count()))


def _cpu_seconds(times: Any) -> tuple[float, float]:
    """(busy, steal) seconds of one CPU since boot. Linux counts guest time inside user time."""
    idle = times.idle + getattr(times, "iowait", 0.0)
    steal = getattr(times, "steal", 0.0)
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    return total - idle - steal, steal


def _own_cpu_seconds(process: psutil.Process, children: list[psutil.Process]) -> float:
    """This process's CPU time and that of its live children (a DataLoader's workers)."""
    total = sum(process.cpu_times()[:2])
    for child in children:
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:  # it ended between the listing and the read
            pass
    return total


def _waited_seconds(process: psutil.Process, children: list[psutil.Process]) -> float | None:
    """How long this process's threads and its children's were runnable but waiting for a CPU (the scheduler's
    run_delay, /proc/PID/task/TID/schedstat, Linux): contention seen from the run's side. None where unreadable."""
    total = 0.0
    for pid in [process.pid, *(child.pid for child in children)]:
        try:
            for task in os.scandir(f"/proc/{pid}/task"):
                with open(f"{task.path}/schedstat") as stat:
                    total += int(stat.read().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            if pid == process.pid:
                return None
    return total


def _cgroup_cpu_stat() -> Path | None:
    """The cpu.stat of this process's CPU cgroup (v1's cpu controller, or v2's unified tree), if readable."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        root = (Path("/sys/fs/cgroup/cpu") if "cpu" in controllers.split(",") else
                Path("/sys/fs/cgroup") if controllers == "" else None)
        if root is not None and (root / path.lstrip("/") / "cpu.stat").is_file():
            return root / path.lstrip("/") / "cpu.stat"
    return None


def _throttled_s(stat: Path | None) -> float | None:
    if stat is None:
        return None
    try:
        fields = dict(line.split() for line in stat.read_text().splitlines() if line.strip())
    except (OSError, ValueError):
        return None
    if "throttled_usec" in fields:  # cgroup v2
        return int(fields["throttled_usec"]) / 1e6
    return int(fields["throttled_time"]) / 1e9 if "throttled_time" in fields else None


def cpu_mhz(cpus: list[int]) -> tuple[float | None, str | None]:
    """The run's CPUs' mean current frequency now (cpufreq's scaling_cur_freq), or None and why:
    a VM's CPUs (this one's) report none; /proc/cpuinfo's "MHz" there is a nominal figure, not a measurement."""
    root = Path("/sys/devices/system/cpu")
    try:
        readings = [int((root / f"cpu{cpu}" / "cpufreq" / "scaling_cur_freq").read_text()) / 1e3 for cpu in cpus]
    except (OSError, ValueError):
        return None, f"not readable: no {root}/cpu*/cpufreq (a virtual machine, or no cpufreq driver)"
    return sum(readings) / len(readings), None


class _Reading:
    """One instant: the clock, the allowed CPUs' busy and steal seconds, this rank's own CPU seconds, throttling."""

    def __init__(self, clock: float, cpus: list[int], process: psutil.Process, stat: Path | None) -> None:
        per_cpu = psutil.cpu_times(percpu=True)
        self.clock = clock
        self.busy_steal = [_cpu_seconds(per_cpu[cpu]) for cpu in cpus if cpu < len(per_cpu)]
        children = process.children(recursive=True)  # one walk of /proc for both reads
        self.own_s = _own_cpu_seconds(process, children)
        self.waited_s = _waited_seconds(process, children)
        self.throttled_s = _throttled_s(stat)


@register
class SystemLoad(Measurement):
    """Per window (its repeats summed): wall time, this rank's CPU seconds, each allowed CPU's busy and steal
    seconds, and when (the intervals on the run's clock, so an outside tool can line up its own readings)."""

    name = "system_load"
    order = 5  # outermost: its reads are done before any other measurement starts and after all have stopped

    def __init__(self, ctx: RankContext) -> None:
        super().__init__(ctx)
        self._cpus = _allowed_cpus()
        self._process = psutil.Process()
        self._stat = _cgroup_cpu_stat()
        self._start: _Reading | None = None
        self.windows: dict[str, dict[str, Any]] = {}

    def _read(self) -> _Reading:
        return _Reading(self.ctx.clock(), self._cpus, self._process, self._stat)

    def start(self, window: str) -> None:
        self._start = self._read()

    def stop(self, window: str, complete: bool) -> None:
        end, start = self._read(), self._start
        if start is None or not complete:
            return
        total = self.windows.setdefault(window, {"wall_s": 0.0, "own_cpu_s": 0.0, "busy_s": [0.0] * len(self._cpus),
                                                 "steal_s": [0.0] * len(self._cpus), "waited_s": None,
                                                 "throttled_s": None, "intervals": []})
        total["wall_s"] += end.clock - start.clock
        total["intervals"].append([start.clock, end.clock])  # the run's clock: CLOCK_MONOTONIC, one per host
        total.setdefault("cpu_mhz", []).append(cpu_mhz(self._cpus)[0])  # at each repeat's end; None: not readable
        total["own_cpu_s"] += end.own_s - start.own_s
        for i, ((busy0, steal0), (busy1, steal1)) in enumerate(zip(start.busy_steal, end.busy_steal)):
            total["busy_s"][i] += busy1 - busy0
            total["steal_s"][i] += steal1 - steal0
        if start.waited_s is not None and end.waited_s is not None:
            total["waited_s"] = (total["waited_s"] or 0.0) + end.waited_s - start.waited_s
        if start.throttled_s is not None and end.throttled_s is not None:
            total["throttled_s"] = (total["throttled_s"] or 0.0) + end.throttled_s - start.throttled_s

    def rank_result(self) -> dict[str, Any]:
        return {"system_load": {"host": socket.gethostname(), "cpus": self._cpus, "windows": self.windows,
                                "cpu_mhz_note": cpu_mhz(self._cpus)[1]}}

    @classmethod
    def merge(cls, ranks: list[dict[str, Any]], run: RunFacts) -> dict[str, Any]:
        loads = [r.get("system_load") for r in ranks]
        if not all(loads):
            return {"system_load": None, "contended": None, "contended_note": None, "others_share": None}
        hosts = host_loads(loads)
        worst = max(((share, host, window, kind) for host, windows in hosts.items()
                     for window, load in windows.items() if window in JUDGED_WINDOWS
                     for kind, share in (("other processes", load["others_share"]), ("steal", load["steal_share"]))
                     if share is not None), default=None)
        contended = worst is not None and worst[0] >= CONTENDED_SHARE
        note = None
        if contended:
            share, host, window, kind = worst
            cpus = len(hosts[host][window]["cpus"])
            waited = hosts[host][window].get("waited_share")
            note = (f"{kind} used {share:.0%} of the CPU time of {host} ({cpus} CPU{'s' * (cpus > 1)} this run may use) "
                    f"during {JUDGED_WINDOWS[window]}" + (" (another virtual machine's)" if kind == "steal" else "")
                    + (f"; the ranks waited for a CPU {waited:.0%} of that time" if waited is not None else ""))
        return {"system_load": {"hosts": hosts, "contended_share": CONTENDED_SHARE}, "contended": contended,
                "contended_note": note, "others_share": worst[0] if worst else None}


def host_loads(loads: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per physical host and window: the shares of the run's CPUs that the run, other processes and steal took.
    A CPU's times come from the first rank that may run on it; the run's own time is every rank's on that host."""
    by_host: dict[str, list[dict[str, Any]]] = {}
    for load in loads:
        by_host.setdefault(load["host"], []).append(load)
    merged: dict[str, dict[str, dict[str, Any]]] = {}
    for host, here in by_host.items():
        for window in here[0]["windows"]:
            if not all(window in load["windows"] for load in here):
                continue
            busy: dict[int, float] = {}
            steal: dict[int, float] = {}
            for load in here:
                for cpu, b, s in zip(load["cpus"], load["windows"][window]["busy_s"], load["windows"][window]["steal_s"]):
                    busy.setdefault(cpu, b)
                    steal.setdefault(cpu, s)
            wall = max(load["windows"][window]["wall_s"] for load in here)
            own = sum(load["windows"][window]["own_cpu_s"] for load in here)
            capacity = wall * len(busy)
            throttled = [load["windows"][window]["throttled_s"] for load in here]
            waited = [load["windows"][window].get("waited_s") for load in here]
            merged.setdefault(host, {})[window] = {
                "cpus": sorted(busy), "wall_s": wall, "own_share": own / capacity if capacity else None,
                "others_share": max(0.0, sum(busy.values()) - own) / capacity if capacity else None,
                "steal_share": sum(steal.values()) / capacity if capacity else None,
                "throttled_s": max(throttled) if all(t is not None for t in throttled) else None,
                # per rank, the share of the window its threads spent runnable but without a CPU
                "waited_share": (sum(waited) / (wall * len(here)) if wall and all(w is not None for w in waited)
                                 else None),
            }
    return merged

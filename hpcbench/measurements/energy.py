"""Energy over the timed repeats: NVML's total-energy counter on NVIDIA GPUs, RAPL's package
counters on CPUs (/sys/class/powercap, where readable); otherwise null, with the reason.

Counters are per device (a GPU) or per socket (a CPU package, shared by every rank on the host),
so each counter is read by every rank that sees it but counted once: the merge keeps one reading
per counter id (the physical host's name, not a scheduler's node name: two Slurm nodes on one host
share its sockets). RAPL counts the whole package, whatever else runs on it; the note says so.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import torch

from hpcbench.measurements.base import THROUGHPUT, Measurement, RankContext, RunFacts, register

POWERCAP = Path("/sys/class/powercap")
PACKAGE_ZONE = re.compile(r"^intel-rapl:\d+$")  # packages; intel-rapl:0:0 and the like are subzones of one


def counter_delta(before: int, now: int, max_range: int) -> int:
    """Counts between two reads of a counter that wraps from max_range to 0 (at most one wrap between reads)."""
    return now - before if now >= before else (max_range - before) + 1 + now


class RaplPackages:
    """Every CPU package's energy counter under `root` (µJ, wrapping at max_energy_range_uj)."""

    method = "rapl"

    def __init__(self, root: Path = POWERCAP) -> None:
        if not root.is_dir():
            raise EnergyUnavailable(f"no RAPL: {root} does not exist (a VM, or not Linux on Intel/AMD)")
        zones = sorted(p for p in root.iterdir() if PACKAGE_ZONE.match(p.name))
        if not zones:
            raise EnergyUnavailable(f"no RAPL package zones under {root}")
        try:
            self._ranges = [int((z / "max_energy_range_uj").read_text()) for z in zones]
            self._zones = zones
            self.read_raw()
        except PermissionError:
            raise EnergyUnavailable(f"RAPL counters under {root} are not readable by this user (root only since "
                                    "Linux 5.10)") from None
        except (OSError, ValueError) as exc:
            raise EnergyUnavailable(f"RAPL counters under {root} cannot be read: {exc}") from None
        self.counter_id = f"{socket.gethostname()}:rapl"

    def read_raw(self) -> list[int]:
        return [int((z / "energy_uj").read_text()) for z in self._zones]

    def joules_between(self, before: list[int], now: list[int]) -> float:
        return sum(counter_delta(b, n, r) for b, n, r in zip(before, now, self._ranges)) / 1e6


class NvmlDevice:
    """NVML's total energy since the driver loaded (mJ; Volta and later) for this rank's GPU."""

    method = "nvml"

    def __init__(self, device: torch.device) -> None:
        try:
            import pynvml
        except ImportError:
            raise EnergyUnavailable("nvidia-ml-py is not installed (pip install 'hpcbench[gpu]')") from None
        try:
            pynvml.nvmlInit()
            uuid = str(torch.cuda.get_device_properties(device).uuid)
            self._handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
            self._read = pynvml.nvmlDeviceGetTotalEnergyConsumption
            self.read_raw()
        except pynvml.NVMLError as exc:
            raise EnergyUnavailable(f"NVML total energy unavailable: {exc}") from None
        self.counter_id = f"{socket.gethostname()}:{uuid}"

    def read_raw(self) -> int:
        return int(self._read(self._handle))

    def joules_between(self, before: int, now: int) -> float:
        return (now - before) / 1e3


class EnergyUnavailable(Exception):
    """Why this rank has no energy counter."""


def open_counter(device: torch.device) -> RaplPackages | NvmlDevice:
    if device.type == "cuda":
        return NvmlDevice(device)
    return RaplPackages()


@register
class Energy(Measurement):
    name = "energy"
    order = 10  # outermost: its reads stay outside every other measurement's window

    def __init__(self, ctx: RankContext) -> None:
        super().__init__(ctx)
        self.joules = 0.0
        self.seconds = 0.0
        self._before: Any = None
        try:
            self.counter: RaplPackages | NvmlDevice | None = open_counter(ctx.device)
            self.reason = None
        except EnergyUnavailable as exc:
            self.counter, self.reason = None, str(exc)

    def start(self, window: str) -> None:
        if window == THROUGHPUT and self.counter:
            self._before = (self.counter.read_raw(), self.ctx.clock())

    def stop(self, window: str, complete: bool) -> None:
        if window != THROUGHPUT or not self.counter or self._before is None:
            return
        now, now_s = self.counter.read_raw(), self.ctx.clock()
        before, before_s = self._before
        self._before = None
        if complete:
            self.joules += self.counter.joules_between(before, now)
            self.seconds += now_s - before_s

    def rank_result(self) -> dict[str, Any]:
        if not self.counter:
            return {"energy_j": None, "energy_s": None, "energy_counter": None, "energy_note": self.reason}
        return {"energy_j": self.joules, "energy_s": self.seconds, "energy_counter": self.counter.counter_id,
                "energy_method": self.counter.method}

    @classmethod
    def merge(cls, ranks: list[dict[str, Any]], run: RunFacts) -> dict[str, Any]:
        """Joules over the timed repeats, one reading per counter; per global sample; mean watts per counter."""
        missing = [r for r in ranks if r.get("energy_j") is None]
        if missing:
            return {"energy_j": None, "energy_j_per_sample": None, "power_w_per_counter": None, "energy_counters": 0,
                    "energy_method": None, "energy_note": missing[0].get("energy_note") or "no energy reading"}
        first_per_counter = {r["energy_counter"]: r for r in reversed(ranks)}  # the lowest rank reading each
        joules = sum(r["energy_j"] for r in first_per_counter.values())
        watts = [r["energy_j"] / r["energy_s"] for r in first_per_counter.values() if r["energy_s"]]
        method = ranks[0]["energy_method"]
        return {
            "energy_j": joules,
            "energy_j_per_sample": joules / run.timed_samples if run.timed_samples else None,
            "power_w_per_counter": sum(watts) / len(watts) if watts else None,
            "energy_counters": len(first_per_counter),
            "energy_method": method,
            "energy_note": ("RAPL package energy: the whole CPU socket, whatever else ran on it" if method == "rapl"
                            else "NVML total energy of each GPU (nvmlDeviceGetTotalEnergyConsumption)"),
        }

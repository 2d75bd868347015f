"""Where and with what numbers were measured: host, hardware, versions, scheduler job, environment.

Each rank can describe its own host; rank 0 assembles the run's provenance. Scheduler facts come
from the scheduler plug-in whose job this process runs in.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import hpcbench
from hpcbench.launch.schedulers import node_name, scheduler_facts

ENV_PREFIXES = ("OMP_", "MKL_", "NCCL_", "GLOO_", "CUDA_VISIBLE_DEVICES", "TORCH_NCCL_", "MASTER_ADDR", "MASTER_PORT",
                "HPCBENCH_START", "HPCBENCH_INJECT_FAULT")
"""Recorded as set: thread and library settings, the rendezvous, how the ranks started (warm: forked from a
preloaded interpreter), and a test's injected fault."""


def host_facts() -> dict[str, Any]:
    """What this process can say about its own machine; every rank sends its own."""
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"host": node_name(os.environ), "cpu_model": cpu_model(), "gpu_model": gpu}


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_generation() -> str | None:
    """"family F model M stepping S": a VM's "AMD EPYC" names several generations, whose math kernels round
    differently (docs/explanation/reproducibility.md). None where /proc/cpuinfo does not say (not x86 Linux)."""
    info = _cpuinfo()
    if not {"cpu family", "model", "stepping"} <= info.keys():
        return None
    return f"family {info['cpu family']} model {info['model']} stepping {info['stepping']}"


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def system_facts(engine_libraries: dict[str, str | None]) -> dict[str, Any]:
    """This node's hardware and software, whatever ran on it: what a system id is made of."""
    import torch

    cuda = torch.cuda.is_available()
    try:
        memory_gib = round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30)
    except (OSError, ValueError):
        memory_gib = None
    return {
        "cpu_model": cpu_model(),
        "cpu_generation": cpu_generation(),
        "cpu_isa": torch.backends.cpu.get_cpu_capability(),  # the kernels torch dispatches to: AVX2, AVX512, ...
        "cores_per_node": os.cpu_count(),
        "memory_gib_per_node": memory_gib,
        "gpu_model": torch.cuda.get_device_name() if cuda else None,
        "gpus_per_node": torch.cuda.device_count() if cuda else 0,
        "network": os.environ.get("HPCBENCH_NETWORK") or None,  # set by the site's profile or the cluster
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "nccl": nccl_version(),
        "engine_libraries": engine_libraries,
    }


def nccl_version() -> str | None:
    import torch

    return ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else None


def provenance(*, hosts: list[str], engine_versions: dict[str, Any], started: str, ended: str, launcher: str,
               engine_libraries: dict[str, str | None] | None = None) -> dict[str, Any]:
    """The run's provenance (collected on rank 0); with `engine_libraries`, this node's system facts too."""
    import torch

    unique_hosts = sorted(set(hosts))
    return {
        "hostnames": unique_hosts,
        "num_nodes": len(unique_hosts),
        "world_size": len(hosts),
        "launcher": launcher,
        "cpu_model": cpu_model(),
        "gpu_model": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        **engine_versions,
        "driver": gpu_driver_version(),
        "hpcbench": hpcbench.__version__,
        "git_sha": git_sha(),
        "scheduler": scheduler_facts(os.environ),
        "environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)},
        "started": started,
        "ended": ended,
        **({"system_facts": system_facts(engine_libraries)} if engine_libraries is not None else {}),
    }


def gpu_driver_version(proc_file: Path = Path("/proc/driver/nvidia/version")) -> str | None:
    """The NVIDIA kernel driver's version ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15 ..."), read
    without NVML; None without an NVIDIA driver. A driver upgrade is one of the changes `history` names."""
    try:
        first = proc_file.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    match = re.search(r"Kernel Module\s+(\S+)", first)
    return match.group(1) if match else None


def git_sha() -> str | None:
    """The commit of the hpcbench source tree, when it is a git checkout."""
    source = Path(hpcbench.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None

"""Run records: one versioned JSON file per run, written atomically, with provenance.

A record holds everything the analysis needs — the resolved config, raw per-rank step times,
the derived metrics and where they were measured — so results can be re-read without the code
that made them. Readers must check `schema_version`.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import hpcbench

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed")
ENV_PREFIXES = ("OMP_", "MKL_", "NCCL_", "GLOO_", "CUDA_VISIBLE_DEVICES", "TORCH_NCCL_", "SLURM_JOB_ID", "PBS_JOBID")


def new_run_id() -> str:
    """Sortable by start time and unique across nodes: UTC timestamp plus random hex."""
    return f"{utc_now().strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def record_path(out_dir: str, workload: str, engine: str, world_size: int, run_id: str) -> Path:
    return Path(out_dir) / f"{workload}_{engine}_{world_size}p_{run_id}.json"


def write_atomic(path: Path, record: dict[str, Any]) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename: readers see all or nothing."""
    text = json.dumps(record, indent=1, allow_nan=False, default=_json_default) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: a non-finite loss is stored as null and the run marked failed."""
    return value if value is not None and math.isfinite(value) else None


def make_record(
    *,
    run_id: str,
    status: str,
    reason: str | None,
    config: dict[str, Any],
    workload: dict[str, Any] | None,
    metrics: dict[str, Any] | None,
    ranks: list[dict[str, Any]],
    provenance: dict[str, Any],
) -> dict[str, Any]:
    assert status in STATUSES
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "status": status,
        "reason": reason,
        "config": config,
        "workload": workload,
        "metrics": metrics,
        "ranks": ranks,
        "provenance": provenance,
    }


def host_facts() -> dict[str, Any]:
    """What this process can say about its own machine; every rank sends its own."""
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"host": socket.gethostname(), "cpu_model": cpu_model(), "gpu_model": gpu}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(*, hosts: list[str], engine_versions: dict[str, Any], started: str, ended: str, launcher: str) -> dict[str, Any]:
    """Where and with what the numbers were measured (collected on rank 0)."""
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
        "hpcbench": hpcbench.__version__,
        "git_sha": git_sha(),
        "environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)},
        "started": started,
        "ended": ended,
    }


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


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read one record; raises ValueError for anything that is not a record of a known schema."""
    with open(path) as handle:
        record = json.load(handle)
    if not isinstance(record, dict) or "schema_version" not in record:
        raise ValueError(f"{path}: not an hpcbench record")
    if record["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {record['schema_version']!r}, this hpcbench reads {SCHEMA_VERSION}")
    return record

"""What the scheduler says about the job this process runs in: the only reader of SLURM_* and PBS_* outside the
rank-discovery table. Records carry it as provenance."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def node_name(environ: Mapping[str, str] | None = None) -> str:
    """The scheduler's name for this node (several Slurm nodes may share one host), else the host name."""
    env = os.environ if environ is None else environ
    return env.get("SLURMD_NODENAME") or socket.gethostname()


def scheduler_facts(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """Job id, array index and node list from Slurm or PBS; None outside a batch job."""
    env = os.environ if environ is None else environ
    if "SLURM_JOB_ID" in env:
        return {
            "scheduler": "slurm",
            "job_id": env["SLURM_JOB_ID"],
            "job_name": env.get("SLURM_JOB_NAME"),
            "array_job_id": env.get("SLURM_ARRAY_JOB_ID"),
            "array_task_id": env.get("SLURM_ARRAY_TASK_ID"),
            "node_list": env.get("SLURM_JOB_NODELIST"),
            "num_nodes": int(env["SLURM_JOB_NUM_NODES"]) if env.get("SLURM_JOB_NUM_NODES") else None,
        }
    if "PBS_JOBID" in env:
        nodes: list[str] = []
        try:
            for line in Path(env.get("PBS_NODEFILE", "")).read_text().split():
                if line not in nodes:
                    nodes.append(line)
        except OSError:
            pass
        return {
            "scheduler": "pbs",
            "job_id": env["PBS_JOBID"],
            "job_name": env.get("PBS_JOBNAME"),
            "array_task_id": env.get("PBS_ARRAY_INDEX") or env.get("PBS_ARRAYID"),
            "node_list": ",".join(nodes) or None,
            "num_nodes": len(nodes) or None,
        }
    return None

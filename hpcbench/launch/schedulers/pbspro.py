"""PBS Pro: qsub/qdel/qstat, the node file, PBS_* variables (Torque builds on it)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpcbench.launch.schedulers.base import Raw, Scheduler, SubmitError, register, run_command

NODE_FILE = Raw('"$PBS_NODEFILE"')
STATES = {"Q": "pending", "H": "pending", "W": "pending", "R": "running", "E": "running"}


@register
class PbsPro(Scheduler):
    name = "pbspro"
    order = 20
    template = "pbspro.sh.j2"
    launchers = ("torchrun", "mpirun")
    default_launcher = "mpirun"
    rendezvous = ('export MASTER_ADDR=$(head -n 1 "$PBS_NODEFILE")\n'
                  'export MASTER_PORT=$((20000 + ${PBS_JOBID%%[!0-9]*} % 20000))')
    job_id = Raw('"$PBS_JOBID"')

    @classmethod
    def one_process_per_node(cls, num_nodes: int, cpus_per_process: int) -> list[str]:
        return ["mpirun", "-np", str(num_nodes), *cls.mpirun_hosts(), "--map-by", "ppr:1:node", "--bind-to", "none",
                "-x", "MASTER_ADDR", "-x", "MASTER_PORT", "-x", "OMP_NUM_THREADS", "-x", "TORCHELASTIC_SIGNALS_TO_HANDLE"]

    @classmethod
    def mpirun_hosts(cls) -> list[str]:
        return ["--hostfile", NODE_FILE]

    @classmethod
    def submit(cls, script: str, after: list[str], whatever_end: bool = False) -> str:
        dependency = ["-W", f"depend={'afterany' if whatever_end else 'afterok'}:{':'.join(after)}"] if after else []
        return run_command(["qsub", *dependency, script])

    @classmethod
    def cancel(cls, job_id: str) -> None:
        run_command(["qdel", job_id])

    @classmethod
    def leave_out(cls, suspects: list[str], keep: list[str]) -> str:
        """PBS Pro has no exclude list: the job asks for the other hosts by name."""
        return "qsub -l select=" + "+".join(f"1:host={node}" for node in keep)

    @classmethod
    def state(cls, job_id: str) -> str:
        try:
            text = run_command(["qstat", "-x", "-f", job_id])
        except SubmitError:
            return "unknown"
        state = re.search(r"job_state = (\S+)", text)
        exit_status = re.search(r"Exit_status = (-?\d+)", text)
        if not state:
            return "unknown"
        if state.group(1) in ("F", "C"):
            return "done" if exit_status and exit_status.group(1) == "0" else "failed"
        return STATES.get(state.group(1), "pending")

    @classmethod
    def in_job(cls, env: Mapping[str, str]) -> bool:
        return "PBS_JOBID" in env

    @classmethod
    def facts(cls, env: Mapping[str, str]) -> dict[str, Any]:
        nodes: list[str] = []
        try:
            for line in Path(env.get("PBS_NODEFILE", "")).read_text().split():
                if line not in nodes:
                    nodes.append(line)
        except OSError:
            pass
        return {
            "scheduler": "pbs",  # PBS Pro and Torque set the same variables: the record cannot tell them apart
            "job_id": env["PBS_JOBID"],
            "job_name": env.get("PBS_JOBNAME"),
            "array_task_id": env.get("PBS_ARRAY_INDEX") or env.get("PBS_ARRAYID"),
            "node_list": ",".join(nodes) or None,
            "num_nodes": len(nodes) or None,
        }

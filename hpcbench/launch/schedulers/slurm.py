"""Slurm: sbatch/scancel/scontrol, srun as its own launcher, SLURM_* variables."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hpcbench.launch.schedulers.base import Raw, Scheduler, SubmitError, register, run_command

STATES = {"PENDING": "pending", "CONFIGURING": "pending", "RUNNING": "running", "COMPLETING": "running",
          "COMPLETED": "done"}
"""Every other Slurm state (FAILED, CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, ...) is `failed`."""


@register
class Slurm(Scheduler):
    name = "slurm"
    order = 10
    template = "slurm.sh.j2"
    launchers = ("srun", "torchrun", "mpirun")
    default_launcher = "srun"
    # The first node's address as Slurm itself reaches it; a port derived from the job id.
    rendezvous = ('first_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)\n'
                  "export MASTER_ADDR=$(scontrol show node \"$first_node\" | sed -n 's/.*NodeAddr=\\([^ ]*\\).*/\\1/p')\n"
                  "export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))")
    job_id = Raw('"$SLURM_JOB_ID"')

    @classmethod
    def one_process_per_node(cls, num_nodes: int, cpus_per_process: int) -> list[str]:
        return ["srun", "--kill-on-bad-exit=1", f"--nodes={num_nodes}", f"--ntasks={num_nodes}", "--ntasks-per-node=1",
                f"--cpus-per-task={cpus_per_process}"]

    @classmethod
    def submit(cls, script: str, after: list[str], whatever_end: bool = False) -> str:
        dependency = [f"--dependency={'afterany' if whatever_end else 'afterok'}:{':'.join(after)}"] if after else []
        return run_command(["sbatch", "--parsable", *dependency, script]).split(";")[0]

    @classmethod
    def cancel(cls, job_id: str) -> None:
        run_command(["scancel", job_id])

    @classmethod
    def state(cls, job_id: str) -> str:
        try:
            line = run_command(["scontrol", "show", "job", job_id, "--oneliner"])
        except SubmitError:
            return "unknown"
        match = re.search(r"\bJobState=(\S+)", line)
        state = match.group(1) if match else "UNKNOWN"
        if state == "PENDING" and "Reason=DependencyNeverSatisfied" in line:
            return "blocked"  # a job it depends on failed: it will never start
        return STATES.get(state, "failed")

    @classmethod
    def leave_out(cls, suspects: list[str], keep: list[str]) -> str:
        return f"sbatch --exclude={','.join(suspects)}"

    @classmethod
    def node_cpus(cls, partition: str | None) -> int | None:
        try:
            out = run_command(["sinfo", "--noheader", "--format=%c", *([f"--partition={partition}"] if partition else [])])
        except SubmitError:
            return None
        counts = [int(n) for n in re.findall(r"\d+", out)]
        return min(counts) if counts else None

    @classmethod
    def in_job(cls, env: Mapping[str, str]) -> bool:
        return "SLURM_JOB_ID" in env

    @classmethod
    def facts(cls, env: Mapping[str, str]) -> dict[str, Any]:
        return {
            "scheduler": "slurm",
            "job_id": env["SLURM_JOB_ID"],
            "job_name": env.get("SLURM_JOB_NAME"),
            "array_job_id": env.get("SLURM_ARRAY_JOB_ID"),
            "array_task_id": env.get("SLURM_ARRAY_TASK_ID"),
            "node_list": env.get("SLURM_JOB_NODELIST"),
            "num_nodes": int(env["SLURM_JOB_NUM_NODES"]) if env.get("SLURM_JOB_NUM_NODES") else None,
        }

    @classmethod
    def node_name(cls, env: Mapping[str, str]) -> str | None:
        return env.get("SLURMD_NODENAME")

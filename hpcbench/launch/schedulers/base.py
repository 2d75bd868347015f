"""What a scheduler is: its job script template, its rendezvous lines, its commands and its environment.

Adding a scheduler is adding one module in this package (a `Scheduler` subclass decorated with
`@register`) plus its template in `jobs/templates/`. Launchers ask it for what differs between
schedulers (how to reach every node, the node file, the job id); nothing outside this package
names a scheduler, so a missed branch cannot silently become another scheduler's command.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Mapping
from typing import Any, ClassVar

from hpcbench.plugins import Registry

SCHEDULERS: Registry[type[Scheduler]] = Registry("scheduler", "scheduler")
JOB_STATES = ("pending", "running", "done", "failed", "blocked", "unknown")


class Raw(str):
    """A launch-line token written by hpcbench itself that the shell must expand ("$MASTER_ADDR")."""


class SubmitError(RuntimeError):
    """The scheduler refused a command; what a sweep had already submitted is cancelled by the caller."""


def run_command(command: list[str]) -> str:
    """A scheduler command's stdout; a SubmitError with its stderr when it fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SubmitError(f"{command[0]}: {exc}") from None
    if done.returncode != 0:
        raise SubmitError(f"{' '.join(command)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


class Scheduler:
    """One batch system. Class-level only: a scheduler is a description, never an instance."""

    name: ClassVar[str]
    order: ClassVar[int] = 100
    """Position in lists (error messages, tests)."""
    template: ClassVar[str]
    """Job script template in jobs/templates/ (a site's --templates folder may override it)."""
    launchers: ClassVar[tuple[str, ...]]
    """Launchers this scheduler can start ranks with."""
    default_launcher: ClassVar[str]
    rendezvous: ClassVar[str]
    """Shell lines that export MASTER_ADDR and MASTER_PORT for the job's first node."""
    job_id: ClassVar[Raw]
    """The job id as the shell expands it."""

    @classmethod
    def one_process_per_node(cls, num_nodes: int, cpus_per_process: int) -> list[str]:
        """Tokens that start the command after them once on each node (torchrun's agents)."""
        raise NotImplementedError

    @classmethod
    def mpirun_hosts(cls) -> list[str]:
        """Tokens that tell mpirun the job's hosts ([] where mpirun learns them from the scheduler)."""
        return []

    # --- submitting and watching jobs
    @classmethod
    def submit(cls, script: str, after: list[str], whatever_end: bool = False) -> str:
        """Submit a job script, to start after the jobs `after` succeeded (or, `whatever_end`, ended in any way: a
        job that reports a failure); returns its job id."""
        raise NotImplementedError

    @classmethod
    def cancel(cls, job_id: str) -> None:
        raise NotImplementedError

    @classmethod
    def state(cls, job_id: str) -> str:
        """One of JOB_STATES: blocked is a job whose dependency failed, unknown one the scheduler forgot."""
        raise NotImplementedError

    @classmethod
    def node_cpus(cls, partition: str | None) -> int | None:
        """The fewest CPUs a node of `partition` (the default one: None) has, as the running scheduler reports
        them; None where it cannot say (no such command here, or it is not running): submit checks a job's
        tasks x threads against it before the scheduler refuses the job in its own words."""
        return None

    @classmethod
    def leave_out(cls, suspects: list[str], keep: list[str]) -> str:
        """The submit option that keeps a job off `suspects` (the survey's findings), ready to paste."""
        raise NotImplementedError

    # --- the environment of a job of this scheduler
    @classmethod
    def in_job(cls, env: Mapping[str, str]) -> bool:
        raise NotImplementedError

    @classmethod
    def facts(cls, env: Mapping[str, str]) -> dict[str, Any]:
        """Job id, name, array ids and node list, for the record's provenance."""
        raise NotImplementedError

    @classmethod
    def node_name(cls, env: Mapping[str, str]) -> str | None:
        """The scheduler's name for this node, where it differs from the host name."""
        return None


def register(cls: type[Scheduler]) -> type[Scheduler]:
    return SCHEDULERS.register(cls)


def current(env: Mapping[str, str]) -> type[Scheduler] | None:
    """The scheduler whose job this process runs in, or None."""
    return SCHEDULERS.find(lambda cls: cls.in_job(env))


def scheduler_facts(env: Mapping[str, str]) -> dict[str, Any] | None:
    scheduler = current(env)
    return scheduler.facts(env) if scheduler else None


def node_name(env: Mapping[str, str]) -> str:
    """The scheduler's name for this node (several Slurm nodes may share one host), else the host name."""
    scheduler = current(env)
    return (scheduler.node_name(env) if scheduler else None) or socket.gethostname()

"""What every command that writes cluster jobs shares (`render`, `submit`, and the probes' `--profile`): the sweep
folder's check, the nodes' CPUs against the running cluster, and writing then submitting the scripts."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from hpcbench.errors import ConfigError
from hpcbench.records import check_out_dir

SAFE_PATH = re.compile(r"^[A-Za-z0-9._/+-]+$")
"""Paths that reach scheduler directives (#SBATCH --output=...), which no shell quoting protects."""
PROFILES = "site profile: a TOML file or a built-in name (local-slurm, example-gpu-slurm, example-pbspro, example-torque)"


def add_job_flags(parser: argparse.ArgumentParser, *, required: bool, what: str,
                  nodes: str = "the sweep file's, else 1,2", tasks: str = "the sweep file's, else 1") -> None:
    """The flags that place jobs on a cluster (render and submit require --profile; a probe runs locally without)."""
    from hpcbench.launch.launchers import LAUNCHERS
    from hpcbench.launch.schedulers import SCHEDULERS

    parser.add_argument("--profile", required=required, default=None, help=PROFILES + ("" if required else
                        f": {what} as cluster jobs, one per node count, instead of local processes"))
    defaults = ", ".join(f"{cls.default_launcher} on {name}" for name, cls in SCHEDULERS.classes().items())
    parser.add_argument("--launcher", default=None, help=f"{', '.join(LAUNCHERS.names())} (default: {defaults})")
    parser.add_argument("--nodes", default=None, help=f"comma-separated node counts, one job each (default: {nodes})")
    parser.add_argument("--tasks-per-node", type=int, default=None, help=f"ranks per node, one per GPU on GPU nodes "
                        f"(default: {tasks})")
    parser.add_argument("--job-name", default=None, help=f"scheduler job name (default: hpcbench-{what.split()[0]})")
    parser.add_argument("--templates", default=None, help="folder with site templates overriding the shipped ones")
    parser.add_argument("--sweep-dir", required=required, default=None,
                        help="folder for scripts, logs, records and the report")


def sweep_folder(text: str) -> Path:
    sweep_dir = Path(text).resolve()
    if not SAFE_PATH.match(str(sweep_dir)):
        raise ConfigError("sweep-dir", f"{str(sweep_dir)!r} may only contain letters, digits and . _ / + - "
                          "(it reaches scheduler directives)")
    return sweep_dir


def check_node_cpus(profile: Any, specs: list[Any]) -> None:
    """A job that asks a node for more CPUs than the running cluster's nodes have is refused here, in words that
    name the profile, rather than by the scheduler ("CPU count per node can not be satisfied")."""
    from hpcbench.launch.schedulers import SCHEDULERS

    cpus = SCHEDULERS.get(profile.scheduler).node_cpus(profile.partition)
    wanted = max((spec.tasks_per_node * spec.threads_per_task for spec in specs), default=0)
    if cpus is not None and wanted > cpus:
        worst = max(specs, key=lambda spec: spec.tasks_per_node * spec.threads_per_task)
        raise ConfigError("tasks-per-node", f"{worst.tasks_per_node} tasks x {worst.threads_per_task} thread(s) need "
                          f"{wanted} CPUs a node; the cluster's nodes{f' in {profile.partition}' if profile.partition else ''} "
                          f"have {cpus} ({profile.scheduler} says; the profile says cpus_per_node = "
                          f"{profile.cpus_per_node}): ask for fewer tasks or threads, or correct the profile")


def write_and_submit(command: str, profile: Any, specs: list[Any], templates: str | None, submit: bool,
                     notes: list[str] = ()) -> int:
    """Render every script in memory, write them, then (submit) hand them to the scheduler: the points first, the
    report job after all of them. Prints the scripts (render) or the job ids (submit)."""
    from hpcbench.launch.jobs import render_sweep, write_scripts

    if templates and not Path(templates).is_dir():
        raise ConfigError("templates", f"{templates!r} is not a folder")
    if submit:
        check_node_cpus(profile, specs)
    scripts = render_sweep(specs, templates)
    sweep_dir = specs[0].sweep_dir
    check_out_dir(str(sweep_dir / "records"))
    write_scripts(scripts)
    paths = list(scripts)
    for note in notes:
        print(f"hpcbench {command}: note: {note}", file=sys.stderr)
    if not submit:
        for path in paths:
            print(path)
        return 0
    from hpcbench.launch.submit import SubmitError, submit_sweep

    try:
        state = submit_sweep(profile.scheduler, paths[:-1], paths[-1], specs[0].aggregate_whatever_end)
    except SubmitError as exc:
        print(f"hpcbench {command}: failed: {exc}", file=sys.stderr)
        return 1
    for job in [*state["jobs"], state["aggregate"]]:
        print(f"{job['job_id']}\t{sweep_dir / job['script']}")
    print(f"records: {sweep_dir / 'records'}; report (after all jobs): {sweep_dir / 'report'}; "
          f"progress: hpcbench status {sweep_dir}")
    return 0

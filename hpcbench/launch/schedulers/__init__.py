"""Schedulers (Slurm, PBS Pro, Torque). Importing the package registers every scheduler module in it."""

from hpcbench.launch.schedulers.base import (
    JOB_STATES, SCHEDULERS, Raw, Scheduler, SubmitError, current, node_name, scheduler_facts,
)
from hpcbench.plugins import import_submodules

import_submodules(__name__, __path__)

__all__ = ["JOB_STATES", "SCHEDULERS", "Raw", "Scheduler", "SubmitError", "current", "node_name", "scheduler_facts"]

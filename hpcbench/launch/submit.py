"""Submitting a rendered sweep to its scheduler, and asking how its jobs are doing.

The sweep folder holds the scripts, `sweep.json` (job ids), `logs/`, `records/` and, once the
aggregation job has run, `report/`. The aggregation job depends on every point (afterok).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hpcbench import records
from hpcbench.files import write_atomic
from hpcbench.launch.launchers import LAUNCHERS
from hpcbench.launch.schedulers import SCHEDULERS, SubmitError

STATE_FILE = "sweep.json"

__all__ = ["STATE_FILE", "SubmitError", "failed_tasks", "leave_out", "submit_sweep", "sweep_status"]


def submit_sweep(scheduler_name: str, scripts: list[Path], aggregate: Path, whatever_end: bool = False) -> dict[str, Any]:
    """Submit every point, then the aggregation job after all of them (after they succeeded, or `whatever_end`:
    after they ended in any way, for an aggregation that reports a failure); record the ids in sweep.json.

    If the scheduler refuses any job, what was already submitted is cancelled.
    """
    scheduler = SCHEDULERS.get(scheduler_name)
    submitted: list[str] = []
    try:
        jobs = []
        for script in scripts:
            jobs.append({"script": script.name, "job_id": scheduler.submit(str(script), [])})
            submitted.append(jobs[-1]["job_id"])
        final = {"script": aggregate.name, "job_id": scheduler.submit(str(aggregate), submitted, whatever_end)}
    except SubmitError:
        for job_id in submitted:
            try:
                scheduler.cancel(job_id)
            except SubmitError:
                pass  # already gone: nothing left to cancel
        raise
    state = {"scheduler": scheduler_name, "submitted": records.utc_now().isoformat(), "jobs": jobs, "aggregate": final}
    write_atomic(aggregate.parent / STATE_FILE, json.dumps(state, indent=1) + "\n")
    return state


def sweep_status(sweep_dir: str | Path) -> list[dict[str, str]]:
    """One row per job of a submitted sweep."""
    state = json.loads((Path(sweep_dir) / STATE_FILE).read_text())
    scheduler = SCHEDULERS.get(state["scheduler"])
    return [{**job, "state": scheduler.state(job["job_id"])} for job in [*state["jobs"], state["aggregate"]]]


def failed_tasks(sweep_dir: str | Path) -> tuple[Path, str, list[tuple[str, str]]] | None:
    """The first job log of a sweep in which a launcher reported tasks ending badly: (the log, the launcher, (node,
    what happened) in the launcher's order: the first is the first to fail). None where no launcher's lines say."""
    for path in sorted((Path(sweep_dir) / "logs").glob("*.out")):
        text = path.read_text(errors="replace")
        for name, launcher in LAUNCHERS.classes().items():
            if failed := launcher.failed_tasks(text):
                return path, name, failed
    return None


def leave_out(sweep_dir: str | Path, suspects: list[str], keep: list[str]) -> str | None:
    """The sweep's scheduler's submit option that keeps a job off `suspects` (None: no sweep state to say which)."""
    state = Path(sweep_dir) / STATE_FILE
    return SCHEDULERS.get(json.loads(state.read_text())["scheduler"]).leave_out(suspects, keep) if state.is_file() else None


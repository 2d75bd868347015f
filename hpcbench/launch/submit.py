"""Submitting a rendered sweep to Slurm or PBS, and asking how its jobs are doing.

The sweep folder holds the scripts, `sweep.json` (job ids), `logs/`, `records/` and, once the
aggregation job has run, `report/`. The aggregation job depends on every point (afterok).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from hpcbench import records

STATE_FILE = "sweep.json"


class SubmitError(RuntimeError):
    """The scheduler refused a job; what was already submitted has been cancelled."""


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SubmitError(f"{command[0]}: {exc}") from None
    if done.returncode != 0:
        raise SubmitError(f"{' '.join(command)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def _submit_one(scheduler: str, script: Path, after: list[str]) -> str:
    if scheduler == "slurm":
        dependency = [f"--dependency=afterok:{':'.join(after)}"] if after else []
        return _run(["sbatch", "--parsable", *dependency, str(script)]).split(";")[0]
    dependency = ["-W", f"depend=afterok:{':'.join(after)}"] if after else []
    return _run(["qsub", *dependency, str(script)])


def submit_sweep(scheduler: str, scripts: list[Path], aggregate: Path) -> dict[str, Any]:
    """Submit every point, then the aggregation job after all of them; record the ids in sweep.json."""
    submitted: list[str] = []
    try:
        jobs = []
        for script in scripts:
            jobs.append({"script": script.name, "job_id": _submit_one(scheduler, script, [])})
            submitted.append(jobs[-1]["job_id"])
        final = {"script": aggregate.name, "job_id": _submit_one(scheduler, aggregate, submitted)}
    except SubmitError:
        for job_id in submitted:
            subprocess.run(["scancel" if scheduler == "slurm" else "qdel", job_id], capture_output=True)
        raise
    state = {"scheduler": scheduler, "submitted": records.utc_now().isoformat(), "jobs": jobs, "aggregate": final}
    path = aggregate.parent / STATE_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    tmp.replace(path)
    return state


SLURM_STATES = {"PENDING": "pending", "CONFIGURING": "pending", "RUNNING": "running", "COMPLETING": "running",
                "COMPLETED": "done"}
"""Every other Slurm state (FAILED, CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, ...) is `failed`."""


def job_state(scheduler: str, job_id: str) -> str:
    """pending, running, done, failed, blocked (a dependency failed) or unknown (the scheduler forgot it)."""
    if scheduler == "slurm":
        try:
            line = _run(["scontrol", "show", "job", job_id, "--oneliner"])
        except SubmitError:
            return "unknown"
        match = re.search(r"\bJobState=(\S+)", line)
        state = match.group(1) if match else "UNKNOWN"
        if state == "PENDING" and "Reason=DependencyNeverSatisfied" in line:
            return "blocked"  # a job it depends on failed: it will never start
        return SLURM_STATES.get(state, "failed")
    try:
        text = _run(["qstat", "-x", "-f", job_id])
    except SubmitError:
        return "unknown"
    state = re.search(r"job_state = (\S+)", text)
    exit_status = re.search(r"Exit_status = (-?\d+)", text)
    if not state:
        return "unknown"
    if state.group(1) in ("F", "C"):
        return "done" if exit_status and exit_status.group(1) == "0" else "failed"
    return {"Q": "pending", "H": "pending", "W": "pending", "R": "running", "E": "running"}.get(state.group(1), "pending")


def sweep_status(sweep_dir: str | Path) -> list[dict[str, str]]:
    """One row per job of a submitted sweep."""
    state = json.loads((Path(sweep_dir) / STATE_FILE).read_text())
    return [{**job, "state": job_state(state["scheduler"], job["job_id"])} for job in [*state["jobs"], state["aggregate"]]]

"""Local launch: N worker processes on this machine through torch's elastic agent (torchrun's engine).

The workers run `python -m hpcbench.worker` with the resolved config as flags — the same entry
point a cluster launcher uses. When any worker fails, the agent stops the others and this
module makes sure a record with status `failed` says which rank failed and why.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

from hpcbench import records
from hpcbench.config import RunConfig
from hpcbench.flags import config_to_args


class RunFailed(RuntimeError):
    """A run ended without a successful record; the message says which rank failed and how."""

    def __init__(self, message: str, record_path: Path) -> None:
        super().__init__(message)
        self.record_path = record_path


def run_local(cfg: RunConfig) -> Path:
    """Run `cfg` (already resolved) on cfg.num_procs local processes; returns the record's path."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    run_id = records.new_run_id()
    path = records.record_path(cfg.out_dir, cfg.workload, cfg.engine, cfg.num_procs, run_id)
    launch_config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=cfg.num_procs,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone does
        max_restarts=0,  # a benchmark that silently restarts would time the restart
        monitor_interval=0.1,
    )
    # The world size comes from the agent, so --nproc is not passed on.
    entrypoint_args = ["-m", "hpcbench.worker", *config_to_args(cfg, skip=("num_procs",)), "--run-id", run_id]
    started = records.utc_now().isoformat()
    with _worker_environment(cfg), _quiet_elastic_logs():
        try:
            elastic_launch(launch_config, sys.executable)(*entrypoint_args)
        except ChildFailedError as exc:
            reason = failure_reason(exc)
            _record_failure(cfg, path, run_id, reason, started)
            raise RunFailed(reason, path) from None
    if not path.exists():
        reason = "workers exited without writing a record"
        _record_failure(cfg, path, run_id, reason, started)
        raise RunFailed(reason, path)
    return path


def failure_reason(exc) -> str:
    """One line: the rank that caused the failure, and its error or signal.

    A rank killed by a signal other than SIGTERM (which the agent itself sends to the survivors
    when it tears the group down) is the cause, even when a peer's lost-connection error bears an
    earlier timestamp: the agent dates a signalled death only when it notices it.
    """
    external = sorted(r for r, f in exc.failures.items() if f.exitcode < 0 and f.signal_name() != "SIGTERM")
    rank, failure = (external[0], exc.failures[external[0]]) if external else exc.get_first_failure()
    how = f"killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
    message = failure.message.get("message", "") if isinstance(failure.message, dict) else failure.message or ""
    first_line = message.strip().splitlines()[0] if message.strip() else ""
    detail = f": {first_line}" if first_line and not first_line.startswith(("To enable traceback", "Signal ")) else ""
    others = sorted(r for r in exc.failures if r != rank)
    tail = f" (then ranks {others})" if others else ""
    return f"rank {rank} failed, {how}{detail}{tail}"


def _record_failure(cfg: RunConfig, path: Path, run_id: str, reason: str, started: str) -> None:
    """Write the failed record, or complete rank 0's: only the launcher knows which rank caused it."""
    try:
        record = records.load(path)
    except (OSError, ValueError):
        record = records.make_record(
            run_id=run_id, status="failed", reason=None, config=cfg.to_dict(), workload=None, metrics=None, ranks=[],
            provenance={"launcher": "hpcbench-local", "world_size": cfg.num_procs, "started": started,
                        "ended": records.utc_now().isoformat()},
        )
    detail = record.get("reason")
    record["status"] = "failed"
    record["reason"] = reason if not detail or detail in reason else f"{reason}; {detail}"
    records.write_atomic(path, record)


@contextmanager
def _worker_environment(cfg: RunConfig):
    """Threads per worker go through OMP_NUM_THREADS as well, for libraries that read only that."""
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(cfg.num_threads)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved


@contextmanager
def _quiet_elastic_logs():
    """The elastic agent logs every rendezvous step at INFO; users need only warnings."""
    logger = logging.getLogger("torch.distributed.elastic")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)

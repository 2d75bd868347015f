"""Local launch: N worker processes on this machine, through the launcher the engine asks for
(torchrun's contract: ranks forked from a warm zygote, or torch's elastic agent with HPCBENCH_START=cold;
horovodrun; or mpirun).

The workers run `python -m hpcbench.worker` with the resolved config as flags — the same entry
point a cluster launcher uses — and the record's path, computed here once. When any worker
fails, the launcher stops the others and this module makes sure a record with status `failed`
says which rank failed and why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hpcbench import records
from hpcbench.config import RunConfig
from hpcbench.engines import ENGINES
from hpcbench.flags import config_to_args
from hpcbench.guard import STOP_SIGNALS
from hpcbench.launch import warm


class RunFailed(RuntimeError):
    """A run ended without a successful record; the message says which rank failed and how."""

    def __init__(self, message: str, record_path: Path) -> None:
        super().__init__(message)
        self.record_path = record_path


class RunInterrupted(RunFailed):
    """A stop signal ended the run early; its record has status `interrupted`."""

    def __init__(self, message: str, record_path: Path, signum: int) -> None:
        super().__init__(message, record_path)
        self.signum = signum


def run_local(cfg: RunConfig) -> Path:
    """Run `cfg` (already resolved) on cfg.num_procs local processes; returns the record's path."""
    run_id = records.new_run_id()
    path = records.record_path(cfg.out_dir, cfg.workload, cfg.engine, cfg.num_procs, run_id)
    # The world size comes from the launcher, so --nproc is not passed on.
    entrypoint_args = ["-m", "hpcbench.worker", *config_to_args(cfg, skip=("num_procs",)), "--run-id", run_id,
                       "--record", str(path)]
    launcher = ENGINES.get(cfg.engine).local_launcher
    launch = local_launcher(launcher)
    started = records.utc_now().isoformat()
    threads = _worker_environment(cfg) if launcher in EXPORTS_OMP_NUM_THREADS else contextlib.nullcontext()
    with threads, _quiet_elastic_logs(), ForwardStopSignals() as signals:
        try:
            failure = launch(cfg.num_procs, cfg.timeout_s, entrypoint_args, cfg.engine_options)
        finally:
            _remove_temp_files(path)
        record = _read(path)  # once: what the workers left, if anything
        status = record["status"] if record else None
        interrupted = bool(signals.received) or status == "interrupted"
        if failure and not interrupted:
            _complete_record(cfg, path, record, run_id, "failed", failure, started)
            raise RunFailed(failure, path)
        if interrupted:
            signum = signals.received[0] if signals.received else _record_signal(record)
            reason = f"interrupted by {signal.Signals(signum).name}"
            if status is None:  # killed by the second signal, or stopped before rank 0 could write
                _complete_record(cfg, path, None, run_id, "interrupted", f"{reason}; no step timings were saved", started)
            elif status == "interrupted":
                reason = record["reason"]
            raise RunInterrupted(reason, path, signum)
        if status is None:
            reason = "workers exited without writing a record"
            _complete_record(cfg, path, None, run_id, "failed", reason, started)
            raise RunFailed(reason, path)
    return path


def _launch_elastic(num_procs: int, timeout_s: float, entrypoint_args: list[str], options: dict[str, Any]) -> str | None:
    """torch's elastic agent (torchrun's engine), a new interpreter per rank; returns why it failed, or None."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    try:
        elastic_launch(elastic_config(num_procs, timeout_s), sys.executable)(*entrypoint_args)
    except ChildFailedError as exc:
        return failure_reason(exc)
    return None


def _launch_warm(num_procs: int, timeout_s: float, entrypoint_args: list[str], options: dict[str, Any]) -> str | None:
    """torchrun's contract (its rank variables, an agent-hosted store, fail-fast), ranks forked from the warm
    zygote (hpcbench.launch.warm); returns why it failed, or None."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    module_args = entrypoint_args[1:]  # ["-m", MODULE, ARGS...]
    try:
        failures = warm.launch(num_procs, timeout_s, module_args, shutdown_timeout_s(timeout_s))
    except warm.WarmStartUnsupported as exc:  # before any rank started
        print(f"hpcbench: ranks start cold: warm starts need {exc}", file=sys.stderr)
        return _launch_elastic(num_procs, timeout_s, entrypoint_args, options)
    except warm.WarmStartError as exc:
        return f"warm start failed: {exc}; HPCBENCH_START=cold starts each rank as a new interpreter"
    return failure_reason(ChildFailedError(module_args[0], failures)) if failures else None


def _launch_horovodrun(num_procs: int, timeout_s: float, entrypoint_args: list[str], options: dict[str, Any]) -> str | None:
    """Horovod's own launcher with the controller the engine options ask for (gloo unless MPI);
    it ends every worker when one fails."""
    n = num_procs
    controller = "--mpi" if options.get("controller") == "mpi" else "--gloo"
    command = [sys.executable, "-m", "horovod.runner.launch", controller, "-np", str(n), "-H", f"localhost:{n}",
               "--start-timeout", str(int(timeout_s)), sys.executable, *entrypoint_args]
    first_failure: dict[str, str] = {}
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace",
                          env={**os.environ, **_mpi_as_root()}) as horovodrun:
        for line in horovodrun.stderr:  # passed through; Horovod names the first rank that failed
            sys.stderr.write(line)
            match = re.match(r"(Process name|Exit code): (\S+)", line.strip())
            if match:
                first_failure.setdefault(match.group(1), match.group(2))
    if horovodrun.returncode == 0:
        return None
    if "Process name" in first_failure:
        return f"rank {first_failure['Process name']} failed, exit code {first_failure.get('Exit code', '?')} (horovodrun)"
    return f"horovodrun exited with code {horovodrun.returncode}"


def _launch_mpirun(num_procs: int, timeout_s: float, entrypoint_args: list[str], options: dict[str, Any]) -> str | None:
    """The MPI library's own launcher (mpirun ends every rank when one fails); returns why it failed, or None."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        return "mpirun is not on PATH (install an MPI, e.g. Debian's openmpi-bin)"
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
    open_mpi = "Open MPI" in version or "OpenRTE" in version
    command = [mpirun, "-np", str(num_procs), *(["--oversubscribe"] if open_mpi else []), sys.executable, *entrypoint_args]
    result = subprocess.run(command, env={**os.environ, **(_mpi_as_root() if open_mpi else {})})
    return None if result.returncode == 0 else f"mpirun exited with code {result.returncode}"


def _mpi_as_root() -> dict[str, str]:
    """Open MPI refuses to start as root unless told twice; containers and CI run as root."""
    return {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"} if os.geteuid() == 0 else {}


def elastic_config(num_procs: int, timeout_s: float):
    """torchrun --standalone, in code: one node, a free port, no restarts."""
    from torch.distributed.launcher.api import LaunchConfig

    return LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=num_procs,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone does
        max_restarts=0,  # a benchmark that silently restarts would time the restart
        monitor_interval=0.1,
        signals_to_handle="SIGHUP,SIGQUIT",  # SIGINT, SIGTERM and SIGUSR1 are ours: see ForwardStopSignals
        shutdown_timeout=shutdown_timeout_s(timeout_s),
    )


def shutdown_timeout_s(timeout_s: float) -> int:
    """How long ranks asked to stop may take: they finish their step within the step watchdog's limit, then write."""
    return int(2 * timeout_s) + 10


LOCAL_LAUNCHERS = {"torchrun": _launch_elastic, "horovodrun": _launch_horovodrun, "mpirun": _launch_mpirun}
"""An engine's `local_launcher` -> how its ranks start on this machine (a new interpreter each)."""
WARM_LAUNCHERS = {"torchrun": _launch_warm}
"""The launchers whose ranks start warm by default (HPCBENCH_START=cold: as above). Horovod's and MPI's
launchers start ranks themselves; their contracts (horovodrun's gloo rendezvous, MPI's PMI) are theirs."""


def local_launcher(name: str):
    """How ranks of launcher `name` start here: warm where it can, unless HPCBENCH_START=cold."""
    if warm.start_mode() == "warm" and name in WARM_LAUNCHERS:
        return WARM_LAUNCHERS[name]
    return LOCAL_LAUNCHERS[name]


EXPORTS_OMP_NUM_THREADS = {"torchrun"}
"""Launchers whose workers get OMP_NUM_THREADS (torchrun's CLI exports it; horovodrun and mpirun do
not, and benchmarks/engines.py measured Horovod 3 % slower with it than a stock horovodrun loop:
Horovod's own reductions read it). The workers set torch's threads from --threads either way."""


def run_probe(module: str, args: list[str], launcher: str, num_procs: int, timeout_s: float, record: Path) -> Path:
    """A probe's rank program (`python -m MODULE ARGS`) on num_procs local processes, started by `launcher`; returns
    the record's path. Launch knows a probe only by its module: hpcbench.probes names the rest."""
    with _quiet_elastic_logs():
        failure = local_launcher(launcher)(num_procs, timeout_s, ["-m", module, *args, "--out", str(record.parent),
                                                                  "--record", str(record)], {})
    if failure:
        raise RunFailed(failure, record)
    return record


class ForwardStopSignals:
    """The launcher's SIGINT/SIGTERM/SIGUSR1 policy, like torchrun's but two-stage.

    First signal: pass it to each worker (not its process group: DataLoader workers must keep
    feeding), so the ranks agree to stop after a step and write an `interrupted` record.
    Second signal: SIGKILL every process below the launcher at once.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self._saved: dict[int, object] = {}

    def __enter__(self) -> ForwardStopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        self.received.append(signum)
        first = len(self.received) == 1
        targets = worker_pids(os.getpid()) if first else descendant_pids(os.getpid())
        for pid in targets:
            try:
                os.kill(pid, signum if first else signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _process_table() -> dict[int, tuple[int, bytes, bytes]]:
    """pid -> (parent pid, command line, name), from /proc (launchers keep their handles private)."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_bytes()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        name = text[text.index(b"(") + 1 : text.rindex(b")")]
        fields = text[text.rindex(b")") + 1 :].split()
        if fields[0] != b"Z":
            table[int(stat.parent.name)] = (int(fields[1]), cmdline, name)
    return table


def descendant_pids(root: int, table: dict[int, tuple[int, bytes, bytes]] | None = None) -> list[int]:
    table = _process_table() if table is None else table
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _, _) in table.items() if ppid == parent]
        found += children
        frontier += children
    return found


def worker_pids(root: int) -> list[int]:
    """The hpcbench workers below `root`, however deep the launcher nests them (horovodrun does): processes
    started as `python -m hpcbench.worker`, and the ranks a warm zygote forked (its children, by name)."""
    table = _process_table()
    zygotes = {pid for pid, (_, _, name) in table.items() if name == warm.ZYGOTE_NAME}
    return [pid for pid in descendant_pids(root, table)
            if pid in table and (_runs_worker(table[pid][1]) or table[pid][0] in zygotes)]


def _runs_worker(cmdline: bytes) -> bool:
    """`python -m hpcbench.worker ...` itself: not a shell wrapping it (`sh -c "..."`), nor a launcher
    whose own arguments name it (`python -m horovod.runner.launch ... -m hpcbench.worker`)."""
    args = cmdline.split(b"\0")
    return b"-m" in args and args[args.index(b"-m") + 1 : args.index(b"-m") + 2] == [b"hpcbench.worker"]


def _read(path: Path) -> dict | None:
    try:
        return records.load(path)
    except (OSError, ValueError):
        return None


def _record_signal(record: dict) -> int:
    """The stop signal named in a worker-written interrupted record (workers signalled directly)."""
    reason = record.get("reason") or ""
    for sig in STOP_SIGNALS:
        if sig.name in reason:
            return sig
    return signal.SIGTERM


def _remove_temp_files(path: Path) -> None:
    """A worker killed while writing leaves its temp file; the record itself is whole or absent."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "remote process exited")
"""How a rank's error reads when a peer went away under it (gloo; NCCL): a consequence, not a cause."""


def failure_reason(exc) -> str:
    """One line: the rank that caused the failure, and its error or signal.

    A rank killed by a signal other than SIGTERM (which the launcher itself sends to the survivors when
    it tears the group down) is the cause, even when a peer's lost-connection error bears an earlier
    timestamp: a signalled death is dated only when it is noticed. Else a rank that failed on its own
    is the cause before one whose connection to a failed peer broke: the raising rank closes its
    connections before its error file is written, so its peer's error can be the earlier one.
    """
    external = sorted(r for r, f in exc.failures.items() if f.exitcode < 0 and f.signal_name() != "SIGTERM")
    own = [r for r, f in exc.failures.items() if not any(text in _message(f) for text in LOST_PEER)]
    if external:
        rank = external[0]
    elif own:
        rank = min(own, key=lambda r: (exc.failures[r].timestamp, r))
    else:
        rank = exc.get_first_failure()[0]
    failure = exc.failures[rank]
    how = f"killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
    first_line = _message(failure).strip().splitlines()[0] if _message(failure).strip() else ""
    detail = f": {first_line}" if first_line and not first_line.startswith(("To enable traceback", "Signal ")) else ""
    others = sorted(r for r in exc.failures if r != rank)
    tail = f" (then ranks {others})" if others else ""
    return f"rank {rank} failed, {how}{detail}{tail}"


def _message(failure) -> str:
    return failure.message.get("message", "") if isinstance(failure.message, dict) else failure.message or ""


def _complete_record(cfg: RunConfig, path: Path, record: dict | None, run_id: str, status: str, reason: str,
                     started: str) -> None:
    """Write the record, or complete rank 0's: only the launcher sees every rank and every signal."""
    if record is None:
        record = records.make_record(
            run_id=run_id, status=status, reason=None, config=cfg.to_dict(), workload=None, metrics=None, ranks=[],
            provenance={"launcher": "hpcbench-local", "world_size": cfg.num_procs, "started": started,
                        "ended": records.utc_now().isoformat()},
        )
    detail = record.get("reason")
    record["status"] = status
    said = not detail or detail.split(": ", 1)[-1] in reason  # rank 0's own words, already quoted
    record["reason"] = reason if said else f"{reason}; {detail}"
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

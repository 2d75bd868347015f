"""Warm local starts: each rank is forked from an interpreter that has already imported torch and hpcbench.

A cold start runs a new interpreter per rank, and each spends 1.5-3 s importing torch (and ~1 s more
on torch._dynamo and sympy, which the FLOP counter pulls in) before it can meet the others; a sweep
paid that at every point. Here one fork server per launching process (the zygote, started by
`python -m hpcbench.launch.warm FD LAUNCHER_PID`) imports all of it once and forks every rank of every run from
then on. Like multiprocessing's forkserver, and unlike forking the launcher itself, it forks from a
known state: one thread (it refuses to fork with more), no thread pool (OMP_NUM_THREADS=1 while it
imports, so OpenBLAS starts none), no process group, no store.

What a cold start guarantees still holds, and the launcher here keeps it:
- a rank runs `python -m MODULE ARGS` as a new interpreter would (runpy, as `__main__`), with the
  launcher's environment, working directory and standard streams of this launch, torchrun's rank
  variables, and the thread counts its environment asks for (re-applied: libraries read them at load);
- the first rank to fail ends the others (SIGTERM, then SIGKILL after the shutdown timeout), and the
  failure names the rank and its error as torch's elastic agent does (same error files, same reason);
- ranks are hpcbench workers to `worker_pids` (signals reach each of them, not their DataLoader
  workers); they die with the zygote, and the zygote kills them when the launcher goes away.

The zygote is reused while the launcher's environment is the one it started with (OMP_NUM_THREADS
aside, which is set per run), and restarted otherwise: variables read at start-up must be right.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hpcbench.errors import ConfigError

START_VARIABLE = "HPCBENCH_START"
"""warm (the default): ranks forked from the zygote; cold: a new interpreter per rank (torch's elastic agent)."""
START_MODES = ("warm", "cold")

ZYGOTE_NAME = b"hpcbench-zygote"
"""The zygote's process name (/proc/PID/comm, 15 bytes at most): its children are the ranks."""
RANK_NAME = b"hpcbench-rank"

PRELOAD = ("hpcbench.worker", "hpcbench.probes.netbench", "threadpoolctl", "torch.utils.flop_counter", "torch._dynamo",
           "torchvision", "gymnasium")
"""What a rank would import itself: the entry points, and the modules a first step pulls in lazily
(measured per rank: torch._dynamo 0.70 s and sympy with it 0.37 s, the FLOP counter 0.10 s, torchvision ~0.4 s).
A module that is not installed is skipped."""

READY_TIMEOUT_S = 300.0
"""How long the zygote may take to import everything: seconds here, minutes on a cold shared filesystem."""
FAILED_TOGETHER_S = 2.0
"""After a rank fails, how long the launcher waits for the others to fail with it before it ends them: a rank
that raised closes its connections and its peers fail within milliseconds, but which of them exits first is
chance on a loaded machine (seen: the peer, in 1 run of ~10). With all of them in hand, the cause is named."""
PER_RUN_VARIABLES = ("OMP_NUM_THREADS",)
"""Set per run by the launcher (the zygote itself always imports with 1): no reason to restart it."""


class WarmStartError(RuntimeError):
    """The zygote could not start, or could not fork a rank: the run fails, saying so."""


class WarmStartUnsupported(WarmStartError):
    """This machine lacks what the zygote needs (pidfds: Linux 5.3): ranks start cold instead."""


def start_mode(environ: dict[str, str] | None = None) -> str:
    """warm or cold, from HPCBENCH_START; anything else is refused before any rank starts."""
    value = (os.environ if environ is None else environ).get(START_VARIABLE, "warm")
    if value not in START_MODES:
        raise ConfigError(START_VARIABLE, f"{value!r} is not one of: {', '.join(START_MODES)}")
    return value


# --- the line between launcher and zygote: one JSON object per line, file descriptors beside them


class Channel:
    """A socket carrying JSON lines; `receive` waits at most `timeout` seconds."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        data = json.dumps(message).encode() + b"\n"
        if fds:
            sent = socket.send_fds(self.sock, [data], fds)
            data = data[sent:]
        if data:
            self.sock.sendall(data)

    def has_line(self) -> bool:
        return b"\n" in self._buffer

    def receive(self, timeout: float | None) -> tuple[dict[str, Any], list[int]] | None:
        """The next message and the descriptors that came with it; None on timeout. EOFError when the peer is gone."""
        fds: list[int] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.sock], [], [], left)[0]:
                return None
            data, more_fds, _, _ = socket.recv_fds(self.sock, 65536, 8)
            if not data:
                raise EOFError("the other end closed")
            self._buffer += data
            fds += more_fds
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line), fds


# --- the zygote


def _prctl(option: int, value: int | bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(option, value, 0, 0, 0)


PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15


def serve(fd: int, launcher: int) -> None:
    """The zygote: import everything once, then fork a rank per request and report how each ended."""
    _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))  # a launcher gone (even mid-import, even killed) ends it
    if os.getppid() != launcher:
        os._exit(0)
    _prctl(PR_SET_NAME, ZYGOTE_NAME)
    channel = Channel(socket.socket(fileno=fd))
    running: dict[int, int] = {}  # pidfd -> pid
    try:
        try:
            os.close(os.pidfd_open(os.getpid()))  # how it waits for ranks (Linux 5.3, 2019)
        except (AttributeError, OSError) as exc:
            channel.send({"unsupported": f"no pidfd_open ({exc})"})
            os._exit(0)
        for module in PRELOAD:
            try:
                importlib.import_module(module)
            except ImportError:
                pass
        gc.freeze()  # what the imports made stays out of the ranks' collections (no copy-on-write of it)
        channel.send({"ready": os.getpid()})
        while True:
            _serve_once(channel, running)
    except (EOFError, OSError):  # the launcher closed its end: its job ends with it
        for pid in running.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os._exit(0)


def _serve_once(channel: Channel, running: dict[int, int]) -> None:
    """Report the ranks that ended, then fork the next rank asked for, if any."""
    readable = select.select([channel.sock, *running], [], [], 0 if channel.has_line() else None)[0]
    for pidfd in set(readable) & set(running):
        pid = running.pop(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        channel.send({"exited": pid, "exitcode": os.waitstatus_to_exitcode(status)})
    if not (channel.has_line() or channel.sock in readable):
        return
    message = channel.receive(timeout=0)
    if message is None:  # part of a line so far
        return
    request, fds = message
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        channel.send({"refused": f"the zygote has {threads} threads; it forks only with one"})
        return
    zygote_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        _become_rank(request, fds, channel, list(running), zygote_pid)
    for received in fds:
        os.close(received)
    running[os.pidfd_open(pid)] = pid
    channel.send({"started": pid})


def _become_rank(request: dict[str, Any], fds: list[int], channel: Channel, inherited: list[int], zygote_pid: int) -> None:
    """In the forked child: take this launch's streams, directory, environment and threads, then run the module."""
    code = 1
    try:
        channel.sock.close()  # the launcher's line is the zygote's, not a rank's
        for pidfd in inherited:
            os.close(pidfd)
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))  # the zygote's end is the job's end
        if os.getppid() != zygote_pid:  # it died before the line above took effect
            os._exit(1)
        _prctl(PR_SET_NAME, RANK_NAME)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        for target, received in zip(request["streams"], fds):  # the launcher's stdout and stderr of this launch
            os.dup2(received, target)
            os.close(received)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        _apply_thread_settings(os.environ)
        module, *args = request["module_args"]
        sys.argv = [module, *args]
        sys.modules.pop(module, None)  # run afresh as __main__, as `python -m` would (its imports stay warm)
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if not isinstance(exc.code, int) and exc.code is not None:
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _apply_thread_settings(environ: dict[str, str]) -> None:
    """OMP_NUM_THREADS as a new interpreter would have read it at load: torch's pool and the BLAS of numpy."""
    threads = environ.get("OMP_NUM_THREADS")
    if not (threads and threads.isdigit() and int(threads) > 0):
        return
    import torch

    torch.set_num_threads(int(threads))
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(threads), user_api="blas")


# --- the launcher's side


@dataclass
class Zygote:
    """The launcher's handle on its fork server."""

    process: subprocess.Popen
    channel: Channel
    environment: dict[str, str]
    pid: int = 0
    exits: list[tuple[int, int]] = field(default_factory=list)
    """(pid, exit code) reported while waiting for something else."""

    @classmethod
    def start(cls) -> Zygote:
        ours, theirs = socket.socketpair()
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen([sys.executable, "-m", "hpcbench.launch.warm", str(theirs.fileno()), str(os.getpid())],
                                   pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL,
                                   start_new_session=True)  # Ctrl-C reaches the launcher, which forwards it once
        theirs.close()
        return cls(process, Channel(ours), _comparable(os.environ))

    def wait_ready(self) -> None:
        if self.pid:
            return
        try:
            message = self.channel.receive(timeout=READY_TIMEOUT_S)
        except EOFError:
            message = None
        if message is not None and "unsupported" in message[0]:
            self.close()
            raise WarmStartUnsupported(message[0]["unsupported"])
        if message is None or "ready" not in message[0]:
            self.close()
            raise WarmStartError(f"the zygote did not start (exit code {self.process.poll()})")
        self.pid = message[0]["ready"]

    def fork(self, module_args: list[str], env: dict[str, str]) -> int:
        """Start one rank; its pid."""
        self.wait_ready()
        streams = [fd for fd in (1, 2) if _is_open(fd)]
        request = {"module_args": module_args, "env": env, "cwd": os.getcwd(), "streams": streams}
        try:
            self.channel.send(request, fds=streams)
            while "started" not in (message := self.next_message(timeout=None)):
                if "refused" in message:
                    raise WarmStartError(message["refused"])
        except (EOFError, OSError) as exc:
            raise WarmStartError(f"the zygote ended while starting a rank ({exc})") from None
        return message["started"]

    def next_message(self, timeout: float | None) -> dict[str, Any] | None:
        received = self.channel.receive(timeout)
        if received is None:
            return None
        message = received[0]
        if "exited" in message:
            self.exits.append((message["exited"], message["exitcode"]))
        return message

    def usable(self) -> bool:
        return self.process.poll() is None and self.environment == _comparable(os.environ)

    def close(self) -> None:
        self.channel.sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _comparable(environ: os._Environ | dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k not in PER_RUN_VARIABLES}


_ZYGOTE: Zygote | None = None


def zygote() -> Zygote:
    """This process's zygote: started on first use, replaced when it died or the environment changed."""
    global _ZYGOTE
    if _ZYGOTE is not None and not _ZYGOTE.usable():
        _ZYGOTE.close()
        _ZYGOTE = None
    if _ZYGOTE is None:
        _ZYGOTE = Zygote.start()
    return _ZYGOTE


def shutdown() -> None:
    """End this process's zygote now (it ends anyway when this process does)."""
    global _ZYGOTE
    if _ZYGOTE is not None:
        _ZYGOTE.close()
        _ZYGOTE = None


def start_early() -> None:
    """Start the zygote now, so that its imports overlap the caller's own (the CLI imports torch too)."""
    if start_mode() == "warm":
        zygote()


def launch(num_procs: int, timeout_s: float, module_args: list[str], shutdown_timeout_s: float) -> dict[int, Any]:
    """Run `python -m MODULE ARGS` as num_procs forked ranks; {rank: ProcessFailure} of the first to fail, or {}.

    The launcher hosts the rendezvous store, as torch's elastic agent does (TORCHELASTIC_USE_AGENT_STORE):
    its port comes from the kernel, so two launches on one machine never race for one."""
    from torch.distributed import TCPStore

    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=timeout_s))
    common = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store.port),
              "TORCHELASTIC_USE_AGENT_STORE": "True", "WORLD_SIZE": str(num_procs),
              "LOCAL_WORLD_SIZE": str(num_procs), "GROUP_RANK": "0", START_VARIABLE: "warm"}
    server = zygote()
    with tempfile.TemporaryDirectory(prefix="hpcbench-ranks-") as errors:
        ranks: dict[int, int] = {}  # pid -> rank
        try:
            for rank in range(num_procs):
                env = {**common, "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "TORCHELASTIC_ERROR_FILE": os.path.join(errors, f"{rank}.json")}
                ranks[server.fork(module_args, env)] = rank
            return _supervise(server, ranks, errors, shutdown_timeout_s)
        except BaseException:
            _end(server, ranks, signal.SIGKILL, 0.0)
            raise
        finally:
            del store


def _supervise(server: Zygote, ranks: dict[int, int], errors: str, shutdown_timeout_s: float) -> dict[int, Any]:
    """Wait for every rank; after the first failure, collect the ranks that fail with it for a moment, then end the
    others (as the elastic agent: SIGTERM, then SIGKILL)."""
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    running = dict(ranks)
    failed: list[tuple[int, int]] = []
    deadline = None
    for pid, exitcode in _exits(server, running, until=lambda: deadline):
        if exitcode != 0:
            failed.append((pid, exitcode))
            deadline = deadline or time.monotonic() + FAILED_TOGETHER_S
    if running:
        _end(server, running, signal.SIGTERM, shutdown_timeout_s)
    return {ranks[pid]: ProcessFailure(ranks[pid], pid, code, os.path.join(errors, f"{ranks[pid]}.json"))
            for pid, code in failed}


def _exits(server: Zygote, running: dict[int, int], until: Callable[[], float | None]) -> Iterator[tuple[int, int]]:
    """(pid, exit code) of each rank as it ends, until none runs or the monotonic time `until()` has passed;
    ranks left when the zygote dies were killed with it."""
    while running:
        deadline = until()
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return
        if not server.exits:
            try:
                server.next_message(timeout=left)
            except (EOFError, OSError):
                server.exits[:] = [(pid, -signal.SIGKILL) for pid in running]
            continue
        pid, exitcode = server.exits.pop(0)
        if running.pop(pid, None) is not None:
            yield pid, exitcode


def _end(server: Zygote, running: dict[int, int], sig: int, grace_s: float) -> None:
    """Signal the ranks still running; SIGKILL those left after grace_s."""
    for pid in list(running):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + grace_s
    while running:
        try:
            while server.exits:
                running.pop(server.exits.pop(0)[0], None)
            if not running:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                for pid in running:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                deadline = float("inf")
                left = None
            server.next_message(timeout=left)
        except (EOFError, OSError):  # the zygote is gone, and its ranks with it
            running.clear()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))

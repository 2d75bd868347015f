"""Bounded failure inside one rank: stop signals, a stuck-step watchdog, test-only fault injection.

Launch-agnostic: the same code runs under hpcbench's launcher, torchrun, srun or mpirun.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
"""Ctrl-C, a scheduler's or launcher's polite kill, and the Slurm template's time-limit warning."""

FAULT_VARIABLE = "HPCBENCH_INJECT_FAULT"
"""Test-only: `hang:rank=1:step=3` sleeps forever in that step, `raise:rank=1:step=3` raises there,
`slow:rank=1:ms=50` adds 50 ms to every step of rank 1 (a straggler)."""

FAULT_KINDS = ("hang", "raise", "slow")


class StopSignals:
    """The first stop signal asks this rank to stop after its current step; a second one exits at once.

    Exiting at once never leaves a partial record: records are renamed into place whole.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            os.write(2, f"hpcbench: second signal ({signal.Signals(signum).name}), exiting now\n".encode())
            os._exit(128 + signum)
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None


class AgreedStop:
    """Every rank stops after the same step, whichever rank got the signal.

    Ranks vote now and then: an asynchronous MAX over (stop flag, seconds per step), read one
    voting interval later, when it has long completed, so a vote never waits. The reduced step
    time sets the next interval to about VOTE_INTERVAL_S; all ranks compute the same one from
    the same numbers, so they always vote at the same steps. Voting every step cost 7 % of the
    mlp workload's throughput on 2 CPU processes; this costs nothing measurable.
    """

    VOTE_INTERVAL_S = 0.5
    MAX_STEPS_BETWEEN_VOTES = 10_000

    def __init__(self, all_reduce_max_async: Callable[[list[float]], Callable[[], list[float]]], stop: StopSignals,
                 clock: Callable[[], float]) -> None:
        self._all_reduce_max_async = all_reduce_max_async
        """The engine's: starts a MAX over every rank and returns what waits for it."""
        self._stop = stop
        self._clock = clock
        self._pending: Callable[[], list[float]] | None = None
        self._interval = 1  # steps between votes: the same on every rank
        self._countdown = 1
        self._last_vote_at: float | None = None

    def poll(self) -> bool:
        """Call before every step; True means every rank stops here."""
        self._countdown -= 1
        if self._countdown > 0:
            return False
        steps_since_last_vote = self._interval
        if self._pending:
            stop_flag, seconds_per_step = self._pending()
            self._pending = None
            if stop_flag:
                return True
            wanted = int(self.VOTE_INTERVAL_S / seconds_per_step) if seconds_per_step > 0 else 1
            self._interval = max(1, min(self.MAX_STEPS_BETWEEN_VOTES, wanted))
        now = self._clock()
        mine = (now - self._last_vote_at) / steps_since_last_vote if self._last_vote_at is not None else 0.0
        self._last_vote_at = now
        self._pending = self._all_reduce_max_async([float(self._stop.requested), mine])
        self._countdown = self._interval
        return False

    def drain(self) -> None:
        """Finish the vote in flight, so no rank leaves with a collective pending."""
        if self._pending:
            self._pending()
            self._pending = None


class StepWatchdog:
    """Ends this process, with every thread's traceback on stderr, when one step runs far too long.

    A collective timeout only fires in a rank that waits for a peer; this also bounds a rank that
    is stuck on its own (a lone process, a data loader that never returns). It fires 1.5 to 2
    times the collective timeout after a stuck step began, so that where both apply the
    collective's error, which names the operation, comes first. faulthandler's timer runs in a C
    thread, so it fires even while stuck code holds the GIL; arming it starts a thread (~40 us),
    so it is re-armed at most every quarter of its limit, not at every step.
    """

    def __init__(self, collective_timeout_s: float) -> None:
        self.limit_s = 2 * collective_timeout_s
        self._armed_at: float | None = None

    def step_started(self) -> None:
        now = time.monotonic()
        if self._armed_at is None or now - self._armed_at >= self.limit_s / 4:
            faulthandler.dump_traceback_later(self.limit_s, exit=True, file=sys.stderr)
            self._armed_at = now

    def __enter__(self) -> StepWatchdog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        faulthandler.cancel_dump_traceback_later()
        self._armed_at = None


@dataclass(frozen=True)
class Fault:
    kind: str
    rank: int
    step: int = 0
    """hang and raise: the step it fires at."""
    ms: float = 0.0
    """slow: milliseconds added to every step of that rank (a straggler)."""

    def maybe_fire(self, rank: int, step: int) -> None:
        """Called at the start of every step (warm-up steps count from 0, timed steps continue)."""
        if rank != self.rank:
            return
        if self.kind == "slow":
            time.sleep(self.ms / 1e3)
            return
        if step != self.step:
            return
        if self.kind == "raise":
            raise RuntimeError(f"injected fault at step {step}")
        print(f"hpcbench: rank {rank} hangs at step {step} (injected fault)", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)


def injected_fault(environ: Mapping[str, str] | None = None, variable: str = FAULT_VARIABLE) -> Fault | None:
    """The fault named by HPCBENCH_INJECT_FAULT (or a probe's own `variable`), if any; a malformed value is an
    error, not ignored."""
    text = (os.environ if environ is None else environ).get(variable)
    if not text:
        return None
    kind, *fields = text.split(":")
    second = "ms" if kind == "slow" else "step"
    try:
        values = dict(field.split("=", 1) for field in fields)
        fault = Fault(kind=kind, rank=int(values.pop("rank")), **{second: float(values.pop(second)) if second == "ms"
                                                                     else int(values.pop(second))})
    except (KeyError, ValueError):
        fault, values = None, {}
    if fault is None or values or kind not in FAULT_KINDS or fault.ms < 0:
        raise ValueError(f"{variable}={text!r}: expected hang|raise:rank=R:step=S or slow:rank=R:ms=M")
    return fault

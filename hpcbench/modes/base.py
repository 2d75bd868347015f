"""Run modes: what a run does with its training steps, as a sequence of named windows.

A mode is one module in this package: a `RunMode` subclass decorated with `@register`; its name is
a `--mode` value. Its `run` drives a `Session`: warm-up, windows of training steps (every
measurement is taken around each window, `hpcbench.measurements`), whatever it does between them
(an evaluation, a vote), and what it leaves for the record in `session.results`, which its
`merge` turns into the run's metrics on rank 0. The training step itself is the runner's
(`runner.TrainStep`); a mode decides only how many steps, in which windows, and what they mean.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from hpcbench.config import RunConfig
from hpcbench.engines import Engine
from hpcbench.guard import AgreedStop, Fault, StepWatchdog, StopSignals
from hpcbench.measurements import (COMPUTE_ONLY, INPUT_CACHED, INPUT_SYNTHETIC, SYNCED_WARMUP, THROUGHPUT, Meters,
                                   RankContext, no_mark)
from hpcbench.plugins import Registry
from hpcbench.progress import RunProgress
from hpcbench.training import CompileWatch, channels_last, compile_metrics
from hpcbench.workloads import DataContext, Workload

RUN_MODES: Registry[type[RunMode]] = Registry("run mode", "mode")


class Step(Protocol):
    """One training step (runner.TrainStep): what a session calls, and how it looks inside one."""

    steps_done: int
    batches: Any
    """Where the step takes its batches (measurements.input.TimedBatches): the input windows swap its source."""
    mark: Callable[[str], None]
    """Called at the step's phase boundaries; a measurement that looks inside steps sets it per window."""

    def __call__(self) -> torch.Tensor: ...


class Session:
    """One rank's run as a mode drives it: the step, the windows, and what the record will need.

    Every window starts with a barrier and ends the same step on every rank: a stop signal on any
    rank is agreed on by all (guard.AgreedStop), and a stopped window is not a measurement.
    """

    def __init__(self, *, cfg: RunConfig, engine: Engine, workload: Workload, options: Any, data: DataContext,
                 step: Step, local_model: nn.Module, wrapped: nn.Module, stop: StopSignals,
                 clock: Callable[[], float], watchdog: StepWatchdog, fault: Fault | None, progress: RunProgress) -> None:
        self.cfg, self.engine, self.clock = cfg, engine, clock
        self.workload, self.options, self.data = workload, options, data
        self.step = step
        self.local_model = local_model
        """The module itself: evaluations and descriptions (a wrapper's forward could start collectives)."""
        self.wrapped = wrapped
        """The engine's wrapper: its replica digest, counters and no_sync."""
        self.watchdog, self.fault = watchdog, fault
        self.meters = Meters(RankContext(device=engine.device, clock=clock, model=local_model,
                                         bucketing=engine.gradient_bucketing(wrapped),
                                         actions=engine.action_timeline(), batches=step.batches))
        self.agreed = AgreedStop(engine.all_reduce_max_async, stop, clock)
        self.compile_watch = CompileWatch(engine.device, engine.all_reduce_max, clock) if cfg.compile else None
        self.progress = progress
        """Rank 0's bar or lines (the mode's `progress`: it knows how many steps are planned)."""
        self.losses: list[torch.Tensor] = []
        """The throughput windows' losses, one per step, left on the device until the run ends."""
        self.stopped = False
        """The ranks agreed to stop early (a signal): nothing after it is measured."""
        self.repeats_done = 0
        """Complete throughput windows."""
        self.window_steps = cfg.num_steps
        """Steps in each throughput window."""
        self.replica_digest: str | None = None
        self.engine_counters: dict[str, Any] | None = None
        self.breakdown_note: str | None = None
        """Why there is no compute-only window, when there is none."""
        self.results: dict[str, Any] = {}
        """What the mode leaves for its `merge` (the compile watch's result, a time-to-accuracy curve)."""

    def train_one(self) -> torch.Tensor:
        """One step, watched: the watchdog bounds a stuck step, a test's injected fault fires here."""
        self.watchdog.step_started()
        if self.fault:
            self.fault.maybe_fire(self.engine.placement.rank, self.step.steps_done)
        return self.step()

    def window(self, name: str, num_steps: int) -> bool:
        """One measured window of steps; True when the ranks agreed to stop inside it."""
        self.engine.barrier()  # every rank starts the window together
        self.meters.start(name)
        self.step.mark = self.meters.marker(name)
        stopped = False
        for _ in range(num_steps):
            if stopped := self.agreed.poll():
                break
            loss = self.train_one()
            if name == THROUGHPUT:  # the record's losses are the timed steps'
                self.losses.append(loss)
            self.meters.step_done(name)
            self.progress.step()  # a counter; the bar redraws at most twice a second
        self.step.mark = no_mark
        self.meters.stop(name, complete=not stopped)
        self.stopped = self.stopped or stopped
        return stopped

    def warm_up(self, planned_steps: int) -> int:
        """Untimed steps before any window; with --compile, more until no rank compiles anything new."""
        watch = self.compile_watch
        # without --compile, the second half is a window of its own: measurements may look inside its
        # synchronised steps (the gradient timeline's interference measure), and none of them is timed
        looked_at = 0 if watch else planned_steps // 2
        done = 0
        while watch.wants_more(planned_steps) if watch else done < planned_steps - looked_at:
            if self.agreed.poll():
                self.stopped = True
                break
            if watch:
                with watch.step():
                    self.train_one()
            else:
                self.train_one()
            done += 1
            self.progress.step()
        if watch:
            watch.warmup_done()
        if looked_at and not self.stopped:
            self.stopped = self.window(SYNCED_WARMUP, looked_at)
            done += looked_at
        return done

    def compile_done(self) -> None:
        """Right after the timed windows: a graph compiled inside them would have been timed."""
        if self.compile_watch:
            self.results["compile"] = self.compile_watch.result(self.cfg.num_warmup_steps)

    def snapshot_replicas(self) -> None:
        """Every rank's parameter digest and the engine's own counters, while the replicas are in step."""
        self.replica_digest = self.engine.replica_digest(self.wrapped)
        self.engine_counters = self.engine.counters(self.wrapped)

    def compute_only_window(self) -> None:
        """The same steps without gradient synchronisation (what a step costs without communication),
        unless --no-breakdown, a stop, or an engine that cannot skip its synchronisation says otherwise."""
        if not self.cfg.breakdown:
            self.breakdown_note = "not measured (--no-breakdown)"
            return
        if self.stopped:
            self.breakdown_note = "not measured: the run was stopped first"
            return
        try:
            unsynchronised = self.engine.no_sync(self.wrapped)
        except NotImplementedError as exc:
            self.breakdown_note = f"not measured: {exc}"
            return
        self.progress.window_started("compute-only")
        with unsynchronised:
            self.window(COMPUTE_ONLY, self.cfg.num_steps)

    def input_split_windows(self) -> None:
        """--data files (with --breakdown): DS-Analyzer's two more windows of the same steps, fed from samples read
        into memory once (decode and augmentation still run) and from one batch on the device (compute alone).
        Each source yields one batch before its window, so loader workers start outside the timing."""
        if self.cfg.data != "files" or not self.cfg.breakdown or self.stopped:
            return
        timed = self.step.batches
        storage = timed.source
        sources = {INPUT_CACHED: lambda: self.workload.cached_batches(self.options, self.data, CACHED_BATCHES),
                   INPUT_SYNTHETIC: lambda: self.workload.batches(self.options,
                                                                  dataclasses.replace(self.data, data="synthetic"))}
        for name, make in sources.items():
            source = channels_last(make()) if self.cfg.channels_last else make()
            timed.source = itertools.chain([next(source)], source)
            self.progress.window_started(name.replace("_", " "))
            if self.window(name, self.cfg.num_steps):
                break
        timed.source = storage


CACHED_BATCHES = 4
"""Batches of samples the cached window keeps in memory and cycles: decoding still runs every step."""


class RunMode:
    """Subclasses set `name` and `description` and implement `run`; the rest has defaults."""

    name: ClassVar[str]
    description: ClassVar[str]
    order: ClassVar[int] = 100

    @classmethod
    def default_data(cls, workload: Workload) -> str | None:
        """The --data a run of this mode gets when none is given (None: synthetic)."""
        return None

    @classmethod
    def resolve(cls, cfg: RunConfig, workload: Workload, options: Any, data: str) -> dict[str, Any]:
        """Config fields this mode fills in or overrides before any process starts (checked here)."""
        return {}

    def progress(self, cfg: RunConfig, shown: str) -> RunProgress:
        """Rank 0's progress display (`shown`: bar, lines or off)."""
        split_windows = 2 * (cfg.breakdown and cfg.data == "files")
        return RunProgress(cfg.num_warmup_steps, cfg.planned_repeats, cfg.num_steps, shown,
                           extra_steps=cfg.num_steps * (cfg.breakdown + cfg.phases + split_windows))

    def run(self, session: Session) -> None:
        raise NotImplementedError

    @classmethod
    def merge(cls, per_rank: list[dict[str, Any]]) -> dict[str, Any]:
        """The run's metrics from every rank's `session.results` (ranks in order). A mode without a
        quality target says so: its `tta` is null."""
        return {"compile": compile_metrics([r.get("compile") for r in per_rank]), "tta": None}


def register(cls: type[RunMode]) -> type[RunMode]:
    return RUN_MODES.register(cls)

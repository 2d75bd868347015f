"""What a measurement is: something every rank takes around named windows of training steps.

Adding a metric (peak memory, energy, FLOP rate) is adding one module in this package: a
`Measurement` subclass decorated with `@register`. The runner starts every measurement before a
window and stops it after; each rank's raw values go to that rank's entry in the record, and
`merge` turns all ranks' values into the run's metrics. Windows are named, so a new kind of
window (compute-only, phases, evaluations) is a new name, not a new code path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from hpcbench.plugins import Registry

MEASUREMENTS: Registry[type[Measurement]] = Registry("measurement", "measurement")

THROUGHPUT = "throughput"
"""The timed repeats: the windows every throughput number comes from."""
COMPUTE_ONLY = "compute_only"
"""After the repeats, the same steps without gradient synchronisation: what a step costs without
communication (never part of a throughput number)."""
PHASES_WINDOW = "phases"
INPUT_CACHED = "input_cached"
"""With --data files and --breakdown: the same steps from samples read into memory once (decoded every step)."""
INPUT_SYNTHETIC = "input_synthetic"
"""With --data files and --breakdown: the same steps from one batch resident on the device (compute alone)."""
SYNCED_WARMUP = "synced_warmup"
"""The second half of the warm-up: synchronised steps that measurements may look inside (the gradient
timeline's interference measure) without touching a timed window."""
"""With --phases: the same steps, synchronised, with a device sync between phases (timing.PhaseTimer)."""


@dataclass(frozen=True, kw_only=True)
class RankContext:
    """What a measurement on one rank may need: its device and the clock the run times with."""

    device: torch.device
    clock: Callable[[], float]
    model: nn.Module | None = None
    """The module being trained (not the engine's wrapper): what looks at its parameters hooks them."""
    bucketing: dict[str, Any] | None = None
    """How the engine groups gradients into collectives (hpcbench.buckets), None: it does not say."""
    actions: Any = None
    """The engine's per-action timestamps (a pipeline schedule's forwards and backwards), None: it keeps none."""
    batches: Any = None
    """The step's batches (measurements.input.TimedBatches): how long the last step waited for its batch."""


@dataclass(frozen=True, kw_only=True)
class RunFacts:
    """What merging needs to know about the run as a whole."""

    global_batch_size: int
    world_size: int
    timed_samples: int = 0
    """Samples over every rank and every complete timed repeat."""
    breakdown_note: str | None = None
    """Why there is no compute-only window (--no-breakdown, an engine without one), if there is none."""


class Measurement:
    """Subclasses set `name`; `order` places it: lower starts earlier and stops later.

    Step timing has the highest order, so its window is the innermost one: nothing another
    measurement does at start or stop lands inside the timed interval.
    """

    name: ClassVar[str]
    order: ClassVar[int] = 100

    def __init__(self, ctx: RankContext) -> None:
        self.ctx = ctx

    def start(self, window: str) -> None:
        """Called on every rank right before a window's first step (after the barrier)."""

    def step_done(self, window: str) -> None:
        """Called after every step of a window; only measurements that override it are called."""

    def stop(self, window: str, complete: bool) -> None:
        """Called after a window; `complete` is False when a stop signal cut it short."""

    def marks(self, window: str) -> Callable[[str], None] | None:
        """What the step calls at its phase boundaries ("start", then each phase's name) inside
        `window`, for a measurement that looks inside steps; None: nothing (the default, and free)."""
        return None

    def rank_result(self) -> dict[str, Any]:
        """This rank's raw values, kept in its entry of the record's `ranks`."""
        return {}

    @classmethod
    def merge(cls, ranks: list[dict[str, Any]], run: RunFacts) -> dict[str, Any]:
        """The run's metrics from every rank's raw values (ranks sorted by rank)."""
        return {}


def no_mark(boundary: str) -> None:
    """A step's phase boundary that no measurement looks at: nothing (no sync, no clock)."""


def register(cls: type[Measurement]) -> type[Measurement]:
    return MEASUREMENTS.register(cls)

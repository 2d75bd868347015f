"""The terms a forecast adds to the communication ceiling (hpcbench.analysis.predict): what real
clusters lose scaling to besides moving gradients. Each is measured from the user's own run where
one run can show it, else a sourced default that every prediction shares, stated as an assumption.

    stragglers   A synchronous step waits for the slowest of N ranks. Per rank, a persistent part
                 (its median compute-only step over the typical rank's) and a per-step part (each
                 step's deviation from its own median, in seconds). The persistent part of N ranks is
                 drawn from the measured ranks (without replacement while N fits in them, as a job
                 placed on those devices) or, beyond them, from the measured ranks times the fleet's
                 spread; the per-step part is drawn per synchronisation. D(N) = E[max over N] by exact
                 order statistics of the resampled distribution, no normal assumption. With k global
                 synchronisations per optimizer step, the per-step part is paid k times.
    interference Compute slowed while communication runs beside it: backward progresses at 1/(1 + phi)
                 of its speed while an all-reduce is in flight, and the all-reduce at 1/(1 + psi) while
                 backward runs (the overlap recurrence, overlap_path). psi only where netbench measured it.
    framework    What the measured step has beyond all of the above at the measured point: the residual
                 that makes the model reproduce the point it was measured at (predict.framework_residual).

Sources of the shared defaults:
    FLEET_SPREAD      Sinha et al., "Not All GPUs Are Created Equal", SC'22 (arXiv 2208.11035), abstract:
                      8 % average performance variation (max 22 %) across GPUs of the same SKU in one
                      cluster (Summit, Vortex, Frontera, Longhorn, Corona). Modelled as speeds spread
                      evenly over that range; the interval's slow end takes the 22 %.
    GPU_INTERFERENCE  Lee et al., arXiv 2507.03114, abstract: overlapping computation with communication
                      slows computation by 18.9 % on average, 40.0 % at most (A100, H100, MI250, MI210);
                      the interval spans 0 to 40 %.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FLEET_SPREAD = 0.08
FLEET_SPREAD_HIGH = 0.22
FLEET_SOURCE = ("Sinha et al., SC'22 (arXiv 2208.11035), abstract: 8 % average (22 % max) performance variation "
                "across same-SKU GPUs of a cluster; speeds spread evenly over that range")
GPU_INTERFERENCE = 0.189
GPU_INTERFERENCE_RANGE = (0.0, 0.40)
INTERFERENCE_SOURCE = ("Lee et al., arXiv 2507.03114, abstract: compute overlapped with communication is 18.9 % "
                       "slower on average, 40.0 % at most (A100, H100, MI250, MI210)")
FLEET_POINTS = 41
"""The fleet's even spread, discretised (exact order statistics over these points)."""


def expected_max(values: Sequence[float], n: int, weights: Sequence[float] | None = None) -> float:
    """E[max of n independent draws] from a discrete distribution (values with weights, equal by default):
    sum over the sorted values of v_j (F_j^n - F_(j-1)^n), F the cumulative weight."""
    if n < 1 or not len(values):
        raise ValueError("expected_max needs n >= 1 and at least one value")
    order = np.argsort(np.asarray(values, dtype=float), kind="stable")
    v = np.asarray(values, dtype=float)[order]
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)[order]
    cumulative = np.cumsum(w) / w.sum()
    cumulative[-1] = 1.0
    below = np.concatenate([[0.0], cumulative[:-1]])
    return float(np.sum(v * (cumulative**n - below**n)))


def expected_max_without_replacement(values: Sequence[float], n: int) -> float:
    """E[max of n distinct members drawn from m values] (n <= m): the j-th smallest is the max with
    probability C(j-1, n-1) / C(m, n)."""
    v = np.sort(np.asarray(values, dtype=float))
    m = len(v)
    if not 1 <= n <= m:
        raise ValueError(f"cannot draw {n} of {m} without replacement")
    total = math.comb(m, n)
    return float(sum(v[j - 1] * math.comb(j - 1, n - 1) for j in range(n, m + 1)) / total)


def fleet_factors(spread: float) -> tuple[np.ndarray, np.ndarray]:
    """Speeds spread evenly over `spread` of the median, as step-time factors around 1 (equal weights)."""
    if spread <= 0:
        return np.ones(1), np.ones(1)
    return np.linspace(1 - spread / 2, 1 + spread / 2, FLEET_POINTS), np.ones(FLEET_POINTS)


@dataclass(frozen=True)
class Jitter:
    """Per-rank and per-step variation of the compute-only step, from every rank of the runs given."""

    typical_step_s: float
    """The median over ranks of each rank's median compute-only step: the typical device's step."""
    rank_factors: tuple[float, ...]
    """Each measured rank's median over the typical one (the persistent part)."""
    step_deviations_s: tuple[float, ...]
    """Every step's time minus its own rank's median, pooled (the per-step part)."""

    @classmethod
    def from_steps(cls, compute_step_times_s: Sequence[Sequence[float]]) -> Jitter:
        medians = [float(np.median(steps)) for steps in compute_step_times_s]
        typical = float(np.median(medians))
        deviations = [float(t - m) for steps, m in zip(compute_step_times_s, medians) for t in steps]
        return cls(typical, tuple(m / typical for m in medians), tuple(deviations))

    def persistent(self, n: int, fleet_spread: float) -> float:
        """E[the slowest of n ranks' persistent factors]: the measured ranks while n fits in them, else the
        measured ranks each times the fleet's even spread, drawn independently."""
        if n <= len(self.rank_factors):
            return expected_max_without_replacement(self.rank_factors, n)
        fleet, weights = fleet_factors(fleet_spread)
        combined = np.outer(self.rank_factors, fleet).ravel()
        return expected_max(combined, n, np.tile(weights, len(self.rank_factors)))

    def per_step_s(self, n: int) -> float:
        """E[the largest of n ranks' per-step deviations] in seconds: paid once per global synchronisation."""
        return expected_max(self.step_deviations_s, n) if self.step_deviations_s else 0.0

    def step_s(self, n: int, syncs_per_step: int, fleet_spread: float) -> float:
        """The compute the step waits for at n ranks: the slowest persistent factor over the whole step, plus
        the per-step part at each of the k synchronisations (added: an upper bound on the max of the sum)."""
        return self.typical_step_s * self.persistent(n, fleet_spread) + syncs_per_step * self.per_step_s(n)


@dataclass(frozen=True)
class OverlapResult:
    finish_s: float
    """When the last all-reduce ends, seconds after backward began."""
    backward_s: float
    """When backward ends, stretched by the interference."""
    exposed_s: float
    chain_start: int


def overlap_path(ready_s: Sequence[float], comm_s: Sequence[float], backward_s: float,
                 interference: float = 0.0, comm_slowdown: float = 0.0) -> OverlapResult:
    """MG-WFBP's recurrence f_k = max(r_k, f_(k-1)) + c_k, played as events: while backward and an
    all-reduce run together, backward advances at 1/(1 + interference) and the all-reduce at
    1/(1 + comm_slowdown) (each as measured beside the other); alone, each at full speed. ready_s are
    positions in undisturbed compute time (in issue order), comm_s each all-reduce's time alone."""
    ready = [max(r, 0.0) for r in ready_s]  # past backward_s: ready that long after backward ends (a Horovod cycle tick)
    t, progress, finish, chain_start, backward_end = 0.0, 0.0, 0.0, 0, None
    next_ready, queue, active, remaining = 0, [], None, 0.0

    def is_ready(k: int) -> bool:
        if ready[k] <= backward_s:
            return ready[k] <= progress + 1e-15
        return backward_end is not None and backward_end + ready[k] - backward_s <= t + 1e-15

    while True:
        if backward_end is None and progress >= backward_s - 1e-15:
            backward_end = t
        while next_ready < len(ready) and is_ready(next_ready):  # buckets ready now join the queue
            if active is None and not queue:
                chain_start = next_ready  # the link was idle: a new chain starts here
            queue.append(next_ready)
            next_ready += 1
        if active is None and queue:
            active = queue.pop(0)
            remaining = comm_s[active]
        computing = backward_end is None
        if not computing and active is None and next_ready == len(ready):
            break
        both = computing and active is not None
        compute_rate = 1 / (1 + interference) if both else 1.0
        comm_rate = 1 / (1 + comm_slowdown) if both else 1.0
        target = min(ready[next_ready], backward_s) if next_ready < len(ready) else backward_s
        dt_compute = (target - progress) / compute_rate if computing else math.inf
        dt_comm = remaining / comm_rate if active is not None else math.inf
        dt_tick = (backward_end + ready[next_ready] - backward_s - t if not computing and next_ready < len(ready)
                   else math.inf)
        dt = min(dt_compute, dt_comm, dt_tick)
        t += dt
        if computing:
            progress = target if dt == dt_compute else progress + dt * compute_rate
        if active is not None:
            remaining -= dt * comm_rate
            if dt == dt_comm or remaining <= 1e-15:
                active, finish = None, t
    end = backward_end if backward_end is not None else t
    return OverlapResult(finish, end, max(0.0, finish - end), chain_start)

"""`hpcbench history`: each curve point's metric over time, the software changes along it, and its steps.

A series is one point of one curve on one *machine*: the system's name and hardware (`hardware_id`),
not its software, so one series runs across a torch, CUDA, NCCL or driver upgrade; finding what such
an upgrade did is what a history is for. `report` and `compare` keep keying by the full `system_id`.

Step detection is binary segmentation with a test on the segments either side (as E-Divisive and
Hunter do for MongoDB's CI): for every split of a series into a left and a right part of at least
MIN_RUNS runs, Student's t on log values; the most significant split is a step when its p-value,
Bonferroni-corrected for the number of splits tried, is below `alpha` *and* the medians either side
differ by more than `min_change`; then each side is searched again. Why this rule: it finds a step
anywhere in a history, not only at its end (as "the last k runs beyond mean + 3 sigma of the previous n"
does), it uses every run on both sides (more power than a window), and it gives each step the
confidence the report states. The unit is the run (its median over repeats): repeats of one run share
a process, a node and its state, so they are not independent samples of the run-to-run noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpcbench.analysis.curves import POINT_KEYS
from hpcbench.analysis.load import VERSION_COLUMNS
from hpcbench.analysis.stats import bootstrap_ratio_ci

SERIES_KEYS = ["hardware_id", "system_name", "experiment_id", "experiment_label", *POINT_KEYS]
MIN_RUNS = 3
"""Runs each side of a step, at least: fewer cannot tell a step from one slow run."""
DEFAULT_ALPHA = 0.001
"""Family-wise false-alarm level per series (corrected for the splits tried); measured rates: tests/test_history.py."""
DEFAULT_MIN_CHANGE = 0.05
METRICS = {"samples_per_s": True, "step_time_s_median": False, "tflops_per_device": True, "time_to_target_s": False,
           "peak_memory_gib": False, "energy_j_per_sample": False}
"""The metrics a history can follow, and whether higher is better (what makes a step a regression)."""


@dataclass(frozen=True)
class Step:
    """A change of level between runs `index - 1` and `index` of a series."""

    index: int
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float

    @property
    def confidence(self) -> float:
        return 1.0 - self.p_value


def detect_steps(values: np.ndarray | list[float], *, alpha: float = DEFAULT_ALPHA,
                 min_change: float = DEFAULT_MIN_CHANGE, min_runs: int = MIN_RUNS,
                 anchors: frozenset[int] = frozenset()) -> list[Step]:
    """Steps in a series of positive values, in order (see the module doc for the rule).

    `anchors`: indices where the software changed. A step found within SNAP_RUNS of one moves onto it when
    it is as significant and as large there: with noise, the best fit misses a step's run by one now and then
    (8 % of the time at a 10 % step in 3 % noise), and the software change is the likelier cause.
    """
    logs = np.log(np.asarray(values, dtype=float))
    found: list[tuple[int, float]] = []
    segments = [(0, logs.size)]
    while segments:
        start, stop = segments.pop()
        tests = _splits(logs[start:stop], min_runs)
        if tests is None:
            continue
        splits, p_values, within = tests
        at = int(splits[np.argmin(within)])  # where two levels explain the most (least squares within the parts)
        near = sorted((abs(a - start - at), a - start) for a in anchors if 0 < abs(a - start - at) <= SNAP_RUNS)
        for _, anchor in near:
            if anchor in splits and _passes(logs[start:stop], anchor, p_values[splits == anchor][0], alpha, min_change):
                at = anchor
                break
        p_value = float(p_values[splits == at][0])
        if not _passes(logs[start:stop], at, p_value, alpha, min_change):
            continue
        found.append((start + at, p_value))
        segments += [(start, start + at), (start + at, stop)]
    # Each step's size between its neighbours: the level from the step before it to the one after it.
    edges = [0, *sorted(index for index, _ in found), logs.size]
    steps = []
    for (index, p_value), before, after in zip(sorted(found), edges, edges[2:]):
        left, right = np.exp(logs[before:index]), np.exp(logs[index:after])
        low, high = bootstrap_ratio_ci(left, right)
        steps.append(Step(index, float(np.median(right) / np.median(left)), low, high, p_value))
    return steps


SNAP_RUNS = 2


def _passes(logs: np.ndarray, at: int, p_value: float, alpha: float, min_change: float) -> bool:
    return p_value < alpha and abs(float(np.exp(np.median(logs[at:]) - np.median(logs[:at]))) - 1) > min_change


def _splits(logs: np.ndarray, min_runs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """For every split with at least `min_runs` each side: its index, its t-test p-value on the two parts
    (Bonferroni-corrected for the splits tried) and the squared deviations within the parts; None if none fits.

    All splits at once, from cumulative sums: a history of thousands of runs costs one pass.
    """
    from scipy.special import stdtr  # the t distribution's CDF (scipy.stats costs 1.4 s to import)

    n = logs.size
    splits = np.arange(min_runs, n - min_runs + 1)
    if splits.size == 0:
        return None
    total, total_sq = np.cumsum(logs), np.cumsum(logs ** 2)
    n_left, n_right = splits.astype(float), (n - splits).astype(float)
    sum_left, sq_left = total[splits - 1], total_sq[splits - 1]
    sum_right, sq_right = total[-1] - sum_left, total_sq[-1] - sq_left
    mean_left, mean_right = sum_left / n_left, sum_right / n_right
    dev_left = np.maximum(sq_left - n_left * mean_left ** 2, 0)
    dev_right = np.maximum(sq_right - n_right * mean_right ** 2, 0)
    # Student's t with the variance pooled over both parts: the step model has one noise level, and Welch's
    # per-part variance trusts 3 runs that happen to agree (edge splits then gave p = 1e-13 on pure noise).
    pooled = (dev_left + dev_right) / (n - 2)
    diff = np.abs(mean_right - mean_left)
    se = np.sqrt(pooled * (1 / n_left + 1 / n_right))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, diff / se, np.where(diff > 1e-12, np.inf, 0.0))
    p_values = np.minimum(1.0, 2 * stdtr(n - 2, -t) * splits.size)
    return splits, p_values, dev_left + dev_right


def _shown(name: str, value) -> str:
    """A version as a change names it: 'none' for absent, a commit by its first 7 hex digits."""
    if value is None or pd.isna(value):
        return "none"
    return str(value)[:7] if name == "git_sha" else str(value)


def _text(value) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def version_changes(before: pd.Series, after: pd.Series) -> str:
    """'torch 2.13.0 -> 2.14.1, git_sha 1a2b3c4 -> 5d6e7f8': the VERSION_COLUMNS that differ between two runs."""
    return ", ".join(f"{name} {_shown(name, before.get(name))} -> {_shown(name, after.get(name))}"
                     for name in VERSION_COLUMNS if _text(before.get(name)) != _text(after.get(name)))


def _changes_since_previous(ordered: pd.DataFrame, group) -> pd.Series:
    """Per run, version_changes from the run before it in its series ('' for a series' first run); column by
    column over the whole frame at once (a history over 100,000 runs cannot afford a call per pair)."""
    previous = group[VERSION_COLUMNS].shift()
    first = (group.cumcount() == 0).to_numpy()
    joined = np.full(len(ordered), "", dtype=object)
    for name in VERSION_COLUMNS:
        old, new = previous[name].map(_text), ordered[name].map(_text)
        differs = ~first & (old.fillna("\0") != new.fillna("\0")).to_numpy()
        if not differs.any():
            continue
        text = (name + " " + old.map(lambda v, n=name: _shown(n, v)) + " -> "
                + new.map(lambda v, n=name: _shown(n, v))).to_numpy()
        joined = np.where(~differs, joined, np.where(joined == "", text, joined + ", " + text))
    return pd.Series(joined, index=ordered.index, dtype=object)


def history(runs: pd.DataFrame, metric: str = "samples_per_s", *, alpha: float = DEFAULT_ALPHA,
            min_change: float = DEFAULT_MIN_CHANGE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(points, steps): every run in its series in time order, with the software changes since the run
    before it; and every detected step with its size, interval, confidence and the changes at that run."""
    higher_is_better = METRICS[metric]
    runs = runs.assign(**{name: None for name in VERSION_COLUMNS if name not in runs})  # a frame built by hand
    ordered = runs[runs[metric].notna() & runs["started"].notna()].sort_values(["started", "run_id"])
    ordered = ordered.reset_index(drop=True)
    group = ordered.groupby(SERIES_KEYS, sort=False, dropna=False)
    points = ordered[[*SERIES_KEYS, "run_id", "started", metric]].assign(
        run=group.cumcount() + 1, changed=_changes_since_previous(ordered, group))
    points = points.sort_values([*SERIES_KEYS, "run"]).reset_index(drop=True)
    points = points[[*SERIES_KEYS, "run", "run_id", "started", metric, "changed"]]
    step_rows = []
    for key, series in points.groupby(SERIES_KEYS, sort=False, dropna=False):
        changes = series["changed"].tolist()
        anchors = frozenset(i for i, change in enumerate(changes) if change)
        for step in detect_steps(series[metric].to_numpy(), alpha=alpha, min_change=min_change, anchors=anchors):
            better = (step.ratio > 1) == higher_is_better
            at = series.iloc[step.index]
            step_rows.append({**dict(zip(SERIES_KEYS, key, strict=True)), "run": step.index + 1, "run_id": at["run_id"],
                              "started": at["started"], "verdict": "improvement" if better else "regression",
                              "change": step.ratio - 1, "ci95_low": step.ci_low - 1, "ci95_high": step.ci_high - 1,
                              "confidence": step.confidence,
                              "changed": changes[step.index] or _nearest_change(changes, step.index)})
    steps = pd.DataFrame(step_rows, columns=[*SERIES_KEYS, "run", "run_id", "started", "verdict", "change",
                                             "ci95_low", "ci95_high", "confidence", "changed"])
    return points, steps


def _nearest_change(changes: list[str], index: int) -> str:
    """No software changed at the step itself: say so, and name the nearest change (steps are placed to a run or so)."""
    near = [(abs(i - index), i) for i, change in enumerate(changes) if change]
    if not near:
        return "no software change in this series"
    _, at = min(near)
    return f"none at this run; nearest: run {at + 1} ({changes[at]})"

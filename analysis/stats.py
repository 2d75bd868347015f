"""Statistics over repeats: median, bootstrap confidence interval of the median, coefficient of variation."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 2000


@functools.lru_cache(maxsize=256)
def _resampled_median_ranks(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """For each resample of `size` indices drawn with replacement: the ranks of its two middle values.

    The median of a resample of sorted data is the data at these ranks (their mean for even
    sizes), so the draws depend only on the size and are shared by every group of that size:
    a report over thousands of records resamples once per distinct size, not once per group.
    """
    rng = np.random.default_rng(seed)
    ranks = np.sort(rng.integers(0, size, size=(BOOTSTRAP_RESAMPLES, size)), axis=1)
    return ranks[:, (size - 1) // 2], ranks[:, size // 2]


def bootstrap_median_ci(values: Sequence[float], level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval for the median: resample with replacement, take the quantiles.

    Fixed seed, so a report is reproducible from its records. One value gives a zero-width interval.
    """
    data = np.sort(np.asarray(values, dtype=float))
    if data.size == 0:
        return float("nan"), float("nan")
    low_rank, high_rank = _resampled_median_ranks(data.size, seed)
    medians = (data[low_rank] + data[high_rank]) / 2
    tail = (1 - level) / 2
    low, high = np.quantile(medians, [tail, 1 - tail])
    return float(low), float(high)


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Sample standard deviation / mean: how much repeats disagree (NaN for fewer than two)."""
    data = np.asarray(values, dtype=float)
    if data.size < 2 or data.mean() == 0:
        return float("nan")
    return float(data.std(ddof=1) / data.mean())

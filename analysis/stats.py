"""Statistics over repeats: median, bootstrap confidence interval of the median, coefficient of variation."""

from __future__ import annotations

import functools
import math
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


def t_mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean (NaN for fewer than two values). With the 3 repeats a run takes by default, a
    percentile bootstrap can only return their range, whose coverage is far below 95 %: on this VM two quiet
    rounds' efficiency intervals from it did not overlap. The t interval widens with few values, as it must."""
    from scipy.stats import t

    data = np.asarray(values, dtype=float)
    if data.size < 2:
        return float("nan"), float("nan")
    half = float(t.ppf(0.5 + level / 2, data.size - 1) * data.std(ddof=1) / np.sqrt(data.size))
    return float(data.mean()) - half, float(data.mean()) + half


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Sample standard deviation / mean: how much repeats disagree (NaN for fewer than two)."""
    data = np.asarray(values, dtype=float)
    if data.size < 2 or data.mean() == 0:
        return float("nan")
    return float(data.std(ddof=1) / data.mean())


def log_welch_p_value(baseline: Sequence[float], new: Sequence[float]) -> float:
    """Two-sided Welch t-test on the logarithms: is the new level different from the baseline's?

    Throughput is a rate, so changes are ratios and noise is multiplicative: logs make both additive.
    Welch, not a rank test, because repeats are few: with 3 a side no rank test can reach p < 0.1
    (Mann-Whitney's smallest two-sided p is 2/20). NaN when a side has fewer than two values; when
    neither side varies, 0 if the levels differ and 1 if not (the data allow no other answer).
    """
    a, b = np.log(np.asarray(baseline, dtype=float)), np.log(np.asarray(new, dtype=float))
    if a.size < 2 or b.size < 2:
        return float("nan")
    var_a, var_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if var_a == 0 and var_b == 0:
        return 0.0 if a.mean() != b.mean() else 1.0
    from scipy.special import stdtr  # the t distribution's CDF; scipy.stats costs 1.4 s to import, this 0.4 s

    # Welch's t and Welch-Satterthwaite's degrees of freedom, written out: scipy's ttest_ind costs 5 ms a call,
    # which a comparison of a thousand configurations pays a thousand times.
    t = abs(a.mean() - b.mean()) / np.sqrt(var_a + var_b)
    dof = (var_a + var_b) ** 2 / (var_a ** 2 / (a.size - 1) + var_b ** 2 / (b.size - 1))
    return float(2 * stdtr(dof, -t))


def bootstrap_ratio_ci(baseline: Sequence[float], new: Sequence[float], level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval for median(new) / median(baseline), each side resampled on its own."""
    a, b = np.sort(np.asarray(baseline, dtype=float)), np.sort(np.asarray(new, dtype=float))
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan")
    a_low, a_high = _resampled_median_ranks(a.size, seed)
    b_low, b_high = _resampled_median_ranks(b.size, seed + 1)  # independent draws for the two sides
    ratios = ((b[b_low] + b[b_high]) / 2) / ((a[a_low] + a[a_high]) / 2)
    tail = (1 - level) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return float(low), float(high)


def conformal_half_width(residuals: Sequence[float], coverage: float = 0.9) -> float:
    """Split conformal prediction's half-width (Vovk et al. 2005; Lei et al., JASA 2018): the ceil((n+1) x coverage)-th
    smallest absolute residual of n calibration cases. A new case's |error| is at most that with probability at
    least `coverage` when the cases are exchangeable; infinite when n is too small to say so."""
    ordered = sorted(abs(r) for r in residuals)
    k = math.ceil((len(ordered) + 1) * coverage)
    return ordered[k - 1] if k <= len(ordered) else math.inf

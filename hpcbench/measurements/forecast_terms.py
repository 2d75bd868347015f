"""The forecast's measured terms (hpcbench.analysis.terms), in the run's record: how much of a step
the ranks' variation, communication beside compute, and the framework itself cost here. Nothing is
timed for them: they are read from what the other measurements took on every rank."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcbench.measurements.base import Measurement, RunFacts, register
from hpcbench.timing import WINDOW_STATISTIC, compute_only_metrics, throughput_metrics

DEVIATION_QUANTILES = (5, 25, 50, 75, 95)


@register
class ForecastTerms(Measurement):
    name = "forecast_terms"
    order = 500  # takes no window of its own

    @classmethod
    def merge(cls, ranks: list[dict[str, Any]], run: RunFacts) -> dict[str, Any]:
        compute = [r.get("compute_step_times_s") for r in ranks]
        if not compute or not all(compute):
            return {"forecast_terms": None}
        return {"forecast_terms": {"stragglers": stragglers(compute), "interference": interference(ranks),
                                   "framework": framework(ranks, compute, run)}}


def stragglers(compute_step_times_s: list[list[float]]) -> dict[str, Any]:
    """The persistent part (each rank's median over the typical rank's) and the per-step part (each
    step's deviation from its rank's median) of the compute-only window."""
    medians = [float(np.median(steps)) for steps in compute_step_times_s]
    typical = float(np.median(medians))
    deviations = np.concatenate([np.asarray(steps, dtype=float) - m for steps, m in zip(compute_step_times_s, medians)])
    return {"typical_step_s": typical, "rank_factors": [m / typical for m in medians],
            "step_deviation_s_quantiles": {f"p{q}": float(np.percentile(deviations, q)) for q in DEVIATION_QUANTILES},
            "source": "compute-only window, every rank: the predictor resamples the raw per-step times"}


def interference(ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """Backward's compute with communication beside it over without: the last gradient's ready time in the
    synchronised warm-up steps against the compute-only window's, slowest rank each."""
    alone = [(r.get("gradient_timeline") or {}).get("last_ready_s") for r in ranks]
    synced = [r.get("synced_last_ready_s") for r in ranks]
    if len(ranks) < 2:
        return {"factor": None, "note": "one process: no communication ran beside its compute"}
    if not all(alone) or not all(synced):
        return {"factor": None, "note": "no gradient-ready times in both windows (a warm-up under 2 steps, --compile, "
                                        "or an engine without per-gradient hooks)"}
    device = ranks[0].get("device") or "cpu"
    how = ("CUDA events on the compute stream" if str(device).startswith("cuda") else
           "host clock: on a CPU the collectives' threads share the rank's cores, and the engine's bucket copies count too")
    return {"factor": max(0.0, max(synced) / max(alone) - 1), "synced_last_ready_s": max(synced),
            "compute_only_last_ready_s": max(alone),
            "note": f"last gradient ready, synchronised warm-up steps vs compute-only window ({how})"}


def framework(ranks: list[dict[str, Any]], compute_step_times_s: list[list[float]], run: RunFacts) -> dict[str, Any]:
    """At one process nothing is communicated: the throughput's step beyond the compute-only step is the
    framework's own, which is the record's exposed_comm_s (one statistic, timing.WINDOW_STATISTIC). With more,
    it needs the network model, so the predictor closes it."""
    if len(ranks) > 1:
        return {"step_s": None, "note": "needs the network model: hpcbench predict takes the residual at this point"}
    if not ranks[0].get("elapsed_s"):
        return {"step_s": None, "note": "no complete timed repeat"}
    timed = throughput_metrics([r["elapsed_s"] for r in ranks], [r["step_times_s"] for r in ranks], run.global_batch_size)
    split = compute_only_metrics(timed["step_time_s_mean"], compute_step_times_s)
    return {"step_s": split["exposed_comm_s"], "synced_step_s": timed["step_time_s_mean"],
            "compute_only_step_s": split["compute_step_time_s"], "statistic": WINDOW_STATISTIC,
            "note": "one process: the throughput's step minus the compute-only window's step (each window's mean)"}

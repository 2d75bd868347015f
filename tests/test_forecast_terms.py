"""The forecast's terms on known answers: the expected maximum of a resampled distribution, the
overlap recurrence under a constant interference, the framework residual closing on the measured
point, the compute source a GPU fabric needs, and the terms a run records."""

import dataclasses
import random
import re
from pathlib import Path

import pytest

from hpcbench.analysis.netmodel import Links, fabric_names
from hpcbench.analysis.predict import (CEILING, Inputs, Terms, Timeline, framework_residual, predict, predict_point,
                                       resolve_inputs, resolve_terms)
from hpcbench.analysis.terms import Jitter, expected_max, expected_max_without_replacement, fleet_factors, overlap_path
from hpcbench.errors import ConfigError
from hpcbench.measurements.base import RunFacts
from hpcbench.measurements.forecast_terms import ForecastTerms


def test_expected_maximum_of_a_two_point_distribution():
    # equal odds of 1 and 2: the max of n draws is 1 only when every draw is 1
    for n in (1, 2, 5, 64):
        assert expected_max([1.0, 2.0], n) == pytest.approx(1 * 0.5**n + 2 * (1 - 0.5**n))
    assert expected_max([1.0, 2.0], 3, weights=[3, 1]) == pytest.approx(1 * 0.75**3 + 2 * (1 - 0.75**3))
    # drawn without replacement, all of m devices: the slowest one exactly
    assert expected_max_without_replacement([1.0, 3.0, 2.0], 3) == 3.0
    assert expected_max_without_replacement([1.0, 2.0, 3.0], 2) == pytest.approx((2 + 3 + 3) / 3)
    values, _ = fleet_factors(0.08)  # an even spread: E[max of n] -> its top end as n grows
    assert values.min() == pytest.approx(0.96) and values.max() == pytest.approx(1.04)
    assert expected_max(values, 1) == pytest.approx(1.0) and expected_max(values, 10_000) == pytest.approx(1.04)


def test_straggler_term_persistent_and_per_step_k_times():
    jitter = Jitter.from_steps([[0.100, 0.100, 0.110], [0.200, 0.200, 0.210]])  # rank 1 twice as slow
    assert jitter.typical_step_s == pytest.approx(0.150)
    assert jitter.persistent(2, 0.0) == pytest.approx(0.200 / 0.150)  # both measured ranks: the slower one
    # per step: deviations {0, 0, 0.01} per rank; the largest of 2 draws is 0.01 unless both are 0
    per_step = 0.01 * (1 - (4 / 6) ** 2)
    assert jitter.per_step_s(2) == pytest.approx(per_step)
    assert jitter.step_s(2, 1, 0.0) == pytest.approx(0.200 + per_step)
    assert jitter.step_s(2, 8, 0.0) == pytest.approx(0.200 + 8 * per_step)  # paid at every synchronisation
    # beyond the measured ranks, each is drawn with the fleet's spread: slower in expectation
    assert jitter.persistent(64, 0.08) > jitter.persistent(2, 0.0)


def test_overlap_recurrence_under_a_constant_interference():
    # backward 10 ms; buckets ready at 2, 5, 8 ms of compute, 4 ms on the wire each; compute runs at 1/1.5 while one is in flight
    plain = overlap_path([0.002, 0.005, 0.008], [0.004] * 3, 0.010)
    assert plain.finish_s == pytest.approx(0.014) and plain.exposed_s == pytest.approx(0.004)
    slowed = overlap_path([0.002, 0.005, 0.008], [0.004] * 3, 0.010, interference=0.5)
    # by hand: r0 at 2 -> link busy 2..6; 3 ms of compute needs 4.5 ms: 4 busy ms give 2.67, 0.33 more -> r1 at 6.33,
    # link to 10.33; likewise r2 at 10.67, link to 14.67; backward's last 2 ms take 3 ms under load -> ends at 13.67
    assert slowed.finish_s == pytest.approx(0.014667, abs=1e-6)
    assert slowed.backward_s == pytest.approx(0.013667, abs=1e-6) and slowed.exposed_s == pytest.approx(0.001, abs=1e-6)
    assert overlap_path([0.001], [0.0], 0.002, interference=0.5).backward_s == pytest.approx(0.002)  # nothing in flight
    # both slowed by half while together: ready at 2 ms, 4 ms of all-reduce takes 8 (to 10 ms, backward at 6 of 10),
    # then backward's last 4 ms alone: it ends at 14, the all-reduce hidden
    shared = overlap_path([0.002], [0.004], 0.010, interference=1.0, comm_slowdown=1.0)
    assert shared.finish_s == pytest.approx(0.010) and shared.backward_s == pytest.approx(0.014) and shared.exposed_s == 0
    # ready at 8 ms: backward's last 2 ms take 4 (to 12), the all-reduce did 2 of its 4 ms, the rest alone: ends at 14
    late = overlap_path([0.008], [0.004], 0.010, interference=1.0, comm_slowdown=1.0)
    assert late.backward_s == pytest.approx(0.012) and late.finish_s == pytest.approx(0.014) and late.exposed_s == pytest.approx(0.002)
    # a bucket ready after backward (Horovod's cycle tick 2 ms after it) waits for that tick: 10 + 2 + 3
    tick = overlap_path([0.002, 0.012], [0.004, 0.003], 0.010)
    assert tick.finish_s == pytest.approx(0.015) and tick.exposed_s == pytest.approx(0.005) and tick.chain_start == 1


def links() -> Links:
    return Links(gpus_per_node=8, intra_busbw=100e9, inter_busbw_per_node=10e9, intra_latency_s=1e-6, inter_latency_s=10e-6)


def timeline(**overrides) -> Timeline:
    values = dict(compute_step_s=0.030, backward_s=0.010, buckets=[(0.004, 2**20), (0.010, 8 * 2**20)], spread=(0.95, 1.1),
                  batch_size=32, run_id="r", path="p", jitter=Jitter.from_steps([[0.029, 0.030, 0.032]]),
                  measured_step_s=0.0345, world_size=1, num_nodes=1, device="cpu")
    return Timeline(**{**values, **overrides})


def inputs(made: Timeline, kind: str = "netbench") -> Inputs:
    network = {"kind": kind, "fabric": {"name": "h100-ndr"}} if kind == "fabric" else {"kind": kind}
    return Inputs(base={}, timelines={made.batch_size: made}, network=network, links_for=lambda n, g: links())


def test_framework_residual_reproduces_the_measured_point_exactly():
    made = timeline()
    terms = resolve_terms(inputs(made))
    residual, note = framework_residual(inputs(made), made, "ring", terms)
    at_run = predict_point(made, links(), 1, 1, "ring", terms, framework_s=residual)
    assert at_run["step_time_s"] == pytest.approx(0.0345, abs=1e-12) and "residual at the measured point" in note
    farther = predict_point(made, links(), 4, 8, "ring", terms, framework_s=residual)
    named = sum(farther[k] for k in ("compute_step_time_s", "stragglers_s", "interference_s", "exposed_comm_s", "framework_s"))
    assert farther["step_time_s"] == pytest.approx(named) and farther["framework_s"] == pytest.approx(residual)
    ceiling = predict_point(made, links(), 4, 8, "ring", CEILING)
    assert ceiling["stragglers_s"] == 0 and ceiling["framework_s"] == 0 and ceiling["interference_s"] == pytest.approx(0, abs=1e-15)
    low, high = (predict_point(made, links(), 4, 8, "ring", terms, bound, residual)["step_time_s"] for bound in ("low", "high"))
    assert low <= farther["step_time_s"] <= high


def test_no_overlap_sends_one_bucket_after_backward():
    made = timeline()
    overlapped = predict_point(made, links(), 4, 8, "ring", Terms(stragglers=False, framework=False))
    after = predict_point(made, links(), 4, 8, "ring", Terms(stragglers=False, framework=False, no_overlap=True))
    whole = links().allreduce_s(9 * 2**20, 4, 8, "ring")
    assert after["exposed_comm_s"] == pytest.approx(whole) and after["step_time_s"] > overlapped["step_time_s"]


def test_a_gpu_fabric_needs_a_compute_source_and_records_it():
    made = timeline()
    with pytest.raises(ConfigError, match="compute: fabric h100-ndr is a GPU cluster.*--compute-samples-per-s"):
        resolve_terms(inputs(made, "fabric"))
    terms = resolve_terms(inputs(made, "fabric"), compute_samples_per_s=3200.0)  # 32 samples at 3200/s: a 10 ms step
    assert terms.compute_scale == pytest.approx(0.010 / 0.030) and "3200" in terms.compute_source
    assert terms.fleet_spread == 0.08 and "2208.11035" in terms.fleet_source and terms.interference == pytest.approx(0.189)
    point = predict_point(made, links(), 1, 8, "ring", terms)
    assert point["compute_step_time_s"] == pytest.approx(0.010)
    assert resolve_terms(inputs(made, "fabric"), compute_step_ms=12).compute_scale == pytest.approx(0.4)
    gpu_run = dataclasses.replace(made, device="cuda")  # a run on the GPU is its own compute source
    assert resolve_terms(inputs(gpu_run, "fabric")).compute_scale == 1.0
    for kwargs, field in (({"compute_step_ms": 1, "compute_samples_per_s": 1}, "compute"), ({"fleet_spread": 1.5}, "fleet-spread"),
                          ({"interference": -0.1}, "interference"), ({"syncs_per_step": 0}, "syncs-per-step")):
        with pytest.raises(ConfigError, match=field):
            resolve_terms(inputs(made, "fabric"), **kwargs)
    cpu = resolve_terms(inputs(made))  # a CPU network measured by netbench: no GPU defaults, said so
    assert cpu.fleet_spread == 0 and cpu.interference == 0 and "give --interference" in cpu.interference_source


def test_the_run_records_its_terms():
    def rank(compute, synced, alone):
        return {"compute_step_times_s": compute, "synced_last_ready_s": synced, "gradient_timeline": {"last_ready_s": alone},
                "elapsed_s": [0.5], "step_times_s": [[0.05] * 10], "device": "cpu"}
    facts = RunFacts(global_batch_size=64, world_size=2)
    terms = ForecastTerms.merge([rank([0.04, 0.04, 0.05], 0.030, 0.020), rank([0.04, 0.041], 0.024, 0.019)], facts)["forecast_terms"]
    assert terms["interference"]["factor"] == pytest.approx(0.030 / 0.020 - 1)  # slowest rank each side
    assert "host clock" in terms["interference"]["note"] and terms["framework"]["step_s"] is None
    assert terms["stragglers"]["rank_factors"] == pytest.approx([0.04 / 0.04025, 0.0405 / 0.04025])  # medians over their median
    one = ForecastTerms.merge([rank([0.04, 0.04, 0.046], None, 0.02)], RunFacts(global_batch_size=32, world_size=1))
    one = one["forecast_terms"]
    assert one["interference"]["factor"] is None and "one process" in one["interference"]["note"]
    assert one["framework"]["step_s"] == pytest.approx(0.05 - 0.042)  # the throughput's step minus the compute-only mean


REFERENCE_RUNS = sorted(str(p) for p in (Path(__file__).resolve().parent.parent / "results" / "reference"
                                         / "cpu-2core-vm-predict").glob("*/*/alone/records"))
"""The reference runs with a compute-only window (mlp, cnn, gpt at one process, each link's study)."""


@pytest.mark.parametrize("fabric", fabric_names())
def test_the_forecast_never_contradicts_itself(fabric):
    """Over every shipped fabric, every reference run and compute sources from 0.001x to 3x the run's own (seeded):
    no negative loss term, the forecast never above its ceiling, an efficiency interval that holds the forecast and
    never passes 100 %, and the gradient timeline on the compute source's clock (the limiting term's sentence)."""
    rng = random.Random(fabric)
    assert REFERENCE_RUNS
    for inputs in (i for folder in REFERENCE_RUNS for i in resolve_inputs([folder], fabric=fabric, netbench=None,
                                                                          scaling="weak")):
        timeline = next(iter(inputs.timelines.values()))
        for factor in [1.0, *(10 ** rng.uniform(-3, 0.5) for _ in range(3))]:  # a GPU's step is 10-1000x a CPU's
            step_ms = None if factor == 1.0 else timeline.compute_step_s * 1e3 * factor
            try:
                terms = resolve_terms(inputs, compute_step_ms=step_ms)
            except ConfigError as exc:  # a GPU fabric refuses the CPU run's own compute
                assert factor == 1.0 and "GPU cluster" in str(exc)
                continue
            points = predict(inputs, nodes=[1, 2, 8, 32], gpus_per_node=8, algorithms=["ring", "tree"], scaling="weak",
                             global_batch_size=None, terms=terms)
            for p in points:
                where = (fabric, inputs.base["config"]["workload"], factor, p["algorithm"], p["num_nodes"])
                assert min(p["stragglers_s"], p["interference_s"], p["exposed_comm_s"], p["framework_s"]) >= 0, where
                assert p["efficiency"] <= p["ceiling_efficiency"] + 1e-9, where
                assert p["efficiency_low"] <= p["efficiency"] <= p["efficiency_high"] <= 1.0, where
                ready = re.search(r"is ready ([\d.]+) ms into a ([\d.]+) ms backward", p["limit"])
                assert not ready or float(ready[1]) <= float(ready[2]) + 0.05, (where, p["limit"])

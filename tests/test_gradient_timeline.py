"""The gradient-ready timeline: the buckets engines build, pinned against DDP's own; no hook outside
the compute-only window."""

import statistics

import pytest
import torch
from torch import nn

from conftest import read_records, run_cli
from hpcbench.buckets import Gradient, buckets, size_cap_rule, fusion_cycle_rule
from hpcbench.measurements import COMPUTE_ONLY, THROUGHPUT, RankContext
from hpcbench.measurements.gradient_timeline import GradientTimeline

TINY = ["--steps", "5", "--warmup", "2", "--repeats", "1", "--device", "cpu", "--nproc", "1"]
"""One process: DDP buckets and logs the same way at any world size (every 2-process run merges timelines)."""
MIB = 2**20


def test_size_cap_rule_fills_greedily_in_ready_order_with_a_smaller_first_bucket():
    # index: bytes, ready order 5, 4, 3, 2, 1, 0 (the last layer's gradients first)
    sizes = {0: 2 * MIB, 1: 4096, 2: 4 * MIB, 3: 4096, 4: 40960, 5: 40}
    grads = [Gradient(i, b, float(5 - i)) for i, b in sizes.items()]
    found = buckets(grads, size_cap_rule(MIB, 25 * MIB))
    assert [b["params"] for b in found] == [[5, 4, 3, 2], [1, 0]]  # the first closes once past 1 MiB
    assert [b["bytes"] for b in found] == [4239400, 2101248]  # what DDP reported for this model (rebuilt_bucket_sizes)
    assert [b["ready_s"] for b in found] == [3.0, 5.0]  # a bucket is ready with its last gradient
    assert [b["params"] for b in buckets(grads, size_cap_rule(MIB, MIB))] == [[5, 4, 3, 2], [1, 0]]
    assert [b["params"] for b in buckets(grads, size_cap_rule(64, 64))] == [[5, 4], [3], [2], [1], [0]]


def test_fusion_cycle_rule_takes_each_cycles_gradients_up_to_the_threshold():
    grads = [Gradient(0, 100, 0.0005), Gradient(1, 100, 0.0007), Gradient(2, 300, 0.0009), Gradient(3, 50, 0.0031)]
    found = buckets(grads, fusion_cycle_rule(250, 0.001))
    assert [b["params"] for b in found] == [[0, 1], [2], [3]]
    assert [b["ready_s"] for b in found] == pytest.approx([0.001, 0.001, 0.004])  # ready at the end of its cycle
    assert buckets(grads, {"rule": "single"})[0]["bytes"] == 550


def test_hooks_exist_only_inside_the_compute_only_window():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    timeline = GradientTimeline(RankContext(device=torch.device("cpu"), clock=iter(range(1000)).__next__, model=model,
                                            bucketing=size_cap_rule(MIB, 25 * MIB)))

    def hooked() -> int:
        return sum(len(p._post_accumulate_grad_hooks or {}) for p in model.parameters())

    timeline.start(THROUGHPUT)
    assert hooked() == 0 and timeline.marks(THROUGHPUT) is None
    timeline.start(COMPUTE_ONLY)
    assert hooked() == 4
    mark = timeline.marks(COMPUTE_ONLY)
    for _ in range(3):
        mark("start")
        loss = model(torch.ones(3, 4)).sum()
        mark("forward")
        loss.backward()
        mark("backward")
        mark("optimizer")
    timeline.stop(COMPUTE_ONLY, complete=True)
    assert hooked() == 0
    result = timeline.rank_result()["gradient_timeline"]
    assert result["steps"] == 3
    ready = result["param_ready_s"]
    assert ready[2] < ready[0] and ready[3] < ready[1]  # the last layer's gradients are ready first
    assert all(0 < r <= result["backward_s"] for r in ready)
    assert result["param_bytes"] == [128, 32, 64, 8]


@pytest.mark.parametrize("extra", [["--workload", "cnn", "--model", "convnet"],
                                   ["--workload", "mlp", "--ddp-bucket-cap-mb", "1"]], ids=["cnn-default-cap", "mlp-1mib"])
def test_timeline_buckets_are_ddps_own(out_dir, extra):
    """The buckets the timeline derives from ready times are those DDP's Reducer built (its logging data)."""
    result = run_cli("run", *extra, *TINY, "--out", str(out_dir))
    assert result.returncode == 0, result.stderr
    (record,) = read_records(out_dir)
    timeline = record["metrics"]["gradient_timeline"]
    [ddp_own] = [counters["bucket_param_indices"] for counters in record["metrics"]["engine_counters_by_rank"]]
    assert [b["params"] for b in timeline["buckets"]] == ddp_own
    assert len(timeline["buckets"]) >= 2
    ready = [b["ready_s"] for b in timeline["buckets"]]
    assert ready == sorted(ready) and 0 < ready[-1] <= timeline["backward_s"]
    assert sum(b["bytes"] for b in timeline["buckets"]) == record["workload"]["gradient_bytes_per_step"]
    # the same steps, cut at three marks: the phases' medians against the window's median step (its mean, the
    # record's compute_step_time_s, carries a step another process slowed; CI's loaded machine gave 0.40 of it)
    phases = timeline["forward_s"] + timeline["backward_s"] + timeline["optimizer_s"]
    [steps] = [rank["compute_step_times_s"] for rank in record["ranks"]]
    assert 0.5 < phases / statistics.median(steps) < 1.5



def test_merge_takes_the_slowest_rank_per_gradient_and_buckets_after():
    def rank(ready: list[float], backward: float) -> dict:
        return {"gradient_timeline": {"forward_s": 0.01, "backward_s": backward, "optimizer_s": 0.002,
                                      "param_bytes": [MIB, MIB, 8], "param_ready_s": ready, "steps": 5,
                                      "clock": "host clock", "bucketing": size_cap_rule(MIB, 25 * MIB)}}

    merged = GradientTimeline.merge([rank([0.009, 0.006, 0.001], 0.010), rank([0.008, 0.007, 0.002], 0.011)], None)
    timeline = merged["gradient_timeline"]
    assert timeline["param_ready_s"] == [0.009, 0.007, 0.002] and timeline["backward_s"] == 0.011
    assert [b["params"] for b in timeline["buckets"]] == [[2, 1], [0]]  # 8 B + 1 MiB closes the first bucket
    assert [b["ready_s"] for b in timeline["buckets"]] == [0.007, 0.009]
    assert GradientTimeline.merge([rank([0.1, 0.1, 0.1], 0.2), {"gradient_timeline": None}], None) == {"gradient_timeline": None}

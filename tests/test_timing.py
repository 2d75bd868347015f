"""The throughput arithmetic and the step timer, on a fake clock."""

import pytest
import torch

from conftest import read_records, run_cli

from hpcbench.timing import StepTimer, repeats_settled, throughput_metrics


class FakeClock:
    def __init__(self, ticks):
        self.ticks = iter(ticks)

    def __call__(self):
        return next(self.ticks)


def test_step_timer_reads_window_and_each_step_from_the_clock():
    # start: t0 and first mark; three steps; stop.
    timer = StepTimer(torch.device("cpu"), FakeClock([10.0, 10.0, 10.5, 11.5, 11.75, 12.0]))
    timer.start()
    for _ in range(3):
        timer.step_done()
    elapsed, steps = timer.stop()
    assert elapsed == pytest.approx(2.0)
    assert steps == pytest.approx([0.5, 1.0, 0.25])


def test_global_throughput_uses_the_slowest_rank_not_rank_zero_times_world_size():
    # rank 0 takes 1 s per repeat, rank 1 takes 2 s: the job took 2 s.
    elapsed = [[1.0, 1.0], [2.0, 4.0]]
    steps = [[[0.5, 0.5], [0.5, 0.5]], [[1.0, 1.0], [2.0, 2.0]]]
    metrics = throughput_metrics(elapsed, steps, global_batch_size=64)
    assert metrics["samples_per_s_repeats"] == pytest.approx([2 * 64 / 2.0, 2 * 64 / 4.0])
    assert metrics["samples_per_s"] == pytest.approx((64.0 + 32.0) / 2)  # median of two repeats
    assert metrics["samples_per_s_per_proc"] == pytest.approx(48.0 / 2)
    assert metrics["samples_per_s"] != pytest.approx(2 * 2 * 64 / 1.0)  # the rank-0 extrapolation
    assert metrics["elapsed_s_repeats"] == [2.0, 4.0]


def test_step_time_percentiles_take_each_step_at_its_slowest_rank():
    elapsed = [[10.0], [10.0]]
    steps = [[[1.0] * 19 + [1.0]], [[1.0] * 19 + [9.0]]]
    metrics = throughput_metrics(elapsed, steps, global_batch_size=2)
    assert metrics["step_time_s_median"] == pytest.approx(1.0)
    assert metrics["step_time_s_p95"] == pytest.approx(1.0 + 0.05 * 8.0)  # linear interpolation at 95 %
    assert metrics["num_steps_timed"] == 20


def test_auto_repeats_stop_when_the_interval_is_narrow_or_the_budget_is_spent():
    steady = [1.0, 1.001, 0.999]
    assert repeats_settled(steady[:2], 0.02, 60, 3, 50) is None  # too few for an interval
    settled = repeats_settled(steady, 0.02, 60, 3, 50)
    assert settled["stopped_by"] == "width" and settled["repeats"] == 3 and settled["half_width"] < 0.01
    noisy = [1.0, 1.5, 0.8, 1.3]
    assert repeats_settled(noisy, 0.02, 60, 3, 50) is None  # wide, time left: repeat again
    spent = repeats_settled(noisy, 0.02, 4.5, 3, 50)
    assert spent["stopped_by"] == "budget" and spent["half_width"] > 0.02 and spent["timed_s"] == pytest.approx(4.6)
    assert repeats_settled(noisy, 0.02, 60, 3, 4)["stopped_by"] == "budget"  # the cap


def test_a_run_with_auto_repeats_says_why_it_stopped(out_dir):
    """Every rank stops at the same repeat (the decision is taken on the slowest rank's window), and the record and
    the screen say whether the interval reached its width or the budget ended first."""
    result = run_cli("run", "--workload", "mlp", "--nproc", "2", "--batch-size", "16", "--steps", "5", "--warmup", "2",
                     "--repeats", "auto", "--repeats-width", "0.05", "--repeats-budget", "1", "--no-breakdown",
                     "--device", "cpu", "--out", str(out_dir))
    assert result.returncode == 0, result.stderr
    [record] = read_records(out_dir)
    auto = record["metrics"]["auto_repeats"]
    assert record["config"]["num_repeats"] == "auto" and auto["stopped_by"] in ("width", "budget")
    assert 3 <= auto["repeats"] == len(record["metrics"]["samples_per_s_repeats"]) <= 50
    assert all(len(rank["step_times_s"]) == auto["repeats"] for rank in record["ranks"])
    assert (auto["half_width"] <= auto["target_width"] == 0.05) == (auto["stopped_by"] == "width")
    assert auto["stopped_by"] == "width" or auto["timed_s"] >= 1 or auto["repeats"] == 50
    assert f"--repeats auto: {auto['repeats']} repeats, throughput ±" in result.stdout

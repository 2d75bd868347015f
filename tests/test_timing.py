"""The throughput arithmetic and the step timer, on a fake clock."""

import pytest
import torch

from hpcbench.timing import StepTimer, throughput_metrics


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

"""What the gradient-ready timeline costs a compute-only step: the same steps with and without its hooks
and marks, side by side in one run (100 linear layers: 200 gradients, so the per-gradient cost shows).

    python benchmarks/timeline_cost.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from hpcbench.measurements import COMPUTE_ONLY, RankContext
from hpcbench.measurements.gradient_timeline import GradientTimeline

ROUNDS, STEPS = 5, 50


def main() -> None:
    torch.set_num_threads(1)
    model = nn.Sequential(*[nn.Linear(64, 64) for _ in range(100)])
    inputs = torch.randn(8, 64)

    def step(mark: Callable[[str], None]) -> None:
        mark("start")
        loss = model(inputs).sum()
        mark("forward")
        loss.backward()
        mark("backward")
        model.zero_grad()
        mark("optimizer")

    def median_step(mark: Callable[[str], None]) -> float:
        times = []
        for _ in range(STEPS):
            started = time.perf_counter()
            step(mark)
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    def nothing(boundary: str) -> None:
        pass

    for _ in range(20):
        step(nothing)
    plain, hooked = [], []
    for _ in range(ROUNDS):  # interleaved, so drift in the machine's speed hits both alike
        plain.append(median_step(nothing))
        timeline = GradientTimeline(RankContext(device=torch.device("cpu"), clock=time.perf_counter, model=model))
        timeline.start(COMPUTE_ONLY)
        hooked.append(median_step(timeline.marks(COMPUTE_ONLY)))
        timeline.stop(COMPUTE_ONLY, complete=True)
    gradients = sum(1 for p in model.parameters())
    bare, timed = statistics.median(plain), statistics.median(hooked)
    print(f"{gradients} gradients: step {bare * 1e3:.3f} ms without the timeline, {timed * 1e3:.3f} ms with it: "
          f"{(timed - bare) * 1e6:.0f} us, {(timed - bare) / gradients * 1e6:.2f} us per gradient "
          f"(ratio {timed / bare:.3f})")


if __name__ == "__main__":
    main()

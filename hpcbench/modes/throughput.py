"""--mode throughput (the default): how fast training runs once warm.

Warm-up, then `--repeats` timed windows of `--steps` steps (every throughput number comes from
these; `auto`: until their interval is narrow enough or a time budget is spent), then the windows that explain them: the phases window (--phases) and the compute-only
window, the same steps without gradient synchronisation (--breakdown, on by default).
"""

from __future__ import annotations

from typing import Any

from hpcbench.config import AUTO, AUTO_REPEATS_BUDGET_S, AUTO_REPEATS_MAX, AUTO_REPEATS_MIN, AUTO_REPEATS_WIDTH
from hpcbench.measurements import PHASES_WINDOW, THROUGHPUT
from hpcbench.modes.base import RunMode, Session, register
from hpcbench.timing import repeats_settled


@register
class Throughput(RunMode):
    name = "throughput"
    description = "samples/s over timed windows after a warm-up, then what a step spends where"
    order = 0

    def run(self, session: Session) -> None:
        cfg = session.cfg
        auto = cfg.num_repeats == AUTO
        warmup_steps = session.warm_up(cfg.num_warmup_steps)
        if not session.stopped:  # for whoever watches (and the fault tests)
            session.progress.note(f"hpcbench: warm-up done ({warmup_steps} steps); timing {cfg.num_repeats} x "
                                  f"{cfg.num_steps} steps on {session.engine.placement.world_size} rank(s)")
        windows_s: list[float] = []
        for _ in range(0 if session.stopped else AUTO_REPEATS_MAX if auto else cfg.num_repeats):
            session.progress.repeat_started()
            started = session.clock()
            if session.window(THROUGHPUT, cfg.num_steps):
                break  # a partial repeat is not a measurement; its steps still count as done
            elapsed = session.clock() - started
            session.progress.repeat_done(elapsed)
            session.repeats_done += 1
            if auto:  # the slowest rank's window: every rank sees the same numbers and stops at the same repeat
                windows_s.append(session.engine.all_reduce_max(elapsed))
                settled = repeats_settled(windows_s, cfg.repeats_width or AUTO_REPEATS_WIDTH,
                                          cfg.repeats_budget_s or AUTO_REPEATS_BUDGET_S, AUTO_REPEATS_MIN, AUTO_REPEATS_MAX)
                if settled:
                    session.results["auto_repeats"] = settled
                    break
        session.compile_done()
        session.snapshot_replicas()  # before the compute-only window: its unsynchronised steps let replicas drift
        if cfg.phases and not session.stopped:
            session.progress.window_started("phases")
            session.window(PHASES_WINDOW, cfg.num_steps)
        session.compute_only_window()
        session.input_split_windows()

    @classmethod
    def merge(cls, per_rank: list[dict[str, Any]]) -> dict[str, Any]:
        """--repeats auto: why the repeats stopped (the interval's width reached, or the budget spent), else null."""
        return {**super().merge(per_rank), "auto_repeats": per_rank[0].get("auto_repeats")}

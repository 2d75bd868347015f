"""--mode throughput (the default): how fast training runs once warm.

Warm-up, then `--repeats` timed windows of `--steps` steps (every throughput number comes from
these), then the windows that explain them: the phases window (--phases) and the compute-only
window, the same steps without gradient synchronisation (--breakdown, on by default).
"""

from __future__ import annotations

from hpcbench.measurements import PHASES_WINDOW, THROUGHPUT
from hpcbench.modes.base import RunMode, Session, register


@register
class Throughput(RunMode):
    name = "throughput"
    description = "samples/s over timed windows after a warm-up, then what a step spends where"
    order = 0

    def run(self, session: Session) -> None:
        cfg = session.cfg
        warmup_steps = session.warm_up(cfg.num_warmup_steps)
        if not session.stopped:  # for whoever watches (and the fault tests)
            session.progress.note(f"hpcbench: warm-up done ({warmup_steps} steps); timing {cfg.num_repeats} x "
                                  f"{cfg.num_steps} steps on {session.engine.placement.world_size} rank(s)")
        for _ in range(0 if session.stopped else cfg.num_repeats):
            session.progress.repeat_started()
            started = session.clock()
            if session.window(THROUGHPUT, cfg.num_steps):
                break  # a partial repeat is not a measurement; its steps still count as done
            session.progress.repeat_done(session.clock() - started)
            session.repeats_done += 1
        session.compile_done()
        session.snapshot_replicas()  # before the compute-only window: its unsynchronised steps let replicas drift
        if cfg.phases and not session.stopped:
            session.progress.window_started("phases")
            session.window(PHASES_WINDOW, cfg.num_steps)
        session.compute_only_window()
        session.input_split_windows()

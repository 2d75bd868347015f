"""--mode tta: time to accuracy. Windows of training steps, each followed by a held-out evaluation
on every rank, until the workload's quality target is met or the budget (epochs, seconds) is spent.

As MLPerf Training counts it, the clock runs from the first training step to the end of the
evaluation that first meets the target, evaluations included (their seconds are also kept apart);
there is no warm-up (training from the first step counts) and no compute-only window (its steps
would train the model too). The bookkeeping is convergence.TargetWatch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcbench.config import TTA_DEFAULT_MAX_TIME_S, RunConfig
from hpcbench.convergence import TargetWatch
from hpcbench.errors import ConfigError
from hpcbench.measurements import THROUGHPUT
from hpcbench.modes.base import RunMode, Session, register
from hpcbench.progress import RunProgress
from hpcbench.timing import sync
from hpcbench.workloads import Workload, registry

@register
class TimeToAccuracy(RunMode):
    name = "tta"
    description = ("train until the workload's held-out quality target or a budget; time, steps and samples "
                   "to target")
    order = 10

    @classmethod
    def default_data(cls, workload: Workload) -> str | None:
        return workload.tta_data

    @classmethod
    def resolve(cls, cfg: RunConfig, workload: Workload, options: Any, data: str) -> dict[str, Any]:
        """The target (checked against the metric's range), the budget and the evaluation cadence."""
        quality = workload.quality(options, data)
        if quality is None:
            having = [name for name, w in registry().items() if w.tta_data is not None]
            raise ConfigError("mode", f"tta needs a held-out quality target; workload {workload.name!r} has none with "
                              f"--data {data} (workloads with one: {', '.join(having)})")
        target = quality.target if cfg.target is None else cfg.target
        if not quality.low <= target <= quality.high:
            raise ConfigError("target", f"{target} is outside {quality.metric}'s range [{quality.low:g}, {quality.high:g}]")
        return {"target": float(target), "max_time_s": cfg.max_time_s or TTA_DEFAULT_MAX_TIME_S,
                "eval_every": cfg.eval_every or workload.eval_every_steps, "num_warmup_steps": 0, "breakdown": False}

    def progress(self, cfg: RunConfig, shown: str) -> RunProgress:
        """No known end: a line per evaluation instead of a bar."""
        return RunProgress(0, 0, 0, "off" if shown == "off" else "lines")

    def run(self, session: Session) -> None:
        cfg, engine = session.cfg, session.engine
        quality = session.workload.quality(session.options, cfg.data)
        per_epoch = session.workload.steps_per_epoch(session.options, session.data)
        session.window_steps = cfg.eval_every or per_epoch or 1
        watch = TargetWatch(quality=quality, target=cfg.target, max_epochs=cfg.max_epochs, max_time_s=cfg.max_time_s,
                            global_batch_size=cfg.batch_size * session.data.world_size, steps_per_epoch=per_epoch)
        engine.barrier()
        started = session.clock()
        while not session.window(THROUGHPUT, session.window_steps):
            session.repeats_done += 1
            if self.evaluate(session, watch, started):
                break
        session.results["tta"] = watch.result(train_s=sum(session.meters.rank_results()["elapsed_s"]),
                                              eval_s_total=sum(point["eval_s"] for point in watch.curve))
        session.compile_done()
        session.snapshot_replicas()
        session.breakdown_note = "not measured (--no-breakdown)"

    @staticmethod
    def evaluate(session: Session, watch: TargetWatch, started: float) -> bool:
        """The held-out score summed over every rank's shard; True when the run ends here."""
        engine, device = session.engine, session.engine.device
        sync(device)
        eval_started = session.clock()
        session.local_model.eval()
        total, count = session.workload.heldout_score(session.options, session.data, session.local_model)
        session.local_model.train()
        sums = engine.buffer(np.array([total, count], dtype=np.float64))
        engine.all_reduce_sum_(sums)
        total, count = engine.to_host(sums).tolist()
        eval_s = engine.all_reduce_max(session.clock() - eval_started)  # blocking: the stop vote may be in flight
        seconds = engine.all_reduce_max(session.clock() - started)
        ended = watch.evaluated(step=session.repeats_done * session.window_steps, seconds=seconds, eval_s=eval_s,
                                total=total, count=int(count))
        point = watch.curve[-1]
        shown = "n/a" if point["quality"] is None else f"{point['quality']:.4g}"
        session.progress.note(f"hpcbench: step {point['step']}: {watch.quality.metric} {shown} "
                              f"(target {watch.target:g}) at {seconds:.1f} s")
        return ended

    @classmethod
    def merge(cls, per_rank: list[dict[str, Any]]) -> dict[str, Any]:
        """The curve every rank agrees on, with the slowest rank's training and evaluation seconds."""
        curves = [r.get("tta") for r in per_rank]
        tta = None
        if all(curves):
            tta = {**curves[0], "train_s": max(c["train_s"] for c in curves), "eval_s": max(c["eval_s"] for c in curves)}
        return {**super().merge(per_rank), "tta": tta}

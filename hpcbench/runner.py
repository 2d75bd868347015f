"""The one training/benchmark loop: warm-up, timed windows on every rank, reduction, record.

The loop body is the course's: zero_grad, forward, loss, backward, step (the engine does the
last two, so an engine that owns the backward pass needs no change here). What is measured
around each window is the measurements' business (`hpcbench.measurements`); everything a rank
measures is gathered to rank 0, which alone writes the record.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hpcbench import records
from hpcbench.config import RunConfig
from hpcbench.convergence import TargetWatch
from hpcbench.engines import Engine, Placement, engine_libraries, start_engine
from hpcbench.errors import ConfigError
from hpcbench.guard import StepWatchdog, StopSignals, injected_fault
from hpcbench.measurements import COMPUTE_ONLY, PHASES_WINDOW, THROUGHPUT, Meters, RankContext, RunFacts, merge_metrics
from hpcbench.peaks import flop_metrics
from hpcbench.progress import RunProgress, progress_mode
from hpcbench.provenance import host_facts, provenance
from hpcbench.timing import PhaseTimer, phase_metrics, sync
from hpcbench.training import Arithmetic, CompileWatch, LrSchedule, channels_last
from hpcbench.workloads import DataContext, get_workload
from hpcbench.workloads.base import to_device


def run_worker(
    cfg: RunConfig, placement: Placement, run_id: str, path: Path, stop: StopSignals,
    clock: Callable[[], float] = time.perf_counter,
) -> int | None:
    """Run one rank of a benchmark; rank 0 writes the record to `path`.

    Returns the stop signal's number when the run was interrupted, None when it ran to the end.
    """
    torch.set_num_threads(cfg.num_threads or 1)
    started = records.utc_now().isoformat()
    engine = start_engine(cfg.engine, placement, cfg.device, cfg.timeout_s, cfg.engine_options)
    placement = engine.placement  # an engine may number the ranks itself (Horovod does)
    try:
        check_record_folder(engine, path.parent)
        mine = measure(cfg, engine, clock, stop)
        everyone = engine.all_gather_object(mine)
        if placement.rank == 0:
            record = build_record(cfg, run_id, everyone, engine, started, placement.launcher)
            records.write_atomic(path, record)
            _print_summary(record, path)
        engine.barrier()  # leave together: no rank tears down its connections while another still uses them
        return stop_signal(everyone)
    except ConfigError:
        raise  # the folder cannot take a record: nothing to write, nothing was trained
    except Exception as exc:
        if placement.rank == 0 and not path.exists():
            # Best effort: the launcher, which sees every rank, may refine this record.
            reason = f"rank 0: {type(exc).__name__}: {exc}"
            prov = provenance(
                hosts=[host_facts()["host"]], engine_versions=engine.versions(), started=started,
                ended=records.utc_now().isoformat(), launcher=placement.launcher,
                engine_libraries=engine_libraries(),
            )
            failed = records.make_record(
                run_id=run_id, status="failed", reason=reason, config=cfg.to_dict(), workload=None, metrics=None,
                ranks=[], provenance={**prov, "traceback": traceback.format_exc(limit=8)},
            )
            records.write_atomic(path, failed)
        raise
    finally:
        engine.close()


def check_record_folder(engine: Engine, folder: Path) -> None:
    """Rank 0, which alone writes, checks the record's folder (records.check_out_dir: created when
    missing, refused when unwritable, full or of another schema) before any step; every rank raises
    the same ConfigError, so none trains a run whose record would be lost."""
    problem = None
    if engine.placement.rank == 0:
        try:
            records.check_out_dir(str(folder))
        except ConfigError as exc:
            problem = (exc.field_name, exc.message)  # a tuple: ConfigError itself does not pickle
    agreed = engine.all_gather_object(problem)[0]
    if agreed:
        raise ConfigError(*agreed)


class AgreedStop:
    """Every rank stops after the same step, whichever rank got the signal.

    Ranks vote now and then: an asynchronous MAX over (stop flag, seconds per step), read one
    voting interval later, when it has long completed, so a vote never waits. The reduced step
    time sets the next interval to about VOTE_INTERVAL_S; all ranks compute the same one from
    the same numbers, so they always vote at the same steps. Voting every step cost 7 % of the
    mlp workload's throughput on 2 CPU processes; this costs nothing measurable.
    """

    VOTE_INTERVAL_S = 0.5
    MAX_STEPS_BETWEEN_VOTES = 10_000

    def __init__(self, engine: Engine, stop: StopSignals, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._stop = stop
        self._clock = clock
        self._pending: Callable[[], list[float]] | None = None
        self._interval = 1  # steps between votes: the same on every rank
        self._countdown = 1
        self._last_vote_at: float | None = None

    def poll(self) -> bool:
        """Call before every step; True means every rank stops here."""
        self._countdown -= 1
        if self._countdown > 0:
            return False
        steps_since_last_vote = self._interval
        if self._pending:
            stop_flag, seconds_per_step = self._pending()
            self._pending = None
            if stop_flag:
                return True
            wanted = int(self.VOTE_INTERVAL_S / seconds_per_step) if seconds_per_step > 0 else 1
            self._interval = max(1, min(self.MAX_STEPS_BETWEEN_VOTES, wanted))
        now = self._clock()
        mine = (now - self._last_vote_at) / steps_since_last_vote if self._last_vote_at is not None else 0.0
        self._last_vote_at = now
        self._pending = self._engine.all_reduce_max_async([float(self._stop.requested), mine])
        self._countdown = self._interval
        return False

    def drain(self) -> None:
        """Finish the vote in flight, so no rank leaves with a collective pending."""
        if self._pending:
            self._pending()
            self._pending = None


def measure(cfg: RunConfig, engine: Engine, clock: Callable[[], float], stop: StopSignals) -> dict[str, Any]:
    """This rank's part: train, measure every window, and describe the result."""
    workload = get_workload(cfg.workload)
    options = workload.options(cfg.options)
    device = engine.device
    rank = engine.placement.rank
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank (engines also broadcast them)
    local_model = workload.build_model(options).to(device)
    if cfg.channels_last:
        local_model = local_model.to(memory_format=torch.channels_last)
    arithmetic = Arithmetic(cfg.precision, device)
    description = describe_model(workload, options, local_model, device)  # before wrapping: DDP's hooks would all-reduce
    description["arithmetic"] = arithmetic.settings()
    wrapped = engine.wrap_model(local_model)
    optimizer = engine.wrap_optimizer(workload.optimizer(wrapped.parameters(), options), wrapped)
    world_size = engine.placement.world_size
    # k: the global batch over the 1-process one of the same curve (weak scaling grows it, strong keeps it)
    schedule = LrSchedule(optimizer, cfg.lr_scaling, cfg.lr_warmup_steps, k=world_size if cfg.scaling == "weak" else 1)
    description["learning_rate"] = schedule.settings()
    # Compiled around the engine's wrapper: DDP's bucket boundaries split the graph, so all-reduces still overlap backward.
    model = torch.compile(wrapped) if cfg.compile else wrapped
    data = DataContext(
        device=device, batch_size=cfg.batch_size, seed=cfg.seed, rank=rank, world_size=world_size, data=cfg.data,
        data_dir=cfg.data_dir, num_data_workers=cfg.num_data_workers, model=local_model,
    )
    batches = workload.batches(options, data)
    if cfg.channels_last:
        batches = channels_last(batches)
    fault = injected_fault()
    steps_done = 0

    mark: Callable[[str], None] = no_mark  # the phases window's timer; outside it, nothing

    def train_step() -> torch.Tensor:
        nonlocal steps_done
        watchdog.step_started()
        if fault:
            fault.maybe_fire(rank, steps_done)
        mark("start")
        inputs, targets = next(batches)
        mark("data")
        schedule.set(steps_done)  # --lr-scaling/--lr-warmup-steps; nothing at their defaults
        optimizer.zero_grad()  # set_to_none by default since torch 2.0 (Horovod's wrapper takes no argument)
        with arithmetic.autocast():  # bf16/fp16: forward and loss only, as torch.amp prescribes
            output = model(inputs)
            loss = workload.loss(output, targets)
        mark("forward")
        engine.backward(arithmetic.scaled(loss))  # loss.backward(); DDP all-reduces gradients inside it
        mark("backward")
        if arithmetic.scaler:  # fp16: unscale, skip a step with inf/NaN gradients, adjust the scale
            engine.scaled_step(optimizer, arithmetic.scaler)
        else:
            engine.step(optimizer)  # optimizer.step(); Horovod waits for its all-reduces here
        mark("optimizer")
        steps_done += 1
        return loss.detach()  # no .item() here: that would be a host-device sync inside the timed window

    agreed = AgreedStop(engine, stop, clock)
    meters = Meters(RankContext(device=device, clock=clock))
    losses: list[torch.Tensor] = []

    def window(name: str, num_steps: int) -> bool:
        """One measured window of steps; True when the ranks agreed to stop inside it."""
        engine.barrier()  # every rank starts the window together
        meters.start(name)
        stopped = False
        for _ in range(num_steps):
            if stopped := agreed.poll():
                break
            loss = train_step()
            if name == THROUGHPUT:  # the record's losses are the timed steps'
                losses.append(loss)
            meters.step_done(name)
            progress.step()  # a counter; the bar redraws at most twice a second
        meters.stop(name, complete=not stopped)
        return stopped

    repeats_done = 0
    progress_shown = progress_mode() if rank == 0 else "off"
    if cfg.mode == "tta":  # no known end: a line per evaluation instead of a bar
        progress = RunProgress(0, 0, 0, "off" if progress_shown == "off" else "lines")
    else:
        progress = RunProgress(cfg.num_warmup_steps, cfg.num_repeats, cfg.num_steps, progress_shown,
                               extra_steps=cfg.num_steps * (cfg.breakdown + cfg.phases))

    def train_to_target() -> tuple[bool, TargetWatch, int]:
        """--mode tta: windows of training steps, each followed by a held-out evaluation on every rank,
        until the target is met or the budget is spent; (stopped by a signal, the curve, steps per window)."""
        nonlocal repeats_done
        quality = workload.quality(options, cfg.data)
        per_epoch = workload.steps_per_epoch(options, data)
        eval_every = cfg.eval_every or per_epoch or 1
        watch = TargetWatch(metric=quality.metric, higher_is_better=quality.higher_is_better, target=cfg.target,
                            min_count=quality.min_count, max_epochs=cfg.max_epochs, max_time_s=cfg.max_time_s,
                            global_batch_size=cfg.batch_size * world_size, steps_per_epoch=per_epoch)
        engine.barrier()
        started = clock()
        while True:
            if window(THROUGHPUT, eval_every):
                return True, watch, eval_every
            repeats_done += 1
            sync(device)
            eval_started = clock()
            local_model.eval()  # the module itself: a wrapper's forward could start collectives
            total, count = workload.heldout_score(options, data, local_model)
            local_model.train()
            sums = engine.buffer(np.array([total, count], dtype=np.float64))
            engine.all_reduce_sum_(sums)
            total, count = engine.to_host(sums).tolist()
            eval_s = engine.all_reduce_max(clock() - eval_started)  # blocking: the stop vote may be in flight
            seconds = engine.all_reduce_max(clock() - started)
            ended = watch.evaluated(step=repeats_done * eval_every, seconds=seconds, eval_s=eval_s, total=total,
                                    count=int(count))
            point = watch.curve[-1]
            shown = "n/a" if point["quality"] is None else f"{point['quality']:.4g}"
            progress.note(f"hpcbench: step {point['step']}: {quality.metric} {shown} (target {cfg.target:g}) "
                          f"at {seconds:.1f} s")
            if ended:
                return False, watch, eval_every

    compile_watch = CompileWatch(device, engine.all_reduce_max, clock) if cfg.compile else None
    compile_result = None
    tta = None
    window_steps = cfg.num_steps
    with StepWatchdog(cfg.timeout_s) as watchdog:
        stopped = False
        if cfg.mode == "tta":
            stopped, watch, window_steps = train_to_target()
            tta = watch.result(train_s=sum(meters.rank_results()["elapsed_s"]),
                               eval_s_total=sum(point["eval_s"] for point in watch.curve))
        warmup_steps = 0
        while not tta and (compile_watch.wants_more(cfg.num_warmup_steps) if compile_watch
                           else warmup_steps < cfg.num_warmup_steps):
            if stopped := agreed.poll():
                break
            with compile_watch.step() if compile_watch else contextlib.nullcontext():
                train_step()
            warmup_steps += 1
            progress.step()
        if compile_watch:
            compile_watch.warmup_done()

        if not stopped and not tta:  # for whoever watches (and the fault tests)
            progress.note(f"hpcbench: warm-up done ({warmup_steps} steps); timing {cfg.num_repeats} x "
                          f"{cfg.num_steps} steps on {engine.placement.world_size} rank(s)")
        for _ in range(0 if stopped or tta else cfg.num_repeats):
            progress.repeat_started()
            started = clock()
            if stopped := window(THROUGHPUT, cfg.num_steps):
                break  # a partial repeat is not a measurement; its steps still count as done
            progress.repeat_done(clock() - started)
            repeats_done += 1
        if compile_watch:
            compile_result = compile_watch.result(cfg.num_warmup_steps)
        # Before the compute-only window: its unsynchronised steps let the replicas drift apart.
        digest = engine.replica_digest(wrapped)
        counters = engine.counters(wrapped)  # the library's own view of the synchronised steps
        phase_times = None
        if cfg.phases and not stopped:
            phase_timer = PhaseTimer(device, clock)
            mark = phase_timer.mark
            progress.window_started("phases")
            stopped = window(PHASES_WINDOW, cfg.num_steps)
            mark = no_mark
            phase_times = None if stopped else phase_timer.seconds
        breakdown_note = None
        if not cfg.breakdown:
            breakdown_note = "not measured (--no-breakdown)"
        elif stopped:
            breakdown_note = "not measured: the run was stopped first"
        else:
            try:
                unsynchronised = engine.no_sync(wrapped)
            except NotImplementedError as exc:
                breakdown_note = f"not measured: {exc}"
            else:
                progress.window_started("compute-only")
                with unsynchronised:
                    stopped = window(COMPUTE_ONLY, cfg.num_steps)
        agreed.drain()
    progress.close()

    facts = host_facts()
    return {
        "rank": rank,
        "local_rank": engine.placement.local_rank,
        "host": facts["host"],
        "device": str(device),
        "gpu_model": facts["gpu_model"],
        "steps_done": steps_done,
        "repeats_done": repeats_done,
        "window_steps": window_steps,
        "tta": tta,
        "measured": meters.rank_results(),
        "loss_per_step": [float(loss) for loss in losses],
        "loss_first": float(losses[0]) if losses else None,
        "loss_last": float(losses[-1]) if losses else None,
        "stopped": stopped,
        "stop_signal": stop.signum,
        "param_sha256": digest,
        "breakdown_note": breakdown_note,
        "engine_counters": counters,
        "phase_times_s": phase_times,
        "compile": compile_result,
        "workload": description,
        "extra_metrics": workload.extra_metrics(),
    }


def no_mark(boundary: str) -> None:
    """Phase boundaries outside the phases window: nothing (no sync, no clock)."""


def stop_signal(ranks: list[dict[str, Any]]) -> int | None:
    """The signal that stopped the run early (ranks agree on stopping; at least one received it)."""
    if not ranks[0]["stopped"]:
        return None
    return next(r["stop_signal"] for r in ranks if r["stop_signal"] is not None)


def build_record(cfg: RunConfig, run_id: str, ranks: list[dict[str, Any]], engine: Engine, started: str,
                 launcher: str) -> dict[str, Any]:
    ranks = sorted(ranks, key=lambda r: r["rank"])
    metrics = None
    if ranks[0]["repeats_done"]:  # at least one whole timed repeat
        run = RunFacts(global_batch_size=cfg.batch_size * len(ranks), world_size=len(ranks),
                       timed_samples=cfg.batch_size * len(ranks) * ranks[0]["window_steps"] * ranks[0]["repeats_done"],
                       breakdown_note=ranks[0]["breakdown_note"])
        metrics = merge_metrics([r["measured"] for r in ranks], run)
        metrics["loss_first"] = records.finite_or_none(ranks[0]["loss_first"])
        metrics["loss_last"] = records.finite_or_none(ranks[0]["loss_last"])
        metrics["replicas_identical"] = len({r["param_sha256"] for r in ranks}) == 1
        by_rank = [r["engine_counters"] for r in ranks]
        metrics["engine_counters_by_rank"] = by_rank if any(by_rank) else None
        phases = [r["phase_times_s"] for r in ranks]
        metrics["phases"] = phase_metrics(phases) if all(phases) else None
        metrics.update(mean_over_ranks([r["extra_metrics"] for r in ranks]))
        metrics.update(flop_metrics(ranks[0]["workload"]["flops_per_sample"], metrics["samples_per_s"], len(ranks),
                                    cfg.precision, [r["gpu_model"] if r["device"].startswith("cuda") else None
                                                    for r in ranks]))
        metrics["compile"] = compile_metrics([r["compile"] for r in ranks])
        metrics["tta"] = tta_metrics([r["tta"] for r in ranks])

    reasons = []
    signum = stop_signal(ranks)
    if signum is not None and cfg.mode == "tta":
        reasons.append(f"interrupted by {signal.Signals(signum).name} after {ranks[0]['steps_done']} steps of a "
                       "time-to-accuracy run")
    elif signum is not None:
        planned = cfg.num_warmup_steps + (cfg.num_repeats + cfg.breakdown + cfg.phases) * cfg.num_steps
        reasons.append(
            f"interrupted by {signal.Signals(signum).name} after {ranks[0]['steps_done']} of {planned} steps "
            f"({cfg.num_warmup_steps} warm-up); {ranks[0]['repeats_done']} of {cfg.num_repeats} timed repeats complete"
        )
    losses = [(r["rank"], r[key]) for r in ranks for key in ("loss_first", "loss_last") if r[key] is not None]
    bad_loss = sorted({rank for rank, loss in losses if not math.isfinite(loss)})
    if bad_loss:
        reasons.append(f"non-finite loss on ranks {bad_loss}")
    if len({r["param_sha256"] for r in ranks}) != 1:
        reasons.append("replicas diverged: parameters differ between ranks after training")
    status = "interrupted" if signum is not None else "failed" if reasons else "ok"
    prov = provenance(
        hosts=[r["host"] for r in ranks], engine_versions=engine.versions(), started=started,
        ended=records.utc_now().isoformat(), launcher=launcher, engine_libraries=engine_libraries(),
    )
    per_rank = [
        {**{k: r[k] for k in ("rank", "local_rank", "host", "device", "gpu_model", "steps_done")},
         **r["measured"], "param_sha256": r["param_sha256"], "loss_per_step": r["loss_per_step"],
         "engine_counters": r["engine_counters"], "phase_times_s": r["phase_times_s"]}
        for r in ranks
    ]
    return records.make_record(
        run_id=run_id, status=status, reason="; ".join(reasons) or None,
        config=cfg.to_dict(), workload=ranks[0]["workload"], metrics=metrics, ranks=per_rank, provenance=prov,
    )


def tta_metrics(per_rank: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """--mode tta: the curve every rank agrees on, with the slowest rank's training and evaluation seconds."""
    if not all(per_rank):
        return None
    return {**per_rank[0], "train_s": max(r["train_s"] for r in per_rank), "eval_s": max(r["eval_s"] for r in per_rank)}


def compile_metrics(per_rank: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """--compile: the slowest rank's compile seconds; the warm-up every rank ran (they agree on it)."""
    if not all(per_rank):
        return None
    first = per_rank[0]
    return {**first, "compile_s": max(r["compile_s"] for r in per_rank),
            "graphs_compiled_in_timed_repeats": max(r["graphs_compiled_in_timed_repeats"] or 0 for r in per_rank)}


def mean_over_ranks(per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    """Average each workload metric over the ranks that have a value for it (None elsewhere)."""
    keys = sorted({key for metrics in per_rank for key in metrics})
    means = {}
    for key in keys:
        values = [m[key] for m in per_rank if m.get(key) is not None]
        means[key] = sum(values) / len(values) if values else None
    return means


UNCOUNTED_MODULES = (nn.RNNBase,)
"""torch.utils.flop_counter sees no FLOPs inside these fused kernels; a partial count would mislead."""


def flops_per_sample(workload: Any, options: Any, model: nn.Module, device: torch.device, batch_size: int = 2) -> float | None:
    """Forward + backward FLOPs per sample as torch.utils.flop_counter counts them (matmuls, convolutions).

    None where the counter cannot see the model's main kernels — never a guess.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if any(isinstance(m, UNCOUNTED_MODULES) for m in model.modules()):
        return None
    inputs, targets = to_device(workload.synthetic_batch(options, batch_size, torch.Generator().manual_seed(0)), device)
    with FlopCounterMode(display=False) as counter, _dispatch_mode_without_dynamo_import():
        workload.loss(model(inputs), targets).backward()
    model.zero_grad(set_to_none=True)
    total = counter.get_total_flops()
    return total / batch_size if total else None


@contextlib.contextmanager
def _dispatch_mode_without_dynamo_import() -> Iterator[None]:
    """torch wraps every dispatch mode's __torch_dispatch__ in `torch._disable_dynamo`, whose first call
    imports torch._dynamo and inductor: 2.3-4 s of CPU in each process here, most of a short run's
    start-up (and ~60 % of a 1-step test run). That wrapper only keeps torch.compile from tracing the
    mode; when nothing has imported dynamo, nothing can be compiling, so the counter's own dispatch
    runs unwrapped for this one forward/backward and the wrapper is restored after. Where torch's
    internals differ from this (no `__wrapped__`), nothing changes but the import time."""
    from torch.utils import flop_counter

    raw = getattr(getattr(flop_counter, "_FlopCounterMode", None), "__torch_dispatch__", None)
    raw = getattr(raw, "__wrapped__", None)
    if raw is None or "torch._dynamo" in sys.modules:
        yield
        return
    setattr(raw, "__dynamo_disable", raw)  # the attribute torch._compile._disable_dynamo caches its wrapper in
    try:
        yield
    finally:
        delattr(raw, "__dynamo_disable")


def describe_model(workload: Any, options: Any, model: nn.Module, device: torch.device) -> dict[str, Any]:
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    return {
        "name": workload.name,
        "sample_unit": workload.sample_unit,
        "num_params": sum(p.numel() for p in params),
        "num_trainable_params": sum(p.numel() for p in trainable),
        "gradient_bytes_per_step": sum(p.numel() * p.element_size() for p in trainable),
        "flops_per_sample": flops_per_sample(workload, options, model, device),
        **workload.describe(options),
    }


def _print_summary(record: dict[str, Any], path: Path) -> None:
    m, cfg = record["metrics"], record["config"]
    where = f"hpcbench: {cfg['workload']} {cfg['engine']} {record['provenance']['world_size']} proc(s) on {cfg['device']}"
    measured = (
        f"{m['samples_per_s']:.1f} samples/s ({m['samples_per_s_per_proc']:.1f} per proc), "
        f"step {m['step_time_s_median'] * 1e3:.1f} ms median"
        if m else "no complete timed repeat"
    )
    print(f"{where}: {measured} -> {path}  [{record['status']}]", flush=True)

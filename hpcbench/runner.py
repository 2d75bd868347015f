"""The training loop, the one thing this file is opened to see: `TrainStep` below is the course's
step (zero_grad, forward, loss, backward, step). `measure` builds it on every rank and hands it to
the run mode (`hpcbench.modes`), which decides how many steps, in which named windows; what is
measured around each window is the measurements' business (`hpcbench.measurements`). Everything a
rank measured is gathered to rank 0, which alone writes the record.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpcbench import records
from hpcbench.config import RunConfig
from hpcbench.engines import Engine, Placement, engine_libraries, start_engine
from hpcbench.errors import ConfigError
from hpcbench.guard import StepWatchdog, StopSignals, injected_fault
from hpcbench.measurements import RunFacts, merge_metrics, no_mark
from hpcbench.measurements.input import TimedBatches
from hpcbench.modes import RUN_MODES, Session
from hpcbench.peaks import flop_metrics
from hpcbench.progress import progress_mode
from hpcbench.provenance import host_facts, provenance
from hpcbench.training import Arithmetic, LrSchedule, channels_last
from hpcbench.workloads import DataContext, get_workload
from hpcbench.workloads.base import to_device


class TrainStep:
    """One training step, as the course writes it: zero_grad, forward, loss, backward, step.

    The engine does the last two (DDP all-reduces gradients inside backward, Horovod waits for its
    all-reduces in step), so an engine that owns the backward pass needs no change here. Around the
    five lines only what --precision and --lr-scaling ask for, and `mark`, which is a no-op except
    in the phases window (measurements.phases).
    """

    def __init__(self, *, model: nn.Module, loss_fn: Callable[[Any, Any], torch.Tensor], optimizer: torch.optim.Optimizer,
                 engine: Engine, arithmetic: Arithmetic, schedule: LrSchedule, batches: TimedBatches) -> None:
        self.model, self.loss_fn, self.optimizer, self.engine = model, loss_fn, optimizer, engine
        self.arithmetic, self.schedule, self.batches = arithmetic, schedule, batches
        self.steps_done = 0
        self.mark: Callable[[str], None] = no_mark

    def __call__(self) -> torch.Tensor:
        self.mark("start")
        inputs, targets = next(self.batches)
        self.mark("data")
        self.schedule.set(self.steps_done)  # --lr-scaling/--lr-warmup-steps; nothing at their defaults
        self.optimizer.zero_grad()  # set_to_none by default since torch 2.0 (Horovod's wrapper takes no argument)
        if self.engine.schedules_forward_and_backward:  # pipeline parallel: its schedule runs both, per micro-batch
            loss = self.engine.forward_backward(inputs, targets, self.loss_fn)
        else:
            with self.arithmetic.autocast():  # bf16/fp16: forward and loss only, as torch.amp prescribes
                output = self.model(inputs)
                loss = self.loss_fn(output, targets)
            self.mark("forward")
            self.engine.backward(self.arithmetic.scaled(loss))  # loss.backward(); DDP all-reduces gradients inside it
        self.mark("backward")
        if self.arithmetic.scaler:  # fp16: unscale, skip a step with inf/NaN gradients, adjust the scale
            self.engine.scaled_step(self.optimizer, self.arithmetic.scaler)
        else:
            self.engine.step(self.optimizer)  # optimizer.step(); Horovod waits for its all-reduces here
        self.mark("optimizer")
        self.steps_done += 1
        return loss.detach()  # no .item() here: that would be a host-device sync inside the timed window


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
        records.check_out_dir_on_every_rank(str(path.parent), engine.placement.rank, engine.all_gather_object)
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


def measure(cfg: RunConfig, engine: Engine, clock: Callable[[], float], stop: StopSignals) -> dict[str, Any]:
    """This rank's part: build the step, let the run mode train and measure it, describe what ran."""
    workload = get_workload(cfg.workload)
    options = workload.options(cfg.options)
    mode = RUN_MODES.get(cfg.mode)()
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank (engines also broadcast them)
    local_model = workload.build_model(options).to(engine.device)
    if cfg.channels_last:
        local_model = local_model.to(memory_format=torch.channels_last)
    arithmetic = Arithmetic(cfg.precision, engine.device)
    description = describe_model(workload, options, local_model)
    description["arithmetic"] = arithmetic.settings()
    wrapped = engine.wrap_model(local_model, workload.model_split(options))
    optimizer = engine.wrap_optimizer(workload.optimizer(wrapped.parameters(), options), wrapped)
    data_rank, data_replicas = engine.data_shard()  # ranks that split one model (tp, pp) read the same batch
    # k: the global batch over the 1-process one of the same curve (weak scaling grows it, strong keeps it)
    schedule = LrSchedule(optimizer, cfg.lr_scaling, cfg.lr_warmup_steps, k=data_replicas if cfg.scaling == "weak" else 1)
    description["learning_rate"] = schedule.settings()
    data = DataContext(
        device=engine.device, batch_size=cfg.batch_size, seed=cfg.seed, rank=data_rank,
        world_size=data_replicas, data=cfg.data, data_dir=cfg.data_dir, num_data_workers=cfg.num_data_workers,
        model=local_model, data_format=cfg.data_format, prefetch_factor=cfg.prefetch_factor, pin_memory=cfg.pin_memory,
    )
    batches = workload.batches(options, data)
    description["data_files"] = workload.data_files(data)
    timed_batches = TimedBatches(channels_last(batches) if cfg.channels_last else batches, clock)
    # Compiled around the engine's wrapper: DDP's bucket boundaries split the graph, so all-reduces still overlap backward.
    step = TrainStep(model=torch.compile(wrapped) if cfg.compile else wrapped, loss_fn=workload.loss,
                     optimizer=optimizer, engine=engine, arithmetic=arithmetic, schedule=schedule,
                     batches=timed_batches)
    shown = progress_mode() if engine.placement.rank == 0 else "off"
    with StepWatchdog(cfg.timeout_s) as watchdog:
        session = Session(cfg=cfg, engine=engine, workload=workload, options=options, data=data, step=step,
                          local_model=local_model, wrapped=wrapped, stop=stop, clock=clock, watchdog=watchdog,
                          fault=injected_fault(), progress=mode.progress(cfg, shown))
        mode.run(session)
        session.agreed.drain()
    session.progress.close()
    return rank_facts(session, stop, description, workload.extra_metrics())


def rank_facts(session: Session, stop: StopSignals, description: dict[str, Any],
               extra_metrics: dict[str, Any]) -> dict[str, Any]:
    """What this rank sends to rank 0 for the record."""
    facts = host_facts()
    losses = session.losses
    placement = session.engine.placement
    return {
        "rank": placement.rank,
        "local_rank": placement.local_rank,
        "host": facts["host"],
        "device": str(session.engine.device),
        "gpu_model": facts["gpu_model"],
        "steps_done": session.step.steps_done,
        "repeats_done": session.repeats_done,
        "window_steps": session.window_steps,
        "mode_results": session.results,
        "measured": session.meters.rank_results(),
        "loss_per_step": [float(loss) for loss in losses],
        "loss_first": float(losses[0]) if losses else None,
        "loss_last": float(losses[-1]) if losses else None,
        "stopped": session.stopped,
        "stop_signal": stop.signum,
        "param_sha256": session.replica_digest,
        "replica_group": session.engine.replica_group(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": torch.get_num_threads(),
        "data_replicas": session.data.world_size,
        "breakdown_note": session.breakdown_note,
        "engine_counters": session.engine_counters,
        "workload": description,
        "extra_metrics": extra_metrics,
    }


def stop_signal(ranks: list[dict[str, Any]]) -> int | None:
    """The signal that stopped the run early (ranks agree on stopping; at least one received it)."""
    if not ranks[0]["stopped"]:
        return None
    return next(r["stop_signal"] for r in ranks if r["stop_signal"] is not None)


def build_record(cfg: RunConfig, run_id: str, ranks: list[dict[str, Any]], engine: Engine, started: str,
                 launcher: str) -> dict[str, Any]:
    ranks = sorted(ranks, key=lambda r: r["rank"])
    metrics = run_metrics(cfg, ranks) if ranks[0]["repeats_done"] else None  # at least one whole timed repeat
    reasons = failure_reasons(cfg, ranks)
    status = "interrupted" if stop_signal(ranks) is not None else "failed" if reasons else "ok"
    prov = provenance(
        hosts=[r["host"] for r in ranks], engine_versions=engine.versions(), started=started,
        ended=records.utc_now().isoformat(), launcher=launcher, engine_libraries=engine_libraries(),
    )
    per_rank = [
        {**{k: r[k] for k in ("rank", "local_rank", "host", "device", "gpu_model", "steps_done")},
         **r["measured"], "param_sha256": r["param_sha256"], "replica_group": r["replica_group"],
         "loss_per_step": r["loss_per_step"],
         "engine_counters": r["engine_counters"]}
        for r in ranks
    ]
    return records.make_record(
        run_id=run_id, status=status, reason="; ".join(reasons) or None,
        config=cfg.to_dict(), workload=ranks[0]["workload"], metrics=metrics, ranks=per_rank, provenance=prov,
    )


def run_metrics(cfg: RunConfig, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's metrics: every measurement's merge and the run mode's, then what the ranks' facts say."""
    world_size = len(ranks)
    global_batch = cfg.batch_size * ranks[0]["data_replicas"]  # ranks that split one model share its batch
    run = RunFacts(global_batch_size=global_batch, world_size=world_size,
                   timed_samples=global_batch * ranks[0]["window_steps"] * ranks[0]["repeats_done"],
                   breakdown_note=ranks[0]["breakdown_note"])
    metrics = merge_metrics([r["measured"] for r in ranks], run)
    metrics.update(RUN_MODES.get(cfg.mode).merge([r["mode_results"] for r in ranks]))
    metrics["loss_first"] = records.finite_or_none(ranks[0]["loss_first"])
    metrics["loss_last"] = records.finite_or_none(ranks[0]["loss_last"])
    metrics["oversubscribed"] = oversubscription(ranks)
    metrics["replicas_identical"] = not diverged_groups(ranks)
    metrics["replica_groups"] = replica_groups(ranks)
    by_rank = [r["engine_counters"] for r in ranks]
    metrics["engine_counters_by_rank"] = by_rank if any(by_rank) else None
    metrics.update(mean_over_ranks([r["extra_metrics"] for r in ranks]))
    metrics.update(flop_metrics(ranks[0]["workload"]["flops_per_sample"], metrics["samples_per_s"], world_size,
                                cfg.precision, [r["gpu_model"] if r["device"].startswith("cuda") else None
                                                for r in ranks]))
    return metrics


def failure_reasons(cfg: RunConfig, ranks: list[dict[str, Any]]) -> list[str]:
    """Why the run is not a clean measurement: a stop signal, a non-finite loss, diverged replicas."""
    reasons = []
    signum = stop_signal(ranks)
    if signum is not None and cfg.mode == "tta":
        reasons.append(f"interrupted by {signal.Signals(signum).name} after {ranks[0]['steps_done']} steps of a "
                       "time-to-accuracy run")
    elif signum is not None:
        planned = cfg.num_warmup_steps + (cfg.planned_repeats + cfg.breakdown + cfg.phases) * cfg.num_steps
        reasons.append(
            f"interrupted by {signal.Signals(signum).name} after {ranks[0]['steps_done']} of {planned} steps "
            f"({cfg.num_warmup_steps} warm-up); {ranks[0]['repeats_done']} of {cfg.num_repeats} timed repeats complete"
        )
    losses = [(r["rank"], r[key]) for r in ranks for key in ("loss_first", "loss_last") if r[key] is not None]
    bad_loss = sorted({rank for rank, loss in losses if not math.isfinite(loss)})
    if bad_loss:
        reasons.append(f"non-finite loss on ranks {bad_loss}")
    diverged = diverged_groups(ranks)
    if diverged:
        reasons.append(f"replicas diverged: parameters differ between ranks that must agree after training {diverged}")
    return reasons


def oversubscription(ranks: list[dict[str, Any]]) -> str | None:
    """Why the CPU ranks of a host compete for its cores (more threads than cores), or None: timings of ranks that
    wait for one another (pipeline stages, tensor splits) then measure the operating system's scheduling too."""
    per_host: dict[str, list[dict[str, Any]]] = {}
    for r in ranks:
        if r["device"] == "cpu":
            per_host.setdefault(r["host"], []).append(r)
    for host, here in per_host.items():
        threads, cpus = sum(r["threads"] for r in here), here[0]["cpus"]
        if threads > cpus:
            return f"{len(here)} ranks x {here[0]['threads']} threads on {cpus} cores of {host}"
    return None


def replica_groups(ranks: list[dict[str, Any]]) -> list[list[int]]:
    """The ranks that must hold the same parameters, grouped (all of them under data parallelism; per stage
    under pipeline parallelism)."""
    groups: dict[int, list[int]] = {}
    for r in ranks:
        groups.setdefault(r["replica_group"], []).append(r["rank"])
    return list(groups.values())


def diverged_groups(ranks: list[dict[str, Any]]) -> list[list[int]]:
    """The replica groups whose ranks' parameter digests differ."""
    digests = {r["rank"]: r["param_sha256"] for r in ranks}
    return [group for group in replica_groups(ranks) if len({digests[rank] for rank in group}) != 1]


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


def flops_per_sample(workload: Any, options: Any, batch_size: int = 2) -> float | None:
    """Forward + backward FLOPs per sample as torch.utils.flop_counter counts them (matmuls, convolutions,
    attention), on the meta device: shapes only, so no memory and no time beyond dispatch.

    None where the counter cannot see the model's main kernels — never a guess.
    """
    from torch.utils.flop_counter import FlopCounterMode

    model = workload.meta_model(options)
    if any(isinstance(m, UNCOUNTED_MODULES) for m in model.modules()):
        return None
    meta = torch.device("meta")
    inputs, targets = to_device(workload.synthetic_batch(options, batch_size, torch.Generator().manual_seed(0)), meta)
    with FlopCounterMode(display=False) as counter, _dispatch_mode_without_dynamo_import():
        workload.loss(model(inputs), targets).backward()
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


def describe_model(workload: Any, options: Any, model: nn.Module) -> dict[str, Any]:
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    return {
        "name": workload.name,
        "sample_unit": workload.sample_unit,
        "num_params": sum(p.numel() for p in params),
        "num_trainable_params": sum(p.numel() for p in trainable),
        "gradient_bytes_per_step": sum(p.numel() * p.element_size() for p in trainable),
        "flops_per_sample": flops_per_sample(workload, options),
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
    auto = m.get("auto_repeats") if m else None
    if auto:
        print(f"hpcbench: --repeats auto: {auto['repeats']} repeats, throughput ±{auto['half_width']:.1%} (95 %); "
              + (f"within the target ±{auto['target_width']:.0%}" if auto["stopped_by"] == "width" else
                 f"the budget ({auto['timed_s']:.0f} s of timed windows) ended before the target ±{auto['target_width']:.0%}"
                 " (a noisy machine: see system_load)"), flush=True)
    if m and m.get("oversubscribed"):
        print(f"hpcbench: warning: oversubscribed: {m['oversubscribed']}: the ranks competed for cores, so these numbers "
              "measure the scheduler too (fewer processes, or --threads)", flush=True)
    if m and m.get("contended"):
        print(f"hpcbench: warning: contended: {m['contended_note']}; these numbers are partly the other processes' "
              "(rerun on a quiet machine)", flush=True)

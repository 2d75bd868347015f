"""The one training/benchmark loop: warm-up, timed repeats on every rank, reduction, record.

The loop body is the course's: zero_grad, forward, loss, backward, step. Everything a rank
measures is gathered to rank 0, which alone writes the record.
"""

from __future__ import annotations

import hashlib
import math
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpcbench import records
from hpcbench.config import RunConfig
from hpcbench.engines import Placement, make_engine
from hpcbench.timing import StepTimer, throughput_metrics
from hpcbench.workloads import DataContext, get_workload
from hpcbench.workloads.base import to_device


def run_worker(cfg: RunConfig, placement: Placement, run_id: str, clock: Callable[[], float] = time.perf_counter) -> Path | None:
    """Run one rank of a benchmark; rank 0 returns the path of the record it wrote."""
    torch.set_num_threads(cfg.num_threads or 1)
    started = records.utc_now().isoformat()
    engine = make_engine(cfg.engine, placement, cfg.device, cfg.timeout_s)
    path = records.record_path(cfg.out_dir, cfg.workload, cfg.engine, placement.world_size, run_id)
    try:
        mine = measure(cfg, engine, clock)
        everyone = engine.all_gather_object(mine)
        if placement.rank == 0:
            record = build_record(cfg, run_id, everyone, engine, started, placement.launcher)
            records.write_atomic(path, record)
            _print_summary(record, path)
        engine.barrier()  # leave together: no rank tears down its connections while another still uses them
        return path if placement.rank == 0 else None
    except Exception as exc:
        if placement.rank == 0 and not path.exists():
            # Best effort: the launcher, which sees every rank, may refine this record.
            reason = f"rank 0: {type(exc).__name__}: {exc}"
            prov = records.provenance(
                hosts=[records.host_facts()["host"]], engine_versions=engine.versions(), started=started,
                ended=records.utc_now().isoformat(), launcher=placement.launcher,
            )
            failed = records.make_record(
                run_id=run_id, status="failed", reason=reason, config=cfg.to_dict(), workload=None, metrics=None,
                ranks=[], provenance={**prov, "traceback": traceback.format_exc(limit=8)},
            )
            records.write_atomic(path, failed)
        raise
    finally:
        engine.close()


def measure(cfg: RunConfig, engine: Any, clock: Callable[[], float]) -> dict[str, Any]:
    """This rank's part: train, time every step, and describe the result."""
    workload = get_workload(cfg.workload)
    options = workload.options(cfg.options)
    device = engine.device
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts them)
    local_model = workload.build_model(options).to(device)
    description = describe_model(workload, options, local_model, device)  # before DDP: its hooks would all-reduce
    model = engine.wrap_model(local_model)
    optimizer = engine.wrap_optimizer(workload.optimizer(model.parameters(), options), model)
    batches = workload.batches(
        options,
        DataContext(
            device=device, batch_size=cfg.batch_size, seed=cfg.seed, rank=engine.placement.rank,
            world_size=engine.placement.world_size, data=cfg.data, data_dir=cfg.data_dir,
            num_data_workers=cfg.num_data_workers, model=local_model,
        ),
    )

    def train_step() -> torch.Tensor:
        inputs, targets = next(batches)
        optimizer.zero_grad(set_to_none=True)
        output = model(inputs)
        loss = workload.loss(output, targets)
        loss.backward()
        optimizer.step()
        return loss.detach()  # no .item() here: that would be a host-device sync inside the timed window

    for _ in range(cfg.num_warmup_steps):
        train_step()

    timer = StepTimer(device, clock)
    elapsed_s: list[float] = []
    step_times_s: list[list[float]] = []
    losses: list[torch.Tensor] = []
    for _ in range(cfg.num_repeats):
        engine.barrier()  # every rank starts the window together
        timer.start()
        for _ in range(cfg.num_steps):
            losses.append(train_step())
            timer.step_done()
        elapsed, steps = timer.stop()
        elapsed_s.append(elapsed)
        step_times_s.append(steps)

    facts = records.host_facts()
    return {
        "rank": engine.placement.rank,
        "local_rank": engine.placement.local_rank,
        "host": facts["host"],
        "device": str(device),
        "gpu_model": facts["gpu_model"],
        "elapsed_s": elapsed_s,
        "step_times_s": step_times_s,
        "loss_first": float(losses[0]),
        "loss_last": float(losses[-1]),
        "param_sha256": parameter_digest(local_model),
        "workload": description,
        "extra_metrics": workload.extra_metrics(),
    }


def build_record(cfg: RunConfig, run_id: str, ranks: list[dict[str, Any]], engine: Any, started: str, launcher: str) -> dict[str, Any]:
    ranks = sorted(ranks, key=lambda r: r["rank"])
    global_batch = cfg.batch_size * len(ranks)
    metrics = throughput_metrics([r["elapsed_s"] for r in ranks], [r["step_times_s"] for r in ranks], global_batch)
    metrics["loss_first"] = records.finite_or_none(ranks[0]["loss_first"])
    metrics["loss_last"] = records.finite_or_none(ranks[0]["loss_last"])
    metrics["replicas_identical"] = len({r["param_sha256"] for r in ranks}) == 1
    metrics.update(mean_over_ranks([r["extra_metrics"] for r in ranks]))

    reasons = []
    bad_loss = [r["rank"] for r in ranks if not (math.isfinite(r["loss_first"]) and math.isfinite(r["loss_last"]))]
    if bad_loss:
        reasons.append(f"non-finite loss on ranks {bad_loss}")
    if not metrics["replicas_identical"]:
        reasons.append("replicas diverged: parameters differ between ranks after training")
    prov = records.provenance(
        hosts=[r["host"] for r in ranks], engine_versions=engine.versions(), started=started,
        ended=records.utc_now().isoformat(), launcher=launcher,
    )
    per_rank = [
        {k: r[k] for k in ("rank", "local_rank", "host", "device", "gpu_model", "elapsed_s", "step_times_s", "param_sha256")}
        for r in ranks
    ]
    return records.make_record(
        run_id=run_id, status="failed" if reasons else "ok", reason="; ".join(reasons) or None,
        config=cfg.to_dict(), workload=ranks[0]["workload"], metrics=metrics, ranks=per_rank, provenance=prov,
    )


def parameter_digest(model: nn.Module) -> str:
    """A hash of every parameter's bytes: DDP replicas must agree bit for bit after training."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


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
    with FlopCounterMode(display=False) as counter:
        workload.loss(model(inputs), targets).backward()
    model.zero_grad(set_to_none=True)
    total = counter.get_total_flops()
    return total / batch_size if total else None


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
    print(
        f"hpcbench: {cfg['workload']} {cfg['engine']} {record['provenance']['world_size']} proc(s) on {cfg['device']}: "
        f"{m['samples_per_s']:.1f} samples/s ({m['samples_per_s_per_proc']:.1f} per proc), "
        f"step {m['step_time_s_median'] * 1e3:.1f} ms median -> {path}  [{record['status']}]",
        flush=True,
    )

"""One rank of the FSDP-against-DDP parity test (tests/test_fsdp.py starts it under torchrun, 2 ranks).

Per workload, the same seed, the same per-rank batches and the runner's own TrainStep, once with the
model wrapped as DDP wraps it and once as FSDP shards it (one process group: the FSDP engine is DDP's
with another wrapping). Rank 0 prints one JSON line: per workload, the losses of both and the largest
difference between their final parameters (FSDP's gathered whole).
"""

import json
import sys

import torch

from hpcbench.engines import discover, start_engine
from hpcbench.engines.ddp import DdpEngine
from hpcbench.runner import TrainStep
from hpcbench.training import Arithmetic, LrSchedule
from hpcbench.workloads import get_workload

STEPS = 10
WORKLOADS = {"mlp": {"hidden_size": 256}, "gpt": {}}


def train(engine, workload_name: str, given: dict, wrap) -> tuple[list[float], dict[str, torch.Tensor]]:
    workload = get_workload(workload_name)
    options = workload.options(workload.resolve_options(given))
    torch.manual_seed(0)
    model = wrap(engine, workload.build_model(options))
    optimizer = workload.optimizer(model.parameters(), options)
    generator = torch.Generator().manual_seed(1 + engine.placement.rank)  # different data on every rank
    batches = iter([workload.synthetic_batch(options, 8, generator) for _ in range(STEPS)])
    step = TrainStep(model=model, loss_fn=workload.loss, optimizer=optimizer, engine=engine,
                     arithmetic=Arithmetic("fp32", engine.device), schedule=LrSchedule(optimizer, "none", 0, 1),
                     batches=batches)
    losses = [engine.all_reduce_max(step().item()) for _ in range(STEPS)]
    final = {name.removeprefix("module."): (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
             for name, p in model.named_parameters()}
    return losses, final


def main() -> None:
    engine = start_engine("fsdp", discover(), "cpu", 60, {})
    try:
        facts = {}
        for workload, given in WORKLOADS.items():
            ddp_losses, ddp_params = train(engine, workload, given, DdpEngine.wrap_model)
            fsdp_losses, fsdp_params = train(engine, workload, given, type(engine).wrap_model)
            assert ddp_params.keys() == fsdp_params.keys()
            facts[workload] = {
                "ddp": ddp_losses, "fsdp": fsdp_losses,
                "param_max_abs_diff": max((ddp_params[k] - fsdp_params[k]).abs().max().item() for k in ddp_params),
                "param_max_abs": max(p.abs().max().item() for p in ddp_params.values()),
                "moved": max((ddp_params[k] - p0).abs().max().item() for k, p0 in initial(workload, given).items()),
            }
        if engine.placement.rank == 0:
            print(json.dumps(facts), flush=True)
        engine.barrier()
    finally:
        engine.close()


def initial(workload_name: str, given: dict) -> dict[str, torch.Tensor]:
    """The parameters both runs started from: how far training moved them sizes the tolerance."""
    workload = get_workload(workload_name)
    torch.manual_seed(0)
    return dict(workload.build_model(workload.options(workload.resolve_options(given))).named_parameters())


if __name__ == "__main__":
    main()
    sys.exit(0)

"""One rank of the model-parallel parity test (tests/test_model_parallel.py starts it under torchrun).

Per case (workload, engine, engine options), 10 steps of the runner's own TrainStep under the engine, from one
seed, and the same 10 steps in this process alone on the global batch (every data replica's batch, concatenated):
rank 0 prints one JSON line with, per case, both loss curves and the largest difference between the final
parameters (each rank's stages and shards gathered whole, by the model's own parameter names).
"""

import json
import sys

import torch

from hpcbench.engines import discover, start_engine
from hpcbench.runner import TrainStep
from hpcbench.training import Arithmetic, LrSchedule
from hpcbench.workloads import get_workload

STEPS = 10
BATCH = 8
CASES = {
    "tp": (2, "gpt", {}, "tp", {}),
    "tp-sequence-parallel": (2, "gpt", {}, "tp", {"sequence_parallel": True}),
    "tp-mlp": (2, "mlp", {"hidden_size": 64}, "tp", {}),
    "pp-gpipe": (2, "gpt", {}, "pp", {"schedule": "gpipe"}),
    "pp-1f1b": (2, "gpt", {}, "pp", {"schedule": "1f1b"}),
    "pp-interleaved-1f1b": (2, "gpt", {"layers": 4}, "pp", {"schedule": "interleaved-1f1b"}),
    "pp-mlp": (2, "mlp", {"hidden_size": 64}, "pp", {}),
    "fsdp+tp": (4, "gpt", {}, "tp", {"degree": 2}),
    "dp+pp": (4, "gpt", {"layers": 4}, "pp", {"degree": 2}),
    "pp-4-stages": (4, "gpt", {"layers": 4}, "pp", {}),
}
"""Name -> (ranks, workload, its options, engine, its options): FSDP + TP is tp 2 x dp 2, DP + PP pp 2 x dp 2."""


def batches(workload, options, replica: int, replicas: int, step: int, whole: bool):
    """This replica's batch of a step, or (whole) every replica's, concatenated in replica order."""
    def one(r: int):
        return workload.synthetic_batch(options, BATCH, torch.Generator().manual_seed(1000 * step + r))
    if not whole:
        return one(replica)
    parts = [one(r) for r in range(replicas)]
    return tuple(torch.cat([part[i] for part in parts]) for i in range(2))


def train(workload, options, model, optimizer, engine, replica: int, replicas: int, whole: bool) -> list[float]:
    step = TrainStep(model=model, loss_fn=workload.loss, optimizer=optimizer, engine=engine,
                     arithmetic=Arithmetic("fp32", torch.device("cpu")), schedule=LrSchedule(optimizer, "none", 0, 1),
                     batches=iter([batches(workload, options, replica, replicas, s, whole) for s in range(STEPS)]))
    return [float(step()) for _ in range(STEPS)]


def whole_parameters(model) -> dict[str, torch.Tensor]:
    """This rank's parameters by the model's own names: shards gathered (full_tensor), stages unwrapped (a list of
    them, DDP's wrapper), their module names ("blocks/0") turned back into paths."""
    found = {}
    for part in model if isinstance(model, torch.nn.ModuleList) else [model]:
        for name, param in getattr(part, "module", part).named_parameters():
            found[name.replace("/", ".")] = (param.full_tensor() if hasattr(param, "full_tensor") else param).detach().clone()
    return found


class Alone:
    """The one-process reference's engine: the step's plain backward and optimizer step."""

    schedules_forward_and_backward = False

    def backward(self, loss):
        loss.backward()

    def step(self, optimizer):
        optimizer.step()


def main() -> None:
    _, workload_name, given, engine_name, engine_options = CASES[sys.argv[1]]
    workload = get_workload(workload_name)
    options = workload.options(workload.resolve_options(given))
    engine = start_engine(engine_name, discover(), "cpu", 60, engine_options)
    try:
        replica, replicas = engine.data_shard()
        torch.manual_seed(0)
        reference = workload.build_model(options)
        initial = {k: v.detach().clone() for k, v in reference.named_parameters()}
        alone = train(workload, options, reference, workload.optimizer(reference.parameters(), options), Alone(),
                      0, replicas, whole=True)
        torch.manual_seed(0)
        model = engine.wrap_model(workload.build_model(options), workload.model_split(options))
        optimizer = engine.wrap_optimizer(workload.optimizer(model.parameters(), options), model)
        losses = train(workload, options, model, optimizer, engine, replica, replicas, whole=False)
        per_replica = dict(engine.all_gather_object((replica, losses)))
        params = {}
        for part in engine.all_gather_object(whole_parameters(model)):
            params.update(part)
        expected = dict(reference.named_parameters())
        digests = engine.all_gather_object((engine.replica_group(), engine.replica_digest(model)))
        if engine.placement.rank == 0:
            print(json.dumps({
                "alone": alone, "parallel": [sum(l[s] for l in per_replica.values()) / replicas for s in range(STEPS)],
                "missing": sorted(set(expected) - set(params)),
                "param_max_abs_diff": max((params[k] - p).abs().max().item() for k, p in expected.items() if k in params),
                "moved": max((p - initial[k]).abs().max().item() for k, p in expected.items()),
                "digests": digests, "counters": engine.counters(model)}), flush=True)
        engine.barrier()
    finally:
        engine.close()


if __name__ == "__main__":
    main()
    sys.exit(0)

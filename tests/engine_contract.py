"""One rank of the engine contract test (tests/test_engines.py starts it under each engine's launcher).

Prints, on rank 0, one JSON line: whether replicas stayed identical after synchronised steps,
whether they diverged after steps inside no_sync(), the all-reduced sum of the ranks' numbers, and whether a
ring of point-to-point sends (the survey's) delivered every rank its predecessor's values (null: the engine has
no point-to-point sends).
"""

import contextlib
import json
import sys

import torch

from hpcbench.engines import discover, start_engine


def replicas_identical(engine, model) -> bool:
    return len(set(engine.all_gather_object(engine.replica_digest(model)))) == 1


def train(engine, steps: int, no_sync: bool) -> bool:
    torch.manual_seed(0)
    local = torch.nn.Linear(8, 2)
    model = engine.wrap_model(local)
    optimizer = engine.wrap_optimizer(torch.optim.SGD(model.parameters(), lr=0.1), model)
    generator = torch.Generator().manual_seed(1 + engine.placement.rank)  # different data on every rank
    for _ in range(steps):
        inputs, targets = torch.randn(4, 8, generator=generator), torch.randn(4, 2, generator=generator)
        optimizer.zero_grad()
        with engine.no_sync(model) if no_sync else contextlib.nullcontext():
            loss = torch.nn.functional.mse_loss(model(inputs), targets)
            engine.backward(loss)
            engine.step(optimizer)
    return replicas_identical(engine, model)


def ring(engine) -> bool | None:
    """Each rank sends its number to the next and receives the previous one's: what each got, checked on every rank."""
    rank, size = engine.placement.rank, engine.placement.world_size
    send, receive = torch.full((1024,), float(rank + 1)), torch.zeros(1024)
    try:
        seconds = engine.exchange_(send, (rank + 1) % size, receive, (rank - 1) % size)
    except NotImplementedError:
        return None
    got = bool(torch.all(receive == float((rank - 1) % size + 1))) and seconds > 0
    return all(engine.all_gather_object(got))


def main() -> None:
    engine = start_engine(sys.argv[1], discover(), "cpu", 60, {})
    try:
        synced = train(engine, 3, no_sync=False)
        unsynced = train(engine, 3, no_sync=True)
        synced_after = train(engine, 3, no_sync=False)  # no_sync() left nothing behind
        total = torch.tensor([float(engine.placement.rank + 1)])
        engine.all_reduce_sum_(total)
        sends = ring(engine)
        if engine.placement.rank == 0:
            print(json.dumps({"synced": synced, "unsynced": unsynced, "synced_after": synced_after,
                              "sum": total.item(), "world_size": engine.placement.world_size, "ring": sends}), flush=True)
        engine.barrier()
    finally:
        engine.close()


if __name__ == "__main__":
    main()

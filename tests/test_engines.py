"""The engine contract, under each engine's own launcher on 2 gloo processes: synchronised steps keep
replicas identical, steps inside no_sync() do not all-reduce (replicas drift apart on different
data), and all_reduce_sum_ sums."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
LAUNCH = {
    "ddp": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"],
    "fsdp": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"],
    "horovod": [sys.executable, "-m", "horovod.runner.launch", "--gloo", "-np", "2", "-H", "localhost:2", sys.executable],
}


NO_SYNC_DRIFTS = {"fsdp": False}
"""FSDP2 inside no_sync() keeps each step's gradients unsharded on the rank and gives the optimizer none, so
its replicas cannot drift apart there: they stay identical (the window still skips the reduce-scatter)."""


@pytest.mark.parametrize("engine", [
    "ddp",
    "fsdp",
    pytest.param("horovod", marks=[pytest.mark.horovod, pytest.mark.skipif(
        importlib.util.find_spec("horovod") is None, reason="Horovod not installed: python -m hpcbench.install_horovod")]),
])
def test_engine_contract(engine):
    result = subprocess.run([*LAUNCH[engine], str(HERE / "engine_contract.py"), engine], capture_output=True,
                            text=True, timeout=300, env={"OMP_NUM_THREADS": "1", **os.environ})
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.lstrip("[0]<stdout>:").startswith("{"))
    facts = json.loads(line[line.index("{"):])
    drifts = NO_SYNC_DRIFTS.get(engine, True)
    ring = None if engine == "horovod" else True  # Horovod has no point-to-point sends; the survey runs on gloo/NCCL
    assert facts == {"synced": True, "unsynced": not drifts, "synced_after": True, "sum": 3.0, "world_size": 2,
                     "ring": ring}

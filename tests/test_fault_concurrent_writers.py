"""Fault test: 50 processes write records into one folder at the same moment. Every record must
arrive whole under its own name. Names carry a UTC timestamp and 32 random bits, never a rank or
host number, so runs on different nodes with the same local ranks cannot collide either."""

import json
import subprocess
import sys
import time

NUM_WRITERS = 50
NUM_STEP_TIMES = 20_000
"""About 400 KB per record: large enough that interleaved writes would show."""

WRITER = """
import sys, time
from hpcbench import records
writer, start_at, out_dir, n = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
record = records.make_record(
    run_id=records.new_run_id(), status="ok", reason=None,
    config={"workload": "mlp", "engine": "ddp", "device": "cpu", "batch_size": 8, "writer": writer},
    workload=None, metrics={"samples_per_s": 1.0 + writer},
    ranks=[{"rank": 0, "local_rank": 0, "step_times_s": [[writer + 0.5] * n]}],
    provenance={"world_size": 1, "hostnames": [f"node{writer:03d}"]},
)
time.sleep(max(0.0, start_at - time.time()))
records.write_atomic(records.record_path(out_dir, "mlp", "ddp", 1, record["run_id"]), record)
"""


def test_fifty_concurrent_writers_make_fifty_whole_records(out_dir):
    start_at = time.time() + 8  # every writer imported and waiting by then, on 2 cores
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(i), str(start_at), str(out_dir), str(NUM_STEP_TIMES)])
        for i in range(NUM_WRITERS)
    ]
    assert [w.wait(timeout=120) for w in writers] == [0] * NUM_WRITERS

    files = sorted(out_dir.iterdir())
    assert len(files) == NUM_WRITERS, [f.name for f in files]  # no collisions, no temp files left
    seen = set()
    for path in files:
        record = json.loads(path.read_text())  # whole JSON: no interleaved or truncated bytes
        writer = record["config"]["writer"]
        assert record["ranks"][0]["step_times_s"] == [[writer + 0.5] * NUM_STEP_TIMES]
        assert record["metrics"]["samples_per_s"] == 1.0 + writer
        seen.add(writer)
    assert seen == set(range(NUM_WRITERS))

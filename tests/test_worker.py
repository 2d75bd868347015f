"""The worker under launchers hpcbench does not control: torchrun, and none at all."""

import subprocess
import sys
from pathlib import Path

from conftest import assert_refused_on_every_rank, read_records

TORCHRUN = Path(sys.executable).with_name("torchrun")


def torchrun_worker(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "hpcbench.worker", "--workload", "mlp",
         "--batch-size", "8", "--steps", "2", "--warmup", "1", "--repeats", "1", "--device", "cpu", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )


def test_worker_under_external_torchrun(out_dir):
    """--out one level below an existing folder, as the README's torchrun line is typed on a fresh checkout."""
    result = torchrun_worker(out_dir / "new")
    assert result.returncode == 0, result.stderr
    [record] = read_records(out_dir / "new")
    assert record["status"] == "ok"
    assert record["provenance"]["launcher"] == "torchrun" and record["provenance"]["world_size"] == 2
    assert record["config"]["num_procs"] == 2  # local world size, from the launcher's variables


def test_worker_alone_is_one_rank(out_dir):
    result = subprocess.run(
        [sys.executable, "-m", "hpcbench.worker", "--workload", "mlp", "--batch-size", "8", "--steps", "2",
         "--warmup", "0", "--repeats", "1", "--device", "cpu", "--out", str(out_dir)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    [record] = read_records(out_dir)
    assert record["provenance"]["launcher"] == "none" and len(record["ranks"]) == 1


def test_worker_under_torchrun_refuses_an_unwritable_folder(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    result = torchrun_worker(tmp_path / "a-file" / "results")
    assert_refused_on_every_rank(result, 2)

"""DDP: the replica digest, and sweeps' scaling tables (every workload on 2 processes: test_report.py)."""

import re

import pytest
import torch

from conftest import read_records, run_cli
from hpcbench.engines.base import parameter_digest


def test_parameter_digest_sees_a_one_ulp_difference():
    a = torch.nn.Linear(4, 4)
    b = torch.nn.Linear(4, 4)
    b.load_state_dict(a.state_dict())
    assert parameter_digest(a) == parameter_digest(b)
    with torch.no_grad():
        b.weight[0, 0] = torch.nextafter(b.weight[0, 0], torch.tensor(10.0))
    assert parameter_digest(a) != parameter_digest(b)


def test_sweep_prints_the_scaling_table(out_dir):
    result = run_cli("sweep", "--workloads", "mlp", "--nproc", "1,2", "--steps", "3", "--warmup", "1", "--repeats", "1",
                     "--device", "cpu", "--batch-size", "8", "--out", str(out_dir))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "samples_per_s" in line).split()
    assert {"nodes", "procs", "speedup", "efficiency"} <= set(header)
    rows = [dict(zip(header, line.split())) for line in lines if line.strip().startswith("mlp ")]
    assert [row["procs"] for row in rows] == ["1", "2"]
    assert (rows[0]["speedup"], rows[0]["efficiency"]) == ("1.00", "100.0%")  # one repeat: no interval to print
    assert re.fullmatch(r"\d+\.\d%(\[[\d.]+,[\d.]+\])?", rows[1]["efficiency"]), rows[1]
    assert lines[-1] == f"plots and report: hpcbench report {out_dir} -o {out_dir / 'report'}"
    assert len(read_records(out_dir)) == 2


def test_strong_sweep_splits_the_global_batch(out_dir):
    """--scaling strong: per-process batch G/N, and efficiency T(1) / (2 T(2)) from the records' own step times."""
    result = run_cli("sweep", "--workloads", "mlp", "--nproc", "1,2", "--scaling", "strong", "--global-batch-size", "64",
                     "--steps", "3", "--warmup", "1", "--repeats", "1", "--device", "cpu", "--out", str(out_dir))
    assert result.returncode == 0, result.stderr
    runs = {r["provenance"]["world_size"]: r for r in read_records(out_dir)}
    assert {n: r["config"]["batch_size"] for n, r in runs.items()} == {1: 64, 2: 32}
    assert {r["experiment"]["scaling"] for r in runs.values()} == {"strong"}
    assert len({r["experiment"]["experiment_id"] for r in runs.values()}) == 1  # one curve: G is the experiment
    from hpcbench.analysis import load_records, scaling_table

    table = scaling_table(load_records([out_dir]), "strong").set_index("world_size")
    elapsed = {n: r["metrics"]["elapsed_s_repeats"][0] for n, r in runs.items()}  # 3 steps of the same 64 samples
    assert table.loc[2, "efficiency"] == pytest.approx(elapsed[1] / (2 * elapsed[2]))
    assert "64" in result.stdout and "efficiency" in result.stdout

"""Horovod engine: every workload on 2 processes (gloo), parity with DDP, and the one-line error when
Horovod is missing. The horovod-marked tests need Horovod built by `python -m hpcbench.install_horovod`."""

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

from conftest import SMALL, SMALL_OPTIONS, read_records, run_cli
from hpcbench import cli
from hpcbench.workloads import registry

needs_horovod = pytest.mark.skipif(importlib.util.find_spec("horovod") is None,
                                   reason="Horovod not installed: python -m hpcbench.install_horovod (.ci/run does)")


@pytest.fixture(scope="module")
def every_workload_under_horovod(tmp_path_factory) -> dict[str, dict]:
    """Every workload on 2 Horovod processes, in one sweep (one start of the command, not seven): workload -> record."""
    out = tmp_path_factory.mktemp("horovod")
    sweep = out.parent / f"{out.name}.toml"
    options = [f"{workload}.{key} = {value!r}".replace("'", '"') for workload in sorted(SMALL)
               for key, value in SMALL_OPTIONS.get(workload, {}).items()]
    workloads = ", ".join(f'"{workload}"' for workload in sorted(SMALL))
    sweep.write_text("\n".join([f"workloads = [{workloads}]", 'engines = ["horovod"]', "nproc = [2]", "batch_size = 8",
                                "steps = 2", "warmup = 1", "repeats = 2", *options]) + "\n")
    result = run_cli("sweep", str(sweep), "--device", "cpu", "--out", str(out), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return {record["config"]["workload"]: record for record in read_records(out)}


@pytest.mark.horovod
@needs_horovod
@pytest.mark.parametrize("workload", sorted(registry()))
def test_every_workload_under_horovod(every_workload_under_horovod, workload):
    record = every_workload_under_horovod[workload]
    assert record["status"] == "ok", record["reason"]
    assert [r["rank"] for r in record["ranks"]] == [0, 1]
    assert record["metrics"]["replicas_identical"] is True
    prov = record["provenance"]
    assert prov["backend"] == "horovod" and prov["horovod"] and prov["horovod_built"]["gloo"] is True
    assert prov["launcher"] == "horovodrun"


@pytest.mark.horovod
@needs_horovod
def test_same_loss_trajectory_as_ddp(out_dir):
    """Same seed, data and world size: DDP and Horovod average the same gradients, so SGD follows
    the same path; they differ only in the order of floating-point sums (tolerance 1e-4 relative)."""
    losses = {}
    for engine in ("ddp", "horovod"):
        folder = out_dir / engine
        result = run_cli("run", "--engine", engine, "--workload", "mlp", "--nproc", "2", "--steps", "10", "--warmup", "0",
                         "--repeats", "1", "--batch-size", "16", "--device", "cpu", "--out", str(folder))
        assert result.returncode == 0, result.stderr[-3000:]
        [record] = read_records(folder)
        losses[engine] = record["ranks"][0]["loss_per_step"]
    assert len(losses["ddp"]) == 10
    assert losses["horovod"] == pytest.approx(losses["ddp"], rel=1e-4)
    assert losses["ddp"][-1] < losses["ddp"][0]  # it trained: a constant trajectory would match trivially


def test_missing_horovod_is_one_line_with_the_install_command(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "horovod", None)  # import horovod now raises ImportError
    monkeypatch.setitem(sys.modules, "horovod.torch", None)
    code = cli.main(["run", "--engine", "horovod", "--workload", "mlp", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("hpcbench run: error: engine: Horovod is not installed")
    assert "python -m hpcbench.install_horovod" in err
    assert list(tmp_path.iterdir()) == []


needs_mpi = pytest.mark.skipif(not shutil.which("mpirun"), reason="Open MPI not installed (Debian openmpi-bin; .ci/run installs it)")


@pytest.mark.horovod
@needs_horovod
@needs_mpi
def test_horovod_over_mpi_locally(out_dir):
    """--hvd-controller mpi: horovodrun --mpi starts the ranks; the record says the MPI controller ran."""
    result = run_cli("run", "--engine", "horovod", "--hvd-controller", "mpi", "--workload", "mlp", "--nproc", "2",
                     "--steps", "2", "--warmup", "1", "--repeats", "1", "--device", "cpu", "--out", str(out_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    [record] = read_records(out_dir)
    assert record["status"] == "ok" and record["metrics"]["replicas_identical"] is True
    assert record["provenance"]["horovod_controller"] == "mpi" and record["provenance"]["launcher"] == "mpirun"
    assert record["config"]["engine_options"]["controller"] == "mpi"


@pytest.mark.horovod
@needs_horovod
@needs_mpi
def test_a_controller_other_than_the_one_asked_for_is_an_error(out_dir):
    """Under plain mpirun Horovod starts its MPI controller; asking for gloo there fails, saying both."""
    root_ok = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"} if os.geteuid() == 0 else {}
    result = subprocess.run(
        ["mpirun", "-np", "2", "--oversubscribe", sys.executable, "-m", "hpcbench.worker", "--engine", "horovod",
         "--hvd-controller", "gloo", "--workload", "mlp", "--steps", "2", "--device", "cpu", "--out", str(out_dir)],
        capture_output=True, text=True, timeout=180, env={**os.environ, **root_ok},
    )
    assert result.returncode != 0
    assert "--hvd-controller gloo was asked for, but Horovod started with its mpi controller" in result.stderr

"""Horovod engine: every workload on 2 processes (gloo), parity with DDP, and the one-line error when
Horovod is missing. The horovod-marked tests need Horovod built by `python -m hpcbench.install_horovod`."""

import importlib.util
import sys

import pytest

from conftest import read_records, run_cli
from test_ddp import SMALL
from hpcbench import cli
from hpcbench.workloads import registry

needs_horovod = pytest.mark.skipif(importlib.util.find_spec("horovod") is None,
                                   reason="Horovod not installed: python -m hpcbench.install_horovod (.ci/run does)")


@pytest.mark.horovod
@needs_horovod
@pytest.mark.parametrize("workload", sorted(registry()))
def test_every_workload_under_horovod(out_dir, workload):
    result = run_cli("run", "--engine", "horovod", "--workload", workload, "--nproc", "2", "--steps", "2", "--warmup", "1",
                     "--repeats", "2", "--device", "cpu", "--out", str(out_dir), *SMALL[workload])
    assert result.returncode == 0, result.stderr[-3000:]
    [record] = read_records(out_dir)
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

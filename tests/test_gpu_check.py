"""benchmarks/gpu_check.py cannot rot before a GPU arrives: its dry run on this CPU, and its references."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import read_records

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_reference_names_its_source_and_the_gpu_plan_fits_its_budget():
    module = gpu_check()
    assert all(r.source and r.gpu and r.value > 0 for r in module.REFERENCES)
    steps = module.plan("cuda", False, Path("out"))
    assert module.BUDGET_S < module.TIME_LIMIT_S < 600  # a lent GPU machine stops a command at 600 s
    names = [step.name for step in steps]
    assert names[0] == "pytest -m gpu" and "gpt2-124m bf16 compiled" in names and "peak bf16" in names
    assert {"resnet50 fp32", "resnet50 tf32", "resnet50 bf16", "resnet50 fp16", "resnet50 bf16 compiled"} <= set(names)
    assert all("--batch-size" in s.argv and "256" in s.argv and "128" in s.smaller for s in steps if "resnet50" in s.name)


@pytest.mark.slow
def test_the_dry_run_runs_every_step_and_writes_the_table(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--dry-run", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = (tmp_path / "gpu_check.txt").read_text()
    for step in ("pytest -m gpu", "resnet50 bf16", "peak fp32", "gpt"):
        assert re.search(rf"^\s+ok\s+[\d.]+ s\s+{re.escape(step)}\s", table, re.M), step
    assert "failed" not in table and "DeepLearningExamples" in table  # the bf16 ResNet-50 row's reference
    records = read_records(tmp_path)
    assert sorted(r.get("kind", "train") for r in records) == ["peak", "train", "train"]
    assert all(r["status"] == "ok" for r in records)


def test_a_step_that_runs_out_of_memory_retries_smaller_and_the_deadline_stops_a_hung_one():
    module = gpu_check()
    python = [sys.executable, "-c"]
    oom = module.Step("oom", [*python, "import sys; sys.exit('torch.OutOfMemoryError: CUDA out of memory')",
                              "--batch-size", "256"], 30, smaller=[*python, "print('fits')", "--batch-size", "128"])
    module.run_step(oom, deadline=time.monotonic() + 60)
    assert oom.outcome == "ok" and oom.detail == "fits" and oom.tries == ["--batch-size 256", "--batch-size 128"]
    other = module.Step("error", [*python, "import sys; sys.exit('ValueError: no')"], 30, smaller=[*python, "pass"])
    module.run_step(other, deadline=time.monotonic() + 60)
    assert other.outcome == "failed" and "ValueError: no" in other.detail and len(other.tries) == 1  # not retried
    hung = module.Step("hung", [*python, "import time; time.sleep(60)"], 30)
    module.run_step(hung, deadline=time.monotonic() + 2)
    assert hung.outcome == "failed" and hung.detail.startswith("stopped after") and hung.seconds < 10
    late = module.Step("late", [*python, "pass"], 30)
    module.run_step(late, deadline=time.monotonic())
    assert late.outcome == "failed" and "time limit" in late.detail

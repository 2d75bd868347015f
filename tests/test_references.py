"""`hpcbench references` and `hpcbench check`: a cluster's CI checks runs against per-system reference values."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from conftest import cli_in_process
from hpcbench.analysis import load_records
from hpcbench.analysis.references import MIN_BOUND, read_references, references_from

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference" / "cpu-2core-vm"

GOOD = """[[reference]]
system = "vm"
experiment = "mlp hidden_size=1024 num_hidden_layers=3 synthetic ddp cpu 1thr b128/proc"
world_size = 2
metric = "samples_per_s"
value = 3600.0
lower = -0.1
upper = inf
unit = "samples/s"
"""


@pytest.fixture
def known_good(tmp_path) -> tuple[Path, Path]:
    """The first reference runs as a known-good set, and the reference file written from them."""
    runs = tmp_path / "good"
    shutil.copytree(REFERENCE, runs)
    written = cli_in_process("references", str(runs))
    assert written.returncode == 0, written.stderr
    references = tmp_path / "site.toml"
    references.write_text(written.stdout)
    return runs, references


def test_references_round_trip_and_the_known_good_runs_pass(known_good):
    runs, references = known_good
    parsed = read_references(references)
    assert len(parsed) == 12 and {r.unit for r in parsed} == {"samples/s"}
    assert all(r.lower <= -MIN_BOUND and r.upper >= MIN_BOUND for r in parsed)
    computed = references_from(load_records([runs]))  # the file says what was computed, to its printed precision
    assert [(r.system, r.experiment, r.num_nodes, r.world_size) for r in computed] == \
        [(r.system, r.experiment, r.num_nodes, r.world_size) for r in parsed]
    assert [r.value for r in parsed] == pytest.approx([r.value for r in computed], rel=1e-5)
    assert [r.lower for r in parsed] == pytest.approx([r.lower for r in computed], abs=1e-4)
    header = references.read_text().splitlines()[:3]
    assert "12 run(s)" in header[0] and "robust standard deviations" in header[1]
    result = cli_in_process("check", str(runs), "--references", str(references))
    assert result.returncode == 0 and "all 12 reference(s) passed" in result.stdout, result.stdout


def test_done_when_check_fails_a_run_20_percent_slower_than_its_reference(known_good, tmp_path):
    runs, references = known_good
    slowed = next(runs.glob("mlp_ddp_2p_*.json"))
    record = json.loads(slowed.read_text())
    record["metrics"]["samples_per_s"] *= 0.8
    record["metrics"]["samples_per_s_repeats"] = [r * 0.8 for r in record["metrics"]["samples_per_s_repeats"]]
    slowed.write_text(json.dumps(record))
    result = cli_in_process("check", str(runs), "--references", str(references))
    assert result.returncode == 1
    [failed] = [line for line in result.stdout.splitlines() if line.lstrip().startswith("FAIL")]
    assert "vm: mlp hidden_size=1024" in failed and "2p samples_per_s" in failed and "(-20.0%)" in failed
    assert "1 of 12 reference(s) failed" in result.stdout


def test_a_reference_without_a_run_fails_and_unbounded_upper_is_allowed(tmp_path):
    references = tmp_path / "site.toml"
    references.write_text(GOOD + GOOD.replace("world_size = 2", "world_size = 8"))
    assert [r.upper for r in read_references(references)] == [float("inf")] * 2
    result = cli_in_process("check", str(REFERENCE), "--references", str(references))
    assert result.returncode == 1 and "no matching run" in result.stdout and "1 of 2 reference(s) failed" in result.stdout


@pytest.mark.parametrize(("text", "message"), [
    (GOOD.replace('unit = "samples/s"', 'unit = "img/s"'), "unit 'img/s' is not samples_per_s's"),
    (GOOD.replace("lower = -0.1", "lower = 0.2").replace("upper = inf", "upper = 0.1"), "lower 0.2 > upper 0.1"),
    (GOOD.replace("lower = -0.1", "lower = 0.05"), "lower in [-1, 0]"),
    (GOOD + "colour = \"red\"\n", "unknown key 'colour'"),
    (GOOD.replace("value = 3600.0\n", ""), "missing 'value'"),
    (GOOD.replace("world_size = 2", 'world_size = "2"'), "world_size must be a int"),
    (GOOD.replace('metric = "samples_per_s"', 'metric = "speed"'), "metric 'speed' is not one of"),
    (GOOD + "[extra]\n", "must hold [[reference]] tables and nothing else (unknown: extra)"),
    ("reference = [", "is not TOML"),
])
def test_a_bad_reference_file_is_one_line_and_exit_2(tmp_path, text, message):
    references = tmp_path / "site.toml"
    references.write_text(text)
    result = cli_in_process("check", str(REFERENCE), "--references", str(references))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("hpcbench check: error: references: ")
    assert message in result.stderr, result.stderr


def test_the_written_file_is_toml_a_person_can_edit():
    text = cli_in_process("references", str(REFERENCE)).stdout
    entries = tomllib.loads(text)["reference"]
    assert entries[0].keys() == {"system", "experiment", "num_nodes", "world_size", "metric", "value", "lower", "upper",
                                 "unit"}

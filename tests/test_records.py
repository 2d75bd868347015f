"""Records: schema round-trip, atomic writes, refusal of foreign files."""

import json
from pathlib import Path

import pytest

from hpcbench import provenance, records


def sample_record():
    return records.make_record(
        run_id="20260101T000000Z-abcd1234", status="ok", reason=None,
        config={"workload": "mlp", "engine": "ddp", "device": "cpu", "batch_size": 8},
        workload={"name": "mlp"}, metrics={"samples_per_s": 1.5}, ranks=[{"rank": 0, "step_times_s": [[0.1]]}],
        provenance={"world_size": 1},
    )


def test_record_round_trips_through_disk(tmp_path):
    path = tmp_path / "r.json"
    records.write_atomic(path, sample_record())
    assert records.load(path) == sample_record()
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_failed_write_leaves_neither_file_nor_temp(tmp_path):
    bad = sample_record() | {"metrics": {"samples_per_s": float("nan")}}  # JSON has no NaN
    with pytest.raises(ValueError):
        records.write_atomic(tmp_path / "r.json", bad)
    assert list(tmp_path.iterdir()) == []


def test_rewrite_replaces_whole_file(tmp_path):
    path = tmp_path / "r.json"
    records.write_atomic(path, sample_record() | {"reason": "x" * 10000})
    records.write_atomic(path, sample_record())
    assert json.loads(path.read_text()) == sample_record()


@pytest.mark.parametrize("content", ['{"a": 1}', "[1, 2]", '{"schema_version": 999}', '{"schema_ver', ""])
def test_load_refuses_what_is_not_a_current_record(tmp_path, content):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(ValueError):
        records.load(path)


def test_run_ids_are_unique_and_sortable():
    ids = [records.new_run_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(i[:16] <= j[:16] for i, j in zip(ids, ids[1:]))


def test_provenance_keeps_performance_environment(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("NCCL_DEBUG", "INFO")
    monkeypatch.setenv("UNRELATED_SECRET", "x")
    prov = provenance.provenance(hosts=["a", "b", "a"], engine_versions={}, started="s", ended="e", launcher="torchrun")
    assert prov["environment"]["OMP_NUM_THREADS"] == "3" and prov["environment"]["NCCL_DEBUG"] == "INFO"
    assert "UNRELATED_SECRET" not in prov["environment"]
    assert prov["num_nodes"] == 2 and prov["world_size"] == 3 and prov["torch"]


def test_the_gpu_driver_version_is_read_from_the_kernel_modules_line(tmp_path):
    from hpcbench.provenance import gpu_driver_version

    proc = tmp_path / "version"
    proc.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n"
                    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
    assert gpu_driver_version(proc) == "550.54.15"
    assert gpu_driver_version(tmp_path / "absent") is None  # no NVIDIA driver: null, not a guess


def record_schema_errors(record: dict) -> list[str]:
    """What the shipped JSON Schema (hpcbench/schema/record.schema.json) finds wrong with a record."""
    from importlib import resources

    import jsonschema

    schema = json.loads((resources.files("hpcbench") / "schema" / "record.schema.json").read_text())
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft202012Validator(schema).iter_errors(record)]


def test_every_shipped_record_follows_the_schema():
    found = sorted((Path(__file__).resolve().parent.parent / "results" / "reference").rglob("*.json"))
    shipped = [(p, json.loads(p.read_text())) for p in found]
    shipped = [(p, r) for p, r in shipped if isinstance(r, dict) and "schema_version" in r]
    assert len(shipped) > 100
    assert {p.name: record_schema_errors(r) for p, r in shipped if record_schema_errors(r)} == {}
    broken = {**shipped[0][1], "status": "done", "ranks": [{"rank": -1}]}  # the schema can fail
    assert len(record_schema_errors(broken)) == 2

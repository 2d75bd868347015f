"""The read side: records -> DataFrame -> weak-scaling table, with known answers."""

import math
import warnings
from pathlib import Path

import pytest

from hpcbench import records
from hpcbench.analysis import format_scaling_table, load_records, scaling_table

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference" / "cpu-2core-vm"


def write(folder, name, samples_per_s, world_size, workload="mlp", status="ok"):
    record = records.make_record(
        run_id=name, status=status, reason=None,
        config={"workload": workload, "engine": "ddp", "device": "cpu", "batch_size": 8, "num_threads": 1},
        workload=None, metrics={"samples_per_s": samples_per_s, "samples_per_s_per_proc": samples_per_s / world_size},
        ranks=[], provenance={"world_size": world_size, "num_nodes": 1},
    )
    records.write_atomic(folder / f"{name}.json", record)


def test_weak_scaling_against_the_one_process_median(tmp_path):
    write(tmp_path, "a", 100.0, 1)
    write(tmp_path, "b", 120.0, 1)  # baseline = median(100, 120) = 110
    write(tmp_path, "c", 165.0, 2)
    write(tmp_path, "d", 1e9, 2, status="failed")  # failed runs never count
    table = scaling_table(load_records([tmp_path])).set_index("world_size")
    assert table.loc[1, "samples_per_s"] == 110.0 and table.loc[1, "num_runs"] == 2
    assert table.loc[2, "speedup"] == pytest.approx(1.5)
    assert table.loc[2, "efficiency"] == pytest.approx(0.75)
    assert table.loc[2, "samples_per_s_per_proc"] == pytest.approx(82.5)


def test_no_baseline_means_no_efficiency(tmp_path):
    write(tmp_path, "c", 165.0, 2)
    assert math.isnan(scaling_table(load_records([tmp_path]))["efficiency"].iloc[0])


def test_unreadable_files_are_skipped_with_one_warning_each(tmp_path):
    write(tmp_path, "a", 100.0, 1)
    (tmp_path / "truncated.json").write_text('{"schema_version": 1, "sta')
    (tmp_path / "foreign.json").write_text('{"hello": "world"}')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = load_records([tmp_path])
    assert len(frame) == 1
    assert sorted(Path(str(w.message).split()[1].rstrip(":")).name for w in caught) == ["foreign.json", "truncated.json"]


def test_reference_records_make_a_complete_table():
    table = scaling_table(load_records([REFERENCE]))
    assert set(table["workload"]) == {"mlp", "cnn", "finetune", "vae", "rnn", "rl"}
    assert not table["efficiency"].isna().any()
    assert "efficiency" in format_scaling_table(table)

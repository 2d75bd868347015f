"""The read side: records -> DataFrame -> weak-scaling table, with known answers."""

import math
import warnings
from pathlib import Path

import pytest

from hpcbench import records
from hpcbench.analysis import amdahl_fits, format_scaling_table, load_records, scaling_table
from hpcbench.analysis.scaling import verdicts

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference" / "cpu-2core-vm"


def write(folder, name, samples_per_s, world_size, workload="mlp", status="ok", threads=1, repeats=None, ranks=(),
          data="synthetic", **metrics):
    record = records.make_record(
        run_id=name, status=status, reason=None,
        config={"workload": workload, "engine": "ddp", "device": "cpu", "batch_size": 8, "num_threads": threads,
                "data": data},
        workload=None, metrics={"samples_per_s": samples_per_s, "samples_per_s_per_proc": samples_per_s / world_size,
                                "samples_per_s_repeats": repeats or [samples_per_s], "global_batch_size": 8 * world_size,
                                **metrics},
        ranks=list(ranks), provenance={"world_size": world_size, "num_nodes": 1},
    )
    records.write_atomic(folder / f"{name}.json", record)


def test_efficiency_carries_the_interval_of_both_points(tmp_path):
    write(tmp_path, "a", 100.0, 1, repeats=[95.0, 100.0, 105.0])
    write(tmp_path, "b", 160.0, 2, repeats=[150.0, 160.0, 170.0])
    row = scaling_table(load_records([tmp_path])).set_index("world_size").loc[2]
    assert row["efficiency_low"] <= 150 / (2 * 105) + 1e-9 and row["efficiency_high"] >= 170 / (2 * 95) - 1e-9
    assert row["efficiency_low"] < row["efficiency"] < row["efficiency_high"]


def test_impossible_values_become_words_not_numbers(tmp_path):
    """A compute-only window slower than the timed steps (noise on a loaded machine) gave exposed_comm -33 % and
    bare_efficiency 133 %: null, with the reason and the size of the noise. (Steps: 8 samples / 100 per s = 80 ms at
    1 process, 16 / 150 at 2; the compute-only steps a third longer.)"""
    write(tmp_path, "a", 100.0, 1, compute_step_time_s=0.08 * 4 / 3)
    write(tmp_path, "b", 150.0, 2, compute_step_time_s=16 / 150 * 4 / 3)
    table = scaling_table(load_records([tmp_path])).set_index("world_size")
    assert table["exposed_comm_share"].isna().all() and table["bare_efficiency"].isna().all()
    assert "exposed_comm not measurable here: noise ±33% exceeds it" in table.loc[1, "warnings"]
    assert "bare_efficiency not measurable here" in table.loc[2, "warnings"]
    text = format_scaling_table(table.reset_index())
    assert "-33" not in text and "133" not in text and "not measurable here" in text


def test_contended_points_are_marked_and_left_out_of_fits(tmp_path):
    write(tmp_path, "a", 100.0, 1)
    write(tmp_path, "b", 180.0, 2)
    write(tmp_path, "c", 200.0, 4, contended=True, others_share=0.48,
          contended_note="other processes used 48% of the CPU time of h (4 CPUs this run may use) during the timed steps")
    table = scaling_table(load_records([tmp_path]))
    assert list(table["warnings"]) == ["", "", "contended (others: up to 48% of the CPUs)"]
    assert amdahl_fits(table)["largest_measured_procs"].tolist() == [2]
    assert amdahl_fits(table, include_contended=True)["largest_measured_procs"].tolist() == [4]
    write(tmp_path, "d", 90.0, 1, contended=True, others_share=0.3, contended_note="x")
    table = scaling_table(load_records([tmp_path])).set_index("world_size")
    assert table.loc[1, "warnings"] == "contended (1 of 2 runs: up to 30% of the CPUs)"
    assert table.loc[2, "warnings"] == "baseline contended"


def test_no_fit_or_serial_fraction_from_a_speedup_below_one(tmp_path):
    """Amdahl and Karp-Flatt describe speedups between 1 and N: a slower 2-process point read serial fraction 1.0."""
    write(tmp_path, "a", 100.0, 1)
    write(tmp_path, "b", 80.0, 2)
    table = scaling_table(load_records([tmp_path]))
    assert math.isnan(table.set_index("world_size").loc[2, "karp_flatt"])
    assert amdahl_fits(table).empty


def test_separate_runs_at_other_thread_counts_say_why_there_is_no_speedup(tmp_path):
    write(tmp_path, "a", 100.0, 1, threads=2)  # `run --nproc 1` on 2 cores takes both
    write(tmp_path, "b", 150.0, 2, threads=1)
    table = scaling_table(load_records([tmp_path]))
    row = table[table["world_size"] == 2].iloc[0]
    assert math.isnan(row["speedup"])
    assert row["warnings"].startswith("no baseline: the 1-process runs of this work used 2 thread(s) a process, this point 1")


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


def test_each_point_gets_a_verdict_in_words(tmp_path):
    two = 16 / 130 * 2 / 3  # the 2-process step (16 samples at 130 per s), a third of it exposed communication
    write(tmp_path, "a", 100.0, 1, repeats=[100.0, 100.0], compute_step_time_s=two / 2.2)
    write(tmp_path, "b", 130.0, 2, repeats=[110.0 + 5 * i for i in range(9)],  # cv 10.5 %, mean known to ±8 %
          compute_step_time_s=two)
    [line] = verdicts(scaling_table(load_records([tmp_path])))
    assert line.startswith("mlp at 2 process(es): noisy: ±")
    assert "communication-bound: 33% of the step waits for the gradient all-reduce" in line
    assert "cores contended: the compute-only step grew x2.2 from 1 to 2 processes" in line


def test_the_notebook_checks_an_exercise_against_what_was_measured(tmp_path):
    from hpcbench.analysis import notebook as hb

    for name, workload, rate, procs, repeats in (("a", "mlp", 100.0, 1, [99, 100, 101]), ("b", "mlp", 120.0, 2, [119, 120, 121]),
                                                 ("c", "cnn", 10.0, 1, [9.9, 10, 10.1]), ("d", "cnn", 19.0, 2, [18.9, 19, 19.1])):
        write(tmp_path, name, rate, procs, workload=workload, repeats=repeats)
    table = scaling_table(load_records([tmp_path]))
    assert hb.which_scales_better(table, "mlp", "cnn").startswith("cnn scales better here: cnn 95% [")
    write(tmp_path, "e", 180.0, 2, repeats=[150.0, 180.0, 200.0, 190.0])  # a noisy second run of mlp's point
    noisy = scaling_table(load_records([tmp_path]))
    assert hb.which_scales_better(noisy, "mlp", "cnn").startswith("this machine cannot tell: mlp ")
    write(tmp_path, "f", 19.0, 2, workload="cnn", contended=True, others_share=0.5, contended_note="x")
    busy = scaling_table(load_records([tmp_path]))
    assert hb.which_scales_better(busy, "mlp", "cnn").startswith("this machine cannot answer it now")


def test_a_value_within_the_noise_of_an_impossible_bound_is_not_printed(tmp_path):
    """Exposed communication of 2 % with the step known to ±13 %: its interval crosses 0, so it is not a number."""
    write(tmp_path, "a", 100.0, 1, repeats=[95.0, 100.0, 105.0], compute_step_time_s=0.08 * 0.98)
    row = scaling_table(load_records([tmp_path])).iloc[0]
    assert math.isnan(row["exposed_comm_share"]) and math.isnan(row["engine_cost_at_1"])
    assert "exposed_comm not measurable here: noise ±13% exceeds it (measured 2%, within the noise of 0)" in row["warnings"]


def test_every_derived_number_carries_its_interval(tmp_path):
    """Speedup, efficiency, bare efficiency, exposed communication, the engine's cost and the data stall: each with
    the interval its windows allow, the value inside it; the compute-only window's spread widens the terms from it."""
    steady = [0.060, 0.061, 0.059, 0.060]
    write(tmp_path, "a", 100.0, 1, repeats=[98.0, 100.0, 102.0], compute_step_time_s=0.060,
          ranks=[{"rank": 0, "compute_step_times_s": steady}], data="files",
          input={"data_stall_share": 0.2, "data_stall_share_repeats": [0.18, 0.2, 0.22]})
    write(tmp_path, "b", 160.0, 2, repeats=[155.0, 160.0, 165.0], compute_step_time_s=0.070,
          ranks=[{"rank": r, "compute_step_times_s": [0.070, 0.071, 0.069, 0.070]} for r in (0, 1)], data="files")
    table = scaling_table(load_records([tmp_path])).set_index("world_size")
    for column in ("speedup", "efficiency", "bare_efficiency", "exposed_comm_share"):
        row = table.loc[2]
        assert row[f"{column}_low"] < row[column] < row[f"{column}_high"], column
    one = table.loc[1]
    assert one["engine_cost_at_1"] == pytest.approx(1 - 0.060 / 0.080)  # 1 - compute / step, one statistic
    assert one["engine_cost_at_1_low"] < one["engine_cost_at_1"] < one["engine_cost_at_1_high"]
    assert one["data_stall_share_low"] < 0.2 < one["data_stall_share_high"]
    noisy = [0.055, 0.065, 0.058, 0.062]  # the same mean, a wider window: a wider bare efficiency
    (tmp_path / "noisy").mkdir()
    write(tmp_path / "noisy", "a", 100.0, 1, repeats=[98.0, 100.0, 102.0], compute_step_time_s=0.060,
          ranks=[{"rank": 0, "compute_step_times_s": noisy}])
    write(tmp_path / "noisy", "b", 160.0, 2, repeats=[155.0, 160.0, 165.0], compute_step_time_s=0.070)
    wide = scaling_table(load_records([tmp_path / "noisy"])).set_index("world_size").loc[2]
    assert wide["bare_efficiency_high"] - wide["bare_efficiency_low"] > 1.5 * (row["bare_efficiency_high"] - row["bare_efficiency_low"])
    text = format_scaling_table(table.reset_index())
    assert f"{table.loc[2, 'efficiency']:.1%}[{100 * table.loc[2, 'efficiency_low']:.1f}," in text


def test_records_of_median_steps_are_read_as_means(tmp_path):
    """Records written before one statistic per window took the compute-only step as a median: they are read with
    the mean of their raw steps, so that the engine's cost and the forecast's framework term agree."""
    compute = [0.020, 0.020, 0.020, 0.100]  # median 20 ms, mean 40 ms
    record = records.make_record(
        run_id="old", status="ok", reason=None, config={"workload": "mlp", "engine": "ddp", "device": "cpu", "batch_size": 8},
        workload=None, ranks=[{"rank": 0, "compute_step_times_s": compute}],
        metrics={"samples_per_s": 160.0, "global_batch_size": 8, "compute_step_time_s": 0.020, "exposed_comm_s": 0.030,
                 "forecast_terms": {"framework": {"step_s": 0.010}}},
        provenance={"world_size": 1, "num_nodes": 1})
    records.write_atomic(tmp_path / "old.json", record)
    metrics = records.load(tmp_path / "old.json")["metrics"]
    assert metrics["compute_step_time_s"] == pytest.approx(0.040) and metrics["window_statistic"] == "mean"
    assert metrics["exposed_comm_s"] == pytest.approx(0.050 - 0.040)
    assert metrics["forecast_terms"]["framework"]["step_s"] == pytest.approx(metrics["exposed_comm_s"])


def test_data_stall_only_for_runs_that_read_data(tmp_path):
    """A synthetic batch never stalls (it is made once, on the device): no 0.0%[0.0,0.0] column for the demo."""
    write(tmp_path, "a", 100.0, 1, input={"data_stall_share": 0.0, "data_stall_share_repeats": [0.0, 0.0]})
    table = scaling_table(load_records([tmp_path]))
    assert math.isnan(table["data_stall_share"].iloc[0]) and "data_stall" not in format_scaling_table(table)

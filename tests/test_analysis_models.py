"""Known answers for the analysis: statistics, efficiencies, Karp-Flatt, Amdahl, busbw, the comm model."""

import numpy as np
import pandas as pd
import pytest

from hpcbench import records
from hpcbench.analysis import amdahl_fits, load_records, scaling_table
from hpcbench.analysis.comm import busbw_at, communication_table, load_netbench, ring_allreduce_lower_bound_s
from hpcbench.analysis.compare import compare, parse_tolerance
from hpcbench.analysis.scaling import amdahl_efficiency, amdahl_serial_fraction, baselines_note, karp_flatt
from hpcbench.analysis.stats import bootstrap_median_ci, coefficient_of_variation
from hpcbench.probes.netbench import bus_bandwidth


def write_run(folder, name, repeats, world_size, batch_size=8, num_nodes=1, engine="ddp", step_time_s=0.1,
              gradient_bytes=None, scaling="weak", compute_step_time_s=None):
    strong = {"scaling": "strong", "global_batch_size": batch_size * world_size} if scaling == "strong" else {}
    record = records.make_record(
        run_id=name, status="ok", reason=None,
        config={"workload": "mlp", "engine": engine, "device": "cpu", "batch_size": batch_size, **strong},
        workload={"gradient_bytes_per_step": gradient_bytes, "sample_unit": "image"},
        metrics={"samples_per_s": float(np.median(repeats)), "samples_per_s_repeats": repeats,
                 "global_batch_size": batch_size * world_size, "step_time_s_median": step_time_s,
                 "compute_step_time_s": compute_step_time_s},
        ranks=[], provenance={"world_size": world_size, "num_nodes": num_nodes, "started": "2026-11-24T00:00:00",
                                           "backend": "gloo"},
    )
    records.write_atomic(folder / f"{name}.json", record)


def test_bootstrap_interval_contains_the_true_median():
    rng = np.random.default_rng(1)
    sample = rng.normal(100.0, 10.0, size=400)  # true median 100
    low, high = bootstrap_median_ci(sample)
    assert low < 100.0 < high
    assert high - low < 5  # and is not uselessly wide
    assert bootstrap_median_ci([7.0]) == (7.0, 7.0)


def test_coefficient_of_variation():
    assert coefficient_of_variation([9.0, 11.0]) == pytest.approx(np.std([9, 11], ddof=1) / 10)
    assert np.isnan(coefficient_of_variation([5.0]))


def test_weak_scaling_efficiency_and_karp_flatt_exact(tmp_path):
    write_run(tmp_path, "one", [100.0, 100.0, 100.0], 1)
    write_run(tmp_path, "two", [180.0, 180.0, 180.0], 2)
    write_run(tmp_path, "four", [320.0, 320.0, 320.0], 4, num_nodes=2)
    table = scaling_table(load_records([tmp_path])).set_index("world_size")
    assert table.loc[2, "efficiency"] == pytest.approx(0.9)
    assert table.loc[4, "efficiency"] == pytest.approx(0.8)
    assert table.loc[4, "num_nodes"] == 2
    # e = (1/S - 1/N) / (1 - 1/N): S=1.8, N=2 -> 1/9; S=3.2, N=4 -> 1/12
    assert table.loc[2, "karp_flatt"] == pytest.approx(1 / 9)
    assert table.loc[4, "karp_flatt"] == pytest.approx(1 / 12)
    assert set(table["baseline_runs"]) == {"one"}
    assert table.loc[1, "ci95_low"] == table.loc[1, "ci95_high"] == 100.0


def test_bare_efficiency_divides_by_the_one_process_run_without_gradient_sync(tmp_path):
    """The issue's cnn case: 118.1 samples/s under DDP at 1 process (batch 32: a 271.0 ms step), of which 201.0 ms
    without gradient sync: single-process training runs at 32 / 0.2010 = 159.2 samples/s."""
    write_run(tmp_path, "one", [118.1] * 3, 1, batch_size=32, compute_step_time_s=0.2010)
    write_run(tmp_path, "two", [213.1] * 3, 2, batch_size=32, compute_step_time_s=0.2100)
    table = scaling_table(load_records([tmp_path])).set_index("world_size")
    bare = 32 / 0.2010
    assert table.loc[2, "efficiency"] == pytest.approx(213.1 / (2 * 118.1))  # 90.2 %, against DDP at 1
    assert table.loc[2, "bare_efficiency"] == pytest.approx(213.1 / (2 * bare))  # 66.9 %, against training without it
    assert table.loc[2, "bare_baseline_samples_per_s"] == pytest.approx(bare)  # the 1-process run's, never the 2-process one's
    assert table.loc[1, "engine_cost_at_1"] == pytest.approx(1 - 0.2010 / (32 / 118.1))  # its exposed_comm share
    [general, cost] = baselines_note(table.reset_index())
    assert "exposed_comm" in general and cost.startswith("engine_cost_at_1: ddp costs mlp 25.8% of its 1-process")
    write_run(tmp_path, "one", [118.1] * 3, 1, batch_size=32, compute_step_time_s=0.2675)  # 1.3 %: not named
    assert baselines_note(scaling_table(load_records([tmp_path]))) == [general]


def test_records_without_a_compute_only_rate_have_no_bare_efficiency(tmp_path):
    write_run(tmp_path, "one", [100.0] * 3, 1)
    write_run(tmp_path, "two", [180.0] * 3, 2)
    table = scaling_table(load_records([tmp_path])).set_index("world_size")
    assert table.loc[2, "efficiency"] == pytest.approx(0.9) and np.isnan(table.loc[2, "bare_efficiency"])


def test_strong_scaling_uses_the_fixed_global_batch(tmp_path):
    write_run(tmp_path, "s1", [100.0], 1, batch_size=64, scaling="strong")
    write_run(tmp_path, "s2", [150.0], 2, batch_size=32, scaling="strong")  # same global batch 64
    write_run(tmp_path, "w1", [100.0], 1, batch_size=64)  # weak runs: their own curve, never the strong one's
    write_run(tmp_path, "w2", [190.0], 2, batch_size=64)
    strong = scaling_table(load_records([tmp_path]), "strong").set_index("world_size")
    assert list(strong.index) == [1, 2]
    assert strong.loc[2, "efficiency"] == pytest.approx(0.75)  # T(1) / (2 T(2)) = (64/100) / (2 * 64/150)
    weak = scaling_table(load_records([tmp_path]), "weak")
    assert weak.loc[weak["batch_size"] == 64].set_index("world_size").loc[2, "efficiency"] == pytest.approx(0.95)


def test_amdahl_fit_recovers_the_serial_fraction():
    workers = np.array([1, 2, 4, 8, 16])
    speedup = 1 / (0.05 + 0.95 / workers)
    assert amdahl_serial_fraction(workers, speedup) == pytest.approx(0.05)
    assert karp_flatt(speedup, workers)[1:] == pytest.approx([0.05] * 4)  # exact Amdahl data: e = s everywhere
    assert amdahl_efficiency(0.05, 32) == pytest.approx(1 / (0.05 * 32 + 0.95))
    table = pd.DataFrame({"system_name": "s", "system_id": "s1", "experiment_id": "e1", "experiment_label": "w",
                          "workload": "w", "engine": "ddp", "device": "cpu", "batch_size": 8,
                          "world_size": workers, "speedup": speedup})
    [fit] = amdahl_fits(table).to_dict("records")
    assert fit["largest_measured_procs"] == 16
    assert fit["predicted_efficiency_at_2x"] == pytest.approx(amdahl_efficiency(0.05, 32))
    assert fit["predicted_efficiency_at_4x"] == pytest.approx(amdahl_efficiency(0.05, 64))


def test_busbw_arithmetic():
    assert bus_bandwidth(10.0, 2) == pytest.approx(10.0)  # 2(n-1)/n = 1
    assert bus_bandwidth(10.0, 8) == pytest.approx(17.5)  # 2 * 7 / 8
    assert bus_bandwidth(10.0, 1) == 0.0
    # ring bound: 2(n-1)/n x bytes / busbw; 4 ranks, 1.5 GB at 3 GB/s busbw -> 0.75 s
    assert ring_allreduce_lower_bound_s(1.5e9, 4, 3.0) == pytest.approx(0.75)


def write_netbench(folder, world_size, rows, backend="gloo", collective="all_reduce"):
    measured = [{"size_bytes": s, "time_s": s / (b * 1e9), "algbw_gbps": b, "busbw_gbps": b, "wrong": 0} for s, b in rows]
    record = records.make_record(
        run_id=f"nb{world_size}{backend}{collective}", status="ok", reason=None,
        config={"backend": backend, "device": "cpu"}, workload=None, metrics={"collectives": {collective: measured}},
        ranks=[], provenance={"world_size": world_size, "num_nodes": 1, "backend": backend}, kind="netbench",
    )
    records.write_atomic(folder / f"nb{world_size}{backend}{collective}.json", record)


def test_communication_model_against_the_measured_growth(tmp_path):
    write_run(tmp_path, "one", [100.0], 1, step_time_s=0.10, gradient_bytes=4_000_000)
    write_run(tmp_path, "two", [160.0], 2, step_time_s=0.12, gradient_bytes=4_000_000)  # steps 8/100, 16/160 s
    write_netbench(tmp_path, 2, [(1_000_000, 0.1), (16_000_000, 1.6)])
    # neither another backend's all-reduce nor the run's backend's other collectives set the bound
    write_netbench(tmp_path, 2, [(1_000_000, 10.0), (16_000_000, 160.0)], backend="mpi")
    write_netbench(tmp_path, 2, [(1_000_000, 10.0), (16_000_000, 160.0)], collective="all_gather")
    netbench = load_netbench([tmp_path])
    assert set(netbench["backend"]) == {"gloo", "mpi"} and set(netbench["collective"]) == {"all_reduce", "all_gather"}
    gloo = netbench[(netbench["backend"] == "gloo") & (netbench["collective"] == "all_reduce")]
    assert busbw_at(gloo, 4_000_000) == pytest.approx(0.4)  # log-log between (1e6, 0.1) and (1.6e7, 1.6)
    runs = load_records([tmp_path])  # netbench records are not training runs
    assert list(runs["run_id"]) == ["one", "two"]
    [row] = communication_table(scaling_table(runs), runs, netbench).to_dict("records")
    assert row["step_time_growth_s"] == pytest.approx(0.02)
    assert row["allreduce_bound_s"] == pytest.approx(4e6 / 0.4e9)  # 2(2-1)/2 = 1
    assert row["bound_share_of_growth"] == pytest.approx(0.5)


def test_compare_flags_regressions_beyond_tolerance(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "new").mkdir()
    spread = np.array([0.99, 1.0, 1.01])
    write_run(tmp_path / "base", "b1", list(100.0 * spread), 1)
    write_run(tmp_path / "base", "b2", list(200.0 * spread), 2)
    write_run(tmp_path / "base", "b4", list(400.0 * spread), 4)
    write_run(tmp_path / "new", "n1", list(96.0 * spread), 1)  # -4 %: significant, within 5 %
    write_run(tmp_path / "new", "n2", list(180.0 * spread), 2)  # -10 %: significant, regressed
    write_run(tmp_path / "new", "n4", [360.0], 4)  # -10 % but one repeat: nothing to test
    table = compare(load_records([tmp_path / "base"]), load_records([tmp_path / "new"]), parse_tolerance("5%"))
    assert table.set_index("world_size")["regressed"].to_dict() == {1: False, 2: True, 4: False}
    assert table.set_index("world_size")["verdict"].to_dict() == {1: "within tolerance", 2: "slower", 4: "too few repeats"}
    assert table.set_index("world_size").loc[2, "change"] == pytest.approx(-0.1)
    assert parse_tolerance("0.05") == parse_tolerance("5%") == pytest.approx(0.05)
    with pytest.raises(ValueError):
        parse_tolerance("150%")


def test_bootstrap_matches_direct_resampling():
    """The shared-rank shortcut is the textbook bootstrap: compare with resampling the values directly."""
    rng = np.random.default_rng(3)
    sample = rng.lognormal(3.0, 0.4, size=51)
    resamples = sample[rng.integers(0, sample.size, size=(20000, sample.size))]
    direct = np.quantile(np.median(resamples, axis=1), [0.025, 0.975])
    assert bootstrap_median_ci(sample) == pytest.approx(tuple(direct), rel=0.03)

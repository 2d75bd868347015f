"""Peak memory, MFU against the datasheet table and against `hpcbench peak`, and energy (RAPL, NVML):
the arithmetic on known answers, the nulls with their reasons, and the report's tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import cli_in_process, read_records, run_cli
from hpcbench import records
from hpcbench.analysis import load_records
from hpcbench.analysis.efficiency import efficiency_table, peaks_frame, precision_table
from hpcbench.analysis.load import read_valid
from hpcbench.measurements.base import RunFacts
from hpcbench.measurements.energy import POWERCAP, Energy, EnergyUnavailable, RaplPackages, counter_delta
from hpcbench.measurements.memory import PeakMemory
from hpcbench.peaks import PEAKS, find_peak, flop_metrics


def test_mfu_known_answer_with_its_denominator():
    # 1 GFLOP per sample, 989,500 samples/s over 2 H100 SXM in bf16: 494.75 TFLOP/s each, half the dense peak
    m = flop_metrics(1e9, 989_500.0, 2, "bf16", ["NVIDIA H100 80GB HBM3"] * 2)
    assert m["tflops_per_device"] == pytest.approx(494.75)
    assert m["mfu"] == pytest.approx(0.5) and m["mfu_peak_tflops"] == 989.5 and m["mfu_peak_model"] == "H100 SXM"
    assert m["mfu_peak_precision"] == "bf16" and "H100" in m["mfu_peak_source"] and m["mfu_note"] is None
    assert flop_metrics(1e9, 1e3, 1, "fp32", ["NVIDIA A100-SXM4-80GB"])["mfu"] == pytest.approx(1 / 19.5)  # 1 TFLOP/s


@pytest.mark.parametrize(("models", "precision", "reason"), [
    (["NVIDIA GeForce RTX 4090"], "bf16", "not in hpcbench's peak table"),   # unknown: never a fallback
    (["AMD Instinct MI250X / MI250"], "tf32", "MI250X has no tf32"),      # known, but not in that precision
    (["Tesla V100-SXM2-32GB"], "bf16", "V100 SXM2 has no bf16"),
    ([None], "fp32", "CPUs"),
    (["NVIDIA A100-SXM4-80GB", "NVIDIA H100 PCIe"], "bf16", "mixed devices"),
])
def test_mfu_is_null_with_the_reason_when_the_peak_is_unknown(models, precision, reason):
    m = flop_metrics(1e9, 1e5, len(models), precision, models)
    assert m["mfu"] is None and m["mfu_peak_tflops"] is None and reason in m["mfu_note"]
    assert m["tflops_per_device"] == pytest.approx(1e14 / len(models) / 1e12)


def test_unknown_flops_give_no_tflops_and_say_why():
    m = flop_metrics(None, 1e5, 1, "bf16", ["NVIDIA H100 PCIe"])
    assert m["tflops_per_device"] is None and m["mfu"] is None and "FLOPs per sample unknown" in m["mfu_note"]


def test_every_peak_entry_carries_a_source_and_the_named_gpus_resolve():
    assert all(peak.source and peak.tflops and all(v > 0 for v in peak.tflops.values()) for _, peak in PEAKS)
    # torch.cuda.get_device_name() as NVIDIA's drivers report it -> (table entry, dense bf16 or fp16 TFLOP/s)
    named = {"NVIDIA H100 80GB HBM3": ("H100 SXM", 989.5), "NVIDIA H100 PCIe": ("H100 PCIe", 756.5),
             "NVIDIA H100 NVL": ("H100 NVL", 835.5), "NVIDIA H200": ("H200 SXM", 989.5),
             "NVIDIA H200 NVL": ("H200 NVL", 835.5), "NVIDIA GH200 480GB": ("GH200", 989.5),
             "NVIDIA A100-SXM4-80GB": ("A100", 312.0), "NVIDIA A100-SXM4-40GB": ("A100", 312.0),
             "NVIDIA A100 80GB PCIe": ("A100", 312.0), "Tesla V100-SXM2-32GB": ("V100 SXM2", 125.0),
             "Tesla V100-SXM2-16GB": ("V100 SXM2", 125.0), "NVIDIA L40S": ("L40S", 362.05),
             "AMD Instinct MI250X": ("MI250X", 383.0), "AMD Instinct MI300X": ("MI300X", 1307.4)}
    for device_name, (model, tflops) in named.items():
        peak, facts = find_peak(device_name, "fp16")
        assert peak == tflops and facts["peak_model"].startswith(model), device_name
    assert find_peak("NVIDIA GeForce RTX 4090", "bf16")[0] is None  # not in the table: no MFU, never a guess


def write_rapl(root: Path, energy_uj: int, max_uj: int = 262_143_328_850) -> None:
    for zone in ("intel-rapl:0", "intel-rapl:0:0"):  # a package and one of its subzones (never counted twice)
        (root / zone).mkdir(parents=True, exist_ok=True)
        (root / zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
        (root / zone / "energy_uj").write_text(f"{energy_uj}\n")


def test_rapl_package_energy_including_a_wrap_around(tmp_path):
    write_rapl(tmp_path, 1_000_000, max_uj=10_000_000)
    rapl = RaplPackages(tmp_path)
    before = rapl.read_raw()
    write_rapl(tmp_path, 3_500_000, max_uj=10_000_000)
    assert rapl.joules_between(before, rapl.read_raw()) == pytest.approx(2.5)
    before = rapl.read_raw()
    write_rapl(tmp_path, 499_999, max_uj=10_000_000)  # wrapped: 6,500,000 to the top, one step to 0, then 499,999
    assert rapl.joules_between(before, rapl.read_raw()) == pytest.approx(7.0)
    assert counter_delta(9, 2, 9) == 3 and counter_delta(3, 5, 9) == 2  # 9 -> 0 -> 1 -> 2


def test_rapl_absent_or_unreadable_is_a_reason(tmp_path):
    with pytest.raises(EnergyUnavailable, match="does not exist"):
        RaplPackages(tmp_path / "missing")
    tmp_path.joinpath("intel-rapl-mmio:0").mkdir()
    with pytest.raises(EnergyUnavailable, match="no RAPL package zones"):
        RaplPackages(tmp_path)


@pytest.mark.skipif(not POWERCAP.is_dir(), reason=f"{POWERCAP} does not exist on this machine (a VM)")
def test_rapl_reads_this_machine():
    try:
        rapl = RaplPackages()
    except EnergyUnavailable as exc:
        pytest.skip(str(exc))
    assert rapl.joules_between(rapl.read_raw(), rapl.read_raw()) >= 0


def test_energy_merge_counts_a_shared_counter_once():
    ranks = [{"energy_j": 10.0, "energy_s": 2.0, "energy_counter": "hostA:rapl", "energy_method": "rapl"},
             {"energy_j": 10.2, "energy_s": 2.0, "energy_counter": "hostA:rapl", "energy_method": "rapl"},
             {"energy_j": 6.0, "energy_s": 2.0, "energy_counter": "hostB:rapl", "energy_method": "rapl"}]
    m = Energy.merge(ranks, RunFacts(global_batch_size=30, world_size=3, timed_samples=160))
    assert m["energy_j"] == pytest.approx(16.0) and m["energy_counters"] == 2
    assert m["energy_j_per_sample"] == pytest.approx(0.1) and m["power_w_per_counter"] == pytest.approx(4.0)
    missing = Energy.merge([ranks[0], {"energy_j": None, "energy_note": "no RAPL: VM"}], RunFacts(
        global_batch_size=2, world_size=2, timed_samples=4))
    assert missing["energy_j"] is None and missing["energy_note"] == "no RAPL: VM"


def test_peak_memory_is_the_largest_rank():
    ranks = [{"peak_memory_bytes": 2**30, "peak_reserved_bytes": 2 * 2**30, "peak_memory_kind": "cuda_max_allocated"},
             {"peak_memory_bytes": 3 * 2**30, "peak_reserved_bytes": 4 * 2**30, "peak_memory_kind": "cuda_max_allocated"}]
    m = PeakMemory.merge(ranks, RunFacts(global_batch_size=2, world_size=2))
    assert m["peak_memory_gib"] == 3 and m["peak_reserved_gib"] == 4 and "max_memory_allocated" in m["peak_memory_note"]


def test_peak_command_record_and_mfu_against_it_in_the_report(tmp_path):
    result = run_cli("peak", "--sizes", "64,128", "-n", "3", "-w", "1", "--threads", "1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    [peak] = read_records(tmp_path)
    assert peak["kind"] == "peak" and records.record_problem(peak) is None
    m = peak["metrics"]
    assert m["achievable_tflops"] == max(row["tflops"] for row in m["shapes"]) > 0
    assert m["datasheet_tflops"] is None and "CPUs" in m["datasheet_note"]
    bad = cli_in_process("peak", "--precision", "fp16", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "precision: fp16 needs --device cuda" in bad.stderr
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())

    run = run_cli("run", "--workload", "mlp", "--hidden-size", "64", "--nproc", "1", "--steps", "5", "--warmup", "1",
                  "--repeats", "1", "--no-breakdown", "--threads", "1", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    found = read_valid([tmp_path])
    table = efficiency_table(load_records([tmp_path]), peaks_frame(found))
    assert len(table) == 1
    row = table.iloc[0]
    assert row["achievable_tflops"] == pytest.approx(m["achievable_tflops"])
    assert row["mfu_measured_peak"] == pytest.approx(row["tflops_per_device"] / m["achievable_tflops"])
    assert pd.isna(row["mfu"]) and "CPUs" in row["note"]

    report = run_cli("report", str(tmp_path), "-o", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Memory, FLOPs and energy" in text and "mfu_measured_peak" in text


def test_precision_table_pairs_the_same_work_only():
    base = {"system_name": "s", "system_id": "x", "workload": "cnn", "engine": "ddp", "device": "cpu",
            "batch_size": 8, "channels_last": False, "compile": False, "world_size": 2, "peak_memory_gib": 1.0,
            "mfu": None, "energy_j_per_sample": None}
    runs = pd.DataFrame([{**base, "precision": "fp32", "samples_per_s": 100.0},
                         {**base, "precision": "bf16", "samples_per_s": 150.0},
                         {**base, "batch_size": 16, "precision": "fp32", "samples_per_s": 180.0}])
    table = precision_table(runs)
    assert len(table) == 1 and table.loc[0, "samples_per_s_bf16"] == 150 and table.loc[0, "samples_per_s_fp32"] == 100

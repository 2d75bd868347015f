"""Results over time: the statistics on known answers, the step detector's detection and false-alarm rates,
`hpcbench history` finding a step at a torch upgrade, and `compare` with noise."""

from __future__ import annotations

import datetime
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import special

from conftest import cli_in_process, run_cli
from history_records import history_record, write_series
from hpcbench import records
from hpcbench.analysis import load_records
from hpcbench.analysis.compare import compare, verdict
from hpcbench.analysis.history import detect_steps, history, version_changes
from hpcbench.analysis.stats import bootstrap_ratio_ci, log_welch_p_value

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"
START_OF_TEST = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)


def test_the_welch_test_on_fixed_samples():
    baseline, new = [100.0, 104.0, 98.0, 101.0], [90.0, 93.0, 88.0]
    a, b = np.log(baseline), np.log(new)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    by_hand = special.betainc(dof / 2, 0.5, dof / (dof + t * t))  # two-sided p from the t distribution's CDF
    assert log_welch_p_value(baseline, new) == pytest.approx(by_hand, rel=1e-9)
    # t = 5.39 on 4.11 dof (a t table at 4 dof: two-sided 0.01 at t = 4.60, 0.005 at t = 5.60)
    assert log_welch_p_value(baseline, new) == pytest.approx(0.00529, abs=1e-5)
    assert log_welch_p_value(baseline, baseline) == 1.0
    assert log_welch_p_value([5.0, 5.0], [4.0, 4.0]) == 0.0 and log_welch_p_value([5.0, 5.0], [5.0, 5.0]) == 1.0
    assert math.isnan(log_welch_p_value([100.0], [90.0, 91.0]))  # one repeat: nothing to test


def test_the_bootstrap_interval_of_a_ratio_on_fixed_samples():
    assert bootstrap_ratio_ci([100.0] * 5, [200.0] * 4) == pytest.approx((2.0, 2.0))  # every resample
    rng = np.random.default_rng(7)
    a, b = rng.lognormal(4.6, 0.05, 40), rng.lognormal(4.5, 0.05, 30)
    direct = np.quantile([np.median(rng.choice(b, b.size)) / np.median(rng.choice(a, a.size)) for _ in range(20000)],
                         [0.025, 0.975])
    assert bootstrap_ratio_ci(a, b) == pytest.approx(tuple(direct), rel=0.005)
    low, high = bootstrap_ratio_ci(a, b)
    assert low < np.median(b) / np.median(a) < high


def noisy(n: int, seed: int, step_at: int | None = None, step: float = 0.9, sigma: float = 0.03) -> np.ndarray:
    values = 1000 * (1 + sigma * np.random.default_rng(seed).standard_normal(n))
    if step_at is not None:
        values[step_at:] *= step
    return values


def test_the_detector_finds_a_10_percent_step_in_3_percent_noise_at_its_run():
    """Measured over seeds 0..1999: found in 100.0 %; at the exact run 91.9 % without a software change to snap
    to (99.0 % within one run either way), 99.75 % with one; a second, false step in 0.05 %."""
    found = [detect_steps(noisy(40, seed, 20)) for seed in range(200)]
    assert all(steps for steps in found)
    assert sum(any(s.index == 20 for s in steps) for steps in found) >= 170
    snapped = [detect_steps(noisy(40, seed, 20), anchors=frozenset({20})) for seed in range(200)]
    assert sum(any(s.index == 20 for s in steps) for steps in snapped) >= 198
    [step] = snapped[0]
    assert step.ratio == pytest.approx(0.9, abs=0.03) and step.ci_low < step.ratio < step.ci_high
    assert step.confidence > 0.999999


def test_no_change_raises_no_alarm():
    """60 runs, 3 % noise, no change: measured false alarms over seeds 0..1999: none; with the test alone (no
    minimum step) 2 (0.1 %, the level alpha = 0.001 per series sets, Bonferroni over the splits)."""
    assert not any(detect_steps(noisy(60, seed)) for seed in range(300))
    assert sum(bool(detect_steps(noisy(60, seed), min_change=0.0)) for seed in range(300)) <= 1  # the test alone: ~alpha
    assert detect_steps([1000.0] * 5) == [] and detect_steps([]) == []  # too short to split


def test_two_steps_are_both_found_and_a_small_one_is_not():
    values = noisy(60, 1, 20)
    values[40:] *= 1.25
    assert [s.index for s in detect_steps(values)] == [20, 40]
    assert [s.ratio for s in detect_steps(values)] == pytest.approx([0.9, 1.25], abs=0.03)
    assert detect_steps(noisy(60, 2, 30, step=0.97)) == []  # 3 %: below the 5 % minimum


def test_version_changes_name_what_changed():
    import pandas as pd

    before = pd.Series({"torch": "2.13.0", "nccl": "2.21.5", "git_sha": "a" * 40, "mpi": None})
    after = pd.Series({"torch": "2.14.1", "nccl": "2.23.4", "git_sha": "b" * 40, "mpi": "Open MPI v4.1.4"})
    assert version_changes(before, after) == ("torch 2.13.0 -> 2.14.1, nccl 2.21.5 -> 2.23.4, mpi none -> Open MPI "
                                              "v4.1.4, git_sha aaaaaaa -> bbbbbbb")
    assert version_changes(before, before) == ""


def test_done_when_history_shows_the_step_at_the_torch_upgrade(tmp_path):
    """40 runs a day apart, torch 2.13.0 then 2.14.1 from run 21 on, 10 % slower from there, 3 % noise; and
    another machine's runs, another scale, and a series without a change beside them."""
    torches = ["2.13.0"] * 20 + ["2.14.1"] * 20
    write_series(tmp_path / "runs", [1000.0] * 20 + [900.0] * 20, torches, seed=3)
    write_series(tmp_path / "runs", [500.0] * 40, torches, seed=4, prefix="big", hidden_size=1024)
    write_series(tmp_path / "runs", [1000.0] * 40, ["2.13.0"] * 40, seed=5, prefix="beta", system="beta")
    db = tmp_path / "index.sqlite"
    indexed = cli_in_process("index", str(tmp_path / "runs"), "--db", str(db))
    assert indexed.returncode == 0 and "120 added" in indexed.stdout, indexed.stderr
    for source in (tmp_path / "runs", db):  # the folders and the index answer alike
        result = cli_in_process("history", str(source), "--plot", str(tmp_path / "history.png"))
        assert result.returncode == 0, result.stderr
        assert "3 series, 120 runs" in result.stdout and "1 step(s)" in result.stdout
        [line] = [line for line in result.stdout.splitlines() if line.startswith("  regression:")]
        assert "alpha: mlp hidden_size=64 num_layers=2 ddp cpu 1thr b16/proc, 1p: -1" in line
        assert "from run 21 (2026-01-25T02:00:00, run00020)" in line and "software: torch 2.13.0 -> 2.14.1" in line
    assert (tmp_path / "history.png").stat().st_size > 20_000
    one = cli_in_process("history", str(db), "--system", "alpha", "--experiment", "hidden_size=64")
    assert "1 series, 40 runs" in one.stdout and "torch 2.13.0 -> 2.14.1" in one.stdout  # the run table, change marked
    runs = load_records([tmp_path / "runs"])
    alpha = runs[runs["system_name"] == "alpha"]
    assert alpha["system_id"].nunique() == 2 and alpha["hardware_id"].nunique() == 1  # torch splits systems, not machines


def test_a_step_between_software_changes_names_the_nearest():
    torches = ["2.13.0"] * 10 + ["2.14.1"] * 30
    levels = [1000.0] * 25 + [800.0] * 15
    import pandas as pd

    rows = [{"run_id": f"r{i}", "started": f"2026-01-{i + 1:02d}T00:00:00", "samples_per_s": level, "torch": torch,
             "hardware_id": "h", "system_name": "alpha", "experiment_id": "e", "experiment_label": "mlp",
             "num_nodes": 1, "procs_per_node": 1, "world_size": 1}
            for i, (level, torch) in enumerate(zip(levels, torches))]
    points, steps = history(pd.DataFrame(rows))
    [step] = steps.to_dict("records")
    assert step["run"] == 26 and step["verdict"] == "regression" and step["change"] == pytest.approx(-0.2)
    assert step["changed"] == "none at this run; nearest: run 11 (torch 2.13.0 -> 2.14.1)"
    assert points["changed"].tolist().count("torch 2.13.0 -> 2.14.1") == 1


def test_compare_verdicts_follow_the_test_and_the_tolerance():
    assert verdict(0.90, 0.01, 0.05, 0.05) == "slower" and verdict(1.10, 0.01, 0.05, 0.05) == "faster"
    assert verdict(0.97, 0.01, 0.05, 0.05) == "within tolerance" and verdict(0.80, 0.2, 0.05, 0.05) == "within noise"
    assert verdict(0.80, math.nan, 0.05, 0.05) == "too few repeats"


def test_compare_says_within_noise_unless_significant_and_beyond_the_tolerance(tmp_path):
    rng = np.random.default_rng(0)
    base = [float(v) for v in 1000 * (1 + 0.10 * rng.standard_normal(5))]  # +-10 % noise, as on the test VM
    for name, rates, torch in (("base", base, "2.13.0"), ("same", [v * 0.96 for v in base[::-1]], "2.13.0"),
                               ("slow", [v * 0.8 for v in base], "2.14.1"), ("noisy", [900.0, 1300.0, 700.0], "2.13.0")):
        (tmp_path / name).mkdir()
        records.write_atomic(tmp_path / name / "r.json", history_record(name, START_OF_TEST, rates, torch=torch))
    runs = {name: load_records([tmp_path / name]) for name in ("base", "same", "slow", "noisy")}
    [same] = compare(runs["base"], runs["same"], 0.05).to_dict("records")
    assert same["verdict"] == "within noise" and same["p_value"] > 0.05 and same["software_differs"] == "-"
    assert compare(runs["base"], runs["slow"], 0.05).empty  # another torch is another system: compare keys by system_id
    [slow] = compare(runs["base"], runs["slow"], 0.05, across_systems=True).to_dict("records")
    assert slow["verdict"] == "slower" and slow["regressed"] and slow["change"] == pytest.approx(-0.2)
    assert slow["ci95_low"] <= -0.2 <= slow["ci95_high"] and slow["software_differs"] == "torch 2.13.0 -> 2.14.1"
    # slower by 20 % but its own repeats disagree by +-30 %: not significant, said so, exit 0
    result = cli_in_process("compare", str(tmp_path / "base"), str(tmp_path / "noisy"))
    assert result.returncode == 0 and "within noise" in result.stdout and "0 of 1 configuration(s) slower" in result.stdout
    result = cli_in_process("compare", str(tmp_path / "base"), str(tmp_path / "slow"), "--across-systems")
    assert result.returncode == 1 and "1 of 1 configuration(s) slower (significant at p < 0.05 and beyond 5.0%)" in result.stdout
    assert "torch 2.13.0 -> 2.14.1" in result.stdout


def test_compare_reads_an_index_as_a_folder(tmp_path):
    shutil.copytree(REFERENCE / "cpu-2core-vm", tmp_path / "runs")
    db = tmp_path / "index.sqlite"
    assert cli_in_process("index", str(tmp_path / "runs"), "--db", str(db)).returncode == 0
    from_index = cli_in_process("compare", str(db), str(tmp_path / "runs"))
    assert from_index.returncode == 0 and "0 of 12 configuration(s) slower" in from_index.stdout
    assert "12 within noise" in from_index.stdout


@pytest.mark.slow
def test_done_when_two_sweeps_of_the_same_code_here_are_within_noise(tmp_path):
    """Each side three runs (seeds 0-2): their medians carry this VM's run-to-run noise (+-10 % here), which a
    test over one run's repeats cannot see (it called the same code 'faster' three times out of three)."""
    for seed in range(3):  # the sides' runs interleaved: a busy neighbour's load drifts, and must not land on one side
        for side in ("a", "b"):
            result = run_cli("sweep", "--workloads", "mlp", "--nproc", "1", "--seed", str(seed), "--hidden-size", "256",
                             "--threads", "1", "--steps", "10", "--warmup", "2", "--repeats", "2", "--no-breakdown",
                             "--out", str(tmp_path / side))
            assert result.returncode == 0, result.stderr[-2000:]
    result = run_cli("compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3/3 runs" in result.stdout and "within noise" in result.stdout, result.stdout
    assert "0 of 1 configuration(s) slower" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["compare", str(REFERENCE / "cpu-2core-vm"), str(REFERENCE / "cpu-2core-vm"), "--alpha", "2"], "alpha: must be in (0, 1)"),
    (["history", str(REFERENCE), "--tolerance", "lots"], "tolerance: 'lots' is not a percentage"),
    (["history", "/no/such/folder"], "RESULTS: no such file or folder: /no/such/folder"),
    (["references", str(REFERENCE), "--metric", "speed"], "metric: 'speed' is not one of"),
    (["check", str(REFERENCE), "--references", "/no/such.toml"], "references: no such file or folder"),
])
def test_bad_input_to_the_results_commands_is_one_line_and_exit_2(args, message):
    result = cli_in_process(*args)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr

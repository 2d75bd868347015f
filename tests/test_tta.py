"""Time to accuracy (--mode tta): real held-out data, targets, budgets, learning-rate scaling, seeds, report."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest
import torch

from conftest import cli_in_process, read_records, run_cli
from hpcbench.analysis.convergence import olympic_mean, tta_table
from hpcbench.config import RunConfig
from hpcbench.convergence import Quality, TargetWatch, lr_factor, lr_multiplier
from hpcbench.errors import ConfigError
from hpcbench.experiment import experiment_block
from hpcbench.matrix import SweepMatrix
from hpcbench.resolve import resolve
from hpcbench.sweep import plan_grid
from hpcbench.training import LrSchedule
from hpcbench.workloads import get_workload
from hpcbench.workloads.digits import digits_classification, digits_images


@pytest.mark.slow
def test_done_when_mlp_and_rl_reach_their_targets_on_1_and_2_processes_and_the_report_shows_it(tmp_path):
    """rl aims at CartPole-v0's 195 (reached in ~100 updates), not v1's default 475: on a loaded 2-core
    machine the same seed took 380 to 1,775 updates to 475 (10 s to 4 min for this test), and the machinery
    under test is the same. The default target is checked in-process below."""
    out = tmp_path / "tta"
    for workload, target in (("mlp", []), ("rl", ["--target", "195"])):
        result = run_cli("sweep", "--mode", "tta", "--workloads", workload, "--nproc", "1,2", "--max-time", "240",
                         "--out", str(out), *target, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "time to accuracy" in result.stdout and "tta_speedup" in result.stdout
        assert "throughput_speedup" in result.stdout
    runs = read_records(out)
    assert sorted((r["config"]["workload"], r["provenance"]["world_size"]) for r in runs) == [
        ("mlp", 1), ("mlp", 2), ("rl", 1), ("rl", 2)]
    for record in runs:
        m, tta = record["metrics"], record["metrics"]["tta"]
        assert record["status"] == "ok" and m["replicas_identical"], record["reason"]
        assert tta["reached"] and tta["ended_by"] == "target", tta
        last = tta["curve"][-1]
        assert tta["time_to_target_s"] == last["seconds"] and last["quality"] >= tta["target"]
        assert all(p["quality"] is None or p["quality"] < tta["target"] for p in tta["curve"][:-1])  # the first to meet it
        assert 0 < tta["eval_s"] < tta["time_to_target_s"] and tta["train_s"] < tta["time_to_target_s"]
        assert tta["samples_to_target"] == tta["steps_to_target"] * m["global_batch_size"]
        assert m["samples_per_s"] > 0  # the throughput of the same run
        assert record["config"]["num_warmup_steps"] == 0 and not record["config"]["breakdown"]
    mlp = next(r for r in runs if r["config"]["workload"] == "mlp")
    assert mlp["metrics"]["tta"]["target"] == 0.95 and mlp["config"]["data"] == "bundled"
    assert mlp["metrics"]["tta"]["epochs_to_target"] == mlp["metrics"]["tta"]["steps_to_target"] / 11  # 1437 // 128
    rl = next(r for r in runs if r["config"]["workload"] == "rl" and r["provenance"]["world_size"] == 2)
    assert rl["metrics"]["tta"]["target"] == 195 and rl["metrics"]["tta"]["curve"][-1]["items"] == 100
    # The agent learned (a random policy averages ~22 steps per CartPole episode), counted in environment steps.
    assert rl["metrics"]["mean_episode_return"] > 100 and rl["workload"]["sample_unit"] == "environment step"

    report = run_cli("report", str(out), "-o", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report" / "report.md").read_text()
    assert "### Time to accuracy" in text and "mean_return_last_100" in text and "heldout_accuracy" in text
    assert (tmp_path / "report" / "plots" / "time_to_accuracy.png").stat().st_size > 10_000
    assert "time_to_accuracy" in (tmp_path / "report" / "report.html").read_text()


def test_an_unreachable_target_in_a_tiny_budget_records_not_reached_with_the_best_quality(tmp_path):
    result = run_cli("run", "--mode", "tta", "--workload", "mlp", "--hidden-size", "64", "--target", "1.0",
                     "--max-epochs", "2", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    [record] = read_records(tmp_path)
    tta = record["metrics"]["tta"]
    assert record["status"] == "ok" and not tta["reached"] and tta["ended_by"] == "max_epochs"
    assert tta["time_to_target_s"] is None and tta["samples_to_target"] is None and tta["steps_to_target"] is None
    assert [p["epoch"] for p in tta["curve"]] == [1.0, 2.0]
    assert tta["best_quality"] == max(p["quality"] for p in tta["curve"]) and 0 < tta["best_quality"] < 1


@pytest.mark.parametrize(("args", "message"), [
    (["--mode", "tta", "--workload", "mlp", "--target", "1.5"], "target: 1.5 is outside heldout_accuracy's range [0, 1]"),
    (["--mode", "tta", "--workload", "vae", "--target", "-3"], "target: -3.0 is outside heldout_neg_elbo_nats's range"),
    (["--mode", "tta", "--workload", "finetune"], "mode: tta needs a held-out quality target; workload 'finetune'"),
    (["--mode", "tta", "--workload", "mlp", "--data", "synthetic"], "mode: tta needs a held-out quality target"),
    (["--workload", "mlp", "--target", "0.9"], "target: applies to --mode tta only"),
    (["--workload", "mlp", "--max-epochs", "3"], "max-epochs: applies to --mode tta only"),
    (["--mode", "tta", "--max-epochs", "0"], "max-epochs"),
    (["--mode", "tta", "--phases"], "phases: applies to --mode throughput only"),
    (["--mode", "accuracy"], "mode"),
    (["--lr-scaling", "cubic"], "lr-scaling"),
    (["--workload", "cnn", "--data", "bundled", "--num-classes", "5"], "num-classes: the bundled data has 10 classes"),
])
def test_bad_tta_input_is_one_line_exit_2_and_no_record(tmp_path, args, message):
    result = cli_in_process("run", "--out", str(tmp_path / "out"), *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not list(tmp_path.rglob("*.json"))


def test_olympic_mean_drops_the_fastest_and_the_slowest_from_three_on():
    assert olympic_mean([10.0, 1.0, 4.0, 5.0, 100.0]) == pytest.approx(19 / 3)
    assert olympic_mean([3.0, 1.0, 2.0]) == 2.0
    assert olympic_mean([4.0, 2.0]) == 3.0 and olympic_mean([7.0]) == 7.0 and olympic_mean([]) is None


def test_lr_scaling_rules_and_gradual_warmup():
    assert lr_factor("none", 8) == 1 and lr_factor("linear", 8) == 8 and lr_factor("sqrt", 16) == 4
    # Goyal et al.: from the 1-process rate to k times it over the warm-up, linearly, then k times it
    assert [lr_multiplier(step, 4.0, 3) for step in range(5)] == [2.0, 3.0, 4.0, 4.0, 4.0]
    assert lr_multiplier(0, 4.0, 0) == 4.0
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = LrSchedule(optimizer, "linear", 2, k=4)
    rates = []
    for step in range(3):
        schedule.set(step)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([0.25, 0.4, 0.4])
    assert schedule.settings() == {"base_lr": 0.1, "factor": 4, "peak_lr": pytest.approx(0.4), "warmup_steps": 2}


def test_linear_lr_scaling_is_recorded_and_changes_the_experiment(tmp_path):
    result = run_cli("run", "--workload", "mlp", "--hidden-size", "32", "--nproc", "2", "--steps", "2", "--warmup", "1",
                     "--repeats", "1", "--no-breakdown", "--lr-scaling", "linear", "--lr-warmup-steps", "2",
                     "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    [record] = read_records(tmp_path)
    assert record["workload"]["learning_rate"] == {"base_lr": 0.01, "factor": 2.0, "peak_lr": 0.02, "warmup_steps": 2}
    assert record["metrics"]["replicas_identical"]
    plain = experiment_block({**record["config"], "lr_scaling": "none", "lr_warmup_steps": 0})
    assert record["experiment"]["experiment_id"] != plain["experiment_id"]
    assert "lr-scaling=linear lr-warmup-steps=2" in record["experiment"]["label"]


def test_throughput_runs_keep_their_ids_and_tta_runs_are_their_own_experiment():
    before = {"workload": "mlp", "options": {"hidden_size": 64}, "engine": "ddp", "engine_options": {},
              "device": "cpu", "batch_size": 16, "num_threads": 1, "data": "synthetic"}
    now = {**before, "mode": "throughput", "target": None, "eval_every": None, "lr_scaling": "none",
           "lr_warmup_steps": 0, "max_epochs": None, "max_time_s": None, "seed": 3}
    assert experiment_block(now)["experiment_id"] == experiment_block(before)["experiment_id"]
    tta = {**now, "mode": "tta", "target": 0.95, "data": "bundled", "max_time_s": 1800.0}
    assert experiment_block(tta)["experiment_id"] != experiment_block(now)["experiment_id"]
    # seeds pool and a budget only cuts a run: neither makes another experiment
    assert experiment_block({**tta, "seed": 7, "max_epochs": 3})["experiment_id"] == experiment_block(tta)["experiment_id"]


def test_target_watch_direction_minimum_count_and_budgets():
    nats = Quality(metric="heldout_neg_elbo_nats", higher_is_better=False, low=0.0, high=1e4, target=300.0, why="test")
    watch = TargetWatch(quality=nats, target=300.0, max_epochs=None, max_time_s=60.0, global_batch_size=256, steps_per_epoch=5)
    assert not watch.evaluated(step=5, seconds=1.0, eval_s=0.1, total=3200.0, count=10)  # 320 nats
    assert watch.evaluated(step=10, seconds=2.0, eval_s=0.1, total=2990.0, count=10)  # 299: met (lower is better)
    assert watch.result(train_s=1.8, eval_s_total=0.2)["epochs_to_target"] == 2.0
    solved = Quality(metric="mean_return_last_100", higher_is_better=True, low=0.0, high=500.0, target=475.0,
                     why="test", min_count=100)
    episodes = TargetWatch(quality=solved, target=475.0, max_epochs=None, max_time_s=10.0, global_batch_size=512, steps_per_epoch=None)
    assert not episodes.evaluated(step=5, seconds=1.0, eval_s=0.0, total=500.0 * 99, count=99)  # too few episodes yet
    assert episodes.curve[-1]["quality"] is None
    assert episodes.evaluated(step=10, seconds=11.0, eval_s=0.0, total=100.0 * 100, count=100)
    result = episodes.result(train_s=10.0, eval_s_total=0.0)
    assert result["ended_by"] == "max_time" and not result["reached"] and result["best_quality"] == 100.0


def test_the_report_never_averages_a_seed_that_missed_the_target_in():
    def run(world_size: int, seed: int, seconds: float | None, samples_per_s: float) -> dict:
        return {"system_name": "vm", "system_id": "s", "experiment_id": "e", "experiment_label": "mlp tta",
                "workload": "mlp", "world_size": world_size, "mode": "tta", "seed": seed, "reached": seconds is not None,
                "time_to_target_s": seconds, "samples_to_target": 1000 * world_size if seconds else None,
                "epochs_to_target": None, "best_quality": 0.96 if seconds else 0.9, "higher_is_better": True,
                "quality_metric": "heldout_accuracy", "target": 0.95, "global_batch_size": 128 * world_size,
                "samples_per_s": samples_per_s}

    runs = pd.DataFrame([run(1, 0, 10.0, 100.0), run(1, 1, 12.0, 100.0), run(1, 2, 50.0, 100.0), run(1, 3, 11.0, 100.0),
                         run(2, 0, 8.0, 180.0), run(2, 1, None, 180.0)])
    table = tta_table(runs).set_index("world_size")
    assert table.loc[1, "time_to_target_s"] == pytest.approx(11.5)  # olympic: drops 10 and 50
    assert table.loc[1, "reached"] == "4/4" and table.loc[2, "reached"] == "1/2"
    assert table.loc[2, "time_to_target_s"] == 8.0 and table.loc[2, "times_to_target_s"] == [8.0, "not reached"]
    assert table.loc[2, "tta_speedup"] == pytest.approx(11.5 / 8.0)
    assert table.loc[2, "throughput_speedup"] == pytest.approx(1.8)


def test_seeds_run_each_point_once_per_seed():
    grid = plan_grid(SweepMatrix(workloads=["mlp"], run_values={"mode": "tta", "seed": 5}, process_counts=[1, 2],
                                 seeds=3))
    assert [(cfg.seed, cfg.num_procs) for cfg in grid] == [(5, 1), (5, 2), (6, 1), (6, 2), (7, 1), (7, 2)]
    assert len({experiment_block(cfg.to_dict())["experiment_id"] for cfg in grid}) == 1


def test_digits_are_the_bundled_real_images_with_a_fixed_stratified_split():
    train_images, train_labels = digits_images("train", 8)
    heldout_images, heldout_labels = digits_images("heldout", 8)
    assert len(train_labels) == 1437 and len(heldout_labels) == 360
    assert torch.equal(torch.bincount(heldout_labels) >= 35, torch.ones(10, dtype=torch.bool))  # every class, ~36 each
    assert 0.0 <= float(train_images.min()) and float(train_images.max()) <= 1.0
    again, _ = digits_images("heldout", 8)
    assert torch.equal(again, heldout_images)
    images, labels = digits_classification("heldout", 32, channels=3).tensors
    assert images.shape == (360, 3, 32, 32) and torch.equal(labels, heldout_labels)


def test_every_workload_with_a_target_states_where_it_comes_from():
    for name in ("mlp", "cnn", "vae", "rnn", "rl"):
        cfg = resolve(RunConfig(workload=name, mode="tta", device="cpu"))
        workload = get_workload(name)
        quality = workload.quality(workload.options(cfg.options), cfg.data)
        assert quality.low <= cfg.target <= quality.high and quality.why, name
    assert resolve(RunConfig(workload="rl", mode="tta", device="cpu")).target == 475  # gymnasium's CartPole-v1
    with pytest.raises(ConfigError, match="finetune"):
        resolve(RunConfig(workload="finetune", mode="tta", device="cpu"))


@pytest.mark.horovod
@pytest.mark.skipif(importlib.util.find_spec("horovod") is None, reason="Horovod not installed: python -m hpcbench.install_horovod")
def test_time_to_accuracy_under_horovod(tmp_path):
    result = run_cli("run", "--mode", "tta", "--engine", "horovod", "--workload", "mlp", "--nproc", "2",
                     "--max-time", "240", "--out", str(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    [record] = read_records(tmp_path)
    assert record["metrics"]["tta"]["reached"] and record["metrics"]["replicas_identical"]

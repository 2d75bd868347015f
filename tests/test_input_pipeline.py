"""The input pipeline (--data files): image files made here in the two formats, read back through the run's
DataLoader, every step's wait for its batch, DS-Analyzer's split, iobench, the forecast's input term, and the
bad input and faults the issue names (missing, empty, other format, truncated, corrupt during training)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpcbench import datafiles
from hpcbench.analysis.inputmodel import input_rates, input_term
from hpcbench.analysis.predict import with_input
from hpcbench.cli import main
from hpcbench.config import RunConfig
from hpcbench.errors import ConfigError
from hpcbench.measurements.input import INPUT_BOUND_SHARE, InputStalls, TimedBatches
from hpcbench.measurements.base import RunFacts


def hpcbench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpcbench", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """Both formats, small (40 images of 32 px): what `hpcbench data make` writes."""
    top = tmp_path_factory.mktemp("data")
    folder = hpcbench("data", "make", "--format", "jpeg-folder", "--samples", "40", "--image-size", "32", str(top / "folder"))
    assert folder.returncode == 0 and "40 images" in folder.stdout, folder.stderr
    datafiles.make(top / "shards", "tar-shards", 40, 32, shard_samples=10)
    return {"folder": top / "folder", "shards": top / "shards"}


def test_made_files_are_real_jpegs_in_each_layout(made):
    folder = datafiles.inspect(made["folder"])
    assert (folder.format, folder.samples, folder.classes, len(folder.files)) == ("jpeg-folder", 40, 10, 40)
    assert all(Path(made["folder"], rel).read_bytes()[:2] == b"\xff\xd8" for rel in folder.files)  # JPEG's SOI
    image, label = datafiles.FolderImages(folder, lambda x: x)[3]
    assert tuple(image.shape) == (3, 32, 32) and label == folder.labels[3]
    shards = datafiles.inspect(made["shards"])
    assert (shards.format, shards.samples, len(shards.files)) == ("tar-shards", 40, 4)
    members = list(datafiles.shard_members(str(Path(made["shards"], shards.files[0]))))
    assert len(members) == 10 and all(data[:2] == b"\xff\xd8" and 0 <= label < 10 for _, data, label in members)
    # a site's own folder (no manifest) is recognised by its layout
    (made["folder"] / datafiles.MANIFEST).rename(made["folder"] / "manifest.bak")
    try:
        assert datafiles.inspect(made["folder"]).samples == 40
    finally:
        (made["folder"] / "manifest.bak").rename(made["folder"] / datafiles.MANIFEST)


def test_ranks_and_workers_read_disjoint_shards(made):
    facts = datafiles.inspect(made["shards"])
    mine = [datafiles.ShardSamples(facts, lambda x: x, rank, 2, 0).shards for rank in range(2)]
    assert sorted(mine[0] + mine[1]) == facts.files and not set(mine[0]) & set(mine[1])


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("empty", "it is empty"),
    ("other", "found notes.txt"),
    ("truncated", "truncated or replaced"),
    ("format", "holds jpeg-folder, not tar-shards"),
])
def test_bad_data_folders_are_one_line_before_training(made, tmp_path, capsys, case, message):
    folder = tmp_path / "data"
    if case == "empty":
        folder.mkdir()
    elif case == "other":
        folder.mkdir()
        (folder / "notes.txt").write_text("not images")
    elif case in ("truncated", "format"):
        datafiles.make(folder, "jpeg-folder", 12, 16)
        if case == "truncated":
            victim = folder / datafiles.inspect(folder).files[5]
            victim.write_bytes(victim.read_bytes()[:100])
    extra = ["--data-format", "tar-shards"] if case == "format" else []
    code = main(["run", "--workload", "cnn", "--model", "convnet", "--data", "files", "--data-dir", str(folder), *extra,
                 "--batch-size", "2", "--steps", "1", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())  # nothing started, nothing written


@pytest.mark.parametrize("values, message", [
    ({"data": "files"}, "data-dir: required with --data files"),
    ({"data": "synthetic", "num_data_workers": 2}, "loader-workers: applies to --data real or files"),
    ({"data": "files", "data_dir": "/x", "prefetch_factor": 4}, "prefetch-factor: needs --loader-workers >= 1"),
    ({"data": "files", "data_dir": "/x", "pin_memory": True, "device": "cpu"}, "pin-memory: applies to --device cuda"),
    ({"data": "synthetic", "data_format": "tar-shards"}, "data-format: applies to --data files only"),
    ({"data": "files", "data_dir": "/x", "data_format": "zip"}, "'zip' is not one of: jpeg-folder, tar-shards"),
])
def test_loader_settings_are_checked_up_front(values, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(workload="cnn", **values)


def test_a_workload_without_image_files_says_which_have_them(made, capsys):
    assert main(["run", "--workload", "mlp", "--data", "files", "--data-dir", str(made["folder"]), "--steps", "1"]) == 2
    assert "reads no image files (--data files: cnn, finetune)" in capsys.readouterr().err


def test_a_run_from_shards_records_every_wait_and_the_split(made, tmp_path):
    """Two ranks, a loader worker each, shards: the loader settings join the identity, every timed step's wait is
    in the record, and the split's three windows add up (storage = synthetic + prep + fetch)."""
    result = hpcbench("run", "--workload", "cnn", "--model", "convnet", "--data", "files", "--data-dir", str(made["shards"]),
                      "--nproc", "2", "--loader-workers", "1", "--prefetch-factor", "3", "--batch-size", "4", "--steps", "4",
                      "--warmup", "2", "--repeats", "2", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert record["status"] == "ok" and record["config"]["data_format"] == "tar-shards"
    assert record["workload"]["data_files"]["samples"] == 40 and record["workload"]["data_files"]["files"] == 4
    assert "data-format=tar-shards" in record["experiment"]["label"] and "prefetch-factor=3" in record["experiment"]["label"]
    for rank in record["ranks"]:
        assert [len(w) for w in rank["data_wait_s"]] == [4, 4] and all(t >= 0 for w in rank["data_wait_s"] for t in w)
        assert set(rank["input_split_step_times_s"]) == {"cached", "synthetic"}
    found = record["metrics"]["input"]
    split = found["split"]
    assert split["storage_step_s"] == pytest.approx(split["synthetic_step_s"] + split["prep_stall_s"] + split["fetch_stall_s"])
    assert found["data_stall_share"] == pytest.approx(split["prep_stall_share"] + split["fetch_stall_share"])
    assert found["input_bound"] == (found["data_stall_share"] > INPUT_BOUND_SHARE)
    assert len(found["data_wait_share_by_rank"]) == 2


def test_a_corrupt_file_found_in_training_fails_the_run_naming_it(tmp_path):
    """Same size, bad bytes: the up-front check (one stat a file) cannot see it; the worker that decodes it can."""
    folder = tmp_path / "data"
    datafiles.make(folder, "jpeg-folder", 8, 16)
    victim = folder / datafiles.inspect(folder).files[2]
    victim.write_bytes(b"\x00" * victim.stat().st_size)
    result = hpcbench("run", "--workload", "cnn", "--model", "convnet", "--data", "files", "--data-dir", str(folder),
                      "--loader-workers", "1", "--batch-size", "8", "--steps", "2", "--warmup", "1", "--repeats", "1",
                      "--timeout", "30", "--out", str(tmp_path / "out"), timeout=90)
    assert result.returncode != 0
    record = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert record["status"] == "failed" and f"{victim}: not a decodable JPEG" in record["reason"], record["reason"]
    assert "Traceback" not in record["reason"]


def test_input_stalls_merge_takes_the_slowest_rank_and_splits_the_step():
    """Known numbers in, DS-Analyzer's arithmetic out: the slowest rank sets the stall share and the split."""
    ranks = [{"step_times_s": [[1.0, 1.0]], "data_wait_s": [[0.05, 0.05]],
              "input_split_step_times_s": {"cached": [0.8, 0.8], "synthetic": [0.6, 0.6]}},
             {"step_times_s": [[1.2, 1.0]], "data_wait_s": [[0.5, 0.4]],
              "input_split_step_times_s": {"cached": [0.9, 0.7], "synthetic": [0.5, 0.7]}}]
    found = InputStalls.merge(ranks, RunFacts(global_batch_size=8, world_size=2))["input"]
    assert found["data_wait_share_by_rank"] == pytest.approx([0.05, 0.9 / 2.2])
    assert found["data_wait_share"] == pytest.approx(0.9 / 2.2)
    assert found["split"]["storage_step_s"] == pytest.approx(1.1)  # per step the slowest rank (1.2, 1.0), mean
    # cached per step (0.9, 0.8) -> 0.85, synthetic (0.6, 0.7) -> 0.65
    assert found["split"]["prep_stall_s"] == pytest.approx(0.2) and found["split"]["fetch_stall_s"] == pytest.approx(0.25)
    assert found["data_stall_share"] == pytest.approx(0.45 / 1.1) and found["input_bound"] is True
    # without the split (synthetic data), the waits are the stall: here 2 % and 0 %, not input-bound
    quiet = [{**r, "data_wait_s": [[0.02 * t for t in r["step_times_s"][0]]] if i else [[0.0, 0.0]],
              "input_split_step_times_s": None} for i, r in enumerate(ranks)]
    found = InputStalls.merge(quiet, RunFacts(global_batch_size=8, world_size=2))["input"]
    assert found["split"] is None and "no files" in found["split_note"]
    assert found["data_stall_share"] == pytest.approx(0.02) and found["input_bound"] is False


def test_timed_batches_time_each_next_and_swap_sources():
    ticks = iter([0.0, 0.25, 1.0, 1.5])
    timed = TimedBatches(iter(["a"]), lambda: next(ticks))
    assert next(timed) == "a" and timed.waited_s == 0.25
    timed.source = iter(["b"])
    assert next(timed) == "b" and timed.waited_s == 0.5


def test_iobench_records_per_rank_node_and_aggregate(made, tmp_path):
    result = hpcbench("iobench", "--data-dir", str(made["shards"]), "--nproc", "1,2", "--seconds", "0.3", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    found = sorted((json.loads(p.read_text()) for p in tmp_path.glob("*.json")), key=lambda r: r["provenance"]["world_size"])
    assert [r["kind"] for r in found] == ["iobench", "iobench"]
    for record, ranks in zip(found, (1, 2)):
        m = record["metrics"]
        assert m["pattern"] == "sequential shards" and len(m["per_rank"]) == ranks and m["ranks_per_node"] == ranks
        assert m["aggregate_bytes_per_s"] == pytest.approx(sum(r["bytes"] for r in m["per_rank"])
                                                           / max(r["elapsed_s"] for r in m["per_rank"]))
        assert m["rank_samples_per_s_min"] <= m["aggregate_samples_per_s"] / ranks + 1e-9
    missing = hpcbench("iobench", "--data-dir", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_the_input_term_makes_a_point_input_bound_only_where_storage_is_slower():
    base = {"config": {"data": "files", "data_format": "tar-shards", "num_data_workers": 2}, "system": {"system_id": "s", "name": "n"}}
    iobench = [{"run_id": f"r{n}", "system": {"system_id": "s", "name": "n"}, "config": {"data_format": "tar-shards", "workers": 2},
                "metrics": {"num_nodes": n, "ranks_per_node": 1, "rank_samples_per_s_min": rate, "pattern": "sequential shards"}}
               for n, rate in ((1, 1000.0), (2, 400.0))]
    rates = input_rates(base, iobench)
    model = {"step_time_s": 0.8, "limit": "compute"}
    one = with_input(model, input_term(model, rates, 1, 1, 512))
    two = with_input(model, input_term(model, rates, 2, 1, 512))
    assert one["step_time_s"] == 0.8 and one["input_s"] == 0 and one["limit"] == "compute"
    assert two["step_time_s"] == pytest.approx(512 / 400) and two["limit"].startswith("input")
    assert input_term(model, rates, 4, 1, 512)["input_s"] is None  # not measured there: not guessed
    with pytest.raises(ConfigError, match="with 1 reader"):
        input_rates({**base, "config": {**base["config"], "num_data_workers": 1}}, iobench)


REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference" / "cpu-2core-vm-input"
"""benchmarks/input_emulated.py's records: tar-shards/ and jpeg-folder/, each sweep/, iobench/, netbench/."""


def test_the_sweep_table_and_the_report_say_input_bound_beside_iobench(tmp_path):
    """The shipped emulated-cluster records: the sweep's table names the input-bound points, the report has the
    split and iobench's rates beside netbench."""
    from hpcbench.analysis import format_scaling_table, load_records, scaling_table
    from hpcbench.analysis.report import build_report

    table = scaling_table(load_records([REFERENCE / "tar-shards" / "sweep"]))
    assert list(table["input_bound"]) == ["input-bound", "input-bound"] and table["data_stall_share"].gt(0.1).all()
    shown = format_scaling_table(table, compact=True)
    assert "data_stall" in shown and shown.count("input-bound") == 2
    written = build_report([REFERENCE], tmp_path)
    text = written["markdown"].read_text()
    assert "### Input pipeline" in text and "### Storage: iobench" in text
    assert "sequential shards" in text and "random small files" in text
    assert (tmp_path / "plots" / "input_split.png").exists()

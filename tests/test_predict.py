"""`hpcbench predict`: the all-reduce formulas and the overlap recurrence on hand-computed answers, fabric
files and their validation, the fit of netbench times, the command's refusals, and the prediction
record kept apart from measurements."""

import dataclasses
import importlib.util
import json
import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import cli_in_process, read_records, run_cli
from hpcbench import records
from hpcbench.analysis import load_records
from hpcbench.analysis.compare import compare
from hpcbench.analysis.netmodel import (FABRIC_FIELDS, Links, check_fabric, fabric_links, fabric_names, fit_alpha_beta,
                                        load_fabric)
from hpcbench.analysis.predict import Timeline, critical_path, predict_point
from hpcbench.errors import ConfigError

MB = 1e6
ROOT = Path(__file__).resolve().parent.parent


def links(**overrides) -> Links:
    values = dict(gpus_per_node=4, intra_busbw=100e9, inter_busbw_per_node=10e9, intra_latency_s=1e-6,
                  inter_latency_s=10e-6, base_latency_s=0.0)
    return Links(**{**values, **overrides})


def test_ring_known_answers():
    one_node = links().allreduce_s(100 * MB, 1, 4, "ring")
    assert one_node == pytest.approx(6 * 1e-6 + 2 * 3 / 4 * 100 * MB / 100e9)  # 2(p-1) intra steps, n x 2(p-1)/p / B
    two_nodes = links().allreduce_s(100 * MB, 2, 4, "ring")
    # p = 8: 2 inter-node steps, 12 intra; the NICs (10 GB/s per node) set the bandwidth
    assert two_nodes == pytest.approx(12 * 1e-6 + 2 * 10e-6 + 2 * 7 / 8 * 100 * MB / 10e9)
    assert links().allreduce_s(100 * MB, 1, 1, "ring") == 0.0  # one process: nothing moves


def test_tree_and_hierarchical_known_answers():
    tree = links().allreduce_s(100 * MB, 4, 4, "tree")
    assert tree == pytest.approx(2 * (3 * 1e-6 + 2 * 10e-6) + 2 * 100 * MB / 10e9)
    hierarchical = links().allreduce_s(100 * MB, 4, 4, "hierarchical")
    inside = 2 * (3 * 1e-6 + 3 / 4 * 100 * MB / 100e9)  # reduce-scatter + all-gather in the node
    between = 2 * 3 * 10e-6 + 2 * 3 / 4 * (100 * MB / 4) / (10e9 / 4)  # n/g bytes per process over its share of NICs
    assert hierarchical == pytest.approx(inside + between)
    with pytest.raises(ConfigError, match="algorithm"):
        links().allreduce_s(1, 2, 4, "butterfly")


def test_overlap_all_buckets_hidden():
    # backward 10 ms; buckets ready at 2, 5, 8 ms, 1 ms each: every all-reduce ends before backward does
    path = critical_path([0.002, 0.005, 0.008], [0.001, 0.001, 0.001], 0.010)
    assert path.finish_s == pytest.approx(0.009) and path.exposed_s == 0.0


def test_overlap_none_hidden():
    # everything ready at the end of backward (one all-reduce after accumulation): all of it is exposed
    path = critical_path([0.010, 0.010], [0.004, 0.003], 0.010)
    assert path.exposed_s == pytest.approx(0.007) and path.chain_start == 0


def test_overlap_backs_up_then_one_long_tail_bucket():
    # 3 ms all-reduces behind buckets ready every 1 ms queue up: f = 4, 7, 10; then the tail (ready 10 ms, 5 ms long)
    path = critical_path([0.001, 0.002, 0.003, 0.010], [0.003, 0.003, 0.003, 0.005], 0.010)
    assert path.finish_s == pytest.approx(0.015) and path.exposed_s == pytest.approx(0.005)
    assert path.chain_start == 3  # the tail started on an idle link: its own time is the exposed part
    timeline = Timeline(compute_step_s=0.030, backward_s=0.010, buckets=[(0.004, 2**20), (0.010, 8 * 2**20)],
                        spread=(1.0, 1.0), batch_size=8, run_id="r", path="p")
    slow = links(inter_busbw_per_node=1e9)
    point = predict_point(timeline, slow, 2, 1, "ring")
    assert point["limit"].startswith("a bucket that cannot hide: the last (8.0 MiB, mostly bandwidth)")
    assert point["step_time_s"] == pytest.approx(0.030 + point["exposed_comm_s"])
    assert predict_point(timeline, links(), 1, 1, "ring")["limit"] == "compute"  # 1 process: no all-reduce


def test_latency_bound_chain_is_named_latency():
    timeline = Timeline(compute_step_s=0.001, backward_s=0.0005,
                        buckets=[(0.0001 * k, 64) for k in range(1, 6)], spread=(1.0, 1.0), batch_size=1, run_id="r", path="p")
    point = predict_point(timeline, links(inter_latency_s=1e-3), 4, 1, "ring")
    assert point["limit"] == "latency"


def test_alpha_beta_fit_recovers_a_known_line():
    alpha, beta, p = 20e-6, 1 / 1e9, 4
    sizes = [2**k for k in range(10, 25, 2)]
    rows = pd.DataFrame({"size_bytes": sizes, "time_s": [2 * (p - 1) * alpha + 2 * (p - 1) / p * n * beta for n in sizes],
                         "world_size": p, "num_nodes": 2, "backend": "gloo", "run_id": "x"})
    fit = fit_alpha_beta(rows)
    assert fit.alpha_s == pytest.approx(alpha, rel=1e-6) and fit.beta_s_per_byte == pytest.approx(beta, rel=1e-6)
    assert fit.rms_relative_residual < 1e-9
    gathered = rows.assign(time_s=[(p - 1) * alpha + (p - 1) / p * n * beta for n in sizes])  # all-gather: half the steps
    fit = fit_alpha_beta(gathered, "all_gather")
    assert fit.alpha_s == pytest.approx(alpha, rel=1e-6) and fit.beta_s_per_byte == pytest.approx(beta, rel=1e-6)


def test_every_shipped_fabric_loads_and_every_value_has_a_source():
    assert {"h100-ndr", "a100-hdr", "v100-dgx1-edr", "roce-25gbe", "tcp-100gbe"} <= set(fabric_names())
    for name in fabric_names():
        fabric = load_fabric(name)
        assert all(fabric[key]["source"].strip() for key in FABRIC_FIELDS)
        assert fabric_links(fabric).inter_busbw_per_node > 0
    listed = cli_in_process("list", "fabrics")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == len(fabric_names())
    h100 = fabric_links(load_fabric("h100-ndr"))
    assert h100.intra_busbw == 370e9 and h100.inter_busbw_per_node == pytest.approx(8 * 50e9 * 0.94)


def test_fabric_file_round_trip_and_refusals(tmp_path):
    shipped = load_fabric("a100-hdr")
    text = "\n".join(['name = "mine"', 'description = "a copy"'] + [
        f'[{key}]\nvalue = {shipped[key]["value"]}\nsource = "{key} from the a100 file"' for key in FABRIC_FIELDS])
    path = tmp_path / "mine.toml"
    path.write_text(text)
    mine = load_fabric(str(path))
    assert fabric_links(mine) == dataclasses.replace(fabric_links(shipped), name="mine")
    bad = {**{k: v for k, v in mine.items() if k != "file"}}
    with pytest.raises(ConfigError, match="unknown key.*colour"):
        check_fabric({**bad, "colour": "red"}, "x")
    with pytest.raises(ConfigError, match="nics_per_node = 8 has no source"):
        check_fabric({**bad, "nics_per_node": {"value": 8, "source": " "}}, "x")
    with pytest.raises(ConfigError, match="achieved_fraction.value must be in"):
        check_fabric({**bad, "achieved_fraction": {"value": 1.5, "source": "s"}}, "x")
    with pytest.raises(ConfigError, match="gpus_per_node .* is missing"):
        check_fabric({k: v for k, v in bad.items() if k != "gpus_per_node"}, "x")
    with pytest.raises(ConfigError, match="neither a file nor one of"):
        load_fabric("no-such-fabric")


def published_module():
    spec = importlib.util.spec_from_file_location("predict_published", ROOT / "benchmarks" / "predict_published.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_published_cases_each_carry_their_sources(tmp_path):
    module = published_module()
    cases = sorted((ROOT / "benchmarks" / "published").glob("*.toml"))
    assert len(cases) >= 12
    for path in cases:
        case = module.load_case(path)  # raises when any value lacks its source
        assert 0 < case["published_efficiency"] <= 1 and case["fabric"] in fabric_names()
        row = module.evaluate(case)
        assert 0 < row["predicted"] <= row["without_network"] + 1e-9  # a network never speeds a step up
        assert row["low"] <= row["predicted"] <= row["high"] and row["predicted"] <= row["ceiling"] + 1e-9
    unsourced = tmp_path / "case.toml"
    unsourced.write_text("\n".join(line for line in cases[0].read_text().splitlines() if not line.startswith("published_source")))
    with pytest.raises(ValueError, match="missing: published_source"):
        module.load_case(unsourced)


def test_case_fields_defaults_refusals_and_json(tmp_path, capsys):
    module = published_module()
    shipped = ROOT / "benchmarks" / "published"
    today = (shipped / "goyal2017-resnet50.toml").read_text()  # a case in the first form: no new field
    fabric = tmp_path / "fabrics" / "mine.toml"  # a fabric beside the case, by relative path
    fabric.parent.mkdir()
    shutil.copy(ROOT / "jobs" / "fabrics" / "p100-50gbe.toml", fabric)
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "old.toml").write_text(today.replace('fabric = "p100-50gbe"', 'fabric = "../fabrics/mine.toml"'))
    case = module.load_case(cases / "old.toml")
    assert case["baseline_gpus"] == 8 and module.case_terms(case, 32).syncs_per_step == 1
    assert not module.case_terms(case, 32).no_overlap and case["fabric_data"]["name"] == "p100-50gbe"
    for extra, message in (('syncs_per_step = 0\nsyncs_source = "s"', "syncs_per_step must be"),
                           ('syncs_per_step = 2', "missing: syncs_source"),
                           ('engine = "byteps"\nengine_source = "s"', "engine must be ddp or horovod"),
                           ('engine = "horovod"\nengine_source = "s"', "needs positive horovod_cycle_ms"),
                           ('no_overlap = "yes"', "no_overlap must be true or false"),
                           ('baseline_gpus = 12', "baseline_gpus must be"),
                           ('bucket = 3', "unknown field(s) bucket")):
        (cases / "bad.toml").write_text(today + "\n" + extra + "\n")
        with pytest.raises(module.CaseError, match=re.escape(message)):
            module.load_case(cases / "bad.toml")
    # no overlap and k synchronisations each make the forecast slower, never faster
    (cases / "new.toml").write_text(today + '\nno_overlap = true\nsyncs_per_step = 4\nsyncs_source = "s"\n'
                                    'engine = "horovod"\nhorovod_cycle_ms = 5\nhorovod_fusion_mb = 64\nengine_source = "s"\n')
    plain, strict = module.evaluate(case), module.evaluate(module.load_case(cases / "new.toml"))
    assert strict["predicted"] < plain["predicted"] and strict["syncs_per_step"] == 4
    assert module.main(["--json", str(cases / "old.toml"), str(cases / "new.toml")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [case["name"]] * 2
    assert all({"name", "published", "predicted", "low", "high"} <= set(r) and r["low"] <= r["predicted"] <= r["high"]
               and 0 < r["published"] <= 1 for r in rows)
    assert module.main([str(cases / "bad.toml")]) == 2 and "unknown field" in capsys.readouterr().err


# --- the command, on one real run
@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> Path:
    """One cnn run with its compute-only window and timeline, and one at half its batch."""
    folder = tmp_path_factory.mktemp("predict")
    for extra, name in (([], "run"), (["--batch-size", "16"], "half")):
        result = run_cli("run", "--workload", "cnn", "--model", "convnet", "--steps", "6", "--warmup", "2", "--repeats", "2",
                         "--device", "cpu", *extra, "--out", str(folder / name))
        assert result.returncode == 0, result.stderr
    return folder


def netbench_record(run: dict, folder: Path, system_id: str | None = None) -> Path:
    """A netbench record of the run's system (its provenance), across 2 nodes: 20 us + 10 ms per MB."""
    sizes = [2**k for k in range(12, 25, 2)]
    rows = [{"size_bytes": n, "time_s": 20e-6 + n / 1e8, "algbw_gbps": n / (20e-6 + n / 1e8) / 1e9,
             "busbw_gbps": n / (20e-6 + n / 1e8) / 1e9, "wrong": 0} for n in sizes]
    gathered = [{**row, "time_s": 10e-6 + n / 2e8} for row, n in zip(rows, sizes)]  # all-gather: half of each
    prov = {**run["provenance"], "world_size": 2, "num_nodes": 2, "backend": "gloo", "hostnames": ["n1", "n2"]}
    record = records.make_record(run_id=records.new_run_id(), status="ok", reason=None, config={"backend": "gloo"},
                                 workload=None, metrics={"collectives": {"all_reduce": rows, "all_gather": gathered}},
                                 ranks=[], provenance=prov, kind="netbench")
    if system_id:
        record["system"]["system_id"] = system_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"netbench_{record['run_id']}.json"
    records.write_atomic(path, record)
    return path


def test_predict_prints_its_limiting_term_and_the_report_keeps_it_apart(measured, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(measured / "run", runs)
    result = cli_in_process("predict", str(runs), "--fabric", "h100-ndr", "--nodes", "1,2,4,8,16,32,64,128",
                            "--gpus-per-node", "8", "--compute-step-ms", "40")
    assert result.returncode == 0, result.stderr
    assert "PREDICTION" in result.stdout and "not a measurement" in result.stdout
    assert "compute from --compute-step-ms 40" in result.stdout and "arXiv 2208.11035" in result.stdout
    assert len(list(runs.glob("prediction_*.png"))) == 1  # the plot beside the record
    lines = [line for line in result.stdout.splitlines() if line.startswith(("ring", "tree"))]
    assert len(lines) == 16 and all(any(term in line for term in ("compute", "latency", "bandwidth", "cannot hide",
                                                                   "stragglers", "interference", "framework"))
                                    for line in lines)
    named = [line for line in result.stdout.splitlines() if line.strip().startswith("ms: compute")]
    assert len(named) == 16 and all(all(t in line for t in ("stragglers", "interference", "exposed comm", "framework"))
                                    for line in named)
    [prediction] = [r for r in map(json.loads, map(Path.read_text, runs.glob("prediction_*.json")))]
    assert prediction["kind"] == "prediction" and prediction["config"]["model_version"] >= 2
    assert prediction["config"]["terms"]["compute_source"] == "--compute-step-ms 40"
    for point in prediction["metrics"]["points"]:  # the interval holds the forecast; the ceiling is never below it
        assert point["step_time_s_low"] <= point["step_time_s"] <= point["step_time_s_high"]
        assert point["ceiling_step_time_s"] <= point["step_time_s"] + 1e-12
    assert prediction["provenance"]["network_model"]["fabric"]["nics_per_node"]["source"]
    assert records.record_problem(prediction) is None
    # never a measurement: the runs frame, compare and the scaling tables see the one training run only
    frame = load_records([runs])
    assert len(frame) == 1 and set(frame["run_id"]) == {read_records(measured / "run")[0]["run_id"]}
    assert len(compare(frame, load_records([runs]), 0.05)) == 1
    report = tmp_path / "report"
    assert cli_in_process("report", str(runs), "-o", str(report)).returncode == 0
    markdown = (report / "report.md").read_text()
    assert "PREDICTIONS (hpcbench predict" in markdown and (report / "plots" / "prediction.png").exists()
    assert "fabric h100-ndr" in markdown


def test_predict_from_netbench_of_the_same_system(measured, tmp_path):
    [run] = read_records(measured / "run")
    netbench_record(run, tmp_path / "net")
    result = cli_in_process("predict", str(measured / "run"), "--netbench", str(tmp_path / "net"), "--nodes", "1,2",
                            "--gpus-per-node", "1", "--algorithm", "ring", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    [prediction] = read_records(tmp_path / "out")
    two = prediction["metrics"]["points"][1]
    fits = {f["collective"]: f for f in prediction["provenance"]["network_model"]["fits"]}
    for fit in fits.values():  # the same link, read through each collective's steps and share
        assert fit["alpha_s"] == pytest.approx(10e-6, rel=1e-3) and fit["beta_s_per_byte"] == pytest.approx(1e-8, rel=1e-3)
    assert set(fits) == {"all_reduce", "all_gather"}
    buckets = run["metrics"]["gradient_timeline"]["buckets"]
    assert two["comm_total_s"] == pytest.approx(sum(20e-6 + b["bytes"] / 1e8 for b in buckets), rel=1e-3)
    one = prediction["metrics"]["points"][0]
    assert two["step_time_s"] > one["step_time_s"]  # the link only adds
    # the framework residual closes the model on the run's own point (its throughput's step), and is never
    # negative: where the model's other terms exceed that step already, it is 0 and the note says by how much
    measured_step = run["metrics"]["global_batch_size"] / run["metrics"]["samples_per_s"]
    if one["framework_s"] > 0:
        assert one["step_time_s"] == pytest.approx(measured_step, rel=1e-9)
    else:
        assert one["framework_s"] == 0 and one["step_time_s"] >= measured_step and "taken as 0" in one["framework_note"]


@pytest.mark.parametrize("args, message", [
    (["--fabric", "h100-ndr", "--nodes", "0,2"], "nodes"),
    (["--fabric", "h100-ndr", "--nodes", "2,1"], "increasing"),
    (["--fabric", "h100-ndr", "--nodes", "1,x"], "nodes"),
    (["--fabric", "h100-ndr", "--nodes", "1,2", "--gpus-per-node", "16"], "more than this fabric's 8"),
    (["--fabric", "nope", "--nodes", "1"], "neither a file nor one of"),
    (["--nodes", "1"], "exactly one of --fabric"),
    (["--fabric", "h100-ndr", "--nodes", "1", "--algorithm", "ring,star"], "algorithm"),
])
def test_bad_shapes_and_networks_are_refused(measured, args, message):
    full = [*args] if "--gpus-per-node" in args else [*args, "--gpus-per-node", "8"]
    full += ["--compute-step-ms", "40"]
    result = cli_in_process("predict", str(measured / "run"), *full)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_records_it_cannot_predict_from_are_refused(measured, tmp_path):
    [run] = read_records(measured / "run")
    blind = tmp_path / "blind"  # what --no-breakdown leaves (tests/test_breakdown.py runs it)
    blind.mkdir()
    records.write_atomic(blind / "run.json", {**run, "metrics": {**run["metrics"], "compute_step_time_s": None,
                                                                 "breakdown_note": "not measured (--no-breakdown)"}})
    result = cli_in_process("predict", str(blind), "--fabric", "h100-ndr", "--nodes", "1", "--gpus-per-node", "8")
    assert result.returncode == 2 and "no compute-only window" in result.stderr and "--no-breakdown" in result.stderr
    sharded = tmp_path / "sharded"  # an engine without all-reduce buckets: its timeline keeps per-gradient times only
    sharded.mkdir()
    records.write_atomic(sharded / "run.json", {**run, "config": {**run["config"], "engine": "fsdp"}, "metrics": {
        **run["metrics"], "gradient_timeline": {**run["metrics"]["gradient_timeline"], "buckets": None}}})
    result = cli_in_process("predict", str(sharded), "--fabric", "h100-ndr", "--nodes", "1", "--gpus-per-node", "8")
    assert result.returncode == 2 and "engine 'fsdp' does not group gradients into all-reduce buckets" in result.stderr
    assert "rerun" not in result.stderr
    older = tmp_path / "older"
    older.mkdir()
    run["metrics"]["gradient_timeline"] = None
    records.write_atomic(older / "run.json", run)
    result = cli_in_process("predict", str(older), "--fabric", "h100-ndr", "--nodes", "1", "--gpus-per-node", "8")
    assert result.returncode == 2 and "no gradient-ready timeline" in result.stderr and "rerun it" in result.stderr
    netbench_record(run, tmp_path / "other", system_id="0123456789ab")
    other = cli_in_process("predict", str(measured / "run"), "--netbench", str(tmp_path / "other"), "--nodes", "1,2",
                           "--gpus-per-node", "1")
    assert other.returncode == 2 and "no netbench record of the run's system" in other.stderr
    bad_fabric = tmp_path / "bad.toml"
    bad_fabric.write_text('name = "x"\ndescription = "y"\n[gpus_per_node]\nvalue = 8\n')
    result = cli_in_process("predict", str(measured / "run"), "--fabric", str(bad_fabric), "--nodes", "1", "--gpus-per-node", "8")
    assert result.returncode == 2 and "has no source" in result.stderr


def test_strong_scaling_takes_each_points_compute_from_a_run_at_its_batch(measured, tmp_path):
    [run] = read_records(measured / "run")  # 32 per process
    [half] = read_records(measured / "half")  # 16 per process: what 2 processes get of a global 32
    result = cli_in_process("predict", str(measured / "run"), str(measured / "half"), "--fabric", "a100-hdr",
                            "--nodes", "1,2,4", "--gpus-per-node", "1", "--scaling", "strong", "--global-batch-size", "32",
                            "--algorithm", "ring", "--out", str(tmp_path), "--compute-step-ms", "20")
    assert result.returncode == 0, result.stderr
    [prediction] = [r for r in read_records(tmp_path)]
    one, two, four = prediction["metrics"]["points"]
    assert one["from_run"] == run["run_id"] and two["from_run"] == half["run_id"]
    scale = prediction["config"]["terms"]["compute_scale"]  # 20 ms for the first run's step; the same ratio for the half
    assert one["compute_step_time_s"] == pytest.approx(0.020)
    assert two["compute_step_time_s"] == pytest.approx(half["metrics"]["compute_step_time_s"] * scale)
    assert "no measured compute at 8 samples per process" in four["refused"] and "--batch-size 8" in four["refused"]
    assert math.isclose(one["efficiency"], 1.0)
    assert two["efficiency"] == pytest.approx((32 / two["step_time_s"] / 2) / (32 / one["step_time_s"]))


def test_the_shipped_calibration_is_the_published_cases_own():
    """jobs/calibration/published.json is what the benchmark computes from the shipped cases with this model: a
    formula or case changed without `--write-calibration` fails here, never ships a stale width."""
    from hpcbench.analysis.predict import CALIBRATION

    module = published_module()
    rows = [module.evaluate(module.load_case(p)) for p in sorted((ROOT / "benchmarks" / "published").glob("*.toml"))]
    shipped = json.loads(CALIBRATION.read_text())
    assert {k: v for k, v in shipped.items() if k != "written"} == json.loads(json.dumps(module.calibration(rows)))


def test_a_fabric_forecast_carries_its_calibrated_interval_and_a_netbench_one_says_why_not(tmp_path, monkeypatch):
    from hpcbench.analysis import predict as model

    reference = ROOT / "results" / "reference" / "cpu-2core-vm-predict" / "1gbit"
    runs = str(reference / "mlp" / "alone" / "records")
    shape = {"nodes": [1, 4], "gpus_per_node": 8, "algorithms": ["ring"], "scaling": "weak", "global_batch_size": None}
    [inputs] = model.resolve_inputs([runs], fabric="h100-ndr", netbench=None, scaling="weak")
    terms = model.resolve_terms(inputs, compute_step_ms=5.0)
    half = json.loads(model.CALIBRATION.read_text())["half_width_points"] / 100
    assert terms.calibration_points == pytest.approx(100 * half) and "published cases" in terms.calibration_source
    first, last = model.predict(inputs, **shape, terms=terms)
    assert first["efficiency_calibrated_low"] == first["efficiency_calibrated_high"] == first["efficiency"]
    assert last["efficiency_calibrated_low"] == pytest.approx(max(0.0, min(last["efficiency_low"], last["efficiency"] - half)))
    assert last["efficiency_calibrated_low"] <= last["efficiency_low"] <= last["efficiency_high"] <= last["efficiency_calibrated_high"]
    assert "calibrated on the published cases" in model.format_points([first, last], "t", terms)
    [measured] = model.resolve_inputs([runs], fabric=None, netbench=str(reference / "netbench" / "records"), scaling="weak")
    netbench_terms = model.resolve_terms(measured)
    assert netbench_terms.calibration_points is None and netbench_terms.calibration_source.startswith("none: ")
    assert model.predict(measured, **{**shape, "gpus_per_node": 1}, terms=netbench_terms)[-1]["efficiency_calibrated_low"] is None
    old = tmp_path / "published.json"  # a calibration of another model version is not applied, and says so
    old.write_text(json.dumps({**json.loads(model.CALIBRATION.read_text()), "model_version": model.MODEL_VERSION - 1}))
    monkeypatch.setattr(model, "CALIBRATION", old)
    assert model.resolve_terms(inputs, compute_step_ms=5.0).calibration_points is None
    assert f"model v{model.MODEL_VERSION - 1}" in model.resolve_terms(inputs, compute_step_ms=5.0).calibration_source

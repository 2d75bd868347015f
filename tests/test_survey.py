"""`hpcbench survey`: the rules name the odd node (and only it), the rings tell a node's link from a pair's, the
cost and the exclude lines, a baseline of other hardware refused; a local survey end to end; the survey job."""

from __future__ import annotations

import copy
import json
import random

import pytest

from conftest import read_records, run_cli
from hpcbench import records
from hpcbench.provenance import provenance
from hpcbench.errors import ConfigError
from hpcbench.analysis.survey import cost, diagnose, exclude_lines, format_survey, load_survey
from hpcbench.probes.survey import ring_edges, rings

LINK_BYTES = 4 * 2**20


def fleet_record(num_nodes: int = 5, *, seed: int = 0, noise: float = 0.05, slow_compute: str | None = None,
                 slow_link: str | None = None, slow_pair: tuple[int, int] | None = None,
                 slow_storage: str | None = None, slow_matmul: str | None = None, contended: str | None = None) -> dict:
    """A survey record as the rank program writes it: one rank per node, every value within `noise` of the
    healthy one but for the faults asked for (each 3x; `contended`: the node's matmul slow only beside the others,
    as alone it is not). Alone, a healthy node's matmul runs at twice its rate beside the others (shared cores)."""
    generator = random.Random(seed)
    nodes = [f"n{i + 1}" for i in range(num_nodes)]

    def jitter(value: float) -> float:
        return value * (1 + generator.uniform(-noise, noise))

    ranks, training = [], []
    orders = rings(num_nodes)
    for index, node in enumerate(nodes):
        factor = 3.0 if node == slow_compute else 1.0
        edges = []
        for ring, order in enumerate(orders if num_nodes > 1 else []):
            [(source, _)] = [(a, b) for a, b in ring_edges(order) if b == index]
            seconds = jitter(LINK_BYTES * 8 / 1e9)
            if slow_link in (node, nodes[source]) or slow_pair == (source, index):
                seconds *= 3
            edges += [{"from": source, "to": index, "ring": ring, "repeat": r, "bytes": LINK_BYTES, "kind": "bandwidth",
                       "seconds": seconds} for r in range(2)]
        storage = jitter(100e6) / (3 if node == slow_storage else 1)
        matmul = 3.0 if node == slow_matmul else factor
        together = 50 / matmul / (3 if node == contended else 1)
        ranks.append({"rank": index, "local_rank": 0, "host": node, "matmul_gflops": [jitter(together)] * 3,
                      "matmul_alone_gflops": [jitter(100 / matmul)],
                      "edges_in": edges, "storage": {"alone_bytes_per_s": storage, "together_bytes_per_s": storage / 4}})
        training.append({"rank": index, "host": node, "compute_step_times_s": [jitter(0.02 * factor) for _ in range(5)],
                         "step_times_s": [[jitter(0.03 * factor) for _ in range(5)] for _ in range(2)]})
    metrics = {"nodes": nodes, "rings": orders, "ranks": ranks, "link_bytes": LINK_BYTES,
               "training": {"workload": "mlp", "gradient_bytes_per_step": 10_000_000, "ranks": training}}
    when = records.utc_now().isoformat()
    return records.make_record(run_id=records.new_run_id(), status="ok", reason=None, config={}, workload=None,
                               metrics=metrics, ranks=[], kind="survey", provenance=provenance(
                                   hosts=nodes, engine_versions={}, started=when, ended=when, launcher="srun"))


def named(record: dict, baseline: dict | None = None) -> list[tuple[str, str]]:
    return sorted({(f["kind"], f["node"]) for f in diagnose(record, baseline)})


def test_the_second_ring_shares_few_edges_with_the_first_and_covers_every_node():
    for num_nodes in (4, 5, 8, 64):
        first, second = rings(num_nodes)
        assert sorted(second) == list(range(num_nodes))
        shared = set(ring_edges(first)) | {(b, a) for a, b in ring_edges(first)}
        assert sum(edge in shared for edge in ring_edges(second)) <= (2 if num_nodes <= 5 else 1)


@pytest.mark.parametrize("seed", range(5))
def test_a_healthy_fleet_yields_no_finding(seed):
    assert named(fleet_record(seed=seed)) == []


@pytest.mark.parametrize("fault, kind", [({"slow_compute": "n3"}, "compute"), ({"slow_link": "n2"}, "link"),
                                         ({"slow_storage": "n4"}, "storage")])
def test_the_odd_node_is_named_with_its_kind_and_only_it(fault, kind):
    node = next(iter(fault.values()))
    found = named(fleet_record(**fault))
    assert {n for _, n in found} == {node}, found
    assert kind in {k for k, _ in found}


def test_a_node_slowed_only_beside_the_others_is_named_for_contention():
    """Alone at its peers' rate, beside them at a third: its neighbours (shared power, cooling, a PCIe switch, cores)
    cost it, not its own device; the matmul together alone says only 'unconfirmed'."""
    assert named(fleet_record(contended="n2")) == [("contention", "n2"), ("unconfirmed", "n2")]
    assert named(fleet_record(slow_matmul="n2")) == [("unconfirmed", "n2")]  # slow alone too: its own device


def test_a_matmul_slow_on_its_own_is_a_note_not_a_finding():
    """The training step is what the job runs: a matmul far off while the node's step is not is unconfirmed."""
    findings = diagnose(fleet_record(slow_matmul="n2"))
    assert [(f["kind"], f["node"]) for f in findings] == [("unconfirmed", "n2")]
    assert cost(fleet_record(slow_matmul="n2"), findings) is None
    assert "not named: n2's matmul_gflops" in format_survey(fleet_record(slow_matmul="n2"), findings, None)


def test_a_slow_link_explains_the_same_nodes_slow_storage_reads():
    """Its reads from the storage cross its own link: one finding (the link), the reads said beside it."""
    [finding] = diagnose(fleet_record(slow_link="n2", slow_storage="n2"))
    assert (finding["kind"], finding["node"]) == ("link", "n2") and "storage reads" in finding["also"]


def test_a_slow_link_between_two_healthy_nodes_is_the_link_not_either_node():
    assert named(fleet_record(slow_pair=(1, 2))) == [("link", "n2->n3")]


def test_the_cost_prices_leaving_the_suspect_out_and_the_exclude_lines_name_it():
    record = fleet_record(slow_compute="n3")
    findings = diagnose(record)
    priced = cost(record, findings)
    assert priced["suspects"] == ["n3"]
    assert priced["step_ms_without"] < priced["step_ms_all"] and priced["efficiency_points"] > 20
    assert 0 < priced["node_hours_per_day"] < 24 * 5
    lines = exclude_lines(priced["suspects"], record["metrics"]["nodes"])
    assert lines["slurm"] == "sbatch --exclude=n3" and "n3" not in lines["pbspro"] and "1:host=n1" in lines["pbspro"]
    assert lines["torque"] == "qsub -l nodes=n1+n2+n4+n5"
    text = format_survey(record, findings, priced)
    assert "n3: compute" in text and "--exclude=n3" in text
    assert cost(fleet_record(), diagnose(fleet_record())) is None


def test_the_report_shows_the_survey_first_with_its_figure(tmp_path):
    from hpcbench.analysis.report import build_report

    records.write_atomic(tmp_path / "survey.json", fleet_record(slow_compute="n3"))
    written = build_report([tmp_path], tmp_path / "report")
    markdown = written["markdown"].read_text()
    assert markdown.index("## Survey") < markdown.index("## Definitions")
    assert "| n3 |" in markdown and "- n3: compute" in markdown and "sbatch --exclude=n3" in markdown
    assert list((tmp_path / "report" / "plots").glob("survey-*.png"))


def test_against_a_baseline_even_one_node_is_judged_and_other_hardware_is_refused(tmp_path):
    baseline = fleet_record()
    one = fleet_record(1, slow_compute="n1")
    assert named(one) == []  # no peers: nothing to say whose
    assert "fewer than 3" in format_survey(one, [], None)
    assert ("compute", "n1") in named(one, baseline)
    records.write_atomic(tmp_path / "same.json", baseline)
    assert load_survey(str(tmp_path), like=one)["run_id"] == baseline["run_id"]
    other = copy.deepcopy(baseline)
    other["system"]["cpu_model"] = "another cpu"
    (tmp_path / "other").mkdir()
    records.write_atomic(tmp_path / "other" / "other.json", other)
    with pytest.raises(ConfigError, match="other hardware"):
        load_survey(str(tmp_path / "other"), like=one)


@pytest.mark.slow
def test_a_local_survey_measures_every_rank_and_diagnoses_itself(tmp_path):
    data = tmp_path / "data"
    assert run_cli("data", "make", str(data), "--format", "tar-shards", "--samples", "64", "--image-size", "16").returncode == 0
    result = run_cli("survey", "--nproc", "2", "--steps", "3", "--repeats", "1", "--data-dir", str(data),
                     "--out", str(tmp_path / "out"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fewer than 3 nodes" in result.stdout and "no finding" in result.stdout
    record = load_survey(str(tmp_path / "out"))
    assert [r["rank"] for r in record["metrics"]["ranks"]] == [0, 1]
    assert all(min(r["matmul_gflops"]) > 0 for r in record["metrics"]["ranks"])
    assert record["metrics"]["ranks"][0]["storage"]["alone_bytes_per_s"] > 0
    assert len(record["metrics"]["training"]["ranks"]) == 2
    again = run_cli("survey", "--from", str(tmp_path / "out"))  # the diagnosis again, from the record alone
    assert again.returncode == 0 and again.stdout.strip() in result.stdout
    # the forecast takes the surveyed devices' spread in place of the shared default, and says which it used
    forecast = run_cli("predict", str(tmp_path / "out"), "--fabric", "h100-ndr", "--compute-step-ms", "10", "--nodes",
                       "1,4", "--gpus-per-node", "8", "--survey", str(tmp_path / "out"), "--out", str(tmp_path / "p"))
    assert forecast.returncode == 0, forecast.stderr[-2000:]
    assert f"measured: survey {record['run_id']}" in forecast.stdout and "(default fleet)" in forecast.stdout
    assert "per-step jitter and each node's link from the survey" in forecast.stdout
    [prediction] = [r for r in read_records(tmp_path / "p")]
    assert prediction["config"]["survey"] == str(tmp_path / "out")
    assert prediction["config"]["terms"]["fleet_source"].startswith("measured: survey")


def test_the_survey_job_trains_then_probes_the_same_allocation_and_diagnoses_after(tmp_path):
    result = run_cli("survey", "--profile", "local-slurm", "--nodes", "4", "--threads", "1", "--sweep-dir",
                     str(tmp_path / "s"), "--render")
    assert result.returncode == 0, result.stderr
    job, aggregate = (tmp_path / "s" / "job_4n.sh").read_text(), (tmp_path / "s" / "aggregate.sh").read_text()
    train, probe = job.index("-m hpcbench.worker"), job.index("-m hpcbench.probes survey")
    assert train < probe and "&& srun" in job  # one allocation: the probes run only after the training run ended well
    assert "--train-record" in job and "--breakdown" in job
    assert "hpcbench survey --from" in aggregate
    refused = run_cli("survey", "--profile", "local-slurm", "--nodes", "2,4", "--sweep-dir", str(tmp_path / "t"))
    assert refused.returncode == 2 and "one count" in refused.stderr


def test_the_survey_gives_the_forecast_its_jitter_and_its_slowest_link():
    """Each surveyed node's link over the typical one, and every step over its device's median: a job over n nodes
    all-reduces at the slowest of its n links (drawn from the surveyed ones), and waits for the surveyed jitter."""
    from pathlib import Path

    from hpcbench.analysis.predict import link_slowdown, predict, resolve_inputs, resolve_terms
    from hpcbench.analysis.survey import SurveyedFleet, surveyed_fleet

    fleet = surveyed_fleet(fleet_record(5, slow_link="n3"))
    assert len(fleet.link_slowdowns) == 5 and 2.5 < max(fleet.link_slowdowns) < 3.5
    assert sorted(fleet.link_slowdowns)[-2] < 1.2 and len(fleet.step_deviations) == 25
    assert link_slowdown((1.0, 1.0, 1.0, 1.0, 3.0), 5) == 3.0  # the whole fleet: its slowest link
    assert link_slowdown((1.0, 1.0, 1.0, 1.0, 3.0), 2) == pytest.approx(1.8)  # 2 of 5: the slow one in 2 draws of 5
    reference = Path(__file__).resolve().parent.parent / "results" / "reference" / "cpu-2core-vm-predict" / "1gbit"
    [inputs] = resolve_inputs([str(reference / "mlp" / "alone" / "records")], fabric=None,
                              netbench=str(reference / "netbench" / "records"), scaling="weak")

    def at_two_nodes(surveyed):
        terms = resolve_terms(inputs, surveyed=surveyed)
        return predict(inputs, nodes=[1, 2], gpus_per_node=1, algorithms=["ring"], scaling="weak",
                       global_batch_size=None, terms=terms)[-1]

    steady, slow = at_two_nodes(SurveyedFleet(0.0, (0.0,), (1.0, 1.0), "a")), at_two_nodes(SurveyedFleet(0.0, (0.0,), (1.0, 3.0), "b"))
    assert slow["comm_total_s"] == pytest.approx(3 * steady["comm_total_s"])
    assert steady["stragglers_s"] == 0.0  # no jitter surveyed, no spread: nothing to wait for
    # E[the larger of 2 draws from {-d, +d}] = d/2: the jitter at twice the width waits d/2 more of a typical step
    small, large = (at_two_nodes(SurveyedFleet(0.0, (-d, d), (1.0, 1.0), "c")) for d in (0.2, 0.4))
    typical = next(iter(inputs.timelines.values())).jitter.typical_step_s
    assert large["stragglers_s"] - small["stragglers_s"] == pytest.approx(0.1 * typical)


def test_a_node_probe_that_raises_or_hangs_is_named_and_the_survey_goes_on():
    """bounded(): a value, or the problem with its reason (a hang ends at the deadline, the rank goes on); the
    diagnosis names the node with the probe, whatever its peers show, and leaves it out."""
    import time

    from hpcbench.guard import Fault
    from hpcbench.probes.survey import SurveyConfig, bounded

    assert bounded("matmul", lambda: 7.0, 5.0, 0, None) == (7.0, None)
    started = time.perf_counter()
    value, problem = bounded("storage alone", lambda: 1.0, 0.3, 1, Fault(kind="hang", rank=1, step=1))
    assert value is None and problem == {"probe": "storage alone", "reason": "no answer after 0.3 s (hung)"}
    assert time.perf_counter() - started < 2
    assert bounded("storage alone", lambda: 1.0, 5.0, 0, Fault(kind="hang", rank=1, step=1)) == (1.0, None)  # rank 0
    _, raised = bounded("matmul", lambda: 1 / 0, 5.0, 0, None)
    assert raised == {"probe": "matmul", "reason": "ZeroDivisionError: division by zero"}
    with pytest.raises(ConfigError, match="probe-timeout: must be above 0 and below --timeout"):
        SurveyConfig(timeout_s=30, probe_timeout_s=30)
    record = fleet_record(4)
    record["metrics"]["ranks"][2].update(matmul_gflops=None, problems=[problem])
    findings = diagnose(record)
    assert [(f["node"], f["kind"]) for f in findings] == [("n3", "unanswered")]
    text = format_survey(record, findings, cost(record, findings))
    assert "did not answer: n3's storage alone probe: no answer after 0.3 s (hung)" in text
    assert "sbatch --exclude=n3" in text and "no finding" not in text


@pytest.mark.slow
def test_a_local_survey_with_a_hung_matmul_finishes_and_names_it(tmp_path):
    result = run_cli("survey", "--nproc", "2", "--steps", "3", "--repeats", "1", "--probe-timeout", "3",
                     "--out", str(tmp_path / "out"), env={"HPCBENCH_INJECT_SURVEY_FAULT": "hang:rank=1:step=0"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "did not answer:" in result.stdout and "matmul probe: no answer after 3 s (hung)" in result.stdout
    ranks = load_survey(str(tmp_path / "out"))["metrics"]["ranks"]
    assert ranks[1]["matmul_gflops"] is None and ranks[0]["matmul_gflops"] and ranks[0]["problems"] == []


def test_a_node_that_drifts_from_its_peers_over_surveys_shows_in_its_history(tmp_path):
    """Eight surveys of one machine; from the fifth, n2 computes 1.5x slower and every node's link halves alike
    (an upgrade): the history names n2's compute step, worse by ~50 % from survey 5, and nothing else."""
    from hpcbench.analysis.survey import format_node_history, load_surveys, node_history

    for index in range(8):
        record = fleet_record(5, seed=index, noise=0.03)
        record["provenance"]["started"] = f"2026-11-{index + 1:02d}T00:00:00+00:00"
        for rank in record["metrics"]["training"]["ranks"]:
            if rank["host"] == "n2" and index >= 4:
                rank["compute_step_times_s"] = [t * 1.5 for t in rank["compute_step_times_s"]]
        for rank in record["metrics"]["ranks"]:
            for edge in rank["edges_in"]:
                edge["seconds"] *= 2 if index >= 4 else 1
        records.write_atomic(tmp_path / f"survey-{index}.json", record)
    rows = node_history(load_surveys([str(tmp_path)]))
    stepped = [(r["node"], r["metric"], s["survey"], s["verdict"]) for r in rows for s in r["steps"]]
    assert stepped == [("n2", "compute_step_ms", 5, "worse")]
    [n2] = [r for r in rows if r["node"] == "n2" and r["metric"] == "compute_step_ms"]
    assert n2["surveys"] == 8 and n2["steps"][0]["change"] == pytest.approx(0.5, abs=0.1)
    assert "n2: compute_step_ms worse by" in format_node_history(rows)
    result = run_cli("survey", "--history", str(tmp_path))
    assert result.returncode == 0 and "1 of " in result.stdout and "n2: compute_step_ms worse" in result.stdout


def test_a_survey_job_that_ended_early_names_the_node_whose_task_failed_first(tmp_path):
    """srun's own lines (as Slurm 22.05 writes them: tests/test_cluster_slurm.py checks the format on the real
    daemons) name the first node to fail; the rest were ended by the launcher."""
    from hpcbench.cli_probes import failed_survey

    logs = tmp_path / "s" / "logs"
    logs.mkdir(parents=True)
    (tmp_path / "s" / "sweep.json").write_text(json.dumps({"scheduler": "slurm"}))
    (logs / "hpcbench-survey-7.out").write_text(
        "srun: error: n2: task 1: Exited with exit code 127\nsrun: launch/slurm: _step_signal: Terminating StepId=7.0\n"
        "slurmstepd-n1: error: *** STEP 7.0 ON n1 CANCELLED AT 2026-12-07T05:40:28 ***\n"
        "srun: error: n1: task 0: Terminated\nsrun: error: n3: tasks 2-3: Terminated\n")
    text = failed_survey(tmp_path / "s")
    assert "the first task to fail ran on n2 (task 1: Exited with exit code 127)" in text
    assert "after it: n1 (task 0: Terminated), n3 (tasks 2-3: Terminated)" in text and "sbatch --exclude=n2" in text
    (logs / "hpcbench-survey-7.out").write_text("Traceback ...\n")
    assert "no launcher's lines" in failed_survey(tmp_path / "s")
    result = run_cli("survey", "--from", str(tmp_path / "s" / "records"), "--logs", str(logs))
    assert result.returncode == 1 and "did not finish" in result.stdout

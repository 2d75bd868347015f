"""Tensor and pipeline parallelism: every engine and combination trains as one process does from the same seed,
a sweep's records carry the measured bubble and the counted collectives into the report's engines table and
schedule figure, and bad degrees are refused before any process starts."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import cli_in_process, read_records, run_cli
from hpcbench.analysis import notebook
from hpcbench.analysis.efficiency import engine_table, layout
from hpcbench.engines.pp import analytic_bubble
from hpcbench.measurements.pipeline import idle_share
from hpcbench.runner import oversubscription

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from model_parallel_parity import CASES  # noqa: E402

LOSS_RTOL = 1e-4
"""The issue's bound; measured here at most 2e-7 (fp32 sums in another order)."""
PARAM_SHARE = 1e-2
"""Final parameters within 1 % of how far training moved them (measured at most 0.4 %: AdamW divides by the
root of tiny second moments, which magnifies rounding); a wrong gradient (unsummed over stages or shards) moves a
parameter by the whole update."""


@pytest.mark.parametrize("case", list(CASES))
def test_each_layout_trains_as_one_process_does(case):
    """10 steps under the engine against the same 10 on the global batch in one process (each case <= 20 s)."""
    ranks = CASES[case][0]
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                             str(ranks), str(HERE / "model_parallel_parity.py"), case],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))
    assert facts["parallel"] == pytest.approx(facts["alone"], rel=LOSS_RTOL)
    assert facts["missing"] == [] and facts["param_max_abs_diff"] <= PARAM_SHARE * facts["moved"]
    groups: dict[int, set[str]] = {}
    for group, digest in facts["digests"]:
        groups.setdefault(group, set()).add(digest)
    assert all(len(digests) == 1 for digests in groups.values())  # ranks that must agree do
    stages = CASES[case][4].get("degree") or ranks if CASES[case][3] == "pp" else 1
    assert len(groups) == stages  # a pipeline's stages hold different weights; tp's ranks gather the same whole
    counters = facts["counters"]
    if "collectives_per_step" in counters:  # Megatron's count, also with sequence parallel's norms reduced once
        assert counters["collectives_per_step"] == counters["megatron_collectives_per_step"]


def test_a_sweep_of_every_layout_reports_bubble_collectives_and_schedules(tmp_path):
    """tp and pp (GPipe) at 2 ranks through the CLI: the records' metrics, the engines table and the figure."""
    out, sweep = tmp_path / "runs", tmp_path / "layouts.toml"
    sweep.write_text('workloads = ["gpt"]\nengines = ["ddp", "tp", "pp"]\nnproc = [2]\nsteps = 4\nrepeats = 2\n'
                     'warmup = 2\npp.schedule = "gpipe"\n')
    result = run_cli("sweep", str(sweep), "--out", str(out), timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    by_engine = {r["config"]["engine"]: r for r in read_records(out)}
    pp, tp, ddp = by_engine["pp"], by_engine["tp"], by_engine["ddp"]
    bubble = pp["metrics"]["pipeline"]
    assert bubble["bubble_analytic"] == pytest.approx(1 / 5)  # 2 stages, 4 micro-batches
    assert all(0 < share < 1 for share in bubble["bubble_measured_by_rank"])
    assert pp["metrics"]["replica_groups"] == [[0], [1]] and pp["metrics"]["replicas_identical"]
    assert pp["metrics"]["exposed_comm_s"] is None and "schedule" in pp["metrics"]["breakdown_note"]
    assert pp["metrics"]["global_batch_size"] == pp["config"]["batch_size"]  # both stages read one batch
    assert ddp["metrics"]["global_batch_size"] == 2 * ddp["config"]["batch_size"]
    counted = tp["metrics"]["engine_counters_by_rank"][0]
    assert counted["collectives_per_step"] == counted["megatron_collectives_per_step"] == {"all_reduce": 8}
    assert ["F", "B"] == sorted({a[0] for a in pp["ranks"][1]["pipeline"]["actions_last_repeat"]} - {"step"},
                                reverse=True)
    report = run_cli("report", str(out), "-o", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr[-3000:]
    assert (tmp_path / "report" / "plots" / "pipeline_schedules.png").stat().st_size > 10_000
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| pp pp2 gpipe m4 |" in markdown and "all_reduce 8 (Megatron 8)" in markdown
    per_rank = markdown[markdown.index("### Per rank"):]
    assert "| gpt | 2 | pp pp2 gpipe m4 | 0 | 0 |" in per_rank and "| gpt | 2 | pp pp2 gpipe m4 | 1 | 1 |" in per_rank


@pytest.mark.parametrize("args, message", [
    (["--engine", "tp", "--nproc", "4", "--tp-degree", "3"], "tp-degree: 3 does not divide the world size 4"),
    (["--engine", "tp", "--nproc", "2", "--heads", "3", "--embed", "96"], "tp-degree: 2 does not divide --heads 3"),
    (["--engine", "pp", "--nproc", "2", "--layers", "3"], "2 stages do not divide the model's 3 blocks (--layers 3)"),
    (["--engine", "pp", "--nproc", "4", "--layers", "4", "--pp-microbatches", "2"],
     "pp-microbatches: 2 is fewer than the 4 stages"),
    (["--engine", "pp", "--nproc", "2", "--pp-microbatches", "3"], "pp-microbatches: 3 does not divide the batch size 16"),
    (["--engine", "pp", "--nproc", "2", "--pp-schedule", "interleaved-1f1b"],
     "2 ranks x 2 stages a rank (interleaved-1f1b) do not divide the model's 2 blocks"),
    (["--engine", "tp", "--nproc", "2", "--workload", "cnn"], "has no tensor-parallel split; it runs under: ddp, fsdp"),
    (["--engine", "tp", "--nproc", "2", "--workload", "mlp", "--tp-sequence-parallel", "true"], "no sequence to split"),
    (["--engine", "ddp", "--nproc", "2", "--pp-degree", "2"], "the --pp-* options apply to --engine pp only"),
    (["--engine", "pp", "--nproc", "2", "--mode", "tta"], "use --mode throughput"),
    (["--engine", "pp", "--nproc", "2", "--compile"], "compile: engine 'pp' runs forward and backward inside"),
])
def test_what_cannot_be_cut_is_refused_before_any_process_starts(args, message):
    result = cli_in_process("run", "--workload", "gpt", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_the_analytic_bubble_and_the_measured_idle_share():
    assert analytic_bubble(2, 4, 1) == pytest.approx(1 / 5) and analytic_bubble(4, 8, 2) == pytest.approx(3 / 19)
    # one call of 10 ms with 6 ms of forward and backward inside: idle 40 %
    assert idle_share([("step", 0, -1, 0.0, 0.010), ("F", 0, 0, 0.0, 0.002), ("B", 0, 0, 0.005, 0.009)]) == \
        pytest.approx(0.4)
    assert idle_share([]) is None


def test_layouts_and_oversubscription_are_named():
    assert layout("pp", {"dp": 2, "pp": 2}, {"degree": 2, "schedule": "gpipe", "microbatches": None},
                  {"microbatches": 4}) == "pp dp2xpp2 gpipe m4"
    assert layout("tp", {"dp": 1, "tp": 2}, {"degree": None, "sequence_parallel": True}, None) == "tp tp2 sequence-parallel"
    assert layout("ddp", None, {"comm_hook": "none", "static_graph": False}, None) == "ddp"
    rank = {"device": "cpu", "host": "h", "cpus": 2, "threads": 1}
    assert oversubscription([rank, rank]) is None
    assert oversubscription([rank] * 4) == "4 ranks x 1 threads on 2 cores of h"


def test_the_engines_table_pairs_layouts_of_the_same_work():
    base = {"system_name": "s", "system_id": "x", "workload": "gpt", "work_id": "w", "precision": "fp32",
            "device": "cpu", "batch_size": 8, "world_size": 2, "mfu": None, "tokens_per_sample": 64,
            "peak_memory_gib": 1.0, "exposed_comm_share": None, "oversubscribed": None, "engine_counters_by_rank": None}
    pipeline = {"microbatches": 4, "bubble_measured": 0.25, "bubble_analytic": 0.2}
    runs = pd.DataFrame([
        {**base, "engine": "ddp", "mesh": None, "engine_options": {}, "pipeline": None, "samples_per_s": 10.0,
         "global_batch_size": 16, "exposed_comm_share": 0.1},
        {**base, "engine": "pp", "mesh": {"dp": 1, "pp": 2}, "engine_options": {"schedule": "1f1b"},
         "pipeline": pipeline, "samples_per_s": 6.0, "global_batch_size": 8},
        {**base, "engine": "pp", "mesh": {"dp": 1, "pp": 2}, "engine_options": {"schedule": "1f1b"},
         "pipeline": {**pipeline, "bubble_measured": 0.35}, "samples_per_s": 8.0, "global_batch_size": 8},
        {**base, "engine": "ddp", "world_size": 4, "mesh": None, "engine_options": {}, "pipeline": None,
         "samples_per_s": 19.0, "global_batch_size": 32, "oversubscribed": "4 ranks x 1 threads on 2 cores of h"}])
    table = engine_table(runs)
    assert table.equals(notebook.engines(runs))
    assert list(table["layout"]) == ["ddp", "pp pp2 1f1b m4"]  # the 4-rank run has no partner
    row = table.set_index("layout").loc["pp pp2 1f1b m4"]
    assert row["num_runs"] == 2 and row["bubble_measured"] == pytest.approx(0.3) and row["tokens_per_s"] == 448
    assert pd.isna(row["exposed_comm_share"])

"""Experiments and systems: runs of different work or on different machines are never pooled."""

import json
from pathlib import Path

import pytest

from hpcbench import records
from hpcbench.analysis import load_records, scaling_table
from hpcbench.analysis.compare import compare, parse_tolerance
from hpcbench.analysis.report import build_report
from hpcbench.experiment import experiment_block, short_hash, system_block, system_name

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"
SYSTEMS = {
    "alpha": {"cpu_model": "Alpha CPU", "cores_per_node": 64, "memory_gib_per_node": 256, "gpu_model": None,
              "gpus_per_node": 0, "torch": "2.14.1", "cuda": None, "nccl": None, "engine_libraries": {"ddp": None}},
    "beta": {"cpu_model": "Beta CPU", "cores_per_node": 32, "memory_gib_per_node": 128, "gpu_model": None,
             "gpus_per_node": 0, "torch": "2.14.1", "cuda": None, "nccl": None, "engine_libraries": {"ddp": None}},
}


def write_run(folder: Path, name: str, rate: float, world_size: int, *, system: str, hidden_size: int) -> None:
    record = records.make_record(
        run_id=name, status="ok", reason=None,
        config={"workload": "mlp", "engine": "ddp", "device": "cpu", "batch_size": 16, "num_threads": 1,
                "options": {"hidden_size": hidden_size, "num_layers": 2}, "engine_options": {}, "scaling": "weak"},
        workload={"sample_unit": "image"},
        metrics={"samples_per_s": rate, "samples_per_s_repeats": [rate], "global_batch_size": 16 * world_size,
                 "step_time_s_median": 0.1},
        ranks=[], provenance={"world_size": world_size, "num_nodes": 1, "hostnames": [f"{system}042.example.org"],
                              "system_facts": SYSTEMS[system], "cpu_model": SYSTEMS[system]["cpu_model"],
                              "torch": "2.14.1", "started": "2026-11-25T00:00:00"},
    )
    records.write_atomic(folder / f"{name}.json", record)


@pytest.fixture
def mixed(tmp_path) -> Path:
    """mlp hidden 64 and 1024 on systems alpha and beta: four curves, each 1 and 2 processes."""
    rates = {("alpha", 64): (100.0, 180.0), ("alpha", 1024): (50.0, 80.0),
             ("beta", 64): (200.0, 300.0), ("beta", 1024): (40.0, 76.0)}
    for (system, hidden), (one, two) in rates.items():
        write_run(tmp_path, f"{system}-{hidden}-1", one, 1, system=system, hidden_size=hidden)
        write_run(tmp_path, f"{system}-{hidden}-2", two, 2, system=system, hidden_size=hidden)
    return tmp_path


def test_two_experiments_on_two_systems_are_four_curves(mixed):
    table = scaling_table(load_records([mixed]))
    assert len(table) == 8 and set(table["num_runs"]) == {1}  # nothing pooled
    two = table[table["world_size"] == 2].set_index(["system_name", "experiment_label"])["efficiency"]
    assert two.to_dict() == pytest.approx({
        ("alpha", "mlp hidden_size=1024 num_layers=2 ddp cpu 1thr b16/proc"): 0.8,
        ("alpha", "mlp hidden_size=64 num_layers=2 ddp cpu 1thr b16/proc"): 0.9,
        ("beta", "mlp hidden_size=1024 num_layers=2 ddp cpu 1thr b16/proc"): 0.95,
        ("beta", "mlp hidden_size=64 num_layers=2 ddp cpu 1thr b16/proc"): 0.75,
    })
    assert table["system_id"].nunique() == 2 and table["experiment_id"].nunique() == 2


def test_compare_pairs_only_the_same_system_unless_asked(mixed, tmp_path):
    runs = load_records([mixed])
    alpha, beta = runs[runs["system_name"] == "alpha"], runs[runs["system_name"] == "beta"]
    assert compare(alpha, beta, 0.05).empty
    across = compare(alpha, beta, parse_tolerance("5%"), across_systems=True)
    assert len(across) == 4
    assert set(across["baseline_system"]) == {"alpha"} and set(across["new_system"]) == {"beta"}
    one = across[(across["world_size"] == 1) & across["experiment_label"].str.contains("hidden_size=64 ")]
    assert one["change"].iloc[0] == pytest.approx(1.0)  # 200 vs 100


def test_report_of_a_mixed_folder_has_a_section_per_system(mixed, tmp_path):
    written = build_report([mixed], tmp_path / "report")
    markdown = written["markdown"].read_text()
    headings = [line for line in markdown.splitlines() if line.startswith("## System")]
    assert len(headings) == 2 and headings[0].startswith("## System alpha (") and headings[1].startswith("## System beta (")
    assert "CPU Alpha CPU; 64 cores per node; 256 GiB per node" in markdown
    csv = written["csv"].read_text().splitlines()
    assert {"system_id", "system_name", "experiment_id", "experiment_label"} <= set(csv[0].split(","))
    assert len(csv) == 1 + 8  # four curves x two points, weak only
    assert sorted(p.name for p in (tmp_path / "report" / "plots").iterdir() if p.is_dir()) == sorted(
        f"{name}-{system_block({'system_facts': facts})['system_id']}" for name, facts in SYSTEMS.items())


def test_schema_1_reference_records_are_read_and_upgraded():
    found = sorted((REFERENCE / "cpu-2core-vm-engines").glob("*.json"))
    assert {json.loads(p.read_text())["schema_version"] for p in found} == {1}
    loaded = [records.load(p) for p in found]
    assert all(r["upgraded_from_schema"] == 1 and r["system"]["name"] for r in loaded)
    train = [r for r in loaded if r["kind"] == "train"]
    # DDP and Horovod runs of one machine are one system (schema 1 recorded Horovod's version only
    # for Horovod runs, so it is left out), and each engine's runs one experiment per workload.
    assert len({r["system"]["system_id"] for r in loaded}) == 1
    assert len({r["experiment"]["experiment_id"] for r in train}) == 4
    assert len({r["experiment"]["work_id"] for r in train}) == 2
    horovod = next(r for r in train if r["config"]["engine"] == "horovod")
    assert horovod["experiment"]["engine_options"]["compression"] == "none"
    table = scaling_table(load_records([REFERENCE / "cpu-2core-vm-engines"]))
    assert len(table) == 8 and table["efficiency"].notna().all()


def test_experiment_ids_ignore_the_scale_and_follow_the_work():
    base = {"workload": "mlp", "options": {"hidden_size": 64}, "engine": "ddp", "device": "cpu", "batch_size": 16,
            "num_threads": 1, "num_procs": 1, "seed": 0}
    same = experiment_block({**base, "num_procs": 8, "seed": 3, "num_steps": 99})
    assert same["experiment_id"] == experiment_block(base)["experiment_id"]
    for change in ({"options": {"hidden_size": 1024}}, {"batch_size": 32}, {"num_threads": 2}, {"engine": "horovod"},
                   {"scaling": "strong", "global_batch_size": 16}):
        assert experiment_block({**base, **change})["experiment_id"] != same["experiment_id"], change
    assert system_name(None, ["node012.cluster.example"]) == "node"
    assert system_name("lumi", ["nid001234"]) == "lumi"


def test_the_network_is_part_of_the_system_and_its_heading(tmp_path):
    """An emulated 100 Mbit cluster is another system than the 1 Gbit one; a record that names no
    network keeps the id it had before the field existed."""
    alpha = SYSTEMS["alpha"]
    ids = {network: system_block({"system_facts": {**alpha, "network": network}})["system_id"]
           for network in (None, "emulated:tbf:100mbit", "emulated:tbf:1gbit")}
    assert len(set(ids.values())) == 3
    assert ids[None] == system_block({"system_facts": alpha})["system_id"] == short_hash(alpha)  # the id before
    for network in ("emulated:tbf:100mbit", "emulated:tbf:1gbit"):
        folder = tmp_path / network.split(":")[-1]
        folder.mkdir()
        SYSTEMS[network] = {**alpha, "network": network}
        try:
            write_run(folder, f"{network}-1", 100.0, 1, system=network, hidden_size=64)
        finally:
            del SYSTEMS[network]
    written = build_report([tmp_path / "100mbit", tmp_path / "1gbit"], tmp_path / "report")
    headings = [line for line in written["markdown"].read_text().splitlines() if line.startswith("## System")]
    assert sorted(h.split(", network ")[1] for h in headings) == ["emulated:tbf:100mbit", "emulated:tbf:1gbit"]

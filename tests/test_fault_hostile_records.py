"""Fault tests: hostile files among the records. Each is skipped with one warning naming it — never
a crash, and never averaged into a result."""

import json
import os
import warnings

import pytest

from hpcbench import records
from hpcbench.analysis import load_records, scaling_table


def good_record(**changes) -> dict:
    record = records.make_record(
        run_id="good", status="ok", reason=None,
        config={"workload": "mlp", "engine": "ddp", "device": "cpu", "batch_size": 8},
        workload=None, metrics={"samples_per_s": 100.0, "samples_per_s_per_proc": 100.0},
        ranks=[], provenance={"world_size": 1, "num_nodes": 1},
    )
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        target = record
        for parent in parents:
            target = target[parent]
        if value is DELETE:
            del target[key]
        else:
            target[key] = value
    return record


DELETE = object()

HOSTILE_JSON = {
    "nan-rate": good_record(**{"metrics.samples_per_s": float("nan")}),
    "infinite-rate": good_record(**{"metrics.samples_per_s": float("inf")}),
    "negative-rate": good_record(**{"metrics.samples_per_s": -5.0}),
    "text-rate": good_record(**{"metrics.samples_per_s": "fast"}),
    "bool-rate": good_record(**{"metrics.samples_per_s": True}),
    "no-metrics": good_record(metrics=None),
    "no-config": good_record(config=DELETE),
    "no-workload": good_record(**{"config.workload": DELETE}),
    "zero-world": good_record(**{"provenance.world_size": 0}),
    "float-batch": good_record(**{"config.batch_size": 8.5}),
    "unknown-status": good_record(status="great"),
    "schema-3": good_record(schema_version=3),
    "schema-text": good_record(schema_version="1"),
    "top-level-list": [good_record()],
    "schema-1-odd-hosts": good_record(schema_version=1, **{"provenance.hostnames": [5, None], "provenance.system_facts": 3,
                                                          "metrics.samples_per_s": "fast"}),
}


def write_hostile(folder) -> list[str]:
    for name, content in HOSTILE_JSON.items():
        # json.dumps writes NaN and Infinity literals, as a careless writer would
        (folder / f"{name}.json").write_text(json.dumps(content))
    (folder / "binary.json").write_bytes(os.urandom(4096))
    (folder / "empty.json").write_bytes(b"")
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with open(folder / "huge.json", "wb") as handle:  # sparse: costs no disk
        handle.truncate(records.MAX_RECORD_BYTES + 1)
    return sorted(p.name for p in folder.glob("*.json"))


def test_hostile_records_are_skipped_one_warning_each(tmp_path):
    hostile = write_hostile(tmp_path)
    records.write_atomic(tmp_path / "valid.json", good_record())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = load_records([tmp_path], include_failed=True)
    assert list(frame["run_id"]) == ["good"]
    assert frame["samples_per_s"].tolist() == [100.0]
    warned = sorted(str(w.message).split()[1].rstrip(":").rsplit("/", 1)[-1] for w in caught)
    assert warned == hostile


@pytest.mark.parametrize("name", sorted(HOSTILE_JSON))
def test_each_hostile_record_is_refused_by_the_loader(tmp_path, name):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(HOSTILE_JSON[name]))
    with pytest.raises(ValueError, match=str(path)):
        records.load(path)


def test_nothing_hostile_reaches_the_scaling_table(tmp_path):
    write_hostile(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = scaling_table(load_records([tmp_path]))
    assert table.empty

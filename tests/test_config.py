"""Config resolution and the flags <-> config round trip the local launcher relies on."""

import argparse

import pytest

from hpcbench.config import ConfigError, RunConfig
from hpcbench.flags import add_run_arguments, config_from_namespace, config_to_args
from hpcbench.resolve import resolve
from hpcbench.workloads import registry


def test_resolve_fills_workload_defaults_and_threads():
    cfg = resolve(RunConfig(workload="cnn", num_procs=1, device="cpu"), sweep_max_procs=2)
    assert cfg.batch_size == 32
    assert cfg.options == {"model": "resnet18", "image_size": 32, "num_classes": 10}
    assert cfg.num_threads >= 1


def test_threads_default_to_cores_over_the_largest_process_count(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    one = resolve(RunConfig(workload="mlp", num_procs=1, device="cpu"), sweep_max_procs=4)
    four = resolve(RunConfig(workload="mlp", num_procs=4, device="cpu"), sweep_max_procs=4)
    assert one.num_threads == four.num_threads == 4  # equal workers across the sweep


@pytest.mark.parametrize("workload", sorted(registry()))
def test_flags_round_trip_every_workloads_defaults(workload):
    cfg = resolve(RunConfig(workload=workload, device="cpu"))
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    assert resolve(config_from_namespace(parser.parse_args(config_to_args(cfg)))) == cfg  # as the worker does


def test_flags_round_trip_a_resolved_config():
    cfg = resolve(RunConfig(workload="cnn", device="cpu", batch_size=7, options={"model": "convnet", "image_size": 16}))
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    again = config_from_namespace(parser.parse_args(config_to_args(cfg)))
    assert resolve(again) == cfg  # as a worker does: options left at None are not flags, resolving restores them
    assert again.engine_options == {k: v for k, v in cfg.engine_options.items() if v is not None}


@pytest.mark.parametrize(
    ("values", "field_name"),
    [
        ({"workload": "nope"}, "workload"),
        ({"num_procs": 0}, "nproc"),
        ({"batch_size": -1}, "batch-size"),
        ({"engine": "mpi"}, "engine"),
        ({"workload": "cnn", "options": {"image_size": 8}}, "image-size"),
        ({"workload": "cnn", "options": {"model": "vgg"}}, "model"),
        ({"workload": "mlp", "options": {"model": "resnet18"}}, "model"),
        ({"data": "real"}, "data-dir"),
        ({"timeout_s": 0}, "timeout"),
    ],
)
def test_bad_values_name_their_field(values, field_name):
    with pytest.raises(ConfigError) as info:
        resolve(RunConfig(**values))
    assert info.value.field_name == field_name
    assert str(info.value).startswith(f"{field_name}: ")


def test_unknown_config_keys_list_the_valid_ones():
    with pytest.raises(ConfigError, match="valid keys: .*batch_size"):
        RunConfig.from_dict({"batchsize": 3})
